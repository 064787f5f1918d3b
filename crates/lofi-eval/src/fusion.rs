//! Turning class-agnostic proposals into labelled detections with video-level class scores.
//!
//! G-TAD, BMN and LoFi localize actions without naming them; the label comes from a separate
//! video classifier. Each proposal is paired with the video's top-k classes (k = 2 on
//! ActivityNet) and scored by the product of the two scores. The class scores are a separate
//! input file, in either of the layouts people use:
//! - `{"class": [names...], "results": {video: [score per class...]}}` (the layout of the widely
//!   shared ActivityNet classifier outputs that BMN and G-TAD read), or
//! - `{"results": {video: {"label": score, ...}}}`.
//!
//! Video ids are looked up as given and, failing that, with a `v_` prefix added or removed, since
//! the two conventions are mixed across public files.

use crate::error::{EvalError, Result};
use crate::json::{parse_error, read_file, OrderedMap};
use crate::nms::ScoredSegment;
use crate::predictions::Detection;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Video-level class scores, each video's classes sorted by descending score.
#[derive(Clone, Debug)]
pub struct VideoClassScores {
    path: PathBuf,
    videos: HashMap<String, Vec<(String, f64)>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawScores {
    Vector(Vec<f64>),
    Named(OrderedMap<f64>),
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    class: Option<Vec<String>>,
    results: OrderedMap<RawScores>,
}

impl VideoClassScores {
    /// Reads a class-score file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes = read_file(path)?;
        Self::from_slice(&bytes, path)
    }

    /// Parses class scores from bytes; `path` is only used in messages.
    pub fn from_slice(bytes: &[u8], path: &Path) -> Result<Self> {
        let raw: RawFile =
            serde_json::from_slice(bytes).map_err(|e| parse_error(path, bytes, e))?;
        let mut videos = Vec::with_capacity(raw.results.0.len());
        for (video, scores) in raw.results.0 {
            let named: Vec<(String, f64)> = match scores {
                RawScores::Named(map) => map.0,
                RawScores::Vector(values) => {
                    let Some(names) = &raw.class else {
                        return Err(EvalError::entry(
                            path,
                            &video,
                            "scores are a list but the file has no \"class\" list naming them",
                        ));
                    };
                    if names.len() != values.len() {
                        return Err(EvalError::entry(
                            path,
                            &video,
                            format!(
                                "{} scores for {} classes in \"class\"",
                                values.len(),
                                names.len()
                            ),
                        ));
                    }
                    names.iter().cloned().zip(values).collect()
                }
            };
            videos.push((video, named));
        }
        Self::from_videos(path, videos)
    }

    /// Class scores already in memory: per video (in any order), its `(class, score)` pairs, with
    /// the checks of [`VideoClassScores::from_slice`]; `path` names the source in messages.
    pub fn from_videos(path: &Path, videos: Vec<(String, Vec<(String, f64)>)>) -> Result<Self> {
        let mut sorted = HashMap::with_capacity(videos.len());
        for (video, mut named) in videos {
            if let Some((label, score)) = named.iter().find(|(_, s)| !s.is_finite()) {
                return Err(EvalError::entry(
                    path,
                    &video,
                    format!("score of class {label:?} is {score}, not a finite number"),
                ));
            }
            // Fusion multiplies a proposal's score by the class's: a negative score (a logit)
            // would turn the ranking over.
            if let Some((label, score)) = named.iter().find(|(_, s)| *s < 0.0) {
                return Err(EvalError::entry(
                    path,
                    &video,
                    format!(
                        "score of class {label:?} is {score}: class scores are probabilities (or \
                         other non-negative scores), not logits"
                    ),
                ));
            }
            let mut seen = std::collections::HashSet::with_capacity(named.len());
            if let Some((label, _)) = named.iter().find(|(l, _)| !seen.insert(l.as_str())) {
                return Err(EvalError::entry(
                    path,
                    &video,
                    format!("class {label:?} is named twice"),
                ));
            }
            if named.is_empty() {
                return Err(EvalError::entry(path, &video, "has no class scores"));
            }
            // Stable: equal scores keep the file's class order.
            named.sort_by(|a, b| b.1.total_cmp(&a.1));
            sorted.insert(video, named);
        }
        Ok(VideoClassScores {
            path: path.to_path_buf(),
            videos: sorted,
        })
    }

    /// The file the scores came from (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every class name that has a score for some video.
    pub fn classes(&self) -> std::collections::BTreeSet<&str> {
        self.videos
            .values()
            .flat_map(|v| v.iter().map(|(c, _)| c.as_str()))
            .collect()
    }

    /// How many videos have scores.
    pub fn len(&self) -> usize {
        self.videos.len()
    }

    /// Whether no video has scores.
    pub fn is_empty(&self) -> bool {
        self.videos.is_empty()
    }

    /// The `k` best classes of a video with their scores, best first.
    pub fn top_classes(&self, video: &str, k: usize) -> Result<&[(String, f64)]> {
        let found = self
            .videos
            .get(video)
            .or_else(|| match video.strip_prefix("v_") {
                Some(bare) => self.videos.get(bare),
                None => self.videos.get(&format!("v_{video}")),
            });
        match found {
            Some(classes) => Ok(&classes[..k.min(classes.len())]),
            None => Err(EvalError::entry(
                &self.path,
                video,
                "has no class scores (also tried with the \"v_\" prefix added or removed)",
            )),
        }
    }
}

/// Pairs each proposal of `video` with the video's `top_k` classes; score = proposal x class.
/// Detections come out proposal by proposal, classes best first within each.
pub fn fuse_with_class_scores(
    video: &str,
    proposals: &[ScoredSegment],
    scores: &VideoClassScores,
    top_k: usize,
) -> Result<Vec<Detection>> {
    let classes = scores.top_classes(video, top_k)?;
    let mut detections = Vec::with_capacity(proposals.len() * classes.len());
    for proposal in proposals {
        for (label, class_score) in classes {
            detections.push(Detection {
                label: label.clone(),
                score: proposal.score * class_score,
                segment: proposal.segment,
            });
        }
    }
    Ok(detections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_give_top_classes_best_first() {
        let vector = r#"{"class": ["A", "B", "C"], "results": {"x": [0.2, 0.7, 0.1]}}"#;
        let named = r#"{"results": {"v_x": {"A": 0.2, "B": 0.7, "C": 0.1}}}"#;
        for text in [vector, named] {
            let scores =
                VideoClassScores::from_slice(text.as_bytes(), Path::new("cls.json")).expect("ok");
            let top = scores.top_classes("x", 2).expect("found");
            assert_eq!(top, [("B".to_string(), 0.7), ("A".to_string(), 0.2)]);
            assert!(scores.top_classes("v_x", 5).is_ok());
        }
    }

    #[test]
    fn negative_scores_and_a_class_named_twice_are_refused_naming_the_file() {
        let path = Path::new("cls.json");
        for (text, expected) in [
            (
                r#"{"class": ["A", "B"], "results": {"x": [0.2, -1.5]}}"#,
                "not logits",
            ),
            (
                r#"{"class": ["A", "A"], "results": {"x": [0.2, 0.5]}}"#,
                "named twice",
            ),
        ] {
            let e = VideoClassScores::from_slice(text.as_bytes(), path).expect_err(expected);
            assert!(
                e.to_string().contains(expected) && e.to_string().contains("cls.json"),
                "{e}"
            );
        }
        let ok = r#"{"results": {"x": {"A": 0.2}, "y": {"B": 0.0}}}"#;
        let scores = VideoClassScores::from_slice(ok.as_bytes(), path).expect("ok");
        assert_eq!(scores.classes().into_iter().collect::<Vec<_>>(), ["A", "B"]);
    }

    #[test]
    fn fusion_multiplies_scores_proposal_by_proposal() {
        let text = r#"{"results": {"x": {"A": 0.5, "B": 0.25}}}"#;
        let scores =
            VideoClassScores::from_slice(text.as_bytes(), Path::new("c.json")).expect("ok");
        let proposals = [
            ScoredSegment::new(0.0, 1.0, 0.8),
            ScoredSegment::new(2.0, 3.0, 0.4),
        ];
        let detections = fuse_with_class_scores("x", &proposals, &scores, 2).expect("ok");
        let flat: Vec<(&str, f64)> = detections
            .iter()
            .map(|d| (d.label.as_str(), d.score))
            .collect();
        assert_eq!(flat, [("A", 0.4), ("B", 0.2), ("A", 0.2), ("B", 0.1)]);
    }

    #[test]
    fn bad_class_files_are_named() {
        let cases = [
            (r#"{"results": {"x": [0.1]}}"#, "no \"class\" list"),
            (
                r#"{"class": ["A"], "results": {"x": [0.1, 0.2]}}"#,
                "2 scores for 1 classes",
            ),
            (r#"{"results": {"x": {}}}"#, "has no class scores"),
            (r#"{"results": {"x": {"A": "high"}}}"#, "cls.json"),
        ];
        for (text, expected) in cases {
            let message = VideoClassScores::from_slice(text.as_bytes(), Path::new("cls.json"))
                .expect_err("bad")
                .to_string();
            assert!(
                message.contains(expected) && message.starts_with("cls.json"),
                "{message}"
            );
        }
        let scores =
            VideoClassScores::from_slice(br#"{"results": {"x": {"A": 1}}}"#, Path::new("c.json"))
                .expect("ok");
        let message = scores.top_classes("y", 2).expect_err("missing").to_string();
        assert!(message.contains("c.json: video y"), "{message}");
    }
}
