//! Detection and proposal files: fast reading for evaluation, and plain owned types for writing.
//!
//! An ActivityNet-sized detection file holds about a million entries. The evaluation reader scans
//! it once (see `scan`) straight into a compact table (video index, class index, score, segment),
//! borrowing labels from the input buffer instead of allocating a string per entry, and checks
//! every entry on the way: finite score, finite segment with `end >= start`, a label the ground
//! truth knows. The
//! owned types ([`DetectionFile`], [`ProposalFile`]) are for the tools that produce such files.

use crate::error::{EvalError, Result};
use crate::ground_truth::GroundTruth;
use crate::json::{parse_error, read_file, write_json_atomic, OrderedMap};
use crate::scan::Scanner;
use crate::segment::Segment;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What a prediction file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredictionKind {
    /// Labelled detections: every entry needs a `label` that is a class of the ground truth.
    Detections,
    /// Class-agnostic proposals: a `label`, if present, is ignored.
    Proposals,
}

/// One prediction, compacted for evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Index into [`Predictions::videos`].
    pub video: u32,
    /// Class index into [`GroundTruth::classes`]; [`Prediction::NO_CLASS`] for proposals.
    pub class: u32,
    /// Confidence; higher is more confident.
    pub score: f64,
    /// Predicted interval.
    pub segment: Segment,
}

impl Prediction {
    /// The class of a proposal.
    pub const NO_CLASS: u32 = u32::MAX;
}

/// A video named in a prediction file.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictedVideo {
    /// The video id as spelled in the file.
    pub id: String,
    /// The matching ground-truth video of the evaluated subset, if any.
    pub truth: Option<u32>,
}

/// A prediction file read against a ground truth.
#[derive(Clone, Debug)]
pub struct Predictions {
    /// The file it was read from.
    pub path: PathBuf,
    /// Videos in file order.
    pub videos: Vec<PredictedVideo>,
    /// All kept predictions, in file order.
    pub items: Vec<Prediction>,
    /// Predictions dropped because their video or label was excluded from the ground truth.
    pub dropped: usize,
    /// The file's `external_data` entry, if any (`lofi detect` states there which video-level
    /// class scores it fused).
    pub external_data: Option<serde_json::Value>,
}

impl Predictions {
    /// Reads a detection or proposal file, checking each entry against `truth`.
    pub fn from_path(path: &Path, truth: &GroundTruth, kind: PredictionKind) -> Result<Self> {
        let bytes = read_file(path)?;
        Self::from_slice(&bytes, path, truth, kind)
    }

    /// Parses predictions from bytes; `path` is only used in messages.
    pub fn from_slice(
        bytes: &[u8],
        path: &Path,
        truth: &GroundTruth,
        kind: PredictionKind,
    ) -> Result<Self> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(EvalError::format(path, "the file is empty"));
        }
        let mut reader = Reader {
            builder: PredictionsBuilder::new(path, truth, kind).with_capacity(bytes.len() / 80),
        };
        let mut scanner = Scanner::new(bytes, path)?;
        let mut found = false;
        let mut external_data = None;
        scanner.object("an object with a \"results\" key", |s, key| {
            if key == "external_data" {
                let text = s.raw_value()?;
                external_data = Some(
                    serde_json::from_str(text)
                        .map_err(|e| s.error(format!("\"external_data\": {e}")))?,
                );
                Ok(())
            } else if key != "results" {
                s.skip_value()
            } else if found {
                // Python's json keeps the last copy, a streaming reader the first: refuse.
                Err(s.error(
                    "the \"results\" key appears twice (JSON readers disagree on which copy \
                     counts)",
                ))
            } else {
                found = true;
                reader.results(s)
            }
        })?;
        scanner.finish()?;
        if !found {
            return Err(EvalError::format(path, "missing the \"results\" key"));
        }
        let mut predictions = reader.builder.finish();
        predictions.external_data = external_data;
        Ok(predictions)
    }

    /// Which video-level class scores the file says it used, from `external_data.details` (or
    /// the whole entry when it has no `details`).
    pub fn class_score_source(&self) -> Option<String> {
        let data = self.external_data.as_ref()?;
        match data.get("details").and_then(serde_json::Value::as_str) {
            Some(details) => Some(details.to_string()),
            None if data.as_object().is_some_and(|o| o.is_empty()) || data.is_null() => None,
            None => Some(data.to_string()),
        }
    }

    /// How many videos of the file are not videos of the evaluated subset.
    pub fn unknown_videos(&self) -> impl Iterator<Item = &PredictedVideo> {
        self.videos.iter().filter(|v| v.truth.is_none())
    }
}

/// Builds [`Predictions`] entry by entry, with the checks and messages of the file reader.
///
/// The JSON reader feeds it, and so can any other source of predictions (the Python bindings
/// walk a dict or the columns of a table): every entry gets the same checks (finite score,
/// finite segment with `end >= start`, a label the ground truth knows, with a "did you mean"
/// hint) and every error names `path`, the video and the entry number.
pub struct PredictionsBuilder<'t> {
    path: PathBuf,
    truth: &'t GroundTruth,
    kind: PredictionKind,
    seen: HashSet<String>,
    output: Predictions,
}

/// A video started with [`PredictionsBuilder::video`], to which entries are added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoSlot {
    index: u32,
    excluded: bool,
}

impl<'t> PredictionsBuilder<'t> {
    /// An empty set of predictions read against `truth`; `path` names the source in messages.
    pub fn new(path: &Path, truth: &'t GroundTruth, kind: PredictionKind) -> Self {
        PredictionsBuilder {
            path: path.to_path_buf(),
            truth,
            kind,
            seen: HashSet::new(),
            output: Predictions {
                path: path.to_path_buf(),
                videos: Vec::new(),
                items: Vec::new(),
                dropped: 0,
                external_data: None,
            },
        }
    }

    /// Reserves room for about `entries` predictions.
    pub fn with_capacity(mut self, entries: usize) -> Self {
        self.output.items.reserve(entries);
        self
    }

    /// Starts the predictions of video `id`; a video given twice is an error, as in a file.
    pub fn video(&mut self, id: &str) -> Result<VideoSlot> {
        if !self.seen.insert(id.to_string()) {
            return Err(EvalError::entry(
                &self.path,
                id,
                "appears twice in \"results\" (JSON readers disagree on which copy counts)",
            ));
        }
        let index = self.output.videos.len() as u32;
        self.output.videos.push(PredictedVideo {
            truth: self.truth.video_of(id),
            id: id.to_string(),
        });
        Ok(VideoSlot {
            index,
            excluded: self.truth.excluded_videos.contains(id),
        })
    }

    /// Checks and adds entry `number` of a video: its fields as found (`None` when missing).
    pub fn entry(
        &mut self,
        video: VideoSlot,
        number: usize,
        label: Option<&str>,
        score: Option<f64>,
        segment: Option<[f64; 2]>,
    ) -> Result<()> {
        let id = &self.output.videos[video.index as usize].id;
        let entry = |message: String| {
            EvalError::entry(&self.path, id, format!("entry {number}: {message}"))
        };
        let score = score.ok_or_else(|| entry("has no \"score\"".into()))?;
        let [start, end] = segment.ok_or_else(|| entry("has no \"segment\"".into()))?;
        if !score.is_finite() {
            return Err(entry(format!("score {score} is not finite")));
        }
        if !start.is_finite() || !end.is_finite() {
            return Err(entry(format!("segment [{start}, {end}] is not finite")));
        }
        if end < start {
            return Err(entry(format!("segment end {end} is before start {start}")));
        }
        let class = match self.kind {
            PredictionKind::Proposals => Prediction::NO_CLASS,
            PredictionKind::Detections => {
                let Some(label) = label else {
                    return Err(entry(
                        "has no \"label\" (detections need one; use `lofi eval proposals` for \
                         class-agnostic proposals)"
                            .into(),
                    ));
                };
                match self.truth.class_of(label) {
                    Some(class) => class,
                    None if self.truth.excluded_labels.contains(label) => {
                        self.output.dropped += 1;
                        return Ok(());
                    }
                    None => {
                        let hint = self
                            .truth
                            .closest_class(label)
                            .map(|c| format!(" (did you mean {c:?}?)"))
                            .unwrap_or_default();
                        return Err(EvalError::UnknownLabel {
                            path: self.path.clone(),
                            video: id.clone(),
                            label: label.to_string(),
                            subset: self.truth.subset.clone(),
                            hint,
                        });
                    }
                }
            }
        };
        if video.excluded {
            self.output.dropped += 1;
            return Ok(());
        }
        self.output.items.push(Prediction {
            video: video.index,
            class,
            score,
            segment: Segment::new(start, end),
        });
        Ok(())
    }

    /// The predictions built so far.
    pub fn finish(self) -> Predictions {
        self.output
    }
}

/// Reads the `results` object into compact predictions, checking each entry.
struct Reader<'t> {
    builder: PredictionsBuilder<'t>,
}

/// One entry's fields as found in the file.
#[derive(Default)]
struct RawEntry<'a> {
    label: Option<Cow<'a, str>>,
    score: Option<f64>,
    segment: Option<[f64; 2]>,
}

impl Reader<'_> {
    fn results(&mut self, scanner: &mut Scanner<'_>) -> Result<()> {
        scanner.object(
            "an object mapping video ids to lists of predictions",
            |s, id| {
                let slot = self.builder.video(&id)?;
                s.array("a list of predictions", |s, number| {
                    let raw = Self::entry(s).map_err(|e| in_entry(e, &id, number))?;
                    self.builder
                        .entry(slot, number, raw.label.as_deref(), raw.score, raw.segment)
                })
                .map_err(|e| in_entry(e, &id, usize::MAX))
            },
        )
    }

    fn entry<'t>(scanner: &mut Scanner<'t>) -> Result<RawEntry<'t>> {
        let mut raw = RawEntry::default();
        scanner.object("a prediction object", |s, key| {
            match key.as_ref() {
                "label" => raw.label = if s.null() { None } else { Some(s.string()?) },
                "score" => raw.score = Some(s.number()?),
                "segment" => {
                    let mut ends = [0.0; 2];
                    let mut count = 0;
                    s.array("a segment [start, end]", |s, i| {
                        let value = s.number()?;
                        if i < 2 {
                            ends[i] = value;
                        }
                        count = i + 1;
                        Ok(())
                    })?;
                    if count != 2 {
                        return Err(s.error(format!(
                            "a segment must be [start, end], found {count} number(s)"
                        )));
                    }
                    raw.segment = Some(ends);
                }
                _ => s.skip_value()?,
            }
            Ok(())
        })?;
        Ok(raw)
    }
}

/// Adds "(video X, entry N)" to a syntax error found inside a video's list.
fn in_entry(error: EvalError, video: &str, number: usize) -> EvalError {
    match error {
        EvalError::Format { path, message } if !message.contains("(in video ") => {
            let place = if number == usize::MAX {
                format!("video {video}")
            } else {
                format!("video {video}, entry {number}")
            };
            EvalError::Format {
                path,
                message: format!("{message} (in {place})"),
            }
        }
        other => other,
    }
}

/// One labelled detection, as written to a results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Class name.
    pub label: String,
    /// Confidence.
    pub score: f64,
    /// Interval in seconds.
    pub segment: Segment,
}

/// One class-agnostic proposal, as written to a proposals file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Confidence.
    pub score: f64,
    /// Interval in seconds.
    pub segment: Segment,
}

/// A results file in the ActivityNet layout: `{"version": ..., "results": {video: [...]}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultsFile<T> {
    /// Free-form version string (the official files say "VERSION 1.3").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The ground-truth subset the predictions were made on, as `lofi detect` records it;
    /// `lofi eval` evaluates on it when no `--subset` is given (see [`recorded_subset`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Predictions per video, in file order.
    pub results: OrderedMap<Vec<T>>,
    /// What outside data was used, as the ActivityNet challenge asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_data: Option<serde_json::Value>,
}

/// The subset a results file records that its predictions were made on (its top-level
/// `"subset"`, as `lofi detect` writes it), if it records one; the rest of the file is skipped
/// unparsed.
pub fn recorded_subset(path: &Path) -> Result<Option<String>> {
    let bytes = read_file(path)?;
    let mut scanner = Scanner::new(&bytes, path)?;
    let mut subset = None;
    scanner.object("an object with a \"results\" key", |s, key| {
        if key == "subset" && s.peek() == Some(b'"') {
            subset = Some(s.string()?.into_owned());
            Ok(())
        } else {
            s.skip_value()
        }
    })?;
    Ok(subset)
}

/// A detections file.
pub type DetectionFile = ResultsFile<Detection>;
/// A proposals file.
pub type ProposalFile = ResultsFile<Proposal>;

impl<T: Serialize + for<'de> Deserialize<'de>> ResultsFile<T> {
    /// An empty file with the given per-video entries.
    pub fn new(results: Vec<(String, Vec<T>)>) -> Self {
        ResultsFile {
            version: Some("VERSION 1.3".to_string()),
            subset: None,
            results: OrderedMap(results),
            external_data: None,
        }
    }

    /// Reads a results file without checking it against a ground truth.
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes = read_file(path)?;
        serde_json::from_slice(&bytes).map_err(|e| parse_error(path, &bytes, e))
    }

    /// Writes the file atomically (temporary name, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        write_json_atomic(path, self, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ground_truth::GroundTruthOptions;

    const GT: &str = r#"{"database": {
        "a": {"subset": "validation", "annotations": [{"segment": [1, 3], "label": "Run"}]},
        "b": {"subset": "validation", "annotations": [{"segment": [4, 8], "label": "Jump"}]},
        "t": {"subset": "training", "annotations": [{"segment": [0, 1], "label": "Swim"}]}
    }}"#;

    fn truth() -> GroundTruth {
        GroundTruth::from_slice(
            GT.as_bytes(),
            Path::new("gt.json"),
            &GroundTruthOptions::default(),
        )
        .expect("valid ground truth")
    }

    fn read(text: &str, kind: PredictionKind) -> Result<Predictions> {
        Predictions::from_slice(text.as_bytes(), Path::new("pred.json"), &truth(), kind)
    }

    #[test]
    fn reads_entries_in_file_order_with_class_and_video_indices() {
        let text = r#"{"version": "x", "results": {
            "b": [{"label": "Jump", "score": 0.5, "segment": [4, 7]}],
            "zzz": [{"label": "Run", "score": 0.25, "segment": [0, 1], "extra": 1}],
            "a": [{"label": "Run", "score": 0.75, "segment": [1, 2]},
                  {"label": "Jump", "score": 0.125, "segment": [2, 2]}]
        }, "external_data": {}}"#;
        let predictions = read(text, PredictionKind::Detections).expect("valid");
        let ids: Vec<_> = predictions
            .videos
            .iter()
            .map(|v| (v.id.as_str(), v.truth))
            .collect();
        assert_eq!(ids, [("b", Some(1)), ("zzz", None), ("a", Some(0))]);
        let items: Vec<_> = predictions
            .items
            .iter()
            .map(|p| (p.video, p.class, p.score))
            .collect();
        assert_eq!(
            items,
            [(0, 1, 0.5), (1, 0, 0.25), (2, 0, 0.75), (2, 1, 0.125)]
        );
        assert_eq!(predictions.unknown_videos().count(), 1);
    }

    #[test]
    fn builder_fed_entry_by_entry_equals_the_file_reader() {
        let text = r#"{"results": {
            "b": [{"label": "Jump", "score": 0.5, "segment": [4, 7]}],
            "a": [{"label": "Run", "score": 0.75, "segment": [1, 2]}]}}"#;
        let read = read(text, PredictionKind::Detections).expect("valid");
        let truth = truth();
        let mut builder =
            PredictionsBuilder::new(Path::new("pred.json"), &truth, PredictionKind::Detections);
        let b = builder.video("b").expect("new video");
        builder
            .entry(b, 0, Some("Jump"), Some(0.5), Some([4.0, 7.0]))
            .expect("valid");
        let a = builder.video("a").expect("new video");
        builder
            .entry(a, 0, Some("Run"), Some(0.75), Some([1.0, 2.0]))
            .expect("valid");
        let message = builder.video("a").expect_err("repeat").to_string();
        assert!(message.contains("appears twice"), "{message}");
        let message = builder
            .entry(a, 1, Some("run"), Some(1.0), Some([0.0, 1.0]))
            .expect_err("unknown label")
            .to_string();
        assert!(message.contains("did you mean \"Run\""), "{message}");
        let built = builder.finish();
        assert_eq!((built.videos, built.items), (read.videos, read.items));
    }

    #[test]
    fn proposals_ignore_labels() {
        let text = r#"{"results": {"a": [{"score": 1, "segment": [0, 1]},
                                       {"label": "Nope", "score": 2, "segment": [0, 1]}]}}"#;
        let predictions = read(text, PredictionKind::Proposals).expect("valid");
        assert!(predictions
            .items
            .iter()
            .all(|p| p.class == Prediction::NO_CLASS));
        assert!(read(text, PredictionKind::Detections).is_err());
    }

    fn error(text: &str) -> String {
        read(text, PredictionKind::Detections)
            .expect_err("invalid input")
            .to_string()
    }

    #[test]
    fn each_bad_input_names_file_video_and_problem() {
        let wrap = |entry: &str| format!(r#"{{"results": {{"a": [{entry}]}}}}"#);
        let cases = [
            (
                wrap(r#"{"label": "Run", "score": 1, "segment": [3, 1]}"#),
                "end 1 is before start 3",
            ),
            (
                wrap(r#"{"label": "Run", "score": NaN, "segment": [0, 1]}"#),
                "NaN and Infinity are not JSON",
            ),
            (
                wrap(r#"{"label": "Run", "score": 1e999, "segment": [0, 1]}"#),
                "pred.json",
            ),
            (
                wrap(r#"{"label": "run", "score": 1, "segment": [0, 1]}"#),
                "did you mean \"Run\"",
            ),
            (
                wrap(r#"{"label": "Swim", "score": 1, "segment": [0, 1]}"#),
                "not a class of the ground truth's \"validation\"",
            ),
            (
                wrap(r#"{"label": "Run", "segment": [0, 1]}"#),
                "video a: entry 0: has no \"score\"",
            ),
            (
                wrap(r#"{"label": "Run", "score": 1, "segment": [0]}"#),
                "found 1 number(s) (in video a, entry 0)",
            ),
            (
                wrap(r#"{"label": "Run", "score": "1", "segment": [0, 1]}"#),
                "expected a number, found '\"' (in video a, entry 0)",
            ),
            (
                wrap(r#"{"label": 3, "score": 1, "segment": [0, 1]}"#),
                "expected a string",
            ),
            (
                wrap(r#"{"score": 1, "segment": [0, 1]}"#),
                "has no \"label\"",
            ),
            (
                r#"{"results": {"a": [], "a": []}}"#.to_string(),
                "appears twice",
            ),
            (r#"{"res": {}}"#.to_string(), "missing the \"results\" key"),
            (
                r#"{"results": {}, "results": {"a": []}}"#.to_string(),
                "the \"results\" key appears twice",
            ),
            (r#"{"results": {}} {}"#.to_string(), "after the end"),
            (r#"{"results": {"a": [}"#.to_string(), "line 1"),
            (String::new(), "the file is empty"),
            (r#"[1, 2]"#.to_string(), "pred.json"),
        ];
        for (text, expected) in cases {
            let message = error(&text);
            assert!(message.starts_with("pred.json"), "{message}");
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn excluded_labels_and_videos_are_dropped_and_counted() {
        let options = GroundTruthOptions {
            exclude_videos: vec!["b".into()],
            exclude_labels: vec!["Ambiguous".into()],
            ..Default::default()
        };
        let truth =
            GroundTruth::from_slice(GT.as_bytes(), Path::new("gt.json"), &options).expect("valid");
        let text = r#"{"results": {
            "a": [{"label": "Ambiguous", "score": 1, "segment": [0, 1]},
                  {"label": "Run", "score": 1, "segment": [0, 1]}],
            "b": [{"label": "Run", "score": 1, "segment": [0, 1]}]}}"#;
        let predictions = Predictions::from_slice(
            text.as_bytes(),
            Path::new("p.json"),
            &truth,
            PredictionKind::Detections,
        )
        .expect("valid");
        assert_eq!(predictions.items.len(), 1);
        assert_eq!(predictions.dropped, 2);
    }

    #[test]
    fn results_file_round_trips() {
        let file = DetectionFile::new(vec![(
            "v".to_string(),
            vec![Detection {
                label: "Run".into(),
                score: 0.5,
                segment: Segment::new(1.0, 2.5),
            }],
        )]);
        let text = serde_json::to_string(&file).expect("serialize");
        assert!(text.contains(r#""segment":[1.0,2.5]"#), "{text}");
        let back: DetectionFile = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, file);
    }
}
