//! Detection mAP and proposal AR@AN from Python, returning the keys of `lofi eval --json`.
//!
//! Each function returns two dicts: the result, with exactly the keys and values that
//! `lofi eval detection|proposals --json` prints, and extras the Python layer needs (warnings,
//! the class order, counts, the per-threshold recall curves for `ANETproposal.recall`). Reading
//! files and evaluating run without the GIL.

use super::inputs::Source;
use super::to_py;
use lofi_eval::{
    analyze_detection as analyze_detection_report, evaluate_detection as evaluate_detection_report,
    evaluate_proposals as evaluate_proposal_report, AnalysisDataset, AnalysisOptions, EvalError,
    GroundTruth, GroundTruthOptions, Prediction, PredictionKind, Predictions, ProposalOptions,
    Thresholds,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

fn options(
    subset: String,
    exclude_videos: Vec<String>,
    exclude_labels: Vec<String>,
) -> GroundTruthOptions {
    GroundTruthOptions {
        subset,
        exclude_videos,
        exclude_labels,
    }
}

fn sources<'py>(
    ground_truth: &Bound<'py, PyAny>,
    predictions: &Bound<'py, PyAny>,
    kind: PredictionKind,
) -> Result<(Source<'py>, Source<'py>), EvalError> {
    let predictions_name = match kind {
        PredictionKind::Detections => "<predictions dict>",
        PredictionKind::Proposals => "<proposals dict>",
    };
    Ok((
        Source::from_py(ground_truth, "<ground truth dict>")?,
        Source::from_py(predictions, predictions_name)?,
    ))
}

fn counts<'py>(
    py: Python<'py>,
    truth: &GroundTruth,
    predictions: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let extra = PyDict::new(py);
    extra.set_item("classes", PyList::new(py, &truth.classes)?)?;
    extra.set_item("ground_truth_segments", truth.annotations.len())?;
    extra.set_item("videos", truth.annotated_videos().count())?;
    extra.set_item("predictions", predictions)?;
    extra.set_item("subset", &truth.subset)?;
    Ok(extra)
}

/// The ground truth and detections of a detection evaluation; no detections is an error.
fn read_detections<'py>(
    py: Python<'py>,
    ground_truth: &Bound<'py, PyAny>,
    predictions: &Bound<'py, PyAny>,
    options: GroundTruthOptions,
) -> PyResult<(GroundTruth, Predictions)> {
    let (truth_source, prediction_source) =
        sources(ground_truth, predictions, PredictionKind::Detections).map_err(to_py)?;
    let truth = truth_source.ground_truth(py, &options).map_err(to_py)?;
    let predictions = prediction_source
        .predictions(py, &truth, PredictionKind::Detections)
        .map_err(to_py)?;
    if predictions.items.is_empty() {
        return Err(to_py(EvalError::Invalid(format!(
            "{}: the file has no detections to evaluate",
            prediction_source.name().display()
        ))));
    }
    Ok((truth, predictions))
}

/// Detection mAP: `(result, extras)`; see the module docs.
#[pyfunction]
#[pyo3(signature = (ground_truth, predictions, subset, tiou_thresholds, exclude_videos, exclude_labels))]
pub(crate) fn evaluate_detection<'py>(
    py: Python<'py>,
    ground_truth: &Bound<'py, PyAny>,
    predictions: &Bound<'py, PyAny>,
    subset: String,
    tiou_thresholds: Vec<f64>,
    exclude_videos: Vec<String>,
    exclude_labels: Vec<String>,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let (truth, predictions) = read_detections(
        py,
        ground_truth,
        predictions,
        options(subset, exclude_videos, exclude_labels),
    )?;
    let report = py
        .detach(|| evaluate_detection_report(&truth, &predictions, &tiou_thresholds))
        .map_err(to_py)?;
    let result = PyDict::new(py);
    result.set_item("tiou_thresholds", PyList::new(py, &report.tiou_thresholds)?)?;
    result.set_item("mAP", PyList::new(py, &report.map)?)?;
    result.set_item("average_mAP", report.average_map)?;
    let per_class = PyDict::new(py);
    for class in &report.per_class {
        per_class.set_item(&class.label, PyList::new(py, &class.ap)?)?;
    }
    result.set_item("per_class_AP", per_class)?;
    let protocol = PyDict::new(py);
    let p = &report.protocol;
    protocol.set_item("annotated_videos", p.annotated_videos)?;
    protocol.set_item("videos_without_predictions", p.videos_without_predictions)?;
    protocol.set_item("excluded_videos", PyList::new(py, &p.excluded_videos)?)?;
    protocol.set_item("excluded_labels", PyList::new(py, &p.excluded_labels)?)?;
    protocol.set_item(
        "disputed_videos_kept",
        PyList::new(py, &p.disputed_videos_kept)?,
    )?;
    protocol.set_item(
        "disputed_videos_dropped",
        PyList::new(py, &p.disputed_videos_dropped)?,
    )?;
    protocol.set_item("class_scores", p.class_scores.as_deref())?;
    result.set_item("protocol", protocol)?;
    let extra = counts(py, &truth, predictions.items.len())?;
    extra.set_item("warnings", PyList::new(py, &report.warnings)?)?;
    Ok((result, extra))
}

/// DETAD's error analysis: `(analysis, extras)`, where `analysis` is the JSON text of the
/// `analysis` object of `lofi eval detection --analysis --json` (the same serializer, so the
/// same numbers); `dataset` picks DETAD's buckets and default thresholds.
#[pyfunction]
#[pyo3(signature = (ground_truth, predictions, subset, dataset, tiou_thresholds, exclude_videos, exclude_labels))]
#[allow(clippy::too_many_arguments)] // mirrors the keyword arguments of the Python API
pub(crate) fn analyze_detection<'py>(
    py: Python<'py>,
    ground_truth: &Bound<'py, PyAny>,
    predictions: &Bound<'py, PyAny>,
    subset: String,
    dataset: &str,
    tiou_thresholds: Option<Vec<f64>>,
    exclude_videos: Vec<String>,
    exclude_labels: Vec<String>,
) -> PyResult<(String, Bound<'py, PyDict>)> {
    let dataset = match dataset {
        "activitynet" => AnalysisDataset::ActivityNet,
        "thumos14" => AnalysisDataset::Thumos14,
        other => {
            return Err(to_py(EvalError::Invalid(format!(
                "dataset must be activitynet or thumos14, got {other:?}"
            ))))
        }
    };
    let mut settings = AnalysisOptions::new(dataset);
    if let Some(thresholds) = tiou_thresholds {
        settings.tiou_thresholds = thresholds;
    }
    let (truth, predictions) = read_detections(
        py,
        ground_truth,
        predictions,
        options(subset, exclude_videos, exclude_labels),
    )?;
    let analysis = py
        .detach(|| analyze_detection_report(&truth, &predictions, &settings))
        .map_err(to_py)?;
    let text = analysis.to_json_text().map_err(to_py)?;
    let extra = counts(py, &truth, predictions.items.len())?;
    extra.set_item("notes", PyList::new(py, &analysis.notes)?)?;
    Ok((text, extra))
}

/// Proposal AR@AN and AUC: `(result, extras)`; `max_avg_proposals = None` means the file's own
/// average, as in the official `ANETproposal`.
#[pyfunction]
#[pyo3(signature = (ground_truth, proposals, subset, tiou_thresholds, max_avg_proposals, exclude_videos, exclude_labels))]
#[allow(clippy::too_many_arguments)] // mirrors the keyword arguments of the Python API
pub(crate) fn evaluate_proposals<'py>(
    py: Python<'py>,
    ground_truth: &Bound<'py, PyAny>,
    proposals: &Bound<'py, PyAny>,
    subset: String,
    tiou_thresholds: Vec<f64>,
    max_avg_proposals: Option<f64>,
    exclude_videos: Vec<String>,
    exclude_labels: Vec<String>,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let (truth_source, proposal_source) =
        sources(ground_truth, proposals, PredictionKind::Proposals).map_err(to_py)?;
    let truth = truth_source
        .ground_truth(py, &options(subset, exclude_videos, exclude_labels))
        .map_err(to_py)?;
    let proposals = proposal_source
        .predictions(py, &truth, PredictionKind::Proposals)
        .map_err(to_py)?;
    let total = proposals.items.len();
    let max_avg_proposals = match max_avg_proposals {
        Some(value) => value,
        None if total == 0 => {
            return Err(to_py(EvalError::Format {
                path: proposal_source.name().to_path_buf(),
                message: "the file has no proposals".into(),
            }))
        }
        // The official default: every proposal of the file, per annotated video.
        None => total as f64 / truth.annotated_videos().count() as f64,
    };
    let settings = ProposalOptions {
        max_avg_proposals,
        tiou_thresholds,
    };
    let report = py
        .detach(|| evaluate_proposal_report(&truth, &proposals, &settings))
        .map_err(to_py)?;
    let result = PyDict::new(py);
    for an in [1u32, 5, 10, 100] {
        result.set_item(format!("AR@{an}"), report.ar(an).unwrap_or(f64::NAN))?;
    }
    result.set_item("AUC", report.auc)?;
    result.set_item("average_recall", PyList::new(py, &report.average_recall)?)?;
    result.set_item("avg_proposals", PyList::new(py, &report.avg_proposals)?)?;
    let extra = counts(py, &truth, total)?;
    extra.set_item("warnings", PyList::new(py, &report.warnings)?)?;
    extra.set_item("tiou_thresholds", PyList::new(py, &report.tiou_thresholds)?)?;
    let recall = PyList::empty(py);
    for row in &report.recall {
        recall.append(PyList::new(py, row)?)?;
    }
    extra.set_item("recall", recall)?;
    extra.set_item("max_avg_proposals", max_avg_proposals)?;
    Ok((result, extra))
}

/// The inputs as the official tool's tables: `(ground_truth, predictions, classes)`, each table
/// a dict of columns (`video-id`, `t-start`, `t-end`, `label` as the class's index in `classes`,
/// and `score` for predictions; proposals have no `label`).
#[pyfunction]
#[pyo3(signature = (ground_truth, predictions, subset, kind, exclude_videos, exclude_labels))]
pub(crate) fn tables<'py>(
    py: Python<'py>,
    ground_truth: &Bound<'py, PyAny>,
    predictions: &Bound<'py, PyAny>,
    subset: String,
    kind: &str,
    exclude_videos: Vec<String>,
    exclude_labels: Vec<String>,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>, Bound<'py, PyList>)> {
    let kind = match kind {
        "detection" => PredictionKind::Detections,
        "proposals" => PredictionKind::Proposals,
        other => {
            return Err(to_py(EvalError::Invalid(format!(
                "kind must be \"detection\" or \"proposals\", got {other:?}"
            ))))
        }
    };
    let (truth_source, prediction_source) =
        sources(ground_truth, predictions, kind).map_err(to_py)?;
    let truth = truth_source
        .ground_truth(py, &options(subset, exclude_videos, exclude_labels))
        .map_err(to_py)?;
    let predictions = prediction_source
        .predictions(py, &truth, kind)
        .map_err(to_py)?;

    let gt = PyDict::new(py);
    let annotations = &truth.annotations;
    let gt_ids: Vec<&str> = annotations
        .iter()
        .map(|a| truth.videos[a.video as usize].id.as_str())
        .collect();
    gt.set_item("video-id", PyList::new(py, gt_ids)?)?;
    gt.set_item(
        "t-start",
        PyList::new(py, annotations.iter().map(|a| a.segment.start))?,
    )?;
    gt.set_item(
        "t-end",
        PyList::new(py, annotations.iter().map(|a| a.segment.end))?,
    )?;
    gt.set_item(
        "label",
        PyList::new(py, annotations.iter().map(|a| a.class))?,
    )?;

    let table = PyDict::new(py);
    let items = &predictions.items;
    let ids: Vec<&str> = items
        .iter()
        .map(|p| predictions.videos[p.video as usize].id.as_str())
        .collect();
    table.set_item("video-id", PyList::new(py, ids)?)?;
    table.set_item(
        "t-start",
        PyList::new(py, items.iter().map(|p| p.segment.start))?,
    )?;
    table.set_item(
        "t-end",
        PyList::new(py, items.iter().map(|p| p.segment.end))?,
    )?;
    if kind == PredictionKind::Detections {
        table.set_item(
            "label",
            PyList::new(py, items.iter().map(|p: &Prediction| p.class))?,
        )?;
    }
    table.set_item("score", PyList::new(py, items.iter().map(|p| p.score))?)?;
    Ok((gt, table, PyList::new(py, &truth.classes)?))
}

/// `START:STOP:COUNT` as `lofi eval --tiou` reads it (numpy.linspace values, same checks).
#[pyfunction]
pub(crate) fn parse_thresholds(text: &str) -> PyResult<Vec<f64>> {
    text.parse::<Thresholds>()
        .map(|t| t.values())
        .map_err(to_py)
}
