//! `lofi extract`: frozen encoder -> one feature file per video (sharded, resumable), and
//! `lofi extract --verify FEATURES_DIR`, the merge/check step after sharded runs.
//!
//! Settings come from an optional TOML file (`--config`, the `lofi_head::ExtractConfig` layout)
//! with command-line flags on top; the settings used are written to `FEATURES_DIR/config.toml`
//! (the encoder checkpoint as an absolute path, so that file serves as `--config` from anywhere).
//! The exit status is non-zero when any video failed (extraction) or any output is missing or
//! corrupt (`--verify`), so cluster array jobs and scripts can check it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lofi_engine::Settings;
use lofi_head::{extract, verify, EncoderSpec, ExtractConfig, ExtractInputs, Shard};
use lofi_model::{EncoderArch, EncoderKind};
use lofi_video::Sampling;

/// Arguments of `lofi extract`.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Ground truth (ActivityNet layout): the videos to extract and their durations.
    #[arg(long, value_name = "GT.json")]
    ground_truth: PathBuf,
    /// Folder of the video files (`<id>.mp4`, `.webm`, ..., with or without `v_`).
    #[arg(long, value_name = "DIR", required_unless_present = "verify")]
    videos: Option<PathBuf>,
    /// Feature folder to write (`<id>.npy` + `index.json`).
    #[arg(long, value_name = "DIR", required_unless_present = "verify")]
    out: Option<PathBuf>,
    /// Check FEATURES_DIR against the ground truth instead of extracting: list missing and
    /// corrupt files, merge shard indexes into index.json; non-zero exit if anything is wrong.
    #[arg(long, value_name = "FEATURES_DIR", conflicts_with_all = ["videos", "out", "shard"])]
    verify: Option<PathBuf>,
    /// TOML settings (snippets, frames_per_snippet, size, workers, subset, [sampling],
    /// [encoder]).
    #[arg(long, value_name = "extract.toml")]
    config: Option<PathBuf>,
    /// Encoder checkpoint (`.bpk` from lofi, or `.pth` / `.safetensors`).
    #[arg(long, value_name = "FILE")]
    encoder: Option<PathBuf>,
    /// Encoder family when no config file gives it: tsm (TSM-ResNet) or r2plus1d (R(2+1)D).
    #[arg(long, default_value_t = EncoderKind::Tsm)]
    kind: EncoderKind,
    /// Depth of the encoder (TSM: 18, 34, 50; R(2+1)D: 18, 34) when no config file gives it.
    #[arg(long, default_value_t = 18)]
    depth: usize,
    /// Width of the encoder's first stage (64 for the published networks).
    #[arg(long, default_value_t = 64)]
    base_width: usize,
    /// Classes of the checkpoint's classifier layer, if it has one (pre-trained encoders).
    #[arg(long)]
    num_classes: Option<usize>,
    /// Snippets per video, L [default: 100].
    #[arg(long)]
    snippets: Option<usize>,
    /// Frames per snippet, F [default: 1].
    #[arg(long)]
    frames: Option<usize>,
    /// Frame side in pixels, S [default: 224].
    #[arg(long)]
    size: Option<usize>,
    /// Stride sampling: one snippet every N frames of each video (at its own frame rate) instead
    /// of L snippets over the whole video; each video gets as many snippets as its length needs.
    #[arg(long, value_name = "N", conflicts_with = "stride_seconds")]
    stride_frames: Option<usize>,
    /// Stride sampling: one snippet every S seconds.
    #[arg(long, value_name = "S")]
    stride_seconds: Option<f64>,
    /// Only videos of this subset (default: all of the ground truth).
    #[arg(long)]
    subset: Option<String>,
    /// Decoding threads.
    #[arg(long)]
    workers: Option<usize>,
    /// Take only shard K of N (K from 0): videos whose position in the sorted id list is K mod N.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
}

/// Run `lofi extract`.
pub fn run(args: ExtractArgs) -> Result<()> {
    if let Some(dir) = &args.verify {
        return run_verify(dir, &args);
    }
    let mut config = match &args.config {
        Some(path) => ExtractConfig::load(path)?,
        None => {
            let model = EncoderArch::tiny(args.kind, args.depth, args.base_width);
            model.validate()?;
            ExtractConfig::new(EncoderSpec {
                model,
                num_classes: args.num_classes,
                checkpoint: None,
                seed: 0,
            })
        }
    };
    if let Some(p) = &args.encoder {
        config.encoder.checkpoint = Some(p.clone());
    }
    if let Some(v) = args.snippets {
        config.snippets = v;
    }
    if let Some(v) = args.frames {
        config.frames_per_snippet = v;
    }
    if let Some(v) = args.size {
        config.size = v;
    }
    if let Some(v) = args.workers {
        config.workers = v;
    }
    if args.subset.is_some() {
        config.subset = args.subset.clone();
    }
    if args.stride_frames.is_some() || args.stride_seconds.is_some() {
        config.sampling = Sampling::Stride {
            stride_frames: args.stride_frames,
            stride_seconds: args.stride_seconds,
        };
    }
    config.validate()?;
    if config.encoder.checkpoint.is_none() {
        tracing::warn!(
            "no encoder checkpoint given: extracting with a randomly initialised encoder"
        );
    }
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    let (Some(videos), Some(out)) = (args.videos.clone(), args.out.clone()) else {
        bail!("--videos and --out are required to extract");
    };
    let inputs = ExtractInputs {
        device: crate::device::device()?,
        ground_truth: args.ground_truth.clone(),
        videos,
        out,
        shard,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} extracting {pos}/{len} videos [{elapsed} < {eta}] {wide_bar}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let outcome = extract(&config, &inputs, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("extraction into {} failed", inputs.out.display()))?;
    bar.finish_and_clear();
    tracing::info!(
        "{} videos: {} extracted ({} redone), {} already done, {} failed; {} frames in {:.1} s ({:.1} frames/s); index {}",
        outcome.videos,
        outcome.extracted,
        outcome.redone,
        outcome.skipped,
        outcome.failed.len(),
        outcome.frames,
        outcome.seconds,
        outcome.frames as f64 / outcome.seconds.max(1e-9),
        outcome.index_path.display()
    );
    if !outcome.failed.is_empty() {
        for f in &outcome.failed {
            eprintln!("failed: {}: {}", f.id, f.reason);
        }
        bail!(
            "{} of {} videos failed (listed above and under \"failed\" in {})",
            outcome.failed.len(),
            outcome.videos,
            outcome.index_path.display()
        );
    }
    Ok(())
}

fn run_verify(dir: &std::path::Path, args: &ExtractArgs) -> Result<()> {
    let report = verify(dir, &args.ground_truth, args.subset.as_deref())
        .with_context(|| format!("cannot verify {}", dir.display()))?;
    for id in &report.missing {
        eprintln!("missing: {id}");
    }
    for c in &report.corrupt {
        eprintln!("corrupt: {}: {}", c.id, c.reason);
    }
    tracing::info!(
        "{} valid, {} missing, {} corrupt; merged index {}",
        report.ok,
        report.missing.len(),
        report.corrupt.len(),
        report.index_path.display()
    );
    if !report.is_complete() {
        bail!(
            "{} missing and {} corrupt feature files in {}",
            report.missing.len(),
            report.corrupt.len(),
            dir.display()
        );
    }
    Ok(())
}
