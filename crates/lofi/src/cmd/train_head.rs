//! `lofi train-head`: G-TAD from scratch on feature files (ours or a peer's `.npy` / `.csv` / `.h5`),
//! with the video-level classifier beside it; metrics, checkpoints and the final head in `--out`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lofi_engine::Preset;
use lofi_engine::Settings;
use lofi_head::{train_head, FeatureStore, HeadConfig, HeadInputs, Temporal};

/// Arguments of `lofi train-head`.
#[derive(Debug, Args)]
pub struct TrainHeadArgs {
    /// Feature folder (`<id>.npy`, `<id>.csv` or `<id>.h5` per video), or one HDF5 file with a
    /// dataset per video id (TSP / G-TAD layout).
    #[arg(long, value_name = "DIR|FILE.h5")]
    features: PathBuf,
    /// Ground truth (ActivityNet layout).
    #[arg(long, value_name = "GT.json")]
    ground_truth: PathBuf,
    /// Run folder (config.toml, metrics.jsonl, checkpoints/, head.bpk and classifier.bpk with
    /// their model cards head.json and classifier.json).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// TOML settings (the `lofi_head::HeadConfig` layout; unknown keys are errors).
    #[arg(long, value_name = "head.toml")]
    config: Option<PathBuf>,
    /// Starting settings when no config file is given (the head sizes and recipe).
    #[arg(long, value_name = "NAME", long_help = super::preset_help())]
    preset: Option<Preset>,
    /// Subset to train on, in any letter case [default: the config's, else `training`, or
    /// THUMOS14's `Validation` when the file has no `training` but `Validation` and `Test`].
    #[arg(long, value_name = "NAME")]
    train_subset: Option<String>,
    /// Subset to validate on and choose the epoch on, and the one `detect` defaults to
    /// [default: the config's, else `validation`, or THUMOS14's `Test`; a test set is never
    /// validated on: the last epoch is kept].
    #[arg(long, value_name = "NAME")]
    val_subset: Option<String>,
    /// Temporal scale L (features are resampled to it, or cut into windows of L snippets)
    /// [default: the config file's, else the
    /// snippets of the features' index.json (what extract used), else the preset's].
    #[arg(long)]
    snippets: Option<usize>,
    /// Sliding windows of L snippets, one every N snippets of the features (as they are, e.g.
    /// extracted with --stride-frames), instead of rescaling each video to L.
    #[arg(long, value_name = "N")]
    window_stride: Option<usize>,
    /// Epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Videos per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Skip videos without a feature file (with a warning) instead of failing, e.g. videos
    /// missing from the download that extraction skipped (`skip_missing` in the config).
    #[arg(long)]
    skip_missing_features: bool,
    /// Wait for a lofi process still writing the feature folder (an extraction or one of its
    /// shards) to finish, instead of refusing to read it.
    #[arg(long)]
    wait: bool,
    /// Continue the run in --out from its last complete epoch (with the run's own config.toml
    /// unless --config is given).
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
    /// Test hook: stop after this many steps (as if killed); continue with --resume.
    #[arg(long, hide = true)]
    stop_after_batches: Option<usize>,
}

/// Run `lofi train-head`.
pub fn run(args: TrainHeadArgs) -> Result<()> {
    // Nothing is read from a feature folder that a writer is still writing (nor written into:
    // refused before the reader's lock, which would make it look busy).
    lofi_engine::owned::refuse_inputs_inside(
        &args.out,
        &[("the feature folder".into(), args.features.clone())],
    )?;
    let _reading = lofi_engine::FolderLock::read(&args.features, "train-head", args.wait)?;
    let saved = args.out.join("config.toml");
    let file = match (&args.config, args.resume && saved.is_file()) {
        (Some(path), _) => Some(path),
        (None, true) => Some(&saved),
        (None, false) => None,
    };
    let mut config = match file {
        Some(path) => HeadConfig::load(path)?,
        None => {
            let mut config = HeadConfig::preset(args.preset.unwrap_or_default());
            // The fidelity the features were extracted at, as their index records it.
            if let Some(index) = FeatureStore::open(&args.features)?.index {
                if args.snippets.is_none() && index.snippets != config.snippets {
                    tracing::info!(
                        "L = {} snippets, as the features in {} were extracted",
                        index.snippets,
                        args.features.display()
                    );
                }
                config.snippets = index.snippets;
            }
            config
        }
    };
    if let Some(kind) = args.head_kind {
        config = config.with_head_kind(kind);
    }
    if let Some(v) = args.snippets {
        config.snippets = v;
    }
    if args.train_subset.is_some() {
        config.train_subset = args.train_subset.clone();
    }
    if args.val_subset.is_some() {
        config.val_subset = args.val_subset.clone();
    }
    if let Some(v) = args.window_stride {
        config.temporal = Temporal::Windows { window_stride: v };
    }
    if let Some(v) = args.epochs {
        config.epochs = v;
    }
    if let Some(v) = args.lr {
        config.lr = v;
    }
    if let Some(v) = args.batch_size {
        config.batch_size = v;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    if args.skip_missing_features {
        config.skip_missing = true;
    }
    config.validate()?;
    let outcome = train_head(
        &config,
        &HeadInputs {
            device: crate::device::device()?,
            features: args.features.clone(),
            ground_truth: args.ground_truth.clone(),
            out: args.out.clone(),
        },
        &lofi_engine::RunControl {
            resume: args.resume,
            overwrite: args.overwrite,
            stop_after_batches: args.stop_after_batches,
            progress: crate::progress::reporter(),
        },
    )
    .with_context(|| format!("head training into {} failed", args.out.display()))?;
    let val = outcome
        .val_average_map
        .map_or("no validation".to_string(), |m| {
            format!("validation average mAP {m:.4}")
        });
    tracing::info!(
        "trained on {} videos ({} validation) in {:.1} s; final loss {:.4}; {val}; head in {}",
        outcome.train_videos,
        outcome.val_videos,
        outcome.seconds,
        outcome.epoch_loss.last().copied().unwrap_or(f64::NAN),
        outcome.run_dir.display()
    );
    if let Some(e) = outcome.best_epoch {
        tracing::info!("head.bpk is epoch {e}'s head, the lowest validation loss (best.json)");
    }
    Ok(())
}
