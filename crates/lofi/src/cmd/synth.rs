//! `lofi synth`: write the seeded synthetic untrimmed-video benchmark (videos, ActivityNet ground
//! truth, trimmed clips) so that every other command can be tried without downloading a dataset.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lofi_engine::owned::prepare;
use lofi_engine::{FolderKind, OutputPlan, Start};
use lofi_video::synth::{write_dataset, SynthConfig, SynthPreset};
use std::path::PathBuf;
use std::time::Instant;

/// Dataset size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// 16 videos of 8-16 s at 64 px: for tests, made in seconds.
    Tiny,
    /// 240 videos of 20-60 s at 128 px: the benchmark.
    Benchmark,
    /// 20 videos of 2-4 minutes at 64 px, each with dozens of 1.5-4 s actions (THUMOS14-like;
    /// for stride features and sliding windows).
    Long,
}

/// Arguments of `lofi synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (created; a rerun replaces the dataset lofi wrote there, never a file of
    /// yours).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Dataset size.
    #[arg(long, value_enum, default_value = "tiny")]
    preset: PresetArg,
    /// Seed of everything: the same seed gives the same dataset.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Encoding threads [default: the number of CPU cores].
    #[arg(long)]
    workers: Option<usize>,
}

/// Run `lofi synth`.
pub fn run(args: SynthArgs) -> Result<()> {
    let preset = match args.preset {
        PresetArg::Tiny => SynthPreset::Tiny,
        PresetArg::Benchmark => SynthPreset::Benchmark,
        PresetArg::Long => SynthPreset::Long,
    };
    let config = SynthConfig::preset(preset, args.seed);
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = ProgressBar::new(config.videos as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} encoding {pos}/{len} videos [{elapsed}] {wide_bar}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    // Written into a hidden working folder and moved into place once complete (see
    // `Owner::publish`); a rerun first removes the dataset lofi wrote there before.
    const PARTIAL: &str = ".synth.partial";
    let _lock = lofi_engine::FolderLock::exclusive(&args.out, "synth")?;
    let plan = OutputPlan::new(
        FolderKind::Dataset,
        &["ground_truth.json", "clips.json"],
        &["videos", "clips"],
    );
    let owner = prepare(&args.out, &plan, Start::Overwrite)?;
    owner.remove_partial(PARTIAL)?;
    let partial = owner.mkdir(PARTIAL)?;
    let summary = write_dataset(&partial, &config, workers, &|done| {
        bar.set_position(done as u64)
    })
    .with_context(|| {
        format!(
            "cannot write the synthetic dataset to {}",
            args.out.display()
        )
    })?;
    owner.publish(PARTIAL, "")?;
    bar.finish_and_clear();
    tracing::info!(
        "wrote {} videos ({:.0} s of video) and {} clips, {} frames, to {} in {:.1} s",
        summary.videos,
        summary.total_duration,
        summary.clips,
        summary.frames,
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
