//! `lofi demo` through the real binary at its smallest size: with one rayon thread the same
//! command gives bit-identical results end to end (dataset, training, features, head,
//! detections, mAP), as the README promises, and `demo.json` keeps its keys.

use std::path::Path;

mod common;
use common::{lofi_env, s};

/// `demo.json` without the fields that measure time or memory.
fn comparable_rows(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("demo.json")).expect("demo.json");
    let mut demo: serde_json::Value = serde_json::from_str(&text).expect("json");
    for row in demo["rows"].as_array_mut().expect("rows") {
        let row = row.as_object_mut().expect("row");
        row.remove("peak_memory_bytes");
        row.remove("step_seconds");
    }
    demo
}

#[test]
fn one_thread_runs_are_bit_identical_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |name: &str| {
        let out = dir.path().join(name);
        let (ok, stdout, err) = lofi_env(
            &[
                "demo",
                "--size",
                "smoke",
                "--seeds",
                "1",
                "--rows",
                "st",
                "--out",
                s(&out),
            ],
            &[("RAYON_NUM_THREADS", "1")],
        );
        assert!(ok, "demo failed: {err}");
        assert!(
            stdout.contains("ST-LoFi") && stdout.contains("+-"),
            "{stdout}"
        );
        out
    };
    let (a, b) = (run("a"), run("b"));
    let rows = comparable_rows(&a);
    let row = &rows["rows"][0];
    for key in [
        "name",
        "mAP",
        "tiou_thresholds",
        "average_mAP",
        "average_mAP_std",
        "seeds",
    ] {
        assert!(row.get(key).is_some(), "{key} missing: {row}");
    }
    assert_eq!(row["seeds"].as_array().map(Vec::len), Some(1));
    assert_eq!(rows, comparable_rows(&b), "the two runs' tables differ");
    for file in [
        "data/ground_truth.json",
        "seed-0/rows/st/detections.json",
        "seed-0/rows/st/eval.json",
    ] {
        let read = |root: &Path| std::fs::read(root.join(file)).expect(file);
        assert!(read(&a) == read(&b), "{file} differs between the runs");
    }
    let videos = |root: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(root.join("data/videos"))
            .expect("videos")
            .map(|e| e.expect("entry").path())
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read(p).expect("video"))
            .collect::<Vec<_>>()
    };
    assert!(videos(&a) == videos(&b), "the synthetic videos differ");
}
