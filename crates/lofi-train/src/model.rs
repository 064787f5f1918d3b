//! The jointly trained network (TSM encoder + G-TAD head), the optimizer built from a config and
//! one training pass that both the trainer and the memory planner's probes run.
//!
//! Exists so that the probe measures exactly the step that training runs, and so that the
//! encoder and head are saved, loaded and optimized as one module.

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{DType, Device, Distribution, Tensor};
use lofi_model::precision::{compute_copy, master_grads};
use lofi_model::{Encoder, GtadLoss, Head, HeadOutput, HeadTargets, Precision, Segment};
use lofi_video::Fidelity;

use crate::config::{OptimizerSection, TrainConfig};
use crate::error::TrainResult;

/// Video encoder (TSM-ResNet or R(2+1)D) + localization head (any `lofi_model::HeadKind`).
#[derive(Module, Debug)]
pub struct LofiModel {
    /// The video encoder.
    pub encoder: Encoder,
    /// The localization head.
    pub head: Head,
}

impl LofiModel {
    /// Builds a freshly initialised model from a config on `device` (seed the device first for
    /// reproducible weights). BatchNorm is frozen after loading, when asked.
    pub fn init(config: &TrainConfig, device: &Device) -> TrainResult<Self> {
        let arch = config.encoder.clone().with_frozen_bn(false);
        let encoder = arch.init(None, device)?;
        let head = config.head.init(arch.out_channels(), device)?;
        Ok(Self { encoder, head })
    }

    /// Clips `[B, L, F, 3, S, S]` to G-TAD outputs at `L`. Encoder features in another float
    /// type (a bf16 working copy) are cast to f32 for the head.
    pub fn forward(&self, clips: Tensor<6>) -> TrainResult<HeadOutput> {
        let features = self.encoder.forward(clips)?;
        let features = if features.dtype() == DType::F32 {
            features
        } else {
            features.cast(DType::F32)
        };
        Ok(self.head.forward(features.swap_dims(1, 2))?)
    }

    /// The module one training pass runs in `precision`: the model itself for f32; for bf16 a
    /// working copy whose encoder computes in bf16 (same parameter ids, BatchNorm f32 and shared)
    /// while the head stays f32. Gradients taken on it go through [`master_grads`] to the f32
    /// optimizer of `self`.
    pub fn working_copy(&self, precision: Precision) -> Self {
        match precision {
            Precision::F32 => self.clone(),
            Precision::Bf16 => Self {
                encoder: compute_copy(&self.encoder, precision),
                head: self.head.clone(),
            },
        }
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

/// Loss values summed over the micro-batches (and replicas) of one step, each weighted by its
/// share of the batch: the batch-mean loss and its parts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossSums {
    /// Total loss.
    pub total: f64,
    /// Boundary part.
    pub boundary: f64,
    /// Regression part (unweighted).
    pub regression: f64,
    /// Classification part.
    pub classification: f64,
}

impl LossSums {
    /// Adds one pass's values weighted by `share`.
    pub fn add_scaled(&mut self, v: &LossValues, share: f32) {
        let w = f64::from(share);
        self.total += f64::from(v.total) * w;
        self.boundary += f64::from(v.boundary) * w;
        self.regression += f64::from(v.regression) * w;
        self.classification += f64::from(v.classification) * w;
    }

    /// Adds another replica's sums.
    pub fn add(&mut self, other: &LossSums) {
        self.total += other.total;
        self.boundary += other.boundary;
        self.regression += other.regression;
        self.classification += other.classification;
    }

    /// The parts as a metrics record stores them.
    pub fn parts(&self) -> lofi_engine::LossParts {
        lofi_engine::LossParts {
            boundary: self.boundary,
            regression: self.regression,
            classification: self.classification,
        }
    }
}

fn scalar(t: Tensor<1>, what: &'static str) -> TrainResult<f32> {
    Ok(lofi_engine::readback::scalar(t, what)? as f32)
}

/// Loss of `model` on a batch (no backward).
pub fn loss(
    model: &LofiModel,
    clips: Tensor<6>,
    targets: &[HeadTargets],
    loss_fn: &GtadLoss,
    seed: u64,
) -> TrainResult<(Tensor<1>, LossValues)> {
    let out = model.forward(clips)?;
    let parts = loss_fn.compute(&out, targets, seed)?;
    let values = LossValues {
        total: scalar(parts.total.clone(), "the loss")?,
        boundary: scalar(parts.boundary, "the boundary loss")?,
        regression: scalar(parts.regression, "the regression loss")?,
        classification: scalar(parts.classification, "the classification loss")?,
    };
    Ok((parts.total, values))
}

/// One forward/backward pass in `precision`; the loss is multiplied by `scale` before the
/// backward (the share of the optimizer step's batch that this micro-batch holds). The
/// gradients are f32 and keyed by `model`'s parameters whatever the precision.
pub fn backward_pass(
    model: &LofiModel,
    clips: Tensor<6>,
    targets: &[HeadTargets],
    loss_fn: &GtadLoss,
    seed: u64,
    scale: f32,
    precision: Precision,
) -> TrainResult<(GradientsParams, LossValues)> {
    let working = model.working_copy(precision);
    let (total, values) = loss(
        &working,
        precision.cast_input(clips),
        targets,
        loss_fn,
        seed,
    )?;
    let grads = (total * scale).backward();
    let grads = GradientsParams::from_grads(grads, &working);
    Ok((master_grads(grads, model), values))
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
    let t = config.head.targets(
        &[Segment::new(0.2, 0.6)],
        fidelity.snippets,
        config.boundary_width,
    )?;
    let targets = vec![t; batch];
    let (grads, _) = backward_pass(
        model,
        clips,
        &targets,
        &config.head.loss(),
        0,
        1.0,
        config.precision,
    )?;
    drop(grads);
    Ok(())
}

/// Collects parameter values; the first one that cannot be read back is kept as the error.
struct Flatten(Result<Vec<f32>, String>);

impl burn::module::ModuleVisitor for Flatten {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        if let Ok(out) = &mut self.0 {
            match param.val().into_data().convert::<f32>().try_to_vec::<f32>() {
                Ok(values) => out.extend(values),
                Err(e) => self.0 = Err(format!("{e:?}")),
            }
        }
    }
}

/// All trainable values of a module, flattened in visiting order; an error (never a shorter
/// list) when a parameter cannot be read back from its device.
pub fn flat_parameters<M: Module>(module: &M) -> TrainResult<Vec<f32>> {
    let mut v = Flatten(Ok(Vec::new()));
    module.visit(&mut v);
    v.0.map_err(|message| {
        lofi_engine::EngineError::Readback {
            what: "a parameter",
            message,
        }
        .into()
    })
}

/// The flattened parameters of the `encoder.bpk` and `head.bpk` that a run of `config` wrote to
/// `run_dir`, loaded into the config's architecture: for comparing runs (e.g. an uninterrupted
/// and a resumed one) independently of file metadata.
pub fn saved_run_parameters(
    config: &TrainConfig,
    run_dir: &std::path::Path,
) -> TrainResult<Vec<f32>> {
    let device = Device::flex();
    let fresh = LofiModel::init(config, &device)?;
    let encoder = config
        .encoder
        .load(None, &run_dir.join("encoder.bpk"), &device)?;
    let head = fresh.head.load_file(&run_dir.join("head.bpk"))?;
    let mut out = flat_parameters(&encoder)?;
    out.extend(flat_parameters(&head)?);
    Ok(out)
}
