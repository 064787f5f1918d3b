//! Self-contained HTML reports of lofi runs.
//!
//! A training run leaves numbers in several files: `metrics.jsonl` per stage, `eval.json` and
//! `detections.json` per evaluated model, and `demo.json` for the demo's table. People want to
//! *see* them: whether the loss went down at every fidelity, where each model gains or loses mAP,
//! and what the detections look like against the ground truth. This crate finds those files under
//! a run folder and writes one HTML page with inline SVG, no scripts and no external assets, so it
//! opens anywhere and can be attached to an issue or a paper's supplement.

mod analysis;

pub use analysis::analysis_figures;
use lofi_engine::MetricsRecord;
use lofi_eval::{
    analyze_detection, AnalysisDataset, AnalysisOptions, DetectionFile, ErrorType, GroundTruth,
    GroundTruthOptions, PredictionKind, Predictions,
};
use lofi_plot::{escape, Lane, LineChart, Series, Span, Timeline};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Errors of report building.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The run folder holds nothing a report can show.
    #[error("{0}: nothing to report: no metrics.jsonl, eval.json, detections.json or demo.json below it")]
    Empty(PathBuf),
    /// The ground truth could not be read.
    #[error(transparent)]
    Eval(#[from] lofi_eval::EvalError),
    /// The report could not be written (a file lofi did not write in the way, ...).
    #[error(transparent)]
    Write(#[from] lofi_engine::EngineError),
}

/// What to put in the report.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// The run folder to scan (recursively, a few levels deep).
    pub run_dir: PathBuf,
    /// Ground truth for the timelines; by default `demo.json`'s `ground_truth` or
    /// `RUN_DIR/data/ground_truth.json` when present.
    pub ground_truth: Option<PathBuf>,
    /// Subset of the ground truth to draw (default: `demo.json`'s, else "validation").
    pub subset: Option<String>,
    /// How many videos get a timeline.
    pub videos: usize,
    /// How many detections per model and video the timelines show (highest scores).
    pub top_detections: usize,
}

impl ReportOptions {
    /// Defaults for a run folder: 6 videos, 5 detections each.
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        ReportOptions {
            run_dir: run_dir.into(),
            ground_truth: None,
            subset: None,
            videos: 6,
            top_detections: 5,
        }
    }
}

/// A built report.
#[derive(Clone, Debug)]
pub struct Report {
    /// The page.
    pub html: String,
    /// Files that were skipped and why.
    pub warnings: Vec<String>,
}

const MAX_DEPTH: usize = 5;

/// The files of a run folder the report uses, each with its folder relative to the run.
#[derive(Default)]
struct Found {
    metrics: Vec<(String, PathBuf)>,
    evals: Vec<(String, PathBuf)>,
    detections: Vec<(String, PathBuf)>,
    demo: Option<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn scan(root: &Path, dir: &Path, depth: usize, found: &mut Found) -> Result<(), ReportError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if depth < MAX_DEPTH {
                scan(root, &path, depth + 1, found)?;
            }
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let label = path
            .parent()
            .and_then(|p| p.strip_prefix(root).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| ".".to_string());
        match name {
            "metrics.jsonl" => found.metrics.push((label, path)),
            "eval.json" => found.evals.push((label, path)),
            "detections.json" => found.detections.push((label, path)),
            "demo.json" if depth == 0 => found.demo = Some(path),
            _ => {}
        }
    }
    Ok(())
}

/// Builds the report page for a run folder.
pub fn build_report(options: &ReportOptions) -> Result<Report, ReportError> {
    let root = &options.run_dir;
    if !root.is_dir() {
        return Err(ReportError::Io {
            path: root.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
        });
    }
    let mut found = Found::default();
    scan(root, root, 0, &mut found)?;
    if found.metrics.is_empty()
        && found.evals.is_empty()
        && found.detections.is_empty()
        && found.demo.is_none()
    {
        return Err(ReportError::Empty(root.clone()));
    }
    let mut warnings = Vec::new();
    let mut body = String::new();
    let demo = found
        .demo
        .as_ref()
        .and_then(|path| read_json(path, &mut warnings));
    if let Some(demo) = &demo {
        body.push_str(&demo_table(demo));
    }
    if !found.evals.is_empty() {
        body.push_str(&map_section(&found.evals, &mut warnings));
    }
    if !found.metrics.is_empty() {
        body.push_str(&loss_section(&found.metrics, &mut warnings));
    }
    if !found.detections.is_empty() {
        let ground_truth = options.ground_truth.clone().or_else(|| {
            let from_demo = demo
                .as_ref()
                .and_then(|d| d["ground_truth"].as_str())
                .map(|p| root.join(p));
            from_demo
                .into_iter()
                .chain([root.join("data/ground_truth.json")])
                .find(|p| p.is_file())
        });
        let subset = options
            .subset
            .clone()
            .or_else(|| {
                demo.as_ref()
                    .and_then(|d| d["subset"].as_str())
                    .map(String::from)
            })
            .unwrap_or_else(|| "validation".to_string());
        match ground_truth {
            Some(path) => {
                let truth = GroundTruth::from_path(
                    &path,
                    &GroundTruthOptions {
                        subset: subset.clone(),
                        ..Default::default()
                    },
                )?;
                body.push_str(&timeline_section(
                    &truth,
                    &found.detections,
                    options,
                    &mut warnings,
                ));
                body.push_str(&analysis_section(&truth, &found.detections, &mut warnings));
            }
            None => warnings.push(
                "detections found but no ground truth: pass --ground-truth to draw timelines"
                    .to_string(),
            ),
        }
    }
    if !warnings.is_empty() {
        body.push_str("<h2>Skipped</h2><ul>");
        for warning in &warnings {
            let _ = write!(body, "<li>{}</li>", escape(warning));
        }
        body.push_str("</ul>");
    }
    let title = format!("lofi report: {}", root.display());
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}h2{{margin-top:2em}}svg{{display:block;margin:1em 0}}</style>\
         </head><body><h1>{t}</h1>\n{body}</body></html>\n",
        t = escape(&title)
    );
    Ok(Report { html, warnings })
}

/// Builds the report and writes it (temporary name, then rename). Returns the warnings.
pub fn write_report(options: &ReportOptions, out: &Path) -> Result<Vec<String>, ReportError> {
    let report = build_report(options)?;
    lofi_engine::owned::write_single(out, report.html.as_bytes())?;
    Ok(report.warnings)
}

fn read_json(path: &Path, warnings: &mut Vec<String>) -> Option<Value> {
    let parsed = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
    match parsed {
        Ok(value) => Some(value),
        Err(error) => {
            warnings.push(format!("{}: {error}", path.display()));
            None
        }
    }
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64().filter(|v| v.is_finite())
}

fn demo_table(demo: &Value) -> String {
    let Some(rows) = demo["rows"].as_array() else {
        return String::new();
    };
    let mut html = String::from(
        "<h2>Results</h2><table><tr><th>encoder training</th><th>mAP@0.5</th><th>mAP@0.75</th>\
         <th>mAP@0.95</th><th>average mAP</th><th>peak memory per step</th><th>seconds per step</th></tr>",
    );
    for row in rows {
        let at = |t: f64| -> String {
            let thresholds = row["tiou_thresholds"].as_array();
            let maps = row["mAP"].as_array();
            thresholds
                .zip(maps)
                .and_then(|(ts, ms)| {
                    ts.iter()
                        .position(|x| number(x).is_some_and(|x| (x - t).abs() < 1e-6))
                        .and_then(|i| ms.get(i).and_then(number))
                })
                .map_or("-".to_string(), |m| format!("{:.2}", m * 100.0))
        };
        let memory = number(&row["peak_memory_bytes"]).map_or("-".to_string(), |b| {
            format!("{:.0} MiB", b / (1024.0 * 1024.0))
        });
        let seconds = number(&row["step_seconds"]).map_or("-".to_string(), |s| format!("{s:.3}"));
        let average =
            number(&row["average_mAP"]).map_or("-".to_string(), |m| format!("{:.2}", m * 100.0));
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(row["name"].as_str().unwrap_or("?")),
            at(0.5),
            at(0.75),
            at(0.95),
            average,
            memory,
            seconds
        );
    }
    html.push_str("</table>");
    html
}

fn map_section(evals: &[(String, PathBuf)], warnings: &mut Vec<String>) -> String {
    let mut chart = LineChart::new("mAP per tIoU threshold", "tIoU threshold", "mAP (%)");
    let mut table = String::from("<table><tr><th>model</th><th>average mAP</th></tr>");
    for (label, path) in evals {
        let Some(eval) = read_json(path, warnings) else {
            continue;
        };
        let thresholds: Vec<f64> = eval["tiou_thresholds"]
            .as_array()
            .map(|a| a.iter().filter_map(number).collect())
            .unwrap_or_default();
        let maps: Vec<f64> = eval["mAP"]
            .as_array()
            .map(|a| a.iter().filter_map(number).collect())
            .unwrap_or_default();
        if thresholds.is_empty() || thresholds.len() != maps.len() {
            warnings.push(format!(
                "{}: not the output of `lofi eval detection --json`",
                path.display()
            ));
            continue;
        }
        let points = thresholds
            .iter()
            .zip(&maps)
            .map(|(t, m)| (*t, m * 100.0))
            .collect();
        chart = chart.with_series(Series::new(label.clone(), points));
        let average = number(&eval["average_mAP"]).unwrap_or(f64::NAN);
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{:.2}</td></tr>",
            escape(label),
            average * 100.0
        );
    }
    table.push_str("</table>");
    if chart.series.is_empty() {
        return String::new();
    }
    format!("<h2>Detection mAP</h2>{}{}", chart.to_svg(), table)
}

fn loss_section(metrics: &[(String, PathBuf)], warnings: &mut Vec<String>) -> String {
    let mut html = String::from("<h2>Training loss</h2>");
    for (label, path) in metrics {
        let records = match lofi_engine::metrics::read(path) {
            Ok(records) => records,
            Err(error) => {
                warnings.push(error.to_string());
                continue;
            }
        };
        // One series per stage and fidelity, in order of first appearance; x is the step.
        let mut series: Vec<Series> = Vec::new();
        for record in &records {
            let MetricsRecord::Step(step) = record else {
                continue;
            };
            let name = match &step.fidelity {
                Some(fidelity) => format!("{} {fidelity}", step.stage),
                None => step.stage.clone(),
            };
            let point = (step.step as f64, step.loss);
            match series.iter_mut().find(|s| s.name == name) {
                Some(existing) => existing.points.push(point),
                None => series.push(Series::new(name, vec![point])),
            }
        }
        if series.is_empty() {
            continue;
        }
        let mut chart = LineChart::new(format!("loss: {label}"), "step", "loss");
        chart.series = series;
        html.push_str(&chart.to_svg());
    }
    html
}

/// DETAD's error analysis of each detections file, with its three figures. The bins and
/// thresholds are THUMOS14's for a subset named "test" (any case), ActivityNet's otherwise.
fn analysis_section(
    truth: &GroundTruth,
    detections: &[(String, PathBuf)],
    warnings: &mut Vec<String>,
) -> String {
    let dataset = if truth.subset.eq_ignore_ascii_case("test") {
        AnalysisDataset::Thumos14
    } else {
        AnalysisDataset::ActivityNet
    };
    let options = AnalysisOptions::new(dataset);
    let mut html = String::new();
    for (label, path) in detections {
        let analysis = Predictions::from_path(path, truth, PredictionKind::Detections)
            .and_then(|predictions| analyze_detection(truth, &predictions, &options));
        let analysis = match analysis {
            Ok(analysis) => analysis,
            Err(error) => {
                warnings.push(format!("error analysis skipped: {error}"));
                continue;
            }
        };
        let _ = write!(
            html,
            "<h3>{}</h3><p>average-mAP<sub>N</sub> {:.2} over the top-{}G predictions of each              class ({} predictions), {:.2} over all; gain if removed:",
            escape(label),
            analysis.average_map_n * 100.0,
            analysis.options.limit_factor,
            analysis.predictions,
            analysis.sensitivity_average_map_n * 100.0
        );
        let gains: Vec<String> = ErrorType::ALL[1..]
            .iter()
            .zip(&analysis.average_map_n_gain)
            .map(|(error, gain)| format!("{} {:+.2}", error.name(), gain * 100.0))
            .collect();
        let _ = write!(html, " {}.</p>", gains.join(", "));
        for note in &analysis.notes {
            let _ = write!(html, "<p>{}</p>", escape(note));
        }
        for (_, svg) in analysis_figures(&analysis) {
            html.push_str(&svg);
        }
    }
    if html.is_empty() {
        return html;
    }
    format!(
        "<h2>Error analysis (DETAD)</h2><p>False-positive profile, average-mAP<sub>N</sub> gain \
         per error type, false negatives and sensitivity by coverage, length and instances per \
         video, as <code>lofi eval detection --analysis</code> computes them.</p>{html}"
    )
}

fn timeline_section(
    truth: &GroundTruth,
    detections: &[(String, PathBuf)],
    options: &ReportOptions,
    warnings: &mut Vec<String>,
) -> String {
    let mut files = Vec::new();
    for (label, path) in detections {
        match DetectionFile::from_path(path) {
            Ok(file) => files.push((label.clone(), file)),
            Err(error) => warnings.push(error.to_string()),
        }
    }
    let mut html = format!(
        "<h2>Detections against the ground truth</h2><p>First {} annotated videos of subset \
         {:?}; the top {} detections of each model, opacity by score.</p>",
        options.videos, truth.subset, options.top_detections
    );
    for video in truth.annotated_videos().take(options.videos) {
        let entry = &truth.videos[video as usize];
        let mut lanes = vec![Lane {
            name: "ground truth".to_string(),
            spans: truth
                .annotations_of(video)
                .iter()
                .map(|a| Span {
                    start: a.segment.start,
                    end: a.segment.end,
                    label: truth.classes[a.class as usize].clone(),
                    opacity: 1.0,
                })
                .collect(),
        }];
        let mut end = truth
            .annotations_of(video)
            .iter()
            .map(|a| a.segment.end)
            .fold(0.0, f64::max);
        for (label, file) in &files {
            let Some((_, list)) = file.results.0.iter().find(|(id, _)| *id == entry.id) else {
                continue;
            };
            let mut best: Vec<_> = list.iter().collect();
            best.sort_by(|a, b| b.score.total_cmp(&a.score));
            best.truncate(options.top_detections);
            let top = best.first().map_or(1.0, |d| d.score.max(1e-12));
            end = best.iter().map(|d| d.segment.end).fold(end, f64::max);
            lanes.push(Lane {
                name: label.clone(),
                spans: best
                    .iter()
                    .map(|d| Span {
                        start: d.segment.start,
                        end: d.segment.end,
                        label: d.label.clone(),
                        opacity: d.score / top,
                    })
                    .collect(),
            });
        }
        let chart = Timeline {
            title: entry.id.clone(),
            duration: entry.duration.unwrap_or(end),
            lanes,
        };
        html.push_str(&chart.to_svg());
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lofi-report-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn a_demo_run_gives_table_charts_and_timelines() {
        let dir = temp_dir("demo");
        write(
            &dir.join("data/ground_truth.json"),
            r#"{"database": {"v1": {"subset": "validation", "duration": 20.0,
                "annotations": [{"segment": [2, 6], "label": "Jump"}]}}}"#,
        );
        write(
            &dir.join("demo.json"),
            r#"{"rows": [{"name": "frozen", "mAP": [0.5, 0.25, 0.0], "tiou_thresholds": [0.5, 0.75, 0.95],
                "average_mAP": 0.25, "peak_memory_bytes": 1048576, "step_seconds": 0.5}]}"#,
        );
        write(
            &dir.join("rows/s/eval.json"),
            r#"{"tiou_thresholds": [0.5, 0.75], "mAP": [0.6, 0.3], "average_mAP": 0.45, "per_class_AP": {}}"#,
        );
        let step = |step: usize, fidelity: &str, loss: f64| {
            let record = MetricsRecord::Step(lofi_engine::metrics::StepRecord {
                stage: "train".into(),
                epoch: 0,
                batch: step,
                step,
                fidelity: Some(fidelity.into()),
                snippets: Some(8),
                size: Some(32),
                videos: 2,
                micro_batch: None,
                accumulation: None,
                replicas: None,
                loss,
                loss_parts: None,
                lr: 0.1,
                step_s: 0.1,
                elapsed_s: 0.1,
                peak_memory_bytes: None,
                device_reserved_bytes: None,
            });
            serde_json::to_string(&record).expect("record") + "\n"
        };
        let end = MetricsRecord::EpochEnd(lofi_engine::metrics::EpochRecord {
            stage: "train".into(),
            epoch: 0,
            step: 2,
            loss: 1.75,
            lr: 0.1,
            elapsed_s: 0.2,
        });
        // Two steps, the epoch's end, and a line torn by a kill (ignored).
        write(
            &dir.join("rows/s/train/metrics.jsonl"),
            &format!(
                "{}{}{}\n{{\"event\": \"st",
                step(0, "s", 2.0),
                step(1, "t", 1.5),
                serde_json::to_string(&end).expect("end")
            ),
        );
        // A log that is not ours: a warning, no chart.
        write(
            &dir.join("rows/t/train/metrics.jsonl"),
            "{\"loss\": 1}\n{\"loss\": 2}\n",
        );
        write(
            &dir.join("rows/s/detections.json"),
            r#"{"results": {"v1": [{"label": "Jump", "score": 0.9, "segment": [2.5, 6]},
                                   {"label": "Jump", "score": 0.1, "segment": [10, 12]}]}}"#,
        );
        let report = build_report(&ReportOptions::new(&dir)).expect("report");
        let html = &report.html;
        assert!(html.contains("<td>frozen</td><td>50.00</td><td>25.00</td><td>0.00</td><td>25.00</td><td>1 MiB</td>"), "{html}");
        assert!(html.contains("mAP per tIoU threshold"));
        assert!(html.contains("loss: rows/s/train"));
        assert!(html.contains("train s") && html.contains("train t"));
        // mAP, loss, timeline; the error analysis's three figures (the first two panels wide).
        assert_eq!(html.matches("<svg").count(), 8);
        assert!(html.contains("Error analysis (DETAD)") && html.contains("<h3>rows/s</h3>"));
        assert!(html.contains("False-positive profile"));
        assert!(html.contains("<title>Jump [2.5, 6.0]</title>"));
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(
            report.warnings[0].contains("rows/t/train/metrics.jsonl")
                && report.warnings[0].contains("not a lofi metrics record"),
            "{:?}",
            report.warnings
        );
        let out = dir.join("report.html");
        write_report(&ReportOptions::new(&dir), &out).expect("write");
        assert!(std::fs::read_to_string(&out)
            .expect("read")
            .starts_with("<!DOCTYPE html>"));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn empty_or_missing_folders_are_errors() {
        let dir = temp_dir("empty");
        let message = build_report(&ReportOptions::new(&dir))
            .expect_err("empty")
            .to_string();
        assert!(message.contains("nothing to report"), "{message}");
        let missing = dir.join("nope");
        let message = build_report(&ReportOptions::new(&missing))
            .expect_err("missing")
            .to_string();
        assert!(message.contains("nope"), "{message}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
