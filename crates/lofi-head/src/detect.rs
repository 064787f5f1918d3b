//! `lofi detect`: a trained head (its card says which, with its post-processing and subsets)
//! -> proposals ([`crate::inference`]) -> labelled detections fused with video-level class
//! scores (an external file or the run's own classifier) -> an ActivityNet results file.
//!
//! Exists as the one entry point that reads a head run and writes detections; the rules
//! themselves live in [`crate::inference`], shared with the trainers' validation passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lofi_engine::Preset;
use lofi_eval::{
    DetectionFile, DetectionReport, GroundTruth as EvalTruth, GroundTruthOptions, VideoClassScores,
};
use lofi_model::{DetectConfig, HeadArch};
use serde::{Deserialize, Serialize};

use crate::error::{HeadError, Result};
use crate::features::FeatureStore;
use crate::inference::{detections, evaluate, HeadInput};
use crate::model::TrainedHead;

/// The post-processing of `preset` for `head` (its reference's on ActivityNet for `paper` and
/// `tiny`; for `thumos14` G-TAD's THUMOS14 sigma 0.46, another head's own rule unchanged).
pub fn detect_preset(preset: Preset, head: &HeadArch) -> DetectConfig {
    let base = head.detect_defaults();
    match (preset, head.kind()) {
        (Preset::Thumos14, lofi_model::HeadKind::Gtad) => DetectConfig {
            soft_nms_sigma: 0.46,
            ..base
        },
        _ => base,
    }
}

/// Class scores in the `{"class": [...], "results": {video: [score per class]}}` layout that
/// [`VideoClassScores`] reads and `lofi detect --class-scores-out` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScoreFile {
    /// Class names.
    pub class: Vec<String>,
    /// Per video, one score per class.
    pub results: BTreeMap<String, Vec<f64>>,
}

impl ClassScoreFile {
    /// As the evaluation crate's type.
    pub fn to_scores(&self) -> Result<VideoClassScores> {
        let bytes = serde_json::to_vec(self)
            .map_err(|e| HeadError::Input(format!("cannot encode class scores: {e}")))?;
        Ok(VideoClassScores::from_slice(
            &bytes,
            Path::new("<class scores from the trained classifier>"),
        )?)
    }
}

/// Class scores read off the ground truth: each video's annotated classes, weighted by their
/// share of its annotated time. An ORACLE: it measures how well the head localizes with perfect
/// video-level labels, which is useful to track training (the end-to-end trainer has no
/// classifier) but must never be reported as a detection result.
pub fn oracle_class_scores(
    truth: &lofi_video::ground_truth::GroundTruth,
    subset: &str,
) -> Result<VideoClassScores> {
    let mut classes: Vec<String> = truth
        .database
        .values()
        .flat_map(|e| e.annotations.iter().map(|a| a.label.clone()))
        .collect();
    classes.sort();
    classes.dedup();
    let mut results = BTreeMap::new();
    for (id, entry) in truth.videos_of(subset) {
        let mut scores = vec![0f64; classes.len()];
        let total: f64 = entry
            .annotations
            .iter()
            .map(|a| (a.segment[1] - a.segment[0]).max(1e-9))
            .sum();
        for a in &entry.annotations {
            if let Ok(j) = classes.binary_search(&a.label) {
                scores[j] += (a.segment[1] - a.segment[0]).max(1e-9) / total;
            }
        }
        if !scores.is_empty() {
            results.insert(id.clone(), scores);
        }
    }
    ClassScoreFile {
        class: classes,
        results,
    }
    .to_scores()
}

/// Inputs of [`detect`] besides the settings.
#[derive(Debug, Clone)]
pub struct DetectInputs {
    /// A `lofi train-head` run folder (`head.bpk`, `classifier.bpk` and their cards), or a
    /// `head.bpk` with its card (also the end-to-end head of `lofi train`).
    pub head_dir: PathBuf,
    /// Feature folder.
    pub features: PathBuf,
    /// Ground truth (ActivityNet layout): the video list and durations.
    pub ground_truth: PathBuf,
    /// Subset to detect on ("validation").
    pub subset: String,
    /// Leave out the subset's videos without a feature file (a warning counts them; their
    /// ground truth still counts in the evaluation, as missed) instead of failing.
    pub skip_missing_features: bool,
    /// External video-level class scores; `None` uses the run's trained classifier.
    pub class_scores: Option<PathBuf>,
    /// Where to write the detections (ActivityNet results JSON).
    pub out: PathBuf,
    /// Where to write the class scores used (when they come from our classifier).
    pub class_scores_out: Option<PathBuf>,
    /// Also evaluate against the ground truth and return the report.
    pub evaluate: bool,
    /// Where the head runs (`cpu_device()`, or a GPU opened by the caller).
    pub device: Device,
}

/// What [`detect`] produced.
#[derive(Debug, Clone)]
pub struct DetectOutcome {
    /// The detections written to `out`.
    pub detections: DetectionFile,
    /// Videos detected.
    pub videos: usize,
    /// Detections dropped because their class does not occur in the subset.
    pub dropped: usize,
    /// The evaluation, when asked for.
    pub report: Option<DetectionReport>,
    /// Where the video-level class scores came from.
    pub class_scores: ClassScoreSource,
}

/// The video-level class scores a detection run fused with its proposals. ActivityNet numbers
/// are only comparable with the published ones (G-TAD, BMN, LoFi) with the CUHK classifier's
/// scores, the file the official code reads (`cuhk_val_simp_share.json`).
#[derive(Debug, Clone, PartialEq)]
pub enum ClassScoreSource {
    /// An external file (`--class-scores`), e.g. the CUHK scores on ActivityNet.
    File(PathBuf),
    /// The run's own video classifier, trained by `train-head` on the same features.
    RunClassifier,
}

impl ClassScoreSource {
    /// The `external_data` entry of a results file (the official ActivityNet evaluator refuses a
    /// file without one): whether outside video-level class scores were fused, and which.
    pub fn external_data(&self) -> serde_json::Value {
        match self {
            Self::File(p) => serde_json::json!({
                "used": true,
                "details": format!(
                    "video-level class scores from {} fused with the proposals",
                    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
                ),
            }),
            Self::RunClassifier => serde_json::json!({
                "used": false,
                "details": "video-level class scores from the run's own classifier, trained on the same features",
            }),
        }
    }
}

impl std::fmt::Display for ClassScoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "external class scores from {}", p.display()),
            Self::RunClassifier => write!(
                f,
                "the run's own video classifier (not the CUHK scores the published ActivityNet \
                 numbers use; pass --class-scores to compare with them)"
            ),
        }
    }
}

/// `lofi detect`: loads a trained head and the subset's features, writes detections (and the
/// class scores used), and optionally evaluates them.
pub fn detect(config: &DetectConfig, inputs: &DetectInputs) -> Result<DetectOutcome> {
    config.validate()?;
    // Before any work: lofi replaces only files it wrote.
    for path in std::iter::once(&inputs.out).chain(&inputs.class_scores_out) {
        lofi_engine::owned::check_single(path)?;
    }
    let device = inputs.device.clone();
    let trained = TrainedHead::load(&inputs.head_dir, &device)?;
    let truth = lofi_video::ground_truth::GroundTruth::read(&inputs.ground_truth)?;
    let store = FeatureStore::open(&inputs.features)?;
    let mut ids: Vec<(String, f64)> = truth
        .videos_of(&inputs.subset)
        .map(|(id, e)| (id.clone(), e.duration))
        .collect();
    if inputs.skip_missing_features {
        let before = ids.len();
        ids.retain(|(id, _)| store.locate(id).is_some());
        if ids.len() < before {
            tracing::warn!(
                "{} of {} videos of subset {:?} have no features in {} and are left out (their \
                 ground truth counts as missed)",
                before - ids.len(),
                before,
                inputs.subset,
                inputs.features.display()
            );
        }
    }
    let input = HeadInput::load(
        &store,
        &ids,
        trained.meta.snippets,
        trained.meta.temporal,
        Some(trained.meta.in_channels),
    )?;
    let refs = input.features();
    if refs.is_empty() {
        return Err(HeadError::Input(format!(
            "{}: no video of subset {:?}",
            inputs.ground_truth.display(),
            inputs.subset
        )));
    }
    let source = match &inputs.class_scores {
        Some(path) => ClassScoreSource::File(path.clone()),
        None => ClassScoreSource::RunClassifier,
    };
    let classes = match (
        &inputs.class_scores,
        &trained.classifier,
        &trained.meta.classifier,
    ) {
        (Some(path), _, _) => VideoClassScores::from_path(path)?,
        (None, Some(model), Some(meta)) => {
            let probs = meta.predict(model, &refs, &device)?;
            let file = ClassScoreFile {
                class: meta.classes.clone(),
                results: refs.iter().map(|v| v.id.clone()).zip(probs).collect(),
            };
            if let Some(out) = &inputs.class_scores_out {
                lofi_engine::owned::write_single_json(out, &file, false)?;
            }
            file.to_scores()?
        }
        _ => {
            return Err(HeadError::Input(format!(
                "{}: this run has no video classifier; pass a class-score file",
                inputs.head_dir.display()
            )))
        }
    };
    let proposals = input.proposals(&trained.head, config, &device)?;
    let eval_truth = EvalTruth::from_path(
        &inputs.ground_truth,
        &GroundTruthOptions {
            subset: inputs.subset.clone(),
            ..GroundTruthOptions::default()
        },
    );
    // Without annotations (a test subset) there is no class list to check labels against.
    let eval_truth = match eval_truth {
        Ok(t) => Some(t).filter(|t| !t.classes.is_empty()),
        Err(e) if inputs.evaluate => return Err(e.into()),
        Err(_) => None,
    };
    // Class scores of other classes than the ground truth's would give an empty detection file.
    if let Some(truth) = &eval_truth {
        let known = classes
            .classes()
            .into_iter()
            .filter(|c| truth.class_of(c).is_some())
            .count();
        if known == 0 {
            let mut named: Vec<String> = classes.classes().into_iter().map(String::from).collect();
            named.truncate(5);
            return Err(HeadError::format(
                classes.path(),
                format!(
                    "none of its classes ({}{}) is a class of the ground truth {}: class scores \
                     of another dataset or class list?",
                    named.join(", "),
                    if classes.classes().len() > 5 {
                        ", ..."
                    } else {
                        ""
                    },
                    inputs.ground_truth.display()
                ),
            ));
        }
    }
    let (mut file, dropped) = detections(
        &refs,
        &proposals,
        &classes,
        config.top_classes,
        eval_truth.as_ref(),
    )?;
    file.external_data = Some(source.external_data());
    file.subset = Some(inputs.subset.clone());
    if dropped > 0 {
        tracing::warn!(
            "dropped {dropped} detections whose class does not occur in subset {:?}",
            inputs.subset
        );
    }
    lofi_engine::owned::write_single_json(&inputs.out, &file, false)?;
    let report = match (&eval_truth, inputs.evaluate) {
        (Some(truth), true) => Some(evaluate(truth, &file)?),
        (None, true) => {
            return Err(HeadError::Input(format!(
                "{}: subset {:?} has no annotations to evaluate against",
                inputs.ground_truth.display(),
                inputs.subset
            )))
        }
        (_, false) => None,
    };
    Ok(DetectOutcome {
        detections: file,
        videos: refs.len(),
        dropped,
        report,
        class_scores: source,
    })
}
