//! The ownership record of a folder: `.lofi-owned.jsonl`, which files lofi wrote there.
//!
//! Exists because a user's files share folders with lofi's, and deciding by name or extension
//! ("every `*.json` here is ours") once deleted a user's ground truth. The record is append-only:
//! one line naming the folder's kind (a training run, a feature folder...), then one line per
//! file lofi wrote, with the SHA-256 and size of the bytes written. A file is lofi's while what is
//! on disk is one of the versions recorded for it ([`holds`]); a file of a lofi name whose bytes
//! lofi did not write is foreign, and stays. The rules built on it (which stage may write where,
//! what `--overwrite` removes) live in lofi-engine's `owned` module; the format lives here so
//! that the Python package's writer keeps the same record.
//!
//! Why lines appended with one `write` each: a feature folder holds up to tens of thousands of
//! files written by several shard processes at once; appending one short line per file needs no
//! rewrite of a list and survives a kill at any instant (a torn last line is ignored, and the
//! file it would have named is then foreign: kept, never deleted).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{FilesError, FilesResult};

/// File name of a folder's ownership record.
pub const RECORD_FILE: &str = ".lofi-owned.jsonl";

/// What a folder is, recorded once by the writer that made it; a writer of another kind never
/// writes into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FolderKind {
    /// `lofi pretrain`'s run.
    Pretraining,
    /// `lofi train`'s LoFi run.
    Training,
    /// `lofi train-head`'s run.
    Head,
    /// `lofi extract`'s feature folder.
    Features,
    /// A feature folder written by the Python package (`lofi.write_features`).
    PythonFeatures,
    /// `lofi demo`'s folder.
    Demo,
    /// `lofi synth`'s dataset.
    Dataset,
}

impl FolderKind {
    /// The kind in words, for messages ("a LoFi training run").
    pub fn describe(self) -> &'static str {
        match self {
            Self::Pretraining => "a pre-training run (lofi pretrain)",
            Self::Training => "a LoFi training run (lofi train)",
            Self::Head => "a head run (lofi train-head)",
            Self::Features => "a feature folder (lofi extract)",
            Self::PythonFeatures => "a feature folder written from Python (lofi.write_features)",
            Self::Demo => "a demo folder (lofi demo)",
            Self::Dataset => "a synthetic dataset (lofi synth)",
        }
    }
}

/// One line of the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Line {
    /// The folder's kind, the lofi that made it, and whether that writer created the folder.
    Folder {
        /// What the folder is.
        kind: FolderKind,
        /// The version of lofi that recorded it.
        lofi: String,
        /// Whether the writer that recorded the kind created the folder.
        #[serde(default)]
        created: bool,
    },
    /// A file written whole, path relative to the folder (`/`-separated); `single` for a
    /// command's single output (detections, a plot) beside the folder's stage, which that
    /// stage's `--overwrite` keeps.
    File {
        /// Path relative to the folder.
        file: String,
        /// `sha256:<hex>` of the bytes written.
        sha256: String,
        /// Their count.
        bytes: u64,
        /// A single output of another command (see above).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        single: bool,
    },
    /// An append-only metrics log: lofi's while every line is a metrics record.
    Log {
        /// Path relative to the folder.
        log: String,
    },
    /// A subfolder lofi created (removed on overwrite when nothing foreign is left in it).
    Dir {
        /// Path relative to the folder.
        dir: String,
    },
}

impl Line {
    /// The line naming a folder's kind, by this version of lofi.
    pub fn folder(kind: FolderKind, created: bool) -> Self {
        Self::Folder {
            kind,
            lofi: env!("CARGO_PKG_VERSION").to_string(),
            created,
        }
    }

    /// The line recording `bytes` written to `file`.
    pub fn file(file: &str, bytes: &[u8]) -> Self {
        Self::File {
            file: file.to_string(),
            sha256: crate::hash::sha256_bytes(bytes),
            bytes: bytes.len() as u64,
            single: false,
        }
    }

    /// The line as written: JSON and a newline.
    pub fn to_text(&self, record: &Path) -> FilesResult<String> {
        serde_json::to_string(self)
            .map(|t| t + "\n")
            .map_err(|e| FilesError::Format {
                path: record.to_path_buf(),
                message: format!("cannot serialise a record line: {e}"),
            })
    }
}

/// The lines of `dir`'s record in order; `None` when the folder has no record. A torn last line
/// (a writer killed mid-append) is dropped; any other line that is not a record line is an error
/// naming the line.
pub fn read(dir: &Path) -> FilesResult<Option<Vec<Line>>> {
    let path = dir.join(RECORD_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FilesError::io(&path, e)),
    };
    let complete = text.ends_with('\n');
    let raw: Vec<&str> = text.lines().collect();
    let mut lines = Vec::with_capacity(raw.len());
    for (i, line) in raw.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(line) {
            Ok(l) => lines.push(l),
            Err(_) if i + 1 == raw.len() && !complete => {}
            Err(e) => {
                return Err(FilesError::Format {
                    path,
                    message: format!("line {}: not a lofi ownership record: {e}", i + 1),
                })
            }
        }
    }
    Ok(Some(lines))
}

/// The folder's kind, as its record's first kind line says; `None` without one.
pub fn kind(lines: &[Line]) -> Option<FolderKind> {
    lines.iter().find_map(|l| match l {
        Line::Folder { kind, .. } => Some(*kind),
        _ => None,
    })
}

/// Appends `line` to `dir`'s record (created if absent) in one `write`, so that appends of other
/// processes (shards) never interleave inside it.
pub fn append(dir: &Path, line: &Line) -> FilesResult<()> {
    let path = dir.join(RECORD_FILE);
    let text = line.to_text(&path)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| FilesError::io(&path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| FilesError::io(&path, e))
}

/// Whether the file at `path` is one of `versions` (`(sha256, bytes)`): a regular file of a
/// recorded size whose hash is recorded with that size. A missing file is none of them.
pub fn holds(path: &Path, versions: &[(String, u64)]) -> FilesResult<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(FilesError::io(path, e)),
    };
    if !meta.is_file() || !versions.iter().any(|(_, b)| *b == meta.len()) {
        return Ok(false);
    }
    let sha256 = crate::hash::sha256_file(path).map_err(|e| FilesError::io(path, e))?;
    Ok(versions
        .iter()
        .any(|(h, b)| *b == meta.len() && *h == sha256))
}

/// The recorded versions of every file the record names, by path (`single` outputs included).
pub fn file_versions(lines: &[Line]) -> std::collections::BTreeMap<&str, Vec<(String, u64)>> {
    let mut out: std::collections::BTreeMap<&str, Vec<(String, u64)>> = Default::default();
    for line in lines {
        if let Line::File {
            file,
            sha256,
            bytes,
            ..
        } = line
        {
            out.entry(file.as_str())
                .or_default()
                .push((sha256.clone(), *bytes));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_a_torn_last_line_is_dropped() -> FilesResult<()> {
        let tmp = tempfile::tempdir().map_err(|e| FilesError::io("tmp", e))?;
        let dir = tmp.path();
        assert!(read(dir)?.is_none());
        append(dir, &Line::folder(FolderKind::PythonFeatures, true))?;
        append(dir, &Line::file("a.npy", b"abc"))?;
        std::fs::write(dir.join("a.npy"), b"abc").map_err(|e| FilesError::io("a", e))?;
        let lines = read(dir)?.expect("a record");
        assert_eq!(kind(&lines), Some(FolderKind::PythonFeatures));
        let versions = file_versions(&lines);
        assert!(holds(&dir.join("a.npy"), &versions["a.npy"])?);
        // Edited by hand: same size, other bytes.
        std::fs::write(dir.join("a.npy"), b"abd").map_err(|e| FilesError::io("a", e))?;
        assert!(!holds(&dir.join("a.npy"), &versions["a.npy"])?);
        assert!(!holds(&dir.join("absent"), &versions["a.npy"])?);
        // A kill mid-append leaves a torn last line: ignored. A bad line before the end is not.
        let path = dir.join(RECORD_FILE);
        let mut text = std::fs::read_to_string(&path).map_err(|e| FilesError::io(&path, e))?;
        text.push_str("{\"file\": {\"fi");
        std::fs::write(&path, &text).map_err(|e| FilesError::io(&path, e))?;
        assert_eq!(read(dir)?.map(|l| l.len()), Some(2));
        std::fs::write(&path, "junk\n{}\n").map_err(|e| FilesError::io(&path, e))?;
        let e = read(dir).expect_err("junk");
        assert!(e.to_string().contains("line 1"), "{e}");
        Ok(())
    }
}
