//! Like for like through every stage (issue 23): a pre-trained encoder and a LoFi-trained one,
//! both from `--preset tiny`, extract at the same fidelity and sampling with no fidelity flag and
//! no preset (their model cards say what they were trained for); `lofi train` without a preset
//! takes the starting encoder's architecture and fidelity from its card; a run trained on windows of
//! stride features extracts at the stride its card records; and weights swapped under a card
//! are refused in one line.

use std::path::Path;

mod common;
use common::{lofi, s, tiny_dataset};

/// `index.json` of a feature folder.
fn index(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("index.json")).expect("index.json");
    serde_json::from_str(&text).expect("index is JSON")
}

/// `lofi extract` of `data` into `out` with `encoder` and nothing else.
fn extract(data: &Path, encoder: &Path, out: &Path) -> (bool, String) {
    let (ok, _, err) = lofi(&[
        "extract",
        "--ground-truth",
        s(&data.join("ground_truth.json")),
        "--videos",
        s(&data.join("videos")),
        "--encoder",
        s(encoder),
        "--out",
        s(out),
    ]);
    (ok, err)
}

#[test]
fn pretrained_and_trained_encoders_extract_alike_from_their_cards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 3);
    let pre = dir.path().join("pretrain");
    let (ok, _, err) = lofi(&[
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
    let run = dir.path().join("train");
    let (ok, _, err) = lofi(&[
        "train",
        "--data",
        s(&data),
        "--encoder",
        s(&pre),
        "--out",
        s(&run),
        "--preset",
        "tiny",
        "--epochs",
        "1",
    ]);
    assert!(ok, "train failed: {err}");
    assert!(
        err.contains("full fidelity 16 x 1 x 64 px from its card")
            && err.contains("(`lofi pretrain`)"),
        "train does not say it took the encoder's card: {err}"
    );
    // Without --preset, `lofi train` takes the encoder's architecture and the fidelity it was
    // trained for from its card (the defaults would ask for the paper's width-64 network at
    // 100 x 224 and refuse the width-4 weights).
    let bare = dir.path().join("train-no-preset");
    let (ok, _, err) = lofi(&[
        "train",
        "--data",
        s(&data),
        "--encoder",
        s(&pre),
        "--out",
        s(&bare),
        "--epochs",
        "1",
        "--schedule",
        "st",
    ]);
    assert!(ok, "train without a preset failed: {err}");
    let config: toml::Value = std::fs::read_to_string(bare.join("config.toml"))
        .expect("config")
        .parse()
        .expect("toml");
    assert_eq!(
        config["full"]["snippets"].as_integer(),
        Some(16),
        "{config}"
    );
    assert_eq!(config["full"]["size"].as_integer(), Some(64), "{config}");
    assert_eq!(
        config["encoder"]["base_width"].as_integer(),
        Some(4),
        "{config}"
    );

    let mut indexes = Vec::new();
    for (name, encoder) in [("frozen", &pre), ("lofi", &run)] {
        let out = dir.path().join(format!("features-{name}"));
        let (ok, err) = extract(&data, encoder, &out);
        assert!(ok, "extract {name} failed: {err}");
        let line = err
            .lines()
            .find(|l| l.contains("extract: "))
            .unwrap_or_else(|| panic!("no line of sources: {err}"));
        assert!(
            line.contains("L, F, S, sampling, architecture from its card"),
            "{line}"
        );
        indexes.push(index(&out));
    }
    for key in ["snippets", "frames_per_snippet", "size", "sampling"] {
        assert_eq!(indexes[0][key], indexes[1][key], "{key} differs");
    }
    assert_eq!(indexes[0]["snippets"], 16);
    assert_eq!(indexes[0]["size"], 64);

    // The trained encoder's weights under the pre-trained one's card: the same architecture and
    // byte count, another hash.
    let swapped = dir.path().join("swapped");
    std::fs::create_dir_all(&swapped).expect("mkdir");
    std::fs::copy(pre.join("encoder.json"), swapped.join("encoder.json")).expect("card");
    std::fs::copy(run.join("encoder.bpk"), swapped.join("encoder.bpk")).expect("weights");
    assert_eq!(
        std::fs::metadata(pre.join("encoder.bpk")).expect("a").len(),
        std::fs::metadata(run.join("encoder.bpk")).expect("b").len(),
        "the swap keeps the size, so only the hash can tell"
    );
    let (ok, err) = extract(&data, &swapped, &dir.path().join("features-swapped"));
    assert!(!ok, "swapped weights were accepted: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("sha256:"))
        .unwrap_or_else(|| panic!("no hash in the error: {err}"));
    assert!(line.contains("encoder.json"), "{line}");
    assert!(line.contains("lofi pretrain"), "{line}");
    assert_eq!(line.matches("sha256:").count(), 2, "{line}");
    assert!(!dir.path().join("features-swapped/index.json").exists());
}

#[test]
fn a_run_on_windows_of_stride_features_extracts_at_its_stride() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 4);
    // Windows of 16 snippets every 8, snippets every 4 frames (0.4 s at 10 fps).
    let mut config = lofi_train::TrainConfig::tiny();
    config.full.size = 32;
    config.epochs = 1;
    config.head = config.head.with_max_duration(Some(8));
    config.sampling = lofi_video::Sampling::Stride {
        stride_frames: Some(4),
        stride_seconds: None,
    };
    config.temporal = lofi_head::Temporal::Windows { window_stride: 8 };
    let path = dir.path().join("windows.toml");
    lofi_train::config::write_config(&config, &path).expect("config");
    let run = dir.path().join("train");
    let (ok, _, err) = lofi(&[
        "train",
        "--data",
        s(&data),
        "--config",
        s(&path),
        "--out",
        s(&run),
    ]);
    assert!(ok, "train failed: {err}");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("encoder.json")).expect("card"))
            .expect("json");
    assert_eq!(card["version"], 2);
    assert_eq!(card["input"]["sampling"]["stride_frames"], 4, "{card}");
    assert_eq!(card["input"]["window_stride"], 8, "{card}");

    let out = dir.path().join("features");
    let (ok, err) = extract(&data, &run, &out);
    assert!(ok, "extract failed: {err}");
    assert!(
        err.contains("stride 4 frames") && err.contains("sampling, architecture from its card"),
        "{err}"
    );
    let idx = index(&out);
    assert_eq!(idx["sampling"]["mode"], "stride", "{idx}");
    assert_eq!(idx["sampling"]["stride_frames"], 4, "{idx}");
    assert_eq!(idx["size"], 32);
}

/// THUMOS14's layout (`Validation` to train on, `Test` to test on; no `training`) through every
/// stage with `--preset tiny` and no subset flag anywhere: every stage finds the subsets by their
/// names, detect and eval run on `Test`, and no epoch is chosen on it.
#[test]
fn a_thumos_layout_goes_through_every_stage_without_a_subset_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 6);
    let text = std::fs::read_to_string(data.join("ground_truth.json")).expect("gt");
    let mut gt: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut test_videos = Vec::new();
    for (id, v) in gt["database"].as_object_mut().expect("database") {
        let renamed = match v["subset"].as_str() {
            Some("training") => "Validation",
            Some("validation") => {
                test_videos.push(id.clone());
                "Test"
            }
            other => panic!("unexpected subset {other:?}"),
        };
        v["subset"] = renamed.into();
    }
    assert!(!test_videos.is_empty());
    let gt_path = dir.path().join("thumos.json");
    std::fs::write(&gt_path, gt.to_string()).expect("written");
    let videos = data.join("videos");
    let run = |args: &[&str]| {
        let (ok, out, err) = lofi(args);
        assert!(ok, "lofi {args:?} failed: {err}");
        (out, err)
    };
    let card = |path: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).expect("card")).expect("json")
    };
    let p = |name: &str| dir.path().join(name);

    run(&[
        "pretrain",
        "--ground-truth",
        s(&gt_path),
        "--videos",
        s(&videos),
        "--out",
        s(&p("pre")),
        "--preset",
        "tiny",
        "--epochs",
        "1",
    ]);
    let subsets = &card(&p("pre/encoder.json"))["subsets"];
    assert_eq!(
        (subsets["train"].as_str(), subsets["evaluation"].as_str()),
        (Some("Validation"), Some("Test"))
    );
    run(&[
        "train",
        "--ground-truth",
        s(&gt_path),
        "--videos",
        s(&videos),
        "--encoder",
        s(&p("pre")),
        "--out",
        s(&p("lofi")),
        "--preset",
        "tiny",
        "--epochs",
        "1",
    ]);
    let subsets = &card(&p("lofi/encoder.json"))["subsets"];
    assert_eq!(
        (subsets["train"].as_str(), subsets["evaluation"].as_str()),
        (Some("Validation"), Some("Test"))
    );
    assert_eq!(subsets["selection"], "last epoch");
    run(&[
        "extract",
        "--ground-truth",
        s(&gt_path),
        "--videos",
        s(&videos),
        "--encoder",
        s(&p("lofi")),
        "--out",
        s(&p("features")),
    ]);
    let (_, err) = run(&[
        "train-head",
        "--features",
        s(&p("features")),
        "--ground-truth",
        s(&gt_path),
        "--out",
        s(&p("head")),
        "--preset",
        "tiny",
        "--epochs",
        "2",
    ]);
    assert!(err.contains("\"Test\" is a test set"), "{err}");
    let head = card(&p("head/head.json"));
    assert_eq!(head["subsets"]["train"], "Validation");
    assert_eq!(head["subsets"]["evaluation"], "Test");
    assert_eq!(head["subsets"]["selection"], "last epoch", "{head}");
    // No epoch was chosen on Test: no validation ran, and best.json says the last epoch was
    // kept, and why.
    let best = card(&p("head/best.json"));
    assert!(best["validation_loss"].is_null(), "{best}");
    assert!(
        best["rule"]
            .as_str()
            .is_some_and(|r| r.starts_with("last epoch") && r.contains("\"Test\" is a test set")),
        "{best}"
    );
    let metrics = std::fs::read_to_string(p("head/metrics.jsonl")).expect("metrics");
    assert!(!metrics.contains("\"validation\""), "{metrics}");

    let det = p("detections.json");
    let (_, err) = run(&[
        "detect",
        "--head",
        s(&p("head")),
        "--features",
        s(&p("features")),
        "--ground-truth",
        s(&gt_path),
        "--out",
        s(&det),
        "--preset",
        "tiny",
    ]);
    assert!(err.contains("detecting on subset \"Test\""), "{err}");
    let detections: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&det).expect("detections")).expect("json");
    assert_eq!(detections["subset"], "Test");
    let mut detected: Vec<String> = detections["results"]
        .as_object()
        .expect("results")
        .keys()
        .cloned()
        .collect();
    detected.sort();
    test_videos.sort();
    assert_eq!(detected, test_videos);
    let (out, err) = run(&[
        "eval",
        "detection",
        "--ground-truth",
        s(&gt_path),
        "--predictions",
        s(&det),
        "--json",
    ]);
    assert!(err.contains("evaluating on subset \"Test\""), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("eval json");
    let map = report["average_mAP"].as_f64().expect("average mAP");
    assert!((0.0..=1.0).contains(&map), "{report}");
}
