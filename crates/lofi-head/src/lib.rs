//! Everything after a frozen encoder: feature extraction (sharded, resumable, verifiable), feature
//! files (ours and the peers' `.npy` / `.csv` / `.h5`), a head (any `lofi_model::HeadKind`)
//! trained from scratch on features with a video-level classifier beside it, head inference
//! (boundary candidates, Soft-NMS, class fusion: [`inference`]), detection and evaluation with the
//! ActivityNet protocol.
//!
//! Why this crate exists: LoFi's reported numbers come from step 3 of the method, where the
//! trained encoder is frozen, features are extracted at full fidelity and a fresh G-TAD is trained
//! and evaluated on them. That pipeline is also what users run on a peer's published features,
//! so it lives apart from the end-to-end trainer (which calls [`validate_head`] for its
//! validation pass) and depends only on the video, model and evaluation crates.
//!
//! Entry points, each a config struct in and an outcome struct out:
//! [`extract()`] / [`verify`], [`train_head`], [`detect()`], and [`validate_head`].

pub mod detect;
pub mod error;
pub mod extract;
pub mod features;
pub mod h5;
pub mod inference;
pub mod model;
pub mod train;
pub mod windows;

/// The `.npy` reader and writer, kept in `lofi-eval` so that light clients share it.
pub use lofi_eval::npy;

pub use detect::{
    detect, detect_preset, oracle_class_scores, ClassScoreFile, ClassScoreSource, DetectInputs,
    DetectOutcome,
};
pub use error::{HeadError, Result};
pub use extract::{
    extract, verify, EncoderSpec, ExtractConfig, ExtractInputs, ExtractOutcome, Shard,
    VerifyReport, THUMOS14_STRIDE_FRAMES,
};
pub use features::{FeatureIndex, FeatureStore, VideoFeatures};
pub use inference::{features_from_encoder, head_proposals, validate_head};
/// The post-processing settings (one type, in lofi-model, that head cards record).
pub use lofi_model::DetectConfig;
pub use model::{cpu_device, HeadMeta, TrainedHead};
pub use train::{train_head, BestEpoch, HeadConfig, HeadInputs, HeadOutcome};
pub use windows::{Temporal, TimedFeatures};
