//! Properties that must hold for every input, checked on generated inputs.
//!
//! - Perfect predictions score 1 everywhere (AP, mAP, AR at the full budget), up to rounding.
//! - The order of videos and entries in a prediction file does not matter when scores are
//!   distinct: the numbers are identical, bit for bit.
//! - No input, however malformed, makes a reader or an evaluation panic.

mod common;

use lofi_eval::{
    evaluate_detection, evaluate_proposals, soft_nms, GroundTruth, GroundTruthOptions,
    PredictionKind, Predictions, ProposalOptions, ScoredSegment, SoftNms, Thresholds,
    VideoClassScores,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::path::Path;

fn truth_of(value: &Value) -> GroundTruth {
    GroundTruth::from_slice(
        &serde_json::to_vec(value).expect("serialize"),
        Path::new("gt.json"),
        &GroundTruthOptions::default(),
    )
    .expect("generated ground truth is valid")
}

fn predictions_of(value: &Value, truth: &GroundTruth, kind: PredictionKind) -> Predictions {
    Predictions::from_slice(
        &serde_json::to_vec(value).expect("serialize"),
        Path::new("pred.json"),
        truth,
        kind,
    )
    .expect("generated predictions are valid")
}

/// Every validation annotation becomes one prediction with its own label and a distinct score.
fn perfect_predictions(ground_truth: &Value, labelled: bool) -> Value {
    let mut results = Map::new();
    let mut score = 1.0;
    for (id, video) in ground_truth["database"].as_object().expect("database") {
        if video["subset"] != "validation" {
            continue;
        }
        let entries: Vec<Value> = video["annotations"]
            .as_array()
            .expect("annotations")
            .iter()
            .map(|a| {
                score *= 0.999;
                if labelled {
                    json!({"label": a["label"], "score": score, "segment": a["segment"]})
                } else {
                    json!({"score": score, "segment": a["segment"]})
                }
            })
            .collect();
        results.insert(id.clone(), Value::Array(entries));
    }
    json!({"results": results})
}

/// Reverses the order of the videos and rotates each video's list by `shift`.
fn reordered(predictions: &Value, shift: usize) -> Value {
    let results = predictions["results"].as_object().expect("results");
    let mut out = Map::new();
    let mut entries: Vec<(&String, &Value)> = results.iter().collect();
    entries.reverse();
    // serde_json's Map is sorted by key unless preserve_order is on; write the text by hand to
    // control the order in the file.
    let mut text = String::from("{\"results\": {");
    for (i, (id, list)) in entries.iter().enumerate() {
        let mut list = list.as_array().expect("list").clone();
        if !list.is_empty() {
            let k = shift % list.len();
            list.rotate_left(k);
        }
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!("{}: {}", json!(id), Value::Array(list)));
        out.insert((*id).clone(), Value::Null);
    }
    text.push_str("}}");
    Value::String(text)
}

fn predictions_from_text(text: &str, truth: &GroundTruth, kind: PredictionKind) -> Predictions {
    Predictions::from_slice(text.as_bytes(), Path::new("pred.json"), truth, kind)
        .expect("valid predictions")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn perfect_predictions_score_one(seed in 0u64..10_000) {
        let case = common::random_case(seed);
        let truth = truth_of(&case.ground_truth);
        let detections = predictions_of(
            &perfect_predictions(&case.ground_truth, true), &truth, PredictionKind::Detections);
        let report = evaluate_detection(&truth, &detections, &Thresholds::ACTIVITYNET.values())
            .expect("evaluation");
        // AP adds the recall steps (1/n each), so it may land one unit in the last place below
        // 1, exactly as the official tool's does.
        for class in &report.per_class {
            prop_assert!(class.ap.iter().all(|&ap| (ap - 1.0).abs() < 1e-12),
                "{}: {:?}", class.label, class.ap);
        }
        prop_assert!((report.average_map - 1.0).abs() < 1e-12);

        let proposals = predictions_of(
            &perfect_predictions(&case.ground_truth, false), &truth, PredictionKind::Proposals);
        let report = evaluate_proposals(&truth, &proposals, &ProposalOptions::default())
            .expect("evaluation");
        prop_assert_eq!(report.ar(100), Some(1.0));
    }

    #[test]
    fn file_order_does_not_matter_without_ties(seed in 0u64..10_000, shift in 0usize..7) {
        let case = common::random_case(seed);
        let truth = truth_of(&case.ground_truth);
        let thresholds = Thresholds::ACTIVITYNET.values();
        let original = predictions_of(&case.detections, &truth, PredictionKind::Detections);
        let text = reordered(&case.detections, shift);
        let shuffled = predictions_from_text(
            text.as_str().expect("text"), &truth, PredictionKind::Detections);
        prop_assert_eq!(
            evaluate_detection(&truth, &original, &thresholds).expect("eval"),
            evaluate_detection(&truth, &shuffled, &thresholds).expect("eval")
        );
        let original = predictions_of(&case.proposals, &truth, PredictionKind::Proposals);
        let text = reordered(&case.proposals, shift);
        let shuffled = predictions_from_text(
            text.as_str().expect("text"), &truth, PredictionKind::Proposals);
        let options = ProposalOptions::default();
        let (a, b) = (
            evaluate_proposals(&truth, &original, &options).expect("eval"),
            evaluate_proposals(&truth, &shuffled, &options).expect("eval"),
        );
        // Warnings mention example ids in file order; the numbers must be identical.
        prop_assert_eq!(a.average_recall, b.average_recall);
        prop_assert_eq!(a.auc, b.auc);
    }
}

/// Arbitrary JSON values, biased towards the shapes the readers look for.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(|f| json!(f)),
        (-5i64..5).prop_map(|i| json!(i)),
        prop_oneof![
            Just("validation"),
            Just("label"),
            Just("segment"),
            Just("score"),
            Just("A"),
            Just("results"),
            Just("database"),
            Just("subset"),
            Just("annotations"),
            Just("class")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("database".to_string()),
                        Just("results".to_string()),
                        Just("subset".to_string()),
                        Just("annotations".to_string()),
                        Just("segment".to_string()),
                        Just("label".to_string()),
                        Just("score".to_string()),
                        Just("class".to_string()),
                        Just("v1".to_string()),
                        "[a-z]{1,3}",
                    ],
                    inner
                ),
                0..6,
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn exercise(bytes: &[u8]) {
    let path = Path::new("fuzz.json");
    let _ = VideoClassScores::from_slice(bytes, path);
    for subset in ["validation", "A"] {
        let options = GroundTruthOptions {
            subset: subset.into(),
            ..Default::default()
        };
        if let Ok(truth) = GroundTruth::from_slice(bytes, path, &options) {
            for kind in [PredictionKind::Detections, PredictionKind::Proposals] {
                if let Ok(predictions) = Predictions::from_slice(bytes, path, &truth, kind) {
                    let _ = evaluate_detection(&truth, &predictions, &[0.5, 0.75]);
                    let _ = evaluate_proposals(&truth, &predictions, &ProposalOptions::default());
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn readers_never_panic_on_arbitrary_json(value in arbitrary_json()) {
        exercise(&serde_json::to_vec(&value).expect("serialize"));
    }

    #[test]
    fn readers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        exercise(&bytes);
    }

    #[test]
    fn readers_never_panic_on_damaged_valid_files(seed in 0u64..1000, cut in 0usize..4000, byte in any::<u8>()) {
        let case = common::random_case(seed);
        for value in [&case.ground_truth, &case.detections] {
            let mut bytes = serde_json::to_vec(value).expect("serialize");
            let at = cut % bytes.len();
            bytes[at] = byte;
            exercise(&bytes);
            bytes.truncate(at);
            exercise(&bytes);
        }
    }

    #[test]
    fn soft_nms_keeps_at_most_top_k_with_scores_not_above_the_input(
        raw in prop::collection::vec((0.0f64..100.0, 0.0f64..30.0, 0.0f64..1.0), 0..60),
        top_k in 0usize..20,
    ) {
        let candidates: Vec<ScoredSegment> =
            raw.iter().map(|&(s, len, score)| ScoredSegment::new(s, s + len, score)).collect();
        let kept = soft_nms(&candidates, &SoftNms::gaussian(0.8, top_k)).expect("valid");
        prop_assert!(kept.len() <= top_k.min(candidates.len()));
        let best = candidates.iter().map(|c| c.score).fold(f64::NEG_INFINITY, f64::max);
        if let Some(first) = kept.first() {
            prop_assert_eq!(first.score, best);
        }
        prop_assert!(kept.iter().all(|k| k.score <= best));
    }
}
