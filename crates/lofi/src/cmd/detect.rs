//! `lofi detect`: a trained head (of the kind its card says) -> proposals (its boundary
//! rule, Soft-NMS, top-k) -> labelled
//! detections fused with video-level class scores (an external file or the run's own classifier)
//! -> an ActivityNet results file that `lofi eval detection` reads.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lofi_engine::Preset;
use lofi_head::{detect, DetectConfig, DetectInputs, HeadMeta};

/// Arguments of `lofi detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// The head: a `lofi train-head` run folder, or a `head.bpk` with its model card (also the
    /// end-to-end head of a `lofi train` run; pass --class-scores for it). Its card gives the
    /// head's architecture, L and the feature width.
    #[arg(long, value_name = "DIR|FILE")]
    head: PathBuf,
    /// Feature folder, or one HDF5 file with a dataset per video id (as for `train-head`).
    #[arg(long, value_name = "DIR|FILE.h5")]
    features: PathBuf,
    /// Ground truth (the video list and durations).
    #[arg(long, value_name = "GT.json")]
    ground_truth: PathBuf,
    /// Where to write the detections (ActivityNet results JSON).
    #[arg(long, value_name = "detections.json")]
    out: PathBuf,
    /// Subset to detect on [default: the head run's evaluation subset (`val_subset` of its
    /// settings: `validation` for ActivityNet, `Test` for a `--preset thumos14` run), or with
    /// --preset that preset's; `validation` for a head without them].
    #[arg(long)]
    subset: Option<String>,
    /// Leave out videos of the subset without a feature file (e.g. videos missing from the
    /// download; their ground truth still counts, as missed) instead of failing.
    #[arg(long)]
    skip_missing_features: bool,
    /// Wait for a lofi process still writing the feature folder (an extraction or one of its
    /// shards) to finish, instead of refusing to read it.
    #[arg(long)]
    wait: bool,
    /// External video-level class scores (`{"class": [...], "results": {video: [...]}}` or
    /// `{"results": {video: {label: score}}}`); default: the run's trained classifier.
    #[arg(long, value_name = "FILE")]
    class_scores: Option<PathBuf>,
    /// Write the class scores of the run's classifier here (same layout).
    #[arg(long, value_name = "FILE", conflicts_with = "class_scores")]
    class_scores_out: Option<PathBuf>,
    /// Also evaluate and write the result here (the `lofi eval detection --json` layout).
    #[arg(long, value_name = "eval.json")]
    eval_out: Option<PathBuf>,
    /// TOML post-processing settings (soft_nms_sigma, top_k, top_classes, boundary_in_score)
    /// [default: the head run's own `[detect]` settings].
    #[arg(long, value_name = "detect.toml")]
    config: Option<PathBuf>,
    /// Post-processing of this preset instead of the head run's own settings.
    #[arg(long, value_name = "NAME", long_help = super::preset_help())]
    preset: Option<Preset>,
    /// Soft-NMS sigma (BMN's alpha) [default: the head card's post-processing; 0.8 for G-TAD on
    /// ActivityNet, 0.4 for BMN].
    #[arg(long)]
    sigma: Option<f64>,
    /// Proposals kept per video [default: 100].
    #[arg(long)]
    top_k: Option<usize>,
    /// Classes paired with each proposal [default: 2].
    #[arg(long)]
    top_classes: Option<usize>,
}

/// Run `lofi detect`.
pub fn run(args: DetectArgs) -> Result<()> {
    // Nothing is read from a feature folder that a writer is still writing.
    let _reading = lofi_engine::FolderLock::read(&args.features, "detect", args.wait)?;
    // Bad flags are refused before anything is read.
    overridden(DetectConfig::default(), &args).validate()?;
    // Everything about the head comes from its card, typed: architecture, L, windows,
    // post-processing and subsets.
    let meta = HeadMeta::read(&args.head)
        .with_context(|| format!("cannot read the head in {}", args.head.display()))?;
    let subset = detection_subset(args.subset.as_deref(), args.preset, &meta);
    tracing::info!("detecting on subset {subset:?}");
    if let Some(trained) = meta
        .subsets
        .as_ref()
        .map(|s| s.train.as_str())
        .filter(|t| t.eq_ignore_ascii_case(&subset))
    {
        tracing::warn!(
            "detecting on subset {subset:?}, the subset the head was trained on ({trained:?}): \
             the numbers will not measure generalisation"
        );
    }
    let config: DetectConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("invalid settings in {}", path.display()))?
        }
        None => match args.preset {
            Some(p) => lofi_head::detect_preset(p, &meta.arch),
            None => meta.detect.clone(),
        },
    };
    let config = overridden(config, &args);
    config.validate()?;
    if let Some(path) = &args.eval_out {
        lofi_engine::owned::check_single(path)?;
    }
    let outcome = detect(
        &config,
        &DetectInputs {
            device: crate::device::device()?,
            skip_missing_features: args.skip_missing_features,
            head_dir: args.head.clone(),
            features: args.features.clone(),
            ground_truth: args.ground_truth.clone(),
            subset,
            class_scores: args.class_scores.clone(),
            out: args.out.clone(),
            class_scores_out: args.class_scores_out.clone(),
            evaluate: args.eval_out.is_some(),
        },
    )
    .context("detection failed")?;
    let count: usize = outcome
        .detections
        .results
        .0
        .iter()
        .map(|(_, d)| d.len())
        .sum();
    tracing::info!("class scores: {}", outcome.class_scores);
    tracing::info!(
        "{} detections for {} videos written to {}",
        count,
        outcome.videos,
        args.out.display()
    );
    if let (Some(path), Some(report)) = (&args.eval_out, &outcome.report) {
        lofi_engine::owned::write_single_json(path, &lofi_eval::detection_json(report), true)?;
        tracing::info!(
            "average mAP {:.4}; evaluation in {}",
            report.average_map,
            path.display()
        );
    }
    Ok(())
}

/// `config` with the flags that override it (`--sigma`, `--top-k`, `--top-classes`).
fn overridden(mut config: DetectConfig, args: &DetectArgs) -> DetectConfig {
    if let Some(v) = args.sigma {
        config.soft_nms_sigma = v;
    }
    if let Some(v) = args.top_k {
        config.top_k = v;
    }
    if let Some(v) = args.top_classes {
        config.top_classes = v;
    }
    config
}

/// The subset `lofi detect` runs on, in the order of every stage: the one asked for, else the
/// head card's evaluation subset (the run's resolved `val_subset`: `validation` for ActivityNet,
/// `Test` for THUMOS14's layout), else the preset's, else `validation` (ActivityNet's).
fn detection_subset(asked: Option<&str>, preset: Option<Preset>, head: &HeadMeta) -> String {
    if let Some(s) = asked {
        return s.to_string();
    }
    if let Some(e) = head.subsets.as_ref().and_then(|s| s.evaluation.clone()) {
        return e;
    }
    preset
        .and_then(|p| lofi_head::HeadConfig::preset(p).val_subset)
        .unwrap_or_else(|| "validation".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_comes_from_the_flag_then_the_head_card_then_the_preset() {
        let head = |evaluation: Option<&str>| HeadMeta {
            in_channels: 4,
            snippets: 8,
            temporal: lofi_head::Temporal::Rescale,
            arch: lofi_model::HeadArch::default(),
            detect: DetectConfig::default(),
            subsets: Some(lofi_model::card::RunSubsets {
                train: "Validation".into(),
                evaluation: evaluation.map(str::to_string),
                selection: None,
            }),
            classifier: None,
        };
        let thumos = head(Some("Test"));
        assert_eq!(
            detection_subset(Some("x"), Some(Preset::Thumos14), &thumos),
            "x"
        );
        let none = HeadMeta {
            subsets: None,
            ..head(None)
        };
        assert_eq!(
            detection_subset(None, Some(Preset::Thumos14), &none),
            "Test"
        );
        // The card before any preset's.
        assert_eq!(detection_subset(None, Some(Preset::Paper), &thumos), "Test");
        assert_eq!(detection_subset(None, Some(Preset::Tiny), &thumos), "Test");
        assert_eq!(detection_subset(None, None, &thumos), "Test");
        assert_eq!(
            detection_subset(None, Some(Preset::Thumos14), &head(None)),
            "Test"
        );
        assert_eq!(detection_subset(None, None, &head(None)), "validation");
        assert_eq!(detection_subset(None, None, &none), "validation");
    }
}
