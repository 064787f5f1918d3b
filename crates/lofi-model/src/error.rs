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
    /// Weights did not match the model: counts of the keys on both sides that failed, with the
    /// first few of each (the whole lists are in the fields).
    #[error(
        "checkpoint {path}: weights do not match the model ({})",
        key_summary(unused, missing, errors)
    )]
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
    /// Weights of another architecture than the one asked for: one line naming both.
    #[error("{message}")]
    ArchMismatch {
        /// The weights file.
        path: PathBuf,
        /// What the file holds and what was asked for.
        message: String,
    },
}

/// `3 unmatched keys in the file (a, b, c), ...`, at most three names per list.
fn key_summary(unused: &[String], missing: &[String], errors: &[String]) -> String {
    let list = |what: &str, items: &[String]| {
        let shown: Vec<&str> = items.iter().take(3).map(String::as_str).collect();
        let more = if items.len() > 3 { ", ..." } else { "" };
        format!("{} {what} ({}{more})", items.len(), shown.join(", "))
    };
    let mut parts = Vec::new();
    if !unused.is_empty() {
        parts.push(list("unmatched keys in the file", unused));
    }
    if !missing.is_empty() {
        parts.push(list("model parameters missing from the file", missing));
    }
    if !errors.is_empty() {
        parts.push(list("tensors that do not fit", errors));
    }
    parts.join("; ")
}
