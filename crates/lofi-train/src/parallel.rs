//! Data-parallel training steps: one model replica per device, each batch split across them,
//! gradients summed on the primary device, one optimizer step there.
//!
//! Why it is built this way: the paper trained on 4 GPUs, so a LoFi batch of 16 videos must be
//! spread over several devices. Burn 0.22's collective all-reduce (NCCL) exists only on its CUDA
//! backend and its CPU backend has none, so a step that depended on it could be neither run in CI
//! nor checked here. This module reduces through the primary device instead, which every backend
//! supports and which is exactly the same arithmetic: replica `r` computes the gradients of its
//! shard of the batch (in micro-batches when the memory plan asks for them), each already scaled
//! by its share of the whole batch; the primary adds them in replica order and the optimizer
//! steps the master weights; the next step forks the updated master to every replica. The cost
//! over an all-reduce is one gradient copy to and one weight copy from each extra device per step
//! (TSM-R18 + G-TAD: 16.8 M parameters, 2 x 67 MB), small against a LoFi step of 16 videos.
//!
//! BatchNorm: each replica normalizes with the statistics of its own shard (as PyTorch's
//! `DataParallel`, and `DistributedDataParallel` without SyncBatchNorm, do); the running
//! statistics are shared by all replicas, and burn averages the replicas' updates of a step (its
//! `RunningState` keeps one pending update per thread, which is why every replica keeps one
//! long-lived thread).
//!
//! Micro-batches keep the global numbering of a single-device run (`k` below), so the G-TAD
//! loss's sampling seeds, and with frozen BatchNorm the gradients up to summation order, are the
//! same as a single-device run with the same micro-batch size.

use std::ops::Range;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Device;
use lofi_model::{GtadLoss, HeadTargets, Precision};
use lofi_video::ClipU8;

use crate::data::stack_clips;
use crate::error::{TrainError, TrainResult};
use crate::model::{backward_pass, LofiModel, LossSums};

/// One micro-batch: its index in the step (the loss seed) and its videos.
pub type Micro = (usize, Range<usize>);

/// Splits `n` videos into `replicas` contiguous shards as equal as possible (the first `n %
/// replicas` one larger) and each shard into micro-batches of at most `micro` videos, numbered
/// across the whole step. A replica whose shard is empty gets no micro-batch.
pub fn shard_micro_batches(n: usize, replicas: usize, micro: usize) -> Vec<Vec<Micro>> {
    let replicas = replicas.max(1);
    let micro = micro.max(1);
    let (base, extra) = (n / replicas, n % replicas);
    let mut start = 0;
    let mut k = 0;
    (0..replicas)
        .map(|r| {
            let end = start + base + usize::from(r < extra);
            let mut shard = Vec::new();
            let mut s = start;
            while s < end {
                let e = (s + micro).min(end);
                shard.push((k, s..e));
                k += 1;
                s = e;
            }
            start = end;
            shard
        })
        .collect()
}

/// What a replica hands back for one step: the summed gradients of its micro-batches (on its own
/// device) and the share-weighted loss parts `[total, boundary, regression, classification]`.
pub struct Partial {
    /// `None` when the replica had no video this step.
    pub grads: Option<GradientsParams>,
    /// Loss parts, each already multiplied by the micro-batch's share of the batch.
    pub sums: LossSums,
}

/// The settings of one step that every replica shares.
#[derive(Debug, Clone)]
pub struct StepSpec {
    /// Videos in the whole batch (the denominator of each micro-batch's share).
    pub videos: usize,
    /// Optimizer step (seeds G-TAD's loss sampling).
    pub step: u64,
    /// Precision of the passes.
    pub precision: Precision,
    /// The loss.
    pub loss: GtadLoss,
}

/// Runs `micros` of one replica on `model` (which lives on `device`): one forward/backward per
/// micro-batch, gradients summed. `clips` and `targets` are indexed by the ranges in `micros`
/// minus `offset`.
pub fn replica_passes(
    model: &LofiModel,
    device: &Device,
    clips: &[&ClipU8],
    targets: &[HeadTargets],
    offset: usize,
    micros: &[Micro],
    spec: &StepSpec,
) -> TrainResult<Partial> {
    let mut acc = GradientsAccumulator::<LofiModel>::new();
    let mut sums = LossSums::default();
    for (k, range) in micros {
        let local = range.start - offset..range.end - offset;
        let x = stack_clips(&clips[local.clone()], device)?;
        let share = range.len() as f32 / spec.videos as f32;
        let seed = spec.step * 1024 + *k as u64;
        let (grads, v) = backward_pass(
            model,
            x,
            &targets[local],
            &spec.loss,
            seed,
            share,
            spec.precision,
        )?;
        acc.accumulate(model, grads);
        sums.add_scaled(&v, share);
    }
    let grads = (!micros.is_empty()).then(|| acc.grads());
    Ok(Partial { grads, sums })
}

struct Job {
    model: LofiModel,
    clips: Vec<ClipU8>,
    targets: Vec<HeadTargets>,
    offset: usize,
    micros: Vec<Micro>,
    spec: StepSpec,
}

struct Worker {
    device: Device,
    jobs: Option<Sender<Box<Job>>>,
    results: Receiver<TrainResult<Partial>>,
    thread: Option<JoinHandle<()>>,
}

/// The replicas of a data-parallel run: the primary device runs on the calling thread, every
/// further device on a thread of its own that lives as long as this value.
pub struct Replicas {
    primary: Device,
    workers: Vec<Worker>,
}

impl Replicas {
    /// Replicas on `primary` and `extra` (autodiff devices; the same device may appear more than
    /// once, which runs several replicas on it, as the tests do on the CPU).
    pub fn new(primary: Device, extra: &[Device]) -> TrainResult<Self> {
        let mut workers = Vec::with_capacity(extra.len());
        for (i, device) in extra.iter().enumerate() {
            let (job_tx, job_rx) = channel::<Box<Job>>();
            let (res_tx, res_rx) = channel();
            let d = device.clone();
            let thread = std::thread::Builder::new()
                .name(format!("lofi-replica-{}", i + 1))
                .spawn(move || {
                    for job in job_rx {
                        let refs: Vec<&ClipU8> = job.clips.iter().collect();
                        let out = replica_passes(
                            &job.model,
                            &d,
                            &refs,
                            &job.targets,
                            job.offset,
                            &job.micros,
                            &job.spec,
                        );
                        if res_tx.send(out).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| {
                    TrainError::Config(format!(
                        "cannot start the replica thread for {device:?}: {e}"
                    ))
                })?;
            workers.push(Worker {
                device: device.clone(),
                jobs: Some(job_tx),
                results: res_rx,
                thread: Some(thread),
            });
        }
        Ok(Self { primary, workers })
    }

    /// Number of replicas (the primary included).
    pub fn count(&self) -> usize {
        self.workers.len() + 1
    }

    /// One step's gradients (on the primary device, keyed by `model`'s parameters) and loss
    /// parts: the batch `clips`/`targets` is sharded over the replicas, each shard in
    /// micro-batches of at most `micro` videos.
    pub fn gradients(
        &self,
        model: &LofiModel,
        clips: &[&ClipU8],
        targets: &[HeadTargets],
        micro: usize,
        spec: &StepSpec,
    ) -> TrainResult<(GradientsParams, LossSums)> {
        let shards = shard_micro_batches(clips.len(), self.count(), micro);
        // Hand the extra replicas their shards first so that they run while the primary works.
        let mut pending = Vec::new();
        for (worker, micros) in self.workers.iter().zip(&shards[1..]) {
            let Some(first) = micros.first() else {
                continue;
            };
            let start = first.1.start;
            let end = micros.last().map_or(start, |m| m.1.end);
            let job = Box::new(Job {
                model: model.clone().fork(&worker.device),
                clips: clips[start..end].iter().map(|c| (*c).clone()).collect(),
                targets: targets[start..end].to_vec(),
                offset: start,
                micros: micros.clone(),
                spec: spec.clone(),
            });
            let sent = worker.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok());
            if !sent {
                return Err(stopped(&worker.device));
            }
            pending.push(worker);
        }
        let end = shards[0].last().map_or(0, |m| m.1.end);
        let primary = replica_passes(
            model,
            &self.primary,
            &clips[..end],
            &targets[..end],
            0,
            &shards[0],
            spec,
        );
        // Collect every replica's result before reporting an error, so that no job is left
        // behind in a channel.
        let mut partials = vec![primary];
        for worker in pending {
            partials.push(
                worker
                    .results
                    .recv()
                    .map_err(|_| stopped(&worker.device))
                    .and_then(|r| r),
            );
        }
        let mut acc = GradientsAccumulator::<LofiModel>::new();
        let mut sums = LossSums::default();
        let mut any = false;
        for partial in partials {
            let partial = partial?;
            if let Some(g) = partial.grads {
                acc.accumulate(model, g.to_device(&self.primary, model));
                any = true;
            }
            sums.add(&partial.sums);
        }
        if !any {
            return Err(TrainError::NoData("empty batch".into()));
        }
        Ok((acc.grads(), sums))
    }
}

fn stopped(device: &Device) -> TrainError {
    TrainError::Config(format!(
        "the replica on {device:?} stopped (its thread ended; see the log above)"
    ))
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.jobs.take();
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use lofi_model::{Segment, TargetConfig};

    fn flat(shards: &[Vec<Micro>]) -> Vec<(usize, usize, usize)> {
        shards
            .iter()
            .enumerate()
            .flat_map(|(r, s)| s.iter().map(move |(k, m)| (r, *k, m.len())))
            .collect()
    }

    #[test]
    fn shards_are_contiguous_balanced_and_numbered_across_the_step() {
        let s = shard_micro_batches(16, 4, 16);
        assert_eq!(s.iter().map(|x| x.len()).collect::<Vec<_>>(), [1, 1, 1, 1]);
        assert_eq!(s[3][0], (3, 12..16));
        // 10 videos over 3 replicas: 4, 3, 3; micro-batches of 2.
        let s = shard_micro_batches(10, 3, 2);
        assert_eq!(
            flat(&s),
            [
                (0, 0, 2),
                (0, 1, 2),
                (1, 2, 2),
                (1, 3, 1),
                (2, 4, 2),
                (2, 5, 1)
            ]
        );
        // Every video exactly once, in order.
        let all: Vec<usize> = s.iter().flatten().flat_map(|(_, r)| r.clone()).collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        // One replica: the single-device micro-batching.
        let one = shard_micro_batches(5, 1, 2);
        assert_eq!(flat(&one), [(0, 0, 2), (0, 1, 2), (0, 2, 1)]);
        // Fewer videos than replicas: the last replica idles.
        let s = shard_micro_batches(2, 3, 4);
        assert!(s[2].is_empty());
        assert_eq!(flat(&s), [(0, 0, 1), (1, 1, 1)]);
    }

    fn clip(l: usize, size: usize, seed: u8) -> ClipU8 {
        let shape = [l, 1, 3, size, size];
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|i| ((i as u32).wrapping_mul(2654435761) >> 13) as u8 ^ seed.wrapping_mul(37))
            .collect();
        ClipU8 { shape, data }
    }

    fn stem_running_mean(model: &LofiModel) -> Vec<f32> {
        let lofi_model::Encoder::Tsm(encoder) = model.valid().encoder else {
            panic!("the tiny config builds a TSM encoder");
        };
        encoder
            .bn1
            .running_mean
            .value()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 statistics")
    }

    /// Two replicas, one video each: the BatchNorm running statistics after the step are the
    /// mean of what each replica alone would have made of the same starting statistics.
    #[test]
    fn replicas_average_their_batch_norm_updates() -> TrainResult<()> {
        let config = TrainConfig::tiny();
        let (l, size) = (4, 32);
        let device = crate::cpu_device().autodiff();
        let fresh = || -> TrainResult<LofiModel> {
            lofi_model::seed::seeded(&device, 5, || {
                LofiModel::init(&config, &device).map(lofi_model::seed::initialized)
            })
        };
        let targets =
            vec![HeadTargets::new(&[Segment::new(0.25, 0.75)], l, &TargetConfig::default())?; 2];
        let (a, b) = (clip(l, size, 1), clip(l, size, 2));
        let spec = StepSpec {
            videos: 2,
            step: 0,
            precision: Precision::F32,
            loss: GtadLoss::default(),
        };
        let alone = |c: &ClipU8| -> TrainResult<Vec<f32>> {
            let model = fresh()?;
            Replicas::new(device.clone(), &[])?.gradients(&model, &[c], &targets[..1], 1, &spec)?;
            Ok(stem_running_mean(&model))
        };
        let (ra, rb) = (alone(&a)?, alone(&b)?);
        assert!(
            ra.iter().zip(&rb).any(|(x, y)| (x - y).abs() > 1e-3),
            "the two videos must move the statistics differently for the test to mean anything"
        );
        let model = fresh()?;
        let before = stem_running_mean(&model);
        Replicas::new(device.clone(), std::slice::from_ref(&device))?.gradients(
            &model,
            &[&a, &b],
            &targets,
            1,
            &spec,
        )?;
        let both = stem_running_mean(&model);
        assert_ne!(both, before, "the statistics moved");
        for ((x, y), z) in ra.iter().zip(&rb).zip(&both) {
            assert!((0.5 * (x + y) - z).abs() <= 1e-5, "{x} {y} -> {z}");
        }
        Ok(())
    }
}
