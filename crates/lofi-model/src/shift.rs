//! The temporal shift module (TSM, Lin et al. 2019): moves a fraction of the channels one step
//! forward and one step backward along time, giving a 2-D ResNet temporal reasoning at zero cost.
//!
//! Exists as its own function because it is the one piece of the encoder that burn does not
//! provide, and it is checked on its own by finite differences.
//!
//! # Layout
//! Frames are folded into the batch dimension as `[N * T, C, H, W]`, with the `T` frames of one
//! video contiguous (video-major, frame-minor), exactly like the TSM reference implementation. With
//! `fold = C / fold_div`:
//! - channels `[0, fold)` of frame `t` take the values of frame `t + 1` (the last frame gets zeros),
//! - channels `[fold, 2 * fold)` of frame `t` take the values of frame `t - 1` (the first gets zeros),
//! - the other channels are unchanged.
//!
//! # Speed
//! On the flex (CPU) backend in f32, with or without autodiff, the shift is one custom operation:
//! one parallel copy forward, the opposite shift of the gradient backward (`LOFI_FASTCONV=0`
//! turns it off with the other fast kernels, see [`crate::fastconv::enabled`]). burn's generic
//! version below (three slices, two zero blocks and two concatenations, each a serial copy, and
//! their backward passes) stays for every other backend and dtype; the tests compare the two.

use burn::tensor::{DType, Tensor};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_autodiff::Autodiff;
use burn_backend::tensor::FloatTensor;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::fastconv::{contiguous, flex_f32, slice};

/// Shifts channels along time; `x` is `[N * T, C, H, W]` with `T = n_segment` frames per video.
///
/// `fold_div` = 8 gives the published 1/8 forward + 1/8 backward split. When `C < fold_div` (tiny
/// test networks) the shift moves nothing, like the reference code (`fold = C // fold_div = 0`).
///
/// # Panics
/// If the first dimension is not a multiple of `n_segment` (a caller bug: the encoder checks its
/// input before folding frames into the batch).
pub fn temporal_shift(x: Tensor<4>, n_segment: usize, fold_div: usize) -> Tensor<4> {
    let [nt, c, h, w] = x.dims();
    assert!(
        n_segment > 0 && nt % n_segment == 0,
        "temporal_shift: batch {nt} is not a multiple of n_segment {n_segment}"
    );
    let fold = c.checked_div(fold_div).unwrap_or(0);
    if fold == 0 {
        return x;
    }
    if crate::fastconv::enabled() && x.dtype() == DType::F32 {
        let geom = Geom::new([nt, c, h, w], n_segment, fold);
        if let Ok(p) = x.clone().try_into_primitive::<Autodiff<Flex>>() {
            crate::fastconv::count_fast_call();
            return Tensor::from_primitive::<Autodiff<Flex>>(autodiff_shift(geom, p));
        }
        if let Ok(p) = x.clone().try_into_primitive::<Flex>() {
            crate::fastconv::count_fast_call();
            return Tensor::from_primitive::<Flex>(shift_flex(&geom, &p, Direction::Forward));
        }
    }
    shift_generic(x, n_segment, fold)
}

/// The shift out of burn's own tensor operations (any backend, any dtype); `fold > 0`.
fn shift_generic(x: Tensor<4>, n_segment: usize, fold: usize) -> Tensor<4> {
    let [nt, c, h, w] = x.dims();
    let n = nt / n_segment;
    let t = n_segment;
    let device = x.device();
    let x5: Tensor<5> = x.reshape([n, t, c, h, w]);
    // Zeros in the input's dtype (bf16 under mixed precision), on its device.
    let dtype = x5.dtype();
    let zeros = |ch: usize| Tensor::<5>::zeros([n, 1, ch, h, w], &device).cast(dtype);
    // Backward-looking part: frame t reads frame t + 1.
    let left = if t > 1 {
        Tensor::cat(
            vec![x5.clone().slice([0..n, 1..t, 0..fold]), zeros(fold)],
            1,
        )
    } else {
        zeros(fold)
    };
    // Forward-looking part: frame t reads frame t - 1.
    let right = if t > 1 {
        Tensor::cat(
            vec![
                zeros(fold),
                x5.clone().slice([0..n, 0..t - 1, fold..2 * fold]),
            ],
            1,
        )
    } else {
        zeros(fold)
    };
    let rest = x5.slice([0..n, 0..t, 2 * fold..c]);
    Tensor::cat(vec![left, right, rest], 2).reshape([nt, c, h, w])
}

/// Shape of one shift: `nt` frames of `c` planes of `p` values, `t` frames per video.
#[derive(Debug, Clone, Copy)]
struct Geom {
    nt: usize,
    c: usize,
    p: usize,
    t: usize,
    fold: usize,
    dims: [usize; 4],
}

impl Geom {
    fn new(dims: [usize; 4], t: usize, fold: usize) -> Self {
        let [nt, c, h, w] = dims;
        Self {
            nt,
            c,
            p: h * w,
            t,
            fold,
            dims,
        }
    }
}

/// The forward shift, or its adjoint (which moves the gradient back where it came from).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Direction {
    Forward,
    Adjoint,
}

/// One pass: output frame `f`, channel `ch` copies the plane of the frame it reads (forward:
/// channels `[0, fold)` read `t + 1`, `[fold, 2 fold)` read `t - 1`; the adjoint swaps the two),
/// or zeros past the video's ends. Parallel over frames.
fn shift_planes(g: &Geom, src: &[f32], dir: Direction) -> Vec<f32> {
    let frame = g.c * g.p;
    let mut out = vec![0.0f32; g.nt * frame];
    out.par_chunks_mut(frame.max(1))
        .enumerate()
        .for_each(|(f, dst)| {
            let t = f % g.t;
            // Frame read by the first and the second shifted group, if inside the video.
            let next = (t + 1 < g.t).then_some(f + 1);
            let prev = (t > 0).then(|| f - 1);
            let (first, second) = match dir {
                Direction::Forward => (next, prev),
                Direction::Adjoint => (prev, next),
            };
            for ch in 0..g.c {
                let from = if ch < g.fold {
                    first
                } else if ch < 2 * g.fold {
                    second
                } else {
                    Some(f)
                };
                if let Some(sf) = from {
                    dst[ch * g.p..][..g.p].copy_from_slice(&src[sf * frame + ch * g.p..][..g.p]);
                }
            }
        });
    out
}

fn shift_flex(g: &Geom, x: &FlexTensor, dir: Direction) -> FlexTensor {
    let x = contiguous(x);
    flex_f32(shift_planes(g, slice(&x), dir), &g.dims)
}

#[derive(Debug)]
struct ShiftOp;

impl Backward<Flex, 1> for ShiftOp {
    type State = Geom;

    fn backward(self, ops: Ops<Geom, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, shift_flex(&ops.state, &dy, Direction::Adjoint));
        }
    }
}

fn autodiff_shift(g: Geom, x: FloatTensor<Autodiff<Flex>>) -> FloatTensor<Autodiff<Flex>> {
    match ShiftOp
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(g, shift_flex(&g, x.primitive(), Direction::Forward)),
        OpsKind::UnTracked(prep) => prep.finish(shift_flex(&g, x.primitive(), Direction::Forward)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, fd_check, lcg_vec};
    use burn::tensor::{Device, TensorData};

    #[test]
    fn shift_moves_the_right_channels() {
        let device = Device::flex();
        // N = 1, T = 3, C = 8, 1x1 pixels: value = 10 * t + c.
        let vals: Vec<f32> = (0..3)
            .flat_map(|t| (0..8).map(move |c| (10 * t + c) as f32))
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(vals, [3, 8, 1, 1]), &device);
        let y: Vec<f32> = temporal_shift(x, 3, 4)
            .into_data()
            .try_to_vec()
            .unwrap_or_default();
        // fold = 2: channels 0,1 from t+1; channels 2,3 from t-1; 4..8 unchanged.
        let expect = |t: usize, c: usize| -> f32 {
            if c < 2 {
                if t + 1 < 3 {
                    (10 * (t + 1) + c) as f32
                } else {
                    0.0
                }
            } else if c < 4 {
                if t > 0 {
                    (10 * (t - 1) + c) as f32
                } else {
                    0.0
                }
            } else {
                (10 * t + c) as f32
            }
        };
        let want: Vec<f32> = (0..3)
            .flat_map(|t| (0..8).map(move |c| expect(t, c)))
            .collect();
        assert_close(&y, &want, 0.0, "temporal shift");
    }

    #[test]
    fn shift_single_frame_zeroes_shifted_channels_and_keeps_videos_apart() {
        let device = Device::flex();
        let x = Tensor::<4>::ones([2, 16, 2, 2], &device);
        let y: Vec<f32> = temporal_shift(x, 1, 8)
            .into_data()
            .try_to_vec()
            .unwrap_or_default();
        for (i, v) in y.iter().enumerate() {
            let c = (i / 4) % 16;
            assert_eq!(*v, if c < 4 { 0.0 } else { 1.0 });
        }
    }

    /// The fast operation (flex, f32) against the generic one, forward and gradient, with and
    /// without autodiff, on several videos, frame counts and plane sizes.
    #[test]
    fn fast_shift_matches_the_generic_one() {
        for (i, (shape, t, div)) in [
            ([6usize, 16, 3, 2], 3usize, 8usize),
            ([4, 8, 1, 1], 1, 4),
            ([10, 24, 2, 5], 5, 8),
        ]
        .into_iter()
        .enumerate()
        {
            let n: usize = shape.iter().product();
            let fold = shape[1] / div;
            let xv = lcg_vec(n, 10 + i as u64);
            let rv = lcg_vec(n, 20 + i as u64);
            let device = Device::flex().autodiff();
            let grad = |fast: bool| {
                let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), shape), &device)
                    .require_grad();
                let r = Tensor::<4>::from_data(TensorData::new(rv.clone(), shape), &device);
                let before = crate::fastconv::fast_calls();
                let y = if fast {
                    temporal_shift(x.clone(), t, div)
                } else {
                    shift_generic(x.clone(), t, fold)
                };
                assert_eq!(crate::fastconv::fast_calls() - before, usize::from(fast));
                let g = (y.clone() * r).sum().backward();
                let gx: Vec<f32> = x
                    .grad(&g)
                    .expect("grad")
                    .into_data()
                    .try_to_vec()
                    .expect("f32");
                (y.into_data().try_to_vec::<f32>().expect("f32"), gx)
            };
            let (want_y, want_g) = grad(false);
            let (got_y, got_g) = grad(true);
            assert_close(&got_y, &want_y, 0.0, "shifted values");
            assert_close(&got_g, &want_g, 0.0, "gradient");
            // Inference (no autodiff).
            let plain = Device::flex();
            let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), shape), &plain);
            let y: Vec<f32> = temporal_shift(x, t, div)
                .into_data()
                .try_to_vec()
                .expect("f32");
            assert_close(&y, &want_y, 0.0, "inference");
        }
    }

    #[test]
    fn shift_gradient_matches_finite_differences() {
        let device = Device::flex();
        let shape = [4, 8, 2, 3]; // 2 videos x 2 frames
        let x0 = lcg_vec(shape.iter().product(), 1);
        let w = lcg_vec(shape.iter().product(), 2);
        let f = |x: Tensor<4>| {
            let wt = Tensor::<4>::from_data(TensorData::new(w.clone(), shape), &x.device());
            (temporal_shift(x, 2, 8) * wt).sum()
        };
        fd_check(&x0, shape, &device, f, 1e-2, 1e-3);
    }
}
