//! The metrics log: one typed record per line of `metrics.jsonl`, shared by the writer and
//! every reader (the trainers' summaries, the demo, the HTML report).
//!
//! Exists so that a number is written and read back through the same field of the same type,
//! never through a string key. Each line is one [`MetricsRecord`], tagged by `"event"`: `step`
//! (one optimizer step), `epoch_end` (the epoch's mean loss) or `validation`. The log is
//! append-only and flushed after every line; a resumed run cuts it back to the epochs before the
//! one it redoes ([`truncate`]), so it ends with exactly the lines of an uninterrupted run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, EngineResult};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MetricsRecord {
    /// One optimizer step.
    Step(StepRecord),
    /// The end of an epoch.
    EpochEnd(EpochRecord),
    /// A validation pass after an epoch.
    Validation(ValidationRecord),
}

impl MetricsRecord {
    /// The 0-based epoch the record belongs to.
    pub fn epoch(&self) -> usize {
        match self {
            Self::Step(r) => r.epoch,
            Self::EpochEnd(r) => r.epoch,
            Self::Validation(r) => r.epoch,
        }
    }

    /// The stage that wrote it ("pretrain", "train", "train-head").
    pub fn stage(&self) -> &str {
        match self {
            Self::Step(r) => &r.stage,
            Self::EpochEnd(r) => &r.stage,
            Self::Validation(r) => &r.stage,
        }
    }
}

/// The parts of a G-TAD loss (the total is [`StepRecord::loss`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LossParts {
    /// Boundary (start/end) classification.
    pub boundary: f64,
    /// IoU-map regression (unweighted).
    pub regression: f64,
    /// IoU-map classification.
    pub classification: f64,
}

/// The fidelity a step ran at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FidelityTag {
    /// Name in files ("s", "t", "st", "full" or "<L>x<S>").
    pub name: String,
    /// Snippets (L).
    pub snippets: usize,
    /// Frame size (S).
    pub size: usize,
}

/// What a stage's step reports; the engine adds where and when ([`StepRecord`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepMetrics {
    /// The step's (batch-mean) loss.
    pub loss: f64,
    /// Its parts, for G-TAD losses.
    pub loss_parts: Option<LossParts>,
    /// The fidelity of the batch, for stages that decode video.
    pub fidelity: Option<FidelityTag>,
    /// Videos (or clips) in the batch.
    pub videos: usize,
    /// Largest micro-batch, where gradients were accumulated.
    pub micro_batch: Option<usize>,
    /// Forward/backward passes per replica.
    pub accumulation: Option<usize>,
    /// Devices the batch was split across.
    pub replicas: Option<usize>,
}

/// A `step` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Stage name.
    pub stage: String,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Batch within the epoch (0-based).
    pub batch: usize,
    /// Optimizer steps before this one.
    pub step: usize,
    /// Name of the fidelity ("s", "t", "st", "full", "<L>x<S>"), where the stage decodes video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<String>,
    /// Snippets of the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snippets: Option<usize>,
    /// Frame size of the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// Videos (or clips) in the batch.
    pub videos: usize,
    /// Largest micro-batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_batch: Option<usize>,
    /// Passes per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accumulation: Option<usize>,
    /// Devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
    /// Loss.
    pub loss: f64,
    /// Loss parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_parts: Option<LossParts>,
    /// Learning rate.
    pub lr: f64,
    /// Seconds of the step (producing the batch excluded).
    pub step_s: f64,
    /// Training seconds since the run started (resumed runs included).
    pub elapsed_s: f64,
    /// Peak resident memory of the process during the step (CPU), bytes.
    #[serde(default)]
    pub peak_memory_bytes: Option<u64>,
    /// The device allocator's reserved bytes after the step (GPU).
    #[serde(default)]
    pub device_reserved_bytes: Option<u64>,
}

impl StepRecord {
    /// The step's fidelity, when it has one.
    pub fn fidelity_tag(&self) -> Option<FidelityTag> {
        Some(FidelityTag {
            name: self.fidelity.clone()?,
            snippets: self.snippets?,
            size: self.size?,
        })
    }

    /// Peak memory of the step: the host peak on the CPU, the device pool on a GPU.
    pub fn peak_bytes(&self) -> Option<u64> {
        self.peak_memory_bytes.or(self.device_reserved_bytes)
    }
}

/// An `epoch_end` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Stage name.
    pub stage: String,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Optimizer steps so far.
    pub step: usize,
    /// Mean loss of the epoch's steps.
    pub loss: f64,
    /// Learning rate of the epoch.
    pub lr: f64,
    /// Training seconds so far.
    pub elapsed_s: f64,
}

/// What a stage's validation reports.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ValidationMetrics {
    /// Mean loss on the validation subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Average mAP of the validation detections.
    #[serde(
        default,
        rename = "average_mAP",
        skip_serializing_if = "Option::is_none"
    )]
    pub average_map: Option<f64>,
    /// mAP per tIoU threshold.
    #[serde(default, rename = "mAP", skip_serializing_if = "Option::is_none")]
    pub map: Option<Vec<f64>>,
    /// Top-1 accuracy (clip classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
}

/// A `validation` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    /// Stage name.
    pub stage: String,
    /// The epoch (0-based) after which it ran.
    pub epoch: usize,
    /// The numbers.
    #[serde(flatten)]
    pub metrics: ValidationMetrics,
}

/// The append-only log, flushed after every record.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending (created if missing).
    pub fn open(path: &Path) -> EngineResult<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| EngineError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record as a line and flushes it.
    pub fn append(&mut self, record: &MetricsRecord) -> EngineResult<()> {
        let mut line = serde_json::to_string(record)
            .map_err(|e| EngineError::data(&self.path, format!("cannot serialise: {e}")))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| EngineError::io(&self.path, e))
    }
}

/// Reads every record of a log. A missing file is empty; a torn last line (a kill in the middle
/// of a write) is dropped; any other line that is not a record is an error naming the line.
pub fn read(path: &Path) -> EngineResult<Vec<MetricsRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EngineError::io(path, e)),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !complete => {}
            Err(e) => {
                return Err(EngineError::data(
                    path,
                    format!("line {}: not a lofi metrics record: {e}", i + 1),
                ))
            }
        }
    }
    Ok(out)
}

/// Rewrites the log keeping only the records of epochs before `epoch` (atomically): what a
/// resumed run does before redoing the interrupted epoch. Returns how many records were dropped.
pub fn truncate(path: &Path, epoch: usize) -> EngineResult<usize> {
    let records = read(path)?;
    let mut text = String::new();
    let mut kept = 0;
    for r in records.iter().filter(|r| r.epoch() < epoch) {
        text.push_str(
            &serde_json::to_string(r)
                .map_err(|e| EngineError::data(path, format!("cannot serialise: {e}")))?,
        );
        text.push('\n');
        kept += 1;
    }
    lofi_eval::write_atomic(path, text.as_bytes()).map_err(|e| EngineError::io(path, e))?;
    Ok(records.len() - kept)
}

/// Step statistics of one fidelity over a run.
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
    /// Mean seconds per optimizer step (producing the batch excluded).
    pub mean_step_s: f64,
    /// Largest peak memory of a step, bytes: the process's peak resident memory on the CPU, the
    /// device allocator's reserved bytes on a GPU (`None` where neither is measured).
    pub peak_memory_bytes: Option<u64>,
}

/// Per-fidelity step time and peak memory of the `stage` steps among `records`, in order of
/// first appearance.
pub fn fidelity_stats(records: &[MetricsRecord], stage: &str) -> Vec<FidelityStats> {
    let mut out: Vec<FidelityStats> = Vec::new();
    for r in records {
        let MetricsRecord::Step(s) = r else { continue };
        let Some(tag) = s.fidelity_tag().filter(|_| s.stage == stage) else {
            continue;
        };
        let i = match out.iter().position(|e| e.name == tag.name) {
            Some(i) => i,
            None => {
                out.push(FidelityStats {
                    name: tag.name,
                    snippets: tag.snippets,
                    size: tag.size,
                    steps: 0,
                    mean_step_s: 0.0,
                    peak_memory_bytes: None,
                });
                out.len() - 1
            }
        };
        let e = &mut out[i];
        e.mean_step_s = (e.mean_step_s * e.steps as f64 + s.step_s) / (e.steps + 1) as f64;
        e.steps += 1;
        e.peak_memory_bytes = match (e.peak_memory_bytes, s.peak_bytes()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    out
}

/// One epoch of a run, from its `epoch_end` and `validation` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub mean_loss: f64,
    /// The validation after the epoch, when one ran.
    pub validation: Option<ValidationMetrics>,
}

/// The epochs of `records`, in order.
pub fn epoch_summaries(records: &[MetricsRecord]) -> Vec<EpochSummary> {
    let mut out: Vec<EpochSummary> = Vec::new();
    for r in records {
        if let MetricsRecord::EpochEnd(e) = r {
            out.push(EpochSummary {
                epoch: e.epoch,
                mean_loss: e.loss,
                validation: None,
            });
        }
    }
    for r in records {
        if let MetricsRecord::Validation(v) = r {
            if let Some(s) = out.iter_mut().find(|s| s.epoch == v.epoch) {
                s.validation = Some(v.metrics.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(epoch: usize, step: usize, fidelity: &str, s: f64, peak: u64) -> MetricsRecord {
        MetricsRecord::Step(StepRecord {
            stage: "train".into(),
            epoch,
            batch: 0,
            step,
            fidelity: Some(fidelity.into()),
            snippets: Some(8),
            size: Some(32),
            videos: 2,
            micro_batch: Some(2),
            accumulation: Some(1),
            replicas: Some(1),
            loss: 1.0,
            loss_parts: Some(LossParts::default()),
            lr: 0.1,
            step_s: s,
            elapsed_s: 0.0,
            peak_memory_bytes: Some(peak),
            device_reserved_bytes: None,
        })
    }

    fn end(epoch: usize) -> MetricsRecord {
        MetricsRecord::EpochEnd(EpochRecord {
            stage: "train".into(),
            epoch,
            step: epoch + 1,
            loss: 2.0 - epoch as f64,
            lr: 0.1,
            elapsed_s: 1.0,
        })
    }

    #[test]
    fn records_round_trip_truncate_and_survive_a_torn_line() -> EngineResult<()> {
        let dir = tempfile::tempdir().map_err(|e| EngineError::io("tmp", e))?;
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path)?;
        let mut written = Vec::new();
        for e in 0..3 {
            written.push(step(e, e, "s", 1.0, 10));
            written.push(end(e));
            written.push(MetricsRecord::Validation(ValidationRecord {
                stage: "train".into(),
                epoch: e,
                metrics: ValidationMetrics {
                    loss: Some(0.5),
                    average_map: Some(0.25),
                    map: Some(vec![0.5, 0.0]),
                    accuracy: None,
                },
            }));
        }
        for r in &written {
            log.append(r)?;
        }
        drop(log);
        let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
        assert!(text.contains("\"event\":\"epoch_end\""), "{text}");
        assert!(text.contains("\"average_mAP\":0.25"), "{text}");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        f.write_all(b"{\"event\":\"step\",\"lo")
            .map_err(|e| EngineError::io(&path, e))?;
        assert_eq!(read(&path)?, written);
        assert_eq!(truncate(&path, 1)?, 6);
        assert_eq!(read(&path)?, written[..3].to_vec());
        assert!(read(&dir.path().join("none"))?.is_empty());
        // A bad line that is not the torn tail is an error naming the line.
        std::fs::write(&path, "{\"x\":1}\n{\"event\":\"epoch_end\"}\n")
            .map_err(|e| EngineError::io(&path, e))?;
        let e = read(&path).expect_err("not records");
        assert!(e.to_string().contains("line 1"), "{e}");
        Ok(())
    }

    #[test]
    fn fidelity_stats_and_epoch_summaries() {
        let records = vec![
            step(0, 0, "s", 1.0, 10),
            step(0, 1, "t", 3.0, 30),
            step(0, 2, "s", 2.0, 20),
            end(0),
            MetricsRecord::Validation(ValidationRecord {
                stage: "train".into(),
                epoch: 0,
                metrics: ValidationMetrics {
                    loss: Some(0.5),
                    ..ValidationMetrics::default()
                },
            }),
            end(1),
        ];
        let stats = fidelity_stats(&records, "train");
        assert_eq!(stats.len(), 2);
        assert_eq!((stats[0].name.as_str(), stats[0].steps), ("s", 2));
        assert!((stats[0].mean_step_s - 1.5).abs() < 1e-12);
        assert_eq!(stats[0].peak_memory_bytes, Some(20));
        assert_eq!(stats[1].peak_memory_bytes, Some(30));
        assert!(fidelity_stats(&records, "pretrain").is_empty());
        let epochs = epoch_summaries(&records);
        assert_eq!(epochs.len(), 2);
        assert_eq!(
            epochs[0].validation.as_ref().and_then(|v| v.loss),
            Some(0.5)
        );
        assert_eq!(epochs[1].validation, None);
        assert_eq!(epochs[1].mean_loss, 1.0);
    }
}
