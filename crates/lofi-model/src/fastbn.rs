//! BatchNorm with batch statistics (training mode) for burn's CPU (flex) backend: forward and
//! backward as one pass each over the activation, parallel over channels.
//!
//! # Why
//! After the convolutions ([`crate::fastconv`]), BatchNorm was the largest part of the
//! TSM-ResNet training step on the CPU (BENCHMARKS.md, "Where the time went"). burn 0.22.1 builds
//! it out of generic operations: the statistics through `swap_dims(0, 1)` + `reshape` (a full
//! copy of the activation each) and `mean_dim`, the normalisation and the backward pass through
//! half a dozen element-wise passes, most of them on one thread. Here the statistics of each
//! channel are two reads of its planes (mean, then centred variance, summed in f64), the output
//! one write, and the backward pass two reads and one write, all split over the rayon threads.
//!
//! Same quantities as `burn::tensor::module::batch_norm_train` (biased variance, `epsilon` inside
//! the square root) and the same running-statistics update as burn's `BatchNorm`; results equal
//! burn's up to float rounding (the tests compare them). Memory: like burn's operation, the
//! backward pass keeps the input (checkpointed) and the per-channel statistics.
//!
//! # Scope
//! f32 activations on `Device::flex().autodiff()` with a trainable (not frozen) BatchNorm; every
//! other case runs `BatchNorm::forward` unchanged. `LOFI_FASTCONV=0` turns this module off too.

use burn::nn::BatchNorm;
use burn::tensor::{DType, Tensor};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_autodiff::Autodiff;
use burn_autodiff::NodeId;
use burn_backend::tensor::FloatTensor;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::fastconv::{contiguous, flex_f32, slice};

/// Per-channel mean and biased variance of `x` (`[N, C, P]` flattened), each channel summed in
/// f64 over its `N` planes of `P` values.
fn stats(x: &[f32], c: usize, p: usize) -> (Vec<f32>, Vec<f32>) {
    let n = x.len() / (c * p).max(1);
    let m = (n * p).max(1) as f64;
    let planes = |ch: usize| (0..n).map(move |i| &x[(i * c + ch) * p..][..p]);
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mean = planes(ch)
                .map(|pl| pl.iter().map(|&v| v as f64).sum::<f64>())
                .sum::<f64>()
                / m;
            let var = planes(ch)
                .map(|pl| pl.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
                .sum::<f64>()
                / m;
            (mean as f32, var as f32)
        })
        .unzip()
}

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta`, one `P`-block per (frame, channel).
fn normalize(x: &[f32], p: usize, scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let c = scale.len();
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(p)
        .zip(x.par_chunks(p))
        .enumerate()
        .for_each(|(i, (yb, xb))| {
            let (a, b) = (scale[i % c], shift[i % c]);
            yb.iter_mut().zip(xb).for_each(|(o, &v)| *o = v * a + b);
        });
    y
}

/// Gradients `(dx, dgamma, dbeta)` of the normalisation, given `dy`.
fn backward(
    x: &[f32],
    dy: &[f32],
    p: usize,
    gamma: &[f32],
    mean: &[f32],
    inv_std: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = gamma.len();
    let n = x.len() / (c * p).max(1);
    let m = (n * p).max(1) as f64;
    let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mu, is) = (mean[ch] as f64, inv_std[ch] as f64);
            let (mut sg, mut sb) = (0.0f64, 0.0f64);
            for i in 0..n {
                let xb = &x[(i * c + ch) * p..][..p];
                let gb = &dy[(i * c + ch) * p..][..p];
                for (&v, &g) in xb.iter().zip(gb) {
                    sb += g as f64;
                    sg += g as f64 * (v as f64 - mu) * is;
                }
            }
            (sg as f32, sb as f32)
        })
        .unzip();
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(p)
        .zip(x.par_chunks(p).zip(dy.par_chunks(p)))
        .enumerate()
        .for_each(|(i, (db, (xb, gb)))| {
            let ch = i % c;
            let k = gamma[ch] * inv_std[ch];
            let mb = (dbeta[ch] as f64 / m) as f32;
            let mg = (dgamma[ch] as f64 / m) as f32;
            let (mu, is) = (mean[ch], inv_std[ch]);
            for ((o, &v), &g) in db.iter_mut().zip(xb).zip(gb) {
                *o = k * (g - mb - (v - mu) * is * mg);
            }
        });
    (dx, dgamma, dbeta)
}

fn inv_std(var: &[f32], eps: f64) -> Vec<f32> {
    var.iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect()
}

/// Forward on flex tensors: `(y, mean, biased variance)`.
fn flex_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let shape = x.layout().shape().to_vec();
    let c = shape[1];
    let p = shape[2..].iter().product::<usize>();
    let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let (mean, var) = stats(slice(&x), c, p);
    let is = inv_std(&var, eps);
    let g = slice(&gamma);
    let b = slice(&beta);
    let scale: Vec<f32> = (0..c).map(|ch| g[ch] * is[ch]).collect();
    let shift: Vec<f32> = (0..c).map(|ch| b[ch] - mean[ch] * scale[ch]).collect();
    let y = normalize(slice(&x), p, &scale, &shift);
    (
        flex_f32(y, &shape),
        flex_f32(mean, &[c]),
        flex_f32(var, &[c]),
    )
}

#[derive(Debug)]
struct BatchNormTrainOp;

impl Backward<Flex, 3> for BatchNormTrainOp {
    // Checkpointed input and gamma, the batch statistics, epsilon.
    type State = (NodeId, NodeId, FlexTensor, FlexTensor, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let (xs, gs, mean, var, eps) = ops.state;
        let x = contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(xs));
        let gamma = contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(gs));
        let shape = x.layout().shape().to_vec();
        let c = shape[1];
        let p = shape[2..].iter().product::<usize>();
        let is = inv_std(slice(&contiguous(&var)), eps);
        let (dx, dgamma, dbeta) = backward(
            slice(&x),
            slice(&dy),
            p,
            slice(&gamma),
            slice(&contiguous(&mean)),
            &is,
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_f32(dx, &shape));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex_f32(dgamma, &[c]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex_f32(dbeta, &[c]));
        }
    }
}

type AdTensor = FloatTensor<Autodiff<Flex>>;

/// The autodiff operation: `(y, mean, variance)`, the statistics untracked.
fn autodiff_forward(
    x: AdTensor,
    gamma: AdTensor,
    beta: AdTensor,
    eps: f64,
) -> (AdTensor, AdTensor, AdTensor) {
    match BatchNormTrainOp
        .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let xs = prep.checkpoint(&x);
            let gs = prep.checkpoint(&gamma);
            let (y, mean, var) =
                flex_forward(x.primitive(), gamma.primitive(), beta.primitive(), eps);
            let out = prep.finish((xs, gs, mean.clone(), var.clone(), eps), y);
            (out, AdTensor::new(mean), AdTensor::new(var))
        }
        OpsKind::UnTracked(prep) => {
            let (y, mean, var) =
                flex_forward(x.primitive(), gamma.primitive(), beta.primitive(), eps);
            (prep.finish(y), AdTensor::new(mean), AdTensor::new(var))
        }
    }
}

/// `bn.forward(x)`, with this module's kernels when `bn` trains on batch statistics on the flex
/// autodiff device in f32 (see the module docs), burn's otherwise. Updates the running
/// statistics exactly as burn's `BatchNorm` does.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let training = D >= 2
        && crate::fastconv::enabled()
        && x.dtype() == DType::F32
        && x.device().is_autodiff()
        && bn.training.is_enabled();
    if !training {
        return bn.forward(x);
    }
    let prims = (
        x.clone().try_into_primitive::<Autodiff<Flex>>(),
        bn.gamma.val().try_into_primitive::<Autodiff<Flex>>(),
        bn.beta.val().try_into_primitive::<Autodiff<Flex>>(),
    );
    let (Ok(xp), Ok(gp), Ok(bp)) = prims else {
        return bn.forward(x);
    };
    if gp.primitive().dtype() != DType::F32 || bp.primitive().dtype() != DType::F32 {
        return bn.forward(x);
    }
    crate::fastconv::count_fast_call();
    let (y, mean, var) = autodiff_forward(xp, gp, bp, bn.epsilon);
    let y = Tensor::<D>::from_primitive::<Autodiff<Flex>>(y);
    let mean = Tensor::<1>::from_primitive::<Autodiff<Flex>>(mean);
    let var = Tensor::<1>::from_primitive::<Autodiff<Flex>>(var);
    // burn's running-statistics update (BatchNorm::forward_train).
    let device = y.device();
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    let running_mean = running_mean
        .mul_scalar(1.0 - bn.momentum)
        .add(mean.detach().mul_scalar(bn.momentum));
    let running_var = running_var
        .mul_scalar(1.0 - bn.momentum)
        .add(var.detach().mul_scalar(bn.momentum));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::lcg_vec;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, TensorData};

    fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap_or_default()
    }

    fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// Output, the three gradients and the running statistics against burn's BatchNorm.
    #[test]
    fn matches_burn_batch_norm_training() {
        let device = Device::flex().autodiff();
        for (i, shape) in [[3usize, 4, 5, 6], [1, 3, 2, 2], [5, 2, 7, 3]]
            .into_iter()
            .enumerate()
        {
            let c = shape[1];
            let n: usize = shape.iter().product();
            // Offset and scaled input so that the variance is not trivially 1.
            let xv: Vec<f32> = lcg_vec(n, 50 + i as u64)
                .iter()
                .map(|v| 3.0 * v + 1.5)
                .collect();
            let rv = lcg_vec(n, 60 + i as u64);
            let gv = lcg_vec(c, 70 + i as u64);
            let run = |fast: bool| {
                let mut bn = BatchNormConfig::new(c).init(&device);
                bn.gamma = bn.gamma.map(|_| {
                    Tensor::from_data(TensorData::new(gv.clone(), [c]), &device).require_grad()
                });
                let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), shape), &device)
                    .require_grad();
                let r = Tensor::<4>::from_data(TensorData::new(rv.clone(), shape), &device);
                let y = if fast {
                    batch_norm(&bn, x.clone())
                } else {
                    bn.forward(x.clone())
                };
                let grads = (y.clone() * r).sum().backward();
                (
                    vals(y),
                    vals(x.grad(&grads).expect("x grad")),
                    vals(bn.gamma.val().grad(&grads).expect("gamma grad")),
                    vals(bn.beta.val().grad(&grads).expect("beta grad")),
                    vals(bn.running_mean.value()),
                    vals(bn.running_var.value()),
                )
            };
            let want = run(false);
            let before = crate::fastconv::fast_calls();
            let got = run(true);
            assert_eq!(
                crate::fastconv::fast_calls(),
                before + 1,
                "the fast path ran"
            );
            for (name, a, b) in [
                ("output", &got.0, &want.0),
                ("input grad", &got.1, &want.1),
                ("gamma grad", &got.2, &want.2),
                ("beta grad", &got.3, &want.3),
                ("running mean", &got.4, &want.4),
                ("running var", &got.5, &want.5),
            ] {
                assert!(
                    max_rel_diff(a, b) < 1e-5,
                    "{name}, shape {shape:?}: {a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn inference_and_frozen_use_burn() {
        let device = Device::flex();
        let bn = BatchNormConfig::new(3).init(&device);
        let x = Tensor::<4>::from_data(TensorData::new(lcg_vec(24, 1), [2, 3, 2, 2]), &device);
        let before = crate::fastconv::fast_calls();
        let y = batch_norm(&bn, x.clone());
        assert_eq!(vals(y), vals(bn.forward(x)));
        assert_eq!(crate::fastconv::fast_calls(), before);
    }
}
