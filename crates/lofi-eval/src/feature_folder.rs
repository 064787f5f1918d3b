//! The index of a lofi feature folder: `index.json` beside one `<id>.npy` (`[L, C]` float32) per
//! video.
//!
//! `lofi extract` writes it, `lofi train-head` / `lofi detect` read it, and the Python bindings
//! read and write it too; the schema lives here, in the dependency-light crate, so that all of
//! them share one definition (`lofi_head::features` re-exports it). Unknown keys are refused, so
//! a typo in a hand-written index is caught rather than ignored. The one reader of an indexed
//! folder is here too ([`read_indexed`]): a video's features come only from its own `<id>.npy`
//! inside the folder, with the bytes the index recorded, so no reader can be pointed at another
//! video's file, a path outside the folder, or bytes changed since they were written.
//!
//! Two ways of placing snippets exist ([`Sampling`]): `rescale` (the ActivityNet way: `L` equal
//! snippets over each video, whatever its length) and `stride` (the THUMOS14 way of TSP, G-TAD
//! and ActionFormer features: one snippet every `N` frames or seconds, so a video's snippet count
//! grows with its length). A stride index records the sampling and, per video, the seconds per
//! snippet, so later stages map snippet `i` to `[i s, (i + 1) s)` exactly; a rescale index
//! records neither (snippet `i` of `L` covers `[i D / L, (i + 1) D / L)`) and reads as before.

use crate::error::{EvalError, Result};
use crate::npy::{self, Array2};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// Seconds per snippet `s` of a stride extraction: snippet `i` covers `[i s, (i + 1) s)`
    /// (the last one may reach past `duration`). Absent for rescale, where `s = duration / L`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snippet_seconds: Option<f64>,
}

impl IndexEntry {
    /// Checks that this entry may be read as video `id`'s: every lofi writer names a video's
    /// file `<id>.npy` inside the folder, so an entry naming a path elsewhere (`../x.npy`, a
    /// subfolder) or another video's file is refused, naming both.
    pub fn check_file(&self, id: &str) -> std::result::Result<(), String> {
        let own = format!("{id}.npy");
        if self.file == own && !id.contains(['/', '\\']) && id != "." && id != ".." {
            return Ok(());
        }
        Err(format!(
            "the index names file {:?} for it, but lofi reads a video's features only from \
             <id>.npy inside the folder ({own:?}): the index was edited or belongs to another \
             folder",
            self.file
        ))
    }

    /// Seconds per snippet: the recorded stride, or `duration / L` for a rescale extraction.
    pub fn step(&self) -> f64 {
        self.snippet_seconds
            .unwrap_or(self.duration / self.shape[0].max(1) as f64)
    }
}

/// Where a video's snippets are taken (`[sampling]` of `lofi extract`'s config, `sampling` of a
/// feature index); see the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Sampling {
    /// `L` equal snippets over the whole video (`snippets` of the extraction).
    #[default]
    Rescale,
    /// One snippet every `stride_frames` frames (at the video's own average frame rate) or every
    /// `stride_seconds` seconds: give exactly one.
    Stride {
        /// Frames between snippet starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride_frames: Option<usize>,
        /// Seconds between snippet starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride_seconds: Option<f64>,
    },
}

impl Sampling {
    /// Whether this is the rescale (the default).
    pub fn is_rescale(&self) -> bool {
        matches!(self, Self::Rescale)
    }

    /// Checks a stride: exactly one of frames / seconds, positive. The message names the keys.
    pub fn check(&self) -> std::result::Result<(), String> {
        match *self {
            Self::Rescale => Ok(()),
            Self::Stride {
                stride_frames: Some(0),
                ..
            } => Err("sampling.stride_frames must be at least 1".into()),
            Self::Stride {
                stride_frames: Some(_),
                stride_seconds: None,
            } => Ok(()),
            Self::Stride {
                stride_frames: None,
                stride_seconds: Some(s),
            } if s.is_finite() && s > 0.0 => Ok(()),
            Self::Stride {
                stride_frames: None,
                stride_seconds: Some(s),
            } => Err(format!(
                "sampling.stride_seconds = {s} must be a positive number"
            )),
            Self::Stride { .. } => Err(
                "sampling mode \"stride\" needs exactly one of stride_frames or stride_seconds"
                    .into(),
            ),
        }
    }

    /// Seconds per snippet of a stride for a video of frame rate `fps`; `None` for rescale.
    pub fn stride_seconds(&self, fps: f64) -> Option<f64> {
        match *self {
            Self::Rescale => None,
            Self::Stride {
                stride_seconds: Some(s),
                ..
            } => Some(s),
            Self::Stride {
                stride_frames: Some(n),
                ..
            } => Some(n as f64 / fps),
            Self::Stride { .. } => None,
        }
    }
}

/// Why one video's features could not be read; the message names the video and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureReadError {
    /// The video.
    pub id: String,
    /// The file read (or looked for).
    pub path: PathBuf,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for FeatureReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "features of video {:?} ({}): {}",
            self.id,
            self.path.display(),
            self.problem
        )
    }
}

impl std::error::Error for FeatureReadError {}

/// Checks the bytes of one feature file and decodes them: the SHA-256 the index recorded for
/// them (where it has one), a 2-D `.npy` array, the index's shape, finite values. Returns the
/// `[T, C]` array; the error is the problem alone (callers name the video and file).
pub fn check_bytes(
    bytes: &[u8],
    entry: Option<&IndexEntry>,
) -> std::result::Result<Array2, String> {
    if let Some(want) = entry.and_then(|e| e.sha256.as_ref()) {
        let found = lofi_files::hash::sha256_bytes(bytes);
        if *want != found {
            return Err(format!(
                "its bytes differ from what the index recorded (recorded {want}, found \
                 {found}): changed since it was written, or written by another extraction"
            ));
        }
    }
    let array = npy::parse_2d(bytes).map_err(|e| e.0)?;
    if array.rows == 0 || array.cols == 0 {
        return Err(format!("empty array [{}, {}]", array.rows, array.cols));
    }
    if let Some(entry) = entry {
        if entry.shape != [array.rows, array.cols] {
            return Err(format!(
                "shape [{}, {}] differs from the index's {:?}",
                array.rows, array.cols, entry.shape
            ));
        }
    }
    check_finite(&array)?;
    Ok(array)
}

/// The first value of `array` that is not finite, as the readers and writers of feature files
/// word it ("value at time step 2, channel 1 is NaN (not finite)").
pub fn check_finite(array: &Array2) -> std::result::Result<(), String> {
    match array.data.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!(
            "value at time step {}, channel {} is {} (not finite)",
            i / array.cols,
            i % array.cols,
            array.data[i]
        )),
        None => Ok(()),
    }
}

impl FeatureIndex {
    /// Why video `id` cannot be read from this folder when the index has no file for it: listed
    /// as failed (with the reason), listed but its file is gone, or not listed at all.
    pub fn missing_reason(&self, id: &str) -> String {
        match self.failed.iter().find(|f| f.id == id) {
            Some(f) => format!("the folder's index lists it as failed ({})", f.reason),
            None if self.videos.contains_key(id) => {
                "no feature file: the folder's index lists it, but the file is not there".into()
            }
            None => "not in the folder's index.json (not extracted into this folder)".into(),
        }
    }
}

/// Reads video `id`'s features as the folder's index describes them, checked: the entry names
/// `<id>.npy` inside `folder` ([`IndexEntry::check_file`]), and the bytes, read once, pass
/// [`check_bytes`]. The one reader of indexed feature folders: `lofi train-head`, `lofi detect`
/// and the Python package all read through it.
pub fn read_indexed(
    folder: &Path,
    id: &str,
    entry: &IndexEntry,
) -> std::result::Result<Array2, FeatureReadError> {
    let fail = |path: PathBuf, problem: String| FeatureReadError {
        id: id.to_string(),
        path,
        problem,
    };
    entry
        .check_file(id)
        .map_err(|p| fail(folder.join(INDEX_FILE), p))?;
    let path = folder.join(&entry.file);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(
                path,
                "no feature file: the folder's index lists it, but the file is not there".into(),
            ))
        }
        Err(e) => return Err(fail(path, format!("cannot read: {e}"))),
    };
    check_bytes(&bytes, Some(entry)).map_err(|p| fail(path, p))
}

/// Number of snippets a stride of `step` seconds puts on a video of `duration` seconds: enough to
/// cover it (the last may reach past the end), at least one.
pub fn stride_count(duration: f64, step: f64) -> usize {
    ((duration / step - 1e-9).ceil().max(1.0)) as usize
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
    /// How snippets were placed (absent: rescale, `snippets` per video).
    #[serde(default, skip_serializing_if = "Sampling::is_rescale")]
    pub sampling: Sampling,
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
            sampling: Sampling::Rescale,
            videos: BTreeMap::from([(
                "v".to_string(),
                IndexEntry {
                    file: "v.npy".into(),
                    duration: 12.5,
                    sha256: None,
                    shape: [4, 3],
                    snippet_seconds: None,
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

    #[test]
    fn a_stride_index_records_its_sampling_and_steps_and_a_rescale_one_does_not() {
        let mut index: FeatureIndex = serde_json::from_str(
            r#"{"snippets": 100, "frames_per_snippet": 1, "size": 64, "encoder": "e",
                "videos": {"v": {"file": "v.npy", "duration": 10.0, "shape": [100, 8]}}}"#,
        )
        .expect("an index without sampling reads as rescale");
        assert_eq!(index.sampling, Sampling::Rescale);
        assert_eq!(index.videos["v"].step(), 0.1);
        let text = serde_json::to_string(&index).expect("json");
        assert!(!text.contains("sampling") && !text.contains("snippet_seconds"));
        index.sampling = Sampling::Stride {
            stride_frames: Some(4),
            stride_seconds: None,
        };
        if let Some(v) = index.videos.get_mut("v") {
            v.shape = [26, 8];
            v.snippet_seconds = Some(0.4);
        }
        let text = serde_json::to_string(&index).expect("json");
        assert!(
            text.contains(r#""sampling":{"mode":"stride","stride_frames":4}"#),
            "{text}"
        );
        let back: FeatureIndex = serde_json::from_str(&text).expect("read back");
        assert_eq!(back, index);
        assert_eq!(back.videos["v"].step(), 0.4);
    }

    #[test]
    fn strides_need_exactly_one_positive_value() {
        let stride = |f: Option<usize>, s: Option<f64>| Sampling::Stride {
            stride_frames: f,
            stride_seconds: s,
        };
        assert!(stride(Some(4), None).check().is_ok());
        assert!(stride(None, Some(0.4)).check().is_ok());
        for (bad, key) in [
            (stride(None, None), "exactly one"),
            (stride(Some(4), Some(0.4)), "exactly one"),
            (stride(Some(0), None), "stride_frames"),
            (stride(None, Some(-1.0)), "stride_seconds"),
        ] {
            let e = bad.check().expect_err("refused");
            assert!(e.contains(key), "{e}");
        }
        assert_eq!(stride(Some(4), None).stride_seconds(10.0), Some(0.4));
        assert_eq!(stride_count(10.0, 0.4), 25);
        assert_eq!(stride_count(10.1, 0.4), 26);
        assert_eq!(stride_count(0.1, 0.4), 1);
        let e = serde_json::from_str::<Sampling>(r#"{"mode": "stride", "stride": 4}"#)
            .expect_err("unknown key");
        assert!(e.to_string().contains("stride"), "{e}");
    }

    #[test]
    fn the_checked_reader_reads_only_the_videos_own_recorded_bytes() {
        let dir = std::env::temp_dir().join(format!("lofi-read-indexed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let write = |name: &str, data: &[f32]| {
            let bytes = npy::encode_f32_2d(2, 2, data).expect("encode");
            std::fs::write(dir.join(name), &bytes).expect("write");
            bytes
        };
        let a = write("a.npy", &[1.0, 2.0, 3.0, 4.0]);
        write("b.npy", &[5.0, 6.0, 7.0, 8.0]);
        let entry = |file: &str, bytes: &[u8]| IndexEntry {
            file: file.into(),
            duration: 2.0,
            shape: [2, 2],
            sha256: Some(lofi_files::hash::sha256_bytes(bytes)),
            snippet_seconds: None,
        };
        let good = entry("a.npy", &a);
        let read = read_indexed(&dir, "a", &good).expect("its own file");
        assert_eq!(read.data, vec![1.0, 2.0, 3.0, 4.0]);
        let problem =
            |id: &str, e: &IndexEntry| read_indexed(&dir, id, e).expect_err("refused").to_string();
        // Another video's file, a path outside the folder, a subfolder.
        for file in ["b.npy", "../a.npy", "sub/a.npy", "/tmp/a.npy"] {
            let message = problem("a", &entry(file, &a));
            assert!(
                message.contains("features of video \"a\"")
                    && message.contains(&format!("{file:?}"))
                    && message.contains("\"a.npy\""),
                "{message}"
            );
        }
        // Bytes other than the recorded ones (the other video's file copied over).
        std::fs::copy(dir.join("b.npy"), dir.join("a.npy")).expect("copy");
        let message = problem("a", &good);
        assert!(
            message.contains("a.npy") && message.contains("differ from what the index recorded"),
            "{message}"
        );
        std::fs::remove_file(dir.join("a.npy")).expect("remove");
        assert!(problem("a", &good).contains("the file is not there"));
        // Without a recorded hash, shape and values are still checked.
        write("a.npy", &[1.0, f32::NAN, 3.0, 4.0]);
        let mut unhashed = good.clone();
        unhashed.sha256 = None;
        assert!(problem("a", &unhashed).contains("time step 0, channel 1 is NaN"));
        unhashed.shape = [3, 2];
        write("a.npy", &[1.0, 2.0, 3.0, 4.0]);
        assert!(problem("a", &unhashed).contains("differs from the index's [3, 2]"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
