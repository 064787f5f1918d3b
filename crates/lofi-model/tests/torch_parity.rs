//! burn's LibTorch backend on the CPU (`--features tch`) against the flex backend, for a tiny
//! TSM-ResNet-18 + G-TAD: the forward pass, the loss, every parameter's gradient, one SGD step and
//! a few training steps, from the same weights and the same clip. The LibTorch path runs lofi's
//! bridge operations (`lofi_model::torchops`: ATen's convolution and BatchNorm with their
//! backward passes) and burn-tch's generic operations for the rest, i.e. exactly what a
//! `--device torch-cuda` step runs, on ATen's CPU kernels.
//!
//! Tolerances (relative to the largest magnitude of each compared tensor): forward features and
//! the loss 1e-4; every gradient and every parameter after one SGD step (lr 0.05) 5e-4; the loss after 3
//! steps 1e-3. Both backends compute in f32 and sum in different orders, through ~20 layers with
//! training-mode BatchNorm, which is what these bounds allow for (measured on the 2-core
//! development machine: features 5e-6, loss 0, worst gradient 3.8e-5, worst parameter after one
//! step 6.7e-5). bf16 (mixed precision) against the f32 loss: 5e-2 (measured 4.5e-4).
#![cfg(feature = "tch")]
#![allow(deprecated)] // burn-tch's device constructors are deprecated upstream

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{DType, Device, Tensor, TensorData};
use lofi_model::precision::{compute_copy, master_grads};
use lofi_model::seed::initialized;
use lofi_model::test_util::max_rel_diff as rel;
use lofi_model::{
    GtadConfig, GtadHead, GtadLoss, GtadTargets, Precision, ResNetConfig, Segment, TargetConfig,
    TsmEncoder,
};

const L: usize = 4;
const SIZE: usize = 32;

fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.cast(DType::F32)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

/// Every float parameter's value (`grads: None`) or gradient, by parameter id.
struct Collect<'a> {
    grads: Option<&'a burn::tensor::Gradients>,
    out: BTreeMap<String, Vec<f32>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = match self.grads {
            Some(g) => param.val().grad(g).map(vals),
            None => Some(vals(param.val())),
        };
        if let Some(v) = v {
            self.out.insert(param.id.to_string(), v);
        }
    }
}

fn collect<M: Module>(
    m: &M,
    grads: Option<&burn::tensor::Gradients>,
) -> BTreeMap<String, Vec<f32>> {
    let mut c = Collect {
        grads,
        out: BTreeMap::new(),
    };
    m.visit(&mut c);
    c.out
}

struct Model {
    encoder: TsmEncoder,
    head: GtadHead,
}

/// The tiny model on the flex autodiff device (seeded), and the same weights on `device`.
fn models(device: &Device) -> (Model, Model) {
    let flex = Device::flex().autodiff();
    flex.seed(5);
    let enc_cfg = ResNetConfig::tiny(18, 8);
    let c = enc_cfg.out_channels();
    // Created now on flex (burn creates parameters lazily; a lazy parameter forked to libtorch
    // would be drawn there, from libtorch's generator).
    let encoder = initialized(enc_cfg.init(&flex).expect("encoder"));
    let head = initialized(GtadConfig::tiny(c).init(&flex).expect("head"));
    let other = Model {
        encoder: encoder.clone().fork(device),
        head: head.clone().fork(device),
    };
    (Model { encoder, head }, other)
}

fn clip(device: &Device) -> Tensor<6> {
    let shape = [1, L, 1, 3, SIZE, SIZE];
    let data = lofi_model::test_util::lcg_vec(shape.iter().product(), 3);
    Tensor::from_data(TensorData::new(data, shape), device)
}

fn targets() -> Vec<GtadTargets> {
    let segs = [Segment::new(0.1, 0.4), Segment::new(0.5, 0.9)];
    vec![GtadTargets::new(&segs, L, &TargetConfig::default()).expect("targets")]
}

/// One step's features, loss and parameter gradients (encoder and head merged), in `precision`.
struct Step {
    feats: Vec<f32>,
    loss: f32,
    grads: BTreeMap<String, Vec<f32>>,
}

fn step(m: &Model, device: &Device, precision: Precision) -> (Step, burn::tensor::Gradients) {
    let enc = compute_copy(&m.encoder, precision);
    let feats = enc
        .forward(precision.cast_input(clip(device)))
        .expect("forward")
        .cast(DType::F32);
    let out = m.head.forward(feats.clone().swap_dims(1, 2)).expect("head");
    let parts = GtadLoss::default()
        .compute(&out, &targets(), 0)
        .expect("loss");
    let loss = vals(parts.total.clone())[0];
    let grads = parts.total.backward();
    let mut all = collect(&enc, Some(&grads));
    all.extend(collect(&m.head, Some(&grads)));
    (
        Step {
            feats: vals(feats),
            loss,
            grads: all,
        },
        grads,
    )
}

fn torch() -> Device {
    Device::libtorch().autodiff()
}

#[test]
fn forward_loss_and_every_gradient_match_flex() {
    let (flex_model, torch_model) = models(&torch());
    let (a, _) = step(&flex_model, &Device::flex().autodiff(), Precision::F32);
    let (b, _) = step(&torch_model, &torch(), Precision::F32);
    let f = rel(&b.feats, &a.feats);
    assert!(f < 1e-4, "features differ by {f:e}");
    let l = ((b.loss - a.loss) / a.loss.abs().max(1e-6)).abs();
    assert!(l < 1e-4, "loss {} vs flex {} ({l:e})", b.loss, a.loss);
    assert_eq!(
        a.grads.keys().collect::<Vec<_>>(),
        b.grads.keys().collect::<Vec<_>>(),
        "the same parameters get gradients"
    );
    assert!(a.grads.len() > 40, "only {} gradients", a.grads.len());
    let mut worst = 0.0f32;
    for (id, ga) in &a.grads {
        let d = rel(&b.grads[id], ga);
        worst = worst.max(d);
        assert!(d < 5e-4, "gradient of parameter {id} differs by {d:e}");
    }
    eprintln!("features {f:e}, loss {l:e}, worst gradient {worst:e}");
}

/// One SGD step, then two more: the parameters after the first and the loss after the third.
#[test]
fn sgd_steps_match_flex() {
    let torch = torch();
    let flex = Device::flex().autodiff();
    let (mut a, mut b) = models(&torch);
    let mut opt_a = (SgdConfig::new().init(), SgdConfig::new().init());
    let mut opt_b = (SgdConfig::new().init(), SgdConfig::new().init());
    let mut losses = Vec::new();
    for i in 0..3 {
        for (m, dev, opt, which) in [
            (&mut a, &flex, &mut opt_a, 0),
            (&mut b, &torch, &mut opt_b, 1),
        ] {
            let (s, mut grads) = step(m, dev, Precision::F32);
            if which == 0 {
                losses.push((s.loss, f32::NAN));
            } else if let Some(last) = losses.last_mut() {
                last.1 = s.loss;
            }
            let g_enc = GradientsParams::from_module(&mut grads, &m.encoder);
            let g_head = GradientsParams::from_module(&mut grads, &m.head);
            m.encoder = opt.0.step(0.05, m.encoder.clone(), g_enc);
            m.head = opt.1.step(0.05, m.head.clone(), g_head);
        }
        if i == 0 {
            let mut worst = 0.0f32;
            let (mut pa, mut pb) = (collect(&a.encoder, None), collect(&b.encoder, None));
            pa.extend(collect(&a.head, None));
            pb.extend(collect(&b.head, None));
            for (id, va) in &pa {
                let d = rel(&pb[id], va);
                worst = worst.max(d);
                assert!(d < 5e-4, "parameter {id} after one step differs by {d:e}");
            }
            eprintln!("worst parameter after one step {worst:e}");
        }
    }
    for (i, (la, lb)) in losses.iter().enumerate() {
        let d = ((lb - la) / la.abs().max(1e-6)).abs();
        assert!(d < 1e-3, "step {i}: loss {lb} vs flex {la} ({d:e})");
    }
    assert!(
        losses[2].0 < losses[0].0,
        "training lowers the loss: {losses:?}"
    );
}

/// Mixed precision (bf16 encoder copy, f32 master weights) on libtorch's CPU: the loss stays
/// within bf16's precision of the f32 loss, and the master gradients exist and are finite.
#[test]
fn bf16_mixed_precision_runs_and_stays_close() {
    let torch = torch();
    assert!(Precision::Bf16.check(&torch).is_ok(), "libtorch does bf16");
    let (_, m) = models(&torch);
    let (f, mut f_grads) = step(&m, &torch, Precision::F32);
    let want = GradientsParams::from_module(&mut f_grads, &m.encoder).len();
    let enc = compute_copy(&m.encoder, Precision::Bf16);
    let feats = enc
        .forward(Precision::Bf16.cast_input(clip(&torch)))
        .expect("forward")
        .cast(DType::F32);
    let out = m.head.forward(feats.swap_dims(1, 2)).expect("head");
    let parts = GtadLoss::default()
        .compute(&out, &targets(), 0)
        .expect("loss");
    let loss = vals(parts.total.clone())[0];
    let d = ((loss - f.loss) / f.loss.abs()).abs();
    assert!(d < 5e-2, "bf16 loss {loss} vs f32 {} ({d:e})", f.loss);
    let mut grads = parts.total.backward();
    let g = master_grads(GradientsParams::from_module(&mut grads, &enc), &m.encoder);
    assert_eq!(
        g.len(),
        want,
        "a master gradient for every encoder parameter f32 has"
    );
    eprintln!("bf16 loss {loss} vs f32 {} ({d:e})", f.loss);
}
