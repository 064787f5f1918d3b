//! Bridge operations for burn's LibTorch backend (`--features tch`): the training convolution
//! and BatchNorm (+ residual + ReLU) as single ATen operations, forward and backward, at the same
//! dispatch points as the flex kernels ([`crate::fastconv::conv2d`],
//! [`crate::fastbn::batch_norm`] / [`crate::fastbn::batch_norm_relu`]).
//!
//! # Why
//! burn-tch 0.22.1 runs every operation through ATen but derives the backward passes itself:
//! burn's autodiff is used (`ad_enabled() = false`), and burn-tch overrides neither
//! `conv2d_weight_backward` nor the BatchNorm training operations. So the convolution's weight
//! gradient becomes a convolution of the input with batch and channels swapped, using the output
//! gradient as an `H_out x W_out` kernel (a skinny problem cuDNN was never tuned for), and
//! BatchNorm becomes about ten element-wise and reduction passes with two layout copies. PyTorch
//! runs the same layers as one cuDNN backward-data, one backward-filter and one or two
//! BatchNorm kernels.
//!
//! # How: an autograd island per operation
//! tch 0.22 wraps neither `convolution_backward` nor `native_batch_norm_backward` with the
//! saved-tensor arguments they need, so each bridge runs its forward pass on fresh libtorch leaves
//! (`detach()` + `requires_grad`), with libtorch's autograd recording just this operation. burn's
//! autodiff sees one node whose state is that small graph; its backward pass multiplies the
//! recorded output by the incoming gradient, sums, and lets libtorch's `run_backward` produce the
//! gradients of the leaves burn asks for. libtorch then calls the very kernels PyTorch's own
//! training step uses (`convolution_backward`: cuDNN backward-data and backward-filter on a GPU;
//! `native_batch_norm_backward`), and the graph, with what it saved, is freed after that backward
//! pass. Memory is what burn's own operation keeps: the inputs the kernels need.
//!
//! BatchNorm returns the batch statistics (mean and biased variance, from ATen's saved mean and
//! inverse standard deviation), so lofi's running-statistics update (burn's) stays as it is.
//!
//! # Scope and switch
//! Training (and untracked) convolutions with one group, dilation 1 and symmetric padding, in f32
//! or bf16; BatchNorm with batch statistics when `x`, `gamma`, `beta` (and the residual) share a
//! dtype (so in bf16 mixed precision, where BatchNorm keeps f32 parameters on bf16 activations,
//! the convolutions are bridged and BatchNorm is not). Anything else, or `LOFI_TORCH_BRIDGE=0` in
//! the environment (read once, see
//! [`enabled`]), runs burn's generic operations on burn-tch, so one binary can measure both.
//! R(2+1)D's convolutions are 3-D (`conv3d`) and do not go through this bridge.
// burn-tch is deprecated upstream (absent from burn 0.23); lofi pins burn 0.22.x for it (README).
#![allow(deprecated)]

use burn::nn::BatchNorm;
use burn::tensor::{DType, Tensor};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_autodiff::Autodiff;
use burn_backend::tensor::FloatTensor;
use burn_tch::{LibTorch, TchTensor};
use std::sync::{Arc, Mutex};

type AdTensor = FloatTensor<Autodiff<LibTorch>>;

/// Whether the bridge operations are used: yes unless the environment variable
/// `LOFI_TORCH_BRIDGE` is `0` when first asked (then burn's generic operations run on burn-tch).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("LOFI_TORCH_BRIDGE").map_or(true, |v| v.trim() != "0"))
}

#[cfg(test)]
thread_local! {
    static BRIDGE_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count_bridge_call() {
    #[cfg(test)]
    BRIDGE_CALLS.with(|c| c.set(c.get() + 1));
}

/// Bridge calls so far on this thread (tests).
#[cfg(test)]
pub(crate) fn bridge_calls() -> usize {
    BRIDGE_CALLS.with(|c| c.get())
}

/// One libtorch forward pass with its own recorded graph: the output (still attached to the
/// graph) and the leaves it was computed from. Taken (and so freed) by the backward pass.
///
/// `guards` are burn's handles on the tensors the graph saved (a convolution's input and
/// weight, BatchNorm's input and scale, a ReLU's output). A leaf shares its storage and
/// version counter with burn's tensor, and burn-tch writes in place into a tensor whose storage
/// it believes it holds alone; an extra handle makes the storage shared, so burn copies instead
/// and the saved values stay intact until the backward pass.
struct Island {
    output: tch::Tensor,
    leaves: Vec<tch::Tensor>,
    _guards: Vec<TchTensor>,
}

/// The backward state: the island, shared so that the state can be `Clone` as burn requires;
/// the single backward pass takes it out.
#[derive(Clone)]
struct IslandState(Arc<Mutex<Option<Island>>>);

impl std::fmt::Debug for IslandState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IslandState")
    }
}

/// The burn autodiff node of an island with `N` parents (the leaves, in order).
#[derive(Debug)]
struct IslandOp<const N: usize>;

impl<const N: usize> Backward<LibTorch, N> for IslandOp<N> {
    type State = IslandState;

    fn backward(
        self,
        ops: Ops<IslandState, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = grads.consume::<LibTorch>(&ops.node).tensor;
        let island = ops.state.0.lock().ok().and_then(|mut s| s.take());
        let Some(island) = island else {
            return;
        };
        let wanted: Vec<(usize, burn_autodiff::NodeId)> = ops
            .parents
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|n| (i, n.id)))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let inputs: Vec<&tch::Tensor> = wanted.iter().map(|(i, _)| &island.leaves[*i]).collect();
        // d/d(leaves) of sum(output * dy) is the vector-Jacobian product burn asks for.
        let seed = tch::with_grad(|| (&island.output * &dy).sum(island.output.kind()));
        let out = tch::Tensor::run_backward(&[seed], &inputs, false, false);
        for ((_, id), g) in wanted.into_iter().zip(out) {
            grads.register::<LibTorch>(id, TchTensor::new(g));
        }
    }
}

/// A fresh leaf that libtorch records gradients for (sharing `t`'s storage).
fn leaf(t: &TchTensor) -> tch::Tensor {
    t.tensor.detach().set_requires_grad(true)
}

/// Runs `forward` on the leaves of `inputs` as one burn autodiff node with `N` parents: inside an
/// island when burn tracks the node, without any libtorch graph otherwise. `forward` returns the
/// output and any extra untracked tensors (BatchNorm's statistics). `saved` lists the inputs the
/// recorded operations save for their backward pass, `output_saved` whether the output is saved
/// too (see [`Island`]).
fn run_island<const N: usize>(
    inputs: [&AdTensor; N],
    saved: &[usize],
    output_saved: bool,
    forward: impl Fn(&[tch::Tensor]) -> (tch::Tensor, Vec<tch::Tensor>),
) -> (AdTensor, Vec<tch::Tensor>) {
    let nodes = inputs.map(|t| t.node());
    match IslandOp::<N>
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let leaves: Vec<tch::Tensor> = inputs.iter().map(|t| leaf(t.primitive())).collect();
            let (output, extra) = tch::with_grad(|| forward(&leaves));
            let value = TchTensor::new(output.detach());
            let mut guards: Vec<TchTensor> = saved
                .iter()
                .map(|&i| inputs[i].primitive().clone())
                .collect();
            if output_saved {
                guards.push(value.clone());
            }
            let island = Island {
                output,
                leaves,
                _guards: guards,
            };
            let state = IslandState(Arc::new(Mutex::new(Some(island))));
            (prep.finish(state, value), extra)
        }
        OpsKind::UnTracked(prep) => {
            let plain: Vec<tch::Tensor> = inputs
                .iter()
                .map(|t| t.primitive().tensor.shallow_clone())
                .collect();
            let (output, extra) = tch::no_grad(|| forward(&plain));
            (prep.finish(TchTensor::new(output)), extra)
        }
    }
}

fn is_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::BF16 | DType::F16)
}

/// `conv2d(x, weight, bias)` (dilation 1, one group) through ATen when all are libtorch autodiff
/// tensors of one float dtype and the bridge is [`enabled`]; `None` (nothing consumed but clones)
/// otherwise, for the caller's other paths.
pub(crate) fn try_conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Option<Tensor<4>> {
    if !enabled() || !x.device().is_autodiff() {
        return None;
    }
    let dtype = x.dtype();
    if !is_float(dtype) || weight.dtype() != dtype || bias.is_some_and(|b| b.dtype() != dtype) {
        return None;
    }
    let xp = x.clone().try_into_primitive::<Autodiff<LibTorch>>().ok()?;
    let wp = weight
        .clone()
        .try_into_primitive::<Autodiff<LibTorch>>()
        .ok()?;
    let stride = [stride[0] as i64, stride[1] as i64];
    let padding = [padding[0] as i64, padding[1] as i64];
    count_bridge_call();
    let y = match bias {
        None => {
            run_island([&xp, &wp], &[0, 1], false, |l| {
                (
                    l[0].conv2d::<&tch::Tensor>(&l[1], None, stride, padding, [1, 1], 1),
                    Vec::new(),
                )
            })
            .0
        }
        Some(b) => {
            let bp = b.clone().try_into_primitive::<Autodiff<LibTorch>>().ok()?;
            run_island([&xp, &wp, &bp], &[0, 1], false, |l| {
                (
                    l[0].conv2d(&l[1], Some(&l[2]), stride, padding, [1, 1], 1),
                    Vec::new(),
                )
            })
            .0
        }
    };
    Some(Tensor::from_primitive::<Autodiff<LibTorch>>(y))
}

/// Training BatchNorm on batch statistics (then `+ residual`, then ReLU when asked) as one ATen
/// `native_batch_norm` with its backward, when `bn` trains, `x` is a libtorch autodiff tensor and
/// the dtypes agree; returns the output and the batch mean and biased variance (untracked), or
/// `None` for the caller's other paths.
pub(crate) fn try_batch_norm<const D: usize>(
    bn: &BatchNorm,
    x: &Tensor<D>,
    relu: bool,
    residual: Option<&Tensor<D>>,
) -> Option<(Tensor<D>, Tensor<1>, Tensor<1>)> {
    if !enabled() || D < 2 || !x.device().is_autodiff() || !bn.training.is_enabled() {
        return None;
    }
    let dtype = x.dtype();
    let gamma = bn.gamma.val();
    let beta = bn.beta.val();
    if !is_float(dtype)
        || gamma.dtype() != dtype
        || beta.dtype() != dtype
        || residual.is_some_and(|r| r.dtype() != dtype || r.dims() != x.dims())
    {
        return None;
    }
    let xp = x.clone().try_into_primitive::<Autodiff<LibTorch>>().ok()?;
    let gp = gamma.try_into_primitive::<Autodiff<LibTorch>>().ok()?;
    let bp = beta.try_into_primitive::<Autodiff<LibTorch>>().ok()?;
    let eps = bn.epsilon;
    count_bridge_call();
    // Output `relu?(bn(x) + r?)`, plus the batch mean and biased variance.
    let forward = |l: &[tch::Tensor]| {
        let (y, mean, invstd) = l[0].native_batch_norm(
            Some(&l[1]),
            Some(&l[2]),
            None::<&tch::Tensor>,
            None,
            true,
            0.0,
            eps,
        );
        let y = match l.get(3) {
            Some(r) => y + r,
            None => y,
        };
        let y = if relu { y.relu() } else { y };
        // ATen saves 1/sqrt(var + eps); burn's running update wants the biased variance.
        let var = tch::no_grad(|| invstd.detach().pow_tensor_scalar(-2.0) - eps);
        (y, vec![mean.detach(), var])
    };
    let (y, stats) = match residual {
        None => run_island([&xp, &gp, &bp], &[0, 1], relu, forward),
        Some(r) => {
            let rp = r.clone().try_into_primitive::<Autodiff<LibTorch>>().ok()?;
            run_island([&xp, &gp, &bp, &rp], &[0, 1], relu, forward)
        }
    };
    let mut stats = stats.into_iter();
    let (mean, var) = (stats.next()?, stats.next()?);
    // Statistics in the parameters' dtype, as burn's own operation returns them; copies, since
    // ATen's saved mean shares their storage and burn-tch may update them in place.
    let stat = |t: tch::Tensor| {
        let t = t.to_kind(gp.primitive().tensor.kind()).copy();
        Tensor::<1>::from_primitive::<Autodiff<LibTorch>>(AdTensor::new(TchTensor::new(t)))
    };
    Some((
        Tensor::<D>::from_primitive::<Autodiff<LibTorch>>(y),
        stat(mean),
        stat(var),
    ))
}

#[cfg(test)]
mod tests {
    //! Each bridge against burn's generic operations on the same libtorch autodiff device
    //! (burn-tch's conv2d and its derived backward; `BatchNorm::forward` + add + ReLU), forward,
    //! every gradient and the running statistics. Tolerance 1e-5 relative to the largest value:
    //! both sides are f32 ATen kernels summing in different orders. One BatchNorm channel has a
    //! variance well under `epsilon`, so a wrong epsilon shows; the kernels are not square in
    //! their channels, so a transposed weight gradient shows.
    #![allow(deprecated)] // burn-tch's device constructors are deprecated upstream
    use super::*;
    use crate::test_util::{lcg_vec, max_rel_diff};
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, TensorData};

    const TOL: f32 = 1e-5;

    fn device() -> Device {
        Device::libtorch().autodiff()
    }

    fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(v, shape), &device())
    }

    fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap_or_default()
    }

    fn close(a: Vec<f32>, b: Vec<f32>, what: &str) {
        let d = max_rel_diff(&a, &b);
        assert!(d < TOL, "{what}: bridge and burn differ by {d:e}");
    }

    fn conv_case(bias: bool, stride: [usize; 2], padding: [usize; 2], k: usize) {
        let (n, ci, h, w, co) = (2, 3, 9, 8, 5);
        let x = tensor(lcg_vec(n * ci * h * w, 1), [n, ci, h, w]).require_grad();
        let wt = tensor(lcg_vec(co * ci * k * k, 2), [co, ci, k, k]).require_grad();
        let b = bias.then(|| tensor(lcg_vec(co, 3), [co]).require_grad());
        let before = bridge_calls();
        let y = crate::fastconv::conv2d(x.clone(), wt.clone(), b.clone(), stride, padding);
        assert_eq!(bridge_calls(), before + 1, "the bridge ran");
        let r = burn::tensor::module::conv2d(
            x.clone(),
            wt.clone(),
            b.clone(),
            burn::tensor::ops::ConvOptions::new(stride, padding, [1, 1], 1),
        );
        assert_eq!(
            bridge_calls(),
            before + 1,
            "burn's conv2d is not the bridge"
        );
        let seed = tensor(lcg_vec(vals(r.clone()).len(), 4), r.dims());
        close(vals(y.clone()), vals(r.clone()), "conv forward");
        let gy = (y * seed.clone()).sum().backward();
        let gr = (r * seed).sum().backward();
        let grad = |t: &Tensor<4>, g| vals(t.grad(g).expect("grad"));
        close(grad(&x, &gy), grad(&x, &gr), "conv input gradient");
        close(grad(&wt, &gy), grad(&wt, &gr), "conv weight gradient");
        if let Some(b) = &b {
            let g = |g| vals(b.grad(g).expect("bias grad"));
            close(g(&gy), g(&gr), "conv bias gradient");
        }
    }

    #[test]
    fn conv_matches_burn_with_bias_strided_and_padded() {
        conv_case(true, [2, 1], [1, 1], 3);
    }

    #[test]
    fn conv_matches_burn_without_bias() {
        conv_case(false, [1, 1], [0, 0], 1);
        conv_case(false, [1, 2], [2, 1], 3);
    }

    #[test]
    fn untracked_conv_matches_burn() {
        let x = tensor(lcg_vec(2 * 3 * 6 * 6, 5), [2, 3, 6, 6]);
        let w = tensor(lcg_vec(4 * 3 * 9, 6), [4, 3, 3, 3]);
        let y = crate::fastconv::conv2d(x.clone(), w.clone(), None, [1, 1], [1, 1]);
        let r = burn::tensor::module::conv2d(
            x,
            w,
            None,
            burn::tensor::ops::ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        );
        close(vals(y), vals(r), "untracked conv");
    }

    /// `[N, C, H, W]` with channel `c` scaled by `scale[c]` and shifted by `c`.
    fn bn_input(scale: &[f32]) -> Vec<f32> {
        let (n, c, p) = (3, scale.len(), 20);
        let base = lcg_vec(n * c * p, 7);
        (0..n * c * p)
            .map(|i| base[i] * scale[(i / p) % c] + ((i / p) % c) as f32)
            .collect()
    }

    fn bn_case(relu: bool, residual: bool) {
        let scale = [1.0f32, 0.5, 2e-3, 3.0];
        let c = scale.len();
        let shape = [3, c, 4, 5];
        // Two separate layers with the same values (a clone would share the running state).
        let layer = || {
            let mut bn = BatchNormConfig::new(c).init(&device());
            let v = |seed, shift: f32| lcg_vec(c, seed).iter().map(|g| g + shift).collect();
            bn.gamma = burn::module::Param::from_tensor(tensor(v(10, 1.0), [c]));
            bn.beta = burn::module::Param::from_tensor(tensor(v(11, 0.0), [c]));
            bn
        };
        let (bn_a, bn_b) = (layer(), layer());
        let x = tensor(bn_input(&scale), shape).require_grad();
        let res = residual.then(|| tensor(lcg_vec(3 * c * 20, 8), shape).require_grad());
        let before = bridge_calls();
        let y = if relu {
            crate::fastbn::batch_norm_relu(&bn_a, x.clone(), res.clone())
        } else {
            crate::fastbn::batch_norm(&bn_a, x.clone())
        };
        assert_eq!(bridge_calls(), before + 1, "the bridge ran");
        let r = bn_b.forward(x.clone());
        let r = match &res {
            Some(t) => r + t.clone(),
            None => r,
        };
        let r = if relu {
            burn::tensor::activation::relu(r)
        } else {
            r
        };
        close(vals(y.clone()), vals(r.clone()), "batch norm forward");
        let seed = tensor(lcg_vec(3 * c * 20, 9), shape);
        let gy = (y * seed.clone()).sum().backward();
        let gr = (r * seed).sum().backward();
        close(
            vals(x.grad(&gy).expect("dx")),
            vals(x.grad(&gr).expect("dx")),
            "batch norm input gradient",
        );
        let g1 = |p: &burn::module::Param<Tensor<1>>, g| vals(p.val().grad(g).expect("grad"));
        close(g1(&bn_a.gamma, &gy), g1(&bn_b.gamma, &gr), "gamma gradient");
        close(g1(&bn_a.beta, &gy), g1(&bn_b.beta, &gr), "beta gradient");
        if let Some(t) = &res {
            close(
                vals(t.grad(&gy).expect("dr")),
                vals(t.grad(&gr).expect("dr")),
                "residual gradient",
            );
        }
        close(
            vals(bn_a.running_mean.value()),
            vals(bn_b.running_mean.value()),
            "running mean",
        );
        close(
            vals(bn_a.running_var.value()),
            vals(bn_b.running_var.value()),
            "running variance",
        );
    }

    #[test]
    fn batch_norm_matches_burn() {
        bn_case(false, false);
    }

    #[test]
    fn batch_norm_relu_matches_burn() {
        bn_case(true, false);
    }

    #[test]
    fn batch_norm_residual_relu_matches_burn() {
        bn_case(true, true);
    }
}
