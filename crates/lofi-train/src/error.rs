//! The one error type of the training crate.
//!
//! Exists so that every failure a user can cause (a bad config key, an impossible value, a
//! missing file, a memory budget below the fixed cost) reaches the command line as one clear
//! sentence naming the file or key, before any training work starts.

use std::path::PathBuf;

/// Everything that can go wrong while planning or running training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value is missing, unknown or impossible.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A config file could not be parsed (unknown key, wrong type, bad TOML).
    #[error("config {path}: {message}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// An input file has the wrong content.
    #[error("{path}: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// No usable video or clip remained after skipping the bad ones.
    #[error("no usable training data: {0}")]
    NoData(String),
    /// The memory budget cannot hold even one video per step.
    #[error("memory budget: {0}")]
    Budget(String),
    /// Memory cannot be measured on this platform.
    #[error("memory measurement unavailable: {0}")]
    Measure(String),
    /// The model crate rejected a config, input or checkpoint.
    #[error(transparent)]
    Model(#[from] lofi_model::ModelError),
    /// The detection post-processing or evaluation of the validation pass failed.
    #[error("validation: {0}")]
    Head(#[from] lofi_head::HeadError),
    /// Writing or evaluating results (detections, the row's JSON) failed.
    #[error(transparent)]
    Eval(Box<lofi_eval::EvalError>),
    /// Keeping the run (its folder, checkpoints, metrics) failed.
    #[error(transparent)]
    Engine(lofi_engine::EngineError),
    /// The video crate failed.
    #[error(transparent)]
    Video(#[from] lofi_video::VideoError),
    /// The loss became NaN or infinite.
    #[error("training diverged at epoch {epoch}, batch {batch}: loss is {loss}")]
    Diverged {
        /// Epoch (0-based).
        epoch: usize,
        /// Batch within the epoch (0-based).
        batch: usize,
        /// The offending value.
        loss: f32,
    },
    /// The run was stopped on purpose by the debug hook `stop_after_batches`.
    #[error("stopped after {0} batches as requested (debug hook); continue with --resume")]
    Stopped(usize),
}

impl From<lofi_eval::EvalError> for TrainError {
    fn from(e: lofi_eval::EvalError) -> Self {
        Self::Eval(Box::new(e))
    }
}

impl From<lofi_engine::EngineError> for TrainError {
    fn from(e: lofi_engine::EngineError) -> Self {
        match e {
            lofi_engine::EngineError::Stopped(n) => Self::Stopped(n),
            lofi_engine::EngineError::Measure(m) => Self::Measure(m),
            other => Self::Engine(other),
        }
    }
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type TrainResult<T> = Result<T, TrainError>;
