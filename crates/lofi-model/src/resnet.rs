//! The TSM-ResNet video encoder: a torchvision-layout 2-D ResNet-18/34/50 with a temporal shift
//! in the residual branch of every block, pooled to one feature per frame and averaged over the
//! frames of each snippet.
//!
//! Exists because LoFi's encoder is exactly this network (TSM, Lin et al. 2019, on the ResNet of
//! He et al. 2016), and users start from PyTorch checkpoints of it: parameter names mirror
//! torchvision's state-dict keys (`conv1`, `bn1`, `layer1.0.conv1`, ..., `fc`) so that import is a
//! key remap and nothing more (the one exception, `downsample.0/1` -> `downsample.conv/bn`, is
//! handled in [`crate::import`]).
//!
//! # Frames and BatchNorm
//! The input `[B, L, F, 3, S, S]` is folded to `[B * L * F, 3, S, S]` with the `L * F` frames of a
//! video contiguous and in time order (snippet-major, frame-minor). The temporal shift treats those
//! `L * F` frames as the video's time axis (shifts cross snippet boundaries, never video
//! boundaries). BatchNorm therefore normalises over all `B * L * F` frames and all spatial
//! positions of the mini-batch, as TSM does with its `N * T` folding. With `frozen_bn` the
//! BatchNorm layers use their running statistics and their affine parameters get no gradient
//! (the usual choice in end-to-end TAL when the batch is tiny); otherwise they train normally.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::fastconv::conv2d_forward;
use crate::shift::temporal_shift;

/// Shape of a TSM-ResNet encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// 18, 34 (basic blocks) or 50 (bottleneck blocks).
    pub depth: usize,
    /// Width of the stem and of `layer1` (64 in the published networks; 8 or 16 for tests).
    pub base_width: usize,
    /// Whether to insert the temporal shift (false gives a plain per-frame 2-D ResNet, the "ICP"
    /// ImageNet model).
    pub shift: bool,
    /// `1 / shift_div` of the channels shift each way (8 in TSM).
    pub shift_div: usize,
    /// Use running statistics and fixed affine parameters in every BatchNorm.
    pub frozen_bn: bool,
    /// Number of classes of the clip-classification head (`fc`), used for pre-training; `None`
    /// builds the encoder without it.
    pub num_classes: Option<usize>,
}

impl ResNetConfig {
    /// The published TSM-ResNet of the given depth (width 64, 1/8 shift, trainable BatchNorm).
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            base_width: 64,
            shift: true,
            shift_div: 8,
            frozen_bn: false,
            num_classes: None,
        }
    }

    /// A narrow network for tests (same depth and structure, `base_width` channels in `layer1`).
    pub fn tiny(depth: usize, base_width: usize) -> Self {
        Self {
            base_width,
            ..Self::new(depth)
        }
    }

    /// Sets `frozen_bn`.
    pub fn with_frozen_bn(mut self, frozen: bool) -> Self {
        self.frozen_bn = frozen;
        self
    }

    /// Sets the classifier size.
    pub fn with_num_classes(mut self, classes: Option<usize>) -> Self {
        self.num_classes = classes;
        self
    }

    fn layout(&self) -> Result<(bool, [usize; 4]), ModelError> {
        match self.depth {
            18 => Ok((false, [2, 2, 2, 2])),
            34 => Ok((false, [3, 4, 6, 3])),
            50 => Ok((true, [3, 4, 6, 3])),
            d => Err(ModelError::Config(format!(
                "ResNet depth {d} is not supported (use 18, 34 or 50)"
            ))),
        }
    }

    /// Channels of the per-snippet feature (`8 * base_width`, times 4 for ResNet-50).
    pub fn out_channels(&self) -> usize {
        let expansion = if self.depth == 50 { 4 } else { 1 };
        self.base_width * 8 * expansion
    }

    /// Builds the encoder with torchvision's initialisation (Kaiming-normal convolutions,
    /// BatchNorm weight 1 and bias 0).
    pub fn init(&self, device: &Device) -> Result<TsmEncoder, ModelError> {
        let (bottleneck, blocks) = self.layout()?;
        if self.base_width == 0 {
            return Err(ModelError::Config("base_width must be positive".into()));
        }
        let w = self.base_width;
        let mut in_ch = w;
        let mut layers: Vec<Vec<Block>> = Vec::new();
        for (i, &n) in blocks.iter().enumerate() {
            let planes = w << i;
            let stride = if i == 0 { 1 } else { 2 };
            let mut layer = Vec::with_capacity(n);
            for b in 0..n {
                let s = if b == 0 { stride } else { 1 };
                let block = if bottleneck {
                    let blk = Block::Bottleneck(Bottleneck::new(in_ch, planes, s, device));
                    in_ch = planes * 4;
                    blk
                } else {
                    let blk = Block::Basic(BasicBlock::new(in_ch, planes, s, device));
                    in_ch = planes;
                    blk
                };
                layer.push(block);
            }
            layers.push(layer);
        }
        let mut it = layers.into_iter();
        let mut take = || it.next().unwrap_or_default();
        let encoder = TsmEncoder {
            conv1: conv2d(3, w, 7, 2, 3, device),
            bn1: BatchNormConfig::new(w).init(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: take(),
            layer2: take(),
            layer3: take(),
            layer4: take(),
            fc: self
                .num_classes
                .map(|c| LinearConfig::new(in_ch, c).init(device)),
            shift: self.shift,
            shift_div: self.shift_div,
        };
        Ok(if self.frozen_bn {
            encoder.freeze_bn()
        } else {
            encoder
        })
    }
}

fn conv2d(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// BatchNorm in f32 whatever the activation dtype: under mixed precision the convolutions run in
/// bf16 but the batch statistics, the running statistics and the affine parameters stay f32
/// (see [`crate::precision`]); in f32 this is `bn.forward(x)` (through [`crate::fastbn`] when
/// training on the CPU).
fn bn(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let dtype = x.dtype();
    if dtype == DType::F32 {
        crate::fastbn::batch_norm(bn, x)
    } else {
        bn.forward(x.cast(DType::F32)).cast(dtype)
    }
}

/// `relu(bn(x) + residual)` (or `relu(bn(x))`), with BatchNorm in f32 as in [`bn`]; in f32 one
/// fused operation ([`crate::fastbn::batch_norm_relu`]).
fn bn_relu(b: &BatchNorm, x: Tensor<4>, residual: Option<Tensor<4>>) -> Tensor<4> {
    if x.dtype() == DType::F32 {
        crate::fastbn::batch_norm_relu(b, x, residual)
    } else {
        let y = bn(b, x);
        relu(match residual {
            Some(r) => y + r,
            None => y,
        })
    }
}

/// The projection shortcut of a block whose shape changes (`downsample.0` / `downsample.1` in
/// torchvision).
#[derive(Module, Debug)]
pub struct Downsample {
    /// 1x1 strided convolution.
    pub conv: Conv2d,
    /// Its BatchNorm.
    pub bn: BatchNorm,
}

impl Downsample {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv: conv2d(cin, cout, 1, stride, 0, device),
            bn: BatchNormConfig::new(cout).init(device),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        bn(&self.bn, conv2d_forward(&self.conv, x))
    }
}

/// ResNet-18/34 block: two 3x3 convolutions; the temporal shift is applied to the residual
/// branch input only ("residual shift"), the identity path is left unshifted.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// First 3x3 convolution (carries the stride).
    pub conv1: Conv2d,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm,
    /// Second 3x3 convolution.
    pub conv2: Conv2d,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm,
    /// Projection shortcut, when the shape changes.
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    /// A block from `cin` to `planes` channels (a projection shortcut when the shape changes).
    pub fn new(cin: usize, planes: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv1: conv2d(cin, planes, 3, stride, 1, device),
            bn1: BatchNormConfig::new(planes).init(device),
            conv2: conv2d(planes, planes, 3, 1, 1, device),
            bn2: BatchNormConfig::new(planes).init(device),
            downsample: (stride != 1 || cin != planes)
                .then(|| Downsample::new(cin, planes, stride, device)),
        }
    }
}

/// ResNet-50 block: 1x1 -> 3x3 (strided, torchvision "v1.5") -> 1x1 with expansion 4; the shift
/// is applied before `conv1` on the residual branch.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1x1 reduction.
    pub conv1: Conv2d,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm,
    /// 3x3 convolution (carries the stride).
    pub conv2: Conv2d,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm,
    /// 1x1 expansion.
    pub conv3: Conv2d,
    /// BatchNorm after `conv3`.
    pub bn3: BatchNorm,
    /// Projection shortcut, when the shape changes.
    pub downsample: Option<Downsample>,
}

impl Bottleneck {
    /// A block from `cin` to `4 * planes` channels (a projection shortcut when the shape changes).
    pub fn new(cin: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let out = planes * 4;
        Self {
            conv1: conv2d(cin, planes, 1, 1, 0, device),
            bn1: BatchNormConfig::new(planes).init(device),
            conv2: conv2d(planes, planes, 3, stride, 1, device),
            bn2: BatchNormConfig::new(planes).init(device),
            conv3: conv2d(planes, out, 1, 1, 0, device),
            bn3: BatchNormConfig::new(out).init(device),
            downsample: (stride != 1 || cin != out)
                .then(|| Downsample::new(cin, out, stride, device)),
        }
    }
}

/// One residual block of either kind. Enum variant names are not part of checkpoint keys (the
/// stores skip them), so keys read `layer1.0.conv1.weight` like torchvision's.
// Blocks live in a Vec of at most six per stage and burn's Module derive does not accept
// boxed fields, so the size difference between variants is accepted.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block {
    /// ResNet-18/34 block.
    Basic(BasicBlock),
    /// ResNet-50 block.
    Bottleneck(Bottleneck),
}

impl Block {
    /// Runs the block; `shift` is `Some((n_segment, fold_div))` to apply the residual shift.
    pub fn forward(&self, x: Tensor<4>, shift: Option<(usize, usize)>) -> Tensor<4> {
        let branch_in = match shift {
            Some((t, div)) => temporal_shift(x.clone(), t, div),
            None => x.clone(),
        };
        match self {
            Block::Basic(b) => {
                let y = bn_relu(&b.bn1, conv2d_forward(&b.conv1, branch_in), None);
                let id = match &b.downsample {
                    Some(d) => d.forward(x),
                    None => x,
                };
                bn_relu(&b.bn2, conv2d_forward(&b.conv2, y), Some(id))
            }
            Block::Bottleneck(b) => {
                let y = bn_relu(&b.bn1, conv2d_forward(&b.conv1, branch_in), None);
                let y = bn_relu(&b.bn2, conv2d_forward(&b.conv2, y), None);
                let id = match &b.downsample {
                    Some(d) => d.forward(x),
                    None => x,
                };
                bn_relu(&b.bn3, conv2d_forward(&b.conv3, y), Some(id))
            }
        }
    }

    fn freeze_bn(self) -> Self {
        let ds = |d: Option<Downsample>| {
            d.map(|d| Downsample {
                conv: d.conv,
                bn: d.bn.freeze(),
            })
        };
        match self {
            Block::Basic(b) => Block::Basic(BasicBlock {
                bn1: b.bn1.freeze(),
                bn2: b.bn2.freeze(),
                downsample: ds(b.downsample),
                ..b
            }),
            Block::Bottleneck(b) => Block::Bottleneck(Bottleneck {
                bn1: b.bn1.freeze(),
                bn2: b.bn2.freeze(),
                bn3: b.bn3.freeze(),
                downsample: ds(b.downsample),
                ..b
            }),
        }
    }
}

/// TSM-ResNet encoder (and, with `fc`, the clip classifier used for pre-training).
#[derive(Module, Debug)]
pub struct TsmEncoder {
    /// 7x7 stride-2 stem convolution.
    pub conv1: Conv2d,
    /// Stem BatchNorm.
    pub bn1: BatchNorm,
    /// 3x3 stride-2 max pooling.
    pub maxpool: MaxPool2d,
    /// Stage 1 (stride 1).
    pub layer1: Vec<Block>,
    /// Stage 2 (stride 2).
    pub layer2: Vec<Block>,
    /// Stage 3 (stride 2).
    pub layer3: Vec<Block>,
    /// Stage 4 (stride 2).
    pub layer4: Vec<Block>,
    /// Clip-classification layer (pre-training only).
    pub fc: Option<Linear>,
    /// Whether blocks shift channels in time.
    pub shift: bool,
    /// `1 / shift_div` of the channels shift each way.
    pub shift_div: usize,
}

impl TsmEncoder {
    /// Freezes every BatchNorm: running statistics in the forward pass, no gradient for the
    /// affine parameters. Convolutions stay trainable.
    pub fn freeze_bn(self) -> Self {
        let f = |v: Vec<Block>| v.into_iter().map(Block::freeze_bn).collect();
        Self {
            bn1: self.bn1.freeze(),
            layer1: f(self.layer1),
            layer2: f(self.layer2),
            layer3: f(self.layer3),
            layer4: f(self.layer4),
            ..self
        }
    }

    /// Runs the trunk on frames `[N * T, 3, S, S]` (T frames per video, contiguous) and pools
    /// spatially: returns `[N * T, C]`.
    pub fn frame_features(&self, frames: Tensor<4>, n_segment: usize) -> Tensor<2> {
        let shift = self.shift.then_some((n_segment, self.shift_div));
        let x = bn_relu(&self.bn1, conv2d_forward(&self.conv1, frames), None);
        let mut x = self.maxpool.forward(x);
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                x = block.forward(x, shift);
            }
        }
        let [n, c, _, _] = x.dims();
        x.reshape([n as i64, c as i64, -1])
            .mean_dim(2)
            .reshape([n, c])
    }

    /// Snippet features: `[B, L, F, 3, S, S]` -> `[B, L, C]` (mean over the `F` frames of each
    /// snippet; the shift runs over the `L * F` frames of each video).
    pub fn forward(&self, video: Tensor<6>) -> Result<Tensor<3>, ModelError> {
        let [b, l, f, _, h, w] = video_dims(&video)?;
        let frames = video.reshape([b * l * f, 3, h, w]);
        let feats = self.frame_features(frames, l * f);
        let c = feats.dims()[1];
        Ok(feats.reshape([b, l, f, c]).mean_dim(2).reshape([b, l, c]))
    }

    /// Clip classification logits for pre-training: `[B, T, 3, S, S]` -> `[B, classes]` (TSM's
    /// average consensus: frame features averaged over the `T` segments, then `fc`).
    pub fn classify(&self, clip: Tensor<5>) -> Result<Tensor<2>, ModelError> {
        let fc = self.fc.as_ref().ok_or_else(|| {
            ModelError::Config("this encoder was built without a classifier (num_classes)".into())
        })?;
        let [b, t, ch, h, w] = clip.dims();
        if ch != 3 || b == 0 || t == 0 || h == 0 || w == 0 {
            return Err(ModelError::Input(format!(
                "classifier input must be [B, T, 3, S, S] with non-zero sizes, got {:?}",
                [b, t, ch, h, w]
            )));
        }
        let feats = self.frame_features(clip.reshape([b * t, 3, h, w]), t);
        let c = feats.dims()[1];
        let pooled = feats.reshape([b, t, c]).mean_dim(1).reshape([b, c]);
        Ok(fc.forward(pooled))
    }
}

/// The dims of an encoder input `[B, L, F, 3, S, S]` (any encoder of this crate), or an error
/// naming what it got when a size is zero or the channels are not RGB.
pub(crate) fn video_dims(video: &Tensor<6>) -> Result<[usize; 6], ModelError> {
    let dims = video.dims();
    if dims[3] != 3 || dims.contains(&0) {
        return Err(ModelError::Input(format!(
            "encoder input must be [B, L, F, 3, S, S] with non-zero sizes, got {dims:?}"
        )));
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn shapes_for_each_depth_and_any_l_and_s() {
        let device = Device::flex();
        for (depth, l, f, s) in [(18, 3, 1, 32), (34, 2, 2, 24), (50, 4, 1, 32)] {
            let cfg = ResNetConfig::tiny(depth, 4);
            let enc = cfg.init(&device).expect("valid config");
            let x = Tensor::<6>::random([2, l, f, 3, s, s], Distribution::Default, &device);
            let y = enc.forward(x).expect("valid input");
            assert_eq!(y.dims(), [2, l, cfg.out_channels()]);
        }
    }

    #[test]
    fn bad_depth_and_bad_input_are_errors() {
        let device = Device::flex();
        assert!(ResNetConfig::tiny(20, 4).init(&device).is_err());
        let enc = ResNetConfig::tiny(18, 4).init(&device).expect("valid");
        let x = Tensor::<6>::zeros([1, 2, 1, 4, 32, 32], &device);
        assert!(enc.forward(x).is_err());
        let clip = Tensor::<5>::zeros([1, 2, 3, 32, 32], &device);
        assert!(enc.classify(clip).is_err());
    }

    #[test]
    fn frozen_bn_gives_no_gradient_to_bn_but_to_convs() {
        let device = Device::flex().autodiff();
        let enc = ResNetConfig::tiny(18, 4)
            .with_frozen_bn(true)
            .init(&device)
            .expect("valid");
        let x = Tensor::<6>::random([1, 2, 1, 3, 32, 32], Distribution::Default, &device);
        let loss = enc.forward(x).expect("valid").sum();
        let grads = loss.backward();
        assert!(enc.conv1.weight.val().grad(&grads).is_some());
        assert!(enc.bn1.gamma.val().grad(&grads).is_none());
    }

    #[test]
    fn classifier_gives_logits() {
        let device = Device::flex();
        let enc = ResNetConfig::tiny(18, 4)
            .with_num_classes(Some(5))
            .init(&device)
            .expect("valid");
        let clip = Tensor::<5>::random([2, 3, 3, 32, 32], Distribution::Default, &device);
        assert_eq!(enc.classify(clip).expect("valid").dims(), [2, 5]);
    }
}
