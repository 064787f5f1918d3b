//! `lofi probe`: check a video folder against an annotation file before a long run: per video
//! duration, frame rate, frames, codec, keyframe interval, and which videos are missing,
//! unreadable, shorter than annotated or not annotated.

use crate::output::print_stdout;
use anyhow::{bail, Context, Result};
use clap::Args;
use lofi_video::ground_truth::GroundTruth;
use lofi_video::probe::{probe_dir, ProbeReport, ProbeStatus};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Arguments of `lofi probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Folder holding the videos (`<id>.mp4`, `v_<id>.webm`, ...).
    #[arg(value_name = "VIDEO_DIR")]
    videos: PathBuf,
    /// Annotation file in the ActivityNet layout; without it every video file is listed.
    #[arg(long, value_name = "GT.json")]
    ground_truth: Option<PathBuf>,
    /// Allowed shortfall against the annotated duration, seconds.
    #[arg(long, default_value_t = 1.0)]
    tolerance: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Probing threads [default: the number of CPU cores].
    #[arg(long)]
    workers: Option<usize>,
}

fn status_text(status: &ProbeStatus) -> String {
    match status {
        ProbeStatus::Ok => "ok".into(),
        ProbeStatus::Missing => "MISSING".into(),
        ProbeStatus::Unreadable { reason } => format!("UNREADABLE: {reason}"),
        ProbeStatus::ShorterThanAnnotated { annotated } => {
            format!("SHORT: annotated {annotated:.2} s")
        }
        ProbeStatus::NotAnnotated => "not annotated".into(),
    }
}

fn table(report: &ProbeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:>7} {:>7} {:<8} {:>9} {:>9}  status",
        "video", "duration", "fps", "frames", "codec", "size", "keyint s"
    );
    for row in &report.videos {
        match &row.info {
            Some(i) => {
                let _ = writeln!(
                    out,
                    "{:<24} {:>9.2} {:>7.2} {:>7} {:<8} {:>9} {:>9.2}  {}",
                    row.id,
                    i.duration,
                    i.fps,
                    i.frames,
                    i.codec,
                    format!("{}x{}", i.width, i.height),
                    i.keyframe_interval,
                    status_text(&row.status)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{:<24} {:>9} {:>7} {:>7} {:<8} {:>9} {:>9}  {}",
                    row.id,
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    status_text(&row.status)
                );
            }
        }
    }
    let count = |f: fn(&ProbeStatus) -> bool| report.count(f);
    let _ = writeln!(
        out,
        "\n{} videos: {} ok, {} missing, {} unreadable, {} shorter than annotated, {} not annotated",
        report.videos.len(),
        count(|s| matches!(s, ProbeStatus::Ok)),
        count(|s| matches!(s, ProbeStatus::Missing)),
        count(|s| matches!(s, ProbeStatus::Unreadable { .. })),
        count(|s| matches!(s, ProbeStatus::ShorterThanAnnotated { .. })),
        count(|s| matches!(s, ProbeStatus::NotAnnotated)),
    );
    out
}

/// Run `lofi probe`.
pub fn run(args: ProbeArgs) -> Result<()> {
    let gt = args
        .ground_truth
        .as_deref()
        .map(GroundTruth::read)
        .transpose()
        .context("cannot read the ground truth")?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let report = probe_dir(&args.videos, gt.as_ref(), args.tolerance, workers)
        .with_context(|| format!("cannot probe {}", args.videos.display()))?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).context("cannot serialize the report")?;
        print_stdout(&(text + "\n"))?;
    } else {
        print_stdout(&table(&report))?;
    }
    // Missing, unreadable and short videos would fail a later stage: say so in the exit status,
    // so a script checking the data before a long run can stop.
    let problems = report.count(|s| {
        matches!(
            s,
            ProbeStatus::Missing
                | ProbeStatus::Unreadable { .. }
                | ProbeStatus::ShorterThanAnnotated { .. }
        )
    });
    if problems > 0 {
        bail!(
            "{problems} of {} videos are missing, unreadable or shorter than annotated (listed \
             above)",
            report.videos.len()
        );
    }
    Ok(())
}
