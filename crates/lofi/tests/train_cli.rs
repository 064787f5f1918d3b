//! `lofi pretrain` and `lofi train` end to end through the real binary, at tiny sizes: files and
//! metrics of a run, an exact resume after a stop in the middle of an epoch (with momentum, so the
//! optimizer state is part of it), a data-parallel run on a device list, and bad input rejected
//! before any work.
//!
//! Both runs of the resume check use one rayon thread (`RAYON_NUM_THREADS=1`) so that every
//! reduction of burn's CPU backend runs in a fixed order and the comparison can be exact.

use std::path::Path;

mod common;
use common::{lofi_env, s, tiny_dataset};

/// One rayon thread: every reduction of the CPU backend in a fixed order (see the module docs).
fn lofi(args: &[&str]) -> (bool, String, String) {
    lofi_env(args, &[("RAYON_NUM_THREADS", "1")])
}

/// Metrics lines without the fields that measure time or memory.
fn comparable_metrics(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json line");
            if let Some(o) = v.as_object_mut() {
                for k in ["elapsed_s", "step_s", "peak_memory_bytes"] {
                    o.remove(k);
                }
            }
            v
        })
        .collect()
}

#[test]
fn pretrain_train_and_exact_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 5);

    let pre = dir.path().join("pretrain");
    let (ok, out, err) = lofi(&[
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
    assert!(ok, "pretrain failed: {err}");
    assert!(out.contains("validation accuracy"), "{out}");
    let encoder = pre.join("encoder.bpk");
    assert!(encoder.is_file());

    // The tiny preset with momentum, so that the resume check covers the optimizer's state.
    let mut tiny = lofi_train::TrainConfig::tiny();
    tiny.optimizer.momentum = 0.9;
    let config_path = dir.path().join("tiny-momentum.toml");
    lofi_train::config::write_config(&tiny, &config_path).expect("config written");
    let train = |out_dir: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            s(&data),
            "--config",
            s(&config_path),
            "--schedule",
            "short-cycle",
            "--epochs",
            "2",
            "--encoder",
            s(&encoder),
            "--out",
            s(out_dir),
        ];
        args.extend_from_slice(extra);
        lofi(&args)
    };

    // Uninterrupted: 12 training videos in batches of 4 = 3 steps per epoch.
    let a = dir.path().join("a");
    let (ok, out, err) = train(&a, &[]);
    assert!(ok, "train failed: {err}");
    for name in ["s", "t", "st"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(name)),
            "{name} row missing: {out}"
        );
    }
    for f in [
        "config.toml",
        "metrics.jsonl",
        "encoder.bpk",
        "head.bpk",
        "summary.json",
        "checkpoints/last",
        "checkpoints/epoch-0.bpk",
        "checkpoints/epoch-1.bpk",
    ] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    let metrics = comparable_metrics(&a);
    assert_eq!(metrics.len(), 10, "6 steps + 2 epoch ends + 2 validations");
    let of = |event: &str| -> Vec<&serde_json::Value> {
        metrics.iter().filter(|m| m["event"] == event).collect()
    };
    assert_eq!((of("step").len(), of("epoch_end").len()), (6, 2));
    for m in of("step").into_iter().chain(of("epoch_end")) {
        assert!(m["loss"].as_f64().is_some_and(f64::is_finite), "{m}");
    }
    let validations = of("validation");
    assert_eq!(validations.len(), 2);
    assert!(validations.iter().all(|m| m["loss"].as_f64().is_some()));
    assert!(validations.iter().all(|m| m["average_mAP"]
        .as_f64()
        .is_some_and(|x| (0.0..=1.0).contains(&x))));

    // Stopped after 4 batches (epoch 1, batch 0), then resumed.
    let b = dir.path().join("b");
    let (ok, _, err) = train(&b, &["--stop-after-batches", "4"]);
    assert!(!ok, "the stop hook must end the run with an error");
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(
        comparable_metrics(&b).len(),
        6,
        "epoch 0 (3 steps, end, validation) and one step"
    );
    let (ok, _, err) = train(&b, &["--resume"]);
    assert!(ok, "resume failed: {err}");
    assert_eq!(comparable_metrics(&b), metrics, "resumed metrics differ");
    let config = lofi_train::TrainConfig::tiny();
    let wa = lofi_train::model::saved_run_parameters(&config, &a).expect("run a weights");
    let wb = lofi_train::model::saved_run_parameters(&config, &b).expect("run b weights");
    assert!(!wa.is_empty() && wa.iter().all(|x| x.is_finite()));
    assert!(wa == wb, "weights differ after resume");
    let fresh = lofi_train::model::saved_run_parameters(&config, &pre);
    assert!(fresh.is_err(), "the pretrain run has no head.bpk");

    // A finished run is not silently overwritten.
    let (ok, _, err) = train(&a, &[]);
    assert!(!ok && err.contains("--resume"), "{err}");

    // A device list trains data parallel (two replicas on the CPU here) ...
    let c = dir.path().join("c");
    let (ok, _, err) = train(&c, &["--device", "cpu,cpu"]);
    assert!(ok, "data-parallel train failed: {err}");
    let steps: Vec<_> = comparable_metrics(&c)
        .into_iter()
        .filter(|m| m["event"] == "step")
        .collect();
    assert_eq!(steps.len(), 6);
    assert!(steps.iter().all(|m| m["replicas"] == 2), "{steps:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.join("summary.json")).expect("summary"))
            .expect("summary json");
    assert_eq!(
        summary["devices"].as_array().map(Vec::len),
        Some(2),
        "{summary}"
    );
    // ... and a single-device stage refuses one, naming the alternative.
    let (ok, _, err) = lofi(&[
        "--device",
        "cpu,cpu",
        "extract",
        "--ground-truth",
        s(&data.join("ground_truth.json")),
        "--videos",
        s(&data.join("videos")),
        "--out",
        s(&dir.path().join("features")),
    ]);
    assert!(!ok, "extract must refuse two devices");
    assert!(
        err.contains("only `lofi train`") && err.contains("--shard"),
        "{err}"
    );
}

#[test]
fn bad_configs_fail_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    let out = dir.path().join("run");
    for (text, needle) in [
        ("epochs = 2\nlearning_rate = 0.1\n", "learning_rate"),
        ("[full]\nsnippets = 1\nsize = 64\n", "L >= 2"),
        ("[full]\nsnippets = 16\nsize = 0\n", "size"),
        ("memory_budget = \"12 parsecs\"\n", "parsecs"),
    ] {
        std::fs::write(&cfg, text).expect("write config");
        let (ok, _, err) = lofi(&[
            "train",
            "--config",
            s(&cfg),
            "--data",
            s(dir.path()),
            "--out",
            s(&out),
        ]);
        assert!(!ok, "{text} accepted");
        assert!(err.contains(needle), "{text}: {err}");
        assert!(!out.exists(), "{text}: the run folder was created");
    }
    std::fs::write(&cfg, "segmnets = 4\n").expect("write config");
    let (ok, _, err) = lofi(&[
        "pretrain",
        "--config",
        s(&cfg),
        "--data",
        s(dir.path()),
        "--out",
        s(&out),
    ]);
    assert!(!ok && err.contains("segmnets"), "{err}");
}

/// Issue 11, problem 4: the planner's probe steps drew from the run's random state, so a budget
/// whose plan changes nothing (every fidelity in one pass of the whole batch) still changed the
/// training numbers. Its probes now have their own random state.
#[test]
fn a_memory_budget_that_changes_no_batch_changes_no_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 6);
    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            s(&data),
            "--preset",
            "tiny",
            "--schedule",
            "long-cycle",
            "--epochs",
            "2",
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        let (ok, _, err) = lofi(&args);
        assert!(ok, "{err}");
    };
    let (plain, budget) = (dir.path().join("plain"), dir.path().join("budget"));
    train(&plain, &[]);
    train(&budget, &["--memory-budget", "auto"]);
    let plan: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(budget.join("memory_plan.json")).expect("plan"),
    )
    .expect("plan parses");
    let fidelities = plan["fidelities"].as_array().expect("fidelities");
    assert!(!fidelities.is_empty());
    for f in fidelities {
        assert_eq!(f["accumulation"], 1, "the budget must be a no-op here: {f}");
    }
    assert_eq!(comparable_metrics(&budget), comparable_metrics(&plain));
    let config = lofi_train::TrainConfig::tiny();
    let a = lofi_train::model::saved_run_parameters(&config, &plain).expect("weights");
    let b = lofi_train::model::saved_run_parameters(&config, &budget).expect("weights");
    assert!(a == b, "weights differ with a no-op budget");
}
