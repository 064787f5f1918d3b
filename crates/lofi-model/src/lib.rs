//! Burn modules for LoFi: the TSM-ResNet video encoder, the G-TAD localization head for any
//! temporal length, their training targets and losses, and checkpoint import/export.
//!
//! Why this crate exists: LoFi trains a TSM encoder and a G-TAD head together, and every number
//! the project reports depends on both being faithful to the published architectures. Keeping the
//! networks, targets and losses in one crate (with no video decoding and no training loop) lets the
//! trainer, the feature extractor and the head-only trainer share exactly the same code.
//!
//! # Backends
//! Burn 0.22 carries the backend in the [`burn::tensor::Device`] rather than in a type parameter,
//! so every module here is backend-generic by construction: build it on `Device::flex()` for the
//! CPU (what the tests use), on a GPU device when one is enabled, and wrap the device with
//! `.autodiff()` to train. Nothing in this crate names a backend.
//!
//! # Contents
//! - [`resnet`]: TSM-ResNet-18/34/50 encoder (temporal + residual shift, trainable or frozen
//!   BatchNorm, clip classifier for pre-training); [`shift`]: the temporal shift;
//! - [`r2plus1d`]: R(2+1)D-18/34 trunk with the same input/output contract;
//! - [`encoder`]: the typed choice between the two ([`EncoderArch`], [`Encoder`]) that every
//!   stage uses;
//! - [`gtad`]: the G-TAD head (GCNeXt, SGAlign, start/end and IoU-map heads) for any `L`;
//!   [`bmn`]: the BMN head (TEM, PEM with the boundary-matching layer) for any `L`;
//! - [`head`]: the typed choice between the two ([`HeadArch`], [`Head`]) with the
//!   post-processing of each ([`DetectConfig`]) that every stage uses;
//! - [`targets`], [`loss`]: training targets at any `L` and the G-TAD loss;
//! - [`card`]: the model card written beside every weights file (architecture, input,
//!   classes, producing config) and the short architecture-mismatch error;
//! - [`checkpoint`]: our own checkpoints; [`import`]: PyTorch / safetensors weight import;
//! - [`passes`]: a long video's features in passes of bounded memory, equal to one pass;
//! - [`kernel_cache`]: where GPU builds keep compiled kernels and autotune results.
//!
//! # Layouts (see each module for details)
//! - encoder input `[B, L, F, 3, S, S]` (videos, snippets, frames per snippet, RGB, pixels),
//!   output snippet features `[B, L, C]`;
//! - head input `[B, C, L]`; start/end probabilities `[B, L]`; IoU maps `[B, 2, D, L]` indexed by
//!   (duration - 1, start snippet), channel 0 = regression IoU, 1 = classification IoU, with an
//!   anchor-validity mask `[D, L]` that is 1 where `start + duration <= L`.

pub mod bmn;
pub mod card;
pub mod checkpoint;
pub mod encoder;
pub mod error;
pub mod fastbn;
pub mod fastconv;
pub mod gtad;
/// SHA-256 of files and bytes ([`lofi_files::hash`]).
pub use lofi_files::hash;
pub mod head;
pub mod import;
pub mod kernel_cache;
pub mod loss;
pub mod passes;
pub mod precision;
pub mod r2plus1d;
pub mod resnet;
pub mod seed;
pub mod shift;
pub mod targets;
pub mod torch;
#[cfg(feature = "tch")]
pub mod torchops;

pub use bmn::{BmnArch, BmnHead};
pub use card::{InputSpec, ModelCard, ModelSpec, Normalization, Producer};
pub use encoder::{Encoder, EncoderArch, EncoderKind};
pub use error::ModelError;
pub use gtad::{GcnextBlock, GtadArch, GtadConfig, GtadHead, GtadOutput, SgAlign};
pub use head::{
    CandidateRule, DetectConfig, Head, HeadArch, HeadKind, HeadOutput, HeadTargets, SoftNmsRule,
};
pub use loss::{GtadLoss, GtadLossConfig, LossParts};
pub use precision::Precision;
pub use r2plus1d::{R2Plus1dConfig, R2Plus1dEncoder};
pub use resnet::{ResNetConfig, TsmEncoder};
pub use targets::{GtadTargets, Segment, TargetConfig};

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
