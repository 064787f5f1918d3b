//! The engine's error: what can go wrong keeping a run (its folder, checkpoints, metrics log,
//! memory measurement), as one typed value that each stage's error wraps.

use std::path::PathBuf;

/// Everything that can go wrong while keeping a run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// A file of the run folder has the wrong content.
    #[error("{path}: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The run folder does not fit the request (a run already there, another config on resume).
    #[error("{0}")]
    RunDir(String),
    /// A folder was made by another job than the one asking for it now.
    #[error(
        "{} was made by another {what}; refusing to mix outputs:\n  {}\nuse --overwrite to redo \
         everything in it, or choose another folder",
        path.parent().map_or(path.display(), |p| p.display()),
        differences.join("\n  ")
    )]
    Mismatch {
        /// The folder's `fingerprint.json`.
        path: PathBuf,
        /// The job (extraction, training).
        what: String,
        /// What differs, one line per part.
        differences: Vec<String>,
    },
    /// Files lofi did not write are where a stage would write (see [`crate::owned`]).
    #[error(
        "{}: {} not written by lofi (or changed since lofi wrote {}), where lofi would {doing}: \
         {}; lofi never deletes or replaces what it did not write (not even with --overwrite or \
         --fresh): move {} away or choose another folder",
        dir.display(),
        if files.len() == 1 { "a file" } else { "files" },
        if files.len() == 1 { "it" } else { "them" },
        crate::owned::summarize(files),
        if files.len() == 1 { "it" } else { "them" }
    )]
    Foreign {
        /// The folder.
        dir: PathBuf,
        /// The foreign files, relative to the folder.
        files: Vec<String>,
        /// What lofi was about to do.
        doing: String,
    },
    /// Memory cannot be measured on this platform.
    #[error("memory measurement unavailable: {0}")]
    Measure(String),
    /// A tensor could not be read back to the host.
    #[error("cannot read {what} from the device: {message}")]
    Readback {
        /// What was being read (a loss, an accuracy).
        what: &'static str,
        /// What burn said.
        message: String,
    },
    /// A JSON output could not be written (lofi-eval's atomic writer names the file).
    #[error(transparent)]
    Write(#[from] Box<lofi_eval::EvalError>),
    /// Saving or loading weights failed.
    #[error(transparent)]
    Model(#[from] lofi_model::ModelError),
    /// The run was stopped on purpose by the debug hook `stop_after_batches`.
    #[error("stopped after {0} batches as requested (debug hook); continue with --resume")]
    Stopped(usize),
}

impl From<lofi_files::FilesError> for EngineError {
    fn from(e: lofi_files::FilesError) -> Self {
        match e {
            lofi_files::FilesError::Io { path, source } => Self::Io { path, source },
            lofi_files::FilesError::Busy(message) => Self::RunDir(message),
            lofi_files::FilesError::Format { path, message } => Self::Data { path, message },
        }
    }
}

impl EngineError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Wrong content in `path`.
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Data {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result alias of the engine.
pub type EngineResult<T> = Result<T, EngineError>;
