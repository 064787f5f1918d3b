//! The G-TAD (BMN-style) training loss: class-balanced binary cross-entropy on the start/end
//! probabilities, L2 on the regression-IoU map with balanced sampling across IoU bands, and
//! class-balanced binary cross-entropy on the classification-IoU map;
//! total = `boundary_weight * boundary + regression_weight * regression +
//! classification_weight * classification` (1, 10, 1 by default).
//!
//! Exists to keep the exact weighting rules in one tested place: LoFi's encoder is trained by
//! this loss, so a change here changes every result.
//!
//! All masks, balancing coefficients and the random band sampling are computed on the host from
//! the (host-side) targets and uploaded as weight tensors, so the loss needs no device-to-host
//! synchronisation and is deterministic for a given `seed`.
//!
//! Balancing (counts over the whole batch): with `P` positives and `N` negatives among the
//! entries considered, positives get weight `0.5 (P + N) / P` and negatives `0.5 (P + N) / N`
//! (BMN's `coef_1`, `coef_0`); a side with no entries gets weight 0 instead of BMN's division by
//! zero. Regression bands, as G-TAD's `pem_reg_loss_func`: all anchors with IoU > `reg_high` are
//! kept; anchors in (`reg_low`, `reg_high`] and in (0, `reg_low`] are each kept when a uniform
//! draw exceeds `1 - #high / #band`, so that every band contributes about as many anchors as the
//! high band; anchors with IoU 0 are never used. Two guards differ from the official code, which
//! only matter in degenerate batches: with no high anchor, all anchors of the other two bands
//! are kept (the official loss is 0 / 0 = NaN there), and a band smaller than the high band is
//! kept whole (the official `rand * mask > 1 - ratio` then also selects every entry outside the
//! band, invalid anchors included). The draws come from `seed` (splitmix64, one draw per entry,
//! shared by the two bands, which are disjoint).

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::gtad::GtadOutput;
use crate::targets::GtadTargets;

/// Loss weights and thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GtadLossConfig {
    /// Weight of the start + end boundary loss (1).
    pub boundary_weight: f32,
    /// Weight of the regression-map loss (10).
    pub regression_weight: f32,
    /// Weight of the classification-map loss (1).
    pub classification_weight: f32,
    /// Boundary targets above this are positives (0.5).
    pub boundary_positive: f32,
    /// Classification-map targets above this are positives (0.9).
    pub cls_positive: f32,
    /// Upper regression band threshold (0.7).
    pub reg_high: f32,
    /// Lower regression band threshold (0.3).
    pub reg_low: f32,
}

impl Default for GtadLossConfig {
    fn default() -> Self {
        Self {
            boundary_weight: 1.0,
            regression_weight: 10.0,
            classification_weight: 1.0,
            boundary_positive: 0.5,
            cls_positive: 0.9,
            reg_high: 0.7,
            reg_low: 0.3,
        }
    }
}

/// The loss and its parts (each a one-element tensor on the output's device).
#[derive(Debug, Clone)]
pub struct LossParts {
    /// Weighted total, the value to back-propagate.
    pub total: Tensor<1>,
    /// Start + end weighted BCE.
    pub boundary: Tensor<1>,
    /// Balanced L2 on the regression map.
    pub regression: Tensor<1>,
    /// Weighted BCE on the classification map.
    pub classification: Tensor<1>,
}

/// The G-TAD loss.
#[derive(Debug, Clone, Default)]
pub struct GtadLoss {
    /// Weights and thresholds.
    pub config: GtadLossConfig,
}

const EPS: f32 = 1e-6;

/// Per-element weights `(a_pos, a_neg)` of a balanced BCE normalised by `norm`.
fn bce_weights(gt: &[f32], valid: &[f32], thr: f32, mean_over_all: bool) -> (Vec<f32>, Vec<f32>) {
    let pos: Vec<f32> = gt
        .iter()
        .zip(valid)
        .map(|(g, v)| if *g > thr { *v } else { 0.0 })
        .collect();
    let neg: Vec<f32> = gt
        .iter()
        .zip(valid)
        .map(|(g, v)| if *g > thr { 0.0 } else { *v })
        .collect();
    let p: f32 = pos.iter().sum();
    let n: f32 = neg.iter().sum();
    let entries = p + n;
    let c1 = if p > 0.0 { 0.5 * entries / p } else { 0.0 };
    let c0 = if n > 0.0 { 0.5 * entries / n } else { 0.0 };
    // BMN's boundary loss takes the mean over all entries, its map loss divides by the entries
    // considered; both are `entries` here because every entry of a boundary vector is valid.
    let norm = if mean_over_all {
        gt.len() as f32
    } else {
        entries
    }
    .max(1.0);
    (
        pos.iter().map(|m| m * c1 / norm).collect(),
        neg.iter().map(|m| m * c0 / norm).collect(),
    )
}

fn weighted_bce<const D: usize>(p: Tensor<D>, a_pos: Tensor<D>, a_neg: Tensor<D>) -> Tensor<1> {
    let lp = p.clone().add_scalar(EPS).log();
    let ln = p.neg().add_scalar(1.0 + EPS).log();
    (lp * a_pos + ln * a_neg).sum().neg()
}

/// `n` uniform draws in `[0, 1)` for the band sampling, from lofi-rng's stream of `seed`.
fn uniform(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = lofi_rng::SplitMix64::new(seed);
    (0..n).map(|_| rng.next_f32()).collect()
}

impl GtadLoss {
    /// A loss with the given configuration.
    pub fn new(config: GtadLossConfig) -> Self {
        Self { config }
    }

    /// Regression weights: band-balanced sample, normalised so that the loss is
    /// `0.5 * sum(w (p - g)^2) / sum(w)`.
    fn regression_weights(&self, gt: &[f32], valid: &[f32], seed: u64) -> Vec<f32> {
        let c = &self.config;
        // Band 3: IoU 0, never sampled (G-TAD's low band is (0, reg_low]).
        let band = |g: f32| -> u8 {
            if g > c.reg_high {
                2
            } else if g > c.reg_low {
                1
            } else if g > 0.0 {
                0
            } else {
                3
            }
        };
        let mut counts = [0f32; 4];
        for (g, v) in gt.iter().zip(valid) {
            if *v > 0.0 {
                counts[band(*g) as usize] += 1.0;
            }
        }
        let keep = |b: u8| -> f32 {
            if b == 2 || counts[2] == 0.0 {
                1.0
            } else {
                (counts[2] / counts[b as usize]).min(1.0)
            }
        };
        let r = uniform(seed, gt.len());
        let w: Vec<f32> = gt
            .iter()
            .zip(valid)
            .zip(&r)
            .map(|((g, v), u)| {
                if *v == 0.0 {
                    return 0.0;
                }
                let b = band(*g);
                if b == 3 {
                    return 0.0;
                }
                // G-TAD keeps a mid/low anchor when rand > 1 - #high / #band.
                if b == 2 || *u > 1.0 - keep(b) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let total: f32 = w.iter().sum();
        if total > 0.0 {
            w.iter().map(|x| 0.5 * x / total).collect()
        } else {
            w
        }
    }

    /// Computes the loss of `out` against per-video `targets` (same order as the batch).
    /// `seed` drives the regression band sampling (use e.g. the global step).
    pub fn compute(
        &self,
        out: &GtadOutput,
        targets: &[GtadTargets],
        seed: u64,
    ) -> Result<LossParts, ModelError> {
        let [b, two, d, l] = out.maps.dims();
        let first = targets
            .first()
            .ok_or_else(|| ModelError::Input("no targets for the loss".into()))?;
        if two != 2 || targets.len() != b || first.l != l || first.d != d {
            return Err(ModelError::Input(format!(
                "targets (B = {}, L = {}, D = {}) do not match the head output {:?}",
                targets.len(),
                first.l,
                first.d,
                [b, two, d, l]
            )));
        }
        let device: Device = out.maps.device();
        let (_, _, gi) = GtadTargets::batch(targets, &device)?;
        let host = |f: &dyn Fn(&GtadTargets) -> &Vec<f32>| -> Vec<f32> {
            targets.iter().flat_map(|t| f(t).iter().copied()).collect()
        };
        let up2 = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [b, l]), &device);
        let up3 = |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [b, d, l]), &device);
        let c = &self.config;

        // Boundary.
        let ones = vec![1.0f32; b * l];
        let mut boundary: Option<Tensor<1>> = None;
        for (pred, gt) in [
            (out.start.clone(), host(&|t| &t.start)),
            (out.end.clone(), host(&|t| &t.end)),
        ] {
            let (ap, an) = bce_weights(&gt, &ones, c.boundary_positive, true);
            let part = weighted_bce(pred, up2(ap), up2(an));
            boundary = Some(match boundary {
                Some(x) => x + part,
                None => part,
            });
        }
        let boundary = boundary.unwrap_or_else(|| Tensor::zeros([1], &device));

        // Maps.
        let mask_host: Vec<f32> = (0..b)
            .flat_map(|_| {
                (0..d).flat_map(move |dur| (0..l).map(move |t| if t + dur < l { 1.0 } else { 0.0 }))
            })
            .collect();
        let iou = host(&|t| &t.iou);
        let reg_pred = out.maps.clone().slice([0..b, 0..1]).reshape([b, d, l]);
        let cls_pred = out.maps.clone().slice([0..b, 1..2]).reshape([b, d, l]);
        let wr = up3(self.regression_weights(&iou, &mask_host, seed));
        let regression = ((reg_pred - gi).powi_scalar(2) * wr).sum();
        let (ap, an) = bce_weights(&iou, &mask_host, c.cls_positive, false);
        let classification = weighted_bce(cls_pred, up3(ap), up3(an));

        let total = boundary.clone().mul_scalar(c.boundary_weight)
            + regression.clone().mul_scalar(c.regression_weight)
            + classification.clone().mul_scalar(c.classification_weight);
        Ok(LossParts {
            total,
            boundary,
            regression,
            classification,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gtad::anchor_mask;
    use crate::targets::{Segment, TargetConfig};

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_data().try_to_vec::<f32>().unwrap_or_default()[0]
    }

    fn perfect_output(t: &GtadTargets, device: &Device) -> GtadOutput {
        let (l, d) = (t.l, t.d);
        let hard = |v: &Vec<f32>, thr: f32| -> Vec<f32> {
            v.iter().map(|x| if *x > thr { 1.0 } else { 0.0 }).collect()
        };
        let mut maps = t.iou.clone();
        maps.extend(hard(&t.iou, 0.9));
        GtadOutput {
            start: Tensor::from_data(TensorData::new(hard(&t.start, 0.5), [1, l]), device),
            end: Tensor::from_data(TensorData::new(hard(&t.end, 0.5), [1, l]), device),
            maps: Tensor::from_data(TensorData::new(maps, [1, 2, d, l]), device),
            mask: anchor_mask(l, d, device),
        }
    }

    #[test]
    fn perfect_predictions_have_near_zero_loss_and_bad_ones_do_not() {
        let device = Device::flex();
        let t = GtadTargets::new(
            &[Segment::new(0.1, 0.4), Segment::new(0.55, 0.9)],
            20,
            &TargetConfig::default(),
        )
        .expect("valid");
        let loss = GtadLoss::default();
        let good = loss
            .compute(&perfect_output(&t, &device), std::slice::from_ref(&t), 1)
            .expect("valid");
        assert!(scalar(good.total) < 1e-3);
        let mut bad = perfect_output(&t, &device);
        bad.start = bad.start.neg().add_scalar(1.0);
        bad.maps = bad.maps.mul_scalar(0.0).add_scalar(0.5);
        let parts = loss
            .compute(&bad, std::slice::from_ref(&t), 1)
            .expect("valid");
        assert!(scalar(parts.boundary.clone()) > 1.0);
        assert!(scalar(parts.regression.clone()) > 1e-3);
        assert!(scalar(parts.classification.clone()) > 0.5);
        let total = scalar(parts.total);
        let sum =
            scalar(parts.boundary) + 10.0 * scalar(parts.regression) + scalar(parts.classification);
        assert!((total - sum).abs() < 1e-4);
    }

    #[test]
    fn balanced_bce_matches_hand_computation() {
        // 1 positive of 4: c1 = 0.5 * 4 / 1 = 2, c0 = 0.5 * 4 / 3; mean over 4 entries.
        let (ap, an) = bce_weights(&[0.9, 0.1, 0.0, 0.2], &[1.0; 4], 0.5, true);
        assert!((ap[0] - 0.5).abs() < 1e-6 && ap[1] == 0.0);
        assert!((an[1] - 1.0 / 6.0).abs() < 1e-6 && an[0] == 0.0);
        // No positives: negatives carry the loss alone, no NaN.
        let (ap, an) = bce_weights(&[0.0; 3], &[1.0; 3], 0.5, true);
        assert!(ap.iter().all(|x| *x == 0.0) && an.iter().all(|x| x.is_finite() && *x > 0.0));
    }

    #[test]
    fn regression_sampling_balances_bands() {
        let loss = GtadLoss::default();
        // 10 high, 100 mid, 1000 low anchors.
        let mut gt = vec![0.9f32; 10];
        gt.extend(vec![0.5; 100]);
        gt.extend(vec![0.1; 1000]);
        let valid = vec![1.0; gt.len()];
        let w = loss.regression_weights(&gt, &valid, 7);
        let kept = |r: std::ops::Range<usize>| w[r].iter().filter(|x| **x > 0.0).count();
        assert_eq!(kept(0..10), 10);
        assert!((2..=25).contains(&kept(10..110)), "mid {}", kept(10..110));
        assert!(
            (2..=25).contains(&kept(110..1110)),
            "low {}",
            kept(110..1110)
        );
        assert!((w.iter().sum::<f32>() - 0.5).abs() < 1e-4);
    }

    #[test]
    fn mismatched_targets_are_errors() {
        let device = Device::flex();
        let t = GtadTargets::new(&[Segment::new(0.1, 0.4)], 10, &TargetConfig::default())
            .expect("valid");
        let out = perfect_output(&t, &device);
        let t2 = GtadTargets::new(&[Segment::new(0.1, 0.4)], 12, &TargetConfig::default())
            .expect("valid");
        assert!(GtadLoss::default().compute(&out, &[t2], 0).is_err());
        assert!(GtadLoss::default().compute(&out, &[], 0).is_err());
    }
}
