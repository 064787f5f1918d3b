//! `lofi pretrain`: clip-classification pre-training of the TSM encoder (the "ACP" starting
//! point), a thin layer over `lofi_train::pretrain`.

use anyhow::{Context, Result};
use clap::Args;
use lofi_train::config::read_config;
use lofi_train::{pretrain, PretrainConfig, PretrainPaths, RunOptions};
use std::path::PathBuf;

use lofi_engine::Preset;

/// Arguments of `lofi pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// Folder with clips.json and the clips it lists (as `lofi synth` writes).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Run folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// TOML config (unknown keys are errors).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Starting settings when no config file is given.
    #[arg(long, value_name = "NAME", default_value_t = Preset::Paper, long_help = super::preset_help())]
    preset: Preset,
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
        (None, false) => PretrainConfig::preset(args.preset),
    };
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    let paths = PretrainPaths {
        data: args.data.clone(),
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
