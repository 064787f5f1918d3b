//! BMN, the Boundary-Matching Network (Lin et al., ICCV 2019), for any temporal length `L`:
//! base module, temporal evaluation module (start / end probabilities), and the proposal
//! evaluation module with the boundary-matching (BM) layer, as the PyTorch reimplementation
//! most users run computes them (JJBOY/BMN-Boundary-Matching-Network, commit a92c1d7: the
//! network of `models.py`, the targets of `dataset.py`, the loss of `loss_function.py`).
//!
//! Exists beside [`crate::gtad`] because the LoFi paper reports its method with BMN as well as
//! G-TAD; [`crate::head`] makes the two one typed choice, so every stage trains, saves and
//! detects with either.
//!
//! # The network (`feat_dim` = C, widths 256 / 128 / 512 published)
//! - base: `Conv1d(C, h1, 3, groups 4)` + ReLU, `Conv1d(h1, h1, 3, groups 4)` + ReLU;
//! - TEM: per side `Conv1d(h1, h1, 3, groups 4)` + ReLU, `Conv1d(h1, 1, 1)` + sigmoid;
//! - PEM: `Conv1d(h1, h1, 3)` + ReLU, the BM layer, `Conv3d(h1, h3, (N, 1, 1), stride N)` +
//!   ReLU, `Conv2d(h3, h2, 1)`, two `Conv2d(h2, h2, 3, padding 1)`, `Conv2d(h2, 2, 1)` (ReLU
//!   between, sigmoid at the end): channel 0 regression IoU, channel 1 classification IoU.
//!
//! # The BM layer and its sampling mask
//! The reference builds a dense mask `[L, N, L, L]` indexed (snippet, bin, start, end) and
//! multiplies the features with it (`[L, 32 L L]`: 122 MiB at L = 100, 2 GiB at L = 256). For
//! the anchor that starts at snippet `s` and ends at snippet `e >= s`, `p_xmin = s`,
//! `p_xmax = e + 1`, the extended range is `[s - 0.5 w, e + 1 + 0.5 w]` with
//! `w = p_xmax - p_xmin + 1` (the reference's `center_len`, one snippet longer than the anchor),
//! cut into `N * 3` points spaced `range / (3 N - 1)` from its start; bin `n` averages points
//! `3n .. 3n + 2`, each read by linear interpolation between `floor(x)` and `ceil(x)` where
//! those lie in `[0, L - 1]` (Python's `math.modf` semantics: the fractional part of a negative
//! point is negative, so a point in `(-1, 0)` gives snippet 0 the weight `1 - frac` and
//! `frac`, which sum to 1). Entries with `s > e` are 0. The mask is computed in `f64` and
//! rounded to `f32`, as the reference's numpy code.
//!
//! Here the mask lives in a [`SampleTable`] (one `[L, L * L]` matrix per bin, columns
//! `s * L + e`) and the `Conv3d` is applied per bin before sampling (`W_n x`, then the bin's
//! matrix), which is the same linear map without the `[B, h1, N, L, L]` tensor.
//!
//! # Output layout
//! The PEM computes its map over (start, end), as the reference's 3x3 convolutions must see it;
//! [`BmnHead::forward`] returns it in the layout every head shares ([`GtadOutput`]): `[B, 2, D,
//! L]` indexed (duration - 1, start) with `D = L`, entry `(d, t)` = reference entry
//! `(t, t + d)`; invalid anchors (`t + d >= L`) are 0. The reference's inference reads exactly
//! these entries (`start_index = idx`, `end_index = jdx + 1 < L`, map `[idx, jdx]`).
//!
//! # Targets and loss
//! [`targets`]: as G-TAD's ([`crate::targets`]) except the boundary window of snippet `i`,
//! which is one snippet wide, `[(i - 0.5) / L, (i + 0.5) / L]` (the reference's
//! `anchor_xmin`, `anchor_xmax`); the boundary regions are 3 snippets wide and the IoU map is
//! that of `[t / L, (t + d + 1) / L]` with the closest action. The loss is the published one and
//! the same as G-TAD's ([`crate::loss::GtadLoss`]: TEM with ratio-weighted BCE, PEM regression
//! over sampled IoU bands, PEM classification with ratio-weighted BCE; total `TEM + 10 reg +
//! cls`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, Conv3d, Conv3dConfig};
use burn::nn::{PaddingConfig1d, PaddingConfig2d};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::fastconv::conv2d_forward;
use crate::gtad::{anchor_mask, GtadOutput, SampleTable};
use crate::targets::{GtadTargets, Segment};

/// BMN's sizes apart from the input width (the `[head]` section with `kind = "bmn"`);
/// [`Default`] gives the published network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BmnArch {
    /// Width of the 1-D modules (256).
    pub hidden_1d: usize,
    /// Width of the 2-D map convolutions (128).
    pub hidden_2d: usize,
    /// Output width of the 3-D convolution over the bins (512).
    pub hidden_3d: usize,
    /// Groups of the grouped 1-D convolutions (4).
    pub groups: usize,
    /// Bins per proposal `N` (32).
    pub num_samples: usize,
    /// Points averaged per bin (3).
    pub samples_per_bin: usize,
    /// Extension of each proposal on each side, as a fraction of `center_len` (0.5).
    pub boundary_ratio: f64,
}

impl Default for BmnArch {
    fn default() -> Self {
        Self {
            hidden_1d: 256,
            hidden_2d: 128,
            hidden_3d: 512,
            groups: 4,
            num_samples: 32,
            samples_per_bin: 3,
            boundary_ratio: 0.5,
        }
    }
}

impl BmnArch {
    /// A small network of the same structure, for tests and the demo.
    pub fn tiny() -> Self {
        Self {
            hidden_1d: 16,
            hidden_2d: 16,
            hidden_3d: 32,
            groups: 4,
            num_samples: 8,
            samples_per_bin: 3,
            boundary_ratio: 0.5,
        }
    }

    /// Checks the sizes for `in_channels`-wide features; errors name the key.
    pub fn validate(&self, in_channels: usize) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        for (key, v) in [
            ("in_channels", in_channels),
            ("head.hidden_1d", self.hidden_1d),
            ("head.hidden_2d", self.hidden_2d),
            ("head.hidden_3d", self.hidden_3d),
            ("head.groups", self.groups),
            ("head.num_samples", self.num_samples),
            ("head.samples_per_bin", self.samples_per_bin),
        ] {
            if v == 0 {
                return bad(format!("{key} must be at least 1"));
            }
        }
        if !in_channels.is_multiple_of(self.groups) || !self.hidden_1d.is_multiple_of(self.groups) {
            return bad(format!(
                "in_channels {in_channels} and head.hidden_1d {} must be multiples of \
                 head.groups {}",
                self.hidden_1d, self.groups
            ));
        }
        if !(self.boundary_ratio.is_finite() && self.boundary_ratio >= 0.0) {
            return bad(format!(
                "head.boundary_ratio = {} must be >= 0",
                self.boundary_ratio
            ));
        }
        Ok(())
    }

    /// Checks that what grows with `l` fits in `memory` bytes (`None`: not checked): the
    /// sampling mask (`N` dense `L x L * L` float32 matrices, held for the head's lifetime) and
    /// the sampled map of one video (`hidden_3d x L x L` per bin, accumulated).
    pub fn check_scale(&self, l: usize, memory: Option<u64>) -> Result<(), ModelError> {
        let product = |factors: &[usize]| {
            factors
                .iter()
                .try_fold(1u64, |acc, &v| acc.checked_mul(v as u64))
        };
        let mask = product(&[self.num_samples, l, l, l, 4]);
        let map = product(&[self.num_samples.max(2), self.hidden_3d, l, l, 4]);
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        match (mask, map, memory) {
            (Some(mask), Some(map), Some(m)) if mask.saturating_add(map) > m => {
                Err(ModelError::Config(format!(
                    "snippets = {l}: BMN at this scale needs {:.1} GiB, more than this \
                     machine's {:.1} GiB: the boundary-matching sampling mask ({l} x {} x {l} x \
                     {l} weights) {:.1} GiB, and the sampled map of a video {:.1} GiB",
                    gib(mask.saturating_add(map)),
                    gib(m),
                    self.num_samples,
                    gib(mask),
                    gib(map)
                )))
            }
            (Some(_), Some(_), _) => Ok(()),
            _ => Err(ModelError::Config(format!(
                "snippets = {l}: BMN's sampling mask does not fit in 64-bit sizes"
            ))),
        }
    }

    /// Builds the head for `in_channels`-wide features.
    pub fn init(&self, in_channels: usize, device: &Device) -> Result<BmnHead, ModelError> {
        self.validate(in_channels)?;
        let (h1, h2, h3, g) = (self.hidden_1d, self.hidden_2d, self.hidden_3d, self.groups);
        let c1 = |cin: usize, cout: usize, k: usize, groups: usize| {
            Conv1dConfig::new(cin, cout, k)
                .with_padding(PaddingConfig1d::Explicit(k / 2, k / 2))
                .with_groups(groups)
                .init(device)
        };
        let c2 = |cin: usize, cout: usize, k: usize| {
            let p = k / 2;
            Conv2dConfig::new([cin, cout], [k, k])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .init(device)
        };
        let n = self.num_samples;
        Ok(BmnHead {
            base1: c1(in_channels, h1, 3, g),
            base2: c1(h1, h1, 3, g),
            start1: c1(h1, h1, 3, g),
            start2: c1(h1, 1, 1, 1),
            end1: c1(h1, h1, 3, g),
            end2: c1(h1, 1, 1, 1),
            proposal: c1(h1, h1, 3, 1),
            bins: Conv3dConfig::new([h1, h3], [n, 1, 1])
                .with_stride([n, 1, 1])
                .init(device),
            map1: c2(h3, h2, 1),
            map2: c2(h2, h2, 3),
            map3: c2(h2, h2, 3),
            map4: c2(h2, 2, 1),
            num_samples: n,
            samples_per_bin: self.samples_per_bin,
            boundary_ratio: self.boundary_ratio,
        })
    }
}

/// The reference's `_get_interp1d_bin_mask` for one extended proposal `[xmin, xmax]`: for each
/// of `bins` bins, the weight of every snippet (`f64`, `[bins][L]`).
fn bin_weights(xmin: f64, xmax: f64, l: usize, bins: usize, per_bin: usize) -> Vec<Vec<f64>> {
    let total = bins * per_bin;
    let step = (xmax - xmin) / (total as f64 - 1.0);
    let points: Vec<f64> = (0..total).map(|i| xmin + step * i as f64).collect();
    (0..bins)
        .map(|b| {
            let mut w = vec![0f64; l];
            for &x in &points[b * per_bin..(b + 1) * per_bin] {
                let upper = x.ceil();
                // math.modf: the integer part truncates toward zero, the fraction keeps the sign.
                let down = x.trunc();
                let frac = x - down;
                if down >= 0.0 && down <= (l - 1) as f64 {
                    w[down as usize] += 1.0 - frac;
                }
                if upper >= 0.0 && upper <= (l - 1) as f64 {
                    w[upper as usize] += frac;
                }
            }
            w.iter_mut().for_each(|v| *v /= per_bin as f64);
            w
        })
        .collect()
}

/// BMN's sampling mask at length `l` as a [`SampleTable`]: slot `n`, row = snippet, column =
/// `start * L + end` (see the module docs).
pub fn sample_mask(l: usize, bins: usize, per_bin: usize, ratio: f64) -> SampleTable {
    let cols = l * l;
    let mut weights = vec![0f32; bins * l * cols];
    for e in 0..l {
        for s in 0..=e {
            let (p_min, p_max) = (s as f64, (e + 1) as f64);
            let center = p_max - p_min + 1.0;
            let w = bin_weights(
                p_min - center * ratio,
                p_max + center * ratio,
                l,
                bins,
                per_bin,
            );
            let col = s * l + e;
            for (n, row) in w.iter().enumerate() {
                for (t, v) in row.iter().enumerate() {
                    weights[n * l * cols + t * cols + col] = *v as f32;
                }
            }
        }
    }
    SampleTable {
        l,
        d: l,
        slots: bins,
        weights,
    }
}

type MaskKey = (usize, usize, usize, u64);

/// The mask of `(l, bins, per_bin, ratio)`, built once per process (see [`sample_mask`]).
fn cached_mask(l: usize, bins: usize, per_bin: usize, ratio: f64) -> Arc<SampleTable> {
    static CACHE: OnceLock<Mutex<HashMap<MaskKey, Arc<SampleTable>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    // A poisoned lock only means another thread panicked while inserting a complete mask.
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry((l, bins, per_bin, ratio.to_bits()))
        .or_insert_with(|| Arc::new(sample_mask(l, bins, per_bin, ratio)))
        .clone()
}

/// The BMN head.
#[derive(Module, Debug)]
pub struct BmnHead {
    /// Base module, first grouped convolution.
    pub base1: Conv1d,
    /// Base module, second grouped convolution.
    pub base2: Conv1d,
    /// TEM start branch.
    pub start1: Conv1d,
    /// TEM start output (then sigmoid).
    pub start2: Conv1d,
    /// TEM end branch.
    pub end1: Conv1d,
    /// TEM end output (then sigmoid).
    pub end2: Conv1d,
    /// PEM 1-D convolution before the BM layer.
    pub proposal: Conv1d,
    /// PEM 3-D convolution over the `N` bins (kernel and stride `(N, 1, 1)`).
    pub bins: Conv3d,
    /// PEM 1x1 map convolution.
    pub map1: Conv2d,
    /// PEM 3x3 map convolution.
    pub map2: Conv2d,
    /// PEM 3x3 map convolution.
    pub map3: Conv2d,
    /// PEM output (then sigmoid).
    pub map4: Conv2d,
    /// Bins per proposal.
    pub num_samples: usize,
    /// Points per bin.
    pub samples_per_bin: usize,
    /// Extension ratio.
    pub boundary_ratio: f64,
}

impl BmnHead {
    /// The sampling mask at length `l`.
    pub fn mask(&self, l: usize) -> Arc<SampleTable> {
        cached_mask(
            l,
            self.num_samples,
            self.samples_per_bin,
            self.boundary_ratio,
        )
    }

    /// The BM layer followed by the 3-D convolution, before its ReLU: `[B, h1, L]` ->
    /// `[B, h3, L (start), L (end)]`.
    pub fn boundary_matching(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, c, l] = x.dims();
        let table = self.mask(l);
        let n = self.num_samples;
        let w = self.bins.weight.val(); // [O, C, N, 1, 1]
        let o = w.dims()[0];
        let w = w
            .reshape([o, c, n])
            .permute([2, 0, 1])
            .reshape([1, n * o, c]);
        let y = w.matmul(x); // [B, N * O, L]
        let mut acc: Option<Tensor<3>> = None;
        for i in 0..n {
            let s = table.sample_slot(y.clone().slice([0..b, i * o..(i + 1) * o]), i);
            acc = Some(match acc {
                Some(a) => a + s,
                None => s,
            });
        }
        let device = y.device();
        let acc = acc.unwrap_or_else(|| Tensor::zeros([b, o, l * l], &device));
        let acc = match &self.bins.bias {
            Some(bias) => acc + bias.val().reshape([1, o, 1]),
            None => acc,
        };
        acc.reshape([b, o, l, l])
    }

    /// The PEM's maps in the reference's (start, end) layout, `[B, 2, L, L]`.
    pub fn start_end_maps(&self, proposal_features: Tensor<3>) -> Tensor<4> {
        let m = relu(self.boundary_matching(proposal_features));
        let m = relu(conv2d_forward(&self.map1, m));
        let m = relu(conv2d_forward(&self.map2, m));
        let m = relu(conv2d_forward(&self.map3, m));
        sigmoid(conv2d_forward(&self.map4, m))
    }

    /// Runs the head on features `[B, C, L]`; maps in the shared (duration, start) layout.
    pub fn forward(&self, features: Tensor<3>) -> Result<GtadOutput, ModelError> {
        let [b, c, l] = features.dims();
        let c_expected = self.base1.weight.dims()[1] * self.base1.groups;
        if c != c_expected || b == 0 || l == 0 {
            return Err(ModelError::Input(format!(
                "BMN input must be [B, {c_expected}, L] with B, L > 0, got {:?}",
                [b, c, l]
            )));
        }
        let device = features.device();
        let base = relu(self.base2.forward(relu(self.base1.forward(features))));
        let start = sigmoid(self.start2.forward(relu(self.start1.forward(base.clone()))));
        let end = sigmoid(self.end2.forward(relu(self.end1.forward(base.clone()))));
        let maps = self.start_end_maps(relu(self.proposal.forward(base)));
        Ok(GtadOutput {
            start: start.reshape([b, l]),
            end: end.reshape([b, l]),
            maps: duration_start(maps, &device),
            mask: anchor_mask(l, l, &device),
        })
    }
}

/// `[B, 2, L (start), L (end)]` -> `[B, 2, L (duration - 1), L (start)]`, 0 where `t + d >= L`.
pub fn duration_start(maps: Tensor<4>, device: &Device) -> Tensor<4> {
    let [b, two, l, _] = maps.dims();
    let mut idx = Vec::with_capacity(l * l);
    let mut valid = Vec::with_capacity(l * l);
    for d in 0..l {
        for t in 0..l {
            let ok = t + d < l;
            idx.push(if ok { (t * l + t + d) as i64 } else { 0 });
            valid.push(if ok { 1f32 } else { 0.0 });
        }
    }
    let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [l * l]), device);
    let valid = Tensor::<1>::from_data(TensorData::new(valid, [l * l]), device);
    let flat = maps.reshape([b, two, l * l]).select(2, idx);
    (flat * valid.reshape([1, 1, l * l])).reshape([b, two, l, l])
}

/// BMN's training targets of a video with `segments` (fractions of its span) at `l` snippets:
/// boundary windows one snippet wide, regions `boundary_width` snippets wide (3), the IoU map
/// of every valid anchor (module docs).
pub fn targets(
    segments: &[Segment],
    l: usize,
    boundary_width: f64,
) -> Result<GtadTargets, ModelError> {
    crate::targets::with_boundary_window(segments, l, boundary_width, None, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_and_map_are_checked_against_memory_before_any_work() {
        let gib = 1u64 << 30;
        let arch = BmnArch::default();
        // L = 100: a 122 MiB mask and the sampled map fit in 4 GiB.
        assert!(arch.check_scale(100, Some(4 * gib)).is_ok());
        // L = 256: the mask alone is 2 GiB.
        let e = arch
            .check_scale(256, Some(2 * gib))
            .expect_err("too big")
            .to_string();
        assert!(
            e.contains("snippets = 256") && e.contains("sampling mask"),
            "{e}"
        );
        assert!(
            arch.check_scale(1 << 20, None).is_err(),
            "beyond 64-bit sizes"
        );
        assert!(
            arch.check_scale(256, None).is_ok(),
            "unknown memory: not checked"
        );
    }

    #[test]
    fn every_column_of_a_valid_anchor_sums_to_one_per_bin_inside_the_video() {
        // A short anchor in the middle of L = 20 samples only inside the video: each bin's
        // weights sum to 1; anchors with start > end are all zero.
        let t = sample_mask(20, 8, 3, 0.5);
        let cols = 20 * 20;
        let col = 9 * 20 + 10; // start 9, end 10
        for n in 0..8 {
            let sum: f32 = (0..20)
                .map(|i| t.weights[n * 20 * cols + i * cols + col])
                .sum();
            assert!((sum - 1.0).abs() < 1e-6, "bin {n}: {sum}");
        }
        let below = 10 * 20 + 9; // start 10 > end 9
        assert!((0..8 * 20).all(|k| t.weights[k * cols + below] == 0.0));
    }
}
