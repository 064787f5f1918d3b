//! BatchNorm for burn's CPU (flex) backend: with batch statistics (training), forward and
//! backward as one pass each over the activation, parallel over channels; with running
//! statistics (inference), one pass in place.
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
//! [`batch_norm_relu`] also folds in what follows BatchNorm in a ResNet (the residual add and
//! the ReLU): burn runs those as separate single-threaded passes and keeps the ReLU's input for
//! its backward pass, an extra activation per layer.
//!
//! # Scope
//! f32 activations on `Device::flex().autodiff()` with a trainable (not frozen) BatchNorm, and
//! inference (running statistics) on `Device::flex()`, where the output overwrites a uniquely
//! owned input; every other case (frozen BatchNorm in training, bf16, other devices) runs burn's
//! `BatchNorm::forward` (and add, ReLU) unchanged. `LOFI_FASTCONV=0` turns this module off too.

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

/// What follows the normalisation in the same pass.
#[derive(Debug, Clone, Copy)]
enum Then<'a> {
    /// Nothing: `bn(x)`.
    Nothing,
    /// `relu(bn(x))`.
    Relu,
    /// `relu(bn(x) + r)`, `r` of `x`'s shape (a ResNet block's residual connection).
    AddRelu(&'a [f32]),
}

impl<'a> Then<'a> {
    /// `relu(bn(x) + residual)` with a residual, else `relu(bn(x))` or `bn(x)`.
    fn of(residual: Option<&'a [f32]>, relu: bool) -> Self {
        match (residual, relu) {
            (Some(r), _) => Then::AddRelu(r),
            (None, true) => Then::Relu,
            (None, false) => Then::Nothing,
        }
    }
}

/// The per-channel affine map `x * scale + shift` of the normalisation of `c` channels with
/// `mean`, inverse standard deviation `is`, `gamma` and `beta` (each of length `c`).
fn affine(c: usize, gamma: &[f32], beta: &[f32], mean: &[f32], is: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] * is[ch]).collect();
    let shift = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
    (scale, shift)
}

/// ReLU as burn's flex backend computes it: NaN passes through.
#[inline]
fn relu(v: f32) -> f32 {
    if v.is_nan() || v > 0.0 {
        v
    } else {
        0.0
    }
}

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta`, then `then`, one `P`-block per (frame,
/// channel).
fn normalize(x: &[f32], p: usize, scale: &[f32], shift: &[f32], then: Then) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    normalize_into(&mut y, Some(x), p, scale, shift, then);
    y
}

/// [`normalize`] writing into `y`, reading `x`, or `y` itself (in place) when `x` is `None`.
fn normalize_into(
    y: &mut [f32],
    x: Option<&[f32]>,
    p: usize,
    scale: &[f32],
    shift: &[f32],
    then: Then,
) {
    let c = scale.len();
    y.par_chunks_mut(p).enumerate().for_each(|(i, yb)| {
        let (a, b) = (scale[i % c], shift[i % c]);
        let xb = x.map(|x| &x[i * p..][..p]);
        match then {
            Then::Nothing => map_plane(yb, xb, |v, _| v * a + b),
            Then::Relu => map_plane(yb, xb, |v, _| relu(v * a + b)),
            Then::AddRelu(r) => {
                let rb = &r[i * p..][..p];
                map_plane(yb, xb, |v, j| relu(v * a + b + rb[j]))
            }
        }
    });
}

/// `out[j] = f(input[j], j)`, or `f(out[j], j)` in place without an input.
#[inline]
fn map_plane(out: &mut [f32], input: Option<&[f32]>, f: impl Fn(f32, usize) -> f32) {
    match input {
        Some(xb) => out
            .iter_mut()
            .zip(xb)
            .enumerate()
            .for_each(|(j, (o, &v))| *o = f(v, j)),
        None => out.iter_mut().enumerate().for_each(|(j, o)| *o = f(*o, j)),
    }
}

/// The gradient through the ReLU: `dy` where the output `y` was positive (or NaN, as burn's
/// `relu_backward`), zero elsewhere.
fn relu_mask(y: &[f32], dy: &[f32]) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    let mut g = vec![0.0f32; y.len()];
    g.par_chunks_mut(CHUNK)
        .zip(y.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(gb, (yb, db))| {
            for ((o, &v), &d) in gb.iter_mut().zip(yb).zip(db) {
                *o = if v.is_nan() || v > 0.0 { d } else { 0.0 };
            }
        });
    g
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

/// `(C, P)` of an `[N, C, ...]` shape.
fn channels_planes(shape: &[usize]) -> (usize, usize) {
    (shape[1], shape[2..].iter().product::<usize>())
}

/// Forward on flex tensors: `(y, mean, biased variance)`; `residual` given means
/// `relu(bn(x) + residual)`, `relu` alone `relu(bn(x))`.
fn flex_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f64,
    relu: bool,
    residual: Option<&FlexTensor>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let shape = x.layout().shape().to_vec();
    let (c, p) = channels_planes(&shape);
    let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let residual = residual.map(contiguous);
    let (mean, var) = stats(slice(&x), c, p);
    let is = inv_std(&var, eps);
    let (scale, shift) = affine(c, slice(&gamma), slice(&beta), &mean, &is);
    let then = Then::of(residual.as_ref().map(slice), relu);
    let y = normalize(slice(&x), p, &scale, &shift, then);
    (
        flex_f32(y, &shape),
        flex_f32(mean, &[c]),
        flex_f32(var, &[c]),
    )
}

#[derive(Debug)]
struct BatchNormTrainOp;

/// `relu(bn(x))`: the plain operation's state plus the output (for the ReLU's mask; it is the
/// next layer's input, so keeping it costs no memory).
#[derive(Debug)]
struct BatchNormReluOp;

/// `relu(bn(x) + r)`, the end of a ResNet block; state as [`BatchNormReluOp`].
#[derive(Debug)]
struct BatchNormAddReluOp;

/// Checkpointed input and gamma, the batch statistics, epsilon.
type BnState = (NodeId, NodeId, FlexTensor, FlexTensor, f64);

/// The normalisation's gradients `(dx, dgamma, dbeta)` as flex tensors, given the gradient `g`
/// of its output.
fn bn_grads(
    state: BnState,
    g: &[f32],
    checkpointer: &mut Checkpointer,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (xs, gs, mean, var, eps) = state;
    let x = contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(xs));
    let gamma = contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(gs));
    let shape = x.layout().shape().to_vec();
    let (c, p) = channels_planes(&shape);
    let is = inv_std(slice(&contiguous(&var)), eps);
    let (dx, dgamma, dbeta) = backward(
        slice(&x),
        g,
        p,
        slice(&gamma),
        slice(&contiguous(&mean)),
        &is,
    );
    (
        flex_f32(dx, &shape),
        flex_f32(dgamma, &[c]),
        flex_f32(dbeta, &[c]),
    )
}

/// Registers the three gradients of the normalisation with the parents that track them.
fn register(
    grads: &mut Gradients,
    parents: [Option<NodeId>; 3],
    (dx, dgamma, dbeta): (FlexTensor, FlexTensor, FlexTensor),
) {
    let [node_x, node_gamma, node_beta] = parents;
    for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
        if let Some(id) = node {
            grads.register::<Flex>(id, grad);
        }
    }
}

impl Backward<Flex, 3> for BatchNormTrainOp {
    type State = BnState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let bn = bn_grads(ops.state, slice(&dy), checkpointer);
        register(grads, ops.parents.map(|p| p.map(|n| n.id)), bn);
    }
}

/// The ReLU's and the normalisation's backward passes: the masked output gradient (which is also
/// the residual's gradient) and the normalisation's three gradients.
fn relu_bn_grads(
    dy: FlexTensor,
    (state, y): (BnState, FlexTensor),
    checkpointer: &mut Checkpointer,
) -> (FlexTensor, (FlexTensor, FlexTensor, FlexTensor)) {
    let g = relu_mask(slice(&contiguous(&y)), slice(&contiguous(&dy)));
    drop(dy); // freed before the normalisation's buffers are allocated
    let bn = bn_grads(state, &g, checkpointer);
    (flex_f32(g, y.layout().shape()), bn)
}

impl Backward<Flex, 3> for BatchNormReluOp {
    type State = (BnState, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let dy = grads.consume::<Flex>(&ops.node);
        let (_, bn) = relu_bn_grads(dy, ops.state, checkpointer);
        register(grads, ops.parents.map(|p| p.map(|n| n.id)), bn);
    }
}

impl Backward<Flex, 4> for BatchNormAddReluOp {
    type State = (BnState, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let dy = grads.consume::<Flex>(&ops.node);
        let (g, bn) = relu_bn_grads(dy, ops.state, checkpointer);
        let [node_x, node_gamma, node_beta, node_r] = ops.parents;
        register(
            grads,
            [node_x, node_gamma, node_beta].map(|p| p.map(|n| n.id)),
            bn,
        );
        if let Some(node) = node_r {
            grads.register::<Flex>(node.id, g);
        }
    }
}

type AdTensor = FloatTensor<Autodiff<Flex>>;

/// The autodiff operation: `(y, mean, variance)`, the statistics untracked. `then` as in
/// [`flex_forward`]: `(false, None)` is the plain normalisation.
fn autodiff_forward(
    x: AdTensor,
    gamma: AdTensor,
    beta: AdTensor,
    eps: f64,
    relu: bool,
    residual: Option<AdTensor>,
) -> (AdTensor, AdTensor, AdTensor) {
    let nodes = [x.node(), gamma.node(), beta.node()];
    let forward = || {
        flex_forward(
            x.primitive(),
            gamma.primitive(),
            beta.primitive(),
            eps,
            relu,
            residual.as_ref().map(|r| r.primitive()),
        )
    };
    // One operation kind per case; `$state` makes the node's state from the normalisation's and
    // the output.
    macro_rules! run {
        ($op:expr, $nodes:expr, $state:expr) => {
            match $op
                .prepare::<NoCheckpointing>($nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let (xs, gs) = (prep.checkpoint(&x), prep.checkpoint(&gamma));
                    let (y, mean, var) = forward();
                    let base: BnState = (xs, gs, mean.clone(), var.clone(), eps);
                    let out = prep.finish($state(base, &y), y);
                    (out, AdTensor::new(mean), AdTensor::new(var))
                }
                OpsKind::UnTracked(prep) => {
                    let (y, mean, var) = forward();
                    (prep.finish(y), AdTensor::new(mean), AdTensor::new(var))
                }
            }
        };
    }
    let with_output = |base: BnState, y: &FlexTensor| (base, y.clone());
    match (relu, &residual) {
        (false, None) => run!(BatchNormTrainOp, nodes, |base, _: &FlexTensor| base),
        (true, None) => run!(BatchNormReluOp, nodes, with_output),
        (_, Some(r)) => {
            let [nx, ng, nb] = nodes;
            run!(BatchNormAddReluOp, [nx, ng, nb, r.node()], with_output)
        }
    }
}

/// `bn.forward(x)`, with this module's kernels when `bn` trains on batch statistics on the flex
/// autodiff device in f32 (see the module docs), burn's otherwise. Updates the running
/// statistics exactly as burn's `BatchNorm` does.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    fused(bn, x, false, None)
}

/// `relu(bn.forward(x) + residual)`, or `relu(bn.forward(x))` without a residual: the
/// normalisation, the residual connection and the activation of a ResNet layer in one pass
/// forward and one backward, where [`batch_norm`] has its fast path, and in inference on the
/// flex device (f32, running statistics). burn's operations otherwise. `residual` has `x`'s shape.
pub fn batch_norm_relu<const D: usize>(
    bn: &BatchNorm,
    x: Tensor<D>,
    residual: Option<Tensor<D>>,
) -> Tensor<D> {
    fused(bn, x, true, residual)
}

/// burn's version of [`batch_norm_relu`] / [`batch_norm`].
fn unfused<const D: usize>(
    bn: &BatchNorm,
    x: Tensor<D>,
    relu: bool,
    residual: Option<Tensor<D>>,
) -> Tensor<D> {
    let y = bn.forward(x);
    let y = match residual {
        Some(r) => y + r,
        None => y,
    };
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

fn fused<const D: usize>(
    bn: &BatchNorm,
    x: Tensor<D>,
    relu: bool,
    residual: Option<Tensor<D>>,
) -> Tensor<D> {
    // On burn's LibTorch backend: ATen's batch norm and its backward (`crate::torchops`).
    #[cfg(feature = "tch")]
    if crate::fastconv::enabled() {
        if let Some((y, mean, var)) =
            crate::torchops::try_batch_norm(bn, &x, relu, residual.as_ref())
        {
            update_running_stats(bn, &y.device(), mean, var);
            return y;
        }
    }
    let f32_input = D >= 2
        && crate::fastconv::enabled()
        && x.dtype() == DType::F32
        && residual
            .as_ref()
            .is_none_or(|r| r.dtype() == DType::F32 && r.dims() == x.dims());
    if !f32_input {
        return unfused(bn, x, relu, residual);
    }
    if !x.device().is_autodiff() {
        return inference(bn, x, relu, residual);
    }
    if !bn.training.is_enabled() {
        return unfused(bn, x, relu, residual);
    }
    let prims = (
        x.clone().try_into_primitive::<Autodiff<Flex>>(),
        bn.gamma.val().try_into_primitive::<Autodiff<Flex>>(),
        bn.beta.val().try_into_primitive::<Autodiff<Flex>>(),
        residual
            .clone()
            .map(|r| r.try_into_primitive::<Autodiff<Flex>>())
            .transpose(),
    );
    let (Ok(xp), Ok(gp), Ok(bp), Ok(rp)) = prims else {
        return unfused(bn, x, relu, residual);
    };
    if gp.primitive().dtype() != DType::F32 || bp.primitive().dtype() != DType::F32 {
        return unfused(bn, x, relu, residual);
    }
    crate::fastconv::count_fast_call();
    let (y, mean, var) = autodiff_forward(xp, gp, bp, bn.epsilon, relu, rp);
    let y = Tensor::<D>::from_primitive::<Autodiff<Flex>>(y);
    let mean = Tensor::<1>::from_primitive::<Autodiff<Flex>>(mean);
    let var = Tensor::<1>::from_primitive::<Autodiff<Flex>>(var);
    update_running_stats(bn, &y.device(), mean, var);
    y
}

/// burn's running-statistics update (`BatchNorm::forward_train`) from a batch's mean and biased
/// variance.
fn update_running_stats(
    bn: &BatchNorm,
    device: &burn::tensor::Device,
    mean: Tensor<1>,
    var: Tensor<1>,
) {
    let running_mean = bn.running_mean.value_sync().to_device(device);
    let running_var = bn.running_var.value_sync().to_device(device);
    let running_mean = running_mean
        .mul_scalar(1.0 - bn.momentum)
        .add(mean.detach().mul_scalar(bn.momentum));
    let running_var = running_var
        .mul_scalar(1.0 - bn.momentum)
        .add(var.detach().mul_scalar(bn.momentum));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
}

/// Inference on the plain flex device: the running statistics, the residual and the ReLU in one
/// parallel pass (feature extraction's BatchNorm layers).
fn inference<const D: usize>(
    bn: &BatchNorm,
    x: Tensor<D>,
    relu: bool,
    residual: Option<Tensor<D>>,
) -> Tensor<D> {
    // The flex device first: on another device (a GPU) reading the parameters to the host here
    // would cost four transfers per layer for nothing.
    let prims = (
        x.clone().try_into_primitive::<Flex>(),
        residual
            .clone()
            .map(|r| r.try_into_primitive::<Flex>())
            .transpose(),
    );
    let (Ok(xp), Ok(rp)) = prims else {
        return unfused(bn, x, relu, residual);
    };
    let vec = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().ok();
    let params = (
        vec(bn.gamma.val()),
        vec(bn.beta.val()),
        vec(bn.running_mean.value()),
        vec(bn.running_var.value()),
    );
    let (Some(gamma), Some(beta), Some(mean), Some(var)) = params else {
        return unfused(bn, x, relu, residual);
    };
    // The caller's handle goes, so a freshly computed input (a convolution's output) is owned
    // here alone and is normalised in place: no second activation-sized buffer.
    drop(x);
    crate::fastconv::count_fast_call();
    let shape = xp.layout().shape().to_vec();
    let (c, p) = channels_planes(&shape);
    let is = inv_std(&var, bn.epsilon);
    let (scale, shift) = affine(c, &gamma, &beta, &mean, &is);
    let rp = rp.as_ref().map(contiguous);
    let then = Then::of(rp.as_ref().map(slice), relu);
    let mut xp = if xp.layout().contiguous_offsets().is_some() {
        xp
    } else {
        xp.to_contiguous()
    };
    let in_place = xp.layout().start_offset() == 0;
    if let (true, Some(y)) = (in_place, xp.try_storage_mut::<f32>()) {
        let n = shape.iter().product::<usize>();
        normalize_into(&mut y[..n], None, p, &scale, &shift, then);
        return Tensor::from_primitive::<Flex>(xp);
    }
    let y = normalize(slice(&xp), p, &scale, &shift, then);
    Tensor::from_primitive::<Flex>(flex_f32(y, &shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{lcg_vec, max_rel_diff};
    use burn::module::Module;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, TensorData};

    fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap_or_default()
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

    /// `relu(bn(x) + r)` and `relu(bn(x))` against burn's three operations: output, the
    /// gradients of the input, gamma, beta and the residual, and the running statistics.
    #[test]
    fn fused_relu_and_residual_match_burn() {
        let device = Device::flex().autodiff();
        for (i, shape) in [[3usize, 4, 5, 6], [2, 3, 1, 7]].into_iter().enumerate() {
            let c = shape[1];
            let n: usize = shape.iter().product();
            // Centred near zero so the ReLU cuts about half of the values.
            let xv: Vec<f32> = lcg_vec(n, 80 + i as u64).iter().map(|v| 2.0 * v).collect();
            let resv = lcg_vec(n, 90 + i as u64);
            let wv = lcg_vec(n, 100 + i as u64);
            for with_residual in [false, true] {
                let run = |fast: bool| {
                    let bn = BatchNormConfig::new(c).init(&device);
                    let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), shape), &device)
                        .require_grad();
                    let res = Tensor::<4>::from_data(TensorData::new(resv.clone(), shape), &device)
                        .require_grad();
                    let w = Tensor::<4>::from_data(TensorData::new(wv.clone(), shape), &device);
                    let r = with_residual.then(|| res.clone());
                    let before = crate::fastconv::fast_calls();
                    let y = if fast {
                        batch_norm_relu(&bn, x.clone(), r)
                    } else {
                        unfused(&bn, x.clone(), true, r)
                    };
                    assert_eq!(crate::fastconv::fast_calls() - before, usize::from(fast));
                    let grads = (y.clone() * w).sum().backward();
                    let gres = res.grad(&grads).map(vals).unwrap_or_default();
                    (
                        vals(y),
                        vals(x.grad(&grads).expect("x grad")),
                        vals(bn.gamma.val().grad(&grads).expect("gamma grad")),
                        vals(bn.beta.val().grad(&grads).expect("beta grad")),
                        gres,
                        vals(bn.running_var.value()),
                    )
                };
                let want = run(false);
                let got = run(true);
                assert!(want.0.contains(&0.0), "the ReLU cut something");
                assert_eq!(got.4.is_empty(), !with_residual);
                for (name, a, b) in [
                    ("output", &got.0, &want.0),
                    ("input grad", &got.1, &want.1),
                    ("gamma grad", &got.2, &want.2),
                    ("beta grad", &got.3, &want.3),
                    ("residual grad", &got.4, &want.4),
                    ("running var", &got.5, &want.5),
                ] {
                    assert!(
                        max_rel_diff(a, b) < 1e-5,
                        "{name}, shape {shape:?}, residual {with_residual}: {a:?} vs {b:?}"
                    );
                }
            }
        }
    }

    /// Inference on the plain flex device (running statistics) in one pass, against burn's.
    #[test]
    fn inference_matches_burn() {
        let device = Device::flex();
        let shape = [2, 3, 2, 2];
        let mut bn = BatchNormConfig::new(3).init(&device);
        let set = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [3]), &device);
        bn.running_mean.update(set(vec![0.5, -1.0, 0.0]));
        bn.running_var.update(set(vec![2.0, 0.25, 1.0]));
        bn.gamma = bn.gamma.map(|_| set(vec![1.5, -0.5, 1.0]));
        let x = Tensor::<4>::from_data(TensorData::new(lcg_vec(24, 1), shape), &device);
        let r = Tensor::<4>::from_data(TensorData::new(lcg_vec(24, 2), shape), &device);
        for (relu, res) in [(false, None), (true, None), (true, Some(r))] {
            let want = vals(unfused(&bn, x.clone(), relu, res.clone()));
            // A shared input (normalised into a new buffer), then one owned here alone (in
            // place).
            for owned in [false, true] {
                let input = if owned {
                    Tensor::<4>::from_data(x.to_data(), &device)
                } else {
                    x.clone()
                };
                let before = crate::fastconv::fast_calls();
                let got = vals(fused(&bn, input, relu, res.clone()));
                assert_eq!(crate::fastconv::fast_calls(), before + 1);
                assert!(max_rel_diff(&got, &want) < 1e-6, "{got:?} vs {want:?}");
            }
            assert_eq!(
                vals(x.clone()),
                lcg_vec(24, 1),
                "the shared input is untouched"
            );
        }
    }

    #[test]
    fn frozen_batch_norm_uses_burn() {
        let device = Device::flex().autodiff();
        let bn = BatchNormConfig::new(3).init(&device).freeze();
        let x = Tensor::<4>::from_data(TensorData::new(lcg_vec(24, 1), [2, 3, 2, 2]), &device);
        let before = crate::fastconv::fast_calls();
        let y = batch_norm(&bn, x.clone());
        assert_eq!(vals(y), vals(bn.forward(x)));
        assert_eq!(crate::fastconv::fast_calls(), before);
    }
}
