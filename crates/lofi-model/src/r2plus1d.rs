//! The R(2+1)D-18/34 video trunk (Tran et al. 2018, torchvision's `r2plus1d_18` layout): every 3-D
//! convolution factorised into a spatial `1 x 3 x 3` and a temporal `3 x 1 x 1` convolution with
//! a BatchNorm + ReLU between them. LoFi's encoder ablation uses it, and it lets users start from
//! the public TSP and torchvision video checkpoints.
//!
//! Exists beside the TSM encoder with the same input and output contract so that the trainer can
//! swap encoders: `[B, L, F, 3, S, S]` -> `[B, L, C]`. Each snippet is one clip of `F` frames
//! (`[B * L, 3, F, S, S]` after folding snippets into the batch, so BatchNorm normalises over all
//! `B * L` clips); global average pooling over time and space gives its feature (this *is* the
//! average over the snippet's frames for a 3-D network).
//!
//! Parameter names follow torchvision with the `Sequential` indices named:
//! `stem.{0,1,3,4}` -> `stem.{spatial,mid_bn,temporal,bn}`,
//! `layerX.Y.convZ.0.{0,1,3}` -> `layerX.Y.convZ.{spatial,mid_bn,temporal}`,
//! `layerX.Y.convZ.1` -> `layerX.Y.bnZ`, `downsample.{0,1}` -> `downsample.{conv,bn}`
//! ([`crate::import::r2plus1d_key_patterns`] does the mapping on import).

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig3d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::resnet::video_dims;

/// Shape of an R(2+1)D trunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct R2Plus1dConfig {
    /// 18 (`[2, 2, 2, 2]` blocks) or 34 (`[3, 4, 6, 3]`).
    pub depth: usize,
    /// Width of `layer1` (64 published; small for tests). The stem's spatial convolution has
    /// `45 * base_width / 64` channels, as in torchvision.
    pub base_width: usize,
    /// Use running statistics and fixed affine parameters in every BatchNorm.
    pub frozen_bn: bool,
    /// Clip-classifier size (`fc`), for pre-training; `None` builds no classifier.
    pub num_classes: Option<usize>,
}

impl R2Plus1dConfig {
    /// The published network of the given depth.
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            base_width: 64,
            frozen_bn: false,
            num_classes: None,
        }
    }

    /// A narrow network for tests.
    pub fn tiny(depth: usize, base_width: usize) -> Self {
        Self {
            base_width,
            ..Self::new(depth)
        }
    }

    /// Channels of the snippet feature.
    pub fn out_channels(&self) -> usize {
        self.base_width * 8
    }

    /// Builds the trunk.
    pub fn init(&self, device: &Device) -> Result<R2Plus1dEncoder, ModelError> {
        let blocks = match self.depth {
            18 => [2, 2, 2, 2],
            34 => [3, 4, 6, 3],
            d => {
                return Err(ModelError::Config(format!(
                    "R(2+1)D depth {d} is not supported (use 18 or 34)"
                )))
            }
        };
        if self.base_width == 0 {
            return Err(ModelError::Config("base_width must be positive".into()));
        }
        let w = self.base_width;
        let stem_mid = (45 * w / 64).max(1);
        let stem = Stem {
            spatial: conv3d(3, stem_mid, [1, 7, 7], [1, 2, 2], [0, 3, 3], device),
            mid_bn: BatchNormConfig::new(stem_mid).init(device),
            temporal: conv3d(stem_mid, w, [3, 1, 1], [1, 1, 1], [1, 0, 0], device),
            bn: BatchNormConfig::new(w).init(device),
        };
        let mut in_ch = w;
        let mut layers = Vec::new();
        for (i, &n) in blocks.iter().enumerate() {
            let planes = w << i;
            let mut layer = Vec::new();
            for b in 0..n {
                let stride = if i > 0 && b == 0 { 2 } else { 1 };
                layer.push(R21Block::new(in_ch, planes, stride, device));
                in_ch = planes;
            }
            layers.push(layer);
        }
        let mut it = layers.into_iter();
        let mut take = || it.next().unwrap_or_default();
        let enc = R2Plus1dEncoder {
            stem,
            layer1: take(),
            layer2: take(),
            layer3: take(),
            layer4: take(),
            fc: self
                .num_classes
                .map(|c| LinearConfig::new(in_ch, c).init(device)),
        };
        Ok(if self.frozen_bn { enc.freeze_bn() } else { enc })
    }
}

fn conv3d(
    cin: usize,
    cout: usize,
    k: [usize; 3],
    stride: [usize; 3],
    pad: [usize; 3],
    device: &Device,
) -> Conv3d {
    Conv3dConfig::new([cin, cout], k)
        .with_stride(stride)
        .with_padding(PaddingConfig3d::Explicit(pad[0], pad[1], pad[2]))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// Stem: spatial `1x7x7` stride `(1, 2, 2)` -> BN -> ReLU -> temporal `3x1x1` -> BN -> ReLU.
#[derive(Module, Debug)]
pub struct Stem {
    /// Spatial convolution (`stem.0`).
    pub spatial: Conv3d,
    /// BatchNorm between the factors (`stem.1`).
    pub mid_bn: BatchNorm,
    /// Temporal convolution (`stem.3`).
    pub temporal: Conv3d,
    /// Output BatchNorm (`stem.4`).
    pub bn: BatchNorm,
}

/// A (2+1)-D convolution: spatial `1x3x3` (stride `(1, s, s)`) -> BN -> ReLU -> temporal `3x1x1`
/// (stride `(s, 1, 1)`).
#[derive(Module, Debug)]
pub struct Conv2Plus1d {
    /// Spatial factor (`.0`).
    pub spatial: Conv3d,
    /// BatchNorm between the factors (`.1`).
    pub mid_bn: BatchNorm,
    /// Temporal factor (`.3`).
    pub temporal: Conv3d,
}

impl Conv2Plus1d {
    fn new(cin: usize, cout: usize, mid: usize, stride: usize, device: &Device) -> Self {
        Self {
            spatial: conv3d(cin, mid, [1, 3, 3], [1, stride, stride], [0, 1, 1], device),
            mid_bn: BatchNormConfig::new(mid).init(device),
            temporal: conv3d(mid, cout, [3, 1, 1], [stride, 1, 1], [1, 0, 0], device),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.temporal
            .forward(relu(self.mid_bn.forward(self.spatial.forward(x))))
    }
}

/// Shortcut `1x1x1` convolution with stride `s` in time and space, and its BatchNorm.
#[derive(Module, Debug)]
pub struct Downsample3d {
    /// `downsample.0`.
    pub conv: Conv3d,
    /// `downsample.1`.
    pub bn: BatchNorm,
}

/// Basic residual block of R(2+1)D.
#[derive(Module, Debug)]
pub struct R21Block {
    /// First factorised convolution (carries the stride).
    pub conv1: Conv2Plus1d,
    /// BatchNorm after `conv1` (`conv1.1`).
    pub bn1: BatchNorm,
    /// Second factorised convolution.
    pub conv2: Conv2Plus1d,
    /// BatchNorm after `conv2` (`conv2.1`).
    pub bn2: BatchNorm,
    /// Projection shortcut when the shape changes.
    pub downsample: Option<Downsample3d>,
}

impl R21Block {
    /// A block from `cin` to `planes` channels; `midplanes` follows torchvision
    /// (`cin * planes * 27 / (cin * 9 + 3 * planes)`, so the factorised block has about as many
    /// parameters as a full 3x3x3 one).
    pub fn new(cin: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let mid = (cin * planes * 27 / (cin * 9 + 3 * planes)).max(1);
        Self {
            conv1: Conv2Plus1d::new(cin, planes, mid, stride, device),
            bn1: BatchNormConfig::new(planes).init(device),
            conv2: Conv2Plus1d::new(planes, planes, mid, 1, device),
            bn2: BatchNormConfig::new(planes).init(device),
            downsample: (stride != 1 || cin != planes).then(|| Downsample3d {
                conv: conv3d(cin, planes, [1, 1, 1], [stride; 3], [0, 0, 0], device),
                bn: BatchNormConfig::new(planes).init(device),
            }),
        }
    }

    /// `[N, C, T, H, W]` -> `[N, C', T', H', W']`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let y = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let y = self.bn2.forward(self.conv2.forward(y));
        let id = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x)),
            None => x,
        };
        relu(y + id)
    }

    fn freeze_bn(self) -> Self {
        let c = |c: Conv2Plus1d| Conv2Plus1d {
            mid_bn: c.mid_bn.freeze(),
            ..c
        };
        Self {
            conv1: c(self.conv1),
            bn1: self.bn1.freeze(),
            conv2: c(self.conv2),
            bn2: self.bn2.freeze(),
            downsample: self.downsample.map(|d| Downsample3d {
                bn: d.bn.freeze(),
                ..d
            }),
        }
    }
}

/// R(2+1)D encoder (and clip classifier with `fc`).
#[derive(Module, Debug)]
pub struct R2Plus1dEncoder {
    /// Factorised stem.
    pub stem: Stem,
    /// Stage 1.
    pub layer1: Vec<R21Block>,
    /// Stage 2 (stride 2 in time and space).
    pub layer2: Vec<R21Block>,
    /// Stage 3 (stride 2).
    pub layer3: Vec<R21Block>,
    /// Stage 4 (stride 2).
    pub layer4: Vec<R21Block>,
    /// Clip classifier (pre-training only).
    pub fc: Option<Linear>,
}

impl R2Plus1dEncoder {
    /// Freezes every BatchNorm (running statistics, no affine gradient).
    pub fn freeze_bn(self) -> Self {
        let f = |v: Vec<R21Block>| v.into_iter().map(R21Block::freeze_bn).collect();
        Self {
            stem: Stem {
                mid_bn: self.stem.mid_bn.freeze(),
                bn: self.stem.bn.freeze(),
                ..self.stem
            },
            layer1: f(self.layer1),
            layer2: f(self.layer2),
            layer3: f(self.layer3),
            layer4: f(self.layer4),
            ..self
        }
    }

    /// Clip features: `[N, 3, T, S, S]` -> `[N, C]` (global average over time and space).
    pub fn clip_features(&self, clips: Tensor<5>) -> Tensor<2> {
        let s = &self.stem;
        let x = relu(s.mid_bn.forward(s.spatial.forward(clips)));
        let mut x = relu(s.bn.forward(s.temporal.forward(x)));
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                x = block.forward(x);
            }
        }
        let [n, c, _, _, _] = x.dims();
        x.reshape([n as i64, c as i64, -1])
            .mean_dim(2)
            .reshape([n, c])
    }

    /// Snippet features: `[B, L, F, 3, S, S]` -> `[B, L, C]`, each snippet a clip of `F` frames.
    pub fn forward(&self, video: Tensor<6>) -> Result<Tensor<3>, ModelError> {
        let [b, l, f, _, h, w] = video_dims(&video)?;
        let clips = video.reshape([b * l, f, 3, h, w]).swap_dims(1, 2);
        let feats = self.clip_features(clips);
        let c = feats.dims()[1];
        Ok(feats.reshape([b, l, c]))
    }

    /// Clip logits: `[B, 3, T, S, S]` -> `[B, classes]`.
    pub fn classify(&self, clips: Tensor<5>) -> Result<Tensor<2>, ModelError> {
        let fc = self.fc.as_ref().ok_or_else(|| {
            ModelError::Config("this encoder was built without a classifier (num_classes)".into())
        })?;
        if clips.dims()[1] != 3 {
            return Err(ModelError::Input(format!(
                "classifier input must be [B, 3, T, S, S], got {:?}",
                clips.dims()
            )));
        }
        Ok(fc.forward(self.clip_features(clips)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn shapes_for_18_and_34_with_any_l_f_s() {
        let device = Device::flex();
        for (depth, l, f, s) in [(18, 3, 4, 32), (34, 2, 1, 24)] {
            let cfg = R2Plus1dConfig::tiny(depth, 4);
            let enc = cfg.init(&device).expect("valid");
            let x = Tensor::<6>::random([2, l, f, 3, s, s], Distribution::Default, &device);
            assert_eq!(
                enc.forward(x).expect("ok").dims(),
                [2, l, cfg.out_channels()]
            );
        }
        assert!(R2Plus1dConfig::tiny(50, 4).init(&device).is_err());
    }

    #[test]
    fn classifier_and_frozen_bn() {
        let device = Device::flex().autodiff();
        let enc = R2Plus1dConfig {
            frozen_bn: true,
            num_classes: Some(3),
            ..R2Plus1dConfig::tiny(18, 4)
        }
        .init(&device)
        .expect("valid");
        let clip = Tensor::<5>::random([2, 3, 4, 32, 32], Distribution::Default, &device);
        let logits = enc.classify(clip).expect("ok");
        assert_eq!(logits.dims(), [2, 3]);
        let grads = logits.sum().backward();
        assert!(enc.stem.spatial.weight.val().grad(&grads).is_some());
        assert!(enc.stem.bn.gamma.val().grad(&grads).is_none());
    }
}
