//! Errors of the model crate: why a configuration, an input or a checkpoint was refused.
//!
//! Exists so that callers (the trainer, the CLI) get one typed error that names the file and the
//! problem instead of a panic deep inside burn.

use std::path::PathBuf;

/// Everything that can go wrong when building, feeding or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// An input tensor or annotation does not have the expected shape or content.
    #[error("invalid input: {0}")]
    Input(String),
    /// A checkpoint could not be read or written.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file involved.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Imported weights did not match the model: lists every key on both sides that failed.
    #[error("checkpoint {path}: weights do not match the model\n  unmatched keys in the file ({n_unused}): {unused}\n  model parameters missing from the file ({n_missing}): {missing}\n  other errors: {errors}", n_unused = unused.len(), n_missing = missing.len(), unused = unused.join(", "), missing = missing.join(", "), errors = errors.join("; "))]
    KeyMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// Keys present in the file (after remapping) that no model parameter uses.
        unused: Vec<String>,
        /// Model parameters that the file does not provide.
        missing: Vec<String>,
        /// Shape or dtype mismatches and other per-tensor failures.
        errors: Vec<String>,
    },
}
