//! The one error type of the crate.
//!
//! Every failure a user can cause names the file it came from and, where one is involved, the
//! video id, so that a message like "detections.json: video v_abc, entry 3: segment end 4.0 is
//! before start 9.5" is enough to find and fix the input without a debugger.

use std::path::{Path, PathBuf};

/// Errors from reading, checking or evaluating annotation and prediction files.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON, or its JSON does not have the expected layout.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (line and column, video id where known).
        message: String,
    },
    /// One entry of the file has a value that cannot be evaluated.
    #[error("{path}: video {video}: {message}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// The video id whose entry is wrong.
        video: String,
        /// What is wrong with it.
        message: String,
    },
    /// The requested subset does not occur in the ground truth.
    #[error("{path}: no video has subset {subset:?}; subsets present: {available}")]
    UnknownSubset {
        /// The ground-truth file.
        path: PathBuf,
        /// The subset asked for.
        subset: String,
        /// The subsets the file has, with their video counts.
        available: String,
    },
    /// A prediction's label is not one of the ground truth's classes in the evaluated subset.
    #[error(
        "{path}: video {video}: label {label:?} is not a class of the ground truth's {subset:?} subset{hint}"
    )]
    UnknownLabel {
        /// The predictions file.
        path: PathBuf,
        /// The video whose prediction has the label.
        video: String,
        /// The label.
        label: String,
        /// The subset evaluated.
        subset: String,
        /// A suggestion, such as the closest class name (may be empty).
        hint: String,
    },
    /// The arguments of an evaluation are out of range (thresholds, counts, parameters).
    #[error("{0}")]
    Invalid(String),
}

impl EvalError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        EvalError::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn entry(path: &Path, video: &str, message: impl Into<String>) -> Self {
        EvalError::Entry {
            path: path.to_path_buf(),
            video: video.to_string(),
            message: message.into(),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
