//! Mixed precision for training: bf16 weights and activations in the forward and backward pass,
//! f32 master weights for the optimizer, BatchNorm in f32.
//!
//! Why it exists: at full fidelity the encoder's saved activations dominate training memory, and
//! on GPUs with bf16 arithmetic (CUDA sm_80+) halving them is the usual way to fit larger
//! mini-batches; LoFi's point is trading fidelity for memory, so the two must be comparable.
//! Burn 0.22 has no autocast, so the scheme is explicit:
//!
//! 1. [`compute_copy`] makes a bf16 working copy of the f32 master module each step (same
//!    [`ParamId`]s; parameters inside a `BatchNorm`, and its running statistics, stay f32 and are
//!    shared with the master, so the running statistics the step updates are the master's);
//! 2. the caller casts the input with [`Precision::cast_input`], runs forward and backward on the
//!    copy (the ResNet applies BatchNorm in f32 and casts back), and takes the gradients with
//!    `GradientsParams::from_grads(grads, &copy)`;
//! 3. [`master_grads`] casts those gradients to f32, and the optimizer steps the f32 master.
//!
//! With [`Precision::F32`] every function here is the identity, so a trainer can call them
//! unconditionally.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Numeric precision of a training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// bf16 compute, f32 master weights and BatchNorm.
    Bf16,
}

impl Precision {
    /// Name used in configs and logs (`"f32"`, `"bf16"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }

    /// The compute dtype.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }

    /// Fails when `device` cannot compute in this precision (bf16 on wgpu/Vulkan, where burn
    /// exposes bf16 for storage and conversion only): running anyway would give garbage.
    pub fn check(self, device: &Device) -> Result<(), ModelError> {
        if self == Self::Bf16 && !device.supports_dtype(FloatDType::BF16) {
            return Err(ModelError::Config(format!(
                "precision \"bf16\" is not supported on {device:?} (no bf16 arithmetic there); \
                 use \"f32\""
            )));
        }
        Ok(())
    }

    /// Casts a model input to the compute dtype.
    pub fn cast_input<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        if x.dtype() == self.dtype() {
            x
        } else {
            x.cast(self.dtype())
        }
    }
}

/// Casts float parameters outside `BatchNorm` to `dtype` as fresh leaves with the same ids.
struct CastMapper {
    dtype: DType,
    containers: Vec<String>,
}

impl ModuleMapper for CastMapper {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.containers.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let in_batch_norm = self
            .containers
            .last()
            .is_some_and(|c| c.ends_with(":BatchNorm"));
        if in_batch_norm {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        if tensor.dtype() == self.dtype {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let trainable = tensor.is_require_grad();
        let cast = tensor.cast(self.dtype).detach();
        let cast = if trainable { cast.require_grad() } else { cast };
        Param::from_mapped_value(id, cast, mapper)
    }
}

/// The working copy of `master` for one step in `precision` (a plain clone for f32).
pub fn compute_copy<M: Module>(master: &M, precision: Precision) -> M {
    match precision {
        Precision::F32 => master.clone(),
        Precision::Bf16 => master.clone().map(&mut CastMapper {
            dtype: precision.dtype(),
            containers: Vec::new(),
        }),
    }
}

/// Casts every gradient of a parameter of `master` to f32 (the dtype of the master weights).
struct GradCast<'a> {
    grads: &'a mut GradientsParams,
}

impl ModuleVisitor for GradCast<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let id: ParamId = param.id;
        if let Some(g) = self.grads.remove::<D>(id) {
            let g = if g.dtype() == DType::F32 {
                g
            } else {
                g.cast(DType::F32)
            };
            self.grads.register(id, g);
        }
    }
}

/// Gradients of the working copy made ready for the optimizer of the f32 `master`.
pub fn master_grads<M: Module>(mut grads: GradientsParams, master: &M) -> GradientsParams {
    master.visit(&mut GradCast { grads: &mut grads });
    grads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GtadConfig, GtadLoss, GtadTargets, ResNetConfig, Segment, TargetConfig};
    use burn::optim::SgdConfig;
    use burn::tensor::TensorData;

    struct Dtypes(Vec<(bool, DType)>, Vec<String>);
    impl ModuleVisitor for Dtypes {
        fn enter_module(&mut self, _name: &str, container_type: &str) {
            self.1.push(container_type.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let bn = self.1.last().is_some_and(|c| c.ends_with(":BatchNorm"));
            self.0.push((bn, param.val().dtype()));
        }
    }

    fn dtypes<M: Module>(m: &M) -> Vec<(bool, DType)> {
        let mut v = Dtypes(Vec::new(), Vec::new());
        m.visit(&mut v);
        v.0
    }

    #[test]
    fn names_and_serde() {
        assert_eq!(Precision::default(), Precision::F32);
        assert_eq!(Precision::Bf16.name(), "bf16");
        let p: Precision = serde_json::from_str("\"bf16\"").expect("known name");
        assert_eq!(p, Precision::Bf16);
        assert!(serde_json::from_str::<Precision>("\"fp8\"").is_err());
    }

    #[test]
    fn copy_casts_all_but_batch_norm() {
        let device = Device::flex().autodiff();
        let enc = ResNetConfig::tiny(18, 4).init(&device).expect("valid");
        let copy = compute_copy(&enc, Precision::Bf16);
        let d = dtypes(&copy);
        assert!(d.iter().any(|(bn, _)| *bn), "the encoder has BatchNorm");
        for (bn, dt) in d {
            let want = if bn { DType::F32 } else { DType::BF16 };
            assert_eq!(dt, want, "BatchNorm parameter: {bn}");
        }
        // The master is untouched.
        assert!(dtypes(&enc).iter().all(|(_, dt)| *dt == DType::F32));
    }

    /// A few bf16 steps of the tiny encoder + head: the loss falls, the master stays f32 and the
    /// BatchNorm running statistics (f32) move.
    #[test]
    fn bf16_mixed_precision_trains() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let p = Precision::Bf16;
        p.check(&device).expect("flex computes in bf16");
        let (l, s) = (8, 32);
        let mut enc = ResNetConfig::tiny(18, 4).init(&device).expect("valid");
        let mut head = GtadConfig::tiny(enc_channels())
            .init(&device)
            .expect("valid");
        let segs = [Segment::new(0.25, 0.625)];
        let targets = [GtadTargets::new(&segs, l, &TargetConfig::default()).expect("valid")];
        let n = l * 3 * s * s;
        let pixels: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
            .collect();
        let video = Tensor::<6>::from_data(TensorData::new(pixels, [1, l, 1, 3, s, s]), &device);
        let loss_fn = GtadLoss::default();
        let mut opt_e = SgdConfig::new().init();
        let mut opt_h = SgdConfig::new().init();
        let running_before = enc.bn1.running_mean.value().into_data();
        let mut losses = Vec::new();
        for step in 0..12 {
            let e = compute_copy(&enc, p);
            let feats = e.forward(p.cast_input(video.clone())).expect("valid input");
            assert_eq!(feats.dtype(), DType::BF16);
            let out = head
                .forward(feats.cast(DType::F32).swap_dims(1, 2))
                .expect("valid");
            let parts = loss_fn.compute(&out, &targets, step).expect("valid");
            let v = parts
                .total
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 loss")[0];
            assert!(v.is_finite(), "loss {v} at step {step}");
            losses.push(v);
            let mut grads = parts.total.backward();
            let ge = master_grads(GradientsParams::from_module(&mut grads, &e), &enc);
            let gh = GradientsParams::from_module(&mut grads, &head);
            assert!(!ge.is_empty(), "encoder got gradients");
            enc = opt_e.step(0.05, enc, ge);
            head = opt_h.step(0.05, head, gh);
        }
        assert!(dtypes(&enc).iter().all(|(_, dt)| *dt == DType::F32));
        let running_after = enc.bn1.running_mean.value();
        assert_eq!(running_after.dtype(), DType::F32);
        assert_ne!(
            running_after.into_data(),
            running_before,
            "BN statistics moved"
        );
        let first = losses[0];
        let last = losses[losses.len() - 1];
        assert!(
            last < first * 0.9,
            "bf16 training should reduce the loss: {losses:?}"
        );
    }

    fn enc_channels() -> usize {
        ResNetConfig::tiny(18, 4).out_channels()
    }
}
