//! LoFi end-to-end training: the fidelity schedules, clip-classification pre-training, the
//! joint encoder + G-TAD training stage and the memory planner.
//!
//! Why this crate exists: LoFi's contribution is the training procedure, not a network. This
//! crate owns exactly that procedure (which fidelity each mini-batch uses, how a step fits a
//! memory budget, how a run is checkpointed and resumed) on top of lofi-video (clips) and
//! lofi-model (networks, targets, losses), and exposes it as plain functions:
//! [`pretrain()`] and [`train()`] take a config struct and paths and return an outcome struct
//! with per-fidelity step time and peak memory, so the CLI and the demo share one code path.
//! Both are stages of lofi-engine, which keeps their run folders, checkpoints, typed metrics and
//! resume (and those of lofi-head's head training).
//!
//! # Determinism
//! Runs are reproducible from the seed. Burn's CPU backend parallelises with rayon; the exact
//! resume guarantee (same final weights and metrics as an uninterrupted run) is tested with one
//! rayon thread (`RAYON_NUM_THREADS=1`), which makes every reduction run in a fixed order. With
//! more threads results agree to rounding.
//!
//! # Gradient checkpointing
//! `gradient_checkpointing = true` builds the autodiff device with burn 0.22's balanced
//! strategy (`Device::autodiff().gradient_checkpointing()`), which recomputes cheap
//! (memory-bound) operations in the backward pass instead of storing their outputs. Burn offers
//! no user-defined checkpoint boundaries (per ResNet stage, as PyTorch's `checkpoint` does), so
//! the saving is smaller than segment checkpointing would give; the planner measures it.
//!
//! # Devices and precision
//! [`RunOptions::device`] is where a run computes (the CPU unless the caller opened a GPU);
//! [`RunOptions::replica_devices`] adds devices for data-parallel training ([`parallel`]); the
//! config's `precision = "bf16"` trains the encoder in bf16 with f32 master weights
//! (`lofi_model::precision`).

pub mod config;
pub mod data;
pub mod error;
pub mod memory;
pub mod model;
pub mod parallel;
pub mod pipeline;
pub mod pretrain;
pub mod probe;
pub mod schedule;
pub mod train;

pub use config::{PretrainConfig, TrainConfig};
pub use error::{TrainError, TrainResult};
pub use lofi_engine::{FidelityStats, Progress, Reporter, RunControl};
pub use memory::{ByteSize, MemoryMeter, MemoryPlan, ProcMeter};
pub use pretrain::{pretrain, PretrainData, PretrainOutcome, PretrainPaths};
pub use schedule::{FidelitySchedule, ScheduleKind};
pub use train::{cpu_device, measure_steps, train, RunOptions, TrainOutcome, TrainPaths};
