//! Training targets of the G-TAD head at any temporal length: boundary (start/end) targets from
//! intersection-over-anchor with small regions around each ground-truth boundary, and the IoU map
//! of every `(duration, start)` anchor with the ground truth.
//!
//! Exists separately from the loss because targets are pure host-side arithmetic on annotations
//! (no tensors, no device), computed once per video and fidelity, and testable exactly.
//!
//! # Conventions
//! Segments are given as fractions of the video's covered span, `0 <= start < end <= 1`. With `L`
//! snippets, `gap = 1 / L`; the boundary target of snippet `i` is its intersection-over-anchor
//! with the anchor `[(i - 0.5) gap, (i + 1.5) gap]`, two snippets wide, exactly as G-TAD's
//! `dataset.py` (`anchor_xmin = gap (i - 0.5)`, `anchor_xmax = gap (i + 0.5)` for `i` in
//! `1..=L`); anchor `(d, t)` covers `[t gap, (t + d + 1) gap]`. A boundary's region has width
//! `boundary_width * gap` (3 snippets, as in BMN and G-TAD) centred on it.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// A ground-truth action, as fractions of the video span.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Start in `[0, 1)`.
    pub start: f64,
    /// End in `[start, 1]` (zero length: an annotation clipped to the span's border).
    pub end: f64,
}

impl Segment {
    /// A segment from its bounds.
    pub fn new(start: f64, end: f64) -> Self {
        Self { start, end }
    }
}

/// Target options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetConfig {
    /// Width of the region around each boundary, in snippets (3).
    pub boundary_width: f64,
    /// Longest anchor in snippets (`None` = `L`); must match the head's `max_duration`.
    pub max_duration: Option<usize>,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            boundary_width: 3.0,
            max_duration: None,
        }
    }
}

/// The targets of one video at one temporal length.
#[derive(Debug, Clone, PartialEq)]
pub struct GtadTargets {
    /// Temporal length `L`.
    pub l: usize,
    /// Durations `D`.
    pub d: usize,
    /// Start targets `[L]` in `[0, 1]`.
    pub start: Vec<f32>,
    /// End targets `[L]`.
    pub end: Vec<f32>,
    /// Max IoU of each anchor with the ground truth, `[D, L]` row-major (0 for invalid anchors).
    pub iou: Vec<f32>,
}

fn ioa(a0: f64, a1: f64, b0: f64, b1: f64) -> f64 {
    let inter = (a1.min(b1) - a0.max(b0)).max(0.0);
    inter / (a1 - a0)
}

fn iou(a0: f64, a1: f64, b0: f64, b1: f64) -> f64 {
    let inter = (a1.min(b1) - a0.max(b0)).max(0.0);
    let union = (a1 - a0) + (b1 - b0) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

impl GtadTargets {
    /// Computes the targets of a video with `segments` at `l` snippets.
    pub fn new(segments: &[Segment], l: usize, cfg: &TargetConfig) -> Result<Self, ModelError> {
        with_boundary_window(segments, l, cfg.boundary_width, cfg.max_duration, 1.5)
    }
}

/// The targets with the boundary window of snippet `i` reaching `right` snippets past `i`:
/// `[(i - 0.5) gap, (i + right) gap]` (G-TAD 1.5, BMN 0.5).
pub(crate) fn with_boundary_window(
    segments: &[Segment],
    l: usize,
    boundary_width: f64,
    max_duration: Option<usize>,
    right: f64,
) -> Result<GtadTargets, ModelError> {
    let cfg = TargetConfig {
        boundary_width,
        max_duration,
    };
    {
        if l == 0 {
            return Err(ModelError::Input(
                "temporal length L must be positive".into(),
            ));
        }
        if !(cfg.boundary_width.is_finite() && cfg.boundary_width > 0.0) {
            return Err(ModelError::Config(format!(
                "boundary_width {} must be positive",
                cfg.boundary_width
            )));
        }
        for (i, s) in segments.iter().enumerate() {
            // A zero-length segment is allowed: G-TAD's and BMN's dataset.py keep annotations
            // that clipping to the covered span shrinks to a point (boundary targets, no IoU).
            if !(s.start.is_finite()
                && s.end.is_finite()
                && 0.0 <= s.start
                && s.start <= s.end
                && s.end <= 1.0)
            {
                return Err(ModelError::Input(format!(
                    "segment {i} [{}, {}] is not an interval inside [0, 1]",
                    s.start, s.end
                )));
            }
        }
        let d = cfg.max_duration.map_or(l, |m| m.clamp(1, l));
        let gap = 1.0 / l as f64;
        let half = 0.5 * cfg.boundary_width * gap;
        let boundary = |point: fn(&Segment) -> f64| -> Vec<f32> {
            (0..l)
                .map(|i| {
                    let a0 = (i as f64 - 0.5) * gap;
                    let a1 = (i as f64 + right) * gap;
                    segments
                        .iter()
                        .map(|s| ioa(a0, a1, point(s) - half, point(s) + half))
                        .fold(0.0, f64::max) as f32
                })
                .collect()
        };
        let start = boundary(|s| s.start);
        let end = boundary(|s| s.end);
        let mut map = vec![0f32; d * l];
        for dur in 0..d {
            for t in 0..l {
                if t + dur + 1 > l {
                    continue;
                }
                let a0 = t as f64 * gap;
                let a1 = (t + dur + 1) as f64 * gap;
                map[dur * l + t] = segments
                    .iter()
                    .map(|s| iou(a0, a1, s.start, s.end))
                    .fold(0.0, f64::max) as f32;
            }
        }
        Ok(GtadTargets {
            l,
            d,
            start,
            end,
            iou: map,
        })
    }
}

impl GtadTargets {
    /// Stacks the targets of a batch into `([B, L], [B, L], [B, D, L])` tensors.
    pub fn batch(
        targets: &[GtadTargets],
        device: &Device,
    ) -> Result<(Tensor<2>, Tensor<2>, Tensor<3>), ModelError> {
        let first = targets
            .first()
            .ok_or_else(|| ModelError::Input("empty target batch".into()))?;
        let (l, d) = (first.l, first.d);
        if targets.iter().any(|t| t.l != l || t.d != d) {
            return Err(ModelError::Input(
                "targets of one batch must share L and D".into(),
            ));
        }
        let b = targets.len();
        let cat = |f: &dyn Fn(&GtadTargets) -> &Vec<f32>| -> Vec<f32> {
            targets.iter().flat_map(|t| f(t).iter().copied()).collect()
        };
        Ok((
            Tensor::from_data(TensorData::new(cat(&|t| &t.start), [b, l]), device),
            Tensor::from_data(TensorData::new(cat(&|t| &t.end), [b, l]), device),
            Tensor::from_data(TensorData::new(cat(&|t| &t.iou), [b, d, l]), device),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_map_is_one_on_the_exact_anchor_and_shrinks_with_l() {
        let segs = [Segment::new(0.2, 0.5)];
        for l in [10, 20, 100] {
            let t = GtadTargets::new(&segs, l, &TargetConfig::default()).expect("valid");
            assert_eq!(t.iou.len(), l * l);
            // anchor starting at 0.2 L lasting 0.3 L
            let s = (0.2 * l as f64).round() as usize;
            let dur = (0.3 * l as f64).round() as usize;
            let v = t.iou[(dur - 1) * l + s];
            assert!((v - 1.0).abs() < 1e-5, "L = {l}: {v}");
            assert!(t.iou.iter().all(|v| (0.0..=1.0 + 1e-6).contains(v)));
        }
    }

    #[test]
    fn boundary_targets_peak_at_the_boundaries() {
        let t = GtadTargets::new(&[Segment::new(0.25, 0.75)], 20, &TargetConfig::default())
            .expect("valid");
        assert!((t.start[5] - 1.0).abs() < 1e-6);
        assert!((t.end[15] - 1.0).abs() < 1e-6);
        // The anchor of snippet i is [i - 0.5, i + 1.5] snippets (G-TAD's dataset.py); the start
        // region is [3.5, 6.5]: snippet 4 sees [3.5, 5.5] (all of it inside), snippet 3 sees
        // [2.5, 4.5] (1 of 2 inside), snippet 2 [1.5, 3.5] (nothing), snippet 6 [5.5, 7.5] (1/2).
        assert!((t.start[4] - 1.0).abs() < 1e-6);
        assert!((t.start[3] - 0.5).abs() < 1e-6 && (t.start[6] - 0.5).abs() < 1e-6);
        assert!(t.start[2].abs() < 1e-6);
        assert_eq!(t.end[5], 0.0);
    }

    #[test]
    fn max_duration_and_bad_segments() {
        let cfg = TargetConfig {
            max_duration: Some(4),
            ..TargetConfig::default()
        };
        let t = GtadTargets::new(&[Segment::new(0.0, 0.1)], 10, &cfg).expect("valid");
        assert_eq!((t.d, t.iou.len()), (4, 40));
        assert!((t.iou[0] - 1.0).abs() < 1e-6);
        assert!(GtadTargets::new(&[Segment::new(0.5, 0.4)], 10, &cfg).is_err());
        assert!(GtadTargets::new(&[Segment::new(0.5, 1.4)], 10, &cfg).is_err());
        assert!(GtadTargets::new(&[Segment::new(f64::NAN, 0.4)], 10, &cfg).is_err());
        assert!(GtadTargets::new(&[], 0, &cfg).is_err());
        // A zero-length segment (an annotation clipped to the border, kept as the official
        // dataset.py keeps it): boundary targets at the point, no IoU.
        let point = GtadTargets::new(&[Segment::new(1.0, 1.0)], 10, &cfg).expect("a point");
        assert!(point.iou.iter().all(|v| *v == 0.0));
        assert!(point.start[9] > 0.0 && point.end[9] > 0.0 && point.start[0] == 0.0);
        let empty = GtadTargets::new(&[], 5, &cfg).expect("no segments is fine");
        assert!(empty.iou.iter().all(|v| *v == 0.0));
    }
}
