//! Reading and writing lofi feature folders without the deep-learning stack.
//!
//! A feature folder is what `lofi extract` writes and `lofi train-head` / `lofi detect` read:
//! one `<id>.npy` (`[L, C]` float32, C order) per video and an `index.json`
//! ([`FeatureIndex`]). The `.npy` codec and the index schema are `lofi_eval::npy` and
//! `lofi_eval::feature_folder`, the same code the extractor uses, so a folder written from
//! Python is one that `lofi train-head` accepts and the other way round. The checks on reading
//! are those of `lofi_head::FeatureStore::load` (shape against the index, finite values), with
//! its message wording; writing refuses what reading would refuse, before any file is touched.

use lofi_eval::feature_folder::{FailedVideo, FeatureIndex, IndexEntry, INDEX_FILE};
use lofi_eval::npy::{self, Array2};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a feature folder could not be read or written; the message names the file and video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureError(pub String);

impl std::fmt::Display for FeatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FeatureError {}

fn video_error(id: &str, path: &Path, message: impl std::fmt::Display) -> FeatureError {
    FeatureError(format!(
        "features of video {id:?} ({}): {message}",
        path.display()
    ))
}

/// Reads `index.json` of a folder; `None` when the folder has none (a peer's plain `.npy` folder).
pub fn read_index(folder: &Path) -> Result<Option<FeatureIndex>, FeatureError> {
    if !folder.is_dir() {
        return Err(FeatureError(format!(
            "{}: feature folder does not exist",
            folder.display()
        )));
    }
    let path = folder.join(INDEX_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    FeatureIndex::read(&path)
        .map(Some)
        .map_err(|e| FeatureError(e.to_string()))
}

/// The `.npy` file of video `id`: the index's entry, else `<id>.npy`.
pub fn file_of(folder: &Path, index: Option<&FeatureIndex>, id: &str) -> PathBuf {
    match index.and_then(|i| i.videos.get(id)) {
        Some(entry) => folder.join(&entry.file),
        None => folder.join(format!("{id}.npy")),
    }
}

/// Reads the `[T, C]` features of one video and checks them as `lofi train-head` does.
pub fn read_video(
    folder: &Path,
    index: Option<&FeatureIndex>,
    id: &str,
) -> Result<Array2, FeatureError> {
    let path = file_of(folder, index, id);
    if !path.is_file() {
        return Err(video_error(id, &path, "no feature file"));
    }
    let array = npy::read_2d(&path).map_err(|e| video_error(id, &path, e.0))?;
    if array.rows == 0 || array.cols == 0 {
        return Err(video_error(
            id,
            &path,
            format!("empty array [{}, {}]", array.rows, array.cols),
        ));
    }
    check_finite(id, &path, &array)?;
    if let Some(entry) = index.and_then(|i| i.videos.get(id)) {
        if entry.shape != [array.rows, array.cols] {
            return Err(video_error(
                id,
                &path,
                format!(
                    "shape [{}, {}] differs from the index's {:?}",
                    array.rows, array.cols, entry.shape
                ),
            ));
        }
    }
    Ok(array)
}

fn check_finite(id: &str, path: &Path, array: &Array2) -> Result<(), FeatureError> {
    match array.data.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(video_error(
            id,
            path,
            format!(
                "value at time step {}, channel {} is {} (not finite)",
                i / array.cols,
                i % array.cols,
                array.data[i]
            ),
        )),
        None => Ok(()),
    }
}

/// One video to write: id, seconds covered, and its `[L, C]` features.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoToWrite {
    /// Video id; the file is `<id>.npy`.
    pub id: String,
    /// Seconds of video the features cover.
    pub duration: f64,
    /// The features.
    pub features: Array2,
}

/// How the features were made, for the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderMeta {
    /// Frames averaged per snippet, `F`.
    pub frames_per_snippet: usize,
    /// Frame side in pixels, `S`.
    pub size: usize,
    /// The encoder (checkpoint path or description).
    pub encoder: String,
    /// Videos that could not be extracted: id and reason.
    pub failed: Vec<(String, String)>,
}

/// Whether a video id can be a file name inside the folder (no separators, not `.`/`..`).
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id == "." || id == ".." || id.contains(['/', '\\', '\0']) {
        return Err(format!(
            "video id {id:?} cannot be a file name (empty, '.', '..', or it has a path separator)"
        ));
    }
    Ok(())
}

/// Writes a feature folder: every `<id>.npy` (atomically), then `index.json`. Every video must
/// have the same `L` (the index's `snippets`), finite values and a usable id; nothing is written
/// unless all of them pass.
pub fn write_folder(
    folder: &Path,
    videos: &[VideoToWrite],
    meta: &FolderMeta,
) -> Result<FeatureIndex, FeatureError> {
    let Some(first) = videos.first() else {
        return Err(FeatureError(
            "no videos to write (a feature folder needs at least one)".into(),
        ));
    };
    let snippets = first.features.rows;
    let mut entries = BTreeMap::new();
    for video in videos {
        check_id(&video.id).map_err(FeatureError)?;
        let path = folder.join(format!("{}.npy", video.id));
        let a = &video.features;
        if a.data.len() != a.rows * a.cols {
            return Err(video_error(
                &video.id,
                &path,
                format!("{} values for shape [{}, {}]", a.data.len(), a.rows, a.cols),
            ));
        }
        if a.rows == 0 || a.cols == 0 {
            return Err(video_error(
                &video.id,
                &path,
                format!("empty array [{}, {}]", a.rows, a.cols),
            ));
        }
        if a.rows != snippets {
            return Err(video_error(
                &video.id,
                &path,
                format!(
                    "has {} time steps, but video {:?} has {snippets}: a lofi feature folder \
                     holds one temporal length L for all videos",
                    a.rows, first.id
                ),
            ));
        }
        check_finite(&video.id, &path, a)?;
        if !(video.duration.is_finite() && video.duration >= 0.0) {
            return Err(video_error(
                &video.id,
                &path,
                format!("duration {} is not a non-negative number", video.duration),
            ));
        }
        let entry = IndexEntry {
            file: format!("{}.npy", video.id),
            duration: video.duration,
            sha256: None,
            shape: [a.rows, a.cols],
            snippet_seconds: None,
        };
        if entries.insert(video.id.clone(), entry).is_some() {
            return Err(FeatureError(format!("video {:?} is given twice", video.id)));
        }
    }
    std::fs::create_dir_all(folder)
        .map_err(|e| FeatureError(format!("{}: cannot create: {e}", folder.display())))?;
    for video in videos {
        let path = folder.join(format!("{}.npy", video.id));
        let a = &video.features;
        npy::write_f32_2d(&path, a.rows, a.cols, &a.data)
            .map_err(|e| video_error(&video.id, &path, e.0))?;
    }
    let index = FeatureIndex {
        snippets,
        frames_per_snippet: meta.frames_per_snippet,
        size: meta.size,
        encoder: meta.encoder.clone(),
        sampling: lofi_eval::feature_folder::Sampling::Rescale,
        videos: entries,
        failed: meta
            .failed
            .iter()
            .map(|(id, reason)| FailedVideo {
                id: id.clone(),
                reason: reason.clone(),
            })
            .collect(),
    };
    index
        .write(&folder.join(INDEX_FILE))
        .map_err(|e| FeatureError(e.to_string()))?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lofi-py-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn video(id: &str, rows: usize, cols: usize) -> VideoToWrite {
        VideoToWrite {
            id: id.into(),
            duration: 10.0,
            features: Array2 {
                rows,
                cols,
                data: (0..rows * cols).map(|i| i as f32 * 0.25).collect(),
            },
        }
    }

    fn meta() -> FolderMeta {
        FolderMeta {
            frames_per_snippet: 8,
            size: 112,
            encoder: "test".into(),
            failed: vec![("gone".into(), "missing file".into())],
        }
    }

    #[test]
    fn written_folders_read_back_with_their_index() {
        let dir = temp_folder("roundtrip");
        let videos = [video("a", 4, 3), video("v_b", 4, 2)];
        let index = write_folder(&dir, &videos, &meta()).expect("write");
        assert_eq!(index.snippets, 4);
        let read = read_index(&dir).expect("index").expect("present");
        assert_eq!(read, index);
        for v in &videos {
            assert_eq!(
                read_video(&dir, Some(&read), &v.id).expect("read"),
                v.features
            );
        }
        assert_eq!(read.failed[0].id, "gone");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writing_refuses_bad_videos_before_touching_the_folder() {
        let dir = temp_folder("refuse");
        let mut nan = video("n", 4, 2);
        nan.features.data[5] = f32::NAN;
        let cases = [
            (
                vec![video("a", 4, 2), video("b", 5, 2)],
                "one temporal length",
            ),
            (vec![nan], "time step 2, channel 1 is NaN"),
            (vec![video("../x", 4, 2)], "path separator"),
            (vec![video("a", 4, 2), video("a", 4, 2)], "given twice"),
            (vec![], "no videos"),
        ];
        for (videos, expected) in cases {
            let message = write_folder(&dir, &videos, &meta()).expect_err(expected).0;
            assert!(message.contains(expected), "{message}");
            assert!(!dir.exists(), "{expected}: the folder was created");
        }
    }

    #[test]
    fn reading_checks_shape_against_the_index_and_names_the_file() {
        let dir = temp_folder("shape");
        write_folder(&dir, &[video("a", 4, 3)], &meta()).expect("write");
        let mut index = read_index(&dir).expect("index").expect("present");
        index.videos.get_mut("a").expect("a").shape = [4, 5];
        let message = read_video(&dir, Some(&index), "a").expect_err("shape").0;
        assert!(
            message.contains("a.npy") && message.contains("differs from the index's [4, 5]"),
            "{message}"
        );
        let message = read_video(&dir, None, "zz").expect_err("missing").0;
        assert!(message.contains("no feature file"), "{message}");
        assert!(read_index(&dir.join("nope")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
