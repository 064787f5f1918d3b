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

use burn::tensor::Tensor;

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
