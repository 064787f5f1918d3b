//! Like for like through every stage (issue 23): a pre-trained encoder and a LoFi-trained one,
//! both from `--preset tiny`, extract at the same fidelity and sampling with no fidelity flag and
//! no preset (their model cards say what they were trained for); a run trained on windows of
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
    config.head.max_duration = Some(8);
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
