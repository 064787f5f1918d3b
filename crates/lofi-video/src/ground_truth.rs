//! The ActivityNet annotation layout, read and written.
//!
//! The synthetic benchmark writes it, `lofi probe` and the loader read it, and the evaluation crate
//! consumes the same files; keeping a small typed copy here lets this crate check videos against
//! annotations without depending on the evaluation crate. Unknown fields (ActivityNet's `url`,
//! `resolution`) are ignored when reading.

use crate::error::{VideoError, VideoResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `{"version": ..., "database": {id: entry}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Free-form version string.
    pub version: String,
    /// Videos by id, sorted (so output is byte-stable).
    pub database: BTreeMap<String, VideoEntry>,
}

/// One annotated video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoEntry {
    /// `training`, `validation` or `testing`.
    pub subset: String,
    /// Duration in seconds.
    pub duration: f64,
    /// Frame rate, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Action instances.
    #[serde(default)]
    pub annotations: Vec<Annotation>,
}

/// One action instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// `[start, end]` in seconds.
    pub segment: [f64; 2],
    /// Class name.
    pub label: String,
}

impl GroundTruth {
    /// Read an annotation file.
    pub fn read(path: &Path) -> VideoResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| VideoError::io(path, e))?;
        serde_json::from_str(&text).map_err(|source| VideoError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Write an annotation file atomically (temporary name, then rename).
    pub fn write(&self, path: &Path) -> VideoResult<()> {
        write_json_atomic(path, self)
    }
}

/// Serialize `value` as pretty JSON to `path` through lofi-eval's atomic writer.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> VideoResult<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| VideoError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    lofi_eval::write_atomic(path, (text + "\n").as_bytes()).map_err(|e| VideoError::io(path, e))
}

/// Extensions tried when looking up a video by id.
pub const VIDEO_EXTENSIONS: [&str; 6] = ["mp4", "webm", "mkv", "avi", "mov", "m4v"];

/// Find the file of video `id` in `dir`: `id.EXT` or `v_id.EXT` (ActivityNet's YouTube ids are
/// stored with and without the `v_` prefix) for the usual extensions.
pub fn find_video(dir: &Path, id: &str) -> Option<PathBuf> {
    let mut names = vec![id.to_string()];
    match id.strip_prefix("v_") {
        Some(bare) => names.push(bare.to_string()),
        None => names.push(format!("v_{id}")),
    }
    names.iter().find_map(|name| {
        VIDEO_EXTENSIONS
            .iter()
            .map(|ext| dir.join(format!("{name}.{ext}")))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_activitynet_layout() -> Result<(), Box<dyn std::error::Error>> {
        let text = r#"{"version": "VERSION 1.3", "database": {"abc": {"subset": "validation",
            "duration": 12.5, "url": "https://x", "resolution": "640x360",
            "annotations": [{"segment": [1.0, 2.5], "label": "Jump"}]}}}"#;
        let gt: GroundTruth = serde_json::from_str(text)?;
        let entry = &gt.database["abc"];
        assert_eq!(entry.subset, "validation");
        assert_eq!(entry.fps, None);
        assert_eq!(entry.annotations[0].segment, [1.0, 2.5]);
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("gt.json");
        gt.write(&path)?;
        assert_eq!(GroundTruth::read(&path)?, gt);
        let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        assert!(written["database"]["abc"].get("fps").is_none());
        Ok(())
    }

    #[test]
    fn finds_videos_with_and_without_prefix() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("v_abc.mp4"), b"x")?;
        std::fs::write(dir.path().join("def.mkv"), b"x")?;
        assert_eq!(
            find_video(dir.path(), "abc"),
            Some(dir.path().join("v_abc.mp4"))
        );
        assert_eq!(
            find_video(dir.path(), "v_def"),
            Some(dir.path().join("def.mkv"))
        );
        assert_eq!(find_video(dir.path(), "zzz"), None);
        Ok(())
    }
}
