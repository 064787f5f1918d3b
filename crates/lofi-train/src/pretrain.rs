//! `lofi pretrain`: clip-classification training of the TSM encoder on trimmed action clips,
//! the "ACP" starting point of LoFi for users without Kinetics weights (and the demo).
//!
//! Exists because LoFi starts from an action-classification encoder; users with a Kinetics
//! checkpoint import it with lofi-model and skip this stage. Input is the `clips/` folder and
//! `clips.json` that `lofi synth` writes (any folder with that layout works). Each clip is
//! sampled as `segments` frames at the centres of equal parts of the clip (TSM's test-time
//! sampling), frames are `size x size`, and the loss is cross-entropy over the classes.
//!
//! Output: `encoder.bpk` (the trunk only, loadable by `lofi train --encoder`), `classifier.bpk`
//! (trunk + `fc`), `config.toml`, `metrics.jsonl` (`"stage": "pretrain"`, with the validation
//! accuracy on the `validation` clips at every epoch end) and resumable checkpoints.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use lofi_model::{checkpoint, TsmEncoder};
use lofi_video::{Fidelity, SamplingPlan, VideoJob};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::PretrainConfig;
use crate::data::{decode, read_clips, stack_clips, Clip, FailureList};
use crate::error::{TrainError, TrainResult};
use crate::io::{truncate_metrics, LastCheckpoint, MetricsLog};
use crate::memory::{MemoryMeter, ProcMeter};
use crate::model::sgd;
use crate::train::{fidelity_stats, load_optimizer, module_device, prepare_run_dir, progress_bar};
use crate::train::{save_optimizer, FidelityStats, RunOptions};

/// Where `lofi pretrain` reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainPaths {
    /// Folder holding `clips.json` and the clip files it lists.
    pub data: PathBuf,
    /// Run folder.
    pub out: PathBuf,
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
    clips
        .iter()
        .map(|c| VideoJob {
            id: c.id.clone(),
            path: c.path.clone(),
            annotated_duration: None,
        })
        .collect()
}

fn batch_tensors(
    clips: &[(String, lofi_video::ClipU8)],
    by_id: &dyn Fn(&str) -> Option<usize>,
    device: &burn::tensor::Device,
) -> TrainResult<(Tensor<5>, Tensor<1, Int>)> {
    let refs: Vec<_> = clips.iter().map(|(_, c)| c).collect();
    let x = stack_clips(&refs, device)?;
    let [b, t, f, c, h, w] = x.dims();
    let x = x.reshape([b, t * f, c, h, w]);
    let labels = clips
        .iter()
        .map(|(id, _)| {
            by_id(id)
                .map(|l| l as i64)
                .ok_or_else(|| TrainError::NoData(format!("unknown clip {id}")))
        })
        .collect::<TrainResult<Vec<i64>>>()?;
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), device);
    Ok((x, y))
}

fn accuracy(
    model: &TsmEncoder,
    clips: &[Clip],
    plan: SamplingPlan,
    config: &PretrainConfig,
) -> TrainResult<Option<f64>> {
    if clips.is_empty() {
        return Ok(None);
    }
    let model = model.valid();
    let device = module_device(&model);
    let (mut right, mut seen) = (0usize, 0usize);
    let refs: Vec<&Clip> = clips.iter().collect();
    for group in refs.chunks(config.batch_size) {
        let (decoded, _) = decode(jobs(group), plan, config.workers)?;
        if decoded.is_empty() {
            continue;
        }
        let by_id = |id: &str| group.iter().find(|c| c.id == id).map(|c| c.label);
        let (x, y) = batch_tensors(&decoded, &by_id, &device)?;
        let pred = model.classify(x)?.argmax(1).reshape([decoded.len()]);
        let hits = pred.equal(y).int().sum();
        right += hits
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .ok()
            .and_then(|v| v.first().copied())
            .unwrap_or(0) as usize;
        seen += decoded.len();
    }
    Ok((seen > 0).then(|| right as f64 / seen as f64))
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
    let (classes, train_clips) = read_clips(&paths.data, "training")?;
    let (_, val_clips) = read_clips(&paths.data, "validation")?;
    if train_clips.is_empty() {
        return Err(TrainError::NoData(format!(
            "{} lists no training clips",
            paths.data.join("clips.json").display()
        )));
    }
    let ckpt = prepare_run_dir(config, &paths.out, options.resume)?;
    let device = options.device.clone().autodiff();
    device.seed(config.seed);
    let resnet = config.encoder.resnet(Some(classes.len()));
    let mut model = resnet.init(&device)?;
    let mut optim = sgd(&config.optimizer);
    let plan = Fidelity::new(config.segments, config.size)?.apply(&SamplingPlan::new(1)?);
    let metrics_path = paths.out.join("metrics.jsonl");
    let (start_epoch, mut step, elapsed_before) = match LastCheckpoint::read(&ckpt)? {
        Some(last) if options.resume => {
            model = checkpoint::load(model, &ckpt.join(&last.model))?;
            optim = load_optimizer(optim, &ckpt.join(&last.optimizer))?;
            truncate_metrics(&metrics_path, last.epoch + 1)?;
            (last.epoch + 1, last.step, last.elapsed_s)
        }
        _ => {
            truncate_metrics(&metrics_path, 0)?;
            (0, 0, 0.0)
        }
    };
    let mut log = MetricsLog::open(&metrics_path)?;
    let mut meter = ProcMeter::new().ok();
    let ce = CrossEntropyLossConfig::new().init(&device);
    let mut skipped = FailureList::default();
    let started = Instant::now();
    let mut batches_here = 0usize;
    let epochs_bar = progress_bar(config.epochs, options.progress, "epoch");
    epochs_bar.set_position(start_epoch as u64);
    for epoch in start_epoch..config.epochs {
        let lr = config.optimizer.lr_at(epoch);
        let mut order: Vec<usize> = (0..train_clips.len()).collect();
        lofi_video::loader::shuffle(&mut order, config.seed ^ (epoch as u64 + 1) << 17);
        let batches: Vec<&[usize]> = order.chunks(config.batch_size).collect();
        let bar = progress_bar(batches.len(), options.progress, "  batch");
        let mut losses = Vec::new();
        for (b, chunk) in batches.iter().enumerate() {
            let group: Vec<&Clip> = chunk.iter().map(|&i| &train_clips[i]).collect();
            let (decoded, failed) = decode(jobs(&group), plan, config.workers)?;
            skipped.extend(failed);
            bar.inc(1);
            if decoded.is_empty() {
                continue;
            }
            let by_id = |id: &str| group.iter().find(|c| c.id == id).map(|c| c.label);
            let (x, y) = batch_tensors(&decoded, &by_id, &device)?;
            if let Some(m) = meter.as_mut() {
                m.reset_peak()?;
            }
            let t0 = Instant::now();
            let logits = model.classify(x)?;
            let loss = ce.forward(logits, y);
            let value = loss
                .clone()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .ok()
                .and_then(|v| v.first().copied())
                .unwrap_or(f32::NAN);
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    batch: b,
                    loss: value,
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            let step_s = t0.elapsed().as_secs_f64();
            let peak = match meter.as_mut() {
                Some(m) => Some(m.peak()?),
                None => None,
            };
            losses.push(f64::from(value));
            bar.set_message(format!("loss {value:.4}"));
            log.append(&json!({
                "stage": "pretrain",
                "epoch": epoch,
                "batch": b,
                "step": step,
                "fidelity": format!("{}x{}", config.segments, config.size),
                "snippets": config.segments,
                "size": config.size,
                "videos": decoded.len(),
                "loss": value,
                "lr": lr,
                "step_s": step_s,
                "elapsed_s": elapsed_before + started.elapsed().as_secs_f64(),
                "peak_memory_bytes": peak,
            }))?;
            step += 1;
            batches_here += 1;
            if options.stop_after_batches == Some(batches_here) {
                return Err(TrainError::Stopped(batches_here));
            }
        }
        bar.finish_and_clear();
        let model_name = format!("epoch-{epoch}.bpk");
        let optim_name = format!("epoch-{epoch}.optim");
        checkpoint::save(&model, &ckpt.join(&model_name))?;
        save_optimizer(&optim, &ckpt.join(&optim_name))?;
        let acc = accuracy(&model, &val_clips, plan, config)?;
        let mean = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
        log.append(&json!({
            "stage": "pretrain",
            "event": "epoch_end",
            "epoch": epoch,
            "step": step,
            "loss": mean,
            "lr": lr,
            "elapsed_s": elapsed_before + started.elapsed().as_secs_f64(),
            "val_accuracy": acc,
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
            loss = mean,
            val_accuracy = acc,
            "pretrain epoch done"
        );
    }
    epochs_bar.finish_and_clear();
    let classifier = paths.out.join("classifier.bpk");
    checkpoint::save(&model, &classifier)?;
    let mut trunk = model;
    trunk.fc = None;
    let encoder = paths.out.join("encoder.bpk");
    checkpoint::save(&trunk, &encoder)?;
    let ends: Vec<serde_json::Value> = crate::io::read_metrics(&metrics_path)?
        .into_iter()
        .filter(|v| v.get("event").and_then(|e| e.as_str()) == Some("epoch_end"))
        .collect();
    let outcome = PretrainOutcome {
        encoder,
        classifier,
        epoch_losses: ends
            .iter()
            .map(|v| v["loss"].as_f64().unwrap_or(f64::NAN))
            .collect(),
        val_accuracy: ends.iter().map(|v| v["val_accuracy"].as_f64()).collect(),
        steps: fidelity_stats(&metrics_path, "pretrain")?,
        skipped: skipped
            .into_vec()
            .into_iter()
            .map(|f| (f.id, f.reason))
            .collect(),
    };
    let text = serde_json::to_string_pretty(&outcome)
        .map_err(|e| TrainError::Config(format!("cannot serialise the summary: {e}")))?;
    crate::io::write_atomic(&paths.out.join("summary.json"), text.as_bytes())?;
    Ok(outcome)
}

/// Where `lofi pretrain` put its encoder.
pub fn encoder_path(run_dir: &Path) -> PathBuf {
    run_dir.join("encoder.bpk")
}
