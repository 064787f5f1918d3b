//! `lofi demo`: the whole LoFi method on the built-in synthetic benchmark, ending with the paper's
//! table in shape.
//!
//! The stages are the ones a user runs one by one (`synth`, `pretrain`, `train`, `extract`,
//! `train-head`, `detect`, `eval`, `report`), called here as library functions with one set of
//! small settings so that the whole comparison fits in minutes on a laptop CPU:
//!
//! 1. write a seeded synthetic dataset of untrimmed videos (motion-defined actions);
//! 2. pre-train a tiny TSM encoder on its trimmed clips (the "ACP" starting point);
//! 3. for each row: `frozen` keeps that encoder; `s`, `t`, `st`, `long-cycle` and `short-cycle`
//!    train encoder + G-TAD end to end under that fidelity schedule (never at full fidelity);
//! 4. per row: freeze the encoder, extract features at full fidelity, train a fresh G-TAD on
//!    them, detect (Soft-NMS, top 100, fusion with a video classifier trained on the same
//!    features), evaluate with the ActivityNet protocol;
//! 5. print the table, write `demo.json` and an HTML report.
//!
//! Every row's outputs stay under `OUT/rows/<name>/`; a row whose `row.json` exists is not run
//! again, so an interrupted demo continues where it stopped (`--fresh` starts over).
//!
//! The `frozen` row trains no encoder; its memory and time columns show a short end-to-end
//! probe at *full* fidelity instead, the cost LoFi avoids, so the ratios in the table compare
//! each LoFi schedule with full-fidelity end-to-end training.

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lofi_eval::DetectionReport;
use lofi_head::{
    detect, extract, train_head, DetectConfig, DetectInputs, EncoderSpec, ExtractConfig,
    ExtractInputs, HeadConfig, HeadInputs,
};
use lofi_train::{
    measure_steps, pretrain, train, PretrainConfig, PretrainPaths, RunOptions, ScheduleKind,
    TrainConfig, TrainPaths,
};
use lofi_video::synth::{write_dataset, SynthConfig, SynthPreset};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How big a demo to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DemoSize {
    /// 48 videos of 8-16 s at 64 px, 16 snippets: a few minutes on 2 CPU cores.
    Tiny,
    /// 240 videos of 20-60 s at 128 px, 32 snippets: hours on a CPU, minutes on a GPU.
    Benchmark,
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RowName {
    /// The pre-trained encoder, frozen (the "ACP" row).
    Frozen,
    /// S-LoFi.
    S,
    /// T-LoFi.
    T,
    /// ST-LoFi.
    St,
    /// Long-cycle C-LoFi.
    LongCycle,
    /// Short-cycle C-LoFi.
    ShortCycle,
}

impl RowName {
    const ALL: [RowName; 6] = [
        RowName::Frozen,
        RowName::S,
        RowName::T,
        RowName::St,
        RowName::LongCycle,
        RowName::ShortCycle,
    ];

    fn name(self) -> &'static str {
        match self {
            RowName::Frozen => "frozen",
            other => other.schedule().map_or("frozen", ScheduleKind::name),
        }
    }

    /// How the paper names the row.
    fn title(self) -> &'static str {
        match self {
            RowName::Frozen => "frozen (ACP)",
            RowName::S => "S-LoFi",
            RowName::T => "T-LoFi",
            RowName::St => "ST-LoFi",
            RowName::LongCycle => "long C-LoFi",
            RowName::ShortCycle => "short C-LoFi",
        }
    }

    fn schedule(self) -> Option<ScheduleKind> {
        match self {
            RowName::Frozen => None,
            RowName::S => Some(ScheduleKind::S),
            RowName::T => Some(ScheduleKind::T),
            RowName::St => Some(ScheduleKind::St),
            RowName::LongCycle => Some(ScheduleKind::LongCycle),
            RowName::ShortCycle => Some(ScheduleKind::ShortCycle),
        }
    }
}

/// Arguments of `lofi demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run folder (data, every stage's outputs, demo.json, report.html).
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Size of the run.
    #[arg(long, value_enum, default_value = "tiny")]
    size: DemoSize,
    /// Seed of the dataset and of every stage.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the table as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Rows to run (comma-separated) [default: all six].
    #[arg(long, value_enum, value_delimiter = ',')]
    rows: Option<Vec<RowName>>,
    /// Delete the run folder first instead of continuing it.
    #[arg(long)]
    fresh: bool,
}

/// The settings of every stage for one demo size.
struct Plan {
    synth: SynthConfig,
    pretrain: PretrainConfig,
    train: TrainConfig,
    head: HeadConfig,
    detect: DetectConfig,
}

impl Plan {
    fn new(size: DemoSize, seed: u64) -> Self {
        match size {
            DemoSize::Tiny => {
                let synth = SynthConfig {
                    videos: 48,
                    ..SynthConfig::preset(SynthPreset::Tiny, seed)
                };
                let mut pretrain = PretrainConfig::tiny();
                pretrain.seed = seed;
                pretrain.epochs = 8;
                let mut train = TrainConfig::tiny();
                train.seed = seed;
                train.epochs = 6;
                train.encoder = pretrain.encoder.clone();
                let mut head = HeadConfig::tiny(train.full.snippets);
                head.seed = seed;
                head.epochs = 20;
                head.lr_step_epochs = 15;
                Plan {
                    synth,
                    pretrain,
                    train,
                    head,
                    detect: DetectConfig::default(),
                }
            }
            DemoSize::Benchmark => {
                let synth = SynthConfig::preset(SynthPreset::Benchmark, seed);
                let mut pretrain = PretrainConfig::tiny();
                pretrain.seed = seed;
                pretrain.epochs = 8;
                pretrain.size = 128;
                pretrain.encoder.base_width = 16;
                let mut train = TrainConfig::tiny();
                train.seed = seed;
                train.epochs = 6;
                train.batch_size = 8;
                train.full.snippets = 32;
                train.full.size = 128;
                train.encoder = pretrain.encoder.clone();
                let mut head = HeadConfig::tiny(train.full.snippets);
                head.seed = seed;
                head.epochs = 10;
                Plan {
                    synth,
                    pretrain,
                    train,
                    head,
                    detect: DetectConfig::default(),
                }
            }
        }
    }
}

/// One row's result, as `demo.json` stores it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DemoRow {
    /// "frozen", "s", "t", "st", "long-cycle" or "short-cycle".
    pub name: String,
    /// mAP per threshold, as fractions.
    #[serde(rename = "mAP")]
    pub map: Vec<f64>,
    /// The thresholds.
    pub tiou_thresholds: Vec<f64>,
    /// Mean of `mAP`.
    #[serde(rename = "average_mAP")]
    pub average_map: f64,
    /// Peak memory growth of one end-to-end training step (full fidelity for `frozen`).
    pub peak_memory_bytes: u64,
    /// Mean seconds per end-to-end training step (full fidelity for `frozen`).
    pub step_seconds: f64,
}

/// `demo.json`: the rows plus what the report needs to draw timelines.
#[derive(Debug, Serialize, Deserialize)]
struct DemoFile {
    rows: Vec<DemoRow>,
    ground_truth: String,
    subset: String,
}

/// The table alone (`--json PATH`).
#[derive(Serialize)]
struct DemoTable<'a> {
    rows: &'a [DemoRow],
}

fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn bar(len: usize, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>22} [{bar:30}] {pos}/{len} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// Moves the demo's head bar one step per finished epoch.
struct HeadBar(ProgressBar);

impl lofi_engine::Progress for HeadBar {
    fn epoch_done(
        &self,
        record: &lofi_engine::metrics::EpochRecord,
        _validation: Option<&lofi_engine::ValidationMetrics>,
    ) {
        self.0.set_position(record.epoch as u64 + 1);
    }
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let device = crate::device::device()?;
    let out = &args.out;
    if args.fresh && out.exists() {
        std::fs::remove_dir_all(out)
            .with_context(|| format!("{}: cannot delete", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let plan = Plan::new(args.size, args.seed);
    let rows = args.rows.clone().unwrap_or_else(|| RowName::ALL.to_vec());

    let data = out.join("data");
    let ground_truth = data.join("ground_truth.json");
    if !ground_truth.is_file() {
        let bar = bar(plan.synth.videos, "synthetic videos");
        write_dataset(&data, &plan.synth, 2, &|done| bar.set_position(done as u64))
            .with_context(|| format!("{}: cannot write the synthetic dataset", data.display()))?;
        bar.finish_and_clear();
    }
    tracing::info!(
        "data: {} synthetic videos in {}",
        plan.synth.videos,
        data.display()
    );

    let pretrained = out.join("pretrain");
    let encoder = match std::fs::read_to_string(pretrained.join("encoder.path")) {
        Ok(path) if Path::new(path.trim()).is_file() => PathBuf::from(path.trim()),
        _ => {
            let spin = spinner("pre-training the encoder on trimmed clips".into());
            let outcome = pretrain(
                &plan.pretrain,
                &PretrainPaths {
                    data: data.clone(),
                    out: pretrained.clone(),
                },
                &RunOptions {
                    device: device.clone(),
                    ..RunOptions::default()
                },
            )?;
            spin.finish_and_clear();
            let accuracy = outcome.val_accuracy.last().copied().flatten();
            tracing::info!(
                "pre-trained encoder: clip accuracy {} on validation clips",
                accuracy.map_or("n/a".to_string(), |a| format!("{:.0}%", a * 100.0))
            );
            std::fs::write(
                pretrained.join("encoder.path"),
                outcome.encoder.to_string_lossy().as_bytes(),
            )
            .with_context(|| format!("{}: cannot write", pretrained.display()))?;
            outcome.encoder
        }
    };

    let mut results = Vec::new();
    for row in rows {
        let result = run_row(row, &plan, out, &data, &encoder, &device)
            .with_context(|| format!("demo row {}", row.name()))?;
        tracing::info!(
            "{}: average mAP {:.2}",
            row.title(),
            result.average_map * 100.0
        );
        results.push(result);
    }

    let subset = "validation".to_string();
    let file = DemoFile {
        rows: results.clone(),
        ground_truth: "data/ground_truth.json".to_string(),
        subset,
    };
    lofi_eval::write_json_atomic(&out.join("demo.json"), &file, true)?;
    if let Some(path) = &args.json {
        lofi_eval::write_json_atomic(path, &DemoTable { rows: &results }, true)?;
    }
    let report = out.join("report.html");
    for warning in lofi_report::write_report(&lofi_report::ReportOptions::new(out), &report)? {
        tracing::warn!("report: {warning}");
    }
    let validation_videos = count_validation(&ground_truth)?;
    crate::output::print_stdout(&table(
        &results,
        args.size,
        validation_videos,
        started.elapsed().as_secs_f64(),
    ))?;
    tracing::info!("report: {}", report.display());
    Ok(())
}

fn count_validation(ground_truth: &Path) -> Result<usize> {
    let truth = lofi_eval::GroundTruth::from_path(ground_truth, &Default::default())?;
    Ok(truth.annotated_videos().count())
}

/// Trains (or keeps) one row's encoder, then extract -> train-head -> detect -> evaluate.
fn run_row(
    row: RowName,
    plan: &Plan,
    out: &Path,
    data: &Path,
    pretrained: &Path,
    device: &Device,
) -> Result<DemoRow> {
    let dir = out.join("rows").join(row.name());
    let done = dir.join("row.json");
    if let Ok(text) = std::fs::read_to_string(&done) {
        if let Ok(previous) = serde_json::from_str::<DemoRow>(&text) {
            tracing::info!("{}: already done ({})", row.title(), done.display());
            return Ok(previous);
        }
    }
    let paths = |out: PathBuf, encoder: &Path| TrainPaths {
        ground_truth: data.join("ground_truth.json"),
        videos: data.join("videos"),
        encoder: Some(encoder.to_path_buf()),
        out,
    };

    // The encoder and the cost of one end-to-end step.
    let (encoder, stats) = match row.schedule() {
        Some(kind) => {
            let mut config = plan.train.clone();
            config.schedule.kind = kind;
            let spin = spinner(format!("{}: end-to-end training", row.title()));
            let outcome = train(
                &config,
                &paths(dir.join("train"), pretrained),
                &RunOptions {
                    device: device.clone(),
                    ..RunOptions::default()
                },
            )?;
            spin.finish_and_clear();
            (outcome.encoder, outcome.fidelities)
        }
        None => {
            // A few full-fidelity steps, only to measure what LoFi avoids.
            let mut config = plan.train.clone();
            config.schedule.kind = ScheduleKind::Full;
            config.epochs = 1;
            let probe = dir.join("full-fidelity-probe");
            let spin = spinner("frozen: measuring a full-fidelity end-to-end step".into());
            let stats = measure_steps(
                &config,
                &paths(probe, pretrained),
                &RunOptions {
                    device: device.clone(),
                    ..RunOptions::default()
                },
                2,
            )?;
            spin.finish_and_clear();
            (pretrained.to_path_buf(), stats)
        }
    };
    let steps: usize = stats.iter().map(|f| f.steps).sum();
    if steps == 0 {
        bail!("{}: no training step was measured", row.name());
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

    // Stage 3 of the method: frozen encoder at full fidelity, a fresh head, detection.
    let features = dir.join("features");
    let mut extract_config = ExtractConfig::new(EncoderSpec {
        model: plan.train.encoder.resnet(None),
        checkpoint: Some(encoder),
        seed: plan.train.seed,
    });
    extract_config.snippets = plan.train.full.snippets;
    extract_config.size = plan.train.full.size;
    extract_config.frames_per_snippet = plan.train.frames_per_snippet;
    let video_count = plan.synth.videos;
    let progress = bar(video_count, &format!("{}: features", row.name()));
    let extracted = extract(
        &extract_config,
        &ExtractInputs {
            device: device.clone(),
            ground_truth: data.join("ground_truth.json"),
            videos: data.join("videos"),
            out: features.clone(),
            shard: None,
        },
        &|done, _| progress.set_position(done as u64),
    )?;
    progress.finish_and_clear();
    if !extracted.failed.is_empty() {
        bail!(
            "{}: feature extraction failed for {} video(s): {:?}",
            row.name(),
            extracted.failed.len(),
            extracted.failed
        );
    }
    let head_dir = dir.join("head");
    let progress = bar(plan.head.epochs, &format!("{}: head", row.name()));
    train_head(
        &plan.head,
        &HeadInputs {
            device: device.clone(),
            features: features.clone(),
            ground_truth: data.join("ground_truth.json"),
            out: head_dir.clone(),
        },
        &lofi_engine::RunControl {
            resume: true,
            progress: lofi_engine::Reporter::new(HeadBar(progress.clone())),
            ..Default::default()
        },
    )?;
    progress.finish_and_clear();
    let detected = detect(
        &plan.detect,
        &DetectInputs {
            device: device.clone(),
            head_dir,
            features,
            ground_truth: data.join("ground_truth.json"),
            subset: "validation".into(),
            class_scores: None,
            out: dir.join("detections.json"),
            class_scores_out: Some(dir.join("class_scores.json")),
            evaluate: true,
        },
    )?;
    let report: DetectionReport = detected
        .report
        .context("detection ran without its evaluation")?;
    lofi_eval::write_json_atomic(
        &dir.join("eval.json"),
        &super::eval::detection_json(&report),
        true,
    )?;
    let result = DemoRow {
        name: row.name().to_string(),
        map: report.map.clone(),
        tiou_thresholds: report.tiou_thresholds.clone(),
        average_map: report.average_map,
        peak_memory_bytes,
        step_seconds,
    };
    lofi_eval::write_json_atomic(&done, &result, true)?;
    Ok(result)
}

fn at(row: &DemoRow, threshold: f64) -> Option<f64> {
    row.tiou_thresholds
        .iter()
        .position(|t| (t - threshold).abs() < 1e-9)
        .map(|i| row.map[i] * 100.0)
}

/// The paper's Table 1/2 in shape, with an honest verdict.
fn table(rows: &[DemoRow], size: DemoSize, videos: usize, seconds: f64) -> String {
    let mut text = format!(
        "\nLoFi demo: synthetic benchmark ({size:?} size), mAP (%) on {videos} validation videos\n\n"
    );
    let frozen = rows.iter().find(|r| r.name == "frozen");
    text.push_str(&format!(
        "{:<14} {:>7} {:>7} {:>7} {:>8} {:>10} {:>14}\n",
        "encoder", "@0.5", "@0.75", "@0.95", "average", "step (s)", "process MiB"
    ));
    for row in rows {
        let title = RowName::ALL
            .iter()
            .find(|r| r.name() == row.name)
            .map_or(row.name.as_str(), |r| r.title());
        let cell = |t| at(row, t).map_or("-".to_string(), |m| format!("{m:.2}"));
        text.push_str(&format!(
            "{:<14} {:>7} {:>7} {:>7} {:>8.2} {:>10.3} {:>14.0}\n",
            title,
            cell(0.5),
            cell(0.75),
            cell(0.95),
            row.average_map * 100.0,
            row.step_seconds,
            row.peak_memory_bytes as f64 / (1024.0 * 1024.0),
        ));
    }
    text.push_str(
        "\nStep time and memory: one end-to-end training step (encoder + head) under the row's \
         schedule; for the frozen\nrow, a step at full fidelity, the cost LoFi avoids. Memory is \
         the process's peak, which the baseline\ndominates at this size; the ratios at the \
         paper's sizes (LoFi ~0.3x of full) are in BENCHMARKS.md.\n",
    );
    if let Some(frozen) = frozen {
        let lofi: Vec<&DemoRow> = rows.iter().filter(|r| r.name != "frozen").collect();
        let losers: Vec<&str> = lofi
            .iter()
            .filter(|r| r.average_map <= frozen.average_map)
            .map(|r| {
                RowName::ALL
                    .iter()
                    .find(|n| n.name() == r.name)
                    .map_or(r.name.as_str(), |n| n.title())
            })
            .collect();
        if !lofi.is_empty() {
            text.push_str(&format!(
                "Verdict: {} of {} LoFi rows beat the frozen encoder's average mAP ({:.2})",
                lofi.len() - losers.len(),
                lofi.len(),
                frozen.average_map * 100.0
            ));
            if losers.is_empty() {
                text.push_str(".\n");
            } else {
                text.push_str(&format!("; not on this run: {}.\n", losers.join(", ")));
            }
        }
    }
    text.push_str(&format!("Finished in {seconds:.0} s.\n"));
    text
}
