//! Video input for LoFi: everything between a video file on disk and a clip tensor.
//!
//! LoFi trains the encoder on decoded frames of long untrimmed videos, so this crate decides both
//! what the model sees and how fast training and feature extraction run. It holds:
//! - [`index`]: a keyframe/timestamp index built from a fast pass over packet headers;
//! - [`sampler`]: frame-accurate sampling at arbitrary timestamps (seek or decode forward,
//!   whichever is cheaper, with identical results);
//! - [`plan`]: the sampling plan (L snippets x F frames, resize/crop policy), the [`Fidelity`]
//!   value type and the plain clip tensors handed to the model crate;
//! - [`loader`]: a parallel prefetching loader with bounded memory, deterministic order and a
//!   report of skipped videos;
//! - [`writer`] and [`synth`]: an encoder front end and the synthetic untrimmed-video benchmark;
//! - [`probe`] and [`ground_truth`]: checking a video folder against an ActivityNet-style
//!   annotation file.
//!
//! Time is always in seconds from stream timestamps (pts, falling back to dts), measured from the
//! first presented frame; never from a frame index, so variable frame rate works.

pub mod error;
pub mod ground_truth;
pub mod index;
pub mod limits;
pub mod loader;
pub mod plan;
pub mod probe;
pub mod sampler;
pub mod synth;
pub mod writer;

pub use error::{VideoError, VideoResult};
pub use index::VideoIndex;
pub use loader::{LoadReport, LoadedVideo, Loader, LoaderConfig, VideoFailure, VideoJob};
pub use plan::{ClipF32, ClipU8, Fidelity, Sampling, SamplingPlan, IMAGENET_MEAN, IMAGENET_STD};
pub use sampler::Sampler;

use std::sync::Once;

/// Initialise the FFmpeg libraries once per process and silence their own logging (our errors
/// carry the file name and the reason instead). Every entry point of this crate calls it, so
/// callers never need to.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // `ffmpeg::init` only registers devices on old FFmpeg versions; it cannot fail on the
        // FFmpeg 5+ this crate targets, and a failure would resurface on the first open anyway.
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
    });
}
