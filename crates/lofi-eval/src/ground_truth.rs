//! Ground-truth annotations in the ActivityNet layout (ActivityNet 1.2/1.3, HACS, and the common
//! THUMOS14 JSON conversion).
//!
//! The file holds every subset; evaluation looks at one. As in the official tool, the classes are
//! the labels that occur in the chosen subset, in order of first appearance, and every annotation
//! counts, duplicates included. THUMOS14 users disagree about three test videos and the
//! "Ambiguous" label, so both can be dropped explicitly, and the report says what was dropped.
//!
//! [`AnnotationFile`] is the one reader of these files for every lofi stage: `lofi eval` keeps one
//! subset of it ([`GroundTruth`]), the stages that read videos or features keep all of it
//! (lofi-video's `ground_truth` module). It takes files as people have them: `version` and
//! `taxonomy` may be missing, subsets may be spelled in any letter case, and keys it does not use
//! (`url`, `resolution`, `fps`, `label_id`, `segment(frames)`, at any level) are ignored. The
//! stages that turn video ids into file names also ask [`check_video_id`] first, so that an id such
//! as `../x` is refused by name instead of reaching outside the videos folder.

use crate::error::{EvalError, Result};
use crate::json::{parse_error, read_file, OrderedMap};
use crate::segment::Segment;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The three THUMOS14 test videos that many repositories drop (mislabelled or misaligned
/// annotations in the original release).
pub const THUMOS14_DISPUTED_TEST_VIDEOS: [&str; 3] = [
    "video_test_0000270",
    "video_test_0001292",
    "video_test_0001496",
];

/// The THUMOS14 label for segments the annotators could not assign to a class.
pub const THUMOS14_AMBIGUOUS_LABEL: &str = "Ambiguous";

/// Which part of a ground-truth file to evaluate against.
#[derive(Clone, Debug, PartialEq)]
pub struct GroundTruthOptions {
    /// The subset to keep (`validation` for ActivityNet; `test` or `Test` for THUMOS14). Matched
    /// exactly first, then case-insensitively if that is unambiguous.
    pub subset: String,
    /// Videos to drop from the ground truth; predictions for them are dropped too.
    pub exclude_videos: Vec<String>,
    /// Labels whose annotations are dropped; predictions with them are dropped too.
    pub exclude_labels: Vec<String>,
}

impl Default for GroundTruthOptions {
    fn default() -> Self {
        GroundTruthOptions {
            subset: "validation".to_string(),
            exclude_videos: Vec::new(),
            exclude_labels: Vec::new(),
        }
    }
}

/// One annotated action instance of the evaluated subset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Annotation {
    /// Index into [`GroundTruth::videos`].
    pub video: u32,
    /// Index into [`GroundTruth::classes`].
    pub class: u32,
    /// Where the action happens.
    pub segment: Segment,
}

/// One video of the evaluated subset.
#[derive(Clone, Debug, PartialEq)]
pub struct GroundTruthVideo {
    /// The video id, as the file spells it.
    pub id: String,
    /// Duration in seconds, where the file gives one.
    pub duration: Option<f64>,
    /// Its annotations: a range into [`GroundTruth::annotations`].
    pub annotations: Range<usize>,
}

/// The ground truth of one subset, ready for evaluation.
#[derive(Clone, Debug)]
pub struct GroundTruth {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// The subset name as spelled in the file.
    pub subset: String,
    /// Class names in order of first appearance in the subset.
    pub classes: Vec<String>,
    /// The subset's videos in file order, annotated or not.
    pub videos: Vec<GroundTruthVideo>,
    /// All annotations of the subset, grouped by video in file order.
    pub annotations: Vec<Annotation>,
    /// Videos dropped on request.
    pub excluded_videos: HashSet<String>,
    /// Labels dropped on request.
    pub excluded_labels: HashSet<String>,
    /// What was dropped, in words, for the report.
    pub notes: Vec<String>,
    class_index: HashMap<String, u32>,
    video_index: HashMap<String, u32>,
}

#[derive(Deserialize)]
struct RawFile {
    database: OrderedMap<DatabaseVideo>,
    /// Any JSON value (files say "VERSION 1.3", "1.3" or 1.3); absent in many THUMOS14
    /// conversions.
    #[serde(default)]
    version: Option<serde_json::Value>,
}

/// A ground-truth file as a whole: every subset, videos in file order (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct AnnotationFile {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// The file's `version`, where it has one (a non-string value as its JSON text).
    pub version: Option<String>,
    /// Every video of `database`, in file order (ids are unique).
    pub database: Vec<(String, DatabaseVideo)>,
}

impl AnnotationFile {
    /// Reads a ground-truth file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes = read_file(path)?;
        Self::from_slice(&bytes, path)
    }

    /// Parses a ground-truth file from bytes; `path` is only used in messages.
    pub fn from_slice(bytes: &[u8], path: &Path) -> Result<Self> {
        let raw: RawFile =
            serde_json::from_slice(bytes).map_err(|e| parse_error(path, bytes, e))?;
        Ok(Self::from_raw(raw, path))
    }

    fn from_raw(raw: RawFile, path: &Path) -> Self {
        let version = raw.version.map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
        AnnotationFile {
            path: path.to_path_buf(),
            version,
            database: raw.database.0,
        }
    }

    /// The subset names of the file with their video counts, sorted by name.
    pub fn subsets(&self) -> BTreeMap<&str, usize> {
        subset_counts(&self.database)
    }

    /// The file's spelling of subset `wanted`: `wanted` itself if a video has it, else the one
    /// subset equal to it up to letter case (THUMOS14 files say `Validation` and `Test`); an
    /// error listing the subsets present otherwise.
    pub fn resolve_subset(&self, wanted: &str) -> Result<String> {
        resolve_subset(&self.database, &self.path, wanted)
    }

    /// Whether the file has subset `wanted` (in the sense of [`AnnotationFile::resolve_subset`]).
    pub fn has_subset(&self, wanted: &str) -> bool {
        self.resolve_subset(wanted).is_ok()
    }

    /// Refuses the first video id that is not a safe file name ([`check_video_id`]), naming the
    /// file, the id and why. Stages that look videos or features up by id call it before any
    /// work; `lofi eval` does not (it opens no file by id, and scores what the official tool
    /// scores).
    pub fn check_video_ids(&self) -> Result<()> {
        for (id, _) in &self.database {
            if let Err(why) = check_video_id(id) {
                return Err(EvalError::entry(
                    &self.path,
                    &printable(id),
                    format!(
                        "the id is not a safe file name ({why}); rename the video and its entry"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether a video id can stand as a file name inside a folder: the reason it cannot, if so.
/// Refused: the empty id, `.` and `..`, a leading dot (hidden files, and `..x` look-alikes),
/// path separators (`/`, `\`), NUL and other control characters, and ids longer than 200 bytes
/// (file systems allow 255 bytes per name, and a `v_` prefix and an extension must fit).
/// ActivityNet's YouTube ids (letters, digits, `-`, `_`, a leading `-` included) all pass.
pub fn check_video_id(id: &str) -> std::result::Result<(), &'static str> {
    if id.is_empty() {
        return Err("it is empty");
    }
    if id == "." || id == ".." {
        return Err("it names a folder");
    }
    if id.contains(['/', '\\']) {
        return Err("it contains a path separator");
    }
    if id.starts_with('.') {
        return Err("it starts with a dot");
    }
    if id.contains('\0') {
        return Err("it contains a NUL character");
    }
    if id.chars().any(char::is_control) {
        return Err("it contains a control character");
    }
    if id.len() > 200 {
        return Err("it is longer than 200 bytes");
    }
    Ok(())
}

/// An id as it can be printed in a message (control characters escaped).
fn printable(id: &str) -> String {
    if id.chars().any(char::is_control) {
        format!("{id:?}")
    } else {
        id.to_string()
    }
}

/// One video of a ground-truth file's `database`, as the file gives it (any subset). Keys not
/// listed here (`url`, `resolution`, `fps`, ...) are ignored.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct DatabaseVideo {
    /// The subset the video belongs to (`training`, `validation`, `test`, ...).
    pub subset: String,
    /// Duration in seconds, where given.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Frame rate, where given as a number (the THUMOS14 conversion's `fps`; not used by the
    /// evaluation; a value of another type is ignored, as every key this reader does not need).
    #[serde(default, deserialize_with = "number_or_none")]
    pub fps: Option<f64>,
    /// Its annotations in file order.
    #[serde(default)]
    pub annotations: Vec<DatabaseAnnotation>,
}

/// Reads any JSON value, keeping it only if it is a number.
fn number_or_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<f64>, D::Error> {
    Ok(serde_json::Value::deserialize(deserializer)?.as_f64())
}

/// One annotation of a [`DatabaseVideo`]. Other keys (`label_id`, `segment(frames)`, ...) are
/// ignored.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct DatabaseAnnotation {
    /// `[start, end]` in seconds.
    pub segment: [f64; 2],
    /// The class name.
    pub label: String,
}

impl GroundTruth {
    /// Reads a ground-truth file and keeps the requested subset.
    pub fn from_path(path: &Path, options: &GroundTruthOptions) -> Result<Self> {
        let bytes = read_file(path)?;
        Self::from_slice(&bytes, path, options)
    }

    /// Parses ground truth from bytes; `path` is only used in messages.
    pub fn from_slice(bytes: &[u8], path: &Path, options: &GroundTruthOptions) -> Result<Self> {
        Self::from_file(AnnotationFile::from_slice(bytes, path)?, options)
    }

    /// Keeps the requested subset of a file read with [`AnnotationFile`].
    pub fn from_file(file: AnnotationFile, options: &GroundTruthOptions) -> Result<Self> {
        Self::from_videos(file.database, &file.path, options)
    }

    /// Builds the ground truth from a `database` already in memory (video id, video), in file
    /// order, with the checks and messages of [`GroundTruth::from_slice`]; `path` names the
    /// source in messages.
    pub fn from_database(
        database: Vec<(String, DatabaseVideo)>,
        path: &Path,
        options: &GroundTruthOptions,
    ) -> Result<Self> {
        let mut seen = HashSet::with_capacity(database.len());
        if let Some((id, _)) = database.iter().find(|(id, _)| !seen.insert(id.as_str())) {
            return Err(EvalError::entry(path, id, "appears twice in \"database\""));
        }
        Self::from_videos(database, path, options)
    }

    fn from_videos(
        database: Vec<(String, DatabaseVideo)>,
        path: &Path,
        options: &GroundTruthOptions,
    ) -> Result<Self> {
        let subset = resolve_subset(&database, path, &options.subset)?;
        let excluded_videos: HashSet<String> = options.exclude_videos.iter().cloned().collect();
        let excluded_labels: HashSet<String> = options.exclude_labels.iter().cloned().collect();
        let mut truth = GroundTruth {
            path: path.to_path_buf(),
            subset: subset.clone(),
            classes: Vec::new(),
            videos: Vec::new(),
            annotations: Vec::new(),
            excluded_videos,
            excluded_labels,
            notes: Vec::new(),
            class_index: HashMap::new(),
            video_index: HashMap::new(),
        };
        let (mut dropped_videos, mut dropped_annotations) = (0usize, 0usize);
        for (id, video) in database {
            if video.subset != subset {
                continue;
            }
            if truth.excluded_videos.contains(&id) {
                dropped_videos += 1;
                continue;
            }
            if let Some(duration) = video.duration {
                if !duration.is_finite() || duration < 0.0 {
                    return Err(EvalError::entry(
                        path,
                        &id,
                        format!("duration {duration} is not a non-negative number"),
                    ));
                }
            }
            let video_number = truth.videos.len() as u32;
            let first = truth.annotations.len();
            for (number, annotation) in video.annotations.into_iter().enumerate() {
                let [start, end] = annotation.segment;
                check_segment(path, &id, number, start, end)?;
                if truth.excluded_labels.contains(&annotation.label) {
                    dropped_annotations += 1;
                    continue;
                }
                let class = truth.intern_class(annotation.label);
                truth.annotations.push(Annotation {
                    video: video_number,
                    class,
                    segment: Segment::new(start, end),
                });
            }
            truth.video_index.insert(id.clone(), video_number);
            truth.videos.push(GroundTruthVideo {
                id,
                duration: video.duration,
                annotations: first..truth.annotations.len(),
            });
        }
        if dropped_videos > 0 {
            truth.notes.push(format!(
                "dropped {dropped_videos} excluded video(s) from the ground truth"
            ));
        }
        if dropped_annotations > 0 {
            let mut labels: Vec<&str> = truth.excluded_labels.iter().map(String::as_str).collect();
            labels.sort_unstable();
            truth.notes.push(format!(
                "dropped {dropped_annotations} annotation(s) labelled {}",
                labels.join(", ")
            ));
        }
        if truth.annotations.is_empty() {
            return Err(EvalError::format(
                path,
                format!("subset {subset:?} has no annotations to evaluate against"),
            ));
        }
        Ok(truth)
    }

    fn intern_class(&mut self, label: String) -> u32 {
        if let Some(&class) = self.class_index.get(&label) {
            return class;
        }
        let class = self.classes.len() as u32;
        self.class_index.insert(label.clone(), class);
        self.classes.push(label);
        class
    }

    /// A copy that keeps only the annotations with `keep[i]` true; classes and videos stay (a
    /// class may be left without annotations).
    pub(crate) fn retain_annotations(&self, keep: &[bool]) -> GroundTruth {
        let mut out = self.clone();
        out.annotations.clear();
        for (video, kept) in self.videos.iter().zip(out.videos.iter_mut()) {
            let first = out.annotations.len();
            out.annotations.extend(
                video
                    .annotations
                    .clone()
                    .filter(|&a| keep[a])
                    .map(|a| self.annotations[a]),
            );
            kept.annotations = first..out.annotations.len();
        }
        out
    }

    /// The class index of a label, if it is a class of the subset.
    pub fn class_of(&self, label: &str) -> Option<u32> {
        self.class_index.get(label).copied()
    }

    /// The index of a video of the subset.
    pub fn video_of(&self, id: &str) -> Option<u32> {
        self.video_index.get(id).copied()
    }

    /// The annotations of one video.
    pub fn annotations_of(&self, video: u32) -> &[Annotation] {
        &self.annotations[self.videos[video as usize].annotations.clone()]
    }

    /// The videos that have at least one annotation, in file order (the official tool's video
    /// list for proposal recall).
    pub fn annotated_videos(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.videos.len() as u32).filter(|&v| !self.videos[v as usize].annotations.is_empty())
    }

    /// The class name closest to `label` (case or spacing differences), for error hints.
    pub(crate) fn closest_class(&self, label: &str) -> Option<&str> {
        let squash = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect()
        };
        let wanted = squash(label);
        self.classes
            .iter()
            .find(|class| squash(class) == wanted)
            .map(String::as_str)
    }
}

fn check_segment(path: &Path, video: &str, number: usize, start: f64, end: f64) -> Result<()> {
    if !start.is_finite() || !end.is_finite() {
        return Err(EvalError::entry(
            path,
            video,
            format!("annotation {number}: segment [{start}, {end}] is not finite"),
        ));
    }
    if end < start {
        return Err(EvalError::entry(
            path,
            video,
            format!("annotation {number}: segment end {end} is before start {start}"),
        ));
    }
    Ok(())
}

fn subset_counts(database: &[(String, DatabaseVideo)]) -> BTreeMap<&str, usize> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, video) in database {
        *counts.entry(video.subset.as_str()).or_default() += 1;
    }
    counts
}

fn resolve_subset(
    database: &[(String, DatabaseVideo)],
    path: &Path,
    wanted: &str,
) -> Result<String> {
    let counts = subset_counts(database);
    if counts.contains_key(wanted) {
        return Ok(wanted.to_string());
    }
    let folded: Vec<&str> = counts
        .keys()
        .copied()
        .filter(|name| name.eq_ignore_ascii_case(wanted))
        .collect();
    if let [only] = folded.as_slice() {
        return Ok(only.to_string());
    }
    let available = if counts.is_empty() {
        "none (the database is empty)".to_string()
    } else {
        counts
            .iter()
            .map(|(name, n)| format!("{name:?} ({n} videos)"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(EvalError::UnknownSubset {
        path: path.to_path_buf(),
        subset: wanted.to_string(),
        available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GT: &str = r#"{"version": "1.3", "taxonomy": [], "database": {
        "a": {"subset": "validation", "duration": 10.0, "url": "x",
              "annotations": [{"segment": [1, 3], "label": "Run"}, {"segment": [4, 8], "label": "Jump"}]},
        "b": {"subset": "training", "duration": 5.0,
              "annotations": [{"segment": [0, 1], "label": "Swim"}]},
        "c": {"subset": "validation", "duration": 7.0,
              "annotations": [{"segment": [2, 5], "label": "Jump"}, {"segment": [2, 5], "label": "Jump"}]},
        "d": {"subset": "validation", "duration": 3.0, "annotations": []}
    }}"#;

    fn read(text: &str, options: &GroundTruthOptions) -> Result<GroundTruth> {
        GroundTruth::from_slice(text.as_bytes(), Path::new("gt.json"), options)
    }

    #[test]
    fn keeps_subset_classes_in_first_appearance_order_and_duplicates() {
        let truth = read(GT, &GroundTruthOptions::default()).expect("valid ground truth");
        assert_eq!(truth.classes, ["Run", "Jump"]);
        assert_eq!(truth.videos.len(), 3);
        assert_eq!(truth.annotations.len(), 4);
        assert_eq!(truth.annotated_videos().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(truth.annotations_of(1).len(), 2);
        assert_eq!(truth.class_of("Swim"), None);
        assert_eq!(truth.video_of("b"), None);
    }

    #[test]
    fn subset_matches_case_insensitively_and_unknown_subset_lists_the_others() {
        let options = GroundTruthOptions {
            subset: "Validation".into(),
            ..Default::default()
        };
        assert_eq!(read(GT, &options).expect("folded").subset, "validation");
        let options = GroundTruthOptions {
            subset: "test".into(),
            ..Default::default()
        };
        let message = read(GT, &options).expect_err("no test subset").to_string();
        assert!(message.contains("\"training\" (1 videos)"), "{message}");
        assert!(message.starts_with("gt.json"), "{message}");
    }

    #[test]
    fn bad_segments_and_missing_keys_name_file_and_video() {
        let reversed = GT.replace("[4, 8]", "[8, 4]");
        let message = read(&reversed, &GroundTruthOptions::default())
            .expect_err("reversed segment")
            .to_string();
        assert!(
            message.contains("gt.json: video a: annotation 1"),
            "{message}"
        );
        let missing = GT.replace("\"subset\": \"training\", ", "");
        let message = read(&missing, &GroundTruthOptions::default())
            .expect_err("missing subset")
            .to_string();
        assert!(
            message.contains("video b") && message.contains("subset"),
            "{message}"
        );
        let message = read("{\"db\": {}}", &GroundTruthOptions::default())
            .expect_err("no database")
            .to_string();
        assert!(message.contains("database"), "{message}");
        let message = read("  ", &GroundTruthOptions::default())
            .expect_err("empty")
            .to_string();
        assert!(message.contains("empty"), "{message}");
    }

    #[test]
    fn in_memory_database_equals_the_file_and_refuses_repeated_ids() {
        let from_file = read(GT, &GroundTruthOptions::default()).expect("valid");
        let raw: RawFile = serde_json::from_str(GT).expect("valid JSON");
        let built = GroundTruth::from_database(
            raw.database.0.clone(),
            Path::new("gt.json"),
            &GroundTruthOptions::default(),
        )
        .expect("valid");
        assert_eq!(
            (built.classes, built.videos, built.annotations),
            (from_file.classes, from_file.videos, from_file.annotations)
        );
        let mut twice = raw.database.0;
        twice.push(twice[0].clone());
        let message = GroundTruth::from_database(
            twice,
            Path::new("<ground truth dict>"),
            &GroundTruthOptions::default(),
        )
        .expect_err("repeated id")
        .to_string();
        assert!(message.contains("video a: appears twice"), "{message}");
    }

    #[test]
    fn files_as_people_have_them_are_read() {
        // No version, no taxonomy, THUMOS14's capitalised subsets, extra keys at the top, video
        // and annotation levels (the common THUMOS14 conversion's fps, label_id and frames).
        let text = r#"{"extra": 1, "database": {
            "video_validation_1": {"subset": "Validation", "duration": 20.0, "fps": 30.0,
                "url": "", "annotations": [{"segment": [1.5, 3.0], "segment(frames)": [45, 90],
                "label": "Diving", "label_id": 7}]},
            "video_test_1": {"subset": "Test", "duration": 10.0, "fps": "30",
                "annotations": [{"segment": [2, 4], "label": "Diving", "label_id": 7}]}
        }}"#;
        let file =
            AnnotationFile::from_slice(text.as_bytes(), Path::new("th14.json")).expect("accepted");
        assert_eq!(file.version, None);
        assert_eq!(file.database[0].1.fps, Some(30.0));
        assert_eq!(file.database[1].1.fps, None, "a string fps is ignored");
        assert_eq!(
            file.resolve_subset("validation").expect("folded"),
            "Validation"
        );
        assert!(file.has_subset("TEST") && !file.has_subset("training"));
        assert_eq!(
            file.subsets().into_iter().collect::<Vec<_>>(),
            [("Test", 1), ("Validation", 1)]
        );
        file.check_video_ids().expect("safe ids");
        let truth = GroundTruth::from_file(
            file,
            &GroundTruthOptions {
                subset: "test".into(),
                ..Default::default()
            },
        )
        .expect("subset");
        assert_eq!(
            (truth.subset.as_str(), truth.annotations.len()),
            ("Test", 1)
        );
        let numeric =
            AnnotationFile::from_slice(br#"{"version": 1.3, "database": {}}"#, Path::new("v.json"))
                .expect("numeric version");
        assert_eq!(numeric.version.as_deref(), Some("1.3"));
    }

    #[test]
    fn unsafe_video_ids_are_refused_by_name() {
        for (id, why) in [
            ("../etc/passwd", "path separator"),
            ("..", "folder"),
            (".hidden", "starts with a dot"),
            ("a\\\\b", "path separator"),
            ("a\\u0000b", "NUL"),
            ("", "empty"),
        ] {
            let text = format!(
                r#"{{"database": {{"ok": {{"subset": "training", "annotations": []}},
                    "{id}": {{"subset": "training", "annotations": []}}}}}}"#
            );
            let file = AnnotationFile::from_slice(text.as_bytes(), Path::new("gt.json"))
                .expect("valid JSON");
            let message = file.check_video_ids().expect_err(id).to_string();
            assert!(message.starts_with("gt.json: video "), "{message}");
            assert!(
                message.contains(why) && message.contains("not a safe file name"),
                "{message}"
            );
        }
        for id in [
            "-0fJUeZ5Ddc",
            "v_abc_123",
            "video_test_0000004",
            "a.b",
            "x..y",
        ] {
            assert_eq!(check_video_id(id), Ok(()), "{id}");
        }
        assert!(check_video_id(&"x".repeat(201)).is_err());
    }

    #[test]
    fn exclusions_drop_videos_and_labels_and_say_so() {
        let options = GroundTruthOptions {
            exclude_videos: vec!["c".into()],
            exclude_labels: vec!["Run".into()],
            ..Default::default()
        };
        let truth = read(GT, &options).expect("valid");
        assert_eq!(truth.classes, ["Jump"]);
        assert_eq!(truth.annotations.len(), 1);
        assert_eq!(truth.notes.len(), 2, "{:?}", truth.notes);
    }
}
