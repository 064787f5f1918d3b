//! Helpers shared by the CLI tests: run the built `lofi` binary and write the tiny synthetic
//! dataset they start from. (Each test binary uses a different subset, hence the allow.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary under test: this build's `lofi`, or the one `LOFI_TEST_BIN` names (to run a test
/// against another build, e.g. an older lofi, to show that the test fails there).
pub fn lofi_bin() -> PathBuf {
    std::env::var_os("LOFI_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lofi")))
}

/// Runs `lofi args...` with `env` set; returns (success, stdout, stderr).
pub fn lofi_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(lofi_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run lofi");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `lofi args...`; returns (success, stdout, stderr).
pub fn lofi(args: &[&str]) -> (bool, String, String) {
    lofi_env(args, &[])
}

/// A temp path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// `lofi synth --preset tiny --seed SEED` into `dir/data`; returns that folder.
pub fn tiny_dataset(dir: &Path, seed: u64) -> PathBuf {
    let data = dir.join("data");
    let seed = seed.to_string();
    let (ok, _, err) = lofi(&[
        "synth",
        "--out",
        s(&data),
        "--preset",
        "tiny",
        "--seed",
        &seed,
    ]);
    assert!(ok, "synth failed: {err}");
    data
}

/// `lofi train-head` on features of 4 snippets (what [`extract_tiny`] writes) of the ground truth
/// `gt` into `out`, tiny preset, one epoch, plus `extra` flags; returns (success, stdout, stderr).
pub fn train_head_tiny(
    features: &Path,
    gt: &Path,
    out: &Path,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec![
        "train-head",
        "--features",
        s(features),
        "--ground-truth",
        s(gt),
        "--out",
        s(out),
        "--preset",
        "tiny",
        "--snippets",
        "4",
        "--epochs",
        "1",
    ];
    args.extend_from_slice(extra);
    lofi(&args)
}

/// `lofi extract` of the tiny dataset in `data` into `out` with a random width-4 TSM-R18 at
/// 4 snippets of 32 px (a second or two), plus `extra` flags; returns (success, stderr).
pub fn extract_tiny(data: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let (gt, videos) = (data.join("ground_truth.json"), data.join("videos"));
    let mut args = vec![
        "extract",
        "--ground-truth",
        s(&gt),
        "--videos",
        s(&videos),
        "--out",
        s(out),
        "--depth",
        "18",
        "--base-width",
        "4",
        "--snippets",
        "4",
    ];
    if !extra.contains(&"--size") {
        args.extend_from_slice(&["--size", "32"]);
    }
    args.extend_from_slice(extra);
    let (ok, _, err) = lofi(&args);
    (ok, err)
}
