//! Our evaluator against the independent pure-Python oracle in `test-tools/anet_reference.py`.
//!
//! The oracle is a separate implementation of the official ActivityNet algorithms (written from
//! the protocol, with numpy's summation order), so agreement on many random tie-free inputs is
//! strong evidence that both follow the official tool. We require agreement to 1e-12; in practice
//! the numbers are identical. The oracle needs only CPython 3, which CI installs.

mod common;

use lofi_eval::{
    evaluate_detection, evaluate_proposals, GroundTruth, GroundTruthOptions, PredictionKind,
    Predictions, ProposalOptions, Thresholds,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn oracle_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-tools/anet_reference.py")
}

fn python() -> Option<&'static str> {
    if std::env::var_os("LOFI_SKIP_PYTHON_ORACLE").is_some() {
        eprintln!("LOFI_SKIP_PYTHON_ORACLE is set: skipping the comparison with the Python oracle");
        return None;
    }
    Some("python3")
}

fn run_oracle(args: &[&str]) -> Value {
    let output = Command::new("python3")
        .arg(oracle_script())
        .args(args)
        .output()
        .expect("python3 must be installed to run the oracle (or set LOFI_SKIP_PYTHON_ORACLE=1)");
    assert!(
        output.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("oracle prints JSON")
}

fn assert_close(ours: &[f64], theirs: &Value, what: &str) {
    let theirs: Vec<f64> = serde_json::from_value(theirs.clone()).expect("a list of numbers");
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths differ");
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            (a - b).abs() <= 1e-12,
            "{what}[{i}]: ours {a} vs oracle {b}"
        );
    }
}

fn write(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(value).expect("serialize")).expect("write");
    path
}

#[test]
fn random_cases_agree_with_the_python_oracle() {
    if python().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("lofi-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let threshold_sets = [
        Thresholds::ACTIVITYNET,
        Thresholds::THUMOS14,
        Thresholds {
            start: 0.1,
            stop: 0.9,
            count: 17,
        },
    ];
    for seed in 0..12u64 {
        let case = common::random_case(seed);
        let gt = write(&dir, "gt.json", &case.ground_truth);
        let det = write(&dir, "det.json", &case.detections);
        let prop = write(&dir, "prop.json", &case.proposals);
        let truth = GroundTruth::from_path(&gt, &GroundTruthOptions::default()).expect("gt");
        let thresholds = threshold_sets[seed as usize % threshold_sets.len()];
        let tiou = thresholds.to_string();

        let detections =
            Predictions::from_path(&det, &truth, PredictionKind::Detections).expect("det");
        let ours = evaluate_detection(&truth, &detections, &thresholds.values()).expect("eval");
        let theirs = run_oracle(&[
            "detection",
            "--ground-truth",
            gt.to_str().expect("utf-8 path"),
            "--predictions",
            det.to_str().expect("utf-8 path"),
            "--tiou",
            &tiou,
        ]);
        let what = format!("seed {seed} detection");
        assert_close(&ours.tiou_thresholds, &theirs["tiou_thresholds"], &what);
        assert_close(&ours.map, &theirs["mAP"], &format!("{what} mAP"));
        assert_close(
            &[ours.average_map],
            &Value::from(vec![theirs["average_mAP"].clone()]),
            &what,
        );
        for class in &ours.per_class {
            assert_close(&class.ap, &theirs["per_class_AP"][&class.label], &what);
        }

        let proposals =
            Predictions::from_path(&prop, &truth, PredictionKind::Proposals).expect("prop");
        for an_max in [100.0, 7.0, 3.0] {
            let options = ProposalOptions {
                max_avg_proposals: an_max,
                tiou_thresholds: thresholds.values(),
            };
            let ours = evaluate_proposals(&truth, &proposals, &options).expect("eval");
            let theirs = run_oracle(&[
                "proposals",
                "--ground-truth",
                gt.to_str().expect("utf-8 path"),
                "--proposals",
                prop.to_str().expect("utf-8 path"),
                "--tiou",
                &tiou,
                "--max-avg-proposals",
                &an_max.to_string(),
            ]);
            let what = format!("seed {seed} proposals AN_max {an_max}");
            assert_close(&ours.average_recall, &theirs["average_recall"], &what);
            assert_close(&ours.avg_proposals, &theirs["avg_proposals"], &what);
            let scalars = [
                ours.auc,
                ours.ar(1).expect("AR@1"),
                ours.ar(100).expect("AR@100"),
            ];
            let expected = Value::from(vec![
                theirs["AUC"].clone(),
                theirs["AR@1"].clone(),
                theirs["AR@100"].clone(),
            ]);
            assert_close(&scalars, &expected, &what);
        }
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
