//! What to sample from a video and in which shape: fidelity, sampling plan and clip tensors.
//!
//! LoFi's whole point is training on reduced mini-batches (fewer snippets `L`, smaller frames
//! `S`) and extracting features at full fidelity. To keep those two paths from drifting apart,
//! a [`SamplingPlan`] gets its `L` and `S` only from a [`Fidelity`]: [`Fidelity::apply`] is the
//! one way a reduced plan is made, and everything downstream just reads the plan.
//!
//! Timestamps: the video's `[0, D]` is cut into `L` equal snippets; snippet `i` covers
//! `[i D / L, (i + 1) D / L)` and its `F` frames sit at the centres of `F` equal sub-intervals,
//! `t_ij = (i + (j + 0.5) / F) D / L`. Clips are `[L, F, 3, S, S]`: u8 RGB from the sampler,
//! converted by [`ClipU8::to_f32_normalized`] to `(x / 255 - mean) / std` with ImageNet's
//! mean and std per channel.

use crate::error::{VideoError, VideoResult};
use crate::sampler::Sampler;
use serde::{Deserialize, Serialize};

pub use lofi_eval::feature_folder::{stride_count, Sampling};

/// ImageNet per-channel mean (RGB) of pixel values scaled to [0, 1].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet per-channel standard deviation (RGB) of pixel values scaled to [0, 1].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Snippets per video and frame size: the two knobs LoFi turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fidelity {
    /// Snippets per video, `L`.
    pub snippets: usize,
    /// Frame side in pixels, `S` (frames are `S x S`).
    pub size: usize,
}

impl Fidelity {
    /// Full fidelity: 100 snippets of 224 x 224 frames (feature extraction, evaluation).
    pub const fn full() -> Self {
        Self {
            snippets: 100,
            size: 224,
        }
    }

    /// S-LoFi: spatial reduction r_s = 2, 100 x 112.
    pub const fn s() -> Self {
        Self {
            snippets: 100,
            size: 112,
        }
    }

    /// T-LoFi: temporal reduction r_t = 4, 25 x 224.
    pub const fn t() -> Self {
        Self {
            snippets: 25,
            size: 224,
        }
    }

    /// ST-LoFi: r_t = 2 and r_s = sqrt(2), 50 x 158.
    pub const fn st() -> Self {
        Self {
            snippets: 50,
            size: 158,
        }
    }

    /// A fidelity with explicit values (both must be at least 1).
    pub fn new(snippets: usize, size: usize) -> VideoResult<Self> {
        if snippets == 0 || size == 0 {
            return Err(VideoError::InvalidPlan(format!(
                "fidelity needs at least 1 snippet and 1 pixel, got {snippets} x {size}"
            )));
        }
        Ok(Self { snippets, size })
    }

    /// Full fidelity reduced by a temporal factor `r_t` and a spatial factor `r_s`
    /// (see [`reduce`](Self::reduce) for the rounding rule).
    pub fn from_ratios(r_t: f64, r_s: f64) -> VideoResult<Self> {
        Self::full().reduce(r_t, r_s)
    }

    /// This fidelity reduced by `r_t` (snippets divided) and `r_s` (side divided).
    ///
    /// Rounding rule: each result is rounded to the nearest integer (halves away from zero) and
    /// is at least 1. So 224 / sqrt(2) = 158.39 gives 158, 100 / 4 = 25, 224 / 2 = 112.
    /// Factors must be finite and positive (factors below 1 enlarge).
    pub fn reduce(self, r_t: f64, r_s: f64) -> VideoResult<Self> {
        for (name, r) in [("r_t", r_t), ("r_s", r_s)] {
            if !r.is_finite() || r <= 0.0 {
                return Err(VideoError::InvalidPlan(format!(
                    "{name} must be a finite positive factor, got {r}"
                )));
            }
        }
        let snippets = ((self.snippets as f64 / r_t).round() as usize).max(1);
        let size = ((self.size as f64 / r_s).round() as usize).max(1);
        Ok(Self { snippets, size })
    }

    /// Apply this fidelity to a plan: same frames per snippet, this `L` and `S`.
    pub fn apply(self, plan: &SamplingPlan) -> SamplingPlan {
        SamplingPlan {
            fidelity: self,
            frames_per_snippet: plan.frames_per_snippet,
        }
    }

    /// Relative cost in pixels per video against `other` (`L * S^2` ratio).
    pub fn pixel_ratio(self, other: Fidelity) -> f64 {
        (self.snippets * self.size * self.size) as f64
            / (other.snippets * other.size * other.size) as f64
    }
}

impl Default for Fidelity {
    fn default() -> Self {
        Self::full()
    }
}

/// How many frames to take where, and at which size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplingPlan {
    fidelity: Fidelity,
    frames_per_snippet: usize,
}

impl SamplingPlan {
    /// A full-fidelity plan with `frames_per_snippet` frames per snippet (at least 1). Reduced
    /// plans come from [`Fidelity::apply`].
    pub fn new(frames_per_snippet: usize) -> VideoResult<Self> {
        if frames_per_snippet == 0 {
            return Err(VideoError::InvalidPlan(
                "frames per snippet must be at least 1".into(),
            ));
        }
        Ok(Self {
            fidelity: Fidelity::full(),
            frames_per_snippet,
        })
    }

    /// The plan's fidelity.
    pub fn fidelity(&self) -> Fidelity {
        self.fidelity
    }

    /// Snippets per video, `L`.
    pub fn snippets(&self) -> usize {
        self.fidelity.snippets
    }

    /// Frames per snippet, `F`.
    pub fn frames_per_snippet(&self) -> usize {
        self.frames_per_snippet
    }

    /// Frame side, `S`.
    pub fn size(&self) -> usize {
        self.fidelity.size
    }

    /// Output shape `[L, F, 3, S, S]`.
    pub fn shape(&self) -> [usize; 5] {
        let (l, f, s) = (self.snippets(), self.frames_per_snippet, self.size());
        [l, f, 3, s, s]
    }

    /// The `L * F` sample times (seconds, snippet-major) for a video of `duration` seconds.
    pub fn timestamps(&self, duration: f64) -> Vec<f64> {
        let (l, f) = (self.snippets(), self.frames_per_snippet);
        let step = duration / l as f64;
        (0..l)
            .flat_map(|i| (0..f).map(move |j| (i as f64 + (j as f64 + 0.5) / f as f64) * step))
            .collect()
    }

    /// The `n * F` sample times of a stride of `step` seconds over a video of `duration` seconds
    /// (`n` from [`stride_count`]): snippet `i` covers `[i step, (i + 1) step)` and its `F`
    /// frames sit at the centres of `F` equal sub-intervals, as in [`timestamps`](Self::timestamps).
    pub fn stride_timestamps(&self, duration: f64, step: f64) -> Vec<f64> {
        let (n, f) = (stride_count(duration, step), self.frames_per_snippet);
        (0..n)
            .flat_map(|i| (0..f).map(move |j| (i as f64 + (j as f64 + 0.5) / f as f64) * step))
            .collect()
    }

    /// Sample a clip covering `[0, duration]` of an open video.
    pub fn sample(&self, sampler: &mut Sampler, duration: f64) -> VideoResult<ClipU8> {
        let times = self.timestamps(duration);
        let data = sampler.sample(&times, self.size() as u32)?;
        Ok(ClipU8 {
            shape: self.shape(),
            data,
        })
    }
}

/// A clip as planar RGB bytes, `[L, F, 3, S, S]` row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipU8 {
    /// `[L, F, 3, S, S]`.
    pub shape: [usize; 5],
    /// `shape.iter().product()` bytes.
    pub data: Vec<u8>,
}

/// A normalised clip, `[L, F, 3, S, S]` row-major, ready for the model crate.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipF32 {
    /// `[L, F, 3, S, S]`.
    pub shape: [usize; 5],
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl ClipU8 {
    /// Convert to floats `(x / 255 - mean[c]) / std[c]` with ImageNet's statistics.
    pub fn to_f32_normalized(&self) -> ClipF32 {
        self.snippets_f32_normalized(0..self.shape[0])
    }

    /// Snippets `range` alone, converted as [`ClipU8::to_f32_normalized`] does: `[range.len(),
    /// F, 3, S, S]`. What a long video is encoded from, a pass at a time.
    ///
    /// # Panics
    /// If `range` reaches past the clip's snippets (a caller bug).
    pub fn snippets_f32_normalized(&self, range: std::ops::Range<usize>) -> ClipF32 {
        let [l, f, ch, h, w] = self.shape;
        assert!(
            range.start <= range.end && range.end <= l,
            "snippets {range:?} of a clip of {l}"
        );
        let plane = h * w;
        let per_snippet = f * ch * plane;
        let bytes = &self.data[range.start * per_snippet..range.end * per_snippet];
        let mut data = Vec::with_capacity(bytes.len());
        // Every snippet starts at a red plane, so plane `p` of the slice is channel `p % 3`.
        for (p, chunk) in bytes.chunks(plane.max(1)).enumerate() {
            let c = p % 3;
            let scale = 1.0 / (255.0 * IMAGENET_STD[c]);
            let offset = IMAGENET_MEAN[c] / IMAGENET_STD[c];
            data.extend(chunk.iter().map(|&x| f32::from(x) * scale - offset));
        }
        ClipF32 {
            shape: [range.len(), f, ch, h, w],
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_paper() {
        assert_eq!(
            (Fidelity::full().snippets, Fidelity::full().size),
            (100, 224)
        );
        assert_eq!(Fidelity::from_ratios(1.0, 2.0).ok(), Some(Fidelity::s()));
        assert_eq!(Fidelity::from_ratios(4.0, 1.0).ok(), Some(Fidelity::t()));
        assert_eq!(
            Fidelity::from_ratios(2.0, std::f64::consts::SQRT_2).ok(),
            Some(Fidelity::st())
        );
        assert_eq!(
            Fidelity::st(),
            Fidelity {
                snippets: 50,
                size: 158
            }
        );
        // Each LoFi preset costs about a quarter of full fidelity in pixels.
        for f in [Fidelity::s(), Fidelity::t(), Fidelity::st()] {
            let r = f.pixel_ratio(Fidelity::full());
            assert!((0.24..=0.26).contains(&r), "{f:?} costs {r}");
        }
    }

    #[test]
    fn arbitrary_ratios_round_to_nearest_and_reject_nonsense() {
        assert_eq!(
            Fidelity::from_ratios(3.0, 3.0).ok(),
            Some(Fidelity {
                snippets: 33,
                size: 75
            })
        );
        assert_eq!(
            Fidelity::from_ratios(1000.0, 1000.0).ok(),
            Some(Fidelity {
                snippets: 1,
                size: 1
            })
        );
        assert!(Fidelity::from_ratios(0.0, 1.0).is_err());
        assert!(Fidelity::from_ratios(1.0, f64::NAN).is_err());
        assert!(Fidelity::from_ratios(-2.0, 1.0).is_err());
        assert!(Fidelity::new(0, 10).is_err());
    }

    #[test]
    fn apply_is_how_plans_shrink() -> VideoResult<()> {
        let full = SamplingPlan::new(2)?;
        assert_eq!(full.shape(), [100, 2, 3, 224, 224]);
        let st = Fidelity::st().apply(&full);
        assert_eq!(st.shape(), [50, 2, 3, 158, 158]);
        assert_eq!(Fidelity::full().apply(&st), full);
        assert!(SamplingPlan::new(0).is_err());
        Ok(())
    }

    #[test]
    fn timestamps_are_centred_in_equal_snippets() -> VideoResult<()> {
        let plan = Fidelity::new(4, 8)?.apply(&SamplingPlan::new(2)?);
        let t = plan.timestamps(8.0);
        assert_eq!(t, vec![0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]);
        let one = Fidelity::new(5, 8)?.apply(&SamplingPlan::new(1)?);
        assert_eq!(one.timestamps(10.0), vec![1.0, 3.0, 5.0, 7.0, 9.0]);
        Ok(())
    }

    #[test]
    fn stride_timestamps_are_centred_in_fixed_snippets() -> VideoResult<()> {
        let plan = SamplingPlan::new(2)?;
        let t = plan.stride_timestamps(1.0, 0.4);
        let want = [0.1, 0.3, 0.5, 0.7, 0.9, 1.1];
        assert_eq!(t.len(), want.len());
        for (a, b) in t.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{t:?}");
        }
        Ok(())
    }

    #[test]
    fn normalisation_uses_imagenet_statistics() {
        let clip = ClipU8 {
            shape: [1, 1, 3, 1, 2],
            data: vec![0, 255, 124, 124, 255, 0],
        };
        let f = clip.to_f32_normalized();
        assert_eq!(f.shape, clip.shape);
        let expect = |x: f32, c: usize| (x / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        let want = [
            expect(0.0, 0),
            expect(255.0, 0),
            expect(124.0, 1),
            expect(124.0, 1),
            expect(255.0, 2),
            expect(0.0, 2),
        ];
        for (a, b) in f.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn a_range_of_snippets_is_that_part_of_the_whole_conversion() {
        // 5 snippets of 2 frames of 3 x 2 x 3 px, every byte different (mod 256).
        let shape = [5, 2, 3, 2, 3];
        let clip = ClipU8 {
            shape,
            data: (0..shape.iter().product::<usize>())
                .map(|i| (i * 7 % 256) as u8)
                .collect(),
        };
        let whole = clip.to_f32_normalized();
        let per_snippet = 2 * 3 * 2 * 3;
        for range in [0..5, 0..1, 1..4, 4..5, 3..3] {
            let part = clip.snippets_f32_normalized(range.clone());
            assert_eq!(part.shape, [range.len(), 2, 3, 2, 3]);
            assert_eq!(
                part.data,
                whole.data[range.start * per_snippet..range.end * per_snippet]
            );
        }
    }
}
