//! `--device torch` (burn's LibTorch backend on the CPU, `--features tch`) through the real
//! binary: `lofi device` names the libtorch it was built against and the one it loaded, and starts
//! without LD_LIBRARY_PATH (the build's RUNPATH); `torch-cuda` on this CPU-variant build is one
//! clear line; and every stage runs on it end to end at tiny sizes (pretrain -> LoFi train with a
//! memory budget -> extract -> train-head -> detect -> eval), plus a data-parallel train on
//! `--device torch,torch`.
#![cfg(feature = "tch")]

mod common;
use common::{lofi, s, tiny_dataset};

use std::process::Command;

#[test]
fn the_torch_device_reports_libtorch_and_starts_without_a_library_path() {
    let out = Command::new(common::lofi_bin())
        .args(["--device", "torch", "device"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run lofi");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("compiled backends: cpu, torch, torch-cuda[:N]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("libtorch: built against 2.11.0 (CPU variant)"),
        "{stdout}"
    );
    assert!(stdout.contains("loaded 2.11.0+"), "{stdout}");
    assert!(stdout.contains("CUDA: not available"), "{stdout}");
    assert!(
        stdout.contains("64x64 matmul sum = 262144 (ok)"),
        "{stdout}"
    );
}

#[test]
fn torch_cuda_on_a_cpu_variant_build_is_one_line() {
    let (ok, _, err) = lofi(&["--device", "torch-cuda:1", "device"]);
    assert!(!ok, "must fail");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(err.contains("--device torch-cuda:1"), "{err}");
    assert!(err.contains("built against a CPU libtorch"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn every_stage_runs_on_the_torch_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 3);
    let gt = data.join("ground_truth.json");
    let run_on = |device: &str, args: &[&str]| {
        let mut all = vec!["--device", device];
        all.extend_from_slice(args);
        let (ok, out, err) = lofi(&all);
        assert!(ok, "`lofi {}` failed: {err}", all.join(" "));
        out
    };
    let run = |args: &[&str]| run_on("torch", args);
    let pre = dir.path().join("pretrain");
    run(&[
        "pretrain",
        "--data",
        s(&data),
        "--out",
        s(&pre),
        "--preset",
        "tiny",
        "--epochs",
        "1",
    ]);
    let lofi_run = dir.path().join("lofi");
    let encoder = pre.join("encoder.bpk");
    let train = |device: &str, out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            s(&data),
            "--encoder",
            s(&encoder),
            "--out",
            s(out),
            "--preset",
            "tiny",
            "--schedule",
            "short-cycle",
            "--epochs",
            "1",
        ];
        args.extend_from_slice(extra);
        run_on(device, &args)
    };
    train("torch", &lofi_run, &["--memory-budget", "8GiB"]);
    // The planner ran its probes on libtorch's CPU device (child processes).
    let plan: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lofi_run.join("memory_plan.json")).expect("memory plan"),
    )
    .expect("plan json");
    assert!(
        plan["fidelities"].as_array().is_some_and(|f| !f.is_empty()),
        "{plan}"
    );
    let features = lofi_run.join("features");
    run(&[
        "extract",
        "--ground-truth",
        s(&gt),
        "--videos",
        s(&data.join("videos")),
        "--encoder",
        s(&lofi_run.join("encoder.bpk")),
        "--out",
        s(&features),
    ]);
    let head = lofi_run.join("head");
    run(&[
        "train-head",
        "--features",
        s(&features),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&head),
        "--preset",
        "tiny",
        "--epochs",
        "1",
    ]);
    let detections = lofi_run.join("detections.json");
    run(&[
        "detect",
        "--head",
        s(&head),
        "--features",
        s(&features),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&detections),
    ]);
    let out = run(&[
        "eval",
        "detection",
        "--ground-truth",
        s(&gt),
        "--predictions",
        s(&detections),
    ]);
    assert!(out.contains("mAP"), "{out}");

    // Data parallel over two replicas of libtorch's CPU device.
    let dp = dir.path().join("dp");
    train("torch,torch", &dp, &[]);
    let metrics = std::fs::read_to_string(dp.join("metrics.jsonl")).expect("metrics");
    let steps: Vec<serde_json::Value> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["event"] == "step")
        .collect();
    assert!(!steps.is_empty());
    assert!(steps.iter().all(|m| m["replicas"] == 2), "{steps:?}");
}
