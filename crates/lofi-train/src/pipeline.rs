//! One row of the paper's table as a library function: an encoder (the pre-trained one frozen, or
//! LoFi-trained under a schedule), then stage 3 of the method on it: frozen encoder at full
//! fidelity -> features -> a fresh G-TAD -> detections (Soft-NMS, top-k, class fusion) -> the
//! ActivityNet protocol.
//!
//! Exists so that the demo, the tests and a user's own sweep run the same sequence of stages with
//! the same settings; the binary's `demo` is a loop over rows and seeds around [`run_row`]. Every
//! stage inside resumes what an interrupted call left in the row folder (training and head runs
//! continue from their last complete epoch, extraction skips finished videos), and the row's
//! result is written last (`row.json`), so a row that finished is never run again.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lofi_engine::{FidelityStats, Reporter, RunControl};
use lofi_head::{
    detect, extract, train_head, DetectConfig, DetectInputs, EncoderSpec, ExtractConfig,
    ExtractInputs, HeadConfig, HeadInputs,
};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{TrainError, TrainResult};
use crate::schedule::ScheduleKind;
use crate::train::{measure_steps, train, RunOptions, TrainPaths};

/// The settings of a row: the LoFi stage (its schedule decides the row), the head and detection.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSettings {
    /// End-to-end training settings; the encoder architecture and full fidelity also define the
    /// extraction.
    pub train: TrainConfig,
    /// `None`: the pre-trained encoder stays frozen (the paper's baseline row).
    pub schedule: Option<ScheduleKind>,
    /// Head training on the extracted features.
    pub head: HeadConfig,
    /// Post-processing.
    pub detect: DetectConfig,
}

/// Where a row reads and writes.
#[derive(Debug, Clone)]
pub struct RowInputs {
    /// Ground truth (training and validation subsets).
    pub ground_truth: PathBuf,
    /// Video folder.
    pub videos: PathBuf,
    /// The pre-trained encoder the row starts from.
    pub encoder: PathBuf,
    /// The row folder (`train/`, `features/`, `head/`, detections and `row.json`).
    pub out: PathBuf,
    /// Where every stage computes.
    pub device: Device,
    /// Progress of the training stages.
    pub progress: Reporter,
}

/// What a row measured (`row.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowResult {
    /// mAP per tIoU threshold, as fractions.
    #[serde(rename = "mAP")]
    pub map: Vec<f64>,
    /// The thresholds.
    pub tiou_thresholds: Vec<f64>,
    /// Mean of `mAP`.
    #[serde(rename = "average_mAP")]
    pub average_map: f64,
    /// Largest peak memory of an end-to-end step (full fidelity for a frozen row).
    pub peak_memory_bytes: u64,
    /// Mean seconds per end-to-end step (full fidelity for a frozen row).
    pub step_seconds: f64,
}

/// Full-fidelity steps the frozen row measures (the cost LoFi avoids).
const PROBE_STEPS: usize = 2;

/// Runs (or finishes) one row; see the module docs. A row folder holding `row.json` returns it.
pub fn run_row(settings: &RowSettings, inputs: &RowInputs) -> TrainResult<RowResult> {
    let done = inputs.out.join("row.json");
    if let Ok(text) = std::fs::read_to_string(&done) {
        if let Ok(previous) = serde_json::from_str::<RowResult>(&text) {
            return Ok(previous);
        }
    }
    let (encoder, stats) = row_encoder(settings, inputs)?;
    let steps: usize = stats.iter().map(|f| f.steps).sum();
    if steps == 0 {
        return Err(TrainError::NoData(format!(
            "{}: no training step was measured",
            inputs.out.display()
        )));
    }
    let step_seconds = stats
        .iter()
        .map(|f| f.mean_step_s * f.steps as f64)
        .sum::<f64>()
        / steps as f64;
    let peak_memory_bytes = stats
        .iter()
        .filter_map(|f| f.peak_memory_bytes)
        .max()
        .unwrap_or(0);
    let report = evaluate_encoder(settings, inputs, &encoder)?;
    let result = RowResult {
        map: report.map.clone(),
        tiou_thresholds: report.tiou_thresholds.clone(),
        average_map: report.average_map,
        peak_memory_bytes,
        step_seconds,
    };
    lofi_engine::owned::write_single_json(&done, &result, true)?;
    Ok(result)
}

/// The row's encoder and the cost of its end-to-end steps: LoFi training under the schedule, or
/// for a frozen row the pre-trained encoder and a few full-fidelity steps measured aside.
fn row_encoder(
    settings: &RowSettings,
    inputs: &RowInputs,
) -> TrainResult<(PathBuf, Vec<FidelityStats>)> {
    let paths = |out: PathBuf| TrainPaths {
        ground_truth: inputs.ground_truth.clone(),
        videos: inputs.videos.clone(),
        encoder: Some(inputs.encoder.clone()),
        out,
    };
    let options = RunOptions {
        device: inputs.device.clone(),
        run: RunControl {
            resume: true,
            progress: inputs.progress.clone(),
            ..RunControl::default()
        },
        ..RunOptions::default()
    };
    let mut config = settings.train.clone();
    match settings.schedule {
        Some(kind) => {
            config.schedule.kind = kind;
            tracing::info!(
                "{}: end-to-end training ({})",
                inputs.out.display(),
                kind.name()
            );
            let outcome = train(&config, &paths(inputs.out.join("train")), &options)?;
            Ok((outcome.encoder, outcome.fidelities))
        }
        None => {
            config.schedule.kind = ScheduleKind::Full;
            config.epochs = 1;
            let probe = inputs.out.join("full-fidelity-probe");
            // A probe is a few steps, not a run to continue: start it afresh (what an earlier
            // probe wrote there goes, nothing else).
            let options = RunOptions {
                run: RunControl {
                    resume: false,
                    overwrite: true,
                    ..options.run.clone()
                },
                ..options.clone()
            };
            let stats = measure_steps(&config, &paths(probe), &options, PROBE_STEPS)?;
            Ok((inputs.encoder.clone(), stats))
        }
    }
}

/// Stage 3 of the method on `encoder`: features at full fidelity, a fresh head, detections on
/// the validation subset and their evaluation.
fn evaluate_encoder(
    settings: &RowSettings,
    inputs: &RowInputs,
    encoder: &Path,
) -> TrainResult<lofi_eval::DetectionReport> {
    let train = &settings.train;
    let features = inputs.out.join("features");
    let mut extract_config = ExtractConfig::new(EncoderSpec {
        model: train.encoder.clone().with_frozen_bn(false),
        num_classes: None,
        checkpoint: Some(encoder.to_path_buf()),
        seed: train.seed,
    });
    extract_config.snippets = train.full.snippets;
    extract_config.size = train.full.size;
    extract_config.frames_per_snippet = train.frames_per_snippet;
    tracing::info!("{}: extracting features", inputs.out.display());
    let extracted = extract(
        &extract_config,
        &ExtractInputs {
            device: inputs.device.clone(),
            ground_truth: inputs.ground_truth.clone(),
            videos: inputs.videos.clone(),
            out: features.clone(),
            shard: None,
            overwrite: false,
            skip_missing_videos: false,
        },
        &|_, _| {},
    )?;
    if !extracted.failed.is_empty() {
        return Err(TrainError::NoData(format!(
            "{}: feature extraction failed for {} video(s): {:?}",
            inputs.out.display(),
            extracted.failed.len(),
            extracted.failed
        )));
    }
    let head_dir = inputs.out.join("head");
    tracing::info!("{}: training the head", inputs.out.display());
    train_head(
        &settings.head,
        &HeadInputs {
            device: inputs.device.clone(),
            features: features.clone(),
            ground_truth: inputs.ground_truth.clone(),
            out: head_dir.clone(),
        },
        &RunControl {
            resume: true,
            progress: inputs.progress.clone(),
            ..RunControl::default()
        },
    )?;
    let detected = detect(
        &settings.detect,
        &DetectInputs {
            device: inputs.device.clone(),
            skip_missing_features: false,
            head_dir,
            features,
            ground_truth: inputs.ground_truth.clone(),
            subset: "validation".into(),
            class_scores: None,
            out: inputs.out.join("detections.json"),
            class_scores_out: Some(inputs.out.join("class_scores.json")),
            evaluate: true,
        },
    )?;
    let report = detected.report.ok_or_else(|| {
        TrainError::NoData(format!(
            "{}: detection ran without its evaluation",
            inputs.out.display()
        ))
    })?;
    lofi_engine::owned::write_single_json(
        &inputs.out.join("eval.json"),
        &lofi_eval::detection_json(&report),
        true,
    )?;
    Ok(report)
}
