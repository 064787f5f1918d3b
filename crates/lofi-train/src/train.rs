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
use std::time::Instant;

use burn::module::Module;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::tensor::Device;
use lofi_model::{checkpoint, GtadLoss, GtadTargets, TargetConfig};
use lofi_video::{ClipU8, Fidelity, SamplingPlan, VideoFailure};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{write_config, TrainConfig};
use crate::data::{
    decode, read_videos, stack_clips, BatchJob, EpochBatches, FailureList, TrainVideo,
};
use crate::error::{TrainError, TrainResult};
use crate::io::{read_metrics, truncate_metrics, LastCheckpoint, MetricsLog};
use crate::memory::{measure_from, plan, MemoryMeter, MemoryPlan, Probe, ProcMeter};
use crate::model::{probe_pass, sgd, LofiModel};
use crate::parallel::{Replicas, StepSpec};
use crate::schedule::{fidelity_name, FidelitySchedule};

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
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// Where the model runs: [`cpu_device()`] (the default) or a GPU the caller opened (the
    /// binary's `--device`). Plain (non-autodiff); training wraps it.
    pub device: Device,
    /// Further devices for data-parallel training (`lofi train` only): every batch is split
    /// across `device` and these (see [`crate::parallel`]). Empty: `device` alone.
    pub replica_devices: Vec<Device>,
    /// Continue the run in `out` from its last complete epoch.
    pub resume: bool,
    /// Debug/test hook: stop with [`TrainError::Stopped`] after this many batches in this
    /// process (simulates a kill; used by the resume tests).
    pub stop_after_batches: Option<usize>,
    /// Show progress bars (when stderr is a terminal).
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            device: cpu_device(),
            replica_devices: Vec::new(),
            resume: false,
            stop_after_batches: None,
            progress: false,
        }
    }
}

/// Step statistics of one fidelity over the whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FidelityStats {
    /// Name in files ("s", "t", "st", "full" or "<L>x<S>").
    pub name: String,
    /// Snippets.
    pub snippets: usize,
    /// Frame size.
    pub size: usize,
    /// Optimizer steps at this fidelity.
    pub steps: usize,
    /// Mean seconds per optimizer step (decoding excluded).
    pub mean_step_s: f64,
    /// Largest peak memory of a step, bytes: the process's peak resident memory on the
    /// CPU, the device allocator's reserved bytes on a GPU (`None` where neither is measured).
    pub peak_memory_bytes: Option<u64>,
}

/// One epoch's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub mean_loss: f64,
    /// Mean validation loss at full fidelity, when validated.
    pub val_loss: Option<f64>,
    /// Average mAP of the validation pass, when computed.
    pub val_average_map: Option<f64>,
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

fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
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

/// Prepares `out` for a fresh run or checks it for a resume: the config must match the one the
/// run was started with. Returns the checkpoints folder.
pub(crate) fn prepare_run_dir<C: Serialize + serde::de::DeserializeOwned + PartialEq>(
    config: &C,
    out: &Path,
    resume: bool,
) -> TrainResult<PathBuf> {
    let ckpt = out.join("checkpoints");
    let config_path = out.join("config.toml");
    if resume {
        if config_path.is_file() {
            let saved: C = crate::config::read_config(&config_path)?;
            if &saved != config {
                return Err(TrainError::Config(format!(
                    "--resume: the config differs from the one the run in {} was started with \
                     ({}); resume with that file",
                    out.display(),
                    config_path.display()
                )));
            }
        }
    } else if ckpt.join("last").exists() {
        return Err(TrainError::Config(format!(
            "{} already holds a run; continue it with --resume or choose another --out",
            out.display()
        )));
    }
    std::fs::create_dir_all(&ckpt).map_err(|e| TrainError::io(&ckpt, e))?;
    write_config(config, &config_path)?;
    Ok(ckpt)
}

pub(crate) fn save_optimizer(optim: &ModuleOptimizer, path: &Path) -> TrainResult<()> {
    let tmp = path.with_extension("optim.partial");
    optim.to_record().save(&tmp).map_err(|e| TrainError::Data {
        path: tmp.clone(),
        message: format!("cannot write the optimizer state: {e:?}"),
    })?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

pub(crate) fn load_optimizer(optim: ModuleOptimizer, path: &Path) -> TrainResult<ModuleOptimizer> {
    let record = OptimizerRecord::load(path).map_err(|e| TrainError::Data {
        path: path.to_path_buf(),
        message: format!("cannot read the optimizer state: {e:?}"),
    })?;
    Ok(optim.load_record(record))
}

pub(crate) fn progress_bar(len: usize, show: bool, what: &str) -> indicatif::ProgressBar {
    if !show || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    let template = format!("{what} {{pos}}/{{len}} [{{elapsed}} < {{eta}}] {{wide_bar}} {{msg}}");
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Runs the memory planner: one probe pass per fidelity at batches 1 and 2 on a throwaway
/// model (so training weights and BatchNorm statistics are untouched), cheapest fidelity first,
/// each measured from the memory in use before the first probe, then the fit.
pub fn plan_memory(
    config: &TrainConfig,
    schedule: &FidelitySchedule,
    device: &Device,
    meter: &mut dyn MemoryMeter,
    budget: u64,
) -> TrainResult<MemoryPlan> {
    let mut fidelities = schedule.fidelities();
    fidelities.sort_by_key(|f| f.snippets * f.size * f.size);
    let baseline = meter.current()?;
    let mut probe_model = LofiModel::init(config, device)?;
    if config.encoder.frozen_bn {
        probe_model.encoder = probe_model.encoder.freeze_bn();
    }
    let mut probes = Vec::new();
    let mut sizes = vec![1, config.batch_size.min(2)];
    sizes.dedup();
    for &f in &fidelities {
        for &b in &sizes {
            let ((), bytes) = measure_from(meter, baseline, || {
                probe_pass(&probe_model, config, f, b, device)
            })?;
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
    drop(probe_model);
    plan(
        &probes,
        &schedule.fidelities(),
        config.batch_size,
        baseline,
        budget,
    )
}

/// Trains encoder + G-TAD end to end under the config's fidelity schedule (see the module
/// docs). Writes into `paths.out`: `config.toml`, `metrics.jsonl`, `checkpoints/`,
/// `memory_plan.json` (with a budget), `encoder.bpk`, `head.bpk` and `summary.json`.
pub fn train(
    config: &TrainConfig,
    paths: &TrainPaths,
    options: &RunOptions,
) -> TrainResult<TrainOutcome> {
    config.validate()?;
    check_paths(paths)?;
    let schedule = config.fidelity_schedule()?;
    let full = config.full_fidelity()?;
    // Host memory (RSS) is what the meter reads; it says nothing about a GPU's memory, so on a
    // GPU the steps report the device pool instead and a budget is refused.
    for d in std::iter::once(&options.device).chain(&options.replica_devices) {
        config.precision.check(d)?;
    }
    let on_cpu = options.device == cpu_device();
    let mut meter: Option<ProcMeter> = if on_cpu { ProcMeter::new().ok() } else { None };
    if !on_cpu && config.memory_budget.is_some() {
        return Err(TrainError::Config(format!(
            "memory_budget plans micro-batches from measured host memory, which does not \
             describe {:?}; set micro_batch instead",
            options.device
        )));
    }
    let budget = config.budget_bytes(meter.as_mut().and_then(|m| m.capacity()))?;
    if budget.is_some() && meter.is_none() {
        return Err(TrainError::Measure(
            "a memory budget needs memory measurement, which is implemented for Linux \
             (/proc/self/status) only"
                .into(),
        ));
    }
    let (train_videos, mut failures) = read_videos(&paths.ground_truth, &paths.videos, "training")?;
    let (val_videos, val_failed) = if config.validate_every > 0 {
        read_videos(&paths.ground_truth, &paths.videos, "validation")?
    } else {
        (Vec::new(), Vec::new())
    };
    failures.extend(val_failed);
    if train_videos.is_empty() {
        return Err(TrainError::NoData(format!(
            "no training video of {} was found in {}",
            paths.ground_truth.display(),
            paths.videos.display()
        )));
    }
    let val_truth = if val_videos.is_empty() {
        None
    } else {
        ValidationTruth::read(&paths.ground_truth, &val_videos)?
    };
    let ckpt = prepare_run_dir(config, &paths.out, options.resume)?;
    let mut skipped = FailureList::default();
    skipped.extend(failures);

    let mut device = options.device.clone().autodiff();
    if config.gradient_checkpointing {
        device = device.gradient_checkpointing();
    }
    device.seed(config.seed);
    let mut model = LofiModel::init(config, &device)?;
    if let Some(path) = &paths.encoder {
        model.encoder = checkpoint::load(model.encoder, path)?;
    }
    if config.encoder.frozen_bn {
        model.encoder = model.encoder.freeze_bn();
    }
    let mut optim = sgd(&config.optimizer);
    let replicas = {
        let extra: Vec<Device> = options
            .replica_devices
            .iter()
            .map(|d| {
                let d = d.clone().autodiff();
                if config.gradient_checkpointing {
                    d.gradient_checkpointing()
                } else {
                    d
                }
            })
            .collect();
        Replicas::new(device.clone(), &extra)?
    };

    let memory_plan = match (budget, meter.as_mut()) {
        (Some(b), Some(m)) => {
            let p = plan_memory(config, &schedule, &device, m, b)?;
            eprint!("{p}");
            let text = serde_json::to_string_pretty(&p)
                .map_err(|e| TrainError::Config(format!("cannot serialise the plan: {e}")))?;
            crate::io::write_atomic(&paths.out.join("memory_plan.json"), text.as_bytes())?;
            Some(p)
        }
        _ => None,
    };
    let micro_of = |f: Fidelity| -> usize {
        memory_plan
            .as_ref()
            .and_then(|p| p.get(f))
            .map_or_else(
                || config.micro_batch.unwrap_or(config.batch_size),
                |p| p.micro_batch,
            )
            .clamp(1, config.batch_size)
    };

    let metrics_path = paths.out.join("metrics.jsonl");
    let (start_epoch, mut step, elapsed_before) = match LastCheckpoint::read(&ckpt)? {
        Some(last) if options.resume => {
            model = checkpoint::load(model, &ckpt.join(&last.model))?;
            optim = load_optimizer(optim, &ckpt.join(&last.optimizer))?;
            let dropped = truncate_metrics(&metrics_path, last.epoch + 1)?;
            tracing::info!(
                epoch = last.epoch + 1,
                dropped_lines = dropped,
                "resuming after the checkpoint of epoch {}",
                last.epoch
            );
            (last.epoch + 1, last.step, last.elapsed_s)
        }
        _ => {
            truncate_metrics(&metrics_path, 0)?;
            (0, 0, 0.0)
        }
    };
    let mut log = MetricsLog::open(&metrics_path)?;
    let loss_fn = GtadLoss::default();
    let targets_cfg = TargetConfig {
        boundary_width: config.boundary_width,
        max_duration: config.head.max_duration,
    };
    let base_plan = SamplingPlan::new(config.frames_per_snippet)?;
    let started = Instant::now();
    let mut batches_here = 0usize;
    let epochs_bar = progress_bar(config.epochs, options.progress, "epoch");
    epochs_bar.set_position(start_epoch as u64);

    for epoch in start_epoch..config.epochs {
        let lr = config.optimizer.lr_at(epoch);
        let mut order: Vec<usize> = (0..train_videos.len()).collect();
        lofi_video::loader::shuffle(&mut order, epoch_seed(config.seed, epoch));
        let batches: Vec<&[usize]> = order.chunks(config.batch_size).collect();
        let bar = progress_bar(batches.len(), options.progress, "  batch");
        let mut losses = Vec::new();
        let jobs: Vec<BatchJob> = batches
            .iter()
            .enumerate()
            .map(|(b, chunk)| {
                let videos = chunk.iter().map(|&i| train_videos[i].job()).collect();
                (videos, schedule.fidelity(epoch, b).apply(&base_plan))
            })
            .collect();
        let decoded = EpochBatches::new(jobs, config.workers, !on_cpu)?;
        for (b, batch) in decoded.enumerate() {
            let fidelity = schedule.fidelity(epoch, b);
            let (clips, failed) = batch?;
            skipped.extend(failed);
            bar.inc(1);
            if clips.is_empty() {
                tracing::warn!(
                    epoch,
                    batch = b,
                    "every video of this batch failed; skipped"
                );
                continue;
            }
            let by_id = |id: &str| train_videos.iter().find(|v| v.id == id);
            let mut targets = Vec::with_capacity(clips.len());
            for (id, _) in &clips {
                let v = by_id(id).ok_or_else(|| TrainError::NoData(format!("unknown id {id}")))?;
                targets.push(GtadTargets::new(
                    &v.segments,
                    fidelity.snippets,
                    &targets_cfg,
                )?);
            }
            let micro = micro_of(fidelity);
            let n = clips.len();
            if let Some(m) = meter.as_mut() {
                m.reset_peak()?;
            }
            let t0 = Instant::now();
            let refs: Vec<&ClipU8> = clips.iter().map(|(_, c)| c).collect();
            let spec = StepSpec {
                videos: n,
                step: step as u64,
                precision: config.precision,
                loss: loss_fn.clone(),
            };
            let (grads, sums) = replicas.gradients(&model, &refs, &targets, micro, &spec)?;
            if !sums[0].is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    batch: b,
                    loss: sums[0] as f32,
                });
            }
            model = optim.step(lr, model, grads);
            let step_s = t0.elapsed().as_secs_f64();
            let peak = match meter.as_mut() {
                Some(m) => Some(m.peak()?),
                None => None,
            };
            losses.push(sums[0]);
            bar.set_message(format!("loss {:.4}", sums[0]));
            log.append(&json!({
                "stage": "train",
                "epoch": epoch,
                "batch": b,
                "step": step,
                "fidelity": fidelity_name(fidelity, full),
                "snippets": fidelity.snippets,
                "size": fidelity.size,
                "videos": n,
                "micro_batch": micro,
                "accumulation": n.div_ceil(replicas.count()).div_ceil(micro),
                "replicas": replicas.count(),
                "loss": sums[0],
                "loss_parts": {
                    "boundary": sums[1],
                    "regression": sums[2],
                    "classification": sums[3],
                },
                "lr": lr,
                "step_s": step_s,
                "elapsed_s": elapsed_before + started.elapsed().as_secs_f64(),
                "peak_memory_bytes": peak,
                "device_reserved_bytes": device.memory_pool_usage().map(|u| u.bytes_reserved),
            }))?;
            step += 1;
            batches_here += 1;
            if options.stop_after_batches == Some(batches_here) {
                bar.abandon();
                return Err(TrainError::Stopped(batches_here));
            }
        }
        bar.finish_and_clear();

        let model_name = format!("epoch-{epoch}.bpk");
        let optim_name = format!("epoch-{epoch}.optim");
        checkpoint::save(&model, &ckpt.join(&model_name))?;
        save_optimizer(&optim, &ckpt.join(&optim_name))?;
        let validate = config.validate_every > 0
            && ((epoch + 1) % config.validate_every == 0 || epoch + 1 == config.epochs);
        let val = if validate && !val_videos.is_empty() {
            let (v, failed) = validation_pass(
                &model,
                &val_videos,
                config,
                full,
                &loss_fn,
                val_truth.as_ref(),
            )?;
            skipped.extend(failed);
            Some(v)
        } else {
            None
        };
        let mean_loss = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
        log.append(&json!({
            "stage": "train",
            "event": "epoch_end",
            "epoch": epoch,
            "step": step,
            "loss": mean_loss,
            "lr": lr,
            "elapsed_s": elapsed_before + started.elapsed().as_secs_f64(),
            "val_loss": val.as_ref().map(|v| v.mean_loss),
            "val_average_mAP": val.as_ref().and_then(|v| v.average_map),
        }))?;
        LastCheckpoint {
            epoch,
            model: model_name,
            optimizer: optim_name,
            step,
            elapsed_s: elapsed_before + started.elapsed().as_secs_f64(),
        }
        .write(&ckpt)?;
        epochs_bar.inc(1);
        tracing::info!(
            epoch,
            loss = mean_loss,
            val_loss = val.as_ref().map(|v| v.mean_loss),
            "epoch done"
        );
    }
    epochs_bar.finish_and_clear();

    let encoder = paths.out.join("encoder.bpk");
    let head = paths.out.join("head.bpk");
    checkpoint::save(&model.encoder, &encoder)?;
    checkpoint::save(&model.head, &head)?;
    let skipped = skipped.into_vec();
    for f in &skipped {
        tracing::warn!(video = %f.id, path = %f.path.display(), "skipped during the run: {}", f.reason);
    }
    let outcome = TrainOutcome {
        run_dir: paths.out.clone(),
        encoder,
        head,
        epochs: epoch_summaries(&metrics_path)?,
        fidelities: fidelity_stats(&metrics_path, "train")?,
        memory_plan,
        skipped: skipped
            .iter()
            .map(|f: &VideoFailure| (f.id.clone(), f.reason.clone()))
            .collect(),
        devices: std::iter::once(&options.device)
            .chain(&options.replica_devices)
            .map(|d| format!("{d:?}"))
            .collect(),
    };
    let text = serde_json::to_string_pretty(&outcome)
        .map_err(|e| TrainError::Config(format!("cannot serialise the summary: {e}")))?;
    crate::io::write_atomic(&paths.out.join("summary.json"), text.as_bytes())?;
    Ok(outcome)
}

/// The result of a validation pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// Mean G-TAD loss over the validation videos at full fidelity.
    pub mean_loss: f64,
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
    /// Reads the `validation` subset of `ground_truth`. Video-level classes are the videos' own
    /// ground-truth labels (score 1 for a label present in the video, 0 otherwise): during LoFi
    /// training no video classifier exists yet, so this mAP measures localization with perfect
    /// classification, comparable between epochs and schedules. `None` when the subset has no
    /// annotation.
    pub fn read(ground_truth: &Path, videos: &[TrainVideo]) -> TrainResult<Option<Self>> {
        let options = lofi_eval::GroundTruthOptions {
            subset: "validation".into(),
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
    let tc = TargetConfig {
        boundary_width: config.boundary_width,
        max_duration: config.head.max_duration,
    };
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
            targets.push(GtadTargets::new(&v.segments, full.snippets, &tc)?);
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
        let value = parts
            .total
            .into_data()
            .try_to_vec::<f32>()
            .ok()
            .and_then(|v| v.first().copied())
            .unwrap_or(f32::NAN);
        total += f64::from(value) * clips.len() as f64;
        count += clips.len();
    }
    let average_map = match truth {
        Some(t) if !features.is_empty() => {
            let detect = lofi_head::detect::DetectConfig::default();
            let report = lofi_head::detect::validate_head(
                &model.head,
                &features,
                &t.truth,
                &t.classes,
                &detect,
            )?;
            Some(report.average_map)
        }
        _ => None,
    };
    Ok((
        Validation {
            mean_loss: total / count.max(1) as f64,
            average_map,
        },
        failures,
    ))
}

/// Epoch summaries from a metrics log.
pub fn epoch_summaries(path: &Path) -> TrainResult<Vec<EpochSummary>> {
    Ok(read_metrics(path)?
        .iter()
        .filter(|v| v.get("event").and_then(|e| e.as_str()) == Some("epoch_end"))
        .map(|v| EpochSummary {
            epoch: v["epoch"].as_u64().unwrap_or(0) as usize,
            mean_loss: v["loss"].as_f64().unwrap_or(f64::NAN),
            val_loss: v.get("val_loss").and_then(|x| x.as_f64()),
            val_average_map: v.get("val_average_mAP").and_then(|x| x.as_f64()),
        })
        .collect())
}

/// Per-fidelity step time and peak memory from a metrics log.
pub fn fidelity_stats(path: &Path, stage: &str) -> TrainResult<Vec<FidelityStats>> {
    let mut out: Vec<FidelityStats> = Vec::new();
    for v in read_metrics(path)? {
        if v.get("stage").and_then(|s| s.as_str()) != Some(stage) || v.get("event").is_some() {
            continue;
        }
        let (Some(name), Some(l), Some(s), Some(t)) = (
            v.get("fidelity").and_then(|x| x.as_str()),
            v.get("snippets").and_then(|x| x.as_u64()),
            v.get("size").and_then(|x| x.as_u64()),
            v.get("step_s").and_then(|x| x.as_f64()),
        ) else {
            continue;
        };
        // Host peak on the CPU; on a GPU, the device allocator's reserved bytes after the step.
        let peak = v
            .get("peak_memory_bytes")
            .and_then(|x| x.as_u64())
            .or_else(|| v.get("device_reserved_bytes").and_then(|x| x.as_u64()));
        let entry = match out.iter_mut().position(|e| e.name == name) {
            Some(i) => &mut out[i],
            None => {
                out.push(FidelityStats {
                    name: name.to_string(),
                    snippets: l as usize,
                    size: s as usize,
                    steps: 0,
                    mean_step_s: 0.0,
                    peak_memory_bytes: None,
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        entry.mean_step_s = (entry.mean_step_s * entry.steps as f64 + t) / (entry.steps + 1) as f64;
        entry.steps += 1;
        entry.peak_memory_bytes = match (entry.peak_memory_bytes, peak) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(out)
}
