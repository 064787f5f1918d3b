//! Why a folder could not be locked, read or recorded; every message names the path.

use std::path::{Path, PathBuf};

/// A file or folder operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The operating system refused (the kind says why: `PermissionDenied` for a read-only
    /// folder, which some callers accept).
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// Another process holds the folder (a writer, or a reader a writer must wait for); the
    /// message names it and what to do.
    #[error("{0}")]
    Busy(String),
    /// A file lofi keeps (an ownership record) does not hold what lofi writes there.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl FilesError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The kind of the system error, for an I/O error.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Self::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// Result of this crate.
pub type FilesResult<T> = Result<T, FilesError>;
