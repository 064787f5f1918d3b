//! The ActivityNet annotation layout, read and written.
//!
//! The synthetic benchmark writes it; `lofi probe`, the loaders and every stage that reads videos
//! or features read it. Reading goes through lofi-eval's [`AnnotationFile`], the one reader of
//! these files in lofi, so every stage accepts what `lofi eval` accepts (no `version`, subsets in
//! any letter case, extra keys) and refuses what it refuses (a repeated video id, bad JSON), with
//! the same messages. On top of it, this module refuses what only a stage that opens files needs
//! refused: a video id that is not a safe file name, and a video without a duration.
//!
//! Writing follows the official ActivityNet evaluator, which refuses a ground truth without
//! `database`, `taxonomy` and `version`: [`GroundTruth::write`] always writes all three.

use crate::error::{MissingVideos, VideoError, VideoResult};
use lofi_eval::AnnotationFile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `{"version": ..., "taxonomy": [...], "database": {id: entry}}`. Read it with
/// [`GroundTruth::read`] (there is deliberately no `Deserialize`: lofi-eval's reader is the only
/// one).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroundTruth {
    /// Free-form version string (absent in many THUMOS14 conversions; written as `null` when
    /// unknown, so that the key is always there).
    pub version: Option<String>,
    /// ActivityNet's class tree. Written for the official evaluator (which insists on the key);
    /// lofi takes its classes from the annotations, so reading ignores it.
    pub taxonomy: Vec<TaxonomyNode>,
    /// Videos by id, sorted (so output is byte-stable).
    pub database: BTreeMap<String, VideoEntry>,
}

/// One node of ActivityNet's `taxonomy` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaxonomyNode {
    /// This node's id.
    pub node_id: u64,
    /// Its name (a class name for the leaves).
    pub node_name: String,
    /// The parent's id (`null` for the root).
    pub parent_id: Option<u64>,
    /// The parent's name (`null` for the root).
    pub parent_name: Option<String>,
}

impl TaxonomyNode {
    /// A flat tree: a root named "Root" (id 0) with one leaf per class (ids 1, 2, ...), the
    /// shape the official evaluator accepts.
    pub fn flat(classes: &[&str]) -> Vec<TaxonomyNode> {
        let root = TaxonomyNode {
            node_id: 0,
            node_name: "Root".into(),
            parent_id: None,
            parent_name: None,
        };
        std::iter::once(root)
            .chain(classes.iter().enumerate().map(|(i, c)| TaxonomyNode {
                node_id: i as u64 + 1,
                node_name: (*c).to_string(),
                parent_id: Some(0),
                parent_name: Some("Root".into()),
            }))
            .collect()
    }
}

/// One annotated video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoEntry {
    /// `training`, `validation` or `testing` (THUMOS14: `Validation`, `Test`), as the file spells
    /// it; compare through [`GroundTruth::videos_of`], which matches the letter case as
    /// `lofi eval` does.
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
    /// Read an annotation file through lofi-eval's reader (see the module docs): every video id
    /// must be a safe file name and every video must have a duration.
    pub fn read(path: &Path) -> VideoResult<Self> {
        Self::from_file(AnnotationFile::from_path(path)?)
    }

    /// [`GroundTruth::read`] from bytes in memory; `path` names them in messages.
    pub fn from_slice(bytes: &[u8], path: &Path) -> VideoResult<Self> {
        Self::from_file(AnnotationFile::from_slice(bytes, path)?)
    }

    /// The stages' view of a file read by lofi-eval, with the checks of [`GroundTruth::read`].
    pub fn from_file(file: AnnotationFile) -> VideoResult<Self> {
        file.check_video_ids()?;
        let mut database = BTreeMap::new();
        for (id, video) in file.database {
            let Some(duration) = video.duration else {
                return Err(VideoError::Annotation {
                    path: file.path,
                    video: id,
                    message: "no \"duration\" (seconds): the stages that read videos or \
                              features need each video's duration"
                        .into(),
                });
            };
            let annotations = video
                .annotations
                .into_iter()
                .map(|a| Annotation {
                    segment: a.segment,
                    label: a.label,
                })
                .collect();
            database.insert(
                id,
                VideoEntry {
                    subset: video.subset,
                    duration,
                    fps: video.fps,
                    annotations,
                },
            );
        }
        Ok(GroundTruth {
            version: file.version,
            taxonomy: Vec::new(),
            database,
        })
    }

    /// The file's spelling of subset `wanted`: exact, else the one subset equal to it up to
    /// letter case (as `lofi eval` matches it); `None` if the file has no such subset.
    pub fn subset_name(&self, wanted: &str) -> Option<&str> {
        let mut folded = None;
        let mut ambiguous = false;
        for entry in self.database.values() {
            if entry.subset == wanted {
                return Some(entry.subset.as_str());
            }
            if entry.subset.eq_ignore_ascii_case(wanted) {
                match folded {
                    Some(name) if name != entry.subset.as_str() => ambiguous = true,
                    _ => folded = Some(entry.subset.as_str()),
                }
            }
        }
        folded.filter(|_| !ambiguous)
    }

    /// One line on the unusable segments of subset `wanted`, `None` when every segment lies in
    /// its video: how many are reversed or empty (`end <= start`) and how many end after their
    /// video's duration, with the likely cause when most do (segments given in frames, not
    /// seconds). Said once per run instead of once per segment.
    pub fn segment_problems(&self, wanted: &str) -> Option<String> {
        let (mut total, mut reversed, mut after) = (0usize, 0usize, 0usize);
        for (_, entry) in self.videos_of(wanted) {
            for a in &entry.annotations {
                total += 1;
                let [start, end] = a.segment;
                if end <= start {
                    reversed += 1;
                } else if entry.duration.is_finite() && end > entry.duration + 1e-6 {
                    after += 1;
                }
            }
        }
        let mut parts = Vec::new();
        if reversed > 0 {
            parts.push(format!(
                "{reversed} of {total} annotations end where or before they start"
            ));
        }
        if after > 0 {
            let hint = if after * 2 > total {
                "; segments in frames instead of seconds?"
            } else {
                " (clipped to the video)"
            };
            parts.push(format!(
                "{after} of {total} annotations end after their video{hint}"
            ));
        }
        (!parts.is_empty()).then(|| format!("subset {wanted:?}: {}", parts.join("; ")))
    }

    /// The videos of subset `wanted` (matched as [`GroundTruth::subset_name`] does), sorted by
    /// id; empty if the file has no such subset.
    pub fn videos_of<'a>(
        &'a self,
        wanted: &str,
    ) -> impl Iterator<Item = (&'a String, &'a VideoEntry)> + 'a {
        let name = self.subset_name(wanted).map(str::to_owned);
        self.database
            .iter()
            .filter(move |(_, e)| name.as_deref() == Some(e.subset.as_str()))
    }

    /// The subsets to train on and to evaluate on, spelled as the file spells them: the one
    /// rule of every stage (pre-training, `lofi train`, `lofi train-head`). Names given are looked
    /// up in any letter case. Otherwise: `training` and `validation` (ActivityNet, HACS); a file
    /// without `training` but with `validation` and `test` is THUMOS14's layout, whose common
    /// practice trains on `Validation` and tests on `Test`, so it trains on `validation` and
    /// evaluates on `test`. The error is a sentence for a message about the file.
    pub fn choose_subsets(
        &self,
        train: Option<&str>,
        evaluation: Option<&str>,
    ) -> Result<(String, Option<String>), String> {
        let find = |wanted: &str| -> Result<String, String> {
            self.subset_name(wanted).map(str::to_owned).ok_or_else(|| {
                format!(
                    "no video of subset {wanted:?} (the file has: {})",
                    self.describe_subsets()
                )
            })
        };
        let thumos = self.subset_name("training").is_none()
            && self.subset_name("validation").is_some()
            && self.subset_name("test").is_some();
        let train = match train {
            Some(name) => find(name)?,
            None if thumos => find("validation")?,
            None => find("training")?,
        };
        let evaluation = match evaluation {
            Some(name) => Some(find(name)?),
            None if thumos => self.subset_name("test").map(str::to_owned),
            None => self.subset_name("validation").map(str::to_owned),
        };
        if evaluation.as_ref() == Some(&train) {
            return Err(format!(
                "subset {train:?} cannot be both trained on and evaluated on"
            ));
        }
        Ok((train, evaluation))
    }

    /// The subsets of the file with their video counts, as `"name" (N videos)` joined by
    /// commas (for messages).
    pub fn describe_subsets(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for entry in self.database.values() {
            *counts.entry(entry.subset.as_str()).or_default() += 1;
        }
        if counts.is_empty() {
            return "none (the database is empty)".into();
        }
        counts
            .iter()
            .map(|(name, n)| format!("{name:?} ({n} videos)"))
            .collect::<Vec<_>>()
            .join(", ")
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

/// What [`locate_videos`] found: `(id, file)` pairs, and the ids without a file.
pub type Located = (Vec<(String, PathBuf)>, Vec<String>);

/// The videos of `ids` found in `dir` ([`find_video`]), in the order given, and the ids that
/// have no file there. A missing video is an error that counts and names every missing one
/// ([`VideoError::MissingVideos`]), unless `skip_missing` is set: then the missing ids are
/// returned (and logged) and the caller goes on without them. `ground_truth` names the file the
/// ids come from, in messages.
pub fn locate_videos<'a>(
    ground_truth: &Path,
    dir: &Path,
    ids: impl IntoIterator<Item = &'a str>,
    skip_missing: bool,
) -> VideoResult<Located> {
    if !dir.is_dir() {
        return Err(VideoError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such videos folder"),
        ));
    }
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for id in ids {
        match find_video(dir, id) {
            Some(path) => found.push((id.to_string(), path)),
            None => missing.push(id.to_string()),
        }
    }
    if !missing.is_empty() {
        let total = found.len() + missing.len();
        if !skip_missing {
            return Err(VideoError::MissingVideos(Box::new(MissingVideos {
                ground_truth: ground_truth.to_path_buf(),
                videos: dir.to_path_buf(),
                total,
                missing,
            })));
        }
        tracing::warn!(
            "skipping {} of {total} videos listed in {} that are not in {} (--skip-missing-videos): {}",
            missing.len(),
            ground_truth.display(),
            dir.display(),
            name_list(&missing)
        );
    }
    Ok((found, missing))
}

/// Up to 20 ids joined by commas, then how many more.
pub(crate) fn name_list(ids: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut text = ids
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        text.push_str(&format!(" and {} more", ids.len() - SHOWN));
    }
    text
}

/// Whether subset `name` is a test set (`test`, `testing`, in any letter case): no epoch may be
/// chosen on it, or the test set would leak into the model.
pub fn is_test_subset(name: &str) -> bool {
    name.eq_ignore_ascii_case("test") || name.eq_ignore_ascii_case("testing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_activitynet_layout() -> Result<(), Box<dyn std::error::Error>> {
        let text = r#"{"version": "VERSION 1.3", "database": {"abc": {"subset": "validation",
            "duration": 12.5, "url": "https://x", "resolution": "640x360",
            "annotations": [{"segment": [1.0, 2.5], "label": "Jump"}]}}}"#;
        let gt = GroundTruth::from_slice(text.as_bytes(), Path::new("gt.json"))?;
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
    fn reads_files_without_version_and_matches_subsets_in_any_case() -> VideoResult<()> {
        let text = br#"{"database": {
            "v1": {"subset": "Validation", "duration": 9.0, "fps": 30,
                   "annotations": [{"segment": [1, 2], "segment(frames)": [30, 60],
                                    "label": "Diving", "label_id": 3}]},
            "v2": {"subset": "Test", "duration": 4.0}}}"#;
        let gt = GroundTruth::from_slice(text, Path::new("th14.json"))?;
        assert_eq!(gt.version, None);
        assert_eq!(gt.database["v1"].fps, Some(30.0));
        assert_eq!(gt.subset_name("validation"), Some("Validation"));
        assert_eq!(gt.videos_of("TEST").count(), 1);
        assert_eq!(gt.videos_of("training").count(), 0);
        assert!(gt.describe_subsets().contains("\"Test\" (1 videos)"));
        let no_duration = br#"{"database": {"v": {"subset": "training"}}}"#;
        let message = GroundTruth::from_slice(no_duration, Path::new("gt.json"))
            .expect_err("no duration")
            .to_string();
        assert!(
            message.starts_with("gt.json: video v: no \"duration\""),
            "{message}"
        );
        let unsafe_id = br#"{"database": {"../v": {"subset": "training", "duration": 1}}}"#;
        let message = GroundTruth::from_slice(unsafe_id, Path::new("gt.json"))
            .expect_err("unsafe id")
            .to_string();
        assert!(
            message.contains("video ../v: the id is not a safe file name"),
            "{message}"
        );
        Ok(())
    }

    #[test]
    fn missing_videos_are_counted_and_named_unless_skipped() -> VideoResult<()> {
        let dir = tempfile::tempdir().map_err(|e| VideoError::io("tmp", e))?;
        std::fs::write(dir.path().join("a.mp4"), b"x").map_err(|e| VideoError::io("a", e))?;
        let gt = Path::new("gt.json");
        let message = locate_videos(gt, dir.path(), ["a", "b", "c"], false)
            .expect_err("two missing")
            .to_string();
        assert!(
            message.starts_with("2 of 3 videos listed in gt.json"),
            "{message}"
        );
        assert!(
            message.contains(": b, c;") && message.contains("--skip-missing-videos"),
            "{message}"
        );
        let (found, missing) = locate_videos(gt, dir.path(), ["a", "b", "c"], true)?;
        assert_eq!(
            (found.len(), missing),
            (1, vec!["b".to_string(), "c".to_string()])
        );
        let many: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
        let message = locate_videos(gt, dir.path(), many.iter().map(String::as_str), false)
            .expect_err("all missing")
            .to_string();
        assert!(message.contains("m19 and 5 more"), "{message}");
        assert!(locate_videos(gt, &dir.path().join("none"), ["a"], false).is_err());
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

    #[test]
    fn one_subset_rule_finds_thumos14s_layout_and_refuses_a_train_test_overlap() -> VideoResult<()>
    {
        let gt = |subsets: &[&str]| {
            let db: Vec<String> = subsets
                .iter()
                .enumerate()
                .map(|(i, s)| format!("\"v{i}\": {{\"subset\": \"{s}\", \"duration\": 5.0}}"))
                .collect();
            GroundTruth::from_slice(
                format!("{{\"database\": {{{}}}}}", db.join(",")).as_bytes(),
                Path::new("gt.json"),
            )
        };
        let anet = gt(&["training", "validation", "testing"])?;
        assert_eq!(
            anet.choose_subsets(None, None),
            Ok(("training".into(), Some("validation".into())))
        );
        let thumos = gt(&["Validation", "Test"])?;
        assert_eq!(
            thumos.choose_subsets(None, None),
            Ok(("Validation".into(), Some("Test".into())))
        );
        assert_eq!(
            thumos.choose_subsets(Some("VALIDATION"), Some("test")),
            Ok(("Validation".into(), Some("Test".into())))
        );
        assert!(thumos.choose_subsets(Some("test"), Some("Test")).is_err());
        let e = thumos
            .choose_subsets(Some("training"), None)
            .expect_err("none");
        assert!(e.contains("\"Validation\" (1 videos)"), "{e}");
        assert!(is_test_subset("Test") && is_test_subset("testing"));
        assert!(!is_test_subset("validation") && !is_test_subset("Validation"));
        Ok(())
    }
}
