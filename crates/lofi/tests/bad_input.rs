//! Failure class: bad input and what lofi says about it (issue 11, point 5): an I/O error says
//! its cause once, `probe` fails when videos are missing or unreadable and refuses a tolerance
//! that is not a number of seconds, a predictions file with two `"results"` keys is refused
//! (Python's json keeps the last copy, a streaming reader the first), and `extract --verify`
//! checks a folder it cannot write (shard indexes are then not merged, and it says so); a model
//! card that disagrees with its weights is one line.

mod common;

use common::{extract_tiny, lofi, s, tiny_dataset};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn an_io_error_says_its_cause_once() {
    let (ok, _, err) = lofi(&[
        "eval",
        "detection",
        "--ground-truth",
        "/nonexistent/gt.json",
        "--predictions",
        "/nonexistent/p.json",
    ]);
    assert!(!ok);
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause is printed once: {err}"
    );
    assert!(err.contains("/nonexistent/gt.json"), "{err}");
}

#[test]
fn probe_fails_on_missing_or_unreadable_videos_and_refuses_bad_tolerances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 12);
    let (gt, videos) = (data.join("ground_truth.json"), data.join("videos"));
    let (ok, _, err) = lofi(&["probe", s(&videos), "--ground-truth", s(&gt)]);
    assert!(ok, "a complete folder passes: {err}");
    let mut files: Vec<_> = std::fs::read_dir(&videos)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    std::fs::remove_file(&files[0]).expect("remove");
    std::fs::write(&files[1], b"not a video").expect("overwrite");
    let (ok, out, err) = lofi(&["probe", s(&videos), "--ground-truth", s(&gt)]);
    assert!(
        out.contains("MISSING") && out.contains("UNREADABLE"),
        "{out}"
    );
    assert!(
        !ok && err.contains("2 of 16 videos are missing, unreadable or shorter"),
        "{err}"
    );
    for bad in ["-1", "nan", "inf"] {
        let flag = format!("--tolerance={bad}");
        let (ok, _, err) = lofi(&["probe", s(&videos), &flag]);
        assert!(!ok && err.contains("tolerance"), "{bad}: {err}");
    }
}

#[test]
fn predictions_with_two_results_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gt = dir.path().join("gt.json");
    std::fs::write(
        &gt,
        r#"{"version": "1.3", "database": {"v": {"subset": "validation", "duration": 10.0,
            "annotations": [{"label": "a", "segment": [1.0, 5.0]}]}}}"#,
    )
    .expect("gt");
    let pred = dir.path().join("pred.json");
    std::fs::write(
        &pred,
        r#"{"version": "1.3", "external_data": {},
            "results": {"v": [{"label": "a", "score": 1.0, "segment": [1.0, 5.0]}]},
            "results": {"v": []}}"#,
    )
    .expect("pred");
    let (ok, _, err) = lofi(&[
        "eval",
        "detection",
        "--ground-truth",
        s(&gt),
        "--predictions",
        s(&pred),
    ]);
    assert!(
        !ok && err.contains("\"results\" key appears twice"),
        "{err}"
    );
}

/// Runs `lofi args` as an unprivileged user when the tests run as root (root writes anywhere, so
/// a read-only folder is only read-only to others).
fn lofi_unprivileged(args: &[&str]) -> (bool, String) {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_lofi"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_lofi"))
    };
    let out = cmd.args(args).output().expect("run lofi");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn verify_checks_a_folder_it_cannot_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    set_mode(dir.path(), 0o755);
    let data = tiny_dataset(dir.path(), 13);
    let gt = data.join("ground_truth.json");
    let feats = dir.path().join("features");
    for shard in ["0/2", "1/2"] {
        let (ok, err) = extract_tiny(&data, &feats, &["--shard", shard]);
        assert!(ok, "{err}");
    }
    // Shard indexes only: a writable folder would get its merged index.json now.
    assert!(!feats.join("index.json").exists());
    // Everything readable by all, writable by none.
    for entry in std::fs::read_dir(&feats).expect("list") {
        set_mode(&entry.expect("entry").path(), 0o444);
    }
    set_mode(&feats, 0o555);
    for p in [&data, &data.join("videos")] {
        set_mode(p, 0o755);
    }
    set_mode(&gt, 0o444);
    let (ok, err) =
        lofi_unprivileged(&["extract", "--ground-truth", s(&gt), "--verify", s(&feats)]);
    assert!(ok, "a complete read-only folder verifies: {err}");
    assert!(
        err.contains("cannot be written"),
        "the merge is skipped, and said so: {err}"
    );
    assert!(!feats.join("index.json").exists());
    set_mode(&feats, 0o755);
}

/// Issue 26, item 6: a card that disagrees with its weights (edited by hand: its hash still
/// holds) is one line naming what the card says, not a list of every tensor.
#[test]
fn a_card_that_disagrees_with_its_weights_is_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::tiny_dataset(dir.path(), 3);
    let gt = data.join("ground_truth.json");
    let feats = dir.path().join("features");
    let (ok, err) = common::extract_tiny(&data, &feats, &[]);
    assert!(ok, "{err}");
    let head = dir.path().join("head");
    let (ok, _, err) = common::train_head_tiny(&feats, &gt, &head, &[]);
    assert!(ok, "{err}");
    let card_path = head.join("head.json");
    let mut card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&card_path).expect("card")).expect("json");
    let hidden = card["model"]["arch"]["hidden"].as_u64().expect("hidden");
    card["model"]["arch"]["hidden"] = serde_json::json!(hidden + 8);
    std::fs::write(&card_path, card.to_string()).expect("edit");
    let (ok, _, err) = lofi(&[
        "detect",
        "--head",
        s(&head),
        "--features",
        s(&feats),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&dir.path().join("detections.json")),
    ]);
    let error = err
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !ok && error.contains("head.bpk") && error.lines().count() == 1 && error.len() < 700,
        "{} bytes: {err}",
        err.len()
    );
}
