//! The epoch loop every trainer runs: resume, batches, steps, metrics, checkpoints, validation.
//!
//! A stage ([`Stage`]) says what is particular to it: its batches for an epoch, what one
//! optimizer step does with a batch, its learning rate and its validation. [`fit`] keeps the run:
//! it restores the last complete epoch on resume and cuts the metrics log back to it, times and
//! measures every step, writes one typed record per step, checkpoints each epoch, validates, and
//! points `checkpoints/last` at the epoch only when all of that is on disk. A run killed at any
//! instant and resumed therefore writes the same records and ends with the same weights as an
//! uninterrupted one (exactly, where the backend reduces in a fixed order).

use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use crate::error::EngineError;
use crate::memory::MemoryMeter;
use crate::metrics::{
    self, EpochRecord, MetricsLog, MetricsRecord, StepMetrics, StepRecord, ValidationMetrics,
    ValidationRecord,
};
use crate::progress::Reporter;
use crate::run_dir::RunDir;

/// Where in the run a step is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepAt {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Batch within the epoch (0-based).
    pub batch: usize,
    /// Optimizer steps taken before this one.
    pub step: usize,
    /// Learning rate of the epoch.
    pub lr: f64,
}

/// What is particular to one trainer.
pub trait Stage {
    /// The trained module (on an autodiff device).
    type Model: Module;
    /// One batch, as the stage's batches yield it.
    type Batch;
    /// The batches of one epoch, in order.
    type Batches: Iterator<Item = Result<Self::Batch, Self::Error>>;
    /// The stage's error.
    type Error: From<EngineError>;

    /// The stage's name in metrics records ("pretrain", "train", "train-head").
    fn name(&self) -> &'static str;
    /// Epochs of the run.
    fn epochs(&self) -> usize;
    /// Learning rate of `epoch`.
    fn lr(&self, epoch: usize) -> f64;
    /// The batches of `epoch` (their order is the stage's seeded shuffle).
    fn batches(&mut self, epoch: usize) -> Result<Self::Batches, Self::Error>;
    /// One optimizer step on `batch`; `None` when the batch held nothing to train on (every
    /// video failed), in which case no step is counted.
    fn step(
        &mut self,
        model: Self::Model,
        optim: &mut ModuleOptimizer,
        at: StepAt,
        batch: Self::Batch,
    ) -> Result<(Self::Model, Option<StepMetrics>), Self::Error>;
    /// The validation after `epoch`, when one is due.
    fn validate(
        &mut self,
        model: &Self::Model,
        epoch: usize,
    ) -> Result<Option<ValidationMetrics>, Self::Error>;
}

/// How a run is driven (not part of the experiment).
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// Continue from the last complete epoch in the run folder.
    pub resume: bool,
    /// Start afresh in a folder that holds another run, clearing it (`--overwrite`).
    pub overwrite: bool,
    /// Debug/test hook: stop after this many steps in this process (simulates a kill).
    pub stop_after_batches: Option<usize>,
    /// Where progress goes.
    pub progress: Reporter,
}

/// Whether a stage validating every `every` epochs (0: never) validates after `epoch` of
/// `epochs`: every `every`-th epoch, and always after the last one.
pub fn validation_due(every: usize, epoch: usize, epochs: usize) -> bool {
    every > 0 && ((epoch + 1).is_multiple_of(every) || epoch + 1 == epochs)
}

/// How [`fit`] ended.
#[derive(Debug)]
pub enum FitEnd<M> {
    /// Every epoch is done: the final model.
    Finished(M),
    /// Stopped by [`RunControl::stop_after_batches`] after this many steps.
    Stopped(usize),
}

/// Runs `stage` from `model` and `optim` (fresh, or replaced by the last checkpoint on resume)
/// in `run`; `meter` measures each step's peak memory on the CPU, `device` reports its
/// allocator's reserved bytes on a GPU.
pub fn fit<S: Stage>(
    stage: &mut S,
    model: S::Model,
    optim: ModuleOptimizer,
    run: &RunDir,
    control: &RunControl,
    mut meter: Option<&mut dyn MemoryMeter>,
    device: &Device,
) -> Result<FitEnd<S::Model>, S::Error> {
    let ckpt = run.checkpointer();
    let metrics_path = run.metrics();
    let (mut model, mut optim, last) = if control.resume {
        ckpt.restore(model, optim)?
    } else {
        (model, optim, None)
    };
    let (start_epoch, mut step, elapsed_before) =
        last.map_or((0, 0, 0.0), |l| (l.epoch + 1, l.step, l.elapsed_s));
    let dropped = metrics::truncate(&metrics_path, start_epoch)?;
    if start_epoch > 0 {
        tracing::info!(
            stage = stage.name(),
            epoch = start_epoch,
            dropped_lines = dropped,
            "resuming after the checkpoint of epoch {}",
            start_epoch - 1
        );
    }
    let mut log = MetricsLog::open(&metrics_path)?;
    let name = stage.name();
    let started = Instant::now();
    let elapsed = |started: &Instant| elapsed_before + started.elapsed().as_secs_f64();
    let mut steps_here = 0usize;
    control
        .progress
        .run_started(name, stage.epochs(), start_epoch);
    for epoch in start_epoch..stage.epochs() {
        let lr = stage.lr(epoch);
        let batches = stage.batches(epoch)?;
        control.progress.epoch_started(epoch, batches.size_hint().1);
        let mut losses = Vec::new();
        for (b, batch) in batches.enumerate() {
            let batch = batch?;
            if let Some(m) = meter.as_deref_mut() {
                m.reset_peak()?;
            }
            let t0 = Instant::now();
            let at = StepAt {
                epoch,
                batch: b,
                step,
                lr,
            };
            let (next, metrics) = stage.step(model, &mut optim, at, batch)?;
            model = next;
            let Some(metrics) = metrics else {
                continue;
            };
            let step_s = t0.elapsed().as_secs_f64();
            let peak_memory_bytes = match meter.as_deref_mut() {
                Some(m) => Some(m.peak()?),
                None => None,
            };
            let fidelity = metrics.fidelity;
            let record = StepRecord {
                stage: name.to_string(),
                epoch,
                batch: b,
                step,
                snippets: fidelity.as_ref().map(|f| f.snippets),
                size: fidelity.as_ref().map(|f| f.size),
                fidelity: fidelity.map(|f| f.name),
                videos: metrics.videos,
                micro_batch: metrics.micro_batch,
                accumulation: metrics.accumulation,
                replicas: metrics.replicas,
                loss: metrics.loss,
                loss_parts: metrics.loss_parts,
                lr,
                step_s,
                elapsed_s: elapsed(&started),
                peak_memory_bytes,
                device_reserved_bytes: device.memory_pool_usage().map(|u| u.bytes_reserved),
            };
            log.append(&MetricsRecord::Step(record.clone()))?;
            control.progress.step_done(&record);
            losses.push(record.loss);
            step += 1;
            steps_here += 1;
            if control.stop_after_batches == Some(steps_here) {
                return Ok(FitEnd::Stopped(steps_here));
            }
        }
        let saved = ckpt.save(epoch, &model, &optim)?;
        let validation = stage.validate(&model, epoch)?;
        let end = EpochRecord {
            stage: name.to_string(),
            epoch,
            step,
            loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
            lr,
            elapsed_s: elapsed(&started),
        };
        log.append(&MetricsRecord::EpochEnd(end.clone()))?;
        if let Some(metrics) = &validation {
            log.append(&MetricsRecord::Validation(ValidationRecord {
                stage: name.to_string(),
                epoch,
                metrics: metrics.clone(),
            }))?;
        }
        ckpt.commit(saved, step, elapsed(&started))?;
        control.progress.epoch_done(&end, validation.as_ref());
        tracing::info!(
            stage = name,
            epoch,
            loss = end.loss,
            val_loss = validation.as_ref().and_then(|v| v.loss),
            val_average_map = validation.as_ref().and_then(|v| v.average_map),
            val_accuracy = validation.as_ref().and_then(|v| v.accuracy),
            "epoch done"
        );
    }
    control.progress.run_finished();
    Ok(FitEnd::Finished(model))
}

#[cfg(test)]
mod tests {
    use super::validation_due;

    #[test]
    fn validation_is_due_every_n_epochs_and_after_the_last() {
        let due: Vec<usize> = (0..7).filter(|&e| validation_due(3, e, 7)).collect();
        assert_eq!(due, [2, 5, 6]);
        assert!((0..7).all(|e| validation_due(1, e, 7)));
        assert!((0..7).all(|e| !validation_due(0, e, 7)));
    }
}
