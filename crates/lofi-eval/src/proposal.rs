//! Proposal evaluation: average recall against the average number of proposals (AR@AN) and the
//! area under that curve, as the ActivityNet proposal task defines them.
//!
//! Proposals are first thinned so that, over the whole file, there are `AN_max` per video on
//! average: each video keeps its `floor(n * ratio)` best, with
//! `ratio = AN_max * videos / proposals in the file`. Then, for 100 fractions of that budget, each
//! video's top proposals are checked against its ground truth: a segment is recalled at a threshold
//! if any of those proposals reaches it (no one-to-one assignment). Recall is averaged over the
//! thresholds; AUC is reported in percent of `AN_max`, as the official tool prints it.

use crate::error::{EvalError, Result};
use crate::ground_truth::GroundTruth;
use crate::numeric::numpy_sum;
use crate::predictions::{Prediction, Predictions};
use crate::segment::{tiou, Thresholds};

/// Number of points on the AR@AN curve.
pub const CURVE_POINTS: usize = 100;

/// Settings of a proposal evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct ProposalOptions {
    /// Average number of proposals per video at the end of the curve (100 on ActivityNet).
    pub max_avg_proposals: f64,
    /// tIoU thresholds over which recall is averaged.
    pub tiou_thresholds: Vec<f64>,
}

impl Default for ProposalOptions {
    fn default() -> Self {
        ProposalOptions {
            max_avg_proposals: 100.0,
            tiou_thresholds: Thresholds::ACTIVITYNET.values(),
        }
    }
}

/// The outcome of a proposal evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct ProposalReport {
    /// The tIoU thresholds.
    pub tiou_thresholds: Vec<f64>,
    /// Recall per threshold (rows) at each curve point (columns).
    pub recall: Vec<Vec<f64>>,
    /// Recall averaged over the thresholds, per curve point.
    pub average_recall: Vec<f64>,
    /// Average number of proposals per video at each curve point.
    pub avg_proposals: Vec<f64>,
    /// Area under the AR@AN curve, in percent of the last AN (the official tool's number).
    pub auc: f64,
    /// AR at 1, 5, 10 and 100 proposals per video: `(AN, AR)`.
    pub ar_at: Vec<(u32, f64)>,
    /// Things a user should know about the inputs.
    pub warnings: Vec<String>,
}

impl ProposalReport {
    /// Average recall at `AN` proposals per video, if reported.
    pub fn ar(&self, an: u32) -> Option<f64> {
        self.ar_at.iter().find(|(a, _)| *a == an).map(|(_, r)| *r)
    }
}

/// The curve point used for AR@`an`: for `AN_max` = 100 that is point `an - 1`, whose AN equals
/// `an` (the convention of BMN and its successors); in general `ceil(an * 100 / AN_max) - 1`,
/// clamped to the curve.
pub fn curve_point_for(an: u32, max_avg_proposals: f64) -> usize {
    let point = (f64::from(an) * CURVE_POINTS as f64 / max_avg_proposals).ceil() as i64 - 1;
    point.clamp(0, CURVE_POINTS as i64 - 1) as usize
}

/// Recall at each curve point for each threshold: `overlaps` holds, per video, the number of
/// kept proposals and the tIoU rows of its ground-truth segments (one row per segment).
fn recall_curves(
    thresholds: &[f64],
    overlaps: &[(usize, Vec<f64>)],
    fractions: &[f64],
    positives: usize,
) -> Vec<Vec<f64>> {
    let mut recall = Vec::with_capacity(thresholds.len());
    let mut first_hit = Vec::new();
    for &threshold in thresholds {
        let mut matches = vec![0usize; CURVE_POINTS];
        for (columns, rows) in overlaps {
            let columns = *columns;
            // For every ground-truth segment, the rank of its first proposal reaching threshold.
            first_hit.clear();
            if columns > 0 {
                first_hit.extend(
                    rows.chunks(columns)
                        .filter_map(|row| row.iter().position(|&overlap| overlap >= threshold)),
                );
            }
            if first_hit.is_empty() {
                continue;
            }
            for (point, &fraction) in fractions.iter().enumerate() {
                let k = ((columns as f64 * fraction) as usize).min(columns);
                matches[point] += first_hit.iter().filter(|&&hit| hit < k).count();
            }
        }
        recall.push(
            matches
                .into_iter()
                .map(|m| m as f64 / positives as f64)
                .collect::<Vec<f64>>(),
        );
    }
    recall
}

/// Evaluates class-agnostic proposals against the ground truth.
pub fn evaluate_proposals(
    truth: &GroundTruth,
    proposals: &Predictions,
    options: &ProposalOptions,
) -> Result<ProposalReport> {
    let an_max = options.max_avg_proposals;
    if !(an_max.is_finite() && an_max > 0.0) {
        return Err(EvalError::Invalid(format!(
            "the maximum average number of proposals must be positive, got {an_max}"
        )));
    }
    let thresholds = &options.tiou_thresholds;
    if thresholds.is_empty() || thresholds.iter().any(|t| !t.is_finite()) {
        return Err(EvalError::Invalid(
            "proposal evaluation needs at least one finite tIoU threshold".into(),
        ));
    }
    let total = proposals.items.len();
    if total == 0 {
        return Err(EvalError::format(
            &proposals.path,
            "the file has no proposals",
        ));
    }
    let videos: Vec<u32> = truth.annotated_videos().collect();
    let ratio = an_max * videos.len() as f64 / total as f64;

    // Each ground-truth video's proposals, best first (stable: equal scores keep file order).
    let mut by_video: Vec<Vec<&Prediction>> = vec![Vec::new(); truth.videos.len()];
    for p in &proposals.items {
        if let Some(video) = proposals.videos[p.video as usize].truth {
            by_video[video as usize].push(p);
        }
    }

    // Per video: the tIoU of each ground-truth segment with each kept proposal, as rows.
    let mut overlaps: Vec<(usize, Vec<f64>)> = Vec::with_capacity(videos.len());
    let mut total_kept = 0usize;
    let mut without = 0usize;
    for &video in &videos {
        let ground_truth = truth.annotations_of(video);
        let list = &mut by_video[video as usize];
        if list.is_empty() {
            // The official tool scores such a video as one column of zero overlaps.
            without += 1;
            overlaps.push((1, vec![0.0; ground_truth.len()]));
            continue;
        }
        list.sort_by(|a, b| b.score.total_cmp(&a.score));
        let kept = ((list.len() as f64 * ratio) as usize).min(list.len());
        total_kept += kept;
        let mut rows = Vec::with_capacity(ground_truth.len() * kept);
        for annotation in ground_truth {
            rows.extend(
                list[..kept]
                    .iter()
                    .map(|p| tiou(p.segment, annotation.segment)),
            );
        }
        overlaps.push((kept, rows));
    }
    if total_kept == 0 {
        return Err(EvalError::format(
            &proposals.path,
            "no proposal of a ground-truth video is left after thinning to the average budget",
        ));
    }

    let scale = an_max * videos.len() as f64 / total_kept as f64;
    let fractions: Vec<f64> = (1..=CURVE_POINTS)
        .map(|j| j as f64 / 100.0 * scale)
        .collect();
    let positives: usize = videos.iter().map(|&v| truth.annotations_of(v).len()).sum();

    let recall = recall_curves(thresholds, &overlaps, &fractions, positives);
    // recall.mean(axis=0) adds the rows in order, then divides.
    let average_recall: Vec<f64> = (0..CURVE_POINTS)
        .map(|point| recall.iter().map(|row| row[point]).sum::<f64>() / thresholds.len() as f64)
        .collect();
    let per_video = total_kept as f64 / videos.len() as f64;
    let avg_proposals: Vec<f64> = fractions.iter().map(|f| f * per_video).collect();
    // numpy.trapz: the terms, then a pairwise sum.
    let terms: Vec<f64> = (0..CURVE_POINTS - 1)
        .map(|i| {
            (avg_proposals[i + 1] - avg_proposals[i]) * (average_recall[i + 1] + average_recall[i])
                / 2.0
        })
        .collect();
    let area = numpy_sum(&terms);
    let auc = 100.0 * area / avg_proposals[CURVE_POINTS - 1];
    let ar_at = [1u32, 5, 10, 100]
        .into_iter()
        .map(|an| (an, average_recall[curve_point_for(an, an_max)]))
        .collect();

    let mut warnings = truth.notes.clone();
    let unknown = proposals.unknown_videos().count();
    if unknown > 0 {
        warnings.push(format!(
            "{unknown} video(s) of the proposal file are not annotated videos of the {:?} subset; \
             their proposals still count in the per-video budget, as in the official tool",
            truth.subset
        ));
    }
    if without > 0 {
        warnings.push(format!(
            "{without} annotated video(s) have no proposals; their ground truth counts as missed"
        ));
    }
    Ok(ProposalReport {
        tiou_thresholds: thresholds.clone(),
        recall,
        average_recall,
        avg_proposals,
        auc,
        ar_at,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ground_truth::GroundTruthOptions;
    use crate::predictions::PredictionKind;
    use std::path::Path;

    fn evaluate(gt: &str, proposals: &str, options: &ProposalOptions) -> Result<ProposalReport> {
        let truth = GroundTruth::from_slice(
            gt.as_bytes(),
            Path::new("gt.json"),
            &GroundTruthOptions::default(),
        )?;
        let predictions = Predictions::from_slice(
            proposals.as_bytes(),
            Path::new("p.json"),
            &truth,
            PredictionKind::Proposals,
        )?;
        evaluate_proposals(&truth, &predictions, options)
    }

    const GT: &str = r#"{"database": {
        "v1": {"subset": "validation", "annotations": [
            {"segment": [0, 10], "label": "A"}, {"segment": [20, 30], "label": "A"}]},
        "v2": {"subset": "validation", "annotations": [{"segment": [5, 15], "label": "B"}]}
    }}"#;

    #[test]
    fn hand_computed_recall_curve() {
        // AN_max = 2 with 4 proposals over 2 videos: ratio 1, every proposal kept (2 per video).
        // v1: best [0,10] (hits gt0 fully), then [20,25] (tIoU 0.5 with gt1).
        // v2: best [0,1] (miss), then [5,15] (hit).
        let proposals = r#"{"results": {
            "v1": [{"score": 0.9, "segment": [0, 10]}, {"score": 0.8, "segment": [20, 25]}],
            "v2": [{"score": 0.7, "segment": [0, 1]}, {"score": 0.6, "segment": [5, 15]}]}}"#;
        let options = ProposalOptions {
            max_avg_proposals: 2.0,
            tiou_thresholds: vec![0.5, 0.9],
        };
        let report = evaluate(GT, proposals, &options).expect("valid");
        // Point j uses k = floor(2 * (j+1)/100) proposals per video: 0 for j < 49, 1 for
        // 49 <= j < 99, 2 at j = 99.
        assert_eq!(report.recall[0][48], 0.0);
        assert_eq!(report.recall[0][49], 1.0 / 3.0); // only v1 gt0
        assert_eq!(report.recall[0][99], 1.0); // gt1 at 0.5 exactly, v2 with its 2nd
        assert_eq!(report.recall[1][99], 2.0 / 3.0); // gt1 is missed at 0.9
        assert_eq!(report.average_recall[99], (1.0 + 2.0 / 3.0) / 2.0);
        assert!((report.avg_proposals[99] - 2.0).abs() < 1e-15);
        assert!((report.avg_proposals[0] - 0.02).abs() < 1e-15);
        // AR is a step curve: 0 up to AN 0.98, 1/3 up to 1.98, then 5/6 at 2.
        let expected_area = 0.02 * (1.0 / 3.0) / 2.0 // 0.98 -> 1.00
            + 0.98 * (1.0 / 3.0) // 1.00 -> 1.98
            + 0.02 * (1.0 / 3.0 + 5.0 / 6.0) / 2.0; // 1.98 -> 2.00
        assert!(
            (report.auc - 100.0 * expected_area / 2.0).abs() < 1e-9,
            "{}",
            report.auc
        );
    }

    #[test]
    fn budget_thins_each_video_and_counts_unknown_videos() {
        // 6 proposals in the file, 2 annotated videos, AN_max 1: ratio 1/3, so the video with
        // three proposals keeps one, and the unknown video's proposals enlarge the denominator.
        let proposals = r#"{"results": {
            "v1": [{"score": 0.1, "segment": [20, 30]}, {"score": 0.9, "segment": [0, 10]},
                   {"score": 0.5, "segment": [40, 50]}],
            "other": [{"score": 1, "segment": [0, 1]}, {"score": 1, "segment": [0, 1]},
                      {"score": 1, "segment": [0, 1]}]}}"#;
        let options = ProposalOptions {
            max_avg_proposals: 1.0,
            tiou_thresholds: vec![0.5],
        };
        let report = evaluate(GT, proposals, &options).expect("valid");
        // Kept: v1's best ([0,10]); total kept 1; at the last point k = 1: one of three recalled.
        assert_eq!(report.recall[0][99], 1.0 / 3.0);
        assert!(report
            .warnings
            .iter()
            .any(|w| w.contains("not annotated videos")));
        assert!(report.warnings.iter().any(|w| w.contains("no proposals")));
    }

    #[test]
    fn ar_points_follow_the_bmn_convention() {
        assert_eq!(curve_point_for(1, 100.0), 0);
        assert_eq!(curve_point_for(100, 100.0), 99);
        assert_eq!(curve_point_for(10, 50.0), 19);
        assert_eq!(curve_point_for(100, 50.0), 99);
    }

    #[test]
    fn empty_file_is_an_error() {
        let message = evaluate(GT, r#"{"results": {}}"#, &ProposalOptions::default())
            .expect_err("empty")
            .to_string();
        assert!(
            message.contains("p.json: the file has no proposals"),
            "{message}"
        );
    }
}
