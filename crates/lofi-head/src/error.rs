//! Errors of the head crate: why a feature file, a configuration, a run directory or a video was
//! refused.
//!
//! Exists so that the CLI (and the lead's demo) get one typed error whose message names the file,
//! the video id and the problem, instead of a panic inside burn or a bare I/O error.

use std::path::PathBuf;

/// Everything that can go wrong after the encoder.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A feature file is missing, malformed, or has the wrong shape or dtype.
    #[error("features of video {video:?} ({path}): {message}")]
    Features {
        /// Video id.
        video: String,
        /// The feature file (or where it was expected).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file (other than a feature file) does not have the expected format.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A configuration value is unknown, out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Something about the inputs as a whole is unusable (e.g. no training video).
    #[error("{0}")]
    Input(String),
    /// From the model crate.
    #[error(transparent)]
    Model(#[from] lofi_model::ModelError),
    /// From the video crate.
    #[error(transparent)]
    Video(#[from] lofi_video::VideoError),
    /// Keeping the run (its folder, checkpoints, metrics) failed.
    #[error(transparent)]
    Engine(#[from] lofi_engine::EngineError),
    /// From the evaluation crate.
    #[error(transparent)]
    Eval(#[from] lofi_eval::EvalError),
}

impl From<lofi_engine::lock::FilesError> for HeadError {
    fn from(e: lofi_engine::lock::FilesError) -> Self {
        Self::Engine(e.into())
    }
}

impl HeadError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HeadError::Io {
            path: path.into(),
            source,
        }
    }

    /// A feature-file error.
    pub fn features(video: &str, path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        HeadError::Features {
            video: video.to_string(),
            path: path.into(),
            message: message.into(),
        }
    }

    /// A format error.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        HeadError::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result with [`HeadError`].
pub type Result<T> = std::result::Result<T, HeadError>;
