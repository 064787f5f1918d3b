//! `lofi report RUN_DIR`: one self-contained HTML page of a run (loss curves per fidelity, mAP per
//! tIoU per model, detection timelines against the ground truth).

use anyhow::Result;
use clap::Args;
use lofi_report::{write_report, ReportOptions};
use std::path::PathBuf;

/// Arguments of `lofi report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run folder (scanned a few levels deep for metrics.jsonl, eval.json, detections.json
    /// and demo.json).
    run_dir: PathBuf,
    /// Where to write the page [default: RUN_DIR/report.html].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Ground truth for the timelines [default: from demo.json, or RUN_DIR/data/ground_truth.json].
    #[arg(long, value_name = "GT.json")]
    ground_truth: Option<PathBuf>,
    /// Subset of the ground truth to draw [default: demo.json's, else "validation"].
    #[arg(long)]
    subset: Option<String>,
    /// How many videos get a timeline.
    #[arg(long, default_value_t = 6)]
    videos: usize,
    /// How many detections per model and video the timelines show.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

/// Writes the report.
pub fn run(args: ReportArgs) -> Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join("report.html"));
    let options = ReportOptions {
        run_dir: args.run_dir,
        ground_truth: args.ground_truth,
        subset: args.subset,
        videos: args.videos,
        top_detections: args.top,
    };
    for warning in write_report(&options, &out)? {
        tracing::warn!("{warning}");
    }
    tracing::info!("wrote {}", out.display());
    Ok(())
}
