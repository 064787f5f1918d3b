//! `lofi pretrain`: clip-classification training of the encoder (TSM-ResNet or R(2+1)D, the
//! config's `[encoder]`) on trimmed action clips,
//! the "ACP" starting point of LoFi for users without Kinetics weights (and the demo).
//!
//! Exists because LoFi starts from an action-classification encoder; users with a Kinetics
//! checkpoint import it with lofi-model and skip this stage. Input is the `clips/` folder and
//! `clips.json` that `lofi synth` writes (any folder with that layout works). Each clip is
//! sampled as `segments` frames at the centres of equal parts of the clip (TSM's test-time
//! sampling), frames are `size x size`, and the loss is cross-entropy over the classes.
//!
//! The clips come either from `clips.json` and its clip files, or straight from untrimmed videos
//! and their ground truth ([`PretrainData::Annotations`]): each annotated segment is a clip,
//! sampled through the loader's `span` with the same frame positions, so nothing is cut or
//! written first; `background = true` adds a class of unannotated spans (see
//! [`crate::data::annotated_clips`]).
//!
//! The run is kept by lofi-engine (run folder, checkpoints, typed metrics, exact resume); this
//! module is the stage: the epoch's shuffled batches, the cross-entropy step and the validation
//! accuracy on the `validation` clips after every epoch.
//!
//! Output: `encoder.bpk` (the trunk only, loadable by `lofi train --encoder`), `classifier.bpk`
//! (trunk + `fc`), their model cards `encoder.json` and `classifier.json` (architecture, frame
//! size, classes; see `lofi_model::card`), `config.toml`, `metrics.jsonl` (stage `"pretrain"`) and `summary.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lofi_engine::metrics::{self, FidelityStats};
use lofi_engine::readback::{scalar, scalar_int};
use lofi_engine::{
    fit, Fingerprint, FitEnd, FolderKind, OutputPlan, RunDir, Stage, StepAt, StepMetrics,
    ValidationMetrics,
};
use lofi_model::card::{RunSubsets, LAST_EPOCH};
use lofi_model::{Encoder, ModelCard, ModelSpec, Producer};
use lofi_video::{ClipU8, Fidelity, SamplingPlan, VideoFailure, VideoJob};
use serde::{Deserialize, Serialize};

use crate::config::PretrainConfig;
use crate::data::FailureList;
use crate::data::{
    annotated_clips, decode, read_clips, shuffled_batches, stack_clips, Clip, Decoded, EpochBatches,
};
use crate::error::{TrainError, TrainResult};
use crate::memory::{MemoryMeter, ProcMeter};
use crate::model::sgd;
use crate::train::{module_device, RunOptions};

/// Where `lofi pretrain` reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainPaths {
    /// Where the clips come from.
    pub data: PretrainData,
    /// Run folder.
    pub out: PathBuf,
}

/// The two sources of pre-training clips.
#[derive(Debug, Clone, PartialEq)]
pub enum PretrainData {
    /// A folder holding `clips.json` and the clip files it lists (as `lofi synth` writes).
    Clips(PathBuf),
    /// Untrimmed videos and their ActivityNet-style ground truth: one clip per annotated segment,
    /// sampled from the video itself (see [`crate::data::annotated_clips`]).
    Annotations {
        /// The ground-truth file.
        ground_truth: PathBuf,
        /// Folder of the videos.
        videos: PathBuf,
        /// Subset to train on (`None`: `training`, or THUMOS14's `Validation`).
        train_subset: Option<String>,
        /// Subset to validate on (`None`: `validation`, or THUMOS14's `Test`).
        val_subset: Option<String>,
    },
}

/// Class names, training and validation clips, what was left out, and the subsets they came
/// from.
type ClipSets = (
    Vec<String>,
    Vec<Clip>,
    Vec<Clip>,
    Vec<VideoFailure>,
    RunSubsets,
);

impl PretrainData {
    /// What the run reads, for its fingerprint: `clips.json`, or the ground truth (the clip
    /// files and videos themselves are too large to hash on every start).
    fn fingerprint(&self) -> TrainResult<Fingerprint> {
        Ok(match self {
            Self::Clips(dir) => Fingerprint::new().with_file("clips", &dir.join("clips.json"))?,
            Self::Annotations {
                ground_truth,
                train_subset,
                val_subset,
                ..
            } => Fingerprint::new()
                .with_file("ground_truth", ground_truth)?
                .with("subsets", &(train_subset, val_subset))?,
        })
    }

    fn read(&self, config: &PretrainConfig, skip_missing: bool) -> TrainResult<ClipSets> {
        match self {
            Self::Clips(dir) => {
                if config.background {
                    return Err(TrainError::Config(
                        "background = true needs clips sampled from annotated videos \
                         (--ground-truth and --videos), not clips.json"
                            .into(),
                    ));
                }
                let (classes, train) = read_clips(dir, "training")?;
                let (_, val) = read_clips(dir, "validation")?;
                if train.is_empty() {
                    return Err(TrainError::NoData(format!(
                        "{} lists no training clips",
                        dir.join("clips.json").display()
                    )));
                }
                let subsets = RunSubsets {
                    train: "training".into(),
                    evaluation: (!val.is_empty()).then(|| "validation".into()),
                    selection: Some(LAST_EPOCH.into()),
                };
                Ok((classes, train, val, Vec::new(), subsets))
            }
            Self::Annotations {
                ground_truth,
                videos,
                train_subset,
                val_subset,
            } => {
                let clips = annotated_clips(
                    ground_truth,
                    videos,
                    (train_subset.as_deref(), val_subset.as_deref()),
                    config.background,
                    config.seed,
                    skip_missing,
                )?;
                tracing::info!(
                    "pre-training on {} clips of subset {:?}, validating on {} of {:?}, {} classes",
                    clips.train.len(),
                    clips.subsets.train,
                    clips.validation.len(),
                    clips.subsets.validation.as_deref().unwrap_or("(none)"),
                    clips.classes.len()
                );
                if clips.train.is_empty() {
                    return Err(TrainError::NoData(format!(
                        "no training clip of {} was found in {}",
                        ground_truth.display(),
                        videos.display()
                    )));
                }
                let subsets = RunSubsets {
                    train: clips.subsets.train,
                    evaluation: clips.subsets.validation,
                    selection: Some(LAST_EPOCH.into()),
                };
                Ok((
                    clips.classes,
                    clips.train,
                    clips.validation,
                    clips.skipped,
                    subsets,
                ))
            }
        }
    }
}

/// What [`pretrain`] produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainOutcome {
    /// The trunk for `lofi train --encoder`.
    pub encoder: PathBuf,
    /// Trunk and classifier.
    pub classifier: PathBuf,
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f64>,
    /// Validation accuracy of each epoch (when there are validation clips).
    pub val_accuracy: Vec<Option<f64>>,
    /// Step time and peak memory.
    pub steps: Vec<FidelityStats>,
    /// Clips skipped.
    pub skipped: Vec<(String, String)>,
}

fn jobs(clips: &[&Clip]) -> Vec<VideoJob> {
    clips.iter().map(|c| c.job()).collect()
}

/// Class index of each clip id (the first clip of an id wins).
fn label_map(clips: &[Clip]) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for c in clips {
        map.entry(c.id.clone()).or_insert(c.label);
    }
    map
}

fn batch_tensors(
    clips: &[(String, ClipU8)],
    labels: &HashMap<String, usize>,
    device: &Device,
) -> TrainResult<(Tensor<5>, Tensor<1, Int>)> {
    let refs: Vec<_> = clips.iter().map(|(_, c)| c).collect();
    let x = stack_clips(&refs, device)?;
    let [b, t, f, c, h, w] = x.dims();
    let x = x.reshape([b, t * f, c, h, w]);
    let labels = clips
        .iter()
        .map(|(id, _)| {
            labels
                .get(id)
                .map(|&l| l as i64)
                .ok_or_else(|| TrainError::NoData(format!("unknown clip {id}")))
        })
        .collect::<TrainResult<Vec<i64>>>()?;
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), device);
    Ok((x, y))
}

/// Top-1 accuracy of `model` on `clips` (inference mode); `None` without clips.
fn accuracy(
    model: &Encoder,
    clips: &[Clip],
    plan: SamplingPlan,
    config: &PretrainConfig,
) -> TrainResult<Option<f64>> {
    if clips.is_empty() {
        return Ok(None);
    }
    let model = model.valid();
    let device = module_device(&model);
    let labels = label_map(clips);
    let (mut right, mut seen) = (0usize, 0usize);
    let refs: Vec<&Clip> = clips.iter().collect();
    for group in refs.chunks(config.batch_size) {
        let (decoded, _) = decode(jobs(group), plan, config.workers)?;
        if decoded.is_empty() {
            continue;
        }
        let (x, y) = batch_tensors(&decoded, &labels, &device)?;
        let pred = model.classify(x)?.argmax(1).reshape([decoded.len()]);
        right += scalar_int(pred.equal(y).int().sum(), "the number of correct clips")? as usize;
        seen += decoded.len();
    }
    Ok((seen > 0).then(|| right as f64 / seen as f64))
}

/// The pre-training stage run by lofi-engine.
struct PretrainStage<'a> {
    config: &'a PretrainConfig,
    train_clips: Vec<Clip>,
    val_clips: Vec<Clip>,
    labels: HashMap<String, usize>,
    plan: SamplingPlan,
    ce: CrossEntropyLoss,
    device: Device,
    skipped: FailureList,
}

impl Stage for PretrainStage<'_> {
    type Model = Encoder;
    type Batch = Decoded;
    type Batches = EpochBatches;
    type Error = TrainError;

    fn name(&self) -> &'static str {
        "pretrain"
    }

    fn epochs(&self) -> usize {
        self.config.epochs
    }

    fn lr(&self, epoch: usize) -> f64 {
        self.config.optimizer.lr_at(epoch)
    }

    fn batches(&mut self, epoch: usize) -> TrainResult<EpochBatches> {
        let c = self.config;
        let seed = c.seed ^ (epoch as u64 + 1) << 17;
        shuffled_batches(
            self.train_clips.len(),
            c.batch_size,
            seed,
            (c.workers, false),
            |_, chunk| {
                let group: Vec<&Clip> = chunk.iter().map(|&i| &self.train_clips[i]).collect();
                (jobs(&group), self.plan)
            },
        )
    }

    fn step(
        &mut self,
        model: Encoder,
        optim: &mut ModuleOptimizer,
        at: StepAt,
        (decoded, failed): Decoded,
    ) -> TrainResult<(Encoder, Option<StepMetrics>)> {
        self.skipped.extend(failed);
        if decoded.is_empty() {
            return Ok((model, None));
        }
        let (x, y) = batch_tensors(&decoded, &self.labels, &self.device)?;
        let loss = self.ce.forward(model.classify(x)?, y);
        let value = scalar(loss.clone(), "the loss")?;
        if !value.is_finite() {
            return Err(TrainError::Diverged {
                epoch: at.epoch,
                batch: at.batch,
                loss: value as f32,
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optim.step(at.lr, model, grads);
        let c = self.config;
        Ok((
            model,
            Some(StepMetrics {
                loss: value,
                fidelity: Some(lofi_engine::FidelityTag {
                    name: format!("{}x{}", c.segments, c.size),
                    snippets: c.segments,
                    size: c.size,
                }),
                videos: decoded.len(),
                ..StepMetrics::default()
            }),
        ))
    }

    fn validate(
        &mut self,
        model: &Encoder,
        _epoch: usize,
    ) -> TrainResult<Option<ValidationMetrics>> {
        Ok(
            accuracy(model, &self.val_clips, self.plan, self.config)?.map(|a| ValidationMetrics {
                accuracy: Some(a),
                ..ValidationMetrics::default()
            }),
        )
    }
}

/// Trains the encoder for clip classification (see the module docs).
pub fn pretrain(
    config: &PretrainConfig,
    paths: &PretrainPaths,
    options: &RunOptions,
) -> TrainResult<PretrainOutcome> {
    config.validate()?;
    if !options.replica_devices.is_empty() {
        return Err(TrainError::Config(
            "pre-training runs on one device; data parallel is for `train`".into(),
        ));
    }
    let (classes, train_clips, val_clips, left_out, subsets) =
        paths.data.read(config, options.skip_missing_videos)?;
    let run = RunDir::open(
        &paths.out,
        config,
        paths.data.fingerprint()?,
        &options.run,
        &output_plan(&paths.data),
    )?;
    let device = options.device.clone().autodiff();
    let model = lofi_model::seed::seeded(&device, config.seed, || {
        (config.encoder.init(Some(classes.len()), &device)).map(lofi_model::seed::initialized)
    })?;
    let optim = sgd(&config.optimizer);
    let mut stage = PretrainStage {
        config,
        labels: label_map(&train_clips),
        train_clips,
        val_clips,
        plan: Fidelity::new(config.segments, config.size)?.apply(&SamplingPlan::new(1)?),
        ce: CrossEntropyLossConfig::new().init(&device),
        device: device.clone(),
        skipped: FailureList::default(),
    };
    stage.skipped.extend(left_out);
    let mut meter = ProcMeter::new().ok();
    let model = match fit(
        &mut stage,
        model,
        optim,
        &run,
        &options.run,
        meter.as_mut().map(|m| m as &mut dyn MemoryMeter),
        &device,
    )? {
        FitEnd::Finished(model) => model,
        FitEnd::Stopped(n) => return Err(TrainError::Stopped(n)),
    };
    // Weights first, then their model cards: the trunk and the clip classifier, at the frame
    // size they were trained at, with the snippets and sampling they are meant for downstream.
    let producer = Producer::new("pretrain", config)?;
    let input = lofi_head::model::video_input(Some(config.snippets), 1, config.size)
        .with_sampling(config.sampling, None);
    let card = |num_classes| {
        ModelCard::new(
            ModelSpec::Encoder {
                arch: config.encoder.clone(),
                num_classes,
            },
            input.clone(),
            producer.clone(),
        )
        .with_classes(Some(classes.clone()))
        .with_subsets(Some(subsets.clone()))
    };
    let classifier =
        run.save_with_card(CLASSIFIER, &card(Some(classes.len())), |p| model.save(p))?;
    let trunk = model.without_classifier();
    let encoder = run.save_with_card(ENCODER, &card(None), |p| trunk.save(p))?;
    let records = metrics::read(&run.metrics())?;
    let epochs = metrics::epoch_summaries(&records);
    let outcome = PretrainOutcome {
        encoder,
        classifier,
        epoch_losses: epochs.iter().map(|e| e.mean_loss).collect(),
        val_accuracy: epochs
            .iter()
            .map(|e| e.validation.as_ref().and_then(|v| v.accuracy))
            .collect(),
        steps: metrics::fidelity_stats(&records, "pretrain"),
        skipped: stage
            .skipped
            .into_vec()
            .into_iter()
            .map(|f| (f.id, f.reason))
            .collect(),
    };
    run.write_json(lofi_engine::run_dir::files::SUMMARY, &outcome)?;
    Ok(outcome)
}

/// File names of a pre-training run's weights (each with its card beside it).
const ENCODER: &str = "encoder.bpk";
const CLASSIFIER: &str = "classifier.bpk";

/// What a pre-training run writes besides every run's files, and the data it reads.
fn output_plan(data: &PretrainData) -> OutputPlan {
    let plan = OutputPlan::new(
        FolderKind::Pretraining,
        &[ENCODER, "encoder.json", CLASSIFIER, "classifier.json"],
        &[],
    );
    match data {
        PretrainData::Clips(dir) => plan.with_input("the clip folder", dir),
        PretrainData::Annotations {
            ground_truth,
            videos,
            ..
        } => plan
            .with_input("the ground truth", ground_truth)
            .with_input("the video folder", videos),
    }
}

/// Where `lofi pretrain` put its encoder.
pub fn encoder_path(run_dir: &Path) -> PathBuf {
    run_dir.join(ENCODER)
}
