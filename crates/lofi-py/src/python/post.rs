//! NMS, Soft-NMS and class fusion on arrays: the functions `lofi detect` uses, on one video.
//!
//! The Python side passes numpy arrays as native-endian float64 bytes (`[N, 2]` segments, `[N]`
//! scores) and gets positions into its arrays back, so that it can carry any other per-candidate
//! data along.

use super::to_py;
use lofi_eval::{
    fuse_with_class_scores, nms_indices, soft_nms_indices, EvalError, ScoredSegment, SoftNms,
    SoftNmsDecay, VideoClassScores,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::Path;

fn floats(bytes: &Bound<'_, PyBytes>) -> Vec<f64> {
    bytes
        .as_bytes()
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

fn candidates(
    segments: &Bound<'_, PyBytes>,
    scores: &Bound<'_, PyBytes>,
) -> Result<Vec<ScoredSegment>, EvalError> {
    let ends = floats(segments);
    let scores = floats(scores);
    if ends.len() != 2 * scores.len() {
        return Err(EvalError::Invalid(format!(
            "segments must have shape [N, 2] for N = {} scores, got {} values",
            scores.len(),
            ends.len()
        )));
    }
    Ok(ends
        .chunks_exact(2)
        .zip(scores)
        .map(|(pair, score)| ScoredSegment::new(pair[0], pair[1], score))
        .collect())
}

/// Hard NMS; returns the positions of the kept candidates, best first.
#[pyfunction]
pub(crate) fn nms(
    py: Python<'_>,
    segments: &Bound<'_, PyBytes>,
    scores: &Bound<'_, PyBytes>,
    iou_threshold: f64,
    top_k: usize,
) -> PyResult<Vec<usize>> {
    let candidates = candidates(segments, scores).map_err(to_py)?;
    py.detach(|| nms_indices(&candidates, iou_threshold, top_k))
        .map_err(to_py)
}

/// Soft-NMS (`method` "gaussian" with `sigma`, or "linear" with `iou_threshold`); returns the
/// kept positions in the order kept and their decayed scores.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // mirrors the keyword arguments of the Python API
pub(crate) fn soft_nms(
    py: Python<'_>,
    segments: &Bound<'_, PyBytes>,
    scores: &Bound<'_, PyBytes>,
    method: &str,
    sigma: f64,
    iou_threshold: f64,
    top_k: usize,
    min_score: f64,
) -> PyResult<(Vec<usize>, Vec<f64>)> {
    let candidates = candidates(segments, scores).map_err(to_py)?;
    let decay = match method {
        "gaussian" => SoftNmsDecay::Gaussian { sigma },
        "linear" => SoftNmsDecay::Linear { iou_threshold },
        other => {
            return Err(to_py(EvalError::Invalid(format!(
                "Soft-NMS method must be \"gaussian\" or \"linear\", got {other:?}"
            ))))
        }
    };
    let settings = SoftNms {
        decay,
        top_k,
        min_score,
    };
    let kept = py
        .detach(|| soft_nms_indices(&candidates, &settings))
        .map_err(to_py)?;
    Ok(kept.into_iter().unzip())
}

/// Video-level class fusion: each proposal paired with the video's `top_k` classes (best first,
/// ties in class order), score = proposal score x class score. Returns, per detection, the
/// proposal's position, the class's position and the fused score, proposal by proposal.
#[pyfunction]
pub(crate) fn fuse_classes(
    scores: &Bound<'_, PyBytes>,
    class_scores: &Bound<'_, PyBytes>,
    top_k: usize,
) -> PyResult<(Vec<usize>, Vec<usize>, Vec<f64>)> {
    let scores = floats(scores);
    let class_scores = floats(class_scores);
    if class_scores.is_empty() {
        return Err(to_py(EvalError::Invalid(
            "class_scores is empty: a video needs at least one class score".into(),
        )));
    }
    if let Some((class, score)) = class_scores
        .iter()
        .enumerate()
        .find(|(_, s)| !s.is_finite())
    {
        return Err(to_py(EvalError::Invalid(format!(
            "class_scores[{class}] is {score}, not a finite number"
        ))));
    }
    if let Some((class, score)) = class_scores.iter().enumerate().find(|(_, s)| **s < 0.0) {
        return Err(to_py(EvalError::Invalid(format!(
            "class_scores[{class}] is {score}: class scores are probabilities (or other \
             non-negative scores), not logits"
        ))));
    }
    if let Some((i, score)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(to_py(EvalError::Invalid(format!(
            "scores[{i}] is {score}, not a finite number"
        ))));
    }
    // Classes are named by their position, so the fused labels map back to it.
    let named = class_scores
        .iter()
        .enumerate()
        .map(|(class, score)| (class.to_string(), *score))
        .collect();
    let table = VideoClassScores::from_videos(
        Path::new("<class scores>"),
        vec![("video".to_string(), named)],
    )
    .map_err(to_py)?;
    // Segments do not take part in fusion; positions carry the link back to the caller's.
    let proposals: Vec<ScoredSegment> = scores
        .iter()
        .map(|&score| ScoredSegment::new(0.0, 0.0, score))
        .collect();
    let detections = fuse_with_class_scores("video", &proposals, &table, top_k).map_err(to_py)?;
    let per_proposal = top_k.min(class_scores.len());
    let mut proposal_of = Vec::with_capacity(detections.len());
    let mut class_of = Vec::with_capacity(detections.len());
    let mut fused = Vec::with_capacity(detections.len());
    for (i, detection) in detections.into_iter().enumerate() {
        let class = detection.label.parse::<usize>().map_err(|_| {
            to_py(EvalError::Invalid(format!(
                "internal: fused label {:?} is not a class position",
                detection.label
            )))
        })?;
        proposal_of.push(i / per_proposal.max(1));
        class_of.push(class);
        fused.push(detection.score);
    }
    Ok((proposal_of, class_of, fused))
}
