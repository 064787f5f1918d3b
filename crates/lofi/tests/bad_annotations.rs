//! Ground truth as people have it, through the real binary: every stage that reads an
//! annotation file takes what `lofi eval` takes (no `version`, subsets in any letter case, extra
//! keys), and refuses or reports, with a message naming the file and the video, what it cannot
//! use (listed videos without a file, durations that disagree with the file, ids that are not safe
//! file names). Also: the files lofi writes carry the keys the official ActivityNet evaluator
//! insists on.
//!
//! One tiny synthetic dataset is shared by the tests (read only); each test writes its own
//! annotation files and outputs into its own folder.

mod common;
use common::{lofi, s, tiny_dataset};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The shared dataset: `lofi synth --preset tiny --seed 3` (16 videos, 4 of them validation).
fn dataset() -> &'static Path {
    static DATA: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, data) = DATA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = tiny_dataset(dir.path(), 3);
        (dir, data)
    });
    data
}

fn videos() -> PathBuf {
    dataset().join("videos")
}

/// The synthetic ground truth as JSON.
fn synth_truth() -> Value {
    let text = std::fs::read_to_string(dataset().join("ground_truth.json")).expect("read gt");
    serde_json::from_str(&text).expect("gt is JSON")
}

fn database(gt: &mut Value) -> &mut serde_json::Map<String, Value> {
    gt["database"].as_object_mut().expect("database")
}

/// Writes `gt` to `dir/name`.
fn write(dir: &Path, name: &str, gt: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(gt).expect("json")).expect("write gt");
    path
}

/// The first video id of `subset` in the synthetic ground truth.
fn first_of(gt: &Value, subset: &str) -> String {
    gt["database"]
        .as_object()
        .expect("database")
        .iter()
        .find(|(_, e)| e["subset"] == subset)
        .map(|(id, _)| id.clone())
        .expect("a video of the subset")
}

/// A small extraction config (L = 4, 32 px, a width-4 TSM-R18 with random weights).
fn extract_config(dir: &Path) -> PathBuf {
    let path = dir.join("extract.toml");
    std::fs::write(
        &path,
        "snippets = 4\nsize = 32\n[encoder]\nseed = 1\n[encoder.model]\ndepth = 18\n\
         base_width = 4\nshift = true\nshift_div = 8\nfrozen_bn = false\n",
    )
    .expect("write config");
    path
}

/// `lofi extract` of `gt` (only `subset`, if given) into `dir/out` with the small config.
fn extract(dir: &Path, gt: &Path, out: &str, extra: &[&str]) -> (bool, String, String) {
    let config = extract_config(dir);
    let out = dir.join(out);
    let videos = videos();
    let mut args = vec![
        "extract",
        "--ground-truth",
        s(gt),
        "--videos",
        s(&videos),
        "--out",
        s(&out),
        "--config",
        s(&config),
    ];
    args.extend_from_slice(extra);
    lofi(&args)
}

/// `lofi pretrain --ground-truth` of `gt` for one tiny epoch into `dir/out`.
fn pretrain(dir: &Path, gt: &Path, out: &str, extra: &[&str]) -> (bool, String, String) {
    let out = dir.join(out);
    let videos = videos();
    let mut args = vec![
        "pretrain",
        "--ground-truth",
        s(gt),
        "--videos",
        s(&videos),
        "--out",
        s(&out),
        "--preset",
        "tiny",
        "--epochs",
        "1",
    ];
    args.extend_from_slice(extra);
    lofi(&args)
}

/// Issue 11: a ground truth without `"version"` was refused by every stage but `eval` ("missing
/// field `version`"). Now extract, train-head, detect and eval all take it; detect's output has
/// the three keys the official evaluator requires.
#[test]
fn ground_truth_without_version_goes_through_extract_train_head_detect_and_eval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gt = synth_truth();
    let top = gt.as_object_mut().expect("object");
    top.remove("version");
    top.remove("taxonomy");
    let gt = write(dir.path(), "no_version.json", &gt);

    let (ok, _, err) = extract(dir.path(), &gt, "features", &[]);
    assert!(ok, "extract refused a ground truth without version: {err}");
    let feats = dir.path().join("features");
    let head = dir.path().join("head");
    let (ok, _, err) = lofi(&[
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
        "4",
        "--epochs",
        "1",
    ]);
    assert!(
        ok,
        "train-head refused a ground truth without version: {err}"
    );
    let det = dir.path().join("detections.json");
    let (ok, _, err) = lofi(&[
        "detect",
        "--head",
        s(&head),
        "--features",
        s(&feats),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&det),
    ]);
    assert!(ok, "detect refused a ground truth without version: {err}");
    let (ok, _, err) = lofi(&[
        "eval",
        "detection",
        "--ground-truth",
        s(&gt),
        "--predictions",
        s(&det),
    ]);
    assert!(ok, "eval: {err}");

    // The official evaluator reads a predictions file only with "version", "results" and
    // "external_data"; detect says that no outside class scores were used.
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&det).expect("detections")).expect("json");
    for key in ["version", "results", "external_data"] {
        assert!(written.get(key).is_some(), "detections.json lacks {key:?}");
    }
    assert_eq!(written["external_data"]["used"], json!(false));
    assert!(written["external_data"]["details"]
        .as_str()
        .is_some_and(|d| d.contains("own classifier")));
    // ... and a ground truth only with "database", "taxonomy" and "version": synth writes them.
    let synth = synth_truth();
    for key in ["database", "taxonomy", "version"] {
        assert!(synth.get(key).is_some(), "ground_truth.json lacks {key:?}");
    }
}

/// THUMOS14 as its common JSON conversion has it: no version, subsets "Validation" and "Test",
/// `fps`, `label_id` and `segment(frames)` beside the seconds, and keys of its own at the top.
/// Pre-training from it trains on "Validation" and validates on "Test"; extract takes
/// `--subset test` in lower case.
#[test]
fn thumos14_style_ground_truth_with_extra_keys_and_capitalised_subsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gt = synth_truth();
    let top = gt.as_object_mut().expect("object");
    top.remove("version");
    top.remove("taxonomy");
    top.insert("classes".into(), json!({"slide_left": 0}));
    for entry in database(&mut gt).values_mut() {
        let subset = match entry["subset"].as_str() {
            Some("training") => "Validation",
            _ => "Test",
        };
        entry["subset"] = json!(subset);
        entry["url"] = json!("");
        for (n, a) in entry["annotations"]
            .as_array_mut()
            .expect("annotations")
            .iter_mut()
            .enumerate()
        {
            let seg = a["segment"].clone();
            let frames: Vec<i64> = seg
                .as_array()
                .expect("segment")
                .iter()
                .map(|t| (t.as_f64().expect("seconds") * 10.0).round() as i64)
                .collect();
            a["segment(frames)"] = json!(frames);
            a["label_id"] = json!(n);
        }
    }
    let gt = write(dir.path(), "thumos_like.json", &gt);

    let (ok, out, err) = pretrain(dir.path(), &gt, "pretrain", &[]);
    assert!(ok, "pretrain: {err}");
    assert!(
        err.contains("of subset \"Validation\", validating on") && err.contains(" of \"Test\", "),
        "pre-training should train on Validation and validate on Test: {err}"
    );
    assert!(out.contains("validation accuracy"), "{out}");
    let (ok, _, err) = extract(dir.path(), &gt, "features", &["--subset", "test"]);
    assert!(ok, "extract --subset test: {err}");
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("features/index.json")).expect("index"),
    )
    .expect("json");
    assert_eq!(index["videos"].as_object().map(|v| v.len()), Some(4));
}

/// Listed videos without a file (two more training videos): one error that counts and names
/// them, before any work, on every stage that reads videos; `--skip-missing-videos` goes on
/// without them and lists them.
#[test]
fn listed_videos_without_a_file_are_counted_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gt = synth_truth();
    let template = database(&mut gt)[&first_of(&synth_truth(), "training")].clone();
    for ghost in ["ghost_1", "ghost_2"] {
        database(&mut gt).insert(ghost.into(), template.clone());
    }
    let gt = write(dir.path(), "ghosts.json", &gt);
    let named = |err: &str, total: usize| {
        assert!(
            err.contains(&format!("2 of {total} videos listed in"))
                && err.contains("ghosts.json")
                && err.contains(": ghost_1, ghost_2;")
                && err.contains("--skip-missing-videos"),
            "{err}"
        );
    };

    let (ok, _, err) = extract(dir.path(), &gt, "features", &["--subset", "training"]);
    assert!(!ok);
    named(&err, 14);
    assert!(!dir.path().join("features").exists(), "nothing written");
    let (ok, _, err) = pretrain(dir.path(), &gt, "pretrain", &[]);
    assert!(!ok);
    named(&err, 14);
    assert!(!dir.path().join("pretrain").exists(), "nothing written");
    let train_out = dir.path().join("train");
    let (ok, _, err) = lofi(&[
        "train",
        "--ground-truth",
        s(&gt),
        "--videos",
        s(&videos()),
        "--out",
        s(&train_out),
        "--preset",
        "tiny",
    ]);
    assert!(!ok);
    named(&err, 14);
    assert!(!train_out.exists(), "nothing written");

    let (ok, _, err) = extract(
        dir.path(),
        &gt,
        "features",
        &["--subset", "training", "--skip-missing-videos"],
    );
    assert!(ok, "skipping was asked for: {err}");
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("features/index.json")).expect("index"),
    )
    .expect("json");
    assert_eq!(index["videos"].as_object().map(|v| v.len()), Some(12));
    let failed: Vec<&str> = index["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert_eq!(failed, ["ghost_1", "ghost_2"]);
}

/// A duration that disagrees with the file: shorter than the file by more than the tolerance is a
/// warning with both numbers (the video is used up to the annotated end); longer is a failure of
/// that video, also with both numbers.
#[test]
fn durations_that_disagree_with_the_file_are_reported_with_both_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gt = synth_truth();
    let ids: Vec<String> = database(&mut gt)
        .iter()
        .filter(|(_, e)| e["subset"] == "validation")
        .map(|(id, _)| id.clone())
        .collect();
    let (short, long) = (&ids[0], &ids[1]);
    let duration = |gt: &mut Value, id: &str| database(gt)[id]["duration"].as_f64().expect("d");
    let (d_short, d_long) = (duration(&mut gt, short), duration(&mut gt, long));
    database(&mut gt)[short.as_str()]["duration"] = json!(d_short - 2.5);
    database(&mut gt)[long.as_str()]["duration"] = json!(d_long + 5.0);
    let gt = write(dir.path(), "durations.json", &gt);

    let (ok, _, err) = extract(dir.path(), &gt, "features", &["--subset", "validation"]);
    assert!(!ok, "the over-long annotation fails its video");
    let warning = format!(
        "the ground truth gives a duration of {:.3} s but the file lasts {:.3} s",
        d_short - 2.5,
        d_short
    );
    assert!(err.contains(&warning), "no warning {warning:?} in: {err}");
    assert!(
        err.contains(&format!("failed: {long}"))
            && err.contains(&format!(
                "video is {d_long:.3} s long but annotated as {:.3} s",
                d_long + 5.0
            )),
        "{err}"
    );
    assert!(err.contains("1 of 4 videos failed"), "{err}");
}

/// An id that is not a safe file name is refused by name by every stage that turns ids into file
/// names, before any work; `lofi eval` opens no file by id and scores the file as the official
/// tool does.
#[test]
fn video_ids_that_are_not_safe_file_names_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gt = synth_truth();
    let template = database(&mut gt)[&first_of(&synth_truth(), "validation")].clone();
    let annotation = template["annotations"][0].clone();
    database(&mut gt).insert("../outside".into(), template);
    let gt = write(dir.path(), "unsafe.json", &gt);
    let refused = |what: &str, (ok, _, err): (bool, String, String)| {
        assert!(!ok, "{what} accepted an unsafe id");
        assert!(
            err.contains("unsafe.json: video ../outside: the id is not a safe file name"),
            "{what}: {err}"
        );
    };

    refused("extract", extract(dir.path(), &gt, "features", &[]));
    assert!(!dir.path().join("features").exists());
    refused("pretrain", pretrain(dir.path(), &gt, "pretrain", &[]));
    let out = dir.path().join("out");
    let feats = dir.path().join("no-features");
    std::fs::create_dir_all(&feats).expect("mkdir");
    refused(
        "train-head",
        lofi(&[
            "train-head",
            "--features",
            s(&feats),
            "--ground-truth",
            s(&gt),
            "--out",
            s(&out),
            "--preset",
            "tiny",
        ]),
    );
    refused(
        "train",
        lofi(&[
            "train",
            "--ground-truth",
            s(&gt),
            "--videos",
            s(&videos()),
            "--out",
            s(&out),
            "--preset",
            "tiny",
        ]),
    );
    refused(
        "probe",
        lofi(&["probe", s(&videos()), "--ground-truth", s(&gt)]),
    );
    assert!(!out.exists(), "nothing written");

    let predictions = write(
        dir.path(),
        "pred.json",
        &json!({"version": "VERSION 1.3", "external_data": {}, "results": {"../outside": [
            {"label": annotation["label"], "score": 0.9, "segment": annotation["segment"]}
        ]}}),
    );
    let (ok, _, err) = lofi(&[
        "eval",
        "detection",
        "--ground-truth",
        s(&gt),
        "--predictions",
        s(&predictions),
    ]);
    assert!(ok, "eval scores what the official tool scores: {err}");
}

/// Issue 26, item 6: `lofi train` said nothing about segments given in frames (29 of 35 ending
/// after their video) or reversed; it now says what is wrong once per subset, with the likely
/// cause (pre-training says it the same way).
#[test]
fn segments_in_frames_or_reversed_are_summarised_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gt = synth_truth();
    let mut first = true;
    for entry in database(&mut gt).values_mut() {
        for a in entry["annotations"].as_array_mut().expect("annotations") {
            let seg = a["segment"].as_array().expect("segment").clone();
            let (start, end) = (seg[0].as_f64().expect("s"), seg[1].as_f64().expect("e"));
            // Frames at 30 fps; the very first one also reversed.
            a["segment"] = if first {
                json!([end * 30.0, start * 30.0])
            } else {
                json!([start * 30.0, end * 30.0])
            };
            first = false;
        }
    }
    let gt = write(dir.path(), "gt.json", &gt);
    let out = dir.path().join("run");
    let (_, _, err) = lofi(&[
        "train",
        "--ground-truth",
        s(&gt),
        "--videos",
        s(&videos()),
        "--out",
        s(&out),
        "--preset",
        "tiny",
        "--schedule",
        "t",
        "--epochs",
        "1",
        "--stop-after-batches",
        "1",
    ]);
    assert!(
        err.contains("annotations end after their video; segments in frames instead of seconds?")
            && err.contains("1 of")
            && err.contains("end where or before they start"),
        "{err}"
    );
    // Once per subset (training and validation), not once per segment.
    assert_eq!(err.matches("segments in frames").count(), 2, "{err}");
}
