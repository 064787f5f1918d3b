//! Evaluation of temporal action localization, exact to the official ActivityNet protocol.
//!
//! Every number lofi reports goes through this crate, so it is kept small, dependency-light (serde
//! and lofi-files' hashes only) and faithful to the official tool's arithmetic: detection mAP per tIoU threshold and its
//! average, proposal AR@AN and AUC, DETAD's error analysis (false-positive profile, false-negative
//! rates and sensitivity by instance characteristics), plus the post-processing that turns raw proposals into
//! detections (NMS, Soft-NMS, fusion with video-level class scores). See
//! `shared/reference/evaluation.md` and the crate README section in the workspace README for the
//! rules, including our documented order for tied scores.
//!
//! ```
//! use lofi_eval::{evaluate_detection, GroundTruth, GroundTruthOptions, Predictions,
//!                 PredictionKind, Thresholds};
//! use std::path::Path;
//! let gt = r#"{"database": {"v": {"subset": "validation",
//!     "annotations": [{"segment": [1.0, 5.0], "label": "Jump"}]}}}"#;
//! let pred = r#"{"results": {"v": [{"label": "Jump", "score": 0.9, "segment": [1.0, 5.0]}]}}"#;
//! let truth = GroundTruth::from_slice(gt.as_bytes(), Path::new("gt.json"),
//!                                     &GroundTruthOptions::default())?;
//! let predictions = Predictions::from_slice(pred.as_bytes(), Path::new("pred.json"), &truth,
//!                                           PredictionKind::Detections)?;
//! let report = evaluate_detection(&truth, &predictions, &Thresholds::ACTIVITYNET.values())?;
//! assert_eq!(report.average_map, 1.0);
//! # Ok::<(), lofi_eval::EvalError>(())
//! ```

mod analysis;
mod atomic;
mod detection;
mod error;
pub mod feature_folder;
mod fusion;
mod ground_truth;
mod json;
mod nms;
pub mod npy;
mod numeric;
mod predictions;
mod proposal;
mod protocol;
mod scan;
mod segment;

pub use analysis::{
    analyze_detection, instance_characteristics, AnalysisDataset, AnalysisJson, AnalysisOptions,
    Bins, Bucket, BucketJson, Characteristic, CharacteristicBuckets, DetectionAnalysis, ErrorType,
    FalsePositiveJson, InstanceCharacteristics, ProfileJson, ProfileSlice, SensitivityJson,
};
pub use atomic::write_atomic;
pub use detection::{detection_json, evaluate_detection, ClassAp, DetectionJson, DetectionReport};
pub use error::{EvalError, Result};
pub use fusion::{fuse_with_class_scores, VideoClassScores};
pub use ground_truth::{
    check_video_id, Annotation, AnnotationFile, DatabaseAnnotation, DatabaseVideo, GroundTruth,
    GroundTruthOptions, GroundTruthVideo, THUMOS14_AMBIGUOUS_LABEL, THUMOS14_DISPUTED_TEST_VIDEOS,
};
pub use json::{write_json_atomic, OrderedMap};
pub use nms::{nms, nms_indices, soft_nms, soft_nms_indices, ScoredSegment, SoftNms, SoftNmsDecay};
pub use numeric::{numpy_mean, numpy_sum};
pub use predictions::{
    recorded_subset, Detection, DetectionFile, PredictedVideo, Prediction, PredictionKind,
    Predictions, PredictionsBuilder, Proposal, ProposalFile, ResultsFile, VideoSlot,
};
pub use proposal::{evaluate_proposals, ProposalOptions, ProposalReport};
pub use protocol::Protocol;
pub use segment::{linspace, tiou, Segment, Thresholds};
