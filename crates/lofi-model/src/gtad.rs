//! The G-TAD localization head (Xu et al., CVPR 2020) for any temporal length `L`: GCNeXt graph
//! blocks, start/end heads, sub-graph alignment (SGAlign) over all anchors and the 2-D scoring
//! head that gives a regression-IoU map and a classification-IoU map.
//!
//! Exists because LoFi trains this head end to end with the encoder at several temporal scales
//! (L = 25, 50, 100), so nothing here may assume a fixed `L`: anchors, sampling tables and masks
//! are all derived from the input length at run time.
//!
//! # Layouts
//! - input features `[B, C, L]`;
//! - start / end probabilities `[B, L]`;
//! - maps `[B, 2, D, L]`: entry `(d, t)` is the anchor that starts at snippet `t` and lasts
//!   `d + 1` snippets (ends at `t + d + 1`, in snippet units), channel 0 the regression IoU,
//!   channel 1 the classification IoU (BMN / G-TAD's duration x start layout);
//! - `D = min(max_duration, L)`; [`anchor_mask`] is 1 where `t + d + 1 <= L` and 0 for anchors
//!   that run past the end (their map entries are meaningless and excluded from the losses).
//!
//! # SGAlign as G-TAD's Align1D, without the aligned map
//! SGAlign follows the official Align1D kernel with sampling ratio 0 (see [`SampleTable`]):
//! anchor `(d, t)` is extended by `extend_ratio` (0.5) of its length on each side, to
//! `[t - (d + 1) / 2, t + d + (d + 1) / 2]` (G-TAD's RoI), and cut into `N` (32)
//! bins read from the block's features and `N_c` (4) bins read from the "context" features (each
//! node's mean over its k graph neighbours); each bin averages `ceil(span / bins)` linearly
//! interpolated points. Every slot is therefore a fixed linear map from the `L` snippets to the
//! `D * L` anchors, applied as a matrix product. The aligned map has `C * (N + N_c)` channels laid
//! out `c * (N + N_c) + i` like G-TAD's `view`. Because the first 1x1 convolution of the scoring
//! head is linear, [`GtadHead`] applies it per slot *before* sampling (`W_i x`, `[B, O, L]`) and
//! samples those instead: mathematically identical, but the 9216-channel map is never built.
//! [`SgAlign::forward`] builds the explicit map for testing and for users who want it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig};
use burn::nn::{PaddingConfig1d, PaddingConfig2d};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::fastconv::conv2d_forward;

/// G-TAD's sizes and hyper-parameters apart from the input width, which comes from the
/// features (or the encoder). This is the `[head]` section of the training and head configs;
/// [`Default`] gives the published sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GtadArch {
    /// Hidden width of the graph blocks (256).
    pub hidden: usize,
    /// Groups of the stem convolution (4).
    pub stem_groups: usize,
    /// Neighbours in the semantic graph (3).
    pub k: usize,
    /// Cardinality of the grouped convolutions (32).
    pub groups: usize,
    /// Channels per group inside a GCNeXt block (4, width 128).
    pub width_per_group: usize,
    /// Sample points inside each extended anchor (32).
    pub num_samples: usize,
    /// Context sample points from the graph-neighbour features (4).
    pub context_samples: usize,
    /// Extension of each anchor on each side, as a fraction of its length (0.5).
    pub extend_ratio: f64,
    /// Width of the first map convolution (512).
    pub map_hidden: usize,
    /// Width of the other map convolutions (128).
    pub map_channels: usize,
    /// Kernel of the two middle map convolutions (1 on ActivityNet, 3 on THUMOS14).
    pub map_kernel: usize,
    /// Longest anchor in snippets; `None` = `L` (all anchors).
    pub max_duration: Option<usize>,
}

impl Default for GtadArch {
    fn default() -> Self {
        Self {
            hidden: 256,
            stem_groups: 4,
            k: 3,
            groups: 32,
            width_per_group: 4,
            num_samples: 32,
            context_samples: 4,
            extend_ratio: 0.5,
            map_hidden: 512,
            map_channels: 128,
            map_kernel: 1,
            max_duration: None,
        }
    }
}

impl GtadArch {
    /// A small head with the same structure, for tests and the demo.
    pub fn tiny() -> Self {
        Self {
            hidden: 16,
            stem_groups: 4,
            k: 3,
            groups: 4,
            width_per_group: 4,
            num_samples: 8,
            context_samples: 2,
            extend_ratio: 0.5,
            map_hidden: 32,
            map_channels: 16,
            map_kernel: 1,
            max_duration: None,
        }
    }

    /// Checks the sizes for `in_channels`-wide features without building the head.
    pub fn validate(&self, in_channels: usize) -> Result<(), ModelError> {
        self.gtad(in_channels).validate()
    }

    /// Checks that what grows with the temporal scale `l` fits in `memory` bytes (this
    /// machine's; `None`: unknown, not checked), so an absurd `snippets` is an error instead of
    /// an allocation failure: the proposal map (`D x L` anchors, each sampling
    /// `num_samples + context_samples` points of `hidden` channels, float32, per video) and
    /// SGAlign's sampling tables ([`SampleTable`]: one dense `L x D * L` float32 matrix per
    /// sample point, held for the head's lifetime), together.
    pub fn check_scale(&self, l: usize, memory: Option<u64>) -> Result<(), ModelError> {
        let d = self.max_duration.map_or(l, |m| m.min(l));
        let points = self.num_samples.saturating_add(self.context_samples);
        let product = |factors: &[usize]| {
            factors
                .iter()
                .try_fold(1u64, |acc, &v| acc.checked_mul(v as u64))
        };
        let map = product(&[l, d, points, self.hidden, 4]);
        let tables = product(&[points, l, d, l, 4]);
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        match (map, tables, memory) {
            (Some(map), Some(tables), Some(m)) if map.saturating_add(tables) > m => {
                Err(ModelError::Config(format!(
                    "snippets = {l}: G-TAD at this scale needs {:.1} GiB, more than this \
                     machine's {:.1} GiB: the proposal map ({d} x {l} anchors x {points} samples \
                     x {} channels) {:.1} GiB per video, and SGAlign's sampling tables \
                     ({points} x {l} x {d} x {l} weights) {:.1} GiB",
                    gib(map.saturating_add(tables)),
                    gib(m),
                    self.hidden,
                    gib(map),
                    gib(tables)
                )))
            }
            (Some(_), Some(_), _) => Ok(()),
            _ => Err(ModelError::Config(format!(
                "snippets = {l}: G-TAD's proposal map and SGAlign's tables do not fit in 64-bit \
                 sizes"
            ))),
        }
    }

    /// The head for `in_channels`-wide features.
    pub fn gtad(&self, in_channels: usize) -> GtadConfig {
        GtadConfig {
            in_channels,
            arch: self.clone(),
        }
    }
}

/// A G-TAD head: input width and [`GtadArch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GtadConfig {
    /// Channels of the input snippet features.
    pub in_channels: usize,
    /// Everything else.
    pub arch: GtadArch,
}

impl GtadConfig {
    /// Published G-TAD sizes for `in_channels`-dimensional features.
    pub fn new(in_channels: usize) -> Self {
        GtadArch::default().gtad(in_channels)
    }

    /// A small head with the same structure, for tests.
    pub fn tiny(in_channels: usize) -> Self {
        GtadArch::tiny().gtad(in_channels)
    }

    /// Sets `max_duration`.
    pub fn with_max_duration(mut self, d: Option<usize>) -> Self {
        self.arch.max_duration = d;
        self
    }

    /// Number of anchor durations `D` used at temporal length `l`.
    pub fn durations(&self, l: usize) -> usize {
        self.arch.max_duration.map_or(l, |d| d.min(l))
    }

    /// Checks every size (what [`GtadConfig::init`] needs), without building anything.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if [
            self.in_channels,
            self.arch.hidden,
            self.arch.stem_groups,
            self.arch.k,
            self.arch.groups,
            self.arch.width_per_group,
            self.arch.num_samples,
            self.arch.map_hidden,
            self.arch.map_channels,
            self.arch.map_kernel,
        ]
        .contains(&0)
        {
            return bad("G-TAD sizes must all be positive".into());
        }
        if !self.in_channels.is_multiple_of(self.arch.stem_groups)
            || !self.arch.hidden.is_multiple_of(self.arch.stem_groups)
        {
            return bad(format!(
                "in_channels {} and hidden {} must be multiples of stem_groups {}",
                self.in_channels, self.arch.hidden, self.arch.stem_groups
            ));
        }
        if self.arch.map_kernel.is_multiple_of(2) {
            return bad(format!("map_kernel {} must be odd", self.arch.map_kernel));
        }
        if self.arch.max_duration == Some(0) {
            return bad("max_duration must be at least 1".into());
        }
        if !(self.arch.extend_ratio.is_finite() && self.arch.extend_ratio >= 0.0) {
            return bad(format!(
                "extend_ratio {} must be >= 0",
                self.arch.extend_ratio
            ));
        }
        Ok(())
    }

    /// Builds the head.
    pub fn init(&self, device: &Device) -> Result<GtadHead, ModelError> {
        self.validate()?;
        let h = self.arch.hidden;
        let block = || {
            GcnextBlock::new(
                h,
                self.arch.k,
                self.arch.groups,
                self.arch.width_per_group,
                device,
            )
        };
        let n_tot = self.arch.num_samples + self.arch.context_samples;
        let pad = self.arch.map_kernel / 2;
        let c2 = |cin: usize, cout: usize, k: usize, p: usize| {
            Conv2dConfig::new([cin, cout], [k, k])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .init(device)
        };
        Ok(GtadHead {
            stem: Conv1dConfig::new(self.in_channels, h, 3)
                .with_padding(PaddingConfig1d::Explicit(1, 1))
                .with_groups(self.arch.stem_groups)
                .init(device),
            backbone1: block(),
            start_gcn: block(),
            start_out: Conv1dConfig::new(h, 1, 1).init(device),
            end_gcn: block(),
            end_out: Conv1dConfig::new(h, 1, 1).init(device),
            backbone2: block(),
            loc1: c2(h * n_tot, self.arch.map_hidden, 1, 0),
            loc2: c2(self.arch.map_hidden, self.arch.map_channels, 1, 0),
            loc3: c2(
                self.arch.map_channels,
                self.arch.map_channels,
                self.arch.map_kernel,
                pad,
            ),
            loc4: c2(
                self.arch.map_channels,
                self.arch.map_channels,
                self.arch.map_kernel,
                pad,
            ),
            loc5: c2(self.arch.map_channels, 2, 1, 0),
            align: SgAlign {
                num_samples: self.arch.num_samples,
                context_samples: self.arch.context_samples,
                extend_ratio: self.arch.extend_ratio,
                max_duration: self.arch.max_duration,
            },
            k: self.arch.k,
        })
    }
}

/// Indices of the `k` nearest neighbours (squared Euclidean distance, self included) of every
/// node: `x` is `[B, C, L]`, the result `[B, L, k]` holds snippet indices. Computed on detached
/// features: the graph is rebuilt from the current features but carries no gradient itself.
pub fn knn_indices(x: Tensor<3>, k: usize) -> Tensor<3, Int> {
    let x = x.detach();
    let xt = x.clone().swap_dims(1, 2); // [B, L, C]
    let inner = xt.matmul(x.clone()); // [B, L, L]
    let sq = x.powi_scalar(2).sum_dim(1); // [B, 1, L]
                                          // -(|xi|^2 - 2 xi.xj + |xj|^2): larger is closer.
    let neg = inner.mul_scalar(2.0) - sq.clone() - sq.swap_dims(1, 2);
    let l = neg.dims()[2];
    neg.topk_with_indices(k.min(l), 2).1
}

/// Gathers neighbour features: `x` `[B, C, L]`, `idx` `[B, L, k]` -> `[B, C, L, k]`.
pub fn gather_neighbours(x: Tensor<3>, idx: Tensor<3, Int>) -> Tensor<4> {
    let [b, c, l] = x.dims();
    let k = idx.dims()[2];
    let device = x.device();
    let offset = Tensor::<1, Int>::arange(0..b as i64, &device)
        .mul_scalar(l as i64)
        .reshape([b, 1, 1]);
    let flat = (idx + offset).reshape([b * l * k]);
    let rows = x.swap_dims(1, 2).reshape([b * l, c]).select(0, flat); // [B*L*k, C]
    rows.reshape([b, l, k, c]).permute([0, 3, 1, 2])
}

/// GCNeXt block: `ReLU(temporal(x) + semantic(x) + x)`, with the semantic graph rebuilt from `x`.
#[derive(Module, Debug)]
pub struct GcnextBlock {
    /// Temporal stream 1x1 convolution (C -> width).
    pub tconv1: Conv1d,
    /// Temporal stream grouped kernel-3 convolution.
    pub tconv2: Conv1d,
    /// Temporal stream 1x1 convolution (width -> C).
    pub tconv3: Conv1d,
    /// Semantic stream 1x1 convolution on `[neighbour, self]` edges (2C -> width).
    pub sconv1: Conv2d,
    /// Semantic stream grouped 1x1 convolution.
    pub sconv2: Conv2d,
    /// Semantic stream 1x1 convolution (width -> C).
    pub sconv3: Conv2d,
    /// Graph neighbours.
    pub k: usize,
}

impl GcnextBlock {
    /// A block on `channels` features, `groups` x `width_per_group` inner width.
    pub fn new(
        channels: usize,
        k: usize,
        groups: usize,
        width_per_group: usize,
        device: &Device,
    ) -> Self {
        let w = groups * width_per_group;
        Self {
            tconv1: Conv1dConfig::new(channels, w, 1).init(device),
            tconv2: Conv1dConfig::new(w, w, 3)
                .with_groups(groups)
                .with_padding(PaddingConfig1d::Explicit(1, 1))
                .init(device),
            tconv3: Conv1dConfig::new(w, channels, 1).init(device),
            sconv1: Conv2dConfig::new([2 * channels, w], [1, 1]).init(device),
            sconv2: Conv2dConfig::new([w, w], [1, 1])
                .with_groups(groups)
                .init(device),
            sconv3: Conv2dConfig::new([w, channels], [1, 1]).init(device),
            k,
        }
    }

    /// Semantic stream alone (edge convolutions, max over neighbours) given neighbour indices.
    pub fn semantic(&self, x: Tensor<3>, idx: Tensor<3, Int>) -> Tensor<3> {
        let k = idx.dims()[2];
        let [b, c, l] = x.dims();
        let nb = gather_neighbours(x.clone(), idx); // [B, C, L, k]
        let me = x.reshape([b, c, l, 1]).expand([b, c, l, k]);
        let edges = Tensor::cat(vec![nb, me], 1); // [B, 2C, L, k]
        let s = relu(conv2d_forward(&self.sconv1, edges));
        let s = relu(conv2d_forward(&self.sconv2, s));
        let s = conv2d_forward(&self.sconv3, s); // [B, C, L, k]
        let cout = s.dims()[1];
        s.max_dim(3).reshape([b, cout, l])
    }

    /// `[B, C, L]` -> `[B, C, L]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let t = relu(self.tconv1.forward(x.clone()));
        let t = relu(self.tconv2.forward(t));
        let t = self.tconv3.forward(t);
        let idx = knn_indices(x.clone(), self.k);
        let s = self.semantic(x.clone(), idx);
        relu(t + s + x)
    }
}

/// Host-side sampling table of SGAlign at one temporal length: for every slot `i`, a dense
/// `[L, D * L]` matrix whose column `a = d * L + t` holds the weights with which anchor `a`'s
/// slot `i` reads each snippet. Sampling a slot is then one matrix product, and its gradient the
/// transposed product, exactly what G-TAD's Align1D kernel accumulates with `atomicAdd`.
///
/// # Official Align1D semantics (sampling ratio 0)
/// Anchor `(d, t)` is the RoI `[t - (d + 1) r, t + d + (d + 1) r]` (`r` = `extend_ratio`, 0.5:
/// G-TAD's `sample_xmin = p_xmin - center_len * expand_ratio` with `p_xmax = t + d`); an invalid
/// anchor (`t + d + 1 > L`) is G-TAD's placeholder RoI `[0, 0]`. The RoI height is
/// `max(end - start, 1)`, split into `slots` bins; bin `i` averages `ceil(height / slots)`
/// points evenly spaced inside it, each read by linear interpolation with RoIAlign's boundary
/// rules (zero below -1 or above `L`, clamped to the first and last snippet). Positions are
/// computed in `f32` in the kernel's order of operations, as the CUDA kernel does.
#[derive(Debug, Clone)]
pub struct SampleTable {
    /// Temporal length.
    pub l: usize,
    /// Durations.
    pub d: usize,
    /// Slots (bins).
    pub slots: usize,
    /// Weights `[slots, L, D * L]` row-major.
    pub weights: Vec<f32>,
}

impl SampleTable {
    /// Builds the table for `slots` bins in every extended anchor.
    pub fn new(l: usize, d: usize, slots: usize, extend_ratio: f64) -> Self {
        let a_n = d * l;
        let mut weights = vec![0f32; slots * l * a_n];
        let r = extend_ratio as f32;
        let height_l = l as f32;
        for dur in 0..d {
            for t in 0..l {
                let a = dur * l + t;
                let (start, end) = if t + dur + 1 > l {
                    (0.0f32, 0.0f32)
                } else {
                    let len = (dur + 1) as f32;
                    (t as f32 - len * r, (t + dur) as f32 + len * r)
                };
                let height = (end - start).max(1.0);
                let bin = height / slots as f32;
                let grid = (height / slots as f32).ceil().max(1.0) as usize;
                let count = grid as f32;
                for pt in 0..slots {
                    let base = pt * l * a_n;
                    for it in 0..grid {
                        let mut x = start + pt as f32 * bin + (it as f32 + 0.5) * bin / count;
                        if x < -1.0 || x > height_l {
                            continue;
                        }
                        if x <= 0.0 {
                            x = 0.0;
                        }
                        let mut low = x as usize;
                        let high;
                        if low >= l - 1 {
                            low = l - 1;
                            high = l - 1;
                            x = low as f32;
                        } else {
                            high = low + 1;
                        }
                        let lt = x - low as f32;
                        weights[base + low * a_n + a] += (1.0 - lt) / count;
                        weights[base + high * a_n + a] += lt / count;
                    }
                }
            }
        }
        Self {
            l,
            d,
            slots,
            weights,
        }
    }

    /// The `[L, D * L]` matrix of slot `i`.
    pub fn slot_matrix(&self, i: usize, device: &Device) -> Tensor<2> {
        let a_n = self.d * self.l;
        let r = i * self.l * a_n..(i + 1) * self.l * a_n;
        Tensor::from_data(
            TensorData::new(self.weights[r].to_vec(), [self.l, a_n]),
            device,
        )
    }

    /// Samples `src` `[B, C, L]` at slot `i` for every anchor: `[B, C, D * L]`.
    pub fn sample_slot(&self, src: Tensor<3>, i: usize) -> Tensor<3> {
        let device = src.device();
        let [b, c, l] = src.dims();
        let m = self.slot_matrix(i, &device);
        src.reshape([b * c, l])
            .matmul(m)
            .reshape([b, c, self.d * self.l])
    }
}

type TableKey = (usize, usize, usize, u64);

/// Process-wide cache of sampling tables, keyed by `(L, D, slots, extend_ratio bits)`: a run
/// uses a handful of temporal lengths, and rebuilding a table costs more than the head's
/// forward pass at small widths.
fn cached_table(l: usize, d: usize, slots: usize, extend_ratio: f64) -> Arc<SampleTable> {
    static CACHE: OnceLock<Mutex<HashMap<TableKey, Arc<SampleTable>>>> = OnceLock::new();
    let key = (l, d, slots, extend_ratio.to_bits());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    // A poisoned lock only means another thread panicked while inserting a complete table.
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(key)
        .or_insert_with(|| Arc::new(SampleTable::new(l, d, slots, extend_ratio)))
        .clone()
}

/// Sub-graph alignment: samples every anchor of the `(duration, start)` grid.
#[derive(Module, Debug)]
pub struct SgAlign {
    /// Sample points from the block features.
    pub num_samples: usize,
    /// Sample points from the context (graph-neighbour mean) features.
    pub context_samples: usize,
    /// Anchor extension on each side, as a fraction of its length.
    pub extend_ratio: f64,
    /// Longest anchor in snippets (`None` = `L`).
    pub max_duration: Option<usize>,
}

impl SgAlign {
    /// Durations at length `l`.
    pub fn durations(&self, l: usize) -> usize {
        self.max_duration.map_or(l, |d| d.min(l))
    }

    /// Tables for the inner and the context samples at length `l` (built once per process and
    /// shape, then shared: at L = 100 the inner table holds 32 dense `[100, 10^4]` matrices).
    pub fn tables(&self, l: usize) -> (Arc<SampleTable>, Arc<SampleTable>) {
        let d = self.durations(l);
        (
            cached_table(l, d, self.num_samples, self.extend_ratio),
            cached_table(l, d, self.context_samples, self.extend_ratio),
        )
    }

    /// The explicit aligned map: `x`, `ctx` `[B, C, L]` -> `[B, C * (N + N_c), D, L]` with
    /// channel `c * (N + N_c) + i`. Memory grows as `C * (N + N_c) * D * L`; the head uses the
    /// fused path instead.
    pub fn forward(&self, x: Tensor<3>, ctx: Tensor<3>) -> Tensor<4> {
        let [b, c, l] = x.dims();
        let (inner, context) = self.tables(l);
        let d = inner.d;
        let mut slots: Vec<Tensor<3>> = (0..inner.slots)
            .map(|i| inner.sample_slot(x.clone(), i))
            .collect();
        slots.extend((0..context.slots).map(|i| context.sample_slot(ctx.clone(), i)));
        let n = slots.len();
        let stacked = Tensor::stack::<4>(slots, 2); // [B, C, n, D*L]
        stacked.reshape([b, c * n, d, l])
    }
}

/// Mean of each node's `k` graph neighbours (self included): G-TAD's context features.
pub fn context_features(x: Tensor<3>, k: usize) -> Tensor<3> {
    let [b, c, l] = x.dims();
    let idx = knn_indices(x.clone(), k);
    gather_neighbours(x, idx).mean_dim(3).reshape([b, c, l])
}

/// Mask of valid anchors `[D, L]`: 1 where `t + d + 1 <= L`.
pub fn anchor_mask(l: usize, d: usize, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = (0..d)
        .flat_map(|dur| (0..l).map(move |t| if t + dur < l { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(v, [d, l]), device)
}

/// Everything the head predicts for a batch.
#[derive(Debug, Clone)]
pub struct GtadOutput {
    /// Start probabilities `[B, L]`.
    pub start: Tensor<2>,
    /// End probabilities `[B, L]`.
    pub end: Tensor<2>,
    /// `[B, 2, D, L]`: regression IoU (channel 0) and classification IoU (channel 1).
    pub maps: Tensor<4>,
    /// Valid anchors `[D, L]`.
    pub mask: Tensor<2>,
}

/// The G-TAD head.
#[derive(Module, Debug)]
pub struct GtadHead {
    /// Stem: grouped kernel-3 convolution to `hidden` channels (then ReLU).
    pub stem: Conv1d,
    /// First GCNeXt block, shared by the boundary heads and the proposal branch.
    pub backbone1: GcnextBlock,
    /// Start head graph block.
    pub start_gcn: GcnextBlock,
    /// Start head output (then sigmoid).
    pub start_out: Conv1d,
    /// End head graph block.
    pub end_gcn: GcnextBlock,
    /// End head output (then sigmoid).
    pub end_out: Conv1d,
    /// Graph block before SGAlign.
    pub backbone2: GcnextBlock,
    /// First map convolution, 1x1 over the `C * (N + N_c)` aligned channels (fused with SGAlign).
    pub loc1: Conv2d,
    /// 1x1 map convolution.
    pub loc2: Conv2d,
    /// Map convolution (kernel `map_kernel`).
    pub loc3: Conv2d,
    /// Map convolution (kernel `map_kernel`).
    pub loc4: Conv2d,
    /// Output map convolution to 2 channels (then sigmoid).
    pub loc5: Conv2d,
    /// Sampling parameters.
    pub align: SgAlign,
    /// Graph neighbours for the context features.
    pub k: usize,
}

impl GtadHead {
    /// Applies `loc1` to the SGAlign samples without building the aligned map: returns
    /// `[B, map_hidden, D, L]` before the ReLU, equal to `loc1(SgAlign::forward(x, ctx))`.
    ///
    /// # Panics
    /// If `x` and `ctx` do not have the head's `hidden` channels ([`GtadHead::forward`] checks
    /// its input, so this only concerns direct callers).
    pub fn align_project(&self, x: Tensor<3>, ctx: Tensor<3>) -> Tensor<4> {
        let [b, c, l] = x.dims();
        let (inner, context) = self.align.tables(l);
        let d = inner.d;
        let n_tot = inner.slots + context.slots;
        let w = self.loc1.weight.val(); // [O, C * n_tot, 1, 1]
        let o = w.dims()[0];
        // [O, C, n_tot] -> [n_tot, O, C]
        let w = w.reshape([o, c, n_tot]).permute([2, 0, 1]);
        let proj = |src: Tensor<3>, from: usize, n: usize| -> Tensor<3> {
            let ws = w.clone().narrow(0, from, n).reshape([1, n * o, c]);
            ws.matmul(src) // [B, n * O, L]
        };
        let mut acc: Option<Tensor<3>> = None;
        // Burn runs the backward pass level by level (by graph depth). Were the slots parallel
        // branches of equal depth, the gradients of all their `[B, O, D * L]` samples would be
        // alive at once (1.4 GB at L = 100). Chaining each slot's input to the previous one with
        // a zero-weighted term (`z_i = y_i + 0 * z_{i-1}`) staggers their depths, so the backward
        // finishes one slot before the next: the values and gradients are unchanged.
        let mut prev: Option<Tensor<3>> = None;
        for (table, src, from) in [(&inner, x, 0), (&context, ctx, inner.slots)] {
            if table.slots == 0 {
                continue;
            }
            let y = proj(src, from, table.slots);
            for i in 0..table.slots {
                let mut yi = y.clone().slice([0..b, i * o..(i + 1) * o]);
                if let Some(p) = prev.take() {
                    yi = yi + p.mul_scalar(0.0);
                }
                prev = Some(yi.clone());
                let s = table.sample_slot(yi, i);
                acc = Some(match acc {
                    Some(a) => a + s,
                    None => s,
                });
            }
        }
        let device = self.loc1.weight.val().device();
        let acc = acc.unwrap_or_else(|| Tensor::zeros([b, o, d * l], &device));
        let out = match &self.loc1.bias {
            Some(bias) => acc + bias.val().reshape([1, o, 1]),
            None => acc,
        };
        out.reshape([b, o, d, l])
    }

    /// Runs the head on features `[B, C, L]`.
    pub fn forward(&self, features: Tensor<3>) -> Result<GtadOutput, ModelError> {
        let [b, c, l] = features.dims();
        let c_expected = self.stem.weight.dims()[1] * self.stem.groups;
        if c != c_expected || b == 0 || l == 0 {
            return Err(ModelError::Input(format!(
                "G-TAD input must be [B, {c_expected}, L] with B, L > 0, got {:?}",
                [b, c, l]
            )));
        }
        let base = self.backbone1.forward(relu(self.stem.forward(features)));
        let start = sigmoid(self.start_out.forward(self.start_gcn.forward(base.clone())));
        let end = sigmoid(self.end_out.forward(self.end_gcn.forward(base.clone())));
        let x = self.backbone2.forward(base);
        let ctx = context_features(x.clone(), self.k);
        let m = relu(self.align_project(x, ctx));
        let m = relu(conv2d_forward(&self.loc2, m));
        let m = relu(conv2d_forward(&self.loc3, m));
        let m = relu(conv2d_forward(&self.loc4, m));
        let maps = sigmoid(conv2d_forward(&self.loc5, m));
        let d = self.align.durations(l);
        Ok(GtadOutput {
            start: start.reshape([b, l]),
            end: end.reshape([b, l]),
            maps,
            mask: anchor_mask(l, d, &features_device(&self.stem)),
        })
    }
}

fn features_device(conv: &Conv1d) -> Device {
    conv.weight.val().device()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, fd_check, lcg_vec};
    use burn::tensor::Distribution;

    fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap_or_default()
    }

    #[test]
    fn head_shapes_at_l_25_50_100() {
        let device = Device::flex();
        let head = GtadConfig::tiny(8).init(&device).expect("valid");
        for l in [25, 50, 100] {
            let x = Tensor::<3>::random([2, 8, l], Distribution::Default, &device);
            let out = head.forward(x).expect("valid");
            assert_eq!(out.start.dims(), [2, l]);
            assert_eq!(out.end.dims(), [2, l]);
            assert_eq!(out.maps.dims(), [2, 2, l, l]);
            assert_eq!(out.mask.dims(), [l, l]);
            let mask = to_vec(out.mask);
            assert_eq!(
                mask.iter().sum::<f32>() as usize,
                l * (l + 1) / 2,
                "anchor count at L = {l}"
            );
            assert!(to_vec(out.maps).iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn max_duration_limits_the_map() {
        let device = Device::flex();
        let head = GtadConfig::tiny(8)
            .with_max_duration(Some(10))
            .init(&device)
            .expect("valid");
        let out = head
            .forward(Tensor::<3>::random(
                [1, 8, 25],
                Distribution::Default,
                &device,
            ))
            .expect("valid");
        assert_eq!(out.maps.dims(), [1, 2, 10, 25]);
        let out = head
            .forward(Tensor::<3>::random(
                [1, 8, 6],
                Distribution::Default,
                &device,
            ))
            .expect("valid");
        assert_eq!(out.maps.dims(), [1, 2, 6, 6]);
    }

    #[test]
    fn bad_config_and_input_are_errors() {
        let device = Device::flex();
        let mut cfg = GtadConfig::tiny(8);
        cfg.arch.stem_groups = 3;
        assert!(cfg.init(&device).is_err());
        let head = GtadConfig::tiny(8).init(&device).expect("valid");
        assert!(head
            .forward(Tensor::<3>::zeros([1, 6, 10], &device))
            .is_err());
    }

    #[test]
    fn knn_finds_nearest_including_self() {
        let device = Device::flex();
        // 1-D features at positions 0, 1, 10, 11, 12.
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![0.0f32, 1.0, 10.0, 11.0, 12.0], [1, 1, 5]),
            &device,
        );
        let idx: Vec<i64> = knn_indices(x, 2)
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap_or_default();
        let sets: Vec<Vec<i64>> = idx
            .chunks(2)
            .map(|c| {
                let mut v = c.to_vec();
                v.sort_unstable();
                v
            })
            .collect();
        assert_eq!(sets[0], vec![0, 1]);
        assert_eq!(sets[1], vec![0, 1]);
        assert_eq!(sets[3].len(), 2);
        assert!(sets[3].contains(&3));
        assert!(sets[4].contains(&4) && sets[4].contains(&3));
    }

    #[test]
    fn sample_table_follows_align1d() {
        // Exact check on a linear signal f(j) = j at L = 4 with 2 bins.
        let t = SampleTable::new(4, 4, 2, 0.5);
        let device = Device::flex();
        let src = Tensor::<3>::from_data(
            TensorData::new(vec![0.0f32, 1.0, 2.0, 3.0], [1, 1, 4]),
            &device,
        );
        let s0 = to_vec(t.sample_slot(src.clone(), 0));
        let s1 = to_vec(t.sample_slot(src, 1));
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        // anchor (d = 0, t = 1): RoI [0.5, 1.5], one point per bin at 0.75 and 1.25.
        assert!(
            close(s0[1], 0.75) && close(s1[1], 1.25),
            "{} {}",
            s0[1],
            s1[1]
        );
        // anchor (d = 1, t = 0): RoI [-1, 2], bins of 1.5 with 2 points each:
        // (-0.625 -> clamped to 0, 0.125) and (0.875, 1.625).
        assert!(
            close(s0[4], 0.0625) && close(s1[4], 1.25),
            "{} {}",
            s0[4],
            s1[4]
        );
        // invalid anchor (d = 3, t = 1): G-TAD's placeholder RoI [0, 0], read as [0, 1].
        assert!(
            close(s0[13], 0.25) && close(s1[13], 0.75),
            "{} {}",
            s0[13],
            s1[13]
        );
        // The last valid anchor reaches past the end: points above L read 0, in (L - 1, L]
        // read the last snippet. Anchor (d = 3, t = 0): RoI [-2, 5], bins of 3.5, 4 points.
        let pts = |lo: f32| (0..4).map(move |k| lo + (k as f32 + 0.5) * 0.875);
        let read = |x: f32| -> f32 {
            if !(-1.0..=4.0).contains(&x) {
                0.0
            } else {
                x.clamp(0.0, 3.0)
            }
        };
        let want0: f32 = pts(-2.0).map(read).sum::<f32>() / 4.0;
        let want1: f32 = pts(1.5).map(read).sum::<f32>() / 4.0;
        assert!(close(s0[12], want0) && close(s1[12], want1));
    }

    #[test]
    fn fused_projection_equals_explicit_map_then_conv() {
        let device = Device::flex();
        let head = GtadConfig::tiny(8).init(&device).expect("valid");
        let x = Tensor::<3>::random([2, 16, 7], Distribution::Default, &device);
        let ctx = Tensor::<3>::random([2, 16, 7], Distribution::Default, &device);
        let fused = to_vec(head.align_project(x.clone(), ctx.clone()));
        let explicit = to_vec(head.loc1.forward(head.align.forward(x, ctx)));
        assert_close(&fused, &explicit, 1e-4, "fused SGAlign + loc1");
    }

    #[test]
    fn the_scale_check_counts_sgaligns_tables_too() {
        let gib = 1u64 << 30;
        let arch = GtadArch::tiny();
        // L = 1000: a 0.6 GiB proposal map, but 37 GiB of sampling tables (L^3 growth).
        let e = arch
            .check_scale(1000, Some(24 * gib))
            .expect_err("tables too large");
        assert!(
            e.to_string().contains("SGAlign's sampling tables") && e.to_string().contains("24.0"),
            "{e}"
        );
        assert!(arch.check_scale(1000, Some(64 * gib)).is_ok());
        assert!(arch.check_scale(1000, None).is_ok());
        // The paper's scales fit a small machine.
        assert!(GtadArch::default().check_scale(100, Some(2 * gib)).is_ok());
        assert!(arch.check_scale(usize::MAX / 2, None).is_err());
    }

    #[test]
    fn sgalign_gradient_matches_finite_differences() {
        let device = Device::flex();
        let align = SgAlign {
            num_samples: 3,
            context_samples: 1,
            extend_ratio: 0.5,
            max_duration: None,
        };
        let shape = [1, 2, 5];
        let x0 = lcg_vec(10, 3);
        let wv = lcg_vec(2 * 4 * 5 * 5, 4);
        let f = |x: Tensor<3>| {
            let dev = x.device();
            let w = Tensor::<4>::from_data(TensorData::new(wv.clone(), [1, 8, 5, 5]), &dev);
            (align.forward(x.clone(), x.mul_scalar(0.5)) * w).sum()
        };
        fd_check(&x0, shape, &device, f, 1e-2, 1e-3);
    }

    #[test]
    fn knn_edge_aggregation_gradient_matches_finite_differences() {
        let device = Device::flex();
        let block = GcnextBlock::new(4, 3, 2, 2, &device);
        let shape = [1, 4, 6];
        let x0 = lcg_vec(24, 5);
        let wv = lcg_vec(24, 6);
        // Neighbours fixed from x0 so that the finite differences do not change the graph.
        let idx_data = knn_indices(
            Tensor::<3>::from_data(TensorData::new(x0.clone(), shape), &device),
            3,
        )
        .into_data();
        let f = |x: Tensor<3>| {
            let dev = x.device();
            let idx = Tensor::<3, Int>::from_data(idx_data.clone(), &dev);
            let block = block.clone().fork(&dev);
            let w = Tensor::<3>::from_data(TensorData::new(wv.clone(), shape), &dev);
            (block.semantic(x, idx) * w).sum()
        };
        fd_check(&x0, shape, &device, f, 1e-3, 2e-2);
    }
}
