//! `lofi train`: LoFi's end-to-end stage (encoder + G-TAD under a fidelity schedule), a thin
//! layer over `lofi_train::train`: flags -> config and paths, then a summary table.

use anyhow::{Context, Result};
use clap::Args;
use lofi_engine::Preset;
use lofi_eval::feature_folder::Sampling;
use lofi_model::card::ModelCard;
use lofi_train::config::read_config;
use lofi_train::{train, RunOptions, ScheduleKind, TrainConfig, TrainPaths};
use std::path::{Path, PathBuf};

/// Arguments of `lofi train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML config (unknown keys are errors). Without it: the preset; with `--resume`: the
    /// run's own config.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Settings when no config file is given [default: the built-in defaults, the paper's].
    #[arg(long, value_name = "NAME", long_help = super::preset_help())]
    preset: Option<Preset>,
    /// Dataset folder in the `lofi synth` layout (ground_truth.json + videos/).
    #[arg(long, value_name = "DIR", required_unless_present_all = ["ground_truth", "videos"])]
    data: Option<PathBuf>,
    /// Ground-truth file (overrides DATA/ground_truth.json).
    #[arg(long, value_name = "FILE")]
    ground_truth: Option<PathBuf>,
    /// Video folder (overrides DATA/videos).
    #[arg(long, value_name = "DIR")]
    videos: Option<PathBuf>,
    /// Starting encoder: a weights file (`encoder.bpk` of `lofi pretrain`, or `.pth` /
    /// `.safetensors`) or a run folder holding `encoder.bpk`.
    #[arg(long, value_name = "FILE|DIR")]
    encoder: Option<PathBuf>,
    /// Run folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Override the config's schedule: full, s, t, st, long-cycle or short-cycle.
    #[arg(long, value_name = "KIND")]
    schedule: Option<ScheduleKind>,
    /// Override the config's number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Memory budget ("12GiB", "auto"): measure, plan micro-batches, print the plan.
    #[arg(long, value_name = "SIZE")]
    memory_budget: Option<String>,
    /// Override the config's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Subset to train on, in any letter case [default: `training`, or THUMOS14's `Validation`
    /// when the file has no `training` but `Validation` and `Test`].
    #[arg(long, value_name = "NAME")]
    train_subset: Option<String>,
    /// Subset to validate on, and the one later stages evaluate on [default: `validation`, or
    /// THUMOS14's `Test`].
    #[arg(long, value_name = "NAME")]
    val_subset: Option<String>,
    /// Continue the run in --out from its last complete epoch.
    #[arg(long)]
    resume: bool,
    /// Start afresh in an --out that holds another run, deleting that run's checkpoints and
    /// outputs (without it such a folder is refused).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// The head: gtad (G-TAD, the paper's) or bmn (BMN), with the preset's or config's sizes
    /// class and the kind's own post-processing [default: the config's `[head] kind`, else
    /// gtad].
    #[arg(long, value_name = "gtad|bmn")]
    head_kind: Option<lofi_model::HeadKind>,
    /// Test hook: stop after this many batches (as if killed); continue with --resume.
    #[arg(long, hide = true)]
    stop_after_batches: Option<usize>,
    /// Go on without listed videos that have no file (listed as skipped in summary.json).
    /// Without it, such videos are an error that counts and names them, before any work.
    #[arg(long)]
    skip_missing_videos: bool,
}

/// Run `lofi train`.
pub fn run(args: TrainArgs) -> Result<()> {
    let saved = args.out.join("config.toml");
    let encoder = args
        .encoder
        .as_deref()
        .map(|p| lofi_model::card::resolve_weights(p, "encoder.bpk"))
        .transpose()?;
    let mut config: TrainConfig = match (&args.config, args.resume && saved.is_file()) {
        (Some(path), _) => read_config(path)?,
        (None, true) => read_config(&saved)?,
        (None, false) => {
            let mut config = TrainConfig::preset(args.preset.unwrap_or_default());
            if let Some(path) = &encoder {
                apply_card(&mut config, path, args.preset)?;
            }
            config
        }
    };
    if let Some(kind) = args.schedule {
        config.schedule.kind = kind;
    }
    if let Some(kind) = args.head_kind {
        config = config.with_head_kind(kind);
    }
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    if let Some(s) = args.seed {
        config.seed = s;
    }
    if args.memory_budget.is_some() {
        config.memory_budget = args.memory_budget.clone();
    }
    if args.train_subset.is_some() {
        config.train_subset = args.train_subset.clone();
    }
    if args.val_subset.is_some() {
        config.val_subset = args.val_subset.clone();
    }
    let data = args.data.clone().unwrap_or_default();
    let paths = TrainPaths {
        ground_truth: args
            .ground_truth
            .clone()
            .unwrap_or_else(|| data.join("ground_truth.json")),
        videos: args.videos.clone().unwrap_or_else(|| data.join("videos")),
        encoder,
        out: args.out.clone(),
    };
    let mut devices = crate::device::devices()?.into_iter();
    let options = RunOptions {
        device: devices.next().unwrap_or_else(lofi_train::cpu_device),
        replica_devices: devices.collect(),
        run: lofi_train::RunControl {
            resume: args.resume,
            overwrite: args.overwrite,
            stop_after_batches: args.stop_after_batches,
            progress: crate::progress::reporter(),
        },
        skip_missing_videos: args.skip_missing_videos,
        // `lofi` serves the planner's probes itself (`main` calls `serve_if_child` first).
        probe_program: std::env::current_exe().ok(),
    };
    let outcome = train(&config, &paths, &options)
        .with_context(|| format!("training into {} failed", args.out.display()))?;
    println!(
        "{:>10} {:>6} {:>12} {:>14}",
        "fidelity", "steps", "step (s)", "peak memory"
    );
    for f in &outcome.fidelities {
        println!(
            "{:>10} {:>6} {:>12.3} {:>14}",
            f.name,
            f.steps,
            f.mean_step_s,
            f.peak_memory_bytes
                .map_or_else(|| "-".to_string(), |b| lofi_train::ByteSize(b).to_string())
        );
    }
    if let Some(last) = outcome.epochs.last() {
        println!(
            "final epoch {}: train loss {:.4}{}",
            last.epoch,
            last.mean_loss,
            last.validation
                .as_ref()
                .and_then(|v| v.loss)
                .map_or_else(String::new, |v| format!(", validation loss {v:.4}"))
        );
    }
    if !outcome.skipped.is_empty() {
        eprintln!("skipped {} video(s):", outcome.skipped.len());
        for (id, why) in &outcome.skipped {
            eprintln!("  {id}: {why}");
        }
    }
    println!("encoder: {}", outcome.encoder.display());
    Ok(())
}

/// The order of settings (flags > `--config` > the starting encoder's card > `--preset` >
/// defaults) for a run without `--config`: the encoder's architecture, the full fidelity it was
/// trained for and its sampling come from the card beside its weights, when there is one; says
/// in one line what came from where, and notes a `--preset` the card overrules.
fn apply_card(config: &mut TrainConfig, path: &Path, preset: Option<Preset>) -> Result<()> {
    let Some(card) = ModelCard::read_beside(path)? else {
        tracing::info!(
            "{} has no model card: architecture and fidelity from --preset or the defaults",
            path.display()
        );
        return Ok(());
    };
    let before = config.clone();
    let (arch, _) = card.encoder()?;
    config.encoder = arch.clone();
    if let Some(l) = card.input.snippets {
        config.full.snippets = l;
    }
    if let Some(f) = card.input.frames_per_snippet {
        config.frames_per_snippet = f;
    }
    if let Some(size) = card.input.size {
        config.full.size = size;
    }
    if let Some(sampling @ Sampling::Stride { .. }) = card.input.sampling {
        // Read only with `[temporal] mode = "windows"` (the stride its windows sit on).
        config.sampling = sampling;
    }
    tracing::info!(
        "encoder {} and full fidelity {} x {} x {} px from its card {} (`lofi {}`)",
        config.encoder,
        config.full.snippets,
        config.frames_per_snippet,
        config.full.size,
        lofi_model::card::card_path(path).display(),
        card.producer.command
    );
    let overruled = before.full != config.full
        || before.frames_per_snippet != config.frames_per_snippet
        || before.encoder != config.encoder
        || before.sampling != config.sampling;
    if let (Some(p), true) = (preset, overruled) {
        tracing::info!(
            "--preset {p} gives way to the encoder's card where they differ (the card says {}; \
             --config overrides the card)",
            card.input.describe()
        );
    }
    Ok(())
}
