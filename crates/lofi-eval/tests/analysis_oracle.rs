//! The DETAD error analysis against the pure-Python oracle `test-tools/detad_reference.py`.
//!
//! The oracle is a literal reimplementation of DETAD's code (DataFrame-free), confirmed once to
//! give DETAD's numbers exactly (`test-tools/detad/confirm_official.out`). Here our analysis is
//! compared with it on random tie-free inputs in the ActivityNet and THUMOS14 settings, with
//! zero-length instances, instances longer than their video, duplicate instances,
//! unknown videos and annotated videos without predictions. Tolerance: 1e-12 absolute on every
//! number (AP_N, shares, gains, rates); counts exactly. Set LOFI_SKIP_PYTHON_ORACLE to skip.

mod common;

use lofi_eval::{
    analyze_detection, instance_characteristics, AnalysisDataset, AnalysisOptions, GroundTruth,
    GroundTruthOptions, PredictionKind, Predictions,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOLERANCE: f64 = 1e-12;

fn oracle(args: &[&str]) -> Option<Value> {
    if std::env::var_os("LOFI_SKIP_PYTHON_ORACLE").is_some() {
        eprintln!("LOFI_SKIP_PYTHON_ORACLE is set: skipping the comparison with the Python oracle");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-tools/detad_reference.py");
    let output = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed to run the oracle (or set LOFI_SKIP_PYTHON_ORACLE=1)");
    assert!(
        output.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("oracle prints JSON"))
}

/// Compares two JSON trees: numbers within TOLERANCE, everything else equal. Returns the
/// largest difference and the count of numbers compared.
fn assert_same(ours: &Value, theirs: &Value, at: &str) -> (f64, usize) {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().expect("f64"), b.as_f64().expect("f64"));
            assert!((a - b).abs() <= TOLERANCE, "{at}: ours {a} vs oracle {b}");
            ((a - b).abs(), 1)
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}: lengths differ");
            let mut worst = (0.0f64, 0);
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let (d, n) = assert_same(x, y, &format!("{at}[{i}]"));
                worst = (worst.0.max(d), worst.1 + n);
            }
            worst
        }
        (Value::Object(a), Value::Object(b)) => {
            let mut worst = (0.0f64, 0);
            for (key, y) in b {
                let x = a
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}: we lack {key:?}"));
                let (d, n) = assert_same(x, y, &format!("{at}.{key}"));
                worst = (worst.0.max(d), worst.1 + n);
            }
            worst
        }
        _ => {
            assert_eq!(ours, theirs, "{at}");
            (0.0, 0)
        }
    }
}

fn write(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(value).expect("serialize")).expect("write");
    path
}

/// A random case with, on some videos, a zero-length instance and one longer than the video.
fn case(seed: u64) -> (Value, Value) {
    let case = common::random_case(seed);
    let mut ground_truth = case.ground_truth;
    let database = ground_truth["database"]
        .as_object_mut()
        .expect("database object");
    let validation = database
        .values_mut()
        .filter(|v| v["subset"] == "validation" && v["annotations"].get(0).is_some());
    for (n, video) in validation.enumerate() {
        let duration = video["duration"].as_f64().expect("duration");
        let first = video["annotations"][0].clone();
        let label = first["label"].clone();
        let annotations = video["annotations"].as_array_mut().expect("list");
        if n % 3 == 1 {
            annotations.push(json!({"segment": [duration * 0.1, duration * 1.3], "label": label}));
        }
        if n % 4 == 2 {
            annotations.push(json!({"segment": [duration * 0.3, duration * 0.3], "label": label}));
        }
    }
    (ground_truth, case.detections)
}

#[test]
fn random_cases_agree_with_the_detad_oracle() {
    let dir = std::env::temp_dir().join(format!("lofi-detad-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for seed in 0..10u64 {
        let dataset = if seed % 2 == 0 {
            AnalysisDataset::ActivityNet
        } else {
            AnalysisDataset::Thumos14
        };
        let (ground_truth, detections) = case(seed);
        let gt = write(&dir, "gt.json", &ground_truth);
        let det = write(&dir, "det.json", &detections);
        let truth = GroundTruth::from_path(&gt, &GroundTruthOptions::default()).expect("gt");
        let predictions =
            Predictions::from_path(&det, &truth, PredictionKind::Detections).expect("det");
        let ours = analyze_detection(&truth, &predictions, &AnalysisOptions::new(dataset))
            .expect("analysis");
        let name = match dataset {
            AnalysisDataset::ActivityNet => "activitynet",
            AnalysisDataset::Thumos14 => "thumos14",
        };
        let Some(theirs) = oracle(&[
            "analysis",
            "--ground-truth",
            gt.to_str().expect("utf-8 path"),
            "--predictions",
            det.to_str().expect("utf-8 path"),
            "--dataset",
            name,
        ]) else {
            return;
        };
        assert!(
            ours.left_out_zero_length > 0 && ours.left_out_coverage_above_one > 0,
            "seed {seed}: the case should exercise both removals: {:?}",
            ours.notes
        );
        let ours = serde_json::to_value(ours.to_json()).expect("json");
        let (worst, numbers) = assert_same(&ours, &theirs, &format!("seed {seed} ({name})"));
        eprintln!("seed {seed} ({name}): {numbers} numbers, largest difference {worst:e}");
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn thumos14_characteristics_agree_with_detads_file() {
    // Ten THUMOS14 test videos: their annotations and durations, and the characteristics
    // DETAD's data/thumos14_test_extra_characteristics.json gives for each instance.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let truth = GroundTruth::from_path(
        &fixtures.join("thumos14_test_excerpt.json"),
        &GroundTruthOptions {
            subset: "test".into(),
            ..GroundTruthOptions::default()
        },
    )
    .expect("fixture ground truth");
    let detad: Vec<Value> = serde_json::from_slice(
        &std::fs::read(fixtures.join("detad_thumos14_characteristics.json")).expect("fixture"),
    )
    .expect("fixture JSON");
    let ours = instance_characteristics(&truth);
    assert_eq!(ours.len(), detad.len());
    let dataset = AnalysisDataset::Thumos14;
    for (i, (o, d)) in ours.iter().zip(&detad).enumerate() {
        let coverage = o.coverage.expect("durations are known");
        let expected = d["coverage"].as_f64().expect("coverage");
        assert!(
            (coverage - expected).abs() <= 1e-15,
            "{i}: coverage {coverage} vs {expected}"
        );
        assert_eq!(
            o.length,
            d["length"].as_f64().expect("length"),
            "{i}: length"
        );
        assert_eq!(
            o.instances as u64,
            d["num-instances"].as_u64().expect("count")
        );
        for (characteristic, value) in [
            (lofi_eval::Characteristic::Coverage, coverage),
            (lofi_eval::Characteristic::Length, o.length),
            (lofi_eval::Characteristic::Instances, o.instances as f64),
        ] {
            let bins = dataset.bins(characteristic);
            let bucket = bins.bucket(value).map(|b| bins.labels[b]);
            assert_eq!(
                bucket,
                d["buckets"][characteristic.key()].as_str(),
                "{i}: {characteristic:?}"
            );
        }
    }
}
