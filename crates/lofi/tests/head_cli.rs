//! `lofi extract` (+ `--verify`), `lofi train-head`, `lofi detect` and `lofi eval detection`
//! end to end through the real binary at tiny sizes, plus their refusals of bad input.

mod common;
use common::{lofi, lofi_env, s, tiny_dataset};

/// `--features FILE.h5` (a module of this binary, so that CI links one CLI head test).
#[path = "head_cli/h5.rs"]
mod h5;

/// Metrics lines without the fields that measure time or memory.
fn comparable_metrics(run: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json line");
            if let Some(o) = v.as_object_mut() {
                for k in [
                    "elapsed_s",
                    "step_s",
                    "peak_memory_bytes",
                    "device_reserved_bytes",
                ] {
                    o.remove(k);
                }
            }
            v
        })
        .collect()
}

/// Every value of a saved head or classifier, loaded into its architecture (the file's header
/// also holds metadata that may differ between equal models).
fn weights(path: &std::path::Path) -> Vec<f32> {
    let meta = lofi_head::HeadMeta::read(path.parent().expect("run folder")).expect("head.json");
    let device = burn::tensor::Device::flex();
    if path.ends_with("head.bpk") {
        let loaded = meta
            .arch
            .load(meta.in_channels, path, &device)
            .expect("load head");
        lofi_train::model::flat_parameters(&loaded).expect("readable")
    } else {
        let classifier = meta.classifier.expect("classifier");
        let loaded = lofi_model::checkpoint::load(classifier.init(&device), path).expect("load");
        lofi_train::model::flat_parameters(&loaded).expect("readable")
    }
}

#[test]
fn extract_train_head_detect_eval_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 5);
    let gt = data.join("ground_truth.json");
    let feats = dir.path().join("features");
    let config = dir.path().join("extract.toml");
    std::fs::write(
        &config,
        "snippets = 8\nsize = 32\n[encoder]\nseed = 2\n[encoder.model]\ndepth = 18\n\
         base_width = 8\nshift = true\nshift_div = 8\nfrozen_bn = false\n",
    )
    .expect("write config");
    let videos = data.join("videos");
    let extract_args = [
        "extract",
        "--ground-truth",
        s(&gt),
        "--videos",
        s(&videos),
        "--out",
        s(&feats),
        "--config",
        s(&config),
    ];
    let (ok, _, err) = lofi(&extract_args);
    assert!(ok, "extract failed: {err}");
    assert!(feats.join("index.json").is_file() && feats.join("config.toml").is_file());
    let (ok, _, err) = lofi(&extract_args);
    assert!(ok && err.contains("16 already done"), "resume: {err}");
    let (ok, _, err) = lofi(&["extract", "--ground-truth", s(&gt), "--verify", s(&feats)]);
    assert!(ok, "verify failed: {err}");

    // Head runs with one rayon thread, so that every reduction runs in a fixed order and the
    // exact-resume check below can compare bit for bit.
    let one_thread = [("RAYON_NUM_THREADS", "1")];
    let head_run = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "train-head",
            "--features",
            s(&feats),
            "--ground-truth",
            s(&gt),
            "--out",
            s(out),
            "--preset",
            "tiny",
            "--snippets",
            "8",
            "--epochs",
            "3",
        ];
        args.extend_from_slice(extra);
        lofi_env(&args, &one_thread)
    };
    let run = dir.path().join("head");
    let (ok, _, err) = head_run(&run, &[]);
    assert!(ok, "train-head failed: {err}");
    for f in [
        "config.toml",
        "metrics.jsonl",
        "head.bpk",
        "head.json",
        "checkpoints/last",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }

    // Exact resume: a run stopped after 4 steps and resumed ends with the metrics and the head
    // of the uninterrupted one above.
    let (whole, cut) = (&run, dir.path().join("cut"));
    let (ok, _, err) = head_run(&cut, &["--stop-after-batches", "4"]);
    assert!(
        !ok && err.contains("--resume"),
        "the stop hook ends the run: {err}"
    );
    let (ok, _, err) = head_run(&cut, &["--resume"]);
    assert!(ok, "resume failed: {err}");
    assert_eq!(comparable_metrics(&cut), comparable_metrics(whole));
    for f in ["head.bpk", "classifier.bpk"] {
        assert_eq!(
            weights(&cut.join(f)),
            weights(&whole.join(f)),
            "{f} differs after resume"
        );
    }
    let (ok, _, err) = head_run(whole, &[]);
    assert!(!ok && err.contains("already holds a run"), "{err}");

    let det = dir.path().join("detections.json");
    let eval = dir.path().join("eval.json");
    let cls = dir.path().join("class_scores.json");
    // `lofi detect` with this run's head, features and ground truth, then `extra`.
    let detect = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "detect",
            "--head",
            s(&run),
            "--features",
            s(&feats),
            "--ground-truth",
            s(&gt),
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        lofi(&args)
    };
    let (ok, _, err) = detect(
        &det,
        &["--eval-out", s(&eval), "--class-scores-out", s(&cls)],
    );
    assert!(ok, "detect failed: {err}");
    assert!(
        !err.contains("trained on"),
        "validation is the default: {err}"
    );
    // Detecting on the subset the head was trained on works but says so.
    let (ok, _, err) = detect(
        &dir.path().join("on_training.json"),
        &["--subset", "training"],
    );
    assert!(
        ok && err.contains("the subset the head was trained on"),
        "{err}"
    );
    let (ok, out, err) = lofi(&[
        "eval",
        "detection",
        "--ground-truth",
        s(&gt),
        "--predictions",
        s(&det),
        "--json",
    ]);
    assert!(ok, "eval failed: {err}");
    let from_eval: serde_json::Value = serde_json::from_str(&out).expect("eval json");
    let from_detect: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&eval).expect("eval.json"))
            .expect("eval.json parses");
    assert_eq!(
        from_eval, from_detect,
        "eval.json is exactly `lofi eval detection --json`"
    );
    let avg = from_eval["average_mAP"].as_f64().expect("average_mAP");
    assert!((0.0..=1.0).contains(&avg));
    let classes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cls).expect("class scores"))
            .expect("class scores parse");
    assert!(classes["class"].as_array().is_some_and(|c| c.len() >= 2));

    // Verify catches a deleted and a truncated file and exits non-zero.
    let mut npys: Vec<_> = std::fs::read_dir(&feats)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .collect();
    npys.sort();
    std::fs::remove_file(&npys[0]).expect("delete");
    let bytes = std::fs::read(&npys[1]).expect("read");
    std::fs::write(&npys[1], &bytes[..bytes.len() - 3]).expect("truncate");
    let (ok, _, err) = lofi(&["extract", "--ground-truth", s(&gt), "--verify", s(&feats)]);
    assert!(!ok);
    assert!(
        err.contains("missing:") && err.contains("corrupt:"),
        "{err}"
    );
    assert!(err.contains("1 missing and 1 corrupt"), "{err}");
}

#[test]
fn bad_settings_are_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("head.toml");
    std::fs::write(&cfg, "epochs = 2\nlearnig_rate = 0.1\n").expect("write");
    let out = dir.path().join("run");
    let (ok, _, err) = lofi(&[
        "train-head",
        "--features",
        s(dir.path()),
        "--ground-truth",
        s(&dir.path().join("gt.json")),
        "--out",
        s(&out),
        "--config",
        s(&cfg),
    ]);
    assert!(!ok && err.contains("learnig_rate"), "{err}");
    assert!(!out.exists(), "nothing written before validation");
    let (ok, _, err) = lofi(&[
        "extract",
        "--ground-truth",
        "gt.json",
        "--videos",
        ".",
        "--out",
        s(&out),
        "--shard",
        "3/3",
    ]);
    assert!(!ok && err.contains("K/N"), "{err}");
    let (ok, _, err) = lofi(&[
        "detect",
        "--head",
        s(&out),
        "--features",
        ".",
        "--ground-truth",
        "gt.json",
        "--out",
        "d.json",
        "--sigma",
        "0",
    ]);
    assert!(!ok && err.contains("soft_nms_sigma"), "{err}");
}

/// The `config.toml` recorded beside the features can be reused (`--config`) from any directory:
/// a checkpoint given relative to the first run's working directory is recorded absolute.
#[test]
fn recorded_extract_config_works_from_another_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 11);
    let first = dir.path().join("first");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&first).expect("mkdir");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let device = lofi_head::cpu_device();
    let encoder = lofi_model::ResNetConfig::tiny(18, 8)
        .init(&device)
        .expect("tiny encoder");
    lofi_model::checkpoint::save(&encoder, &first.join("enc.bpk")).expect("save checkpoint");
    let gt = data.join("ground_truth.json");
    let videos = data.join("videos");
    let run_in = |cwd: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lofi"))
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("run lofi");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "lofi {args:?} in {}: {err}",
            cwd.display()
        );
    };
    // First run: checkpoint and output folder relative to `first`.
    run_in(
        &first,
        &[
            "extract",
            "--ground-truth",
            s(&gt),
            "--videos",
            s(&videos),
            "--out",
            "features",
            "--encoder",
            "enc.bpk",
            "--depth",
            "18",
            "--base-width",
            "8",
            "--snippets",
            "8",
            "--size",
            "32",
        ],
    );
    let recorded = first.join("features/config.toml");
    let text = std::fs::read_to_string(&recorded).expect("recorded config");
    let config: toml::Value = toml::from_str(&text).expect("recorded config parses");
    let checkpoint = config["encoder"]["checkpoint"]
        .as_str()
        .expect("checkpoint");
    assert_eq!(
        std::path::Path::new(checkpoint),
        first.join("enc.bpk"),
        "recorded absolute: {text}"
    );
    // Second run: from another directory, with nothing but the recorded config.
    run_in(
        &elsewhere,
        &[
            "extract",
            "--ground-truth",
            s(&gt),
            "--videos",
            s(&videos),
            "--out",
            "again",
            "--config",
            s(&recorded),
        ],
    );
    let again = elsewhere.join("again");
    assert_eq!(
        std::fs::read_to_string(again.join("config.toml")).expect("second record"),
        text,
        "the same settings, recorded the same way"
    );
    let mut compared = 0;
    for entry in std::fs::read_dir(first.join("features")).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "npy") {
            let name = path.file_name().expect("name");
            let a = std::fs::read(&path).expect("read first");
            let b = std::fs::read(again.join(name)).expect("read second");
            assert!(
                a == b,
                "{name:?} differs: the second run did not use the same encoder"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 16, "every video of the tiny set");
}
