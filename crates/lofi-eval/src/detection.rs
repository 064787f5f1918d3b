//! Detection average precision per class and tIoU threshold, and their means (mAP).
//!
//! The algorithm is the official ActivityNet one. Per class, predictions are taken in descending
//! score. For each threshold separately, a prediction is matched to the ground-truth segment of
//! its class in the same video with the highest tIoU; below the threshold it is a false positive;
//! if that segment is already taken at this threshold the next best is tried; otherwise it is a
//! true positive and the segment is locked. AP is the VOC-2011 interpolated area under the
//! precision-recall curve. A class without predictions has AP 0 and still counts in the mean.
//! Sums and means follow numpy's pairwise order, so results equal the official tool's bit for bit
//! on inputs without ties.
//!
//! Ties, which the official tool leaves to numpy's unstable sort, are broken here in a fixed,
//! documented way: equal scores keep file order (videos in the order of the results object, then
//! list order), and equal tIoUs prefer the ground-truth segment that comes first in the file.

use crate::error::{EvalError, Result};
use crate::ground_truth::GroundTruth;
use crate::numeric::{numpy_mean, numpy_sum};
use crate::predictions::{Prediction, Predictions};
use crate::protocol::Protocol;
use crate::segment::{tiou, Segment};
use std::ops::Range;

/// Number of recall levels at which the class-averaged precision curve is sampled (0, 0.01, ..., 1).
pub const RECALL_LEVELS: usize = 101;

/// AP of one class at every threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassAp {
    /// Class name.
    pub label: String,
    /// AP per threshold, as fractions.
    pub ap: Vec<f64>,
    /// Ground-truth instances of the class.
    pub ground_truth: usize,
    /// Predictions with the class.
    pub predictions: usize,
}

impl ClassAp {
    /// AP averaged over the thresholds.
    pub fn average(&self) -> f64 {
        numpy_mean(&self.ap)
    }
}

/// The outcome of a detection evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionReport {
    /// The tIoU thresholds.
    pub tiou_thresholds: Vec<f64>,
    /// mAP per threshold (mean of the class APs), as fractions.
    pub map: Vec<f64>,
    /// Mean of `map`.
    pub average_map: f64,
    /// Per-class APs in the ground truth's class order.
    pub per_class: Vec<ClassAp>,
    /// Per threshold, the class-averaged interpolated precision at recall 0, 0.01, ..., 1.
    pub precision_at_recall: Vec<Vec<f64>>,
    /// Things a user should know about the inputs (unknown videos, classes without predictions).
    pub warnings: Vec<String>,
    /// How the evaluation was set up (videos without predictions, exclusions, class scores).
    pub protocol: Protocol,
}

impl DetectionReport {
    /// Classes sorted by ascending average AP (ties by class order): the worst first.
    pub fn worst_classes(&self, count: usize) -> Vec<&ClassAp> {
        let mut classes: Vec<&ClassAp> = self.per_class.iter().collect();
        classes.sort_by(|a, b| a.average().total_cmp(&b.average()));
        classes.truncate(count);
        classes
    }
}

/// Evaluates detections against the ground truth at the given tIoU thresholds.
pub fn evaluate_detection(
    truth: &GroundTruth,
    predictions: &Predictions,
    thresholds: &[f64],
) -> Result<DetectionReport> {
    if thresholds.is_empty() || thresholds.iter().any(|t| !t.is_finite()) {
        return Err(EvalError::Invalid(
            "detection evaluation needs at least one finite tIoU threshold".into(),
        ));
    }
    let classes = truth.classes.len();
    let ground_truth = GroundTruthByClass::new(truth);
    let video_annotations = video_annotations(truth, predictions);

    let (counts, mut bucketed) = sorted_by_class(truth, predictions)?;

    let mut scratch = Scratch::default();
    let mut per_class = Vec::with_capacity(classes);
    let mut curve_sums = vec![vec![0.0; RECALL_LEVELS]; thresholds.len()];
    for (class, label) in truth.classes.iter().enumerate() {
        let bucket = &mut bucketed[counts[class]..counts[class + 1]];
        let positives = ground_truth.class_sizes[class];
        match_class(
            bucket,
            truth,
            &ground_truth,
            &video_annotations,
            thresholds,
            &mut scratch,
        );
        let mut ap = Vec::with_capacity(thresholds.len());
        for (level, sum) in curve_sums.iter_mut().enumerate() {
            let hits = &scratch.hits[level];
            ap.push(average_precision(hits, positives, &mut scratch.terms));
            for (s, c) in sum.iter_mut().zip(precision_curve(hits, positives)) {
                *s += c;
            }
        }
        per_class.push(ClassAp {
            label: label.clone(),
            ap,
            ground_truth: positives,
            predictions: bucket.len(),
        });
    }

    let map: Vec<f64> = (0..thresholds.len())
        .map(|t| numpy_mean(&per_class.iter().map(|c| c.ap[t]).collect::<Vec<_>>()))
        .collect();
    let precision_at_recall = curve_sums
        .into_iter()
        .map(|sum| sum.into_iter().map(|s| s / classes as f64).collect())
        .collect();
    Ok(DetectionReport {
        tiou_thresholds: thresholds.to_vec(),
        average_map: numpy_mean(&map),
        map,
        warnings: warnings(truth, predictions, &per_class),
        protocol: Protocol::of(truth, predictions),
        per_class,
        precision_at_recall,
    })
}

/// For each predicted video, its ground-truth annotations (empty outside the subset).
pub(crate) fn video_annotations(
    truth: &GroundTruth,
    predictions: &Predictions,
) -> Vec<Range<usize>> {
    predictions
        .videos
        .iter()
        .map(|v| match v.truth {
            Some(t) => truth.videos[t as usize].annotations.clone(),
            None => 0..0,
        })
        .collect()
}

/// The predictions bucketed by class (a counting sort), each bucket in descending score with
/// equal scores in file order; `counts[c]..counts[c + 1]` is class `c`'s bucket.
pub(crate) fn sorted_by_class(
    truth: &GroundTruth,
    predictions: &Predictions,
) -> Result<(Vec<usize>, Vec<Prediction>)> {
    let classes = truth.classes.len();
    let mut counts = vec![0usize; classes + 1];
    for p in &predictions.items {
        if p.class == Prediction::NO_CLASS || p.class as usize >= classes {
            return Err(EvalError::Invalid(format!(
                "{}: detection evaluation got an entry without a class of the ground truth",
                predictions.path.display()
            )));
        }
        counts[p.class as usize + 1] += 1;
    }
    for c in 0..classes {
        counts[c + 1] += counts[c];
    }
    let mut next = counts.clone();
    let mut bucketed = vec![
        Prediction {
            video: 0,
            class: 0,
            score: 0.0,
            segment: Segment::new(0.0, 0.0)
        };
        predictions.items.len()
    ];
    for p in &predictions.items {
        let slot = &mut next[p.class as usize];
        bucketed[*slot] = *p;
        *slot += 1;
    }
    for class in 0..classes {
        // Stable: equal scores keep file order.
        bucketed[counts[class]..counts[class + 1]].sort_by(|a, b| b.score.total_cmp(&a.score));
    }
    Ok((counts, bucketed))
}

/// For every annotation, its index among the annotations of its class (the official tool locks
/// ground truth per class), and the number of annotations per class.
pub(crate) struct GroundTruthByClass {
    rank_in_class: Vec<u32>,
    pub(crate) class_sizes: Vec<usize>,
}

impl GroundTruthByClass {
    pub(crate) fn new(truth: &GroundTruth) -> Self {
        let mut class_sizes = vec![0usize; truth.classes.len()];
        let rank_in_class = truth
            .annotations
            .iter()
            .map(|a| {
                let size = &mut class_sizes[a.class as usize];
                *size += 1;
                (*size - 1) as u32
            })
            .collect();
        GroundTruthByClass {
            rank_in_class,
            class_sizes,
        }
    }
}

#[derive(Default)]
pub(crate) struct Scratch {
    candidates: Vec<(f64, u32, u32)>,
    locked: Vec<bool>,
    /// Per threshold, the ranks (0-based, in score order) of the true positives.
    pub(crate) hits: Vec<Vec<u32>>,
    /// Per threshold, the annotation (index into `GroundTruth::annotations`) each hit took.
    pub(crate) matched: Vec<Vec<u32>>,
    terms: Vec<f64>,
}

/// Greedy matching of one class's predictions (sorted best first) at every threshold; leaves the
/// ranks of the true positives in `scratch.hits`.
pub(crate) fn match_class(
    predictions: &[Prediction],
    truth: &GroundTruth,
    ground_truth: &GroundTruthByClass,
    video_annotations: &[Range<usize>],
    thresholds: &[f64],
    scratch: &mut Scratch,
) {
    let levels = thresholds.len();
    let Some(first) = predictions.first() else {
        scratch.hits.clear();
        scratch.hits.resize(levels, Vec::new());
        scratch.matched.clear();
        scratch.matched.resize(levels, Vec::new());
        return;
    };
    let class = first.class;
    let gt_count = ground_truth.class_sizes[class as usize];
    scratch.locked.clear();
    scratch.locked.resize(levels * gt_count, false);
    scratch.hits.resize(levels, Vec::new());
    scratch.matched.resize(levels, Vec::new());
    for hits in scratch.hits.iter_mut().chain(scratch.matched.iter_mut()) {
        hits.clear();
    }
    for (rank, prediction) in predictions.iter().enumerate() {
        let candidates = &mut scratch.candidates;
        candidates.clear();
        for a in video_annotations[prediction.video as usize].clone() {
            let annotation = &truth.annotations[a];
            if annotation.class == class {
                candidates.push((
                    tiou(prediction.segment, annotation.segment),
                    ground_truth.rank_in_class[a],
                    a as u32,
                ));
            }
        }
        // No ground truth of this class in this video (or a video outside the subset): a false
        // positive at every threshold.
        if candidates.is_empty() {
            continue;
        }
        // Highest tIoU first; stable, so equal tIoUs keep ground-truth file order.
        candidates.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        for (level, &threshold) in thresholds.iter().enumerate() {
            for &(overlap, g, a) in candidates.iter() {
                if overlap < threshold {
                    break;
                }
                let lock = &mut scratch.locked[level * gt_count + g as usize];
                if *lock {
                    continue;
                }
                *lock = true;
                scratch.hits[level].push(rank as u32);
                scratch.matched[level].push(a);
                break;
            }
        }
    }
}

/// The official VOC-style interpolated AP, computed from the true-positive ranks alone.
///
/// Recall only changes at a true positive, and precision only rises there (it falls along every
/// run of false positives), so the precision made monotone from the right, read at the points
/// where recall changes, is the running maximum over the later true positives. The terms are the
/// official ones in the official order, including the final zero term `(1 - recall) * 0` that
/// numpy adds when recall never reaches 1, so the pairwise sum groups them identically.
fn average_precision(hits: &[u32], positives: usize, terms: &mut Vec<f64>) -> f64 {
    interpolated_ap(hits, positives, terms, |tp, rank| tp / (rank + 1.0))
}

/// [`average_precision`] with another precision: `precision(true positives so far, rank)` at
/// each true positive (0-based rank), which must fall along runs of false positives.
pub(crate) fn interpolated_ap(
    hits: &[u32],
    positives: usize,
    terms: &mut Vec<f64>,
    precision: impl Fn(f64, f64) -> f64,
) -> f64 {
    let positives = positives as f64;
    terms.clear();
    let mut best_after = 0.0f64;
    // Walk backwards to fill in the running maximum, then reverse.
    for (k, &rank) in hits.iter().enumerate().rev() {
        let tp = (k + 1) as f64;
        best_after = best_after.max(precision(tp, rank as f64));
        let step = tp / positives - k as f64 / positives;
        terms.push(step * best_after);
    }
    terms.reverse();
    let last_recall = hits.len() as f64 / positives;
    if last_recall != 1.0 {
        terms.push((1.0 - last_recall) * 0.0);
    }
    numpy_sum(terms)
}

/// Interpolated precision at recall 0, 0.01, ..., 1, from the true-positive ranks.
fn precision_curve(hits: &[u32], positives: usize) -> Vec<f64> {
    let positives = positives as f64;
    // Suffix maxima of precision over the true positives.
    let mut best = vec![0.0f64; hits.len() + 1];
    for (k, &rank) in hits.iter().enumerate().rev() {
        best[k] = best[k + 1].max((k + 1) as f64 / (rank as f64 + 1.0));
    }
    (0..RECALL_LEVELS)
        .map(|level| {
            let wanted = level as f64 / (RECALL_LEVELS - 1) as f64;
            // The first true positive whose recall reaches the level.
            let k = hits
                .iter()
                .enumerate()
                .position(|(k, _)| (k + 1) as f64 / positives >= wanted)
                .unwrap_or(hits.len());
            if level == 0 {
                best[0]
            } else {
                best[k]
            }
        })
        .collect()
}

fn warnings(truth: &GroundTruth, predictions: &Predictions, per_class: &[ClassAp]) -> Vec<String> {
    let mut warnings = truth.notes.clone();
    if predictions.dropped > 0 {
        warnings.push(format!(
            "dropped {} prediction(s) of excluded videos or labels",
            predictions.dropped
        ));
    }
    let unknown: Vec<&str> = predictions
        .unknown_videos()
        .map(|v| v.id.as_str())
        .collect();
    if !unknown.is_empty() {
        let mut message =
            format!(
            "{} predicted video(s) are not in the {:?} subset; their predictions count as false \
             positives (e.g. {})",
            unknown.len(),
            truth.subset,
            unknown.iter().take(3).copied().collect::<Vec<_>>().join(", ")
        );
        let prefixed = unknown
            .iter()
            .filter(|id| {
                id.strip_prefix("v_")
                    .is_some_and(|bare| truth.video_of(bare).is_some())
                    || truth.video_of(&format!("v_{id}")).is_some()
            })
            .count();
        if prefixed > 0 {
            message.push_str(&format!(
                "; {prefixed} of them match a ground-truth video once a \"v_\" prefix is added or \
                 removed: make the ids agree"
            ));
        }
        warnings.push(message);
    }
    let mut covered = vec![false; truth.videos.len()];
    for v in &predictions.videos {
        if let Some(t) = v.truth {
            covered[t as usize] = true;
        }
    }
    let missing = truth
        .annotated_videos()
        .filter(|&v| !covered[v as usize])
        .count();
    if missing > 0 {
        warnings.push(format!(
            "{missing} annotated video(s) have no predictions; their ground truth counts as missed"
        ));
    }
    let empty: Vec<&str> = per_class
        .iter()
        .filter(|c| c.predictions == 0)
        .map(|c| c.label.as_str())
        .collect();
    if !empty.is_empty() {
        warnings.push(format!(
            "{} class(es) have no predictions and get AP 0: {}",
            empty.len(),
            empty.iter().take(5).copied().collect::<Vec<_>>().join(", ")
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ground_truth::GroundTruthOptions;
    use crate::predictions::PredictionKind;
    use std::path::Path;

    fn evaluate(gt: &str, pred: &str, thresholds: &[f64]) -> DetectionReport {
        let truth = GroundTruth::from_slice(
            gt.as_bytes(),
            Path::new("gt.json"),
            &GroundTruthOptions::default(),
        )
        .expect("valid ground truth");
        let predictions = Predictions::from_slice(
            pred.as_bytes(),
            Path::new("pred.json"),
            &truth,
            PredictionKind::Detections,
        )
        .expect("valid predictions");
        evaluate_detection(&truth, &predictions, thresholds).expect("evaluation")
    }

    const GT: &str = r#"{"database": {
        "v1": {"subset": "validation", "annotations": [
            {"segment": [0, 10], "label": "A"}, {"segment": [20, 30], "label": "A"}]},
        "v2": {"subset": "validation", "annotations": [
            {"segment": [5, 15], "label": "A"}, {"segment": [0, 4], "label": "B"}]}
    }}"#;

    #[test]
    fn hand_computed_ap_with_false_positive_and_duplicate() {
        // Class A has 3 ground-truth segments. In descending score:
        //  0.9 v1 [0,10]   tIoU 1 with gt0          -> TP   P=1    R=1/3
        //  0.8 v1 [0,10]   gt0 already locked, gt1 tIoU 0 -> FP   P=1/2  R=1/3
        //  0.7 v2 [5,15]   tIoU 1                    -> TP   P=2/3  R=2/3
        //  0.6 v1 [22,30]  tIoU 0.8 with gt1         -> TP at 0.5, FP at 0.9  (P=3/4 R=1 | P=1/2)
        // AP@0.5 = 1/3*1 + 1/3*(3/4) + 1/3*(3/4) = 5/6 (precision made monotone from the right).
        // AP@0.9 = 1/3*1 + 1/3*(2/3) = 5/9.
        // Class B has one segment and one prediction of tIoU 0.5 exactly ([0,4] vs [2,6]: 2/6 no;
        // use [0,2]: 2/4 = 0.5): TP at 0.5 (not below), FP at 0.9.
        let pred = r#"{"results": {
            "v1": [{"label": "A", "score": 0.9, "segment": [0, 10]},
                   {"label": "A", "score": 0.8, "segment": [0, 10]},
                   {"label": "A", "score": 0.6, "segment": [22, 30]}],
            "v2": [{"label": "A", "score": 0.7, "segment": [5, 15]},
                   {"label": "B", "score": 0.5, "segment": [0, 2]}]
        }}"#;
        let report = evaluate(GT, pred, &[0.5, 0.9]);
        let a = &report.per_class[0];
        assert!((a.ap[0] - 5.0 / 6.0).abs() < 1e-15, "{:?}", a.ap);
        assert!((a.ap[1] - 5.0 / 9.0).abs() < 1e-15, "{:?}", a.ap);
        let b = &report.per_class[1];
        assert_eq!(b.ap, [1.0, 0.0]);
        assert!((report.map[0] - (5.0 / 6.0 + 1.0) / 2.0).abs() < 1e-15);
        assert!((report.average_map - (report.map[0] + report.map[1]) / 2.0).abs() < 1e-15);
    }

    #[test]
    fn class_without_predictions_counts_as_zero_and_is_reported() {
        let pred = r#"{"results": {"v1": [{"label": "A", "score": 1, "segment": [0, 10]}]}}"#;
        let report = evaluate(GT, pred, &[0.5]);
        assert_eq!(report.per_class[1].ap, [0.0]);
        assert!((report.per_class[0].ap[0] - 1.0 / 3.0).abs() < 1e-15);
        assert!(report
            .warnings
            .iter()
            .any(|w| w.contains("no predictions and get AP 0")));
        assert!(report
            .warnings
            .iter()
            .any(|w| w.contains("1 annotated video")));
    }

    #[test]
    fn predictions_for_unknown_videos_are_false_positives_with_a_prefix_hint() {
        let pred = r#"{"results": {
            "v_v1": [{"label": "A", "score": 1.0, "segment": [0, 10]}],
            "v1": [{"label": "A", "score": 0.5, "segment": [0, 10]}]}}"#;
        let report = evaluate(GT, pred, &[0.5]);
        // FP then TP: precision [0, 1/2], recall [0, 1/3] -> AP = 1/3 * 1/2.
        assert!((report.per_class[0].ap[0] - 1.0 / 6.0).abs() < 1e-15);
        assert!(
            report.warnings.iter().any(|w| w.contains("\"v_\" prefix")),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn ties_keep_file_order() {
        // Equal scores: whichever comes first in the file ranks first. A false positive ranked
        // before the true positive halves the AP.
        let fp_first = r#"{"results": {
            "v1": [{"label": "B", "score": 0.5, "segment": [0, 4]}],
            "v2": [{"label": "B", "score": 0.5, "segment": [0, 4]}]}}"#;
        assert_eq!(evaluate(GT, fp_first, &[0.5]).per_class[1].ap, [0.5]);
        let tp_first = r#"{"results": {
            "v2": [{"label": "B", "score": 0.5, "segment": [0, 4]},
                   {"label": "B", "score": 0.5, "segment": [10, 12]}]}}"#;
        assert_eq!(evaluate(GT, tp_first, &[0.5]).per_class[1].ap, [1.0]);
    }

    #[test]
    fn highest_tiou_unlocked_segment_wins() {
        // One prediction overlapping two A segments of v1; the better match is gt [0,10].
        let gt = r#"{"database": {"v": {"subset": "validation", "annotations": [
            {"segment": [0, 8], "label": "A"}, {"segment": [0, 10], "label": "A"}]}}}"#;
        let pred = r#"{"results": {"v": [
            {"label": "A", "score": 0.9, "segment": [0, 10]},
            {"label": "A", "score": 0.8, "segment": [0, 10]}]}}"#;
        // First locks [0,10] (tIoU 1), second falls back to [0,8] (tIoU 0.8): both TP at 0.7,
        // only the first at 0.9.
        let report = evaluate(gt, pred, &[0.7, 0.9]);
        assert_eq!(report.per_class[0].ap[0], 1.0);
        assert_eq!(report.per_class[0].ap[1], 0.5);
    }

    #[test]
    fn precision_curve_starts_at_best_precision_and_ends_at_zero_without_full_recall() {
        let pred = r#"{"results": {"v1": [{"label": "A", "score": 1, "segment": [0, 10]}],
                                   "v2": [{"label": "B", "score": 1, "segment": [0, 4]}]}}"#;
        let report = evaluate(GT, pred, &[0.5]);
        let curve = &report.precision_at_recall[0];
        assert_eq!(curve.len(), RECALL_LEVELS);
        assert_eq!(curve[0], 1.0);
        // Class A reaches recall 1/3 only: at recall 0.5, A contributes 0 and B 1.
        assert_eq!(curve[50], 0.5);
        assert_eq!(curve[100], 0.5);
    }
}

/// The JSON form of a detection report (`lofi eval detection --json`, `eval.json` of `detect`
/// and of the demo's rows, `lofi.evaluate_detection`): exactly these keys, fractions not
/// percent.
#[derive(Debug, serde::Serialize)]
pub struct DetectionJson<'a> {
    /// The tIoU thresholds.
    pub tiou_thresholds: &'a [f64],
    /// mAP per threshold.
    #[serde(rename = "mAP")]
    pub map: &'a [f64],
    /// Mean of `map`.
    #[serde(rename = "average_mAP")]
    pub average_map: f64,
    /// AP per threshold of each class, in the ground truth's class order.
    #[serde(rename = "per_class_AP")]
    pub per_class_ap: crate::json::OrderedMap<&'a [f64]>,
    /// How the evaluation was set up.
    pub protocol: &'a Protocol,
}

/// The JSON form of `report`.
pub fn detection_json(report: &DetectionReport) -> DetectionJson<'_> {
    DetectionJson {
        tiou_thresholds: &report.tiou_thresholds,
        map: &report.map,
        average_map: report.average_map,
        per_class_ap: crate::json::OrderedMap(
            report
                .per_class
                .iter()
                .map(|c| (c.label.clone(), c.ap.as_slice()))
                .collect(),
        ),
        protocol: &report.protocol,
    }
}
