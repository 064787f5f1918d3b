//! `lofi synth` and `lofi probe` end to end through the real binary.

mod common;
use common::{lofi, s, tiny_dataset};

#[test]
fn synth_then_probe_finds_every_video_and_flags_broken_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 3);
    let gt = data.join("ground_truth.json");
    assert!(gt.is_file() && data.join("clips.json").is_file());
    let videos = data.join("videos");

    let (ok, out, err) = lofi(&["probe", s(&videos), "--ground-truth", s(&gt)]);
    assert!(ok, "probe failed: {err}");
    assert!(
        out.contains("16 videos: 16 ok, 0 missing, 0 unreadable"),
        "{out}"
    );
    assert!(out.contains("h264") && out.contains("64x64"), "{out}");

    // Same seed, same ground truth bytes.
    let again = dir.path().join("again");
    let (ok, _, err) = lofi(&["synth", "--out", s(&again), "--seed", "3", "--workers", "1"]);
    assert!(ok, "{err}");
    assert!(std::fs::read(&gt).ok() == std::fs::read(again.join("ground_truth.json")).ok());

    std::fs::remove_file(videos.join("syn0000.mp4")).expect("remove");
    std::fs::write(videos.join("syn0001.mp4"), b"").expect("truncate");
    let (ok, out, err) = lofi(&["probe", s(&videos), "--ground-truth", s(&gt)]);
    assert!(
        !ok && err.contains("2 of 16 videos are missing, unreadable or shorter"),
        "missing and unreadable videos fail the probe: {err}"
    );
    assert!(
        out.contains("16 videos: 14 ok, 1 missing, 1 unreadable"),
        "{out}"
    );
    assert!(out.contains("syn0001.mp4: video file is empty"), "{out}");

    let (ok, out, _) = lofi(&["probe", s(&videos), "--ground-truth", s(&gt), "--json"]);
    assert!(
        !ok,
        "the JSON report is printed, and the exit status still says what is wrong"
    );
    let json: serde_json::Value = serde_json::from_str(&out).expect("probe json");
    let rows = json["videos"].as_array().expect("rows");
    assert_eq!(rows[0]["id"], "syn0000");
    assert_eq!(rows[0]["status"], "missing");
}

#[test]
fn probe_names_a_missing_folder_and_ground_truth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, _, err) = lofi(&["probe", s(&dir.path().join("nope"))]);
    assert!(!ok && err.contains("nope"), "{err}");
    let (ok, _, err) = lofi(&[
        "probe",
        s(dir.path()),
        "--ground-truth",
        s(&dir.path().join("gt.json")),
    ]);
    assert!(!ok && err.contains("gt.json"), "{err}");
}
