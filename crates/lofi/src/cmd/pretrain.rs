//! `lofi pretrain`: clip-classification pre-training of the TSM encoder (the "ACP" starting
//! point), a thin layer over `lofi_train::pretrain`. Clips come from `--data` (clips.json and
//! clip files) or straight from untrimmed videos and their annotations (`--ground-truth` and
//! `--videos`).

use anyhow::{bail, Context, Result};
use clap::Args;
use lofi_train::config::read_config;
use lofi_train::{pretrain, PretrainConfig, PretrainData, PretrainPaths, RunOptions};
use std::path::PathBuf;

use lofi_engine::Preset;

/// Arguments of `lofi pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// Folder with clips.json and the clips it lists (as `lofi synth` writes).
    #[arg(long, value_name = "DIR", required_unless_present = "ground_truth", conflicts_with_all = ["ground_truth", "videos"])]
    data: Option<PathBuf>,
    /// Instead of --data: an ActivityNet-style ground truth; one clip per annotated segment is
    /// sampled straight from the untrimmed videos in --videos (no clip files are written).
    #[arg(long, value_name = "GT.json", requires = "videos")]
    ground_truth: Option<PathBuf>,
    /// Folder of the untrimmed videos of --ground-truth (`<id>.mp4`, ..., with or without `v_`).
    #[arg(long, value_name = "DIR", requires = "ground_truth")]
    videos: Option<PathBuf>,
    /// Subset to train on [default: "training"; a THUMOS14 file without one: "Validation"].
    /// Any letter case.
    #[arg(long, value_name = "NAME", requires = "ground_truth")]
    train_subset: Option<String>,
    /// Subset to report validation accuracy on [default: "validation"; THUMOS14: "Test"].
    #[arg(long, value_name = "NAME", requires = "ground_truth")]
    val_subset: Option<String>,
    /// Add a "background" class of spans outside every annotation (with --ground-truth; the
    /// config key `background`).
    #[arg(long)]
    background: bool,
    /// Go on without listed videos that have no file (listed as skipped in summary.json).
    /// Without it, such videos are an error that counts and names them, before any work.
    #[arg(long, requires = "ground_truth")]
    skip_missing_videos: bool,
    /// Run folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// TOML config (unknown keys are errors).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Starting settings when no config file is given.
    #[arg(long, value_name = "NAME", long_help = super::preset_help())]
    preset: Option<Preset>,
    /// Override the config's number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Continue the run in --out from its last complete epoch.
    #[arg(long)]
    resume: bool,
    /// Start afresh in an --out that holds another run, deleting that run's checkpoints and
    /// outputs (without it such a folder is refused).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Test hook: stop after this many batches (as if killed); continue with --resume.
    #[arg(long, hide = true)]
    stop_after_batches: Option<usize>,
}

/// Run `lofi pretrain`.
pub fn run(args: PretrainArgs) -> Result<()> {
    let saved = args.out.join("config.toml");
    let mut config: PretrainConfig = match (&args.config, args.resume && saved.is_file()) {
        (Some(path), _) => read_config(path)?,
        (None, true) => read_config(&saved)?,
        (None, false) => PretrainConfig::preset(args.preset.unwrap_or_default()),
    };
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    if args.background {
        config.background = true;
    }
    let data = match (&args.data, &args.ground_truth, &args.videos) {
        (Some(dir), _, _) => PretrainData::Clips(dir.clone()),
        (None, Some(ground_truth), Some(videos)) => PretrainData::Annotations {
            ground_truth: ground_truth.clone(),
            videos: videos.clone(),
            train_subset: args.train_subset.clone(),
            val_subset: args.val_subset.clone(),
        },
        _ => bail!("give --data DIR, or --ground-truth GT.json with --videos DIR"),
    };
    let paths = PretrainPaths {
        data,
        out: args.out.clone(),
    };
    let options = RunOptions {
        device: crate::device::device()?,
        run: lofi_train::RunControl {
            resume: args.resume,
            overwrite: args.overwrite,
            stop_after_batches: args.stop_after_batches,
            progress: crate::progress::reporter(),
        },
        skip_missing_videos: args.skip_missing_videos,
        ..RunOptions::default()
    };
    let outcome = pretrain(&config, &paths, &options)
        .with_context(|| format!("pre-training into {} failed", args.out.display()))?;
    for (e, (loss, acc)) in outcome
        .epoch_losses
        .iter()
        .zip(&outcome.val_accuracy)
        .enumerate()
    {
        println!(
            "epoch {e}: loss {loss:.4}{}",
            acc.map_or_else(String::new, |a| format!(
                ", validation accuracy {:.1}%",
                a * 100.0
            ))
        );
    }
    println!("encoder: {}", outcome.encoder.display());
    Ok(())
}
