//! The one training engine of lofi: every trainer (clip pre-training, LoFi end-to-end training,
//! G-TAD head training) is a [`Stage`] run by [`fit`].
//!
//! Why this crate exists: the three trainers differ only in what one step does, how an epoch's
//! batches are made and how validation scores a model. How a run is *kept* is the same for all,
//! and written once here:
//! - [`RunDir`]: the run folder (create, refuse a second run, resume only with the same config
//!   and inputs, `config.toml` describing the run), locked for as long as a process writes it;
//! - [`Fingerprint`] and [`FolderLock`]: what produced a folder (settings and input files' hashes)
//!   and who writes it now, for every folder a stage writes (run folders and feature folders);
//! - [`owned`]: which files of a folder lofi wrote ([`Owner`]), so that it deletes or replaces
//!   only those and refuses a folder where a user's files are in the way;
//! - [`Checkpointer`]: one checkpoint layout (`checkpoints/epoch-<E>.bpk` + `.optim`, an atomic
//!   JSON `last` pointer), model and optimizer state, 0-based epochs everywhere;
//! - [`metrics`]: typed serde records (step, epoch end, validation) in `metrics.jsonl`, written
//!   and read back as the same types by the trainers, the demo and the report;
//! - [`memory`]: the step memory meter (also the probe meter of lofi-train's planner);
//! - [`progress`]: progress as events (bars in the binary, silent in tests);
//! - [`preset`]: the one `--preset` vocabulary ([`Preset`]) every config maps to its values;
//! - [`readback`]: scalars from device tensors as errors, never NaN or 0;
//! - the seeded random stream is [`lofi_rng`] (re-exported as [`rng`]).
//!
//! Per-batch fidelity, the memory planner and data parallel stay inside the LoFi stage's step;
//! the engine is the same for one device or several.

pub mod checkpoint;
pub mod error;
pub mod fingerprint;
pub mod fit;
/// Folder locks ([`lofi_files::lock`]), re-exported where the stages have always found them.
pub mod lock {
    pub use lofi_files::lock::*;
    pub use lofi_files::FilesError;
}
pub mod memory;
pub mod metrics;
pub mod owned;
pub mod preset;
pub mod progress;
pub mod readback;
pub mod run_dir;

pub use checkpoint::{Checkpointer, LastCheckpoint};
pub use error::{EngineError, EngineResult};
pub use fingerprint::{Claim, Fingerprint};
pub use fit::{fit, validation_due, FitEnd, RunControl, Stage, StepAt};
pub use lock::{FolderLock, ReadLock};
pub use lofi_rng as rng;
pub use memory::{MemoryMeter, ProcMeter};
pub use metrics::{
    EpochSummary, FidelityStats, FidelityTag, LossParts, MetricsRecord, StepMetrics,
    ValidationMetrics,
};
pub use owned::{FolderKind, OutputPlan, Owner, Start};
pub use preset::Preset;
pub use progress::{Progress, Reporter, Silent};
pub use run_dir::{parse_toml, read_toml, write_toml, RunDir, Settings};
