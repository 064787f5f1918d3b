//! `lofi train`: the LoFi stage. The encoder and the G-TAD head are trained end to end on
//! reduced-fidelity mini-batches chosen by the schedule, with SGD, gradient accumulation sized
//! by the memory planner, an atomic checkpoint and a metrics line per step, a validation pass
//! per epoch, and an exact `--resume`.
//!
//! # Determinism and resume
//! Everything random is a function of the seed: the initial weights (the device is seeded
//! before the model is built), the video order of each epoch (shuffled with a hash of the seed
//! and the epoch), and G-TAD's balanced loss sampling (seeded by the optimizer step). A resumed
//! run loads the checkpoint of the last complete epoch (weights, BatchNorm statistics and
//! optimizer state), cuts `metrics.jsonl` back to that epoch and redoes the interrupted epoch,
//! so it writes the same lines and ends with the same weights as an uninterrupted run, provided
//! the CPU backend reduces in a fixed order (true with one rayon thread; see the crate docs).
//!
//! # Gradient accumulation
//! A batch of `B` videos is split into micro-batches; each micro-batch's mean loss is scaled by
//! its share of the batch before the backward, and the gradients are summed, so the step sees
//! the batch mean. G-TAD's band-balanced regression weights and BatchNorm statistics are
//! computed per micro-batch, so accumulation is close to, not bit-identical with, one big pass.
//!
//! # Several devices
//! With [`RunOptions::replica_devices`], each batch is split across the devices first and each
//! shard into micro-batches; gradients are summed on the primary device, which steps the optimizer
//! (see [`crate::parallel`]). Checkpoints, metrics and resume are those of a single-device run.
//! On a GPU the next batch is decoded while the current one computes ([`EpochBatches`]).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use lofi_engine::metrics::{self, EpochSummary, FidelityStats};
use lofi_engine::{
    fit, FidelityTag, Fingerprint, FitEnd, FolderKind, OutputPlan, RunControl, RunDir, Stage,
    StepAt, StepMetrics, ValidationMetrics,
};
use lofi_model::card::{RunSubsets, LAST_EPOCH};
use lofi_model::seed::{initialized, seeded};
use lofi_model::{GtadLoss, ModelCard, ModelSpec, Normalization, Producer};
use lofi_video::{ClipU8, Fidelity, Sampling, SamplingPlan, VideoFailure};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::{
    decode, shuffled_batches, stack_clips, subset_videos, windows_of, Decoded, EpochBatches,
    FailureList, PretrainSubsets, TrainVideo,
};
use crate::error::{TrainError, TrainResult};
use crate::memory::{plan, ByteSize, MemoryMeter, MemoryPlan, Probe, ProcMeter};
use crate::model::{sgd, LofiModel};
use crate::parallel::{Replicas, StepSpec};
use crate::probe::{probe_in_child, ProbeRequest};
use crate::schedule::{fidelity_name, FidelitySchedule};
use lofi_head::Temporal;
use lofi_model::torch::HostBackend;

/// Where `lofi train` reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainPaths {
    /// ActivityNet-style ground truth (`training` and `validation` subsets are used).
    pub ground_truth: PathBuf,
    /// Folder of the videos (`<id>.mp4` etc.).
    pub videos: PathBuf,
    /// Starting encoder (e.g. `encoder.bpk` from `lofi pretrain`); `None`: random weights.
    pub encoder: Option<PathBuf>,
    /// Run folder.
    pub out: PathBuf,
}

/// How to run (not part of the experiment's config).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where the model runs: [`cpu_device()`] (the default) or a GPU the caller opened (the
    /// binary's `--device`). Plain (non-autodiff); training wraps it.
    pub device: Device,
    /// Further devices for data-parallel training (`lofi train` only): every batch is split
    /// across `device` and these (see [`crate::parallel`]). Empty: `device` alone.
    pub replica_devices: Vec<Device>,
    /// Resume, the kill-simulation hook and progress (see [`RunControl`]).
    pub run: RunControl,
    /// Go on without videos listed in the ground truth that have no file (they are listed as
    /// skipped); without it, such videos are an error naming them all, before any work.
    pub skip_missing_videos: bool,
    /// The program that runs the memory planner's probe steps, one child process each (see
    /// [`crate::probe`]): `lofi` itself, or this crate's `lofi-probe`. Needed with a memory
    /// budget only.
    pub probe_program: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            device: cpu_device(),
            replica_devices: Vec::new(),
            run: RunControl::default(),
            skip_missing_videos: false,
            probe_program: None,
        }
    }
}

/// What [`train`] produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The trained encoder (`run_dir/encoder.bpk`).
    pub encoder: PathBuf,
    /// The jointly trained head (`run_dir/head.bpk`).
    pub head: PathBuf,
    /// Per-epoch summaries (all epochs of the run, resumed ones included).
    pub epochs: Vec<EpochSummary>,
    /// Step statistics per fidelity.
    pub fidelities: Vec<FidelityStats>,
    /// The memory plan, when a budget was given.
    pub memory_plan: Option<MemoryPlan>,
    /// Videos skipped (missing, unreadable), each once.
    pub skipped: Vec<(String, String)>,
    /// The devices of this process's run, primary first (as burn names them).
    #[serde(default)]
    pub devices: Vec<String>,
}

/// The CPU device (burn's flex backend): the default of [`RunOptions`]. Backend selection lives
/// in the binary (`--device`), which passes the device it opened through [`RunOptions`].
pub fn cpu_device() -> Device {
    Device::flex()
}

/// The device a module's parameters live on (the CPU for a module without parameters).
pub(crate) fn module_device<M: Module>(module: &M) -> Device {
    module
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(cpu_device)
}

fn check_paths(paths: &TrainPaths) -> TrainResult<()> {
    if !paths.ground_truth.is_file() {
        return Err(TrainError::io(
            &paths.ground_truth,
            std::io::Error::new(std::io::ErrorKind::NotFound, "ground-truth file not found"),
        ));
    }
    if !paths.videos.is_dir() {
        return Err(TrainError::io(
            &paths.videos,
            std::io::Error::new(std::io::ErrorKind::NotFound, "video folder not found"),
        ));
    }
    if let Some(e) = &paths.encoder {
        if !e.is_file() {
            return Err(TrainError::io(
                e,
                std::io::Error::new(std::io::ErrorKind::NotFound, "encoder checkpoint not found"),
            ));
        }
    }
    Ok(())
}

/// Index of the memory planner's own random stream ([`lofi_rng::derive`] of the run's seed).
const PROBE_STREAM: u64 = 0x5052_4f42_4553; // "PROBES"

/// Runs the memory planner: one probe step per fidelity at batches 1 and 2, each in a child
/// process of `program` ([`crate::probe`]) on a throwaway model seeded with `seed` (so training
/// weights, BatchNorm statistics and this process's random state are untouched), each reporting
/// the bytes it added over its model's baseline; then the fit against `baseline`, the memory of
/// this process before training.
pub fn plan_memory(
    config: &TrainConfig,
    schedule: &FidelitySchedule,
    program: &Path,
    seed: u64,
    backend: HostBackend,
    baseline: u64,
    budget: u64,
) -> TrainResult<MemoryPlan> {
    let mut probes = Vec::new();
    let mut sizes = vec![1, config.batch_size.min(2)];
    sizes.dedup();
    for f in schedule.fidelities() {
        for &b in &sizes {
            let request = ProbeRequest {
                config: config.clone(),
                fidelity: f,
                batch: b,
                seed,
                backend,
            };
            let bytes = probe_in_child(program, &request)?.bytes;
            tracing::debug!(
                snippets = f.snippets,
                size = f.size,
                batch = b,
                bytes,
                "probe"
            );
            probes.push(Probe {
                fidelity: f,
                batch: b,
                bytes,
            });
        }
    }
    plan(
        &probes,
        &schedule.fidelities(),
        config.batch_size,
        baseline,
        budget,
    )
}

/// The device a training step of `config` runs on: `device` with autodiff, and burn's gradient
/// checkpointing when the config asks for it.
pub(crate) fn training_device(config: &TrainConfig, device: &Device) -> Device {
    let d = device.clone().autodiff();
    if config.gradient_checkpointing {
        d.gradient_checkpointing()
    } else {
        d
    }
}

/// The LoFi stage run by lofi-engine: batches at the schedule's fidelity, one data-parallel
/// step with gradient accumulation, validation at full fidelity.
struct LofiStage<'a> {
    config: &'a TrainConfig,
    schedule: FidelitySchedule,
    full: Fidelity,
    base_plan: SamplingPlan,
    train_videos: Vec<TrainVideo>,
    val_videos: Vec<TrainVideo>,
    val_truth: Option<ValidationTruth>,
    replicas: Replicas,
    memory_plan: Option<MemoryPlan>,
    loss_fn: GtadLoss,
    decode_ahead: bool,
    subsets: PretrainSubsets,
    skipped: FailureList,
}

impl LofiStage<'_> {
    /// Micro-batch size at `f`: the plan's, else the config's, within the batch size.
    fn micro(&self, f: Fidelity) -> usize {
        let config = self.config;
        self.memory_plan
            .as_ref()
            .and_then(|p| p.get(f))
            .map_or_else(
                || config.micro_batch.unwrap_or(config.batch_size),
                |p| p.micro_batch,
            )
            .clamp(1, config.batch_size)
    }
}

impl Stage for LofiStage<'_> {
    type Model = LofiModel;
    type Batch = Decoded;
    type Batches = EpochBatches;
    type Error = TrainError;

    fn name(&self) -> &'static str {
        "train"
    }

    fn epochs(&self) -> usize {
        self.config.epochs
    }

    fn lr(&self, epoch: usize) -> f64 {
        self.config.optimizer.lr_at(epoch)
    }

    fn batches(&mut self, epoch: usize) -> TrainResult<EpochBatches> {
        let c = self.config;
        shuffled_batches(
            self.train_videos.len(),
            c.batch_size,
            lofi_rng::derive(c.seed, epoch as u64),
            (c.workers, self.decode_ahead),
            |b, chunk| {
                let videos = chunk.iter().map(|&i| self.train_videos[i].job()).collect();
                (
                    videos,
                    self.schedule.fidelity(epoch, b).apply(&self.base_plan),
                )
            },
        )
    }

    fn step(
        &mut self,
        model: LofiModel,
        optim: &mut ModuleOptimizer,
        at: StepAt,
        (clips, failed): Decoded,
    ) -> TrainResult<(LofiModel, Option<StepMetrics>)> {
        let fidelity = self.schedule.fidelity(at.epoch, at.batch);
        self.skipped.extend(failed);
        if clips.is_empty() {
            tracing::warn!(
                epoch = at.epoch,
                batch = at.batch,
                "every video of this batch failed; skipped"
            );
            return Ok((model, None));
        }
        let mut targets = Vec::with_capacity(clips.len());
        for (id, _) in &clips {
            let v = self
                .train_videos
                .iter()
                .find(|v| &v.id == id)
                .ok_or_else(|| TrainError::NoData(format!("unknown id {id}")))?;
            targets.push(self.config.head.targets(
                &v.segments,
                fidelity.snippets,
                self.config.boundary_width,
            )?);
        }
        let micro = self.micro(fidelity);
        let n = clips.len();
        let refs: Vec<&ClipU8> = clips.iter().map(|(_, c)| c).collect();
        let spec = StepSpec {
            videos: n,
            step: at.step as u64,
            precision: self.config.precision,
            loss: self.loss_fn.clone(),
        };
        let (grads, losses) = self
            .replicas
            .gradients(&model, &refs, &targets, micro, &spec)?;
        if !losses.total.is_finite() {
            return Err(TrainError::Diverged {
                epoch: at.epoch,
                batch: at.batch,
                loss: losses.total as f32,
            });
        }
        let model = optim.step(at.lr, model, grads);
        let replicas = self.replicas.count();
        Ok((
            model,
            Some(StepMetrics {
                loss: losses.total,
                loss_parts: Some(losses.parts()),
                fidelity: Some(FidelityTag {
                    name: fidelity_name(fidelity, self.full),
                    snippets: fidelity.snippets,
                    size: fidelity.size,
                }),
                videos: n,
                micro_batch: Some(micro),
                accumulation: Some(n.div_ceil(replicas).div_ceil(micro)),
                replicas: Some(replicas),
            }),
        ))
    }

    fn validate(
        &mut self,
        model: &LofiModel,
        epoch: usize,
    ) -> TrainResult<Option<ValidationMetrics>> {
        let c = self.config;
        let due = lofi_engine::validation_due(c.validate_every, epoch, c.epochs);
        if !due || self.val_videos.is_empty() {
            return Ok(None);
        }
        let (v, failed) = validation_pass(
            model,
            &self.val_videos,
            self.config,
            self.full,
            &self.loss_fn,
            self.val_truth.as_ref(),
        )?;
        self.skipped.extend(failed);
        Ok(Some(ValidationMetrics {
            loss: v.mean_loss,
            average_map: v.average_map,
            ..ValidationMetrics::default()
        }))
    }
}

/// Trains encoder + G-TAD end to end under the config's fidelity schedule (see the module
/// docs). Writes into `paths.out`: `config.toml`, `metrics.jsonl`, `checkpoints/`,
/// `memory_plan.json` (with a budget), `encoder.bpk`, `head.bpk` and `summary.json`.
/// A run stopped by [`RunControl::stop_after_batches`] ends with [`TrainError::Stopped`].
pub fn train(
    config: &TrainConfig,
    paths: &TrainPaths,
    options: &RunOptions,
) -> TrainResult<TrainOutcome> {
    match run_training(config, paths, options)? {
        Trained::Finished(outcome) => Ok(*outcome),
        Trained::Stopped { steps, .. } => Err(TrainError::Stopped(steps)),
    }
}

/// Runs the first `steps` optimizer steps of a training run in `paths.out` (a fresh run folder)
/// and returns their step time and peak memory per fidelity: what end-to-end training costs
/// at this config, without training a whole run (the demo's full-fidelity reference).
pub fn measure_steps(
    config: &TrainConfig,
    paths: &TrainPaths,
    options: &RunOptions,
    steps: usize,
) -> TrainResult<Vec<FidelityStats>> {
    let mut options = options.clone();
    options.run.stop_after_batches = Some(steps);
    match run_training(config, paths, &options)? {
        Trained::Finished(outcome) => Ok(outcome.fidelities),
        Trained::Stopped { run, .. } => Ok(metrics::fidelity_stats(
            &metrics::read(&run.metrics())?,
            "train",
        )),
    }
}

/// How a training run ended.
enum Trained {
    Finished(Box<TrainOutcome>),
    Stopped { steps: usize, run: RunDir },
}

fn run_training(
    config: &TrainConfig,
    paths: &TrainPaths,
    options: &RunOptions,
) -> TrainResult<Trained> {
    config.validate()?;
    check_paths(paths)?;
    let schedule = config.fidelity_schedule()?;
    let full = config.full_fidelity()?;
    // Host memory (RSS) is what the meter reads; it says nothing about a GPU's memory, so on a
    // GPU the steps report the device pool instead and a budget is refused.
    for d in std::iter::once(&options.device).chain(&options.replica_devices) {
        config.precision.check(d)?;
    }
    let host = HostBackend::of(&options.device);
    let on_cpu = host.is_some();
    let (mut meter, budget) = host_meter(config, options)?;
    let data = TrainingData::read(config, paths, options.skip_missing_videos)?;
    let inputs = Fingerprint::new().with_file("ground_truth", &paths.ground_truth)?;
    let inputs = match &paths.encoder {
        Some(p) => inputs.with_file("initial_encoder", p)?,
        None => inputs.with("initial_encoder", &"random initialisation (config seed)")?,
    };
    let plan = OutputPlan::new(
        FolderKind::Training,
        &[ENCODER, "encoder.json", HEAD, "head.json", MEMORY_PLAN],
        &[],
    )
    .with_input("the ground truth", &paths.ground_truth)
    .with_input("the video folder", &paths.videos);
    let run = RunDir::open(&paths.out, config, inputs, &options.run, &plan)?;

    let autodiff = |d: &Device| training_device(config, d);
    let device = autodiff(&options.device);
    // The planner first, in child processes on its own random state (probe weights and probe
    // clips): this process's random stream is untouched, exactly as in a run without a budget.
    let memory_plan = match (budget, meter.as_mut(), host) {
        (Some(b), Some(m), Some(host)) => {
            let program = options.probe_program.as_deref().ok_or_else(|| {
                TrainError::Measure(
                    "a memory budget measures its probe steps in child processes, and \
                     RunOptions::probe_program names no program to run them (lofi, or \
                     lofi-train's lofi-probe)"
                        .into(),
                )
            })?;
            let probe_seed = lofi_rng::derive(config.seed, PROBE_STREAM);
            let p = plan_memory(
                config,
                &schedule,
                program,
                probe_seed,
                host,
                m.current()?,
                b,
            )?;
            eprint!("{p}");
            run.write_json(MEMORY_PLAN, &p)?;
            Some(p)
        }
        _ => None,
    };
    let mut model = seeded(&device, config.seed, || {
        LofiModel::init(config, &device).map(initialized)
    })?;
    if let Some(path) = &paths.encoder {
        model.encoder = config.encoder.load_into(None, model.encoder, path)?;
    }
    if config.encoder.frozen_bn() {
        model.encoder = model.encoder.freeze_bn();
    }
    let extra: Vec<Device> = options.replica_devices.iter().map(autodiff).collect();
    let replicas = Replicas::new(device.clone(), &extra)?;
    let mut stage = LofiStage {
        config,
        schedule,
        full,
        base_plan: SamplingPlan::new(config.frames_per_snippet)?,
        train_videos: data.train,
        val_videos: data.val,
        val_truth: data.val_truth,
        replicas,
        memory_plan,
        loss_fn: config.head.loss(),
        decode_ahead: !on_cpu,
        subsets: data.subsets,
        skipped: data.skipped,
    };
    let model = match fit(
        &mut stage,
        model,
        sgd(&config.optimizer),
        &run,
        &options.run,
        meter.as_mut().map(|m| m as &mut dyn MemoryMeter),
        &device,
    )? {
        FitEnd::Finished(model) => model,
        FitEnd::Stopped(steps) => return Ok(Trained::Stopped { steps, run }),
    };

    let outcome = finish(&model, stage, &run, options)?;
    Ok(Trained::Finished(Box::new(outcome)))
}

/// The host memory meter of a run on the CPU (flex or libtorch's CPU device) and the budget in
/// bytes, refusing a budget where host memory says nothing (a GPU) or cannot be measured.
fn host_meter(
    config: &TrainConfig,
    options: &RunOptions,
) -> TrainResult<(Option<ProcMeter>, Option<u64>)> {
    let on_cpu = HostBackend::of(&options.device).is_some();
    let mut meter: Option<ProcMeter> = if on_cpu { ProcMeter::new().ok() } else { None };
    if !on_cpu && config.memory_budget.is_some() {
        return Err(TrainError::Config(format!(
            "memory_budget plans micro-batches from measured host memory, which does not \
             describe {:?}; set micro_batch instead",
            options.device
        )));
    }
    let budget = config.budget_bytes(meter.as_mut().and_then(|m| m.capacity()))?;
    if let (Some(b), Some(total)) = (budget, lofi_video::limits::total_memory()) {
        if b > total {
            return Err(TrainError::Config(format!(
                "memory_budget {} is more than this machine's {} of memory: the plan would \
                 promise steps that cannot run; give at most that (or \"auto\")",
                ByteSize(b),
                ByteSize(total)
            )));
        }
    }
    if budget.is_some() && meter.is_none() {
        return Err(TrainError::Measure(
            "a memory budget needs memory measurement, which is implemented for Linux \
             (/proc/self/status) only"
                .into(),
        ));
    }
    Ok((meter, budget))
}

/// The videos of a run: training, validation (when validating) and those already skipped.
struct TrainingData {
    subsets: PretrainSubsets,
    train: Vec<TrainVideo>,
    val: Vec<TrainVideo>,
    val_truth: Option<ValidationTruth>,
    skipped: FailureList,
}

impl TrainingData {
    fn read(config: &TrainConfig, paths: &TrainPaths, skip_missing: bool) -> TrainResult<Self> {
        // `training` / `validation`, or THUMOS14's `Validation` / `Test` (the rule pre-training
        // follows too).
        let gt = lofi_video::ground_truth::GroundTruth::read(&paths.ground_truth)?;
        let subsets = PretrainSubsets::choose(
            &gt,
            &paths.ground_truth,
            config.train_subset.as_deref(),
            config.val_subset.as_deref(),
        )?;
        subsets.warn_segment_problems(&gt, &paths.ground_truth);
        tracing::info!(
            "training on subset {:?}, validating on {:?} (the run keeps its last epoch)",
            subsets.train,
            subsets.validation.as_deref().unwrap_or("(none)")
        );
        let (train, mut failures) = subset_videos(
            &gt,
            &paths.ground_truth,
            &paths.videos,
            &subsets.train,
            skip_missing,
        )?;
        let (val, val_failed) = match &subsets.validation {
            Some(subset) if config.validate_every > 0 => subset_videos(
                &gt,
                &paths.ground_truth,
                &paths.videos,
                subset,
                skip_missing,
            )?,
            _ => (Vec::new(), Vec::new()),
        };
        failures.extend(val_failed);
        if train.is_empty() {
            return Err(TrainError::NoData(format!(
                "no training video of {} was found in {}",
                paths.ground_truth.display(),
                paths.videos.display()
            )));
        }
        let (train, val) = match config.temporal {
            Temporal::Rescale => (train, val),
            Temporal::Windows { window_stride } => {
                let w = config.full.snippets;
                let train = windows_of(&train, config.sampling, w, window_stride);
                if train.is_empty() {
                    return Err(TrainError::NoData(format!(
                        "no window of {w} snippets of a training video of {} holds 90 % of an \
                         action; use more snippets (full.snippets) or a finer stride",
                        paths.ground_truth.display()
                    )));
                }
                tracing::info!(
                    "training on {} windows of {w} snippets (sampling {:?})",
                    train.len(),
                    config.sampling
                );
                (train, windows_of(&val, config.sampling, w, window_stride))
            }
        };
        // The validation mAP labels whole videos; on windows only the loss is measured.
        let val_truth = if val.is_empty() || !config.temporal.is_rescale() {
            None
        } else {
            let subset = subsets.validation.as_deref().unwrap_or("validation");
            ValidationTruth::read(&paths.ground_truth, subset, &val)?
        };
        let mut skipped = FailureList::default();
        skipped.extend(failures);
        Ok(Self {
            subsets,
            train,
            val,
            val_truth,
            skipped,
        })
    }
}

/// File names of a LoFi run's outputs (each weights file with its card beside it).
const ENCODER: &str = "encoder.bpk";
const HEAD: &str = "head.bpk";
const MEMORY_PLAN: &str = "memory_plan.json";

/// Writes the trained encoder and head and the run's summary.
fn finish(
    model: &LofiModel,
    stage: LofiStage<'_>,
    run: &RunDir,
    options: &RunOptions,
) -> TrainResult<TrainOutcome> {
    // Weights first, then their model cards: the encoder at the run's full fidelity (what
    // extraction should use) and the end-to-end head on its features.
    let config = stage.config;
    let full = config.full_fidelity()?;
    let producer = Producer::new("train", config)?;
    // Windows sit on stride features; whole videos are rescaled to L (the `sampling` key is
    // only read with windows).
    let (sampling, window_stride) = match config.temporal {
        Temporal::Windows { window_stride } => (config.sampling, Some(window_stride)),
        Temporal::Rescale => (Sampling::Rescale, None),
    };
    let subsets = RunSubsets {
        train: stage.subsets.train.clone(),
        evaluation: stage.subsets.validation.clone(),
        selection: Some(LAST_EPOCH.into()),
    };
    let encoder_card = ModelCard::new(
        ModelSpec::Encoder {
            arch: config.encoder.clone(),
            num_classes: None,
        },
        lofi_head::model::video_input(Some(full.snippets), config.frames_per_snippet, full.size)
            .with_sampling(sampling, window_stride),
        producer.clone(),
    )
    .with_subsets(Some(subsets.clone()));
    let encoder = run.save_with_card(ENCODER, &encoder_card, |p| model.encoder.save(p))?;
    let channels = config.encoder.out_channels();
    let head_card = ModelCard::new(
        ModelSpec::Head {
            arch: config.head.clone(),
            in_channels: channels,
            snippets: full.snippets,
            detect: Some(config.detect.clone()),
        },
        lofi_head::model::feature_input(full.snippets, channels, Normalization::None)
            .with_sampling(sampling, window_stride),
        producer,
    )
    .with_subsets(Some(subsets));
    let head = run.save_with_card(HEAD, &head_card, |p| model.head.save(p))?;
    let skipped = stage.skipped.into_vec();
    for f in &skipped {
        tracing::warn!(video = %f.id, path = %f.path.display(), "skipped during the run: {}", f.reason);
    }
    let records = metrics::read(&run.metrics())?;
    let outcome = TrainOutcome {
        run_dir: run.root().to_path_buf(),
        encoder,
        head,
        epochs: metrics::epoch_summaries(&records),
        fidelities: metrics::fidelity_stats(&records, "train"),
        memory_plan: stage.memory_plan,
        skipped: skipped
            .iter()
            .map(|f: &VideoFailure| (f.id.clone(), f.reason.clone()))
            .collect(),
        devices: std::iter::once(&options.device)
            .chain(&options.replica_devices)
            .map(|d| format!("{d:?}"))
            .collect(),
    };
    run.write_json(lofi_engine::run_dir::files::SUMMARY, &outcome)?;
    Ok(outcome)
}

/// The result of a validation pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// Mean G-TAD loss over the validation videos at full fidelity; `None` without a
    /// validation sample.
    pub mean_loss: Option<f64>,
    /// Average mAP (tIoU 0.5:0.05:0.95) of the head's detections, labelled with the videos'
    /// ground-truth classes; `None` when the subset has no annotation to evaluate against.
    pub average_map: Option<f64>,
}

/// What the validation pass evaluates against: the subset's ground truth for lofi-eval and the
/// video-level class scores used to label proposals.
pub struct ValidationTruth {
    truth: lofi_eval::GroundTruth,
    classes: lofi_eval::VideoClassScores,
}

impl ValidationTruth {
    /// Reads subset `subset` (the validation videos) of `ground_truth`. Video-level classes are the videos' own
    /// ground-truth labels (score 1 for a label present in the video, 0 otherwise): during LoFi
    /// training no video classifier exists yet, so this mAP measures localization with perfect
    /// classification, comparable between epochs and schedules. `None` when the subset has no
    /// annotation.
    pub fn read(
        ground_truth: &Path,
        subset: &str,
        videos: &[TrainVideo],
    ) -> TrainResult<Option<Self>> {
        let options = lofi_eval::GroundTruthOptions {
            subset: subset.into(),
            ..lofi_eval::GroundTruthOptions::default()
        };
        let truth = match lofi_eval::GroundTruth::from_path(ground_truth, &options) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("validation mAP disabled: {e}");
                return Ok(None);
            }
        };
        let gt = lofi_video::ground_truth::GroundTruth::read(ground_truth)?;
        let mut classes: Vec<String> = gt
            .database
            .values()
            .flat_map(|v| v.annotations.iter().map(|a| a.label.clone()))
            .collect();
        classes.sort();
        classes.dedup();
        let results = videos
            .iter()
            .map(|v| {
                let labels: Vec<&str> = gt.database.get(&v.id).map_or_else(Vec::new, |e| {
                    e.annotations.iter().map(|a| a.label.as_str()).collect()
                });
                let scores = classes
                    .iter()
                    .map(|c| {
                        if labels.contains(&c.as_str()) {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                (v.id.clone(), scores)
            })
            .collect();
        let classes = lofi_head::detect::ClassScoreFile {
            class: classes,
            results,
        }
        .to_scores()?;
        Ok(Some(Self { truth, classes }))
    }
}

/// Validation at full fidelity through the jointly trained head, in inference mode (BatchNorm
/// running statistics, no gradient): the mean localization loss and, with `truth`, the average
/// mAP of the head's detections (lofi-head's post-processing: candidates, Soft-NMS, top-k,
/// class fusion; lofi-eval's ActivityNet protocol).
pub fn validation_pass(
    model: &LofiModel,
    videos: &[TrainVideo],
    config: &TrainConfig,
    full: Fidelity,
    loss_fn: &GtadLoss,
    truth: Option<&ValidationTruth>,
) -> TrainResult<(Validation, Vec<VideoFailure>)> {
    let model = model.valid();
    let device = module_device(&model);
    let plan = full.apply(&SamplingPlan::new(config.frames_per_snippet)?);
    let chunk = config.micro_batch.unwrap_or(config.batch_size).max(1);
    let mut total = 0f64;
    let mut count = 0usize;
    let mut failures = Vec::new();
    let mut features = Vec::new();
    for (k, group) in videos.chunks(chunk).enumerate() {
        let jobs = group.iter().map(TrainVideo::job).collect();
        let (clips, failed) = decode(jobs, plan, config.workers)?;
        failures.extend(failed);
        if clips.is_empty() {
            continue;
        }
        let mut targets = Vec::new();
        let mut durations = Vec::new();
        for (id, _) in &clips {
            let v = group
                .iter()
                .find(|v| &v.id == id)
                .ok_or_else(|| TrainError::NoData(format!("unknown id {id}")))?;
            targets.push(
                config
                    .head
                    .targets(&v.segments, full.snippets, config.boundary_width)?,
            );
            durations.push(v.duration);
        }
        let refs: Vec<_> = clips.iter().map(|(_, c)| c).collect();
        let x = stack_clips(&refs, &device)?;
        let feats = model.encoder.forward(x)?;
        let [b, l, c] = feats.dims();
        let host = feats
            .clone()
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| TrainError::NoData(format!("cannot read features: {e:?}")))?;
        for (i, (id, _)) in clips.iter().enumerate() {
            features.push(lofi_head::features::VideoFeatures {
                id: id.clone(),
                duration: durations[i],
                l,
                c,
                data: host[i * l * c..(i + 1) * l * c].to_vec(),
            });
        }
        debug_assert_eq!(b, clips.len());
        let out = model.head.forward(feats.swap_dims(1, 2))?;
        let parts = loss_fn.compute(&out, &targets, k as u64)?;
        let value = lofi_engine::readback::scalar(parts.total, "the validation loss")?;
        total += value * clips.len() as f64;
        count += clips.len();
    }
    let average_map = match truth {
        Some(t) if !features.is_empty() => {
            let report = lofi_head::validate_head(
                &model.head,
                &features,
                &t.truth,
                &t.classes,
                &config.detect,
            )?;
            Some(report.average_map)
        }
        _ => None,
    };
    Ok((
        Validation {
            // No validation clip (no window holding an action): no loss, rather than 0.
            mean_loss: (count > 0).then(|| total / count as f64),
            average_map,
        },
        failures,
    ))
}
