//! `lofi eval detection` and `lofi eval proposals`: the official ActivityNet metrics from the
//! command line, as a table for people or as JSON for scripts, with optional SVG plots.

use crate::output::print_stdout;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use lofi_eval::{
    analyze_detection, evaluate_detection, evaluate_proposals, AnalysisDataset, AnalysisOptions,
    CharacteristicBuckets, DetectionAnalysis, DetectionReport, ErrorType, GroundTruth,
    GroundTruthOptions, PredictionKind, Predictions, ProposalOptions, ProposalReport, Thresholds,
    THUMOS14_AMBIGUOUS_LABEL, THUMOS14_DISPUTED_TEST_VIDEOS,
};
use lofi_plot::{LineChart, Series};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What to evaluate.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Detection mAP per tIoU threshold, average mAP and per-class AP.
    Detection(DetectionArgs),
    /// Proposal average recall against the average number of proposals (AR@AN) and AUC.
    Proposals(ProposalArgs),
}

/// Benchmarks with a standard threshold list and subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// tIoU 0.5:0.95:10, subset "validation".
    Activitynet,
    /// tIoU 0.3:0.7:5, subset "test".
    Thumos14,
}

impl Preset {
    fn thresholds(self) -> Thresholds {
        match self {
            Preset::Activitynet => Thresholds::ACTIVITYNET,
            Preset::Thumos14 => Thresholds::THUMOS14,
        }
    }

    fn subset(self) -> &'static str {
        match self {
            Preset::Activitynet => "validation",
            Preset::Thumos14 => "test",
        }
    }

    /// Whose thresholds and buckets the error analysis uses (DETAD's for the benchmark).
    fn analysis_dataset(self) -> AnalysisDataset {
        match self {
            Preset::Activitynet => AnalysisDataset::ActivityNet,
            Preset::Thumos14 => AnalysisDataset::Thumos14,
        }
    }
}

/// Options shared by both evaluations.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Ground truth in the ActivityNet layout ({"database": {video: {subset, annotations}}}).
    #[arg(long, value_name = "GT.json")]
    ground_truth: PathBuf,
    /// Subset to evaluate [default: the one the predictions were made on, as `lofi detect`
    /// records it in the file (the head card's evaluation subset), else the preset's,
    /// "validation" for ActivityNet]. Matched exactly, then case-insensitively.
    #[arg(long)]
    subset: Option<String>,
    /// tIoU thresholds as START:STOP:COUNT (numpy.linspace semantics).
    #[arg(long, value_name = "START:STOP:N", conflicts_with = "preset")]
    tiou: Option<Thresholds>,
    /// Standard thresholds and subset of a benchmark.
    #[arg(long, value_enum, default_value_t = Preset::Activitynet)]
    preset: Preset,
    /// Drop a video from the ground truth and the predictions (repeatable).
    #[arg(long, value_name = "VIDEO_ID")]
    exclude_video: Vec<String>,
    /// Drop annotations and predictions with this label (repeatable).
    #[arg(long, value_name = "LABEL")]
    exclude_label: Vec<String>,
    /// THUMOS14: drop the three disputed test videos (270, 1292, 1496).
    #[arg(long)]
    drop_disputed: bool,
    /// THUMOS14: drop "Ambiguous" annotations and predictions.
    #[arg(long)]
    drop_ambiguous: bool,
    /// Print the result as JSON (fractions, not percent) instead of a table.
    #[arg(long)]
    json: bool,
    /// Write SVG plots into this folder (with --analysis also DETAD's three figures).
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
}

impl CommonArgs {
    /// The ground truth to evaluate `predictions` against: `--subset`, else the subset the file
    /// records, else the preset's.
    fn ground_truth_options(&self, predictions: &Path) -> GroundTruthOptions {
        let mut exclude_videos = self.exclude_video.clone();
        if self.drop_disputed {
            exclude_videos.extend(THUMOS14_DISPUTED_TEST_VIDEOS.iter().map(|v| v.to_string()));
        }
        let mut exclude_labels = self.exclude_label.clone();
        if self.drop_ambiguous {
            exclude_labels.push(THUMOS14_AMBIGUOUS_LABEL.to_string());
        }
        let subset = match &self.subset {
            Some(s) => s.clone(),
            // A file that cannot be read is reported by the full read after the ground truth's.
            None => match lofi_eval::recorded_subset(predictions).ok().flatten() {
                Some(s) => {
                    tracing::info!(
                        "evaluating on subset {s:?}, the one {} was made on",
                        predictions.display()
                    );
                    s
                }
                None => self.preset.subset().to_string(),
            },
        };
        GroundTruthOptions {
            subset,
            exclude_videos,
            exclude_labels,
        }
    }

    fn thresholds(&self) -> Vec<f64> {
        self.tiou
            .unwrap_or_else(|| self.preset.thresholds())
            .values()
    }
}

/// Arguments of `lofi eval detection`.
#[derive(Debug, Args)]
pub struct DetectionArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Detections ({"results": {video: [{label, score, segment}]}}).
    #[arg(long, value_name = "PRED.json")]
    predictions: PathBuf,
    /// Also explain the errors as DETAD does: false-positive profile over the top-10G
    /// predictions, average-mAP_N gain per error type, false-negative rate and average-mAP_N by
    /// coverage, length and instances per video (DETAD's buckets and thresholds for the preset:
    /// ActivityNet 0.5:0.95:10, THUMOS14 0.5).
    #[arg(long)]
    analysis: bool,
    /// tIoU thresholds of the error analysis [default: DETAD's for the preset].
    #[arg(long, value_name = "START:STOP:N", requires = "analysis")]
    analysis_tiou: Option<Thresholds>,
}

impl DetectionArgs {
    fn analysis_options(&self) -> AnalysisOptions {
        let mut options = AnalysisOptions::new(self.common.preset.analysis_dataset());
        if let Some(tiou) = self.analysis_tiou {
            options.tiou_thresholds = tiou.values();
        }
        options
    }
}

/// Arguments of `lofi eval proposals`.
#[derive(Debug, Args)]
pub struct ProposalArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Proposals ({"results": {video: [{score, segment}]}}); labels are ignored.
    #[arg(long, value_name = "P.json")]
    proposals: PathBuf,
    /// Average number of proposals per video at the end of the AR@AN curve.
    #[arg(long, default_value_t = 100.0)]
    max_avg_proposals: f64,
}

/// Runs an evaluation subcommand.
pub fn run(command: EvalCommand) -> Result<()> {
    match command {
        EvalCommand::Detection(args) => detection(args),
        EvalCommand::Proposals(args) => proposals(args),
    }
}

fn detection(args: DetectionArgs) -> Result<()> {
    let common = &args.common;
    let clock = std::time::Instant::now();
    let options = common.ground_truth_options(&args.predictions);
    let truth = GroundTruth::from_path(&common.ground_truth, &options)?;
    tracing::debug!(
        "read ground truth in {:.3} s",
        clock.elapsed().as_secs_f64()
    );
    let predictions =
        Predictions::from_path(&args.predictions, &truth, PredictionKind::Detections)?;
    tracing::debug!("read predictions in {:.3} s", clock.elapsed().as_secs_f64());
    if predictions.items.is_empty() {
        bail!(
            "{}: the file has no detections to evaluate",
            args.predictions.display()
        );
    }
    let report = evaluate_detection(&truth, &predictions, &common.thresholds())?;
    tracing::debug!("evaluated in {:.3} s", clock.elapsed().as_secs_f64());
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    let analysis = if args.analysis {
        let analysis = analyze_detection(&truth, &predictions, &args.analysis_options())?;
        tracing::debug!("analysed in {:.3} s", clock.elapsed().as_secs_f64());
        for note in &analysis.notes {
            tracing::info!("{note}");
        }
        Some(analysis)
    } else {
        None
    };
    if let Some(dir) = &common.plot {
        write_plot(
            dir,
            "precision_recall.svg",
            &precision_recall_chart(&report).to_svg(),
        )?;
        if let Some(analysis) = &analysis {
            for (name, svg) in lofi_report::analysis_figures(analysis) {
                write_plot(dir, name, &svg)?;
            }
        }
    }
    if common.json {
        let json = DetectionOutput {
            detection: lofi_eval::detection_json(&report),
            analysis: analysis.as_ref().map(DetectionAnalysis::to_json),
        };
        print_stdout(&(serde_json::to_string_pretty(&json)? + "\n"))
    } else {
        let mut table = detection_table(&report, &truth, predictions.items.len());
        if let Some(analysis) = &analysis {
            table.push('\n');
            table.push_str(&analysis_table(analysis));
        }
        print_stdout(&table)
    }
}

/// `lofi eval detection --json`: the detection keys, and `analysis` with `--analysis`.
#[derive(Serialize)]
struct DetectionOutput<'a> {
    #[serde(flatten)]
    detection: lofi_eval::DetectionJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    analysis: Option<lofi_eval::AnalysisJson>,
}

/// The error analysis as tables, in percent.
fn analysis_table(analysis: &DetectionAnalysis) -> String {
    let thresholds = &analysis.options.tiou_thresholds;
    let range = match thresholds.as_slice() {
        [one] => format_threshold(*one),
        [first, .., last] => format!("{}..{}", format_threshold(*first), format_threshold(*last)),
        [] => String::new(),
    };
    let mut out = format!(
        "Error analysis (DETAD): tIoU {range}, {} instances, {:.1} per class (the N of \
         normalized AP_N)\n",
        analysis.instances, analysis.average_instances_per_class
    );
    out.push_str(&format!(
        "average-mAP_N {:.2} over the top-{}G predictions of each class ({} predictions), {:.2} \
         over all\n",
        analysis.average_map_n * 100.0,
        analysis.options.limit_factor,
        analysis.predictions,
        analysis.sensitivity_average_map_n * 100.0
    ));
    for note in &analysis.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out.push_str(
        "\nFalse-positive profile (% of each slice of G predictions per class, averaged over tIoU):\n",
    );
    let names: Vec<&str> = ErrorType::ALL.iter().map(|e| e.name()).collect();
    let widths: Vec<usize> = names.iter().map(|n| n.len().max(6)).collect();
    out.push_str(&format!("  {:<5} {:>7}", "top", "preds"));
    for (name, width) in names.iter().zip(&widths) {
        out.push_str(&format!("  {name:>width$}"));
    }
    out.push('\n');
    let mut row = |label: String, predictions: usize, fractions: &[f64; 6]| {
        out.push_str(&format!("  {label:<5} {predictions:>7}"));
        for (value, width) in fractions.iter().zip(&widths) {
            if value.is_finite() {
                out.push_str(&format!("  {:>width$.1}", value * 100.0));
            } else {
                out.push_str(&format!("  {:>width$}", "-"));
            }
        }
        out.push('\n');
    };
    for (g, slice) in analysis.profile.iter().enumerate() {
        row(format!("{}G", g + 1), slice.predictions, &slice.fractions);
    }
    row("all".into(), analysis.predictions, &analysis.breakdown);
    out.push_str(
        "\nAverage-mAP_N gain (points) if the predictions of one error type were removed:\n",
    );
    for (error, gain) in ErrorType::ALL[1..].iter().zip(&analysis.average_map_n_gain) {
        out.push_str(&format!("  {:<17} {:+.2}\n", error.name(), gain * 100.0));
    }
    let buckets = |out: &mut String, title: &str, groups: &[CharacteristicBuckets]| {
        out.push_str(title);
        for group in groups {
            let mut line = format!("  {:<12}", group.characteristic.name());
            for bucket in &group.buckets {
                let value = bucket
                    .value
                    .map_or("-".to_string(), |v| format!("{:.1}", v * 100.0));
                let cell = format!("{:>2} {:>5} ({})", bucket.label, value, bucket.instances);
                line.push_str(&format!("  {cell:<16}"));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    };
    buckets(
        &mut out,
        "\nFalse-negative rate (% of instances missed, averaged over tIoU; instances in brackets):\n",
        &analysis.false_negative,
    );
    buckets(
        &mut out,
        "\nSensitivity: average-mAP_N (%) per bucket (instances in brackets):\n",
        &analysis.sensitivity,
    );
    out
}

fn proposals(args: ProposalArgs) -> Result<()> {
    let common = &args.common;
    let options = common.ground_truth_options(&args.proposals);
    let truth = GroundTruth::from_path(&common.ground_truth, &options)?;
    let proposals = Predictions::from_path(&args.proposals, &truth, PredictionKind::Proposals)?;
    let options = ProposalOptions {
        max_avg_proposals: args.max_avg_proposals,
        tiou_thresholds: common.thresholds(),
    };
    let report = evaluate_proposals(&truth, &proposals, &options)?;
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(dir) = &common.plot {
        write_plot(
            dir,
            "recall_vs_proposals.svg",
            &recall_chart(&report).to_svg(),
        )?;
    }
    if common.json {
        print_stdout(&(serde_json::to_string_pretty(&proposal_json(&report))? + "\n"))
    } else {
        print_stdout(&proposal_table(&report, &truth))
    }
}

/// The `--json` output of `lofi eval proposals`; AUC in percent as the official tool prints it.
#[derive(Serialize)]
struct ProposalJson<'a> {
    #[serde(rename = "AR@1")]
    ar1: f64,
    #[serde(rename = "AR@5")]
    ar5: f64,
    #[serde(rename = "AR@10")]
    ar10: f64,
    #[serde(rename = "AR@100")]
    ar100: f64,
    #[serde(rename = "AUC")]
    auc: f64,
    average_recall: &'a [f64],
    avg_proposals: &'a [f64],
}

fn proposal_json(report: &ProposalReport) -> ProposalJson<'_> {
    let ar = |an| report.ar(an).unwrap_or(f64::NAN);
    ProposalJson {
        ar1: ar(1),
        ar5: ar(5),
        ar10: ar(10),
        ar100: ar(100),
        auc: report.auc,
        average_recall: &report.average_recall,
        avg_proposals: &report.avg_proposals,
    }
}

fn detection_table(report: &DetectionReport, truth: &GroundTruth, predictions: usize) -> String {
    let mut out = format!(
        "Detection on subset {:?}: {} videos, {} classes, {} ground-truth segments, {} predictions\n{}\n\n",
        truth.subset,
        truth.annotated_videos().count(),
        truth.classes.len(),
        truth.annotations.len(),
        predictions,
        report.protocol.line()
    );
    let header: Vec<String> = report
        .tiou_thresholds
        .iter()
        .map(|t| format!("{:>6}", format_threshold(*t)))
        .collect();
    out.push_str(&format!("tIoU  {}  {:>7}\n", header.join(""), "average"));
    let values: Vec<String> = report
        .map
        .iter()
        .map(|m| format!("{:>6.2}", m * 100.0))
        .collect();
    out.push_str(&format!(
        "mAP   {}  {:>7.2}\n",
        values.join(""),
        report.average_map * 100.0
    ));
    let worst = report.worst_classes(10);
    out.push_str(&format!(
        "\n{} worst classes by AP averaged over the thresholds:\n",
        worst.len()
    ));
    let width = worst
        .iter()
        .map(|c| c.label.chars().count())
        .max()
        .unwrap_or(0);
    for class in worst {
        out.push_str(&format!(
            "  {:<width$}  {:>6.2}  ({} ground truth, {} predictions)\n",
            class.label,
            class.average() * 100.0,
            class.ground_truth,
            class.predictions
        ));
    }
    out
}

fn proposal_table(report: &ProposalReport, truth: &GroundTruth) -> String {
    let mut out = format!(
        "Proposals on subset {:?}: {} videos, {} ground-truth segments, tIoU {}..{}\n\n",
        truth.subset,
        truth.annotated_videos().count(),
        truth.annotations.len(),
        format_threshold(report.tiou_thresholds[0]),
        format_threshold(report.tiou_thresholds[report.tiou_thresholds.len() - 1]),
    );
    for (an, ar) in &report.ar_at {
        out.push_str(&format!("AR@{an:<4} {:>6.2}\n", ar * 100.0));
    }
    out.push_str(&format!("AUC     {:>6.2}\n", report.auc));
    out
}

fn format_threshold(t: f64) -> String {
    format!("{:.2}", (t * 1e6).round() / 1e6)
}

fn precision_recall_chart(report: &DetectionReport) -> LineChart {
    let levels = report.precision_at_recall.first().map_or(0, Vec::len);
    let mut chart = LineChart::new(
        "Precision-recall per tIoU threshold (interpolated, averaged over classes)",
        "recall",
        "precision",
    )
    .with_ranges((0.0, 1.0), (0.0, 1.0));
    for (threshold, curve) in report
        .tiou_thresholds
        .iter()
        .zip(&report.precision_at_recall)
    {
        let points = curve
            .iter()
            .enumerate()
            .map(|(i, p)| (i as f64 / (levels - 1).max(1) as f64, *p))
            .collect();
        chart = chart.with_series(Series::new(
            format!("tIoU {}", format_threshold(*threshold)),
            points,
        ));
    }
    chart
}

fn recall_chart(report: &ProposalReport) -> LineChart {
    let mut chart = LineChart::new(
        "Recall against average number of proposals per video",
        "average number of proposals (AN)",
        "recall",
    );
    let an_max = report.avg_proposals.last().copied().unwrap_or(1.0);
    chart = chart.with_ranges((0.0, an_max), (0.0, 1.0));
    let mut average = Series::new(
        "average",
        report
            .avg_proposals
            .iter()
            .copied()
            .zip(report.average_recall.iter().copied())
            .collect(),
    );
    for (threshold, row) in report.tiou_thresholds.iter().zip(&report.recall) {
        chart = chart.with_series(Series::new(
            format!("tIoU {}", format_threshold(*threshold)),
            report
                .avg_proposals
                .iter()
                .copied()
                .zip(row.iter().copied())
                .collect(),
        ));
    }
    average.name = format!("average (AUC {:.2})", report.auc);
    chart.with_series(average)
}

fn write_plot(dir: &Path, name: &str, svg: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let path = dir.join(name);
    lofi_engine::owned::write_single(&path, svg.as_bytes())?;
    tracing::info!("wrote {}", path.display());
    Ok(())
}
