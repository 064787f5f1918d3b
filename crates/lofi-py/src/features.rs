//! Reading and writing lofi feature folders without the deep-learning stack.
//!
//! A feature folder is what `lofi extract` writes and `lofi train-head` / `lofi detect` read:
//! one `<id>.npy` (`[L, C]` float32, C order) per video and an `index.json`
//! ([`FeatureIndex`]). The `.npy` codec and the index schema are `lofi_eval::npy` and
//! `lofi_eval::feature_folder`, the same code the extractor uses, so a folder written from
//! Python is one that `lofi train-head` accepts and the other way round. Reading an indexed
//! folder goes through the reader `lofi_head::FeatureStore::load` uses
//! (`lofi_eval::feature_folder::read_indexed`: the video's own file, the recorded SHA-256, the
//! index's shape, finite values), so the checks and their wording are the same; writing refuses
//! what reading would refuse, before any file is touched, and keeps lofi's ownership record and
//! folder lock (`lofi_files`), as every other writer does.

use lofi_eval::feature_folder::{
    check_bytes, check_finite, read_indexed, FailedVideo, FeatureIndex, IndexEntry, INDEX_FILE,
};
use lofi_eval::npy::{self, Array2};
use lofi_files::lock::FolderLock;
use lofi_files::record::{self, FolderKind, Line};
use std::collections::BTreeMap;
use std::path::Path;

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

/// Refuses a folder that a lofi process is writing now (an extraction or one of its shards, or
/// `write_features`), naming it. Checked when a folder is opened; later reads are safe all the
/// same, as every file is replaced whole and checked against the hash its index recorded.
pub fn check_no_writer(folder: &Path) -> Result<(), FeatureError> {
    match FolderLock::writer_of(folder) {
        Ok(None) => Ok(()),
        Ok(Some(holder)) => Err(FeatureError(format!(
            "{} is being written by a lofi process ({holder}); a feature folder is read only \
             once its writer has finished: let it finish, then open it again",
            folder.display()
        ))),
        Err(e) => Err(FeatureError(e.to_string())),
    }
}

/// Reads the `[T, C]` features of one video and checks them as `lofi train-head` does: with an
/// index, through lofi-eval's checked reader (only the videos it lists, from their own file, with
/// the recorded hash); without one (a peer's folder), `<id>.npy`.
pub fn read_video(
    folder: &Path,
    index: Option<&FeatureIndex>,
    id: &str,
) -> Result<Array2, FeatureError> {
    let Some(index) = index else {
        let path = folder.join(format!("{id}.npy"));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(video_error(id, &path, "no feature file"))
            }
            Err(e) => return Err(video_error(id, &path, format!("cannot read: {e}"))),
        };
        return check_bytes(&bytes, None).map_err(|e| video_error(id, &path, e));
    };
    match index.videos.get(id) {
        Some(entry) => read_indexed(folder, id, entry).map_err(|e| FeatureError(e.to_string())),
        None => Err(video_error(
            id,
            &folder.join(INDEX_FILE),
            index.missing_reason(id),
        )),
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

/// Writes a feature folder: every `<id>.npy` (atomically), then `index.json` with each file's
/// SHA-256. Every video must have the same `L` (the index's `snippets`), finite values and a
/// usable id; nothing is written unless all of them pass.
///
/// The folder follows lofi's ownership rule (`lofi_files::record`): it is new, or one this
/// function wrote before (its record says so), or a folder of the user's where nothing of theirs
/// has the name of a file written here. A folder another lofi writer owns (an extraction, a
/// training run) is refused, as is a file of the user's under a name written here; `.npy` files
/// an earlier call wrote that this call does not list are removed (they are lofi's, and the new
/// index no longer lists them). The folder's lock is held while writing, so `lofi train-head`,
/// `lofi detect` and `FeatureFolder` never read it half-written.
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
        check_finite(a).map_err(|e| video_error(&video.id, &path, e))?;
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
    let fail = |e: lofi_files::FilesError| FeatureError(e.to_string());
    let created = !folder.exists();
    std::fs::create_dir_all(folder)
        .map_err(|e| FeatureError(format!("{}: cannot create: {e}", folder.display())))?;
    let _lock = FolderLock::exclusive(folder, "lofi.write_features").map_err(fail)?;
    let lines = record::read(folder).map_err(fail)?.unwrap_or_default();
    match record::kind(&lines) {
        None | Some(FolderKind::PythonFeatures) => {}
        Some(kind) => {
            return Err(FeatureError(format!(
                "{} is {}; write_features writes only a feature folder of its own (a new \
                 folder, or one it wrote): choose another path",
                folder.display(),
                kind.describe()
            )))
        }
    }
    let versions = record::file_versions(&lines);
    let ours = |name: &str| -> Result<bool, FeatureError> {
        match versions.get(name) {
            Some(v) => record::holds(&folder.join(name), v).map_err(fail),
            None => Ok(false),
        }
    };
    let names: Vec<String> = videos
        .iter()
        .map(|v| format!("{}.npy", v.id))
        .chain([INDEX_FILE.to_string()])
        .collect();
    let mut foreign = Vec::new();
    for name in &names {
        if std::fs::symlink_metadata(folder.join(name)).is_ok() && !ours(name)? {
            foreign.push(name.clone());
        }
    }
    if !foreign.is_empty() {
        return Err(FeatureError(format!(
            "{}: lofi did not write {} (or it was changed since), and write_features would \
             replace it; lofi never changes a file it did not write: move it away or choose \
             another path",
            folder.display(),
            foreign.join(", ")
        )));
    }
    if record::kind(&lines).is_none() {
        record::append(folder, &Line::folder(FolderKind::PythonFeatures, created)).map_err(fail)?;
    }
    // The old index goes first: a reader never sees an index naming files being replaced.
    if ours(INDEX_FILE)? {
        std::fs::remove_file(folder.join(INDEX_FILE))
            .map_err(|e| FeatureError(format!("{}: {e}", folder.join(INDEX_FILE).display())))?;
    }
    for video in videos {
        let name = format!("{}.npy", video.id);
        let path = folder.join(&name);
        let a = &video.features;
        let bytes = npy::encode_f32_2d(a.rows, a.cols, &a.data)
            .map_err(|e| video_error(&video.id, &path, e.0))?;
        // Recorded before it is in place: a kill in between leaves old or new bytes, both lofi's.
        record::append(folder, &Line::file(&name, &bytes)).map_err(fail)?;
        lofi_eval::write_atomic(&path, &bytes)
            .map_err(|e| video_error(&video.id, &path, format!("cannot write: {e}")))?;
        if let Some(entry) = entries.get_mut(&video.id) {
            entry.sha256 = Some(lofi_files::hash::sha256_bytes(&bytes));
        }
    }
    // What an earlier call wrote and this one does not list.
    for name in versions.keys() {
        let stem = name.strip_suffix(".npy");
        if stem.is_some_and(|id| !entries.contains_key(id)) && !name.contains('/') && ours(name)? {
            std::fs::remove_file(folder.join(name))
                .map_err(|e| FeatureError(format!("{}: {e}", folder.join(name).display())))?;
        }
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
    let path = folder.join(INDEX_FILE);
    let text = serde_json::to_string_pretty(&index)
        .map_err(|e| FeatureError(format!("{}: cannot serialise: {e}", path.display())))?
        + "\n";
    record::append(folder, &Line::file(INDEX_FILE, text.as_bytes())).map_err(fail)?;
    lofi_eval::write_atomic(&path, text.as_bytes())
        .map_err(|e| FeatureError(format!("{}: cannot write: {e}", path.display())))?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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

    #[test]
    fn writing_keeps_to_the_ownership_rule() {
        let dir = temp_folder("owned");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("notes.txt"), "mine").expect("notes");
        std::fs::write(dir.join("a.npy"), "a user's file").expect("user's a.npy");
        // A user's file under a name written here: refused, nothing changed.
        let message = write_folder(&dir, &[video("a", 4, 3)], &meta())
            .expect_err("foreign a.npy")
            .0;
        assert!(message.contains("lofi did not write a.npy"), "{message}");
        assert_eq!(
            std::fs::read_to_string(dir.join("a.npy")).ok().as_deref(),
            Some("a user's file")
        );
        assert!(!dir.join(INDEX_FILE).exists());
        std::fs::remove_file(dir.join("a.npy")).expect("moved away");
        // Beside the user's notes, then again with one video less: the old one is lofi's, it goes.
        write_folder(&dir, &[video("a", 4, 3), video("b", 4, 3)], &meta()).expect("first");
        let index = write_folder(&dir, &[video("a", 4, 3)], &meta()).expect("rewrite");
        assert!(!dir.join("b.npy").exists());
        assert_eq!(
            std::fs::read_to_string(dir.join("notes.txt"))
                .ok()
                .as_deref(),
            Some("mine")
        );
        assert!(index.videos["a"].sha256.is_some());
        // lofi's file edited by hand is foreign again.
        let mut edited = std::fs::read(dir.join("a.npy")).expect("read");
        let last = edited.len() - 1;
        edited[last] ^= 1;
        std::fs::write(dir.join("a.npy"), &edited).expect("edit");
        let read = read_video(&dir, Some(&index), "a").expect_err("edited").0;
        assert!(
            read.contains("differ from what the index recorded"),
            "{read}"
        );
        let message = write_folder(&dir, &[video("a", 4, 3)], &meta())
            .expect_err("edited a.npy")
            .0;
        assert!(message.contains("a.npy"), "{message}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_folder_of_another_lofi_writer_is_refused() {
        let dir = temp_folder("extraction");
        std::fs::create_dir_all(&dir).expect("dir");
        record::append(&dir, &Line::folder(FolderKind::Features, true)).expect("record");
        let message = write_folder(&dir, &[video("a", 4, 3)], &meta())
            .expect_err("an extraction's folder")
            .0;
        assert!(
            message.contains("a feature folder (lofi extract)"),
            "{message}"
        );
        assert!(!dir.join("a.npy").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn readers_refuse_a_folder_being_written_and_read_only_indexed_videos() {
        let dir = temp_folder("writer");
        write_folder(&dir, &[video("a", 4, 3)], &meta()).expect("write");
        assert!(check_no_writer(&dir).is_ok());
        let writer = FolderLock::exclusive(&dir, "extraction").expect("lock");
        let message = check_no_writer(&dir).expect_err("being written").0;
        assert!(
            message.contains("being written")
                && message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(writer);
        // A stray file the index does not list is not read.
        let index = read_index(&dir).expect("index").expect("present");
        std::fs::copy(dir.join("a.npy"), dir.join("stray.npy")).expect("copy");
        let message = read_video(&dir, Some(&index), "stray")
            .expect_err("not indexed")
            .0;
        assert!(
            message.contains("not in the folder's index.json"),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
