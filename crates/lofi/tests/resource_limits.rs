//! Failure class: resource limits. Numbers a person can type never abort the process: a size
//! that multiplies into an allocation is refused before any work with a message that names it
//! (before: `extract --size 100000` ended in "memory allocation of 3000000000000 bytes failed",
//! exit 134; `--size 16384` in a panic inside FFmpeg's scaler), and a property test throws
//! absurd values at every numeric argument of every subcommand.

mod common;

use common::{extract_tiny, lofi, s, tiny_dataset, train_head_tiny};
use proptest::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How a run ended: exit code (`None`: killed by a signal), stderr, or still running at the
/// deadline (then killed: the value was accepted and work began, which is not an abort).
enum End {
    Exited(Option<i32>, String),
    StillRunning,
}

fn run_with_deadline(args: &[String], deadline: Duration) -> End {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lofi"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lofi");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return End::Exited(status.code(), err);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return End::StillRunning;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The four commands of issue 11, problem 3: each is refused with exit 1 and a message.
#[test]
fn the_sizes_that_aborted_are_refused_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 1);
    let (gt, videos) = (data.join("ground_truth.json"), data.join("videos"));
    let pred = dir.path().join("pred.json");
    std::fs::write(
        &pred,
        r#"{"version": "x", "external_data": {}, "results": {"v": [{"label": "a", "score": 1, "segment": [0, 1]}]}}"#,
    )
    .expect("write");
    let (ok, _, err) = lofi(&[
        "eval",
        "detection",
        "--ground-truth",
        s(&gt),
        "--predictions",
        s(&pred),
        "--tiou",
        "0.5:0.95:99999999999",
    ]);
    assert!(
        !ok && err.contains("count 99999999999 must be 1 to 1000"),
        "{err}"
    );
    let out = dir.path().join("f");
    for (flag, value, expected) in [
        ("--size", "100000", "larger than 4096 px"),
        ("--size", "16384", "larger than 4096 px"),
        ("--snippets", "100000000", "more than this machine's"),
        ("--frames", "100000000", "more than this machine's"),
        ("--workers", "100000000", "need 1 to 1024 decoding threads"),
        ("--base-width", "100000000", "must be 1 to 512"),
    ] {
        let (ok, _, err) = lofi(&[
            "extract",
            "--ground-truth",
            s(&gt),
            "--videos",
            s(&videos),
            "--out",
            s(&out),
            flag,
            value,
        ]);
        assert!(
            !ok && err.starts_with("error:") && err.contains(expected),
            "{flag} {value}: {err}"
        );
        assert!(
            !out.exists(),
            "{flag} {value}: refused, but after writing {out:?}"
        );
    }
    let feats = dir.path().join("features");
    let (ok, err) = extract_tiny(&data, &feats, &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = lofi(&[
        "train-head",
        "--features",
        s(&feats),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&dir.path().join("h")),
        "--snippets",
        "100000",
    ]);
    assert!(!ok && err.contains("proposal map"), "{err}");
    // Issue 11, point 5: an absurd memory budget was silently capped.
    for budget in ["1000000TiB", "99999999999999999999999TiB"] {
        let run = dir.path().join("run");
        let (ok, _, err) = lofi(&[
            "train",
            "--data",
            s(&data),
            "--preset",
            "tiny",
            "--out",
            s(&run),
            "--memory-budget",
            budget,
        ]);
        assert!(
            !ok && (err.contains("more than this machine's") || err.contains("beyond any machine")),
            "{budget}: {err}"
        );
    }
}

/// What the property test runs against: a tiny dataset, features, a head and detections.
struct Fixture {
    root: PathBuf,
    data: PathBuf,
    features: PathBuf,
    head: PathBuf,
    detections: PathBuf,
    next: AtomicUsize,
}

impl Fixture {
    fn build(root: &Path) -> Self {
        let data = tiny_dataset(root, 2);
        let gt = data.join("ground_truth.json");
        let features = root.join("features");
        let (ok, err) = extract_tiny(&data, &features, &[]);
        assert!(ok, "{err}");
        let head = root.join("head");
        let (ok, _, err) = train_head_tiny(&features, &gt, &head, &[]);
        assert!(ok, "{err}");
        let detections = root.join("detections.json");
        let (ok, _, err) = lofi(&[
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
        assert!(ok, "{err}");
        Self {
            root: root.to_path_buf(),
            data,
            features,
            head,
            detections,
            next: AtomicUsize::new(0),
        }
    }

    /// A fresh output path for one case.
    fn fresh(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        s(&self.root.join(format!("out-{n}"))).to_string()
    }

    /// `lofi <command> ... <flag> <value>` with valid inputs for everything else.
    fn args(&self, command: &str, flag: &str, value: &str) -> Vec<String> {
        let gt = s(&self.data.join("ground_truth.json")).to_string();
        let videos = s(&self.data.join("videos")).to_string();
        let data = s(&self.data).to_string();
        let feats = s(&self.features).to_string();
        let mut v: Vec<String> = match command {
            "probe" => vec!["probe".into(), videos, "--ground-truth".into(), gt],
            "synth" => vec![
                "synth".into(),
                "--preset".into(),
                "tiny".into(),
                "--out".into(),
                self.fresh(),
            ],
            "pretrain" | "train" => vec![
                command.into(),
                "--data".into(),
                data,
                "--preset".into(),
                "tiny".into(),
                "--out".into(),
                self.fresh(),
            ],
            "extract" => vec![
                "extract".into(),
                "--ground-truth".into(),
                gt,
                "--videos".into(),
                videos,
                "--base-width".into(),
                "4".into(),
                "--out".into(),
                self.fresh(),
            ],
            "train-head" => vec![
                "train-head".into(),
                "--features".into(),
                feats,
                "--ground-truth".into(),
                gt,
                "--preset".into(),
                "tiny".into(),
                "--out".into(),
                self.fresh(),
            ],
            "detect" => vec![
                "detect".into(),
                "--head".into(),
                s(&self.head).to_string(),
                "--features".into(),
                feats,
                "--ground-truth".into(),
                gt,
                "--out".into(),
                format!("{}.json", self.fresh()),
            ],
            "report" => vec![
                "report".into(),
                s(&self.head).to_string(),
                "--out".into(),
                format!("{}.html", self.fresh()),
            ],
            "demo" => vec![
                "demo".into(),
                "--size".into(),
                "smoke".into(),
                "--out".into(),
                self.fresh(),
            ],
            "eval" => vec![
                "eval".into(),
                "detection".into(),
                "--ground-truth".into(),
                gt,
                "--predictions".into(),
                s(&self.detections).to_string(),
            ],
            other => panic!("no fixture for {other}"),
        };
        v.push(flag.into());
        v.push(match flag {
            "--tiou" => format!("0.5:0.95:{value}"),
            _ => value.into(),
        });
        v
    }
}

/// Every numeric argument of every subcommand (seeds take any number and are left out).
const NUMERIC: &[(&str, &str)] = &[
    ("synth", "--workers"),
    ("probe", "--tolerance"),
    ("probe", "--workers"),
    ("pretrain", "--epochs"),
    ("train", "--epochs"),
    ("train", "--memory-budget"),
    ("extract", "--depth"),
    ("extract", "--base-width"),
    ("extract", "--num-classes"),
    ("extract", "--snippets"),
    ("extract", "--frames"),
    ("extract", "--size"),
    ("extract", "--workers"),
    ("train-head", "--snippets"),
    ("train-head", "--epochs"),
    ("train-head", "--lr"),
    ("train-head", "--batch-size"),
    ("detect", "--sigma"),
    ("detect", "--top-k"),
    ("detect", "--top-classes"),
    ("report", "--videos"),
    ("report", "--top"),
    ("demo", "--seeds"),
    ("eval", "--tiou"),
];

/// Absurd numbers as people type them: huge, negative, not a number, overflowing.
fn absurd() -> impl Strategy<Value = String> {
    prop_oneof![
        (1_000_000u64..=u64::MAX).prop_map(|v| v.to_string()),
        Just("18446744073709551616".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("1e308".to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
    ]
}

/// Runs one case: no signal, no panic, no allocation failure, and a failure says why.
fn check_case(fixture: &Fixture, command: &str, flag: &str, value: &str) -> Result<(), String> {
    let args = fixture.args(command, flag, value);
    match run_with_deadline(&args, Duration::from_secs(4)) {
        End::StillRunning => Ok(()),
        End::Exited(None, err) => Err(format!("lofi {args:?} was killed by a signal: {err}")),
        End::Exited(code, err)
            if code == Some(101)
                || err.contains("panicked")
                || err.contains("memory allocation of") =>
        {
            Err(format!("lofi {args:?} aborted ({code:?}): {err}"))
        }
        End::Exited(Some(code), err) if code != 0 && !err.contains("error") => Err(format!(
            "lofi {args:?} failed ({code}) without saying why: {err}"
        )),
        End::Exited(..) => Ok(()),
    }
}

#[test]
fn no_numeric_argument_aborts_or_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = Fixture::build(dir.path());
    // Every argument with the largest numbers a 64-bit parser takes ...
    for &(command, flag) in NUMERIC {
        for value in ["18446744073709551615", "99999999999"] {
            if let Err(e) = check_case(&fixture, command, flag, value) {
                panic!("{e}");
            }
        }
    }
    // ... and drawn absurd values (a fixed seed: CI sees the same cases every run).
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(11),
        ..ProptestConfig::default()
    };
    proptest!(config, |(which in 0..NUMERIC.len(), value in absurd())| {
        let (command, flag) = NUMERIC[which];
        let checked = check_case(&fixture, command, flag, &value);
        prop_assert!(checked.is_ok(), "{}", checked.err().unwrap_or_default());
    });
}

/// Issue 26, item 5: sizes that grow with the input were not checked before the work:
/// `extract --stride-seconds 1e-9` grew until the kernel's OOM killer ended it at 24 GB, and
/// `train-head --snippets 1000` aborted on a 32 GB allocation (SGAlign's L^3 tables). Run under an
/// address-space cap, as a shell's `ulimit -v` sets it, each must exit 1 with a message before
/// writing a feature file or a head.
#[test]
fn sizes_that_grow_with_the_input_are_refused_before_the_work_under_a_memory_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 11);
    let gt = data.join("ground_truth.json");
    let feats = dir.path().join("features");
    let (ok, err) = extract_tiny(&data, &feats, &[]);
    assert!(ok, "{err}");
    let capped = |args: &[&str]| {
        // 8 GiB of address space: far below what either command asked for.
        let mut script = String::from("ulimit -v 8388608 && exec \"$0\"");
        for i in 1..=args.len() {
            script.push_str(&format!(" \"${{{i}}}\""));
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(common::lofi_bin())
            .args(args)
            .output()
            .expect("run sh");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let strided = dir.path().join("strided");
    let videos = data.join("videos");
    let (code, err) = capped(&[
        "extract",
        "--ground-truth",
        s(&gt),
        "--videos",
        s(&videos),
        "--out",
        s(&strided),
        "--depth",
        "18",
        "--base-width",
        "4",
        "--size",
        "32",
        "--stride-seconds",
        "1e-9",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("finer than one frame"), "{err}");
    let npy = std::fs::read_dir(&strided)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "npy"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(npy, 0, "a feature file was written");
    let head = dir.path().join("head");
    let (code, err) = capped(&[
        "train-head",
        "--features",
        s(&feats),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&head),
        "--preset",
        "tiny",
        "--snippets",
        "1000",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("SGAlign's sampling tables"), "{err}");
    assert!(!head.join("head.bpk").exists());
}
