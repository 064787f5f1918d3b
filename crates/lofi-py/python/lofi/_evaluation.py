"""Detection mAP and proposal AR@AN / AUC, the numbers of ``lofi eval --json``.

Inputs may be paths (``str`` or ``os.PathLike``), dicts in the ActivityNet layout, or pandas
DataFrames with the official columns (``video-id``, ``t-start``, ``t-end``, ``label``,
``score``). Everything is checked as ``lofi eval`` checks a file; a bad input raises
``ValueError`` with the CLI's message, where an in-memory input is named ``<predictions dict>``,
``<ground truth DataFrame>``, ... instead of a file name.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lofi

__all__ = [
    "EvaluationWarning",
    "analyze_detection",
    "evaluate_detection",
    "evaluate_proposals",
    "THUMOS14_DISPUTED_TEST_VIDEOS",
    "THUMOS14_AMBIGUOUS_LABEL",
]

#: The three THUMOS14 test videos that many repositories drop (``drop_disputed=True``).
THUMOS14_DISPUTED_TEST_VIDEOS: Tuple[str, ...] = tuple(_lofi.THUMOS14_DISPUTED_TEST_VIDEOS)
#: The THUMOS14 label of unassignable segments (``drop_ambiguous=True``).
THUMOS14_AMBIGUOUS_LABEL: str = _lofi.THUMOS14_AMBIGUOUS_LABEL

_PRESETS = {
    "activitynet": ("validation", "0.5:0.95:10"),
    "thumos14": ("test", "0.3:0.7:5"),
}


class EvaluationWarning(UserWarning):
    """Something about the inputs a user should know (what ``lofi eval`` logs as a warning):
    predicted videos outside the subset, annotated videos without predictions, classes without
    predictions, dropped videos or labels."""


Input = Union[str, "os.PathLike[str]", Dict[str, Any], Any]


def _dataframe_type() -> Optional[type]:
    pandas = sys.modules.get("pandas")
    return getattr(pandas, "DataFrame", None) if pandas is not None else None


def _float_column(frame: Any, column: str, name: str) -> bytes:
    try:
        values = frame[column].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: column {column!r} is not numeric ({error})") from None
    return np.ascontiguousarray(values, dtype=np.float64).tobytes()


def _columns(frame: Any, role: str) -> tuple:
    """A DataFrame as the column tuple the extension reads."""
    name = f"<{role} DataFrame>"
    needed = ["video-id", "t-start", "t-end"]
    if role != "proposals":
        needed.append("label")
    if role != "ground truth":
        needed.append("score")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {', '.join(missing)}; the official columns are "
            "video-id, t-start, t-end, label (not for proposals) and score (not for the "
            "ground truth)"
        )
    labels = frame["label"].tolist() if "label" in needed else None
    scores = _float_column(frame, "score", name) if "score" in needed else None
    return (
        "columns",
        name,
        frame["video-id"].tolist(),
        _float_column(frame, "t-start", name),
        _float_column(frame, "t-end", name),
        labels,
        scores,
    )


def _source(value: Input, role: str) -> Any:
    if isinstance(value, (str, os.PathLike)):
        return os.fsdecode(value)
    if isinstance(value, dict):
        return value
    frame_type = _dataframe_type()
    if frame_type is not None and isinstance(value, frame_type):
        return _columns(value, role)
    raise TypeError(
        f"{role}: expected a path, a dict in the ActivityNet layout or a pandas DataFrame, "
        f"got {type(value).__name__}"
    )


def _thresholds(tiou_thresholds: Any, default: str) -> List[float]:
    if tiou_thresholds is None:
        return _lofi.parse_thresholds(default)
    if isinstance(tiou_thresholds, str):
        return _lofi.parse_thresholds(tiou_thresholds)
    try:
        values = np.asarray(tiou_thresholds, dtype=np.float64).ravel()
    except (TypeError, ValueError) as error:
        raise ValueError(f"tIoU thresholds must be numbers ({error})") from None
    return [float(v) for v in values]


def _settings(
    preset: str,
    subset: Optional[str],
    tiou_thresholds: Any,
    exclude_videos: Sequence[str],
    exclude_labels: Sequence[str],
    drop_disputed: bool,
    drop_ambiguous: bool,
) -> Tuple[str, List[float], List[str], List[str]]:
    if preset not in _PRESETS:
        raise ValueError(f"preset must be one of {', '.join(_PRESETS)}, got {preset!r}")
    default_subset, default_thresholds = _PRESETS[preset]
    videos = [str(v) for v in exclude_videos]
    labels = [str(v) for v in exclude_labels]
    if drop_disputed:
        videos.extend(THUMOS14_DISPUTED_TEST_VIDEOS)
    if drop_ambiguous:
        labels.append(THUMOS14_AMBIGUOUS_LABEL)
    return (
        default_subset if subset is None else str(subset),
        _thresholds(tiou_thresholds, default_thresholds),
        videos,
        labels,
    )


def _warn(messages: Sequence[str], stacklevel: int) -> None:
    for message in messages:
        warnings.warn(message, EvaluationWarning, stacklevel=stacklevel + 1)


def evaluate_detection(
    ground_truth: Input,
    predictions: Input,
    *,
    subset: Optional[str] = None,
    tiou_thresholds: Any = None,
    preset: str = "activitynet",
    exclude_videos: Sequence[str] = (),
    exclude_labels: Sequence[str] = (),
    drop_disputed: bool = False,
    drop_ambiguous: bool = False,
) -> Dict[str, Any]:
    """Detection mAP per tIoU threshold, its average and the per-class AP.

    Parameters
    ----------
    ground_truth:
        Path of a ground-truth JSON file, a dict ``{"database": {video: {"subset", "duration",
        "annotations": [{"segment": [start, end], "label"}]}}}``, or a DataFrame with columns
        ``video-id``, ``t-start``, ``t-end``, ``label`` (every row is a segment of the evaluated
        subset).
    predictions:
        Path of a detections file, a dict ``{"results": {video: [{"label", "score",
        "segment"}]}}``, or a DataFrame with columns ``video-id``, ``t-start``, ``t-end``,
        ``label``, ``score``. Rows keep their order: equal scores are ranked in row order.
    subset:
        Subset to evaluate; default: the preset's (``validation`` for ActivityNet, ``test`` for
        THUMOS14). Matched exactly, then case-insensitively.
    tiou_thresholds:
        A sequence of thresholds (e.g. ``numpy.linspace(0.5, 0.95, 10)``) or ``"START:STOP:N"``;
        default: the preset's.
    preset:
        ``"activitynet"`` (tIoU 0.5:0.95:10, subset validation) or ``"thumos14"`` (0.3:0.7:5,
        test).
    exclude_videos, exclude_labels:
        Dropped from both sides, like ``--exclude-video`` / ``--exclude-label``.
    drop_disputed, drop_ambiguous:
        THUMOS14: drop the three disputed test videos / the ``Ambiguous`` label.

    Returns
    -------
    dict
        Exactly the keys of ``lofi eval detection --json``: ``tiou_thresholds``, ``mAP`` (one
        per threshold), ``average_mAP``, ``per_class_AP`` (class name -> AP per threshold,
        in the ground truth's class order), fractions, not percent; and ``protocol``
        (``annotated_videos``, ``videos_without_predictions``, ``excluded_videos``,
        ``excluded_labels``, ``disputed_videos_kept``, ``disputed_videos_dropped``,
        ``class_scores``: the ``external_data`` details of the predictions, or ``None``).

    Raises
    ------
    ValueError
        Malformed or inconsistent input, with the message ``lofi eval`` gives.
    OSError
        A file that cannot be read (``FileNotFoundError`` when it does not exist).

    Warnings (``EvaluationWarning``) report what ``lofi eval`` logs: unknown videos, annotated
    videos without predictions, classes without predictions.
    """
    subset_name, thresholds, videos, labels = _settings(
        preset, subset, tiou_thresholds, exclude_videos, exclude_labels, drop_disputed,
        drop_ambiguous,
    )
    result, extra = _lofi.evaluate_detection(
        _source(ground_truth, "ground truth"),
        _source(predictions, "predictions"),
        subset_name,
        thresholds,
        videos,
        labels,
    )
    _warn(extra["warnings"], 2)
    return result


def evaluate_proposals(
    ground_truth: Input,
    proposals: Input,
    *,
    max_avg_proposals: Optional[float] = 100,
    subset: Optional[str] = None,
    tiou_thresholds: Any = None,
    preset: str = "activitynet",
    exclude_videos: Sequence[str] = (),
    exclude_labels: Sequence[str] = (),
    drop_disputed: bool = False,
    drop_ambiguous: bool = False,
) -> Dict[str, Any]:
    """Proposal average recall against the average number of proposals (AR@AN) and its AUC.

    ``proposals`` is a path, a dict ``{"results": {video: [{"score", "segment"}]}}`` (labels are
    ignored) or a DataFrame with ``video-id``, ``t-start``, ``t-end``, ``score``.
    ``max_avg_proposals`` is AN at the end of the curve (100 on ActivityNet); ``None`` uses the
    input's own average per annotated video, as the official ``ANETproposal`` does. The other
    arguments are those of :func:`evaluate_detection`.

    Returns exactly the keys of ``lofi eval proposals --json``: ``AR@1``, ``AR@5``, ``AR@10``,
    ``AR@100`` (the curve's point at that AN), ``AUC`` (in percent, as the official tool prints
    it), ``average_recall`` and ``avg_proposals`` (the 100-point curve).
    """
    subset_name, thresholds, videos, labels = _settings(
        preset, subset, tiou_thresholds, exclude_videos, exclude_labels, drop_disputed,
        drop_ambiguous,
    )
    result, extra = _lofi.evaluate_proposals(
        _source(ground_truth, "ground truth"),
        _source(proposals, "proposals"),
        subset_name,
        thresholds,
        None if max_avg_proposals is None else float(max_avg_proposals),
        videos,
        labels,
    )
    _warn(extra["warnings"], 2)
    return result


def analyze_detection(
    ground_truth: Input,
    predictions: Input,
    *,
    subset: Optional[str] = None,
    tiou_thresholds: Any = None,
    preset: str = "activitynet",
    exclude_videos: Sequence[str] = (),
    exclude_labels: Sequence[str] = (),
    drop_disputed: bool = False,
    drop_ambiguous: bool = False,
) -> Dict[str, Any]:
    """Why the mAP is what it is: DETAD's error analysis (Alwassel et al., ECCV 2018).

    The same numbers as the ``analysis`` object of ``lofi eval detection --analysis --json``:
    the false-positive profile of the top-10G predictions of each class (double detection,
    wrong label, localization, confusion, background; ``min_tiou`` 0.1), the average-mAP_N gain
    of removing each error type, and the false-negative rate and average-mAP_N per bucket of
    coverage, length and instances per video, with DETAD's buckets, normalized AP (AP_N) and
    thresholds (ActivityNet 0.5:0.95:10, THUMOS14 0.5).

    Inputs and the other arguments are those of :func:`evaluate_detection`, except that
    ``tiou_thresholds`` defaults to DETAD's for the preset. Coverage needs each annotated
    video's ``duration`` (ground-truth DataFrames have none, so coverage is then left out, and
    ``notes`` says so).

    Returns
    -------
    dict
        ``tiou_thresholds``, ``limit_factor``, ``min_tiou``, ``min_normalized_precision``,
        ``instances``, ``left_out_zero_length``, ``left_out_coverage_above_one``,
        ``average_instances_per_class``, ``false_positive`` (``predictions``, ``mAP_N``,
        ``average_mAP_N``, ``error_counts``, ``breakdown``, ``profile``,
        ``average_mAP_N_gain``), ``false_negative`` and ``sensitivity`` (per characteristic, a
        list of ``{"bucket", "instances", "rate" | "average_mAP_N"}``; ``sensitivity`` also has
        ``average_mAP_N`` of all predictions) and ``notes``. Fractions, not percent; ``None``
        for empty buckets.
    """
    subset_name, _, videos, labels = _settings(
        preset, subset, None, exclude_videos, exclude_labels, drop_disputed, drop_ambiguous,
    )
    thresholds = None if tiou_thresholds is None else _thresholds(tiou_thresholds, "")
    text, extra = _lofi.analyze_detection(
        _source(ground_truth, "ground truth"),
        _source(predictions, "predictions"),
        subset_name,
        preset,
        thresholds,
        videos,
        labels,
    )
    return json.loads(text)
