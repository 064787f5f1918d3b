//! Long videos in passes: the snippet features of a video too long for one encoder pass, computed
//! piece by piece in bounded memory and equal to what one pass would give.
//!
//! Exists because THUMOS14's stride sampling (one snippet every 5 frames, as G-TAD's features are
//! made) gives a 30-minute video over 10,000 snippets: one pass of TSM-ResNet-18 at 224 px would
//! hold its whole input (6 GiB in f32) and the stem's activations (tens of GiB) at once, beyond
//! the CPU machines we run on and most GPUs. ActivityNet's 100 snippets fit in one pass and keep
//! taking it.
//!
//! # Why the passes are exact
//! The only thing that crosses snippets in either encoder is TSM's temporal shift: every residual
//! block moves a slice of its channels one frame each way along time ([`crate::shift`]). So a
//! frame's feature depends on at most `blocks` frames on each side (ResNet-18: 8 blocks; 34 and
//! 50: 16), and a pass that encodes `context` snippets beyond each end of the ones it keeps, with
//! `context * F >= blocks`, computes those exactly; the zeros the shift brings in at a pass's ends
//! reach no kept frame. Where a pass starts at the video's first snippet or ends at its last, the
//! zeros are the ones a single pass brings in too. R(2+1)D encodes every snippet as its own clip:
//! no context at all. BatchNorm must run on its running statistics (inference, as extraction
//! does); with batch statistics the frames sharing a pass would matter.

use std::ops::Range;

use burn::tensor::Tensor;

use crate::encoder::Encoder;
use crate::error::ModelError;

/// One pass over a video: the snippets it encodes and, among them, the ones it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Snippets encoded, `keep` plus up to `context` on each side.
    pub input: Range<usize>,
    /// Snippets whose features this pass gives.
    pub keep: Range<usize>,
}

/// Splits a video of `snippets` snippets into passes of at most `max_snippets` each, every kept
/// snippet at least `context` snippets away from a pass end that is not the video's own end.
/// The kept ranges tile `0..snippets` in order, each snippet kept once; a video that fits is one
/// pass. An error when the passes could keep nothing (`max_snippets < 2 * context + 1`) or the
/// video is empty.
pub fn plan_passes(
    snippets: usize,
    context: usize,
    max_snippets: usize,
) -> Result<Vec<Pass>, ModelError> {
    if snippets == 0 {
        return Err(ModelError::Input(
            "a video of 0 snippets has no features".into(),
        ));
    }
    if snippets <= max_snippets {
        return Ok(vec![Pass {
            input: 0..snippets,
            keep: 0..snippets,
        }]);
    }
    let least = 2 * context + 1;
    if max_snippets < least {
        return Err(ModelError::Config(format!(
            "a pass of {max_snippets} snippets is too short for a video of {snippets}: the encoder \
             needs {context} snippets of context on each side of the ones a pass keeps, so at \
             least {least} per pass"
        )));
    }
    let mut passes = Vec::with_capacity(snippets.div_ceil(max_snippets - 2 * context));
    let mut next = 0;
    while next < snippets {
        let start = next.saturating_sub(context);
        let end = (start + max_snippets).min(snippets);
        let keep_end = if end == snippets { end } else { end - context };
        passes.push(Pass {
            input: start..end,
            keep: next..keep_end,
        });
        next = keep_end;
    }
    Ok(passes)
}

impl Encoder {
    /// Snippets of context a pass needs on each side of the ones it keeps for their features to
    /// be exact, at `frames_per_snippet` frames per snippet (see the module docs): TSM with its
    /// shift, one frame per residual block; otherwise none.
    pub fn context_snippets(&self, frames_per_snippet: usize) -> usize {
        match self {
            Self::Tsm(e) if e.shift => {
                let blocks = [&e.layer1, &e.layer2, &e.layer3, &e.layer4]
                    .iter()
                    .map(|layer| layer.len())
                    .sum::<usize>();
                blocks.div_ceil(frames_per_snippet.max(1))
            }
            _ => 0,
        }
    }

    /// The fewest frames a pass may hold for this encoder at `frames_per_snippet`: one kept
    /// snippet and its context on both sides.
    pub fn min_frames_per_pass(&self, frames_per_snippet: usize) -> usize {
        frames_per_snippet * (2 * self.context_snippets(frames_per_snippet) + 1)
    }

    /// Snippet features `[L, C]` of one video of `snippets` snippets of `frames_per_snippet`
    /// frames, encoded in passes of at most `max_frames` frames ([`plan_passes`]); equal to
    /// [`Encoder::forward`] of the whole video (in inference mode, see the module docs).
    /// `input(range)` gives snippets `range` as `[1, range.len(), F, 3, S, S]`, so the caller
    /// never needs the whole video in the encoder's format at once.
    pub fn forward_passes(
        &self,
        snippets: usize,
        frames_per_snippet: usize,
        max_frames: usize,
        mut input: impl FnMut(Range<usize>) -> Result<Tensor<6>, ModelError>,
    ) -> Result<Tensor<2>, ModelError> {
        let f = frames_per_snippet;
        if f == 0 || max_frames < self.min_frames_per_pass(f) {
            return Err(ModelError::Config(format!(
                "passes of {max_frames} frames at {f} frames per snippet: this encoder needs at \
                 least {} frames per pass",
                self.min_frames_per_pass(f.max(1))
            )));
        }
        let passes = plan_passes(snippets, self.context_snippets(f), max_frames / f)?;
        let mut parts = Vec::with_capacity(passes.len());
        for pass in passes {
            let x = input(pass.input.clone())?;
            let dims = x.dims();
            if dims[..3] != [1, pass.input.len(), f] {
                return Err(ModelError::Input(format!(
                    "the input of snippets {:?} must be [1, {}, {f}, 3, S, S], got {dims:?}",
                    pass.input,
                    pass.input.len()
                )));
            }
            let feats = self.forward(x)?;
            let [_, l, c] = feats.dims();
            let from = pass.keep.start - pass.input.start;
            parts.push(
                feats
                    .reshape([l, c])
                    .slice([from..from + pass.keep.len(), 0..c]),
            );
        }
        Ok(Tensor::cat(parts, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::{EncoderArch, EncoderKind};
    use burn::module::Module;
    use burn::tensor::{Device, Distribution};

    fn check_tiling(snippets: usize, context: usize, max: usize) {
        let passes = plan_passes(snippets, context, max).expect("plannable");
        let mut next = 0;
        for p in &passes {
            assert_eq!(p.keep.start, next, "{passes:?}");
            assert!(p.keep.end > p.keep.start, "{passes:?}");
            assert!(p.input.len() <= max, "{passes:?}");
            assert!(p.input.start <= p.keep.start && p.keep.end <= p.input.end);
            // Context on each side, unless that side is the video's own end.
            assert!(p.input.start == 0 || p.keep.start - p.input.start >= context);
            assert!(p.input.end == snippets || p.input.end - p.keep.end >= context);
            next = p.keep.end;
        }
        assert_eq!(next, snippets, "{passes:?}");
    }

    #[test]
    fn passes_tile_the_video_with_context_and_within_the_budget() {
        for snippets in [1, 7, 8, 9, 50, 100, 101, 1000, 10_801] {
            for (context, max) in [(0, 1), (0, 7), (1, 3), (2, 5), (8, 17), (8, 512), (16, 40)] {
                check_tiling(snippets, context, max);
            }
        }
        // A video that fits is one pass, whatever the context.
        assert_eq!(
            plan_passes(100, 16, 100).expect("fits"),
            vec![Pass {
                input: 0..100,
                keep: 0..100
            }]
        );
        // 10 snippets, context 2, at most 6 per pass: keep 0..4, 4..6, 6..8, 8..10.
        let keeps: Vec<_> = plan_passes(10, 2, 6)
            .expect("plannable")
            .into_iter()
            .map(|p| (p.input, p.keep))
            .collect();
        assert_eq!(
            keeps,
            vec![(0..6, 0..4), (2..8, 4..6), (4..10, 6..10)],
            "greedy passes"
        );
    }

    #[test]
    fn passes_too_short_for_the_context_or_an_empty_video_are_errors() {
        let err = plan_passes(100, 8, 16).expect_err("16 < 17");
        assert!(err.to_string().contains("at least 17 per pass"), "{err}");
        assert!(plan_passes(100, 8, 17).is_ok());
        assert!(plan_passes(0, 0, 4).is_err());
    }

    fn tiny(kind: EncoderKind, device: &Device) -> Encoder {
        // Width 8: every stage has at least 8 channels, so the shift moves channels in every
        // block (it moves C / 8 of them each way).
        EncoderArch::tiny(kind, 18, 8)
            .init(None, device)
            .expect("valid")
            .valid()
    }

    fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn features_in_passes_equal_one_pass_and_need_the_context() {
        let device = Device::flex();
        let (l, f, s) = (40, 1, 32);
        for kind in [EncoderKind::Tsm, EncoderKind::R2plus1d] {
            let enc = tiny(kind, &device);
            let video = Tensor::<6>::random([1, l, f, 3, s, s], Distribution::Default, &device);
            let whole = enc
                .forward(video.clone())
                .expect("ok")
                .reshape([l as i64, -1]);
            let by_range =
                |r: Range<usize>| Ok(video.clone().slice([0..1, r, 0..f, 0..3, 0..s, 0..s]));
            let min = enc.min_frames_per_pass(f);
            for max_frames in [min, 23, l - 1] {
                let passes = enc.forward_passes(l, f, max_frames, by_range).expect("ok");
                let d = max_abs_diff(passes, whole.clone());
                assert!(d < 1e-5, "{kind:?}, passes of {max_frames}: differs by {d}");
            }
            let too_few = enc.forward_passes(l, f, min - 1, by_range);
            assert!(too_few.is_err(), "{kind:?}: passes of {} frames", min - 1);
        }
        assert_eq!(tiny(EncoderKind::Tsm, &device).context_snippets(1), 8);
        assert_eq!(tiny(EncoderKind::Tsm, &device).context_snippets(8), 1);
        assert_eq!(tiny(EncoderKind::R2plus1d, &device).context_snippets(1), 0);

        // Without the context, the features next to a pass end differ: the context is needed.
        let enc = tiny(EncoderKind::Tsm, &device);
        let video = Tensor::<6>::random([1, l, f, 3, s, s], Distribution::Default, &device);
        let whole = enc
            .forward(video.clone())
            .expect("ok")
            .reshape([l as i64, -1]);
        let halves: Vec<Tensor<2>> = [0..l / 2, l / 2..l]
            .into_iter()
            .map(|r| {
                let n = r.len();
                enc.forward(video.clone().slice([0..1, r, 0..f, 0..3, 0..s, 0..s]))
                    .expect("ok")
                    .reshape([n as i64, -1])
            })
            .collect();
        let d = max_abs_diff(Tensor::cat(halves, 0), whole);
        assert!(d > 1e-3, "naive halves should differ, by {d}");
    }

    #[test]
    fn a_wrong_input_shape_is_an_error() {
        let device = Device::flex();
        let enc = tiny(EncoderKind::R2plus1d, &device);
        let err = enc
            .forward_passes(4, 1, 2, |r| {
                Ok(Tensor::<6>::zeros([1, r.len() + 1, 1, 3, 32, 32], &device))
            })
            .expect_err("one snippet too many");
        assert!(
            err.to_string().contains("must be [1, 2, 1, 3, S, S]"),
            "{err}"
        );
    }
}
