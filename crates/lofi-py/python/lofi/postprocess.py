"""NMS, Soft-NMS and video-level class fusion on numpy arrays, one video at a time.

These are the functions ``lofi detect`` runs after the G-TAD head (Gaussian Soft-NMS with sigma
0.8, top 100, then fusion with the video's top-2 classes on ActivityNet). Segments are
``[N, 2]`` arrays of ``(start, end)``, scores ``[N]``; the functions return positions into the
inputs so that other per-candidate data can follow. Ties are broken by input order: of two
equal scores, the earlier candidate is kept first.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from . import _lofi

__all__ = ["nms", "soft_nms", "fuse_classes"]


def _arrays(segments, scores) -> Tuple[np.ndarray, np.ndarray]:
    segments = np.asarray(segments, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if segments.ndim != 2 or segments.shape[1] != 2:
        raise ValueError(f"segments must have shape [N, 2], got {list(segments.shape)}")
    if scores.ndim != 1 or scores.shape[0] != segments.shape[0]:
        raise ValueError(
            f"scores must have shape [N] = [{segments.shape[0]}], got {list(scores.shape)}"
        )
    return np.ascontiguousarray(segments), np.ascontiguousarray(scores)


def _top_k(top_k: Optional[int], n: int) -> int:
    if top_k is None:
        return n
    top_k = int(top_k)
    if top_k < 0:
        raise ValueError(f"top_k must be at least 0, got {top_k}")
    return top_k


def nms(segments, scores, iou_threshold: float = 0.5, top_k: Optional[int] = None) -> np.ndarray:
    """Hard NMS: keeps the best candidate, deletes every other whose tIoU with it is above
    ``iou_threshold``, and repeats until ``top_k`` are kept (default: no limit).

    Returns the kept positions (``int64``), best first; ``segments[keep]`` are the survivors.
    Raises ``ValueError`` for a non-finite score or a threshold outside [0, 1].
    """
    segments, scores = _arrays(segments, scores)
    kept = _lofi.nms(segments.tobytes(), scores.tobytes(), float(iou_threshold),
                     _top_k(top_k, len(scores)))
    return np.asarray(kept, dtype=np.int64)


def soft_nms(
    segments,
    scores,
    *,
    sigma: float = 0.8,
    top_k: Optional[int] = None,
    min_score: float = 0.0,
    method: str = "gaussian",
    iou_threshold: float = 0.0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Soft-NMS: keeps the best candidate and decays the others by their tIoU ``o`` with it,
    ``score * exp(-o**2 / sigma)`` (``method="gaussian"``; G-TAD uses sigma 0.8 on ActivityNet,
    0.46 on THUMOS14) or ``score * (1 - o)`` where ``o > iou_threshold`` (``method="linear"``),
    until ``top_k`` are kept; candidates whose decayed score falls below ``min_score`` are
    dropped.

    Returns ``(keep, decayed_scores)``: positions in the order kept and their scores.
    """
    segments, scores = _arrays(segments, scores)
    kept, decayed = _lofi.soft_nms(
        segments.tobytes(), scores.tobytes(), str(method), float(sigma), float(iou_threshold),
        _top_k(top_k, len(scores)), float(min_score),
    )
    return np.asarray(kept, dtype=np.int64), np.asarray(decayed, dtype=np.float64)


def fuse_classes(
    segments, scores, class_scores, top_k: int = 2
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Video-level class fusion: pairs every proposal with the video's ``top_k`` classes (best
    first, equal scores in class order) and scores the pair by proposal score x class score.

    ``class_scores`` is the video's ``[C]`` vector of class scores. Returns ``(segments
    [N*k, 2], scores [N*k], classes [N*k])``, proposal by proposal, ``classes`` being positions
    in ``class_scores`` (``k = min(top_k, C)``).
    """
    segments, scores = _arrays(segments, scores)
    class_scores = np.ascontiguousarray(np.asarray(class_scores, dtype=np.float64))
    if class_scores.ndim != 1:
        raise ValueError(f"class_scores must have shape [C], got {list(class_scores.shape)}")
    proposal, classes, fused = _lofi.fuse_classes(
        scores.tobytes(), class_scores.tobytes(), _top_k(top_k, len(class_scores))
    )
    proposal = np.asarray(proposal, dtype=np.int64)
    return (
        segments[proposal].reshape(-1, 2),
        np.asarray(fused, dtype=np.float64),
        np.asarray(classes, dtype=np.int64),
    )
