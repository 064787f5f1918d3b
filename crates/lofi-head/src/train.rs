//! `lofi train-head`: a localization head (`[head] kind`, G-TAD by default) trained from scratch on
//! feature files, with the video-level
//! classifier beside it, per-step metrics, per-epoch checkpoints and validation.
//!
//! Exists because LoFi's final numbers come from exactly this stage (paper section 3, step 3):
//! the encoder is frozen, features are extracted at full fidelity, and a fresh G-TAD is trained
//! on them with G-TAD's own recipe. The same function serves our features and a peer's.
//!
//! Recipe defaults, those of the official G-TAD on ActivityNet (`gtad_train.py`, `opts.py`): Adam
//! with PyTorch's epsilon 1e-8 (burn's default is 1e-5), learning rate 4e-3, weight decay 1e-4
//! (L2 added to the gradient, as PyTorch's Adam does), batch 16, 10 epochs, learning rate x0.1
//! after every 5 epochs, no gradient clipping (`grad_clip` > 0 turns on burn's clipping, which
//! bounds the norm of each parameter tensor separately, not the global norm).
//!
//! The run is kept by lofi-engine, like every trainer's: `config.toml` (the settings used),
//! `metrics.jsonl` (typed records: one per step, one `epoch_end` per epoch, one `validation`
//! with the validation loss, and the mAP when class scores exist), `checkpoints/epoch-<E>.bpk` +
//! `.optim` + `last`, and exact `--resume`. At the end it writes `head.bpk` and `classifier.bpk`
//! with their model cards `head.json` and `classifier.json` (see [`crate::model`]); `head.bpk` is the head of the epoch with the lowest
//! validation loss, as the official code's `GTAD_best`, and `best.json` names that epoch.
//!
//! `[temporal] mode = "windows"` trains on sliding windows of `snippets` over features at their
//! own stride instead of whole videos rescaled to `snippets` ([`crate::windows`]: the windows
//! holding an action are the samples; validation loss on the validation subset's such windows,
//! validation mAP on its whole videos through the window merge). The video classifier always
//! pools whole videos.

use std::path::PathBuf;
use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use lofi_engine::readback::scalar;
use lofi_engine::{
    fit, metrics, Fingerprint, FitEnd, LossParts, RunControl, RunDir, Stage, StepAt, StepMetrics,
    ValidationMetrics,
};
use lofi_engine::{FolderKind, OutputPlan, Preset, Settings};
use lofi_eval::{GroundTruth as EvalTruth, GroundTruthOptions, VideoClassScores};
use lofi_model::seed::{initialized, seeded};
use lofi_model::{DetectConfig, GtadLoss, Head, HeadArch, HeadKind, HeadTargets, Segment};
use lofi_video::ground_truth::GroundTruth;
use serde::{Deserialize, Serialize};

use crate::detect::ClassScoreFile;
use crate::error::{HeadError, Result};
use crate::features::{FeatureStore, VideoFeatures, INDEX_FILE};
use crate::inference::{batch_tensor, validate_input, HeadInput};
use crate::model::{feature_input, files, ClassifierMeta, VideoClassifier};
use crate::windows::{training_windows, Temporal, TimedFeatures};
use lofi_model::card::{RunSubsets, LAST_EPOCH};
use lofi_model::{InputSpec, ModelCard, ModelSpec, Normalization, Producer};

/// Settings of the video-level classifier trained beside the head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierConfig {
    /// Train it (otherwise `lofi detect` needs an external class-score file).
    pub enabled: bool,
    /// Hidden units; 0 = linear softmax classifier.
    pub hidden: usize,
    /// Full-batch Adam steps.
    pub steps: usize,
    /// Learning rate.
    pub lr: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            hidden: 0,
            steps: 300,
            lr: 1e-2,
            weight_decay: 1e-4,
        }
    }
}

/// Everything `lofi train-head` reads from its TOML config (unknown keys are errors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadConfig {
    /// Temporal scale `L` of the head; features of any length are resampled to it (rescale) or
    /// cut into windows of this many snippets (windows).
    pub snippets: usize,
    /// Rescale (default) or sliding windows: `[temporal] mode = "windows"`,
    /// `window_stride = N`.
    #[serde(skip_serializing_if = "Temporal::is_rescale")]
    pub temporal: Temporal,
    /// Epochs.
    pub epochs: usize,
    /// Videos per batch.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// The learning rate is multiplied by `lr_gamma` every `lr_step_epochs` epochs.
    pub lr_step_epochs: usize,
    /// Learning-rate decay factor.
    pub lr_gamma: f64,
    /// Clip each parameter tensor's gradient norm at this value (0 = no clipping, G-TAD's recipe).
    pub grad_clip: f64,
    /// Seed of initialisation, shuffling and the loss's band sampling.
    pub seed: u64,
    /// Subset to train on, in any letter case (`None`: `training`, or THUMOS14's `Validation`
    /// when the file has no `training` but `Validation` and `Test`: the rule of every stage,
    /// `lofi_video::ground_truth::GroundTruth::choose_subsets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<String>,
    /// Subset to validate on and to choose the kept epoch on, the evaluation subset later stages
    /// default to (`None`: `validation`, or THUMOS14's `Test`). A test set (`test`, `testing`)
    /// is never validated on during training: the last epoch is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_subset: Option<String>,
    /// Validate every this many epochs (0 = never; the last epoch always when > 0).
    pub validate_every: usize,
    /// Skip videos without a feature file (with a warning) instead of failing.
    pub skip_missing: bool,
    /// Width of the region around each ground-truth boundary, in snippets (3).
    pub boundary_width: f64,
    /// The head: `[head] kind` (`"gtad"` by default; the kinds of `lofi_model::HeadKind`),
    /// with that family's sizes.
    pub head: HeadArch,
    /// The video-level classifier.
    pub classifier: ClassifierConfig,
    /// Post-processing used by validation.
    pub detect: DetectConfig,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self {
            snippets: 100,
            temporal: Temporal::Rescale,
            epochs: 10,
            batch_size: 16,
            lr: 4e-3,
            weight_decay: 1e-4,
            lr_step_epochs: 5,
            lr_gamma: 0.1,
            grad_clip: 0.0,
            seed: 0,
            train_subset: None,
            val_subset: None,
            validate_every: 1,
            skip_missing: false,
            boundary_width: 3.0,
            head: HeadArch::default(),
            classifier: ClassifierConfig::default(),
            detect: DetectConfig::default(),
        }
    }
}

impl HeadConfig {
    /// The configuration of `preset` (`paper`: G-TAD's recipe, [`Default`]; `tiny`: the tiny
    /// head at 16 snippets, [`HeadConfig::tiny`]).
    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Paper => Self::default(),
            Preset::Tiny => Self::tiny(16),
            Preset::Thumos14 => Self::thumos14(),
        }
    }

    /// G-TAD's THUMOS14 setting: windows of 256 snippets every 128 (of features every 5 frames),
    /// anchors up to 64 snippets, Soft-NMS sigma 0.46; trained on `Validation`. No validation
    /// during training (`validate_every = 0`): the only other subset is `Test`, and choosing an
    /// epoch on it would leak the test set, so `head.bpk` is the last epoch's.
    pub fn thumos14() -> Self {
        let mut c = Self {
            snippets: 256,
            temporal: Temporal::Windows { window_stride: 128 },
            train_subset: Some("Validation".into()),
            val_subset: Some("Test".into()),
            validate_every: 0,
            ..Self::default()
        };
        c.head = c.head.with_max_duration(Some(64));
        c.detect = crate::detect::detect_preset(Preset::Thumos14, &c.head);
        c
    }

    /// A small, fast configuration for tests and the demo: the tiny head at `snippets`, batch 4.
    pub fn tiny(snippets: usize) -> Self {
        Self {
            snippets,
            batch_size: 4,
            head: HeadArch::tiny(HeadKind::Gtad),
            ..Self::default()
        }
    }

    /// This configuration with a head of `kind` (same size class, the kind's reference
    /// post-processing); unchanged when it already has one.
    pub fn with_head_kind(mut self, kind: HeadKind) -> Self {
        if self.head.kind() != kind {
            self.head = self.head.with_kind(kind);
            self.detect = self.detect.for_head(&self.head);
        }
        self
    }

    /// The learning rate of `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        self.lr * self.lr_gamma.powi((epoch / self.lr_step_epochs) as i32)
    }
}

impl lofi_engine::Settings for HeadConfig {
    type Error = HeadError;

    /// Checks every value before any work; errors name the key.
    fn validate(&self) -> Result<()> {
        let err = |m: String| Err(HeadError::Config(m));
        for (key, v) in [
            ("snippets", self.snippets),
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("lr_step_epochs", self.lr_step_epochs),
        ] {
            if v == 0 {
                return err(format!("{key} must be at least 1"));
            }
        }
        // The same rule as `lofi train` (G-TAD's graph needs k neighbours among L snippets).
        self.head
            .check_snippets(self.snippets)
            .map_err(|e| HeadError::Config(e.to_string()))?;
        self.head
            .check_scale(self.snippets, lofi_video::limits::total_memory())?;
        for (key, v, positive) in [
            ("lr", self.lr, true),
            ("weight_decay", self.weight_decay, false),
            ("lr_gamma", self.lr_gamma, true),
            ("grad_clip", self.grad_clip, false),
            ("boundary_width", self.boundary_width, true),
            ("classifier.lr", self.classifier.lr, true),
            (
                "classifier.weight_decay",
                self.classifier.weight_decay,
                false,
            ),
        ] {
            if !v.is_finite() || v < 0.0 || (positive && v == 0.0) {
                let need = if positive { "> 0" } else { ">= 0" };
                return err(format!("{key} = {v} must be a finite number {need}"));
            }
        }
        self.temporal.check(self.snippets)?;
        if self.classifier.enabled && self.classifier.steps == 0 {
            return err("classifier.steps must be at least 1".into());
        }
        if self.train_subset.as_deref() == Some("") {
            return err("train_subset must not be empty".into());
        }
        if self.val_subset.as_deref() == Some("") {
            return err("val_subset must not be empty".into());
        }
        self.detect.validate()?;
        // The head's own checks (group divisibility etc.) with a representative width.
        self.head
            .validate(64)
            .map_err(|e| HeadError::Config(format!("head: {e}")))
    }
}

/// Where `train_head` reads and writes.
#[derive(Debug, Clone)]
pub struct HeadInputs {
    /// Feature folder (ours or a peer's).
    pub features: PathBuf,
    /// Ground truth (ActivityNet layout).
    pub ground_truth: PathBuf,
    /// Run folder.
    pub out: PathBuf,
    /// Where the head and the classifier train (`cpu_device()`, or a GPU opened by the caller).
    pub device: Device,
}

/// What `train_head` did.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Training videos used.
    pub train_videos: usize,
    /// Validation videos used.
    pub val_videos: usize,
    /// Mean loss of each epoch.
    pub epoch_loss: Vec<f64>,
    /// Average mAP of the last validation, when one ran.
    pub val_average_map: Option<f64>,
    /// Training accuracy (top-1) of the video classifier, when trained.
    pub classifier_train_accuracy: Option<f64>,
    /// The epoch (0-based) whose head was kept: lowest validation loss; `None` when no
    /// validation ran (the last epoch's head is kept).
    pub best_epoch: Option<usize>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Annotations in seconds as fractions of `covered`, the seconds the features cover, clipped to
/// `[0, 1]`, as G-TAD's and BMN's `dataset.py` turn them into fractions of `corrected_second`:
/// an annotation that the clipping shrinks to nothing (it lies past the covered part) stays, as
/// a zero-length segment at the border (the official code keeps it too: it adds boundary targets
/// there and no IoU); only a reversed annotation is left out.
fn seconds_to_fractions(id: &str, covered: f64, ann: &[[f64; 2]]) -> Vec<Segment> {
    let mut out = Vec::new();
    for seg in ann {
        let s = (seg[0] / covered).clamp(0.0, 1.0);
        let e = (seg[1] / covered).clamp(0.0, 1.0);
        if e >= s {
            if e == s {
                tracing::debug!(
                    "video {id}: annotation [{}, {}] lies outside the {covered} s the features \
                     cover; kept as a zero-length segment at {s}, as the official code does",
                    seg[0],
                    seg[1]
                );
            }
            out.push(Segment::new(s, e));
        } else {
            tracing::warn!(
                "video {id}: annotation [{}, {}] ends before it starts; ignored",
                seg[0],
                seg[1]
            );
        }
    }
    out
}

/// The seconds of video `id`'s features cover: the feature index's duration when the folder has
/// one (G-TAD's and BMN's `corrected_second`), else the annotated `duration`.
fn covered_seconds(store: &FeatureStore, id: &str, duration: f64) -> f64 {
    store
        .index
        .as_ref()
        .and_then(|i| i.videos.get(id))
        .map(|e| e.duration)
        .filter(|d| d.is_finite() && *d > 0.0)
        .unwrap_or(duration)
}

/// One training video (or window): features, targets' segments and labels.
struct TrainVideo {
    /// Rescaled to `L` (rescale), the whole sequence (windows), or one window.
    features: VideoFeatures,
    /// Targets' segments as fractions of `features`' span.
    segments: Vec<Segment>,
    /// Annotated seconds per class name.
    labels: Vec<(String, f64)>,
    /// Annotated segments, seconds.
    annotations: Vec<[f64; 2]>,
    /// Seconds per snippet of `features`.
    step: f64,
}

impl TrainVideo {
    /// The training windows of this whole-sequence video, as samples of their own.
    fn windows(&self, w: usize, stride: usize) -> Vec<TrainVideo> {
        let timed = TimedFeatures {
            features: self.features.clone(),
            step: self.step,
        };
        training_windows(&timed, &self.annotations, w, stride)
            .into_iter()
            .map(|(win, segments)| TrainVideo {
                features: win.features,
                segments,
                labels: Vec::new(),
                annotations: Vec::new(),
                step: win.step,
            })
            .collect()
    }
}

/// The training samples of `videos` under `config`: the videos themselves (rescale) or their
/// training windows.
fn samples(videos: Vec<TrainVideo>, config: &HeadConfig) -> Vec<TrainVideo> {
    match config.temporal {
        Temporal::Rescale => videos,
        Temporal::Windows { window_stride } => videos
            .iter()
            .flat_map(|v| v.windows(config.snippets, window_stride))
            .collect(),
    }
}

fn load_subset(
    store: &FeatureStore,
    truth: &GroundTruth,
    subset: &str,
    config: &HeadConfig,
    channels: &mut Option<usize>,
) -> Result<Vec<TrainVideo>> {
    let (l, skip_missing) = (config.snippets, config.skip_missing);
    let mut out = Vec::new();
    for (id, entry) in truth.videos_of(subset) {
        if !(entry.duration.is_finite() && entry.duration > 0.0) {
            return Err(HeadError::Input(format!(
                "video {id}: duration {} in the ground truth is not positive",
                entry.duration
            )));
        }
        let loaded = match config.temporal {
            Temporal::Rescale => store
                .load_at(id, entry.duration, l, *channels)
                .map(|f| (f, entry.duration / l as f64)),
            Temporal::Windows { .. } => store
                .load_timed(id, entry.duration, *channels)
                .map(|t| (t.features, t.step)),
        };
        let (features, step) = match loaded {
            Ok(f) => f,
            Err(e @ HeadError::Features { .. }) if skip_missing && store.locate(id).is_none() => {
                tracing::warn!("skipping: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        *channels = Some(features.c);
        let ann: Vec<[f64; 2]> = entry.annotations.iter().map(|a| a.segment).collect();
        let mut labels: Vec<(String, f64)> = Vec::new();
        for a in &entry.annotations {
            let len = (a.segment[1] - a.segment[0]).max(0.0);
            match labels.iter_mut().find(|(n, _)| *n == a.label) {
                Some((_, t)) => *t += len,
                None => labels.push((a.label.clone(), len)),
            }
        }
        out.push(TrainVideo {
            segments: seconds_to_fractions(id, covered_seconds(store, id, entry.duration), &ann),
            features,
            labels,
            annotations: ann,
            step,
        });
    }
    Ok(out)
}

/// Trains the video-level classifier on the training videos (see [`crate::model`]).
/// Returns the description, the trained module (plain device) and its training accuracy.
fn train_classifier(
    videos: &[TrainVideo],
    config: &ClassifierConfig,
    seed: u64,
    plain: &Device,
) -> Result<Option<(ClassifierMeta, VideoClassifier, f64)>> {
    let mut classes: Vec<String> = videos
        .iter()
        .flat_map(|v| v.labels.iter().map(|(n, _)| n.clone()))
        .collect();
    classes.sort();
    classes.dedup();
    if classes.len() < 2 {
        tracing::warn!(
            "the training subset has {} class(es); no video classifier trained",
            classes.len()
        );
        return Ok(None);
    }
    let labelled: Vec<&TrainVideo> = videos.iter().filter(|v| !v.labels.is_empty()).collect();
    let feats: Vec<&VideoFeatures> = labelled.iter().map(|v| &v.features).collect();
    let pooled: Vec<Vec<f32>> = feats
        .iter()
        .map(|f| crate::model::pool_features(f))
        .collect();
    let d = pooled[0].len();
    let n = pooled.len() as f32;
    let mut mean = vec![0f32; d];
    for p in &pooled {
        mean.iter_mut().zip(p).for_each(|(m, x)| *m += x / n);
    }
    let mut std = vec![0f32; d];
    for p in &pooled {
        std.iter_mut()
            .zip(p.iter().zip(&mean))
            .for_each(|(s, (x, m))| *s += (x - m) * (x - m) / n);
    }
    std.iter_mut().for_each(|s| *s = s.sqrt().max(1e-6));
    let meta = ClassifierMeta {
        classes: classes.clone(),
        hidden: config.hidden,
        mean,
        std,
    };
    let k = classes.len();
    let mut target = vec![0f32; labelled.len() * k];
    for (i, v) in labelled.iter().enumerate() {
        let total: f64 = v.labels.iter().map(|(_, t)| t.max(1e-9)).sum();
        for (name, t) in &v.labels {
            if let Ok(j) = classes.binary_search(name) {
                target[i * k + j] += (t.max(1e-9) / total) as f32;
            }
        }
    }
    let device = plain.clone().autodiff();
    let x = meta.inputs(&feats, &device);
    let y = Tensor::<2>::from_data(
        TensorData::new(target.clone(), [labelled.len(), k]),
        &device,
    );
    let mut model = seeded(&device, seed ^ 0xC1A5_51F1, || {
        initialized(meta.init(&device))
    });
    let mut optim = AdamConfig::new()
        .with_weight_decay(
            (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32)),
        )
        .init();
    for _ in 0..config.steps {
        let logits = model.forward(x.clone());
        let loss = (log_softmax(logits, 1) * y.clone()).sum_dim(1).mean().neg();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(config.lr, model, grads);
    }
    let model = model.valid();
    let probs = meta.predict(&model, &feats, plain)?;
    let correct = probs
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(j, _)| j);
            target[i * k + best] > 0.0
        })
        .count();
    Ok(Some((meta, model, correct as f64 / labelled.len() as f64)))
}

/// Adam's epsilon in PyTorch, which the official G-TAD uses (burn's default is 1e-5).
const ADAM_EPSILON: f32 = 1e-8;

/// What validation of the head evaluates against: the loss on the validation videos' targets
/// (G-TAD's model selection) and, when class scores exist, the detection mAP.
struct HeadValidation {
    /// What the loss is measured on: videos (rescale) or windows holding an action.
    features: Vec<VideoFeatures>,
    targets: Vec<HeadTargets>,
    /// Whole videos for the detection mAP, with their class scores and ground truth.
    detection: Option<(HeadInput, EvalTruth, VideoClassScores)>,
}

/// Seed of the regression band sampling in the validation loss: fixed, so that every epoch is
/// scored on the same draws.
const VALIDATION_SEED: u64 = 0x5EED_0F7A_11D0;

impl HeadValidation {
    /// The validation videos with their targets and, when a classifier was trained, their class
    /// scores and ground truth for the detection mAP.
    fn new(
        classifier: Option<(&ClassifierMeta, &VideoClassifier)>,
        val: Vec<TrainVideo>,
        val_subset: &str,
        config: &HeadConfig,
        inputs: &HeadInputs,
    ) -> Result<Self> {
        let input = match config.temporal {
            Temporal::Rescale => {
                HeadInput::Rescaled(val.iter().map(|v| v.features.clone()).collect())
            }
            Temporal::Windows { window_stride } => HeadInput::Windows {
                videos: val
                    .iter()
                    .map(|v| TimedFeatures {
                        features: v.features.clone(),
                        step: v.step,
                    })
                    .collect(),
                w: config.snippets,
                stride: window_stride,
            },
        };
        let detection = match classifier {
            Some((meta, model)) => {
                let refs: Vec<&VideoFeatures> = val.iter().map(|v| &v.features).collect();
                let probs = meta.predict(model, &refs, &inputs.device)?;
                let file = ClassScoreFile {
                    class: meta.classes.clone(),
                    results: refs.iter().map(|v| v.id.clone()).zip(probs).collect(),
                };
                let truth = EvalTruth::from_path(
                    &inputs.ground_truth,
                    &GroundTruthOptions {
                        subset: val_subset.to_string(),
                        ..GroundTruthOptions::default()
                    },
                )?;
                Some((input, truth, file.to_scores()?))
            }
            None => None,
        };
        let val = samples(val, config);
        Ok(Self {
            targets: val
                .iter()
                .map(|v| {
                    config
                        .head
                        .targets(&v.segments, config.snippets, config.boundary_width)
                })
                .collect::<std::result::Result<_, _>>()?,
            features: val.iter().map(|v| v.features.clone()).collect(),
            detection,
        })
    }
}

/// The target settings of `config`.
struct HeadStage<'a> {
    config: &'a HeadConfig,
    train: &'a [TrainVideo],
    targets: Vec<HeadTargets>,
    loss_fn: GtadLoss,
    device: Device,
    validation: Option<HeadValidation>,
}

impl Stage for HeadStage<'_> {
    type Model = Head;
    type Batch = Vec<usize>;
    type Batches = std::vec::IntoIter<Result<Vec<usize>>>;
    type Error = HeadError;

    fn name(&self) -> &'static str {
        "train-head"
    }

    fn epochs(&self) -> usize {
        self.config.epochs
    }

    fn lr(&self, epoch: usize) -> f64 {
        self.config.lr_at(epoch)
    }

    fn batches(&mut self, epoch: usize) -> Result<Self::Batches> {
        let order = lofi_rng::SplitMix64::new(self.config.seed.wrapping_add(epoch as u64))
            .permutation(self.train.len());
        let batches: Vec<Result<Vec<usize>>> = order
            .chunks(self.config.batch_size)
            .map(|c| Ok(c.to_vec()))
            .collect();
        Ok(batches.into_iter())
    }

    fn step(
        &mut self,
        head: Head,
        optim: &mut ModuleOptimizer,
        at: StepAt,
        idx: Vec<usize>,
    ) -> Result<(Head, Option<StepMetrics>)> {
        let feats: Vec<&VideoFeatures> = idx.iter().map(|&i| &self.train[i].features).collect();
        let tg: Vec<HeadTargets> = idx.iter().map(|&i| self.targets[i].clone()).collect();
        let x = batch_tensor(&feats, &self.device);
        let out = head.forward(x)?;
        let parts =
            self.loss_fn
                .compute(&out, &tg, self.config.seed.wrapping_add(at.step as u64))?;
        let loss = scalar(parts.total.clone(), "the loss")?;
        if !loss.is_finite() {
            return Err(HeadError::Input(format!(
                "loss became {loss} at epoch {}, step {}; lower lr (now {})",
                at.epoch, at.step, at.lr
            )));
        }
        let loss_parts = LossParts {
            boundary: scalar(parts.boundary, "the boundary loss")?,
            regression: scalar(parts.regression, "the regression loss")?,
            classification: scalar(parts.classification, "the classification loss")?,
        };
        let grads = GradientsParams::from_grads(parts.total.backward(), &head);
        let head = optim.step(at.lr, head, grads);
        Ok((
            head,
            Some(StepMetrics {
                loss,
                loss_parts: Some(loss_parts),
                videos: idx.len(),
                ..StepMetrics::default()
            }),
        ))
    }

    fn validate(&mut self, head: &Head, epoch: usize) -> Result<Option<ValidationMetrics>> {
        let c = self.config;
        let due = lofi_engine::validation_due(c.validate_every, epoch, c.epochs);
        let Some(v) = self.validation.as_ref().filter(|_| due) else {
            return Ok(None);
        };
        let head = head.valid();
        let loss = validation_loss(&head, v, &self.loss_fn, self.config.batch_size)?;
        let mut metrics = ValidationMetrics {
            loss,
            ..ValidationMetrics::default()
        };
        if let Some((input, truth, scores)) = &v.detection {
            let report = validate_input(&head, input, truth, scores, &self.config.detect)?;
            metrics.average_map = Some(report.average_map);
            metrics.map = Some(report.map);
        }
        Ok(Some(metrics))
    }
}

/// Mean over batches of G-TAD's loss on the validation videos, as `gtad_train.py`'s `test()`;
/// `None` without a validation sample (no window holding an action), where a loss of 0 would
/// make every epoch look equally good.
fn validation_loss(
    head: &Head,
    v: &HeadValidation,
    loss_fn: &GtadLoss,
    batch_size: usize,
) -> Result<Option<f64>> {
    if v.features.is_empty() {
        return Ok(None);
    }
    let device = head.device();
    let mut sum = 0.0;
    let mut batches = 0usize;
    let idx: Vec<usize> = (0..v.features.len()).collect();
    for (i, chunk) in idx.chunks(batch_size.max(1)).enumerate() {
        let feats: Vec<&VideoFeatures> = chunk.iter().map(|&j| &v.features[j]).collect();
        let tg: Vec<HeadTargets> = chunk.iter().map(|&j| v.targets[j].clone()).collect();
        let out = head.forward(batch_tensor(&feats, &device))?;
        let parts = loss_fn.compute(&out, &tg, VALIDATION_SEED.wrapping_add(i as u64))?;
        sum += scalar(parts.total, "the validation loss")?;
        batches += 1;
    }
    Ok(Some(sum / batches.max(1) as f64))
}

/// `best.json` in the run folder: the epoch whose head became `head.bpk`, and the rule that chose
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    /// The epoch (0-based, as in the metrics and `checkpoints/epoch-<E>.bpk`).
    pub epoch: usize,
    /// Its validation loss; `None` when no validation loss could be computed (the last epoch is
    /// kept).
    pub validation_loss: Option<f64>,
    /// How it was chosen, in words.
    pub rule: String,
}

/// The rule of [`BestEpoch`] when the lowest validation loss chose the epoch.
pub const LOWEST_VALIDATION_LOSS: &str = "lowest validation loss (G-TAD's GTAD_best)";

/// The epoch with the lowest validation loss (the first one on ties, as G-TAD's strict `<`);
/// when no epoch has a finite validation loss, the last epoch, with `why_none` as the reason.
fn best_epoch(epochs: &[metrics::EpochSummary], why_none: &str) -> Option<BestEpoch> {
    let lowest = epochs
        .iter()
        .filter_map(|e| {
            let loss = e.validation.as_ref()?.loss?;
            loss.is_finite().then_some((e.epoch, loss))
        })
        .fold(
            None,
            |best: Option<(usize, f64)>, (epoch, loss)| match best {
                Some((_, b)) if b <= loss => best,
                _ => Some((epoch, loss)),
            },
        );
    match lowest {
        Some((epoch, loss)) => Some(BestEpoch {
            epoch,
            validation_loss: Some(loss),
            rule: LOWEST_VALIDATION_LOSS.into(),
        }),
        None => epochs.last().map(|e| BestEpoch {
            epoch: e.epoch,
            validation_loss: None,
            rule: format!("last epoch: no validation loss could be computed ({why_none})"),
        }),
    }
}

/// Why no validation loss exists, for [`best_epoch`]'s rule.
fn why_no_validation_loss(
    config: &HeadConfig,
    subsets: &HeadSubsets,
    validation: Option<&HeadValidation>,
) -> String {
    match validation {
        _ if config.validate_every == 0 => "validation is off (validate_every = 0)".into(),
        _ if !subsets.validate => format!(
            "the evaluation subset {:?} is a test set, and no epoch is chosen on it",
            subsets.evaluation
        ),
        None => format!(
            "subset {:?} has no video with features to validate on",
            subsets.evaluation
        ),
        Some(v) if v.features.is_empty() => format!(
            "no window of {} snippets of subset {:?} holds 90 % of an action",
            config.snippets, subsets.evaluation
        ),
        Some(_) => "every validation loss was NaN or infinite".into(),
    }
}

/// The subsets of a head run, as the ground truth spells them.
#[derive(Debug, Clone, PartialEq)]
struct HeadSubsets {
    train: String,
    evaluation: String,
    /// Whether the run validates (and chooses its epoch) on `evaluation`: not on a test set.
    validate: bool,
}

impl HeadSubsets {
    /// `config`'s subsets (the rule of every stage when it names none) in `truth`'s spelling.
    fn resolve(config: &HeadConfig, truth: &GroundTruth, path: &std::path::Path) -> Result<Self> {
        let (train, evaluation) = truth
            .choose_subsets(config.train_subset.as_deref(), config.val_subset.as_deref())
            .map_err(|m| HeadError::Input(format!("{}: {m}", path.display())))?;
        let evaluation = evaluation.unwrap_or_else(|| "validation".into());
        let test_set = lofi_video::ground_truth::is_test_subset(&evaluation);
        let validate = config.validate_every > 0 && !test_set;
        if config.validate_every > 0 && test_set {
            tracing::info!(
                "evaluation subset {evaluation:?} is a test set: no validation during training \
                 and the last epoch is kept as head.bpk (choosing an epoch on it would leak the \
                 test set into the model)"
            );
        }
        tracing::info!(
            "training on subset {train:?}; evaluation subset {evaluation:?}{}",
            if validate {
                ", validated on for choosing the epoch"
            } else {
                ""
            }
        );
        Ok(Self {
            train,
            evaluation,
            validate,
        })
    }
}

/// The training and validation videos of the run's subsets with their features, and the
/// feature width.
fn load_subsets(
    config: &HeadConfig,
    subsets: &HeadSubsets,
    truth: &GroundTruth,
    inputs: &HeadInputs,
) -> Result<(Vec<TrainVideo>, Vec<TrainVideo>, usize)> {
    let store = FeatureStore::open(&inputs.features)?;
    let mut channels = None;
    let train = load_subset(&store, truth, &subsets.train, config, &mut channels)?;
    if train.is_empty() {
        return Err(HeadError::Input(format!(
            "{}: no video of subset {:?} with features in {}",
            inputs.ground_truth.display(),
            subsets.train,
            inputs.features.display()
        )));
    }
    let val = if subsets.validate {
        load_subset(&store, truth, &subsets.evaluation, config, &mut channels)?
    } else {
        Vec::new()
    };
    let c = channels.unwrap_or(train[0].features.c);
    Ok((train, val, c))
}

/// What the head is trained on, for the run's fingerprint: the ground truth's bytes, and the
/// feature folder's own fingerprint and index (which records each feature file's hash) when it
/// has them; a single features file by its bytes; a peer's folder without either by its path.
fn input_fingerprint(inputs: &HeadInputs) -> Result<Fingerprint> {
    let mut f = Fingerprint::new().with_file("ground_truth", &inputs.ground_truth)?;
    let dir = &inputs.features;
    if dir.is_file() {
        // One many-video file (an `.h5`): its bytes are its identity.
        return Ok(f.with_file("features_file", dir)?);
    }
    let mut known = false;
    if let Some(made_by) = Fingerprint::read(dir)? {
        f = f.with("features", &made_by.parts)?;
        known = true;
    }
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        f = f.with_file("features_index", &index)?;
        known = true;
    }
    if !known {
        let absolute = std::path::absolute(dir).map_err(|e| HeadError::io(dir, e))?;
        f = f.with("features_folder", &absolute)?;
    }
    Ok(f)
}

/// The settings a feature folder was extracted with (its `config.toml`, as JSON), for the head's
/// card; `None` for folders without them (a peer's features).
fn features_settings(dir: &std::path::Path) -> Option<serde_json::Value> {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).ok()?;
    match toml::from_str::<toml::Value>(&text)
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
    {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("{}: not recorded in the head's card: {e}", path.display());
            None
        }
    }
}

/// Trains a G-TAD head (and the video classifier) on feature files; see the module docs.
/// `control` resumes a run, and receives its progress.
pub fn train_head(
    config: &HeadConfig,
    inputs: &HeadInputs,
    control: &RunControl,
) -> Result<HeadOutcome> {
    config.validate()?;
    let started = Instant::now();
    let l = config.snippets;
    let truth = GroundTruth::read(&inputs.ground_truth)?;
    let subsets = HeadSubsets::resolve(config, &truth, &inputs.ground_truth)?;
    let (train, val, c) = load_subsets(config, &subsets, &truth, inputs)?;
    let (train_videos, val_videos) = (train.len(), val.len());
    let plan = OutputPlan::new(
        FolderKind::Head,
        &[
            files::HEAD,
            files::META,
            files::CLASSIFIER,
            files::CLASSIFIER_CARD,
            files::BEST,
        ],
        &[],
    )
    .with_input("the feature folder", &inputs.features)
    .with_input("the ground truth", &inputs.ground_truth);
    let run = RunDir::open(
        &inputs.out,
        config,
        input_fingerprint(inputs)?,
        control,
        &plan,
    )?;

    // Classifier first, so that every validation can use it.
    let classifier = if config.classifier.enabled {
        train_classifier(&train, &config.classifier, config.seed, &inputs.device)?
    } else {
        None
    };
    let validation = if val.is_empty() {
        None
    } else {
        let cls = classifier.as_ref().map(|(meta, model, _)| (meta, model));
        Some(HeadValidation::new(
            cls,
            val,
            &subsets.evaluation,
            config,
            inputs,
        )?)
    };
    // The head's samples: the videos (rescale) or their windows holding an action.
    let train = samples(train, config);
    if train.is_empty() {
        return Err(HeadError::Input(format!(
            "no window of {l} snippets holds 90 % of an action of subset {:?}; use longer \
             windows (snippets) or a finer feature stride",
            subsets.train
        )));
    }

    // Head.
    let device = inputs.device.clone().autodiff();
    let head = seeded(&device, config.seed, || {
        config.head.init(c, &device).map(initialized)
    })?;
    let targets: Vec<HeadTargets> = train
        .iter()
        .map(|v| config.head.targets(&v.segments, l, config.boundary_width))
        .collect::<std::result::Result<_, _>>()?;
    let optim = AdamConfig::new()
        .with_epsilon(ADAM_EPSILON)
        .with_weight_decay(
            (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32)),
        )
        .with_grad_clipping(
            (config.grad_clip > 0.0)
                .then_some(GradientClippingConfig::Norm(config.grad_clip as f32)),
        )
        .init();
    let mut stage = HeadStage {
        config,
        train: &train,
        targets,
        loss_fn: config.head.loss(),
        device: device.clone(),
        validation,
    };
    let head = match fit(&mut stage, head, optim, &run, control, None, &device)? {
        FitEnd::Finished(head) => head,
        FitEnd::Stopped(n) => return Err(lofi_engine::EngineError::Stopped(n).into()),
    };

    // Final artefacts: the head of the epoch with the lowest validation loss (G-TAD keeps
    // `GTAD_best`), the last epoch's when no validation loss was measured.
    let epochs = metrics::epoch_summaries(&metrics::read(&run.metrics())?);
    let best = best_epoch(
        &epochs,
        &why_no_validation_loss(config, &subsets, stage.validation.as_ref()),
    );
    let head = match &best {
        Some(b) if b.epoch + 1 != config.epochs => {
            let path = run.checkpoints().join(format!("epoch-{}.bpk", b.epoch));
            lofi_model::checkpoint::load(head, &path)?
        }
        _ => head,
    };
    if let Some(b) = &best {
        if b.validation_loss.is_none() {
            tracing::warn!("head.bpk is the {}", b.rule);
        }
        run.write_json(files::BEST, b)?;
    }
    // Weights first, then each one's model card (the card of head.bpk is head.json).
    let producer =
        Producer::new("train-head", config)?.with_features(features_settings(&inputs.features));
    // Sampling of the features (their index says; a peer's folder without one: unknown), the
    // subsets, and how the kept epoch was chosen.
    let sampling = FeatureStore::open(&inputs.features)?
        .index
        .map(|i| i.sampling);
    let window_stride = match config.temporal {
        Temporal::Windows { window_stride } => Some(window_stride),
        Temporal::Rescale => None,
    };
    let input = |spec: InputSpec| match sampling {
        Some(s) => spec.with_sampling(s, window_stride),
        None => spec,
    };
    let recorded = RunSubsets {
        selection: Some(match best.as_ref().and_then(|b| b.validation_loss) {
            Some(_) => format!("lowest validation loss on {}", subsets.evaluation),
            None => LAST_EPOCH.into(),
        }),
        train: subsets.train,
        evaluation: Some(subsets.evaluation),
    };
    let head_card = ModelCard::new(
        ModelSpec::Head {
            arch: config.head.clone(),
            in_channels: c,
            snippets: l,
            detect: Some(config.detect.clone()),
        },
        input(feature_input(l, c, Normalization::None)),
        producer.clone(),
    )
    .with_subsets(Some(recorded.clone()));
    let head = head.valid();
    run.save_with_card(files::HEAD, &head_card, |p| head.save(p))?;
    let accuracy = match classifier {
        Some((meta, model, acc)) => {
            let mut card = meta.card(l, producer).with_subsets(Some(recorded));
            card.input = input(card.input);
            run.save_with_card(files::CLASSIFIER, &card, |p| {
                lofi_model::checkpoint::save(&model, p)
            })?;
            Some(acc)
        }
        None => None,
    };
    Ok(HeadOutcome {
        run_dir: inputs.out.clone(),
        train_videos,
        val_videos,
        epoch_loss: epochs.iter().map(|e| e.mean_loss).collect(),
        val_average_map: epochs
            .iter()
            .rev()
            .find_map(|e| e.validation.as_ref().and_then(|v| v.average_map)),
        classifier_train_accuracy: accuracy,
        best_epoch: best
            .filter(|b| b.validation_loss.is_some())
            .map(|b| b.epoch),
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_defaults_and_schedule() {
        let c = HeadConfig::default();
        assert_eq!(
            (c.lr, c.weight_decay, c.batch_size, c.epochs),
            (4e-3, 1e-4, 16, 10)
        );
        assert_eq!(c.grad_clip, 0.0);
        assert!((c.lr_at(4) - 4e-3).abs() < 1e-12);
        assert!((c.lr_at(5) - 4e-4).abs() < 1e-12);
        assert!((c.lr_at(9) - 4e-4).abs() < 1e-12);
    }

    #[test]
    fn unknown_keys_and_impossible_values_are_refused_by_name() {
        let p = std::path::Path::new("head.toml");
        let e = HeadConfig::from_toml("epochs = 3\nlearning_rate = 0.1\n", p).expect_err("key");
        assert!(e.to_string().contains("learning_rate"), "{e}");
        let e = HeadConfig::from_toml("lr = -1.0\n", p).expect_err("value");
        assert!(e.to_string().contains("lr = -1"), "{e}");
        let e = HeadConfig::from_toml("[head]\nhidden = 6\n", p).expect_err("groups");
        assert!(e.to_string().contains("head"), "{e}");
        let e = HeadConfig::from_toml("snippets = 1\n", p).expect_err("L = 1");
        assert!(e.to_string().contains("L >= 2"), "{e}");
        let e = HeadConfig::from_toml("snippets = 2\n", p).expect_err("L < k");
        assert!(e.to_string().contains("head.k = 3"), "{e}");
        let e = HeadConfig::from_toml("[detect]\ntop_k = 0\n", p).expect_err("top_k");
        assert!(e.to_string().contains("top_k"), "{e}");
        let ok = HeadConfig::from_toml("epochs = 2\n[head]\nhidden = 32\n", p).expect("valid");
        // A [head] without kind is a G-TAD.
        assert_eq!(ok.epochs, 2);
        assert_eq!(
            ok.head,
            lofi_model::HeadArch::Gtad(lofi_model::GtadArch {
                hidden: 32,
                ..lofi_model::GtadArch::default()
            })
        );
        // The written config reads back identically.
        let text = toml::to_string_pretty(&ok).expect("serialize");
        assert_eq!(HeadConfig::from_toml(&text, p).expect("round trip"), ok);
    }

    #[test]
    fn annotations_become_fractions_of_the_covered_span_as_the_official_code_makes_them() {
        // 10 s covered of a 12 s annotated video: fractions of 10 s, clipped; an annotation past
        // the covered part stays as a point at 1 (the official code keeps it).
        let segs = seconds_to_fractions("v", 10.0, &[[1.0, 4.0], [8.0, 11.0], [10.5, 12.0]]);
        assert_eq!(
            segs,
            vec![
                Segment::new(0.1, 0.4),
                Segment::new(0.8, 1.0),
                Segment::new(1.0, 1.0)
            ]
        );
        assert!(seconds_to_fractions("v", 10.0, &[[4.0, 3.0]]).is_empty());
    }

    #[test]
    fn best_epoch_is_the_first_lowest_validation_loss() {
        let e = |epoch: usize, loss: Option<f64>| metrics::EpochSummary {
            epoch,
            mean_loss: 1.0,
            validation: loss.map(|l| ValidationMetrics {
                loss: Some(l),
                ..ValidationMetrics::default()
            }),
        };
        let b = best_epoch(
            &[
                e(0, Some(3.0)),
                e(1, None),
                e(2, Some(2.0)),
                e(3, Some(2.0)),
            ],
            "",
        )
        .expect("some");
        assert_eq!((b.epoch, b.validation_loss), (2, Some(2.0)));
        assert_eq!(b.rule, LOWEST_VALIDATION_LOSS);
        // No usable loss: the last epoch, and the rule says why.
        let b = best_epoch(&[e(0, None), e(1, Some(f64::NAN))], "a reason").expect("last");
        assert_eq!((b.epoch, b.validation_loss), (1, None));
        assert!(b.rule.starts_with("last epoch") && b.rule.contains("a reason"));
        assert!(best_epoch(&[], "none").is_none());
    }
}
