//! The files lofi writes, and how other processes may touch them.
//!
//! Exists because three rules hold for every folder lofi writes, whether the writer is a CLI
//! stage (through lofi-engine) or the Python package (which must not pull in the deep-learning
//! stack): a file's content is named by its SHA-256 ([`hash`]); a folder being written is never
//! read, and two writers never share it ([`lock`]); and lofi deletes or replaces only files it
//! can show it wrote ([`record`], the append-only ownership record). Each rule has its one
//! definition here, with no dependency beyond serde and SHA-256, so both kinds of writer and
//! every reader share it.

mod error;
pub mod hash;
pub mod lock;
pub mod record;

pub use error::{FilesError, FilesResult};
