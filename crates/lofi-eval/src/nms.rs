//! Non-maximum suppression over temporal segments: hard NMS and Soft-NMS.
//!
//! A localization head proposes thousands of overlapping candidates per video; these functions
//! reduce them to the few that the metrics look at (top 100 on ActivityNet). Soft-NMS decays the
//! scores of candidates that overlap a better one instead of deleting them, which suits dense
//! ground truth. Ties are broken by input order (the earlier candidate wins), so the output is
//! deterministic.

use crate::error::{EvalError, Result};
use crate::segment::{tiou, Segment};

/// A candidate segment with its confidence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredSegment {
    /// The interval.
    pub segment: Segment,
    /// Its confidence.
    pub score: f64,
}

impl ScoredSegment {
    /// A candidate from its ends and score.
    pub const fn new(start: f64, end: f64, score: f64) -> Self {
        ScoredSegment {
            segment: Segment::new(start, end),
            score,
        }
    }
}

/// How Soft-NMS lowers the score of a candidate that overlaps a kept one by tIoU `o`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SoftNmsDecay {
    /// `score * exp(-o^2 / sigma)`; G-TAD uses sigma 0.8 on ActivityNet and 0.46 on THUMOS14.
    Gaussian {
        /// Width of the Gaussian; larger decays less.
        sigma: f64,
    },
    /// `score * (1 - o)` where `o > iou_threshold`, unchanged otherwise.
    Linear {
        /// Overlap above which scores decay.
        iou_threshold: f64,
    },
    /// BMN's variant (`post_processing.py` of the BMN reimplementations): `score *
    /// exp(-o^2 / alpha)` only where `o > low + (high - low) * width`, `width` the kept
    /// candidate's length as a fraction of `span` (the video, or the window, the candidates
    /// lie in), so that long proposals suppress only near-duplicates. Its loop, too, is BMN's:
    /// it stops when one candidate is left (that one is never kept, unless it is the only
    /// candidate there was).
    Bmn {
        /// Width of the Gaussian (0.4 in the reference's options).
        alpha: f64,
        /// Threshold for a zero-length kept candidate (0.5).
        low: f64,
        /// Threshold for a kept candidate as long as the span (0.9).
        high: f64,
        /// The length widths are fractions of (seconds, as the candidates).
        span: f64,
    },
}

/// Soft-NMS settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftNms {
    /// The decay rule.
    pub decay: SoftNmsDecay,
    /// How many candidates to keep at most.
    pub top_k: usize,
    /// Candidates whose decayed score falls below this are dropped (0 keeps all).
    pub min_score: f64,
}

impl SoftNms {
    /// Gaussian Soft-NMS keeping `top_k` candidates.
    pub fn gaussian(sigma: f64, top_k: usize) -> Self {
        SoftNms {
            decay: SoftNmsDecay::Gaussian { sigma },
            top_k,
            min_score: 0.0,
        }
    }

    fn validate(&self) -> Result<()> {
        match self.decay {
            SoftNmsDecay::Gaussian { sigma } if !(sigma.is_finite() && sigma > 0.0) => Err(
                EvalError::Invalid(format!("Soft-NMS sigma must be positive, got {sigma}")),
            ),
            SoftNmsDecay::Bmn {
                alpha,
                low,
                high,
                span,
            } if !(alpha.is_finite()
                && alpha > 0.0
                && low.is_finite()
                && high.is_finite()
                && span.is_finite()
                && span > 0.0) =>
            {
                Err(EvalError::Invalid(format!(
                    "BMN Soft-NMS needs alpha > 0, finite thresholds and a positive span, got \
                     alpha {alpha}, low {low}, high {high}, span {span}"
                )))
            }
            SoftNmsDecay::Linear { iou_threshold } if !(0.0..=1.0).contains(&iou_threshold) => {
                Err(EvalError::Invalid(format!(
                    "Soft-NMS tIoU threshold must lie in [0, 1], got {iou_threshold}"
                )))
            }
            _ if !self.min_score.is_finite() => Err(EvalError::Invalid(format!(
                "Soft-NMS minimum score must be finite, got {}",
                self.min_score
            ))),
            _ => Ok(()),
        }
    }
}

fn check_scores(candidates: &[ScoredSegment]) -> Result<()> {
    match candidates.iter().find(|c| !c.score.is_finite()) {
        Some(c) => Err(EvalError::Invalid(format!(
            "NMS got a non-finite score {} for segment [{}, {}]",
            c.score, c.segment.start, c.segment.end
        ))),
        None => Ok(()),
    }
}

/// Index of the highest score among the live candidates; the earliest wins a tie.
fn best(candidates: &[ScoredSegment], alive: &[bool]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, c) in candidates.iter().enumerate() {
        if alive[i] && best.is_none_or(|b| c.score > candidates[b].score) {
            best = Some(i);
        }
    }
    best
}

/// Hard NMS: repeatedly keeps the best candidate and deletes every other whose tIoU with it is
/// above `iou_threshold`, until `top_k` are kept or none is left. Output is in descending score.
pub fn nms(
    candidates: &[ScoredSegment],
    iou_threshold: f64,
    top_k: usize,
) -> Result<Vec<ScoredSegment>> {
    Ok(nms_indices(candidates, iou_threshold, top_k)?
        .into_iter()
        .map(|i| candidates[i])
        .collect())
}

/// [`nms`], returning the positions of the kept candidates in `candidates` (best first), for
/// callers that keep other data alongside each candidate.
pub fn nms_indices(
    candidates: &[ScoredSegment],
    iou_threshold: f64,
    top_k: usize,
) -> Result<Vec<usize>> {
    check_scores(candidates)?;
    if !(0.0..=1.0).contains(&iou_threshold) {
        return Err(EvalError::Invalid(format!(
            "NMS tIoU threshold must lie in [0, 1], got {iou_threshold}"
        )));
    }
    let mut alive = vec![true; candidates.len()];
    let mut kept = Vec::with_capacity(top_k.min(candidates.len()));
    while kept.len() < top_k {
        let Some(i) = best(candidates, &alive) else {
            break;
        };
        alive[i] = false;
        let chosen = candidates[i];
        kept.push(i);
        for (j, other) in candidates.iter().enumerate() {
            if alive[j] && tiou(other.segment, chosen.segment) > iou_threshold {
                alive[j] = false;
            }
        }
    }
    Ok(kept)
}

/// Soft-NMS: repeatedly keeps the best candidate and decays the scores of the others by their
/// overlap with it, until `top_k` are kept or none is left. Output is in the order kept, with the
/// decayed scores.
pub fn soft_nms(candidates: &[ScoredSegment], settings: &SoftNms) -> Result<Vec<ScoredSegment>> {
    Ok(soft_nms_indices(candidates, settings)?
        .into_iter()
        .map(|(i, score)| ScoredSegment {
            segment: candidates[i].segment,
            score,
        })
        .collect())
}

/// [`soft_nms`], returning for each kept candidate its position in `candidates` and its decayed
/// score, in the order kept.
pub fn soft_nms_indices(
    candidates: &[ScoredSegment],
    settings: &SoftNms,
) -> Result<Vec<(usize, f64)>> {
    check_scores(candidates)?;
    settings.validate()?;
    let mut pool = candidates.to_vec();
    let mut alive: Vec<bool> = pool.iter().map(|c| c.score >= settings.min_score).collect();
    let mut kept = Vec::with_capacity(settings.top_k.min(pool.len()));
    let bmn_loop = matches!(settings.decay, SoftNmsDecay::Bmn { .. }) && pool.len() > 1;
    while kept.len() < settings.top_k {
        if bmn_loop && alive.iter().filter(|a| **a).count() <= 1 {
            break;
        }
        let Some(i) = best(&pool, &alive) else {
            break;
        };
        alive[i] = false;
        let chosen = pool[i];
        kept.push((i, chosen.score));
        for (j, other) in pool.iter_mut().enumerate() {
            if !alive[j] {
                continue;
            }
            let overlap = tiou(other.segment, chosen.segment);
            other.score *= match settings.decay {
                SoftNmsDecay::Gaussian { sigma } => (-(overlap * overlap) / sigma).exp(),
                SoftNmsDecay::Linear { iou_threshold } if overlap > iou_threshold => 1.0 - overlap,
                SoftNmsDecay::Linear { .. } => 1.0,
                SoftNmsDecay::Bmn {
                    alpha,
                    low,
                    high,
                    span,
                } => {
                    let width = (chosen.segment.end - chosen.segment.start) / span;
                    if overlap > low + (high - low) * width {
                        (-(overlap * overlap) / alpha).exp()
                    } else {
                        1.0
                    }
                }
            };
            if other.score < settings.min_score {
                alive[j] = false;
            }
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates() -> Vec<ScoredSegment> {
        vec![
            ScoredSegment::new(0.0, 10.0, 0.9),
            ScoredSegment::new(1.0, 10.0, 0.8), // tIoU 0.9 with the first
            ScoredSegment::new(20.0, 30.0, 0.7),
            ScoredSegment::new(5.0, 15.0, 0.6), // tIoU 1/3 with the first
        ]
    }

    #[test]
    fn hard_nms_removes_overlaps_above_threshold() {
        let kept = nms(&candidates(), 0.5, 10).expect("valid");
        let scores: Vec<f64> = kept.iter().map(|c| c.score).collect();
        assert_eq!(scores, [0.9, 0.7, 0.6]);
        assert_eq!(nms(&candidates(), 0.5, 2).expect("valid").len(), 2);
        assert!(nms(&candidates(), 1.5, 2).is_err());
    }

    #[test]
    fn index_variants_point_at_the_kept_candidates() {
        let all = candidates();
        assert_eq!(nms_indices(&all, 0.5, 10).expect("valid"), [0, 2, 3]);
        let kept = soft_nms(&all, &SoftNms::gaussian(0.8, 10)).expect("valid");
        let indexed = soft_nms_indices(&all, &SoftNms::gaussian(0.8, 10)).expect("valid");
        assert_eq!(
            indexed.iter().map(|k| k.0).collect::<Vec<_>>(),
            [0, 2, 3, 1]
        );
        for ((i, score), c) in indexed.iter().zip(&kept) {
            assert_eq!((all[*i].segment, *score), (c.segment, c.score));
        }
    }

    #[test]
    fn gaussian_soft_nms_decays_by_overlap() {
        let kept = soft_nms(&candidates(), &SoftNms::gaussian(0.8, 10)).expect("valid");
        assert_eq!(kept.len(), 4);
        assert_eq!(kept[0], ScoredSegment::new(0.0, 10.0, 0.9));
        assert_eq!(kept[1].score, 0.7); // disjoint from the first: untouched
                                        // [5,15]: decayed by exp(-(1/3)^2/0.8) after the first; disjoint from [20,30].
        let third = 0.6 * (-(1.0f64 / 9.0) / 0.8).exp();
        assert!((kept[2].score - third).abs() < 1e-15, "{kept:?}");
        // [1,10]: tIoU 0.9 with the first, then 5/14 with [5,15].
        let fourth = 0.8 * (-(0.81f64) / 0.8).exp() * (-(25.0f64 / 196.0) / 0.8).exp();
        assert!((kept[3].score - fourth).abs() < 1e-12, "{kept:?}");
    }

    #[test]
    fn linear_soft_nms_and_minimum_score() {
        let settings = SoftNms {
            decay: SoftNmsDecay::Linear { iou_threshold: 0.5 },
            top_k: 10,
            min_score: 0.1,
        };
        let kept = soft_nms(&candidates(), &settings).expect("valid");
        // [1,10] decays to 0.8 * 0.1 = 0.08 < 0.1: dropped.
        let scores: Vec<f64> = kept.iter().map(|c| c.score).collect();
        assert_eq!(scores, [0.9, 0.7, 0.6]);
    }

    #[test]
    fn ties_keep_input_order_and_bad_settings_are_rejected() {
        let tied = [
            ScoredSegment::new(0.0, 1.0, 0.5),
            ScoredSegment::new(2.0, 3.0, 0.5),
        ];
        let kept = soft_nms(&tied, &SoftNms::gaussian(0.8, 10)).expect("valid");
        assert_eq!(kept[0].segment.start, 0.0);
        assert!(soft_nms(&tied, &SoftNms::gaussian(0.0, 10)).is_err());
        let nan = [ScoredSegment::new(0.0, 1.0, f64::NAN)];
        assert!(soft_nms(&nan, &SoftNms::gaussian(0.8, 10)).is_err());
    }
}
