//! Detection and proposal files: fast reading for evaluation, and plain owned types for writing.
//!
//! An ActivityNet-sized detection file holds about a million entries. The evaluation reader streams
//! it straight into a compact table (video index, class index, score, segment), borrowing labels
//! from the input buffer instead of allocating a string per entry, and checks every entry on the
//! way: finite score, finite segment with `end >= start`, a label the ground truth knows. The
//! owned types ([`DetectionFile`], [`ProposalFile`]) are for the tools that produce such files.

use crate::error::{EvalError, Result};
use crate::ground_truth::GroundTruth;
use crate::json::{parse_error, read_file, write_json_atomic, OrderedMap};
use crate::segment::Segment;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
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
        let context = Context {
            path,
            truth,
            kind,
            failure: RefCell::new(None),
            seen: RefCell::new(HashSet::new()),
            output: RefCell::new(Predictions {
                path: path.to_path_buf(),
                videos: Vec::new(),
                items: Vec::with_capacity(bytes.len() / 80),
                dropped: 0,
            }),
        };
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let parsed = FileSeed(&context)
            .deserialize(&mut deserializer)
            .and_then(|()| deserializer.end());
        if let Some(failure) = context.failure.into_inner() {
            return Err(failure);
        }
        parsed.map_err(|e| parse_error(path, bytes, e))?;
        Ok(context.output.into_inner())
    }

    /// How many videos of the file are not videos of the evaluated subset.
    pub fn unknown_videos(&self) -> impl Iterator<Item = &PredictedVideo> {
        self.videos.iter().filter(|v| v.truth.is_none())
    }
}

struct Context<'a> {
    path: &'a Path,
    truth: &'a GroundTruth,
    kind: PredictionKind,
    failure: RefCell<Option<EvalError>>,
    seen: RefCell<HashSet<String>>,
    output: RefCell<Predictions>,
}

impl Context<'_> {
    /// Records our own (non-syntax) error and returns a serde error that unwinds the parse.
    fn fail<E: de::Error>(&self, error: EvalError) -> E {
        let message = error.to_string();
        self.failure.borrow_mut().get_or_insert(error);
        E::custom(message)
    }
}

struct FileSeed<'c, 'a>(&'c Context<'a>);

impl<'de> DeserializeSeed<'de> for FileSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a \"results\" key")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "results" && !found {
                map.next_value_seed(ResultsSeed(self.0))?;
                found = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !found {
            return Err(de::Error::missing_field("results"));
        }
        Ok(())
    }
}

struct ResultsSeed<'c, 'a>(&'c Context<'a>);

impl<'de> DeserializeSeed<'de> for ResultsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ResultsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object mapping video ids to lists of predictions")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let context = self.0;
        while let Some(id) = map.next_key::<String>()? {
            if !context.seen.borrow_mut().insert(id.clone()) {
                return Err(context.fail(EvalError::entry(
                    context.path,
                    &id,
                    "appears twice in \"results\" (JSON readers disagree on which copy counts)",
                )));
            }
            let excluded = context.truth.excluded_videos.contains(&id);
            let video = {
                let mut output = context.output.borrow_mut();
                let video = output.videos.len() as u32;
                let truth = context.truth.video_of(&id);
                output.videos.push(PredictedVideo {
                    id: id.clone(),
                    truth,
                });
                video
            };
            map.next_value_seed(VideoSeed {
                context,
                id: &id,
                video,
                excluded,
            })?;
        }
        Ok(())
    }
}

struct VideoSeed<'c, 'a, 'i> {
    context: &'c Context<'a>,
    id: &'i str,
    video: u32,
    excluded: bool,
}

impl<'de> DeserializeSeed<'de> for VideoSeed<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

#[derive(Deserialize)]
struct RawPrediction<'a> {
    #[serde(borrow, default)]
    label: Option<Cow<'a, str>>,
    score: f64,
    segment: [f64; 2],
}

impl<'de> Visitor<'de> for VideoSeed<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of predictions for video {}", self.id)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let context = self.context;
        let truth = context.truth;
        let mut number = 0usize;
        loop {
            let raw = match seq.next_element::<RawPrediction<'de>>() {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => {
                    return Err(de::Error::custom(format_args!(
                        "video {}: entry {number}: {e}",
                        self.id
                    )))
                }
            };
            let current = number;
            let entry = |message: String| {
                EvalError::entry(context.path, self.id, format!("entry {current}: {message}"))
            };
            if !raw.score.is_finite() {
                return Err(context.fail(entry(format!("score {} is not finite", raw.score))));
            }
            let [start, end] = raw.segment;
            if !start.is_finite() || !end.is_finite() {
                return Err(context.fail(entry(format!("segment [{start}, {end}] is not finite"))));
            }
            if end < start {
                return Err(
                    context.fail(entry(format!("segment end {end} is before start {start}")))
                );
            }
            number += 1;
            let class = match context.kind {
                PredictionKind::Proposals => Prediction::NO_CLASS,
                PredictionKind::Detections => {
                    let Some(label) = raw.label else {
                        return Err(context.fail(entry(
                            "has no \"label\" (detections need one; use `lofi eval proposals` \
                             for class-agnostic proposals)"
                                .to_string(),
                        )));
                    };
                    match truth.class_of(&label) {
                        Some(class) => class,
                        None if truth.excluded_labels.contains(label.as_ref()) => {
                            context.output.borrow_mut().dropped += 1;
                            continue;
                        }
                        None => {
                            let hint = truth
                                .closest_class(&label)
                                .map(|c| format!(" (did you mean {c:?}?)"))
                                .unwrap_or_default();
                            return Err(context.fail(EvalError::UnknownLabel {
                                path: context.path.to_path_buf(),
                                video: self.id.to_string(),
                                label: label.into_owned(),
                                subset: truth.subset.clone(),
                                hint,
                            }));
                        }
                    }
                }
            };
            let mut output = context.output.borrow_mut();
            if self.excluded {
                output.dropped += 1;
                continue;
            }
            output.items.push(Prediction {
                video: self.video,
                class,
                score: raw.score,
                segment: Segment::new(start, end),
            });
        }
        Ok(())
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
    /// Predictions per video, in file order.
    pub results: OrderedMap<Vec<T>>,
    /// What outside data was used, as the ActivityNet challenge asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_data: Option<serde_json::Value>,
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
                "NaN or Infinity values, which are not JSON",
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
                "video a: entry 0: missing field `score`",
            ),
            (
                wrap(r#"{"label": "Run", "score": 1, "segment": [0]}"#),
                "video a: entry 0",
            ),
            (
                wrap(r#"{"score": 1, "segment": [0, 1]}"#),
                "has no \"label\"",
            ),
            (
                r#"{"results": {"a": [], "a": []}}"#.to_string(),
                "appears twice",
            ),
            (r#"{"res": {}}"#.to_string(), "missing field `results`"),
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
