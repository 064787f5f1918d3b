//! `lofi demo`: the whole LoFi method on the built-in synthetic benchmark, ending with the paper's
//! table in shape, as mean +- standard deviation over several training seeds.
//!
//! The stages are the ones a user runs one by one (`synth`, `pretrain`, `train`, `extract`,
//! `train-head`, `detect`, `eval`, `report`), called as library functions with one set of small
//! settings so that the whole comparison fits in minutes on a laptop CPU:
//!
//! 1. write a seeded synthetic dataset of untrimmed videos (motion-defined actions), once;
//! 2. for each training seed: pre-train a tiny TSM encoder on the trimmed clips (the "ACP"
//!    starting point), then run every row with [`lofi_train::pipeline::run_row`]: `frozen` keeps
//!    that encoder; `s`, `t`, `st`, `long-cycle` and `short-cycle` train encoder + G-TAD end to end
//!    under that fidelity schedule (never at full fidelity); each row then extracts features at
//!    full fidelity, trains a fresh G-TAD, detects and evaluates;
//! 3. print each row's mean +- standard deviation over the seeds, a verdict only where a
//!    difference exceeds the spread, write `demo.json` and an HTML report.
//!
//! Outputs stay under `OUT/seed-<s>/`; a finished row (its `row.json`) is not run again, so an
//! interrupted demo continues where it stopped (`--fresh` starts over).
//!
//! The `frozen` row trains no encoder; its memory and time columns show a short end-to-end
//! probe at *full* fidelity instead, the cost LoFi avoids, so the ratios in the table compare
//! each LoFi schedule with full-fidelity end-to-end training.

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lofi_engine::owned::{prepare, Record};
use lofi_engine::{FolderKind, OutputPlan, Owner, Start};
use lofi_head::{DetectConfig, HeadConfig};
use lofi_train::pipeline::{run_row, RowInputs, RowResult, RowSettings};
use lofi_train::{
    pretrain, PretrainConfig, PretrainData, PretrainPaths, RunOptions, ScheduleKind, TrainConfig,
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
    /// The tiny dataset with one or two epochs per stage: for tests of the demo itself.
    #[value(hide = true)]
    Smoke,
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
    /// Seed of the dataset and the first training seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Training seeds per row (SEED, SEED+1, ...): the table shows mean +- standard deviation.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    seeds: u64,
    /// Also write the table as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Rows to run (comma-separated) [default: all six].
    #[arg(long, value_enum, value_delimiter = ',')]
    rows: Option<Vec<RowName>>,
    /// Delete the run folder first instead of continuing it (needed when it holds a demo of
    /// another size or seed).
    #[arg(long, alias = "overwrite")]
    fresh: bool,
}

/// The settings of every stage for one demo size and training seed.
struct Plan {
    synth: SynthConfig,
    pretrain: PretrainConfig,
    train: TrainConfig,
    head: HeadConfig,
}

impl Plan {
    /// The settings of `size`: the dataset from `data_seed`, every training stage from `seed`.
    fn new(size: DemoSize, data_seed: u64, seed: u64) -> Self {
        let mut pretrain = PretrainConfig::tiny();
        pretrain.epochs = 8;
        let mut train = TrainConfig::tiny();
        train.epochs = 6;
        let (synth, head_epochs) = match size {
            DemoSize::Tiny | DemoSize::Smoke => {
                let synth = SynthConfig::preset(SynthPreset::Tiny, data_seed);
                if size == DemoSize::Smoke {
                    pretrain.epochs = 1;
                    train.epochs = 1;
                    (synth, 3)
                } else {
                    (
                        SynthConfig {
                            videos: 48,
                            ..synth
                        },
                        20,
                    )
                }
            }
            DemoSize::Benchmark => {
                pretrain.size = 128;
                pretrain.encoder = pretrain.encoder.with_base_width(16);
                train.batch_size = 8;
                train.full.snippets = 32;
                train.full.size = 128;
                (SynthConfig::preset(SynthPreset::Benchmark, data_seed), 10)
            }
        };
        pretrain.seed = seed;
        train.seed = seed;
        train.encoder = pretrain.encoder.clone();
        let mut head = HeadConfig::tiny(train.full.snippets);
        head.seed = seed;
        head.epochs = head_epochs;
        if size == DemoSize::Tiny {
            head.lr_step_epochs = 15;
        }
        Plan {
            synth,
            pretrain,
            train,
            head,
        }
    }
}

/// One row of the table over the seeds, as `demo.json` stores it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DemoRow {
    /// "frozen", "s", "t", "st", "long-cycle" or "short-cycle".
    pub name: String,
    /// Mean mAP per threshold over the seeds, as fractions.
    #[serde(rename = "mAP")]
    pub map: Vec<f64>,
    /// The thresholds.
    pub tiou_thresholds: Vec<f64>,
    /// Mean over the seeds of the average mAP.
    #[serde(rename = "average_mAP")]
    pub average_map: f64,
    /// Sample standard deviation over the seeds of the average mAP (0 with one seed).
    #[serde(rename = "average_mAP_std")]
    pub average_map_std: f64,
    /// Each seed's average mAP, in seed order.
    pub seeds: Vec<f64>,
    /// Mean peak memory growth of one end-to-end training step (full fidelity for `frozen`).
    pub peak_memory_bytes: u64,
    /// Mean seconds per end-to-end training step (full fidelity for `frozen`).
    pub step_seconds: f64,
}

impl DemoRow {
    /// Mean and spread of one row's results over the seeds (at least one, same thresholds).
    fn over_seeds(name: &str, results: &[RowResult]) -> Result<Self> {
        let Some(first) = results.first() else {
            bail!("{name}: no seed finished");
        };
        if let Some(other) = results
            .iter()
            .find(|r| r.tiou_thresholds != first.tiou_thresholds)
        {
            bail!(
                "{name}: seeds evaluated at different thresholds ({:?} vs {:?})",
                first.tiou_thresholds,
                other.tiou_thresholds
            );
        }
        let n = results.len() as f64;
        let mean = |f: &dyn Fn(&RowResult) -> f64| results.iter().map(f).sum::<f64>() / n;
        let seeds: Vec<f64> = results.iter().map(|r| r.average_map).collect();
        let average_map = mean(&|r| r.average_map);
        let average_map_std = if results.len() > 1 {
            (seeds.iter().map(|a| (a - average_map).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Ok(Self {
            name: name.to_string(),
            map: (0..first.map.len()).map(|i| mean(&|r| r.map[i])).collect(),
            tiou_thresholds: first.tiou_thresholds.clone(),
            average_map,
            average_map_std,
            seeds,
            peak_memory_bytes: mean(&|r| r.peak_memory_bytes as f64).round() as u64,
            step_seconds: mean(&|r| r.step_seconds),
        })
    }
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

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let device = crate::device::device()?;
    let out = &args.out;
    if args.fresh && out.exists() {
        start_afresh(out)?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    // One demo at a time in a folder, and only the demo that made it continues it: another size
    // or dataset seed would otherwise reuse the data and finished rows of the first.
    let _lock = lofi_engine::FolderLock::exclusive(out, "the demo")?;
    if lofi_engine::Fingerprint::read(out)?.is_none()
        && (out.join("data").exists() || out.join("demo.json").exists())
    {
        anyhow::bail!(
            "{} holds a demo without a fingerprint.json (made by an old lofi), whose data and \
             finished rows cannot be told from this one's, nor from files of your own: move it \
             away or choose another --out",
            out.display()
        );
    }
    let fingerprint = lofi_engine::Fingerprint::new()
        .with("size", &format!("{:?}", args.size))?
        .with("dataset_seed", &args.seed)?;
    if lofi_engine::Fingerprint::read(out)?.is_some() {
        fingerprint
            .claim(out, "demo", false)
            .map_err(|e| anyhow::anyhow!("{e} (for the demo: --fresh)"))?;
    }
    let owner = prepare(out, &demo_plan(), Start::Continue)?;
    if !out
        .join(lofi_engine::fingerprint::FINGERPRINT_FILE)
        .is_file()
    {
        owner.write_json(lofi_engine::fingerprint::FINGERPRINT_FILE, &fingerprint)?;
    }
    let rows = args.rows.clone().unwrap_or_else(|| RowName::ALL.to_vec());
    let seeds: Vec<u64> = (0..args.seeds).map(|k| args.seed + k).collect();

    let data = out.join("data");
    let ground_truth = data.join("ground_truth.json");
    let synth = Plan::new(args.size, args.seed, args.seed).synth;
    if !ground_truth.is_file() {
        let spin = spinner(format!("writing {} synthetic videos", synth.videos));
        write_demo_data(&owner, &synth)?;
        spin.finish_and_clear();
    }
    tracing::info!(
        "data: {} synthetic videos in {}",
        synth.videos,
        data.display()
    );

    let mut per_row: Vec<Vec<RowResult>> = vec![Vec::new(); rows.len()];
    for &seed in &seeds {
        let plan = Plan::new(args.size, args.seed, seed);
        let dir = owner.mkdir(&format!("seed-{seed}"))?;
        let encoder = pretrained_encoder(&plan, &data, &dir.join("pretrain"), &device)?;
        for (row, results) in rows.iter().zip(per_row.iter_mut()) {
            owner.mkdir(&format!("seed-{seed}/rows/{}", row.name()))?;
            let spin = spinner(format!("seed {seed}: {}", row.title()));
            let result = run_row(
                &RowSettings {
                    train: plan.train.clone(),
                    schedule: row.schedule(),
                    head: plan.head.clone(),
                    detect: DetectConfig::default(),
                },
                &RowInputs {
                    ground_truth: ground_truth.clone(),
                    videos: data.join("videos"),
                    encoder: encoder.clone(),
                    out: dir.join("rows").join(row.name()),
                    device: device.clone(),
                    progress: lofi_engine::Reporter::default(),
                },
            )
            .with_context(|| format!("demo row {} (seed {seed})", row.name()))?;
            spin.finish_and_clear();
            tracing::info!(
                "seed {seed}, {}: average mAP {:.2}",
                row.title(),
                result.average_map * 100.0
            );
            results.push(result);
        }
    }
    let results = rows
        .iter()
        .zip(&per_row)
        .map(|(row, r)| DemoRow::over_seeds(row.name(), r))
        .collect::<Result<Vec<_>>>()?;

    let file = DemoFile {
        rows: results.clone(),
        ground_truth: "data/ground_truth.json".to_string(),
        subset: "validation".to_string(),
    };
    owner.write_json(DEMO_FILE, &file)?;
    if let Some(path) = &args.json {
        lofi_engine::owned::write_single_json(path, &DemoTable { rows: &results }, true)?;
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

/// The pre-trained encoder of one seed (trained on the dataset's clips once, then reused).
fn pretrained_encoder(plan: &Plan, data: &Path, dir: &Path, device: &Device) -> Result<PathBuf> {
    let encoder = lofi_train::pretrain::encoder_path(dir);
    if dir.join("summary.json").is_file() && encoder.is_file() {
        return Ok(encoder);
    }
    let spin = spinner(format!(
        "seed {}: pre-training the encoder on trimmed clips",
        plan.pretrain.seed
    ));
    let outcome = pretrain(
        &plan.pretrain,
        &PretrainPaths {
            data: PretrainData::Clips(data.to_path_buf()),
            out: dir.to_path_buf(),
        },
        &RunOptions {
            device: device.clone(),
            run: lofi_train::RunControl {
                resume: true,
                ..Default::default()
            },
            ..RunOptions::default()
        },
    )?;
    spin.finish_and_clear();
    let accuracy = outcome.val_accuracy.last().copied().flatten();
    tracing::info!(
        "seed {}: pre-trained encoder: clip accuracy {} on validation clips",
        plan.pretrain.seed,
        accuracy.map_or("n/a".to_string(), |a| format!("{:.0}%", a * 100.0))
    );
    Ok(outcome.encoder)
}

/// The file of the demo's results, in its folder.
const DEMO_FILE: &str = "demo.json";

/// What the demo writes in its folder itself (its stages keep their own records below it).
fn demo_plan() -> OutputPlan {
    OutputPlan::new(FolderKind::Demo, &[DEMO_FILE, "report.html"], &["data"])
}

/// Writes the synthetic dataset into `data/` through a hidden working folder
/// ([`Owner::publish`]): a kill leaves either no `data/` or a complete one.
fn write_demo_data(owner: &Owner, synth: &SynthConfig) -> Result<()> {
    const PARTIAL: &str = ".data.partial";
    owner.remove_partial(PARTIAL)?;
    let partial = owner.mkdir(PARTIAL)?;
    write_dataset(&partial, synth, 2, &|_| {})
        .with_context(|| format!("{}: cannot write the synthetic dataset", partial.display()))?;
    owner.publish(PARTIAL, "data")?;
    Ok(())
}

/// `--fresh`: removes what lofi wrote in a demo folder, and only in a demo folder.
fn start_afresh(out: &Path) -> Result<()> {
    let _lock = lofi_engine::FolderLock::exclusive(out, "the demo")?;
    let record = Record::read(out)?;
    let legacy = !record.exists()
        && lofi_engine::Fingerprint::read(out)?
            .is_some_and(|f| f.parts.contains_key("size") && f.parts.contains_key("dataset_seed"));
    if record.kind() != Some(FolderKind::Demo) && !legacy {
        let contents = lofi_engine::owned::files_below(out)?;
        if contents.is_empty() {
            // Nothing to start over from.
            return Ok(());
        }
        anyhow::bail!(
            "--fresh deletes only what lofi demo wrote, and {} is not a demo folder (it holds \
             {}): nothing was deleted; choose another --out",
            out.display(),
            lofi_engine::owned::summarize(&contents)
        );
    }
    if legacy {
        // A demo folder of a lofi before ownership records: its own names are taken as lofi's.
        let owner = Owner::open(out)?;
        owner.set_kind(FolderKind::Demo, false)?;
        owner.adopt_all(&[
            lofi_engine::fingerprint::FINGERPRINT_FILE,
            DEMO_FILE,
            "report.html",
            "data",
            "seed-*",
        ])?;
    }
    let left = lofi_engine::owned::remove_tree(out)?;
    if !left.is_empty() {
        tracing::warn!(
            "--fresh: {} keeps {} file(s) lofi did not write: {}",
            out.display(),
            left.len(),
            lofi_engine::owned::summarize(&left)
        );
    }
    Ok(())
}

fn count_validation(ground_truth: &Path) -> Result<usize> {
    let truth = lofi_eval::GroundTruth::from_path(ground_truth, &Default::default())?;
    Ok(truth.annotated_videos().count())
}

fn at(row: &DemoRow, threshold: f64) -> Option<f64> {
    row.tiou_thresholds
        .iter()
        .position(|t| (t - threshold).abs() < 1e-9)
        .map(|i| row.map[i] * 100.0)
}

fn title(name: &str) -> &str {
    RowName::ALL
        .iter()
        .find(|r| r.name() == name)
        .map_or(name, |r| r.title())
}

/// How a LoFi row compares with the frozen one: a verdict only where the difference of the means
/// exceeds the spread (the sum of the two rows' standard deviations).
fn verdict(row: &DemoRow, frozen: &DemoRow) -> &'static str {
    let difference = row.average_map - frozen.average_map;
    let spread = row.average_map_std + frozen.average_map_std;
    if row.seeds.len() < 2 || frozen.seeds.len() < 2 {
        "one seed: no spread, no verdict"
    } else if difference > spread {
        "beats frozen"
    } else if difference < -spread {
        "below frozen"
    } else {
        "within the spread"
    }
}

/// The paper's Table 1/2 in shape, with an honest verdict.
fn table(rows: &[DemoRow], size: DemoSize, videos: usize, seconds: f64) -> String {
    let seeds = rows.first().map_or(0, |r| r.seeds.len());
    let mut text = format!(
        "\nLoFi demo: synthetic benchmark ({size:?} size), mAP (%) on {videos} validation \
         videos, mean over {seeds} training seed(s)\n\n"
    );
    let frozen = rows.iter().find(|r| r.name == "frozen");
    text.push_str(&format!(
        "{:<14} {:>7} {:>7} {:>7} {:>15} {:>10} {:>12}  {}\n",
        "encoder",
        "@0.5",
        "@0.75",
        "@0.95",
        "average +- std",
        "step (s)",
        "process MiB",
        "vs frozen"
    ));
    for row in rows {
        let cell = |t| at(row, t).map_or("-".to_string(), |m| format!("{m:.2}"));
        let against = match frozen {
            Some(f) if row.name != "frozen" => verdict(row, f),
            _ => "",
        };
        let line = format!(
            "{:<14} {:>7} {:>7} {:>7} {:>15} {:>10.3} {:>12.0}  {}",
            title(&row.name),
            cell(0.5),
            cell(0.75),
            cell(0.95),
            format!(
                "{:.2} +- {:.2}",
                row.average_map * 100.0,
                row.average_map_std * 100.0
            ),
            row.step_seconds,
            row.peak_memory_bytes as f64 / (1024.0 * 1024.0),
            against,
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.push_str(
        "\nStep time and memory: one end-to-end training step (encoder + head) under the row's \
         schedule; for the frozen\nrow, a step at full fidelity, the cost LoFi avoids. Memory is \
         the process's peak, which the baseline\ndominates at this size; the ratios at the \
         paper's sizes (LoFi ~0.3x of full) are in BENCHMARKS.md.\n",
    );
    if let Some(frozen) = frozen {
        let lofi: Vec<&DemoRow> = rows.iter().filter(|r| r.name != "frozen").collect();
        let count = |v: &str| lofi.iter().filter(|r| verdict(r, frozen) == v).count();
        if !lofi.is_empty() && seeds >= 2 {
            text.push_str(&format!(
                "Verdict (a difference counts only where it exceeds the sum of the two standard \
                 deviations): {} of {} LoFi rows beat the frozen encoder, {} are below it, {} \
                 are within the spread.\n",
                count("beats frozen"),
                lofi.len(),
                count("below frozen"),
                count("within the spread"),
            ));
        } else if !lofi.is_empty() {
            text.push_str("Verdict: none with one seed (run --seeds 3 or more).\n");
        }
    }
    text.push_str(&format!("Finished in {seconds:.0} s.\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(average: f64) -> RowResult {
        RowResult {
            map: vec![average * 2.0, 0.0],
            tiou_thresholds: vec![0.5, 0.95],
            average_map: average,
            peak_memory_bytes: 100,
            step_seconds: 1.0,
        }
    }

    #[test]
    fn rows_over_seeds_and_verdicts_respect_the_spread() -> Result<()> {
        let frozen = DemoRow::over_seeds("frozen", &[result(0.10), result(0.12), result(0.14)])?;
        assert!((frozen.average_map - 0.12).abs() < 1e-12);
        assert!((frozen.average_map_std - 0.02).abs() < 1e-12);
        assert_eq!(frozen.seeds, [0.10, 0.12, 0.14]);
        assert!((frozen.map[0] - 0.24).abs() < 1e-12);
        let clear = DemoRow::over_seeds("s", &[result(0.20), result(0.21), result(0.22)])?;
        assert_eq!(verdict(&clear, &frozen), "beats frozen");
        let close = DemoRow::over_seeds("t", &[result(0.11), result(0.15), result(0.16)])?;
        assert_eq!(verdict(&close, &frozen), "within the spread");
        let worse = DemoRow::over_seeds("st", &[result(0.01), result(0.02), result(0.03)])?;
        assert_eq!(verdict(&worse, &frozen), "below frozen");
        let single = DemoRow::over_seeds("s", &[result(0.5)])?;
        assert_eq!(single.average_map_std, 0.0);
        assert_eq!(verdict(&single, &frozen), "one seed: no spread, no verdict");
        let text = table(&[frozen, clear, close, worse], DemoSize::Tiny, 12, 1.0);
        assert!(text.contains("12.00 +- 2.00"), "{text}");
        assert!(
            text.contains(
                "1 of 3 LoFi rows beat the frozen encoder, 1 are below it, 1 are within the spread"
            ),
            "{text}"
        );
        assert!(DemoRow::over_seeds("s", &[]).is_err());
        Ok(())
    }
}
