//! `lofi eval` as a user runs it: the shipped example, the JSON contract, plots and bad input.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lofi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lofi"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run lofi")
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/eval")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lofi-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn stdout_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "lofi failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn detection_json_has_exactly_the_documented_keys_in_fractions() {
    let gt = example("ground_truth.json");
    let pred = example("detections.json");
    let out = lofi(&[
        "eval",
        "detection",
        "--ground-truth",
        &gt,
        "--predictions",
        &pred,
        "--json",
    ]);
    let json = stdout_json(&out);
    let mut found = keys(&json);
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "average_mAP",
            "mAP",
            "per_class_AP",
            "protocol",
            "tiou_thresholds"
        ]
    );
    let mut protocol = keys(&json["protocol"]);
    protocol.sort_unstable();
    assert_eq!(
        protocol,
        [
            "annotated_videos",
            "class_scores",
            "disputed_videos_dropped",
            "disputed_videos_kept",
            "excluded_labels",
            "excluded_videos",
            "videos_without_predictions"
        ]
    );
    assert_eq!(json["protocol"]["annotated_videos"], 16);
    assert_eq!(json["protocol"]["class_scores"], Value::Null);
    let thresholds = json["tiou_thresholds"].as_array().expect("list");
    assert_eq!(thresholds.len(), 10);
    assert_eq!(thresholds[0], 0.5);
    assert_eq!(thresholds[9], 0.95);
    let map: Vec<f64> = serde_json::from_value(json["mAP"].clone()).expect("numbers");
    assert!(map.iter().all(|m| (0.0..=1.0).contains(m)));
    // mAP falls as the threshold rises on this example.
    assert!(map[0] > map[9]);
    let average = json["average_mAP"].as_f64().expect("number");
    assert!((average - map.iter().sum::<f64>() / 10.0).abs() < 1e-12);
    assert_eq!(json["per_class_AP"].as_object().expect("object").len(), 5);
}

#[test]
fn detection_table_and_plot() {
    let dir = temp_dir("plot");
    let plots = dir.join("plots");
    let out = lofi(&[
        "eval",
        "detection",
        "--ground-truth",
        &example("ground_truth.json"),
        "--predictions",
        &example("detections.json"),
        "--plot",
        plots.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).expect("utf-8");
    assert!(table.contains("mAP"), "{table}");
    assert!(table.contains("worst classes"), "{table}");
    let svg = std::fs::read_to_string(plots.join("precision_recall.svg")).expect("svg written");
    assert_eq!(svg.matches("<polyline").count(), 10);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn proposals_json_has_exactly_the_documented_keys() {
    let dir = temp_dir("proposals");
    let out = lofi(&[
        "eval",
        "proposals",
        "--ground-truth",
        &example("ground_truth.json"),
        "--proposals",
        &example("proposals.json"),
        "--json",
        "--plot",
        dir.to_str().expect("utf-8"),
    ]);
    let json = stdout_json(&out);
    let expected = [
        "AR@1",
        "AR@5",
        "AR@10",
        "AR@100",
        "AUC",
        "average_recall",
        "avg_proposals",
    ];
    let mut found = keys(&json);
    found.sort_unstable();
    let mut sorted = expected.to_vec();
    sorted.sort_unstable();
    assert_eq!(found, sorted);
    // And in this order in the text.
    let text = String::from_utf8_lossy(&out.stdout);
    let positions: Vec<usize> = expected
        .iter()
        .map(|k| text.find(&format!("\"{k}\"")).expect("key in text"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    let recall: Vec<f64> = serde_json::from_value(json["average_recall"].clone()).expect("list");
    assert_eq!(recall.len(), 100);
    assert!(
        recall.windows(2).all(|w| w[0] <= w[1]),
        "recall grows with AN"
    );
    assert_eq!(json["AR@100"], recall[99]);
    let auc = json["AUC"].as_f64().expect("number");
    assert!(auc > 1.0 && auc <= 100.0, "AUC is in percent: {auc}");
    assert!(dir.join("recall_vs_proposals.svg").exists());
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn thumos_preset_with_exclusions() {
    let dir = temp_dir("thumos");
    let gt = dir.join("thumos.json");
    std::fs::write(
        &gt,
        r#"{"database": {
        "video_test_0000270": {"subset": "Test", "annotations": [{"segment": [0, 5], "label": "Diving"}]},
        "video_test_0000004": {"subset": "Test", "annotations": [
            {"segment": [10, 20], "label": "Diving"}, {"segment": [30, 31], "label": "Ambiguous"}]},
        "video_validation_1": {"subset": "Validation", "annotations": [{"segment": [0, 5], "label": "Diving"}]}
    }}"#,
    )
    .expect("write");
    let pred = dir.join("pred.json");
    std::fs::write(
        &pred,
        r#"{"results": {"video_test_0000004": [
            {"label": "Diving", "score": 0.9, "segment": [10, 20]},
            {"label": "Ambiguous", "score": 0.8, "segment": [30, 31]}],
        "video_test_0000270": [{"label": "Diving", "score": 0.95, "segment": [50, 60]}]}}"#,
    )
    .expect("write");
    let args = [
        "eval",
        "detection",
        "--preset",
        "thumos14",
        "--ground-truth",
        gt.to_str().expect("utf-8"),
        "--predictions",
        pred.to_str().expect("utf-8"),
        "--json",
    ];
    // Without exclusions the "Ambiguous" label is a class and the disputed video's wrong
    // prediction counts.
    let json = stdout_json(&lofi(&args));
    assert_eq!(json["tiou_thresholds"].as_array().expect("list").len(), 5);
    assert_eq!(json["per_class_AP"].as_object().expect("classes").len(), 2);
    assert!(json["average_mAP"].as_f64().expect("number") < 1.0);
    let mut excluded = args.to_vec();
    excluded.extend(["--drop-disputed", "--drop-ambiguous"]);
    let out = lofi(&excluded);
    let json = stdout_json(&out);
    assert_eq!(json["average_mAP"], 1.0);
    // The protocol names what was asked for, whether or not the file has the video.
    assert_eq!(
        json["protocol"]["disputed_videos_dropped"],
        serde_json::json!([
            "video_test_0000270",
            "video_test_0001292",
            "video_test_0001496"
        ])
    );
    assert_eq!(
        json["protocol"]["excluded_labels"],
        serde_json::json!(["Ambiguous"])
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("dropped 1 excluded video"), "{log}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

fn failure(args: &[&str]) -> String {
    let out = lofi(args);
    assert!(!out.status.success(), "expected failure for {args:?}");
    // 1 for a failed run, 2 for a command line clap rejects; a panic would be 101.
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "a clean error, not a panic"
    );
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_input_gives_one_clear_error() {
    let dir = temp_dir("bad");
    let gt = example("ground_truth.json");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    };
    let missing = dir.join("missing.json").to_string_lossy().into_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![missing.clone()], "missing.json: No such file"),
        (
            vec![write("bad.json", "{\"results\": {")],
            "bad.json: line 1 column 14: expected a quoted key, found the end of the file",
        ),
        (
            vec![write("empty.json", "")],
            "empty.json: the file is empty",
        ),
        (
            vec![write("none.json", "{\"results\": {}}")],
            "none.json: the file has no detections",
        ),
        (
            vec![write(
                "label.json",
                r#"{"results": {"demo_000": [{"label": "Hop", "score": 1, "segment": [0, 1]}]}}"#,
            )],
            "label.json: video demo_000: label \"Hop\" is not a class",
        ),
        (
            vec![write(
                "reversed.json",
                r#"{"results": {"demo_000": [{"label": "Shot put", "score": 1, "segment": [5, 1]}]}}"#,
            )],
            "reversed.json: video demo_000: entry 0: segment end 1 is before start 5",
        ),
        (
            vec![
                example("detections.json"),
                "--subset".into(),
                "testing".into(),
            ],
            "no video has subset \"testing\"",
        ),
        (
            vec![
                example("detections.json"),
                "--tiou".into(),
                "0.5:0.95".into(),
            ],
            "expected START:STOP:COUNT",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec![
            "eval".to_string(),
            "detection".into(),
            "--ground-truth".into(),
            gt.clone(),
            "--predictions".into(),
        ];
        args.extend(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let message = failure(&refs);
        assert!(message.contains(expected), "{refs:?}:\n{message}");
    }
    let message = failure(&[
        "eval",
        "detection",
        "--ground-truth",
        &missing,
        "--predictions",
        &example("detections.json"),
    ]);
    assert!(message.contains("missing.json"), "{message}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// Every key of `expected` is in `ours`, numbers within 1e-12.
fn assert_within(ours: &Value, expected: &Value, at: &str) {
    match expected {
        Value::Object(map) => {
            for (key, value) in map {
                assert_within(&ours[key], value, &format!("{at}.{key}"));
            }
        }
        Value::Array(items) => {
            let list = ours
                .as_array()
                .unwrap_or_else(|| panic!("{at}: not a list"));
            assert_eq!(list.len(), items.len(), "{at}");
            for (i, (a, b)) in list.iter().zip(items).enumerate() {
                assert_within(a, b, &format!("{at}[{i}]"));
            }
        }
        Value::Number(n) => {
            let (a, b) = (ours.as_f64().expect("number"), n.as_f64().expect("number"));
            assert!((a - b).abs() <= 1e-12, "{at}: {a} vs oracle {b}");
        }
        other => assert_eq!(ours, other, "{at}"),
    }
}

#[test]
fn analysis_explains_the_errors_in_tables_and_json() {
    let gt = example("ground_truth.json");
    let pred = example("detections.json");
    let base = [
        "eval",
        "detection",
        "--ground-truth",
        &gt,
        "--predictions",
        &pred,
        "--analysis",
    ];
    let out = lofi(&base);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).expect("utf-8");
    for part in [
        "Error analysis (DETAD)",
        "False-positive profile",
        "  10G ",
        "Average-mAP_N gain",
        "False-negative rate",
        "Sensitivity",
        "# instances",
    ] {
        assert!(table.contains(part), "{part:?} missing from\n{table}");
    }
    // --plot writes DETAD's three figures beside the precision-recall curves.
    let dir = temp_dir("analysis");
    let plots = dir.join("plots");
    let mut plot_args = base.to_vec();
    plot_args.extend(["--plot", plots.to_str().expect("utf-8")]);
    assert!(lofi(&plot_args).status.success());
    for name in [
        "precision_recall.svg",
        "false_positive_analysis.svg",
        "false_negative_analysis.svg",
        "sensitivity_analysis.svg",
    ] {
        let svg = std::fs::read_to_string(plots.join(name)).expect("figure written");
        assert!(svg.starts_with("<svg") && !svg.contains("NaN"), "{name}");
    }
    let profile = std::fs::read_to_string(plots.join("false_positive_analysis.svg")).expect("svg");
    // Ten stacked bars of six segments at most, six legend keys, five gain bars.
    assert!(profile.contains("10G") && profile.contains("double detection"));
    std::fs::remove_dir_all(&dir).expect("clean up");

    let mut json_args = base.to_vec();
    json_args.push("--json");
    let json = stdout_json(&lofi(&json_args));
    let analysis = &json["analysis"];
    let mut found = keys(analysis);
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "average_instances_per_class",
            "false_negative",
            "false_positive",
            "instances",
            "left_out_coverage_above_one",
            "left_out_zero_length",
            "limit_factor",
            "min_normalized_precision",
            "min_tiou",
            "notes",
            "sensitivity",
            "tiou_thresholds"
        ]
    );
    let fp = &analysis["false_positive"];
    assert_eq!(fp["profile"].as_array().expect("slices").len(), 10);
    // The shares of each slice add up to one.
    for slice in fp["profile"].as_array().expect("slices") {
        let sum: f64 = slice["fractions"]
            .as_object()
            .expect("shares")
            .values()
            .map(|v| v.as_f64().expect("share"))
            .sum();
        assert!((sum - 1.0).abs() < 1e-12, "{slice}");
    }
    // The table's numbers are the JSON's, in percent.
    let average = fp["average_mAP_N"].as_f64().expect("number");
    assert!(
        table.contains(&format!("average-mAP_N {:.2}", average * 100.0)),
        "{table}"
    );
    assert_eq!(
        keys(&analysis["sensitivity"]),
        ["average_mAP_N", "coverage", "length", "num_instances"]
    );
    // The numbers are the DETAD oracle's (test-tools/detad_reference.py), to 1e-12.
    if std::env::var_os("LOFI_SKIP_PYTHON_ORACLE").is_none() {
        let oracle = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-tools/detad_reference.py"))
            .args(["analysis", "--ground-truth", &gt, "--predictions", &pred])
            .output()
            .expect("python3 runs the oracle (or set LOFI_SKIP_PYTHON_ORACLE=1)");
        assert!(
            oracle.status.success(),
            "{}",
            String::from_utf8_lossy(&oracle.stderr)
        );
        let expected: Value = serde_json::from_slice(&oracle.stdout).expect("oracle JSON");
        assert_within(analysis, &expected, "analysis");
    }

    // THUMOS14: DETAD's single threshold 0.5 unless --analysis-tiou says otherwise.
    let mut thumos = json_args.clone();
    thumos.extend(["--preset", "thumos14", "--subset", "validation"]);
    let json = stdout_json(&lofi(&thumos));
    assert_eq!(
        json["analysis"]["tiou_thresholds"],
        serde_json::json!([0.5])
    );
    assert_eq!(json["tiou_thresholds"].as_array().expect("list").len(), 5);
    thumos.extend(["--analysis-tiou", "0.3:0.7:5"]);
    let json = stdout_json(&lofi(&thumos));
    assert_eq!(
        json["analysis"]["tiou_thresholds"]
            .as_array()
            .expect("list")
            .len(),
        5
    );
}
