//! The jointly trained network (TSM encoder + G-TAD head), the optimizer built from a config and
//! one training pass that both the trainer and the memory planner's probes run.
//!
//! Exists so that the probe measures exactly the step that training runs, and so that the
//! encoder and head are saved, loaded and optimized as one module.

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};
use lofi_model::{GtadHead, GtadLoss, GtadOutput, GtadTargets, Segment, TargetConfig, TsmEncoder};
use lofi_video::Fidelity;

use crate::config::{OptimizerSection, TrainConfig};
use crate::error::TrainResult;

/// TSM encoder + G-TAD head.
#[derive(Module, Debug)]
pub struct LofiModel {
    /// The video encoder.
    pub encoder: TsmEncoder,
    /// The localization head.
    pub head: GtadHead,
}

impl LofiModel {
    /// Builds a freshly initialised model from a config on `device` (seed the device first for
    /// reproducible weights). BatchNorm is frozen after loading, when asked.
    pub fn init(config: &TrainConfig, device: &Device) -> TrainResult<Self> {
        let resnet = config.encoder.resnet(None).with_frozen_bn(false);
        let encoder = resnet.init(device)?;
        let head = config.head.gtad(resnet.out_channels()).init(device)?;
        Ok(Self { encoder, head })
    }

    /// Clips `[B, L, F, 3, S, S]` to G-TAD outputs at `L`.
    pub fn forward(&self, clips: Tensor<6>) -> TrainResult<GtadOutput> {
        let features = self.encoder.forward(clips)?;
        Ok(self.head.forward(features.swap_dims(1, 2))?)
    }
}

/// The SGD optimizer of a config section.
pub fn sgd(section: &OptimizerSection) -> ModuleOptimizer {
    let mut config = SgdConfig::new();
    if section.weight_decay > 0.0 {
        config =
            config.with_weight_decay(Some(WeightDecayConfig::new(section.weight_decay as f32)));
    }
    if section.momentum > 0.0 {
        config = config.with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(section.momentum)
                .with_dampening(0.0),
        ));
    }
    if let Some(c) = section.grad_clip_norm {
        config = config.with_gradient_clipping(Some(
            burn::optim::grad_clipping::GradientClippingConfig::Norm(c as f32),
        ));
    }
    config.init()
}

/// Host-side loss values of one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossValues {
    /// Total loss.
    pub total: f32,
    /// Boundary part.
    pub boundary: f32,
    /// Regression part (unweighted).
    pub regression: f32,
    /// Classification part.
    pub classification: f32,
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN)
}

/// Loss of `model` on a batch (no backward).
pub fn loss(
    model: &LofiModel,
    clips: Tensor<6>,
    targets: &[GtadTargets],
    loss_fn: &GtadLoss,
    seed: u64,
) -> TrainResult<(Tensor<1>, LossValues)> {
    let out = model.forward(clips)?;
    let parts = loss_fn.compute(&out, targets, seed)?;
    let values = LossValues {
        total: scalar(parts.total.clone()),
        boundary: scalar(parts.boundary),
        regression: scalar(parts.regression),
        classification: scalar(parts.classification),
    };
    Ok((parts.total, values))
}

/// One forward/backward pass; the loss is multiplied by `scale` before the backward (the share
/// of the optimizer step's batch that this micro-batch holds).
pub fn backward_pass(
    model: &LofiModel,
    clips: Tensor<6>,
    targets: &[GtadTargets],
    loss_fn: &GtadLoss,
    seed: u64,
    scale: f32,
) -> TrainResult<(GradientsParams, LossValues)> {
    let (total, values) = loss(model, clips, targets, loss_fn, seed)?;
    let grads = (total * scale).backward();
    Ok((GradientsParams::from_grads(grads, model), values))
}

/// A probe step for the memory planner: random clips of `batch` videos at `fidelity` with one
/// action each, forward and backward through `model`.
pub fn probe_pass(
    model: &LofiModel,
    config: &TrainConfig,
    fidelity: Fidelity,
    batch: usize,
    device: &Device,
) -> TrainResult<()> {
    let f = config.frames_per_snippet;
    let clips = Tensor::<6>::random(
        [batch, fidelity.snippets, f, 3, fidelity.size, fidelity.size],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let tc = TargetConfig {
        boundary_width: config.boundary_width,
        max_duration: config.head.max_duration,
    };
    let t = GtadTargets::new(&[Segment::new(0.2, 0.6)], fidelity.snippets, &tc)?;
    let targets = vec![t; batch];
    let (grads, _) = backward_pass(model, clips, &targets, &GtadLoss::default(), 0, 1.0)?;
    drop(grads);
    Ok(())
}
