"""Drop-in replacements for the official ``ANETdetection`` and ``ANETproposal`` classes.

A peer's evaluation script (G-TAD, BMN, BSN and their successors carry a copy of
``eval_detection.py`` / ``eval_proposal.py`` from the ActivityNet repository) changes one
import::

    # from eval_detection import ANETdetection
    from lofi import ANETdetection

The constructors take the official arguments, ``evaluate()`` sets the official attributes
(``ap``, ``mAP``, ``average_mAP``; ``recall``, ``avg_recall``, ``proposals_per_video``) as numpy
arrays of the official shapes, and ``ground_truth`` / ``prediction`` / ``proposal`` /
``activity_index`` are there too (the tables are built on first access and need pandas). The
numbers are lofi's, which equal the official tool's on inputs without tied scores (see the
repository README for the documented tie order and the few places where the official tool
crashes or counts a 0/0 overlap as a match).

Differences: ``check_status=True`` downloads nothing (the official tool fetches a list of videos
no longer on YouTube; pass ``exclude_videos=[...]`` to drop videos); the field lists are
accepted but only ``database`` / ``results`` are required; inputs may also be dicts or
DataFrames; bad input raises ``ValueError`` with ``lofi eval``'s message, at construction, as the
official classes fail at construction.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import _lofi
from ._evaluation import _source, _thresholds, _warn

__all__ = ["ANETdetection", "ANETproposal"]


def _check_given(value: Any, what: str) -> None:
    if value is None or (isinstance(value, str) and not value):
        # The official classes raise IOError (= OSError) here.
        raise OSError(f"Please input a valid {what}.")


class _Tables:
    """The official tool's DataFrames, built on first access from lofi's reading of the inputs."""

    def __init__(self, ground_truth: Any, predictions: Any, subset: str, kind: str,
                 exclude_videos: List[str]) -> None:
        self._args = (ground_truth, predictions, subset, kind, exclude_videos, [])
        self._frames: Optional[tuple] = None

    def get(self) -> tuple:
        if self._frames is None:
            import pandas as pd

            gt, pred, _ = _lofi.tables(*self._args)
            self._frames = (pd.DataFrame(gt), pd.DataFrame(pred))
        return self._frames


class ANETdetection:
    """Detection mAP of a results file against a ground-truth file, the official way.

    Parameters are the official ones; ``ground_truth_filename`` and ``prediction_filename`` may
    also be dicts in the ActivityNet layout or DataFrames with the official columns, and
    ``exclude_videos`` stands in for the official blocked-video download.
    """

    GROUND_TRUTH_FIELDS = ["database", "taxonomy", "version"]
    PREDICTION_FIELDS = ["results", "version", "external_data"]

    def __init__(
        self,
        ground_truth_filename: Any = None,
        prediction_filename: Any = None,
        ground_truth_fields: Sequence[str] = GROUND_TRUTH_FIELDS,
        prediction_fields: Sequence[str] = PREDICTION_FIELDS,
        tiou_thresholds: Any = np.linspace(0.5, 0.95, 10),
        subset: str = "validation",
        verbose: bool = False,
        check_status: bool = True,
        exclude_videos: Sequence[str] = (),
    ) -> None:
        _check_given(ground_truth_filename, "ground truth file")
        _check_given(prediction_filename, "prediction file")
        self.subset = subset
        self.tiou_thresholds = tiou_thresholds
        self.verbose = verbose
        self.gt_fields = ground_truth_fields
        self.pred_fields = prediction_fields
        self.check_status = check_status
        self.blocked_videos = [str(v) for v in exclude_videos]
        self.ap: Optional[np.ndarray] = None
        self.mAP: Optional[np.ndarray] = None
        self.average_mAP: Optional[np.float64] = None
        self._ground_truth = _source(ground_truth_filename, "ground truth")
        self._predictions = _source(prediction_filename, "predictions")
        # Read and evaluate now: errors surface here, as in the official constructor, and
        # evaluate() only publishes the result (or recomputes if the thresholds were changed).
        self._evaluated_with: Optional[List[float]] = None
        self._compute()
        self._tables = _Tables(self._ground_truth, self._predictions, subset, "detection",
                               self.blocked_videos)
        if self.verbose:
            print("[INIT] Loaded annotations from {} subset.".format(subset))
            print("\tNumber of ground truth instances: {}".format(self._extra["ground_truth_segments"]))
            print("\tNumber of predictions: {}".format(self._extra["predictions"]))
            print("\tFixed threshold for tiou score: {}".format(self.tiou_thresholds))

    def _compute(self) -> None:
        thresholds = _thresholds(self.tiou_thresholds, "0.5:0.95:10")
        self._result, self._extra = _lofi.evaluate_detection(
            self._ground_truth, self._predictions, self.subset, thresholds,
            self.blocked_videos, [],
        )
        self._evaluated_with = thresholds
        _warn(self._extra["warnings"], 3)

    @property
    def activity_index(self) -> Dict[str, int]:
        """Class name -> column of ``ap``, in order of first appearance in the subset."""
        return {label: i for i, label in enumerate(self._extra["classes"])}

    @property
    def ground_truth(self) -> Any:
        """The subset's annotations as the official DataFrame (``label`` = class index)."""
        return self._tables.get()[0]

    @property
    def prediction(self) -> Any:
        """The predictions as the official DataFrame (``label`` = class index)."""
        return self._tables.get()[1]

    def evaluate(self):
        """Sets ``ap`` (``[thresholds, classes]``), ``mAP`` (per threshold) and ``average_mAP``;
        returns ``(mAP, average_mAP)`` (the official method returns nothing, so scripts that
        ignore the value are unaffected)."""
        if _thresholds(self.tiou_thresholds, "0.5:0.95:10") != self._evaluated_with:
            self._compute()
        per_class = self._result["per_class_AP"]
        classes = self._extra["classes"]
        # C order, as the official np.zeros((thresholds, classes)) is, so that the official
        # `ap.mean(axis=1)` reproduces `mAP` bit for bit.
        self.ap = np.ascontiguousarray(
            np.array([per_class[c] for c in classes], dtype=np.float64).T.reshape(
                len(self._evaluated_with), len(classes)
            )
        )
        self.mAP = np.array(self._result["mAP"], dtype=np.float64)
        self.average_mAP = np.float64(self._result["average_mAP"])
        if self.verbose:
            print("[RESULTS] Performance on ActivityNet detection task.")
            print("\tAverage-mAP: {}".format(self.average_mAP))
        return self.mAP, self.average_mAP


class ANETproposal:
    """Proposal AR@AN and AUC of a proposals file against a ground-truth file, the official way.

    Parameters are the official ones (``max_avg_nr_proposals=None`` uses the file's own
    average); inputs may also be dicts or DataFrames, and ``exclude_videos`` stands in for the
    official blocked-video download.
    """

    GROUND_TRUTH_FIELDS = ["database", "taxonomy", "version"]
    PROPOSAL_FIELDS = ["results", "version", "external_data"]

    def __init__(
        self,
        ground_truth_filename: Any = None,
        proposal_filename: Any = None,
        ground_truth_fields: Sequence[str] = GROUND_TRUTH_FIELDS,
        proposal_fields: Sequence[str] = PROPOSAL_FIELDS,
        tiou_thresholds: Any = np.linspace(0.5, 0.95, 10),
        max_avg_nr_proposals: Optional[float] = None,
        subset: str = "validation",
        verbose: bool = False,
        check_status: bool = True,
        exclude_videos: Sequence[str] = (),
    ) -> None:
        _check_given(ground_truth_filename, "ground truth file")
        _check_given(proposal_filename, "proposal file")
        self.subset = subset
        self.tiou_thresholds = tiou_thresholds
        self.max_avg_nr_proposals = max_avg_nr_proposals
        self.verbose = verbose
        self.gt_fields = ground_truth_fields
        self.pred_fields = proposal_fields
        self.check_status = check_status
        self.blocked_videos = [str(v) for v in exclude_videos]
        self.recall: Optional[np.ndarray] = None
        self.avg_recall: Optional[np.ndarray] = None
        self.proposals_per_video: Optional[np.ndarray] = None
        self.auc: Optional[float] = None
        self._ground_truth = _source(ground_truth_filename, "ground truth")
        self._proposals = _source(proposal_filename, "proposals")
        self._evaluated_with: Optional[tuple] = None
        self._compute()
        self._tables = _Tables(self._ground_truth, self._proposals, subset, "proposals",
                               self.blocked_videos)
        if self.verbose:
            print("[INIT] Loaded annotations from {} subset.".format(subset))
            print("\tNumber of ground truth instances: {}".format(self._extra["ground_truth_segments"]))
            print("\tNumber of proposals: {}".format(self._extra["predictions"]))
            print("\tFixed threshold for tiou score: {}".format(self.tiou_thresholds))

    def _settings(self) -> tuple:
        # Like the official `if not max_avg_nr_proposals`: None or 0 means the file's average.
        an_max = float(self.max_avg_nr_proposals) if self.max_avg_nr_proposals else None
        return _thresholds(self.tiou_thresholds, "0.5:0.95:10"), an_max

    def _compute(self) -> None:
        thresholds, an_max = self._settings()
        self._result, self._extra = _lofi.evaluate_proposals(
            self._ground_truth, self._proposals, self.subset, thresholds, an_max,
            self.blocked_videos, [],
        )
        self._evaluated_with = (thresholds, an_max)
        _warn(self._extra["warnings"], 3)

    @property
    def activity_index(self) -> Dict[str, int]:
        """Class name -> index, in order of first appearance in the subset."""
        return {label: i for i, label in enumerate(self._extra["classes"])}

    @property
    def ground_truth(self) -> Any:
        """The subset's annotations as the official DataFrame."""
        return self._tables.get()[0]

    @property
    def proposal(self) -> Any:
        """The proposals as the official DataFrame."""
        return self._tables.get()[1]

    def evaluate(self) -> None:
        """Sets ``recall`` (``[thresholds, 100]``), ``avg_recall`` and ``proposals_per_video``
        (100 points each), as the official method does, and ``auc`` (percent)."""
        if self._settings() != self._evaluated_with:
            self._compute()
        self.recall = np.array(self._extra["recall"], dtype=np.float64)
        self.avg_recall = np.array(self._result["average_recall"], dtype=np.float64)
        self.proposals_per_video = np.array(self._result["avg_proposals"], dtype=np.float64)
        self.auc = float(self._result["AUC"])
        if self.verbose:
            print("[RESULTS] Performance on ActivityNet proposal task.")
            print("\tArea Under the AR vs AN curve: {}%".format(self.auc))
