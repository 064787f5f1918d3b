//! The index of a lofi feature folder: `index.json` beside one `<id>.npy` (`[L, C]` float32) per
//! video.
//!
//! `lofi extract` writes it, `lofi train-head` / `lofi detect` read it, and the Python bindings
//! read and write it too; the schema lives here, in the dependency-light crate, so that all of
//! them share one definition (`lofi_head::features` re-exports it). Unknown keys are refused, so
//! a typo in a hand-written index is caught rather than ignored.

use crate::error::{EvalError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Name of the index file of a feature folder.
pub const INDEX_FILE: &str = "index.json";

/// One video in a feature index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    /// File name inside the feature folder.
    pub file: String,
    /// Seconds of video the features cover (snippet `i` of `L` covers `[i D / L, (i + 1) D / L)`).
    pub duration: f64,
    /// `[L, C]`.
    pub shape: [usize; 2],
    /// `sha256:<hex>` of the file's bytes as written (`lofi extract --verify` checks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A video that could not be extracted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedVideo {
    /// Video id.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// `FEATURES_DIR/index.json`: how the features were made and which videos they cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureIndex {
    /// Snippets per video, `L`.
    pub snippets: usize,
    /// Frames averaged per snippet, `F`.
    pub frames_per_snippet: usize,
    /// Frame side in pixels, `S`.
    pub size: usize,
    /// The encoder checkpoint (path) or a description of it.
    pub encoder: String,
    /// Videos by id.
    pub videos: BTreeMap<String, IndexEntry>,
    /// Videos that failed, with the reason.
    #[serde(default)]
    pub failed: Vec<FailedVideo>,
}

impl FeatureIndex {
    /// Reads an index file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| EvalError::format(path, e.to_string()))
    }

    /// Writes the index atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| EvalError::format(path, e.to_string()))?;
        crate::write_atomic(path, (text + "\n").as_bytes()).map_err(|e| EvalError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("lofi-feature-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(INDEX_FILE);
        let index = FeatureIndex {
            snippets: 4,
            frames_per_snippet: 8,
            size: 112,
            encoder: "enc.bpk".into(),
            videos: BTreeMap::from([(
                "v".to_string(),
                IndexEntry {
                    file: "v.npy".into(),
                    duration: 12.5,
                    sha256: None,
                    shape: [4, 3],
                },
            )]),
            failed: vec![FailedVideo {
                id: "w".into(),
                reason: "no video".into(),
            }],
        };
        index.write(&path).expect("write");
        assert_eq!(FeatureIndex::read(&path).expect("read"), index);
        std::fs::write(&path, r#"{"snippets": 4, "frame": 1}"#).expect("write");
        let message = FeatureIndex::read(&path)
            .expect_err("unknown key")
            .to_string();
        assert!(
            message.contains("index.json") && message.contains("frame"),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
