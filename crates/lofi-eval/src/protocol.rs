//! The protocol behind a number: which videos counted, which were dropped, and which class
//! scores the detections were fused with, so that a reported mAP can be compared with another.
//!
//! Published numbers differ as much by protocol as by method (THUMOS14's disputed videos,
//! ActivityNet's external classifier scores), so `lofi eval` states these with every result.

use crate::ground_truth::{GroundTruth, THUMOS14_DISPUTED_TEST_VIDEOS};
use crate::predictions::Predictions;

/// How a detection evaluation was set up.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Protocol {
    /// Videos of the subset with at least one annotation.
    pub annotated_videos: usize,
    /// Annotated videos the predictions do not mention (their instances count as missed).
    pub videos_without_predictions: usize,
    /// Videos dropped on request, sorted.
    pub excluded_videos: Vec<String>,
    /// Labels dropped on request, sorted.
    pub excluded_labels: Vec<String>,
    /// THUMOS14's disputed test videos that are part of the evaluation.
    pub disputed_videos_kept: Vec<String>,
    /// THUMOS14's disputed test videos excluded on request.
    pub disputed_videos_dropped: Vec<String>,
    /// The video-level class scores the predictions file says it fused (its `external_data`).
    pub class_scores: Option<String>,
}

impl Protocol {
    /// The protocol of evaluating `predictions` against `truth`.
    pub fn of(truth: &GroundTruth, predictions: &Predictions) -> Self {
        let mut covered = vec![false; truth.videos.len()];
        for v in &predictions.videos {
            if let Some(t) = v.truth {
                covered[t as usize] = true;
            }
        }
        let annotated: Vec<u32> = truth.annotated_videos().collect();
        let sorted = |set: &std::collections::HashSet<String>| {
            let mut list: Vec<String> = set.iter().cloned().collect();
            list.sort_unstable();
            list
        };
        let disputed = |keep: bool| -> Vec<String> {
            THUMOS14_DISPUTED_TEST_VIDEOS
                .iter()
                .filter(|id| {
                    if keep {
                        truth.video_of(id).is_some()
                    } else {
                        truth.excluded_videos.contains(**id)
                    }
                })
                .map(|id| id.to_string())
                .collect()
        };
        Protocol {
            annotated_videos: annotated.len(),
            videos_without_predictions: annotated.iter().filter(|&&v| !covered[v as usize]).count(),
            excluded_videos: sorted(&truth.excluded_videos),
            excluded_labels: sorted(&truth.excluded_labels),
            disputed_videos_kept: disputed(true),
            disputed_videos_dropped: disputed(false),
            class_scores: predictions.class_score_source(),
        }
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let list = |items: &[String]| {
            if items.is_empty() {
                "none".to_string()
            } else {
                items.join(", ")
            }
        };
        let mut line = format!(
            "Protocol: {} of {} annotated videos have predictions ({} without, their instances \
             missed); excluded videos: {}; excluded labels: {}",
            self.annotated_videos - self.videos_without_predictions,
            self.annotated_videos,
            self.videos_without_predictions,
            list(&self.excluded_videos),
            list(&self.excluded_labels),
        );
        if !self.disputed_videos_kept.is_empty() || !self.disputed_videos_dropped.is_empty() {
            line.push_str(&format!(
                "; THUMOS14 disputed test videos kept: {}, dropped: {}",
                list(&self.disputed_videos_kept),
                list(&self.disputed_videos_dropped)
            ));
        }
        line.push_str(&format!(
            "; class scores: {}",
            self.class_scores
                .as_deref()
                .unwrap_or("not stated (no external_data in the detections file)")
        ));
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ground_truth::GroundTruthOptions;
    use crate::predictions::PredictionKind;
    use std::path::Path;

    #[test]
    fn states_missing_videos_exclusions_disputed_videos_and_class_scores() {
        let gt = r#"{"database": {
            "video_test_0000270": {"subset": "test", "annotations": [{"segment": [0, 5], "label": "A"}]},
            "video_test_0001292": {"subset": "test", "annotations": [{"segment": [0, 5], "label": "A"}]},
            "video_test_1": {"subset": "test", "annotations": [{"segment": [0, 5], "label": "A"}]},
            "video_test_2": {"subset": "test", "annotations": [{"segment": [0, 5], "label": "A"}]}}}"#;
        let options = GroundTruthOptions {
            subset: "test".into(),
            exclude_videos: vec!["video_test_0000270".into()],
            exclude_labels: Vec::new(),
        };
        let truth =
            GroundTruth::from_slice(gt.as_bytes(), Path::new("gt.json"), &options).expect("gt");
        let pred = r#"{"external_data": {"used": true, "details": "CUHK scores"},
            "results": {"video_test_1": [{"label": "A", "score": 1, "segment": [0, 5]}]}}"#;
        let predictions = Predictions::from_slice(
            pred.as_bytes(),
            Path::new("p.json"),
            &truth,
            PredictionKind::Detections,
        )
        .expect("predictions");
        let protocol = Protocol::of(&truth, &predictions);
        assert_eq!(protocol.annotated_videos, 3);
        assert_eq!(protocol.videos_without_predictions, 2);
        assert_eq!(protocol.excluded_videos, ["video_test_0000270"]);
        assert_eq!(protocol.disputed_videos_kept, ["video_test_0001292"]);
        assert_eq!(protocol.disputed_videos_dropped, ["video_test_0000270"]);
        assert_eq!(protocol.class_scores.as_deref(), Some("CUHK scores"));
        let line = protocol.line();
        assert!(line.contains("1 of 3 annotated videos"), "{line}");
        assert!(line.contains("class scores: CUHK scores"), "{line}");
    }
}
