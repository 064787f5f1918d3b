"""Shared helpers of the lofi Python tests: the pure-Python oracle and random tie-free cases.

The oracle is ``test-tools/anet_reference.py``, an independent standard-library implementation
of the official ActivityNet algorithms (with numpy's summation order) that the Rust tests also
compare against; it is imported from the repository, so these tests run from a checkout.
"""

import argparse
import importlib.util
import json
import os
import random
import tempfile
from pathlib import Path

import pytest

# Hypothesis keeps caches in ./.hypothesis by default; keep the checkout clean.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      os.path.join(tempfile.gettempdir(), "lofi-py-hypothesis"))

REPO = Path(__file__).resolve().parents[3]
TEST_TOOLS = REPO / "test-tools"
EXAMPLES = REPO / "examples" / "eval"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, TEST_TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def reference():
    return _load("anet_reference")


def run_reference(reference, task, ground_truth, predictions, subset="validation",
                  tiou="0.5:0.95:10", max_avg_proposals=100):
    """The oracle's JSON result for files on disk."""
    args = argparse.Namespace(
        ground_truth=str(ground_truth), subset=subset, tiou=tiou, blocked_videos=None,
    )
    if task == "detection":
        args.predictions = str(predictions)
        return reference.run_detection(args)
    args.proposals = str(predictions)
    args.max_avg_proposals = max_avg_proposals
    return reference.run_proposals(args)


class Case:
    """A random benchmark: ground truth, detections and proposals in the ActivityNet layout."""

    def __init__(self, ground_truth, detections, proposals):
        self.ground_truth = ground_truth
        self.detections = detections
        self.proposals = proposals

    def write(self, folder):
        paths = {}
        for name in ("ground_truth", "detections", "proposals"):
            path = Path(folder) / f"{name}.json"
            path.write_text(json.dumps(getattr(self, name)))
            paths[name] = path
        return paths


def random_case(seed):
    """Tie-free by construction (distinct scores, continuous segment ends) and exercising unknown
    videos, training-subset videos, annotated videos without predictions, duplicate ground
    truth, classes without predictions and uneven proposal counts per video."""
    rng = random.Random(seed)
    n_classes = rng.randint(3, 8)
    labels = [f"class {c}" for c in range(n_classes)]
    gt_classes = n_classes - (1 if rng.random() < 0.5 else 0)
    scores = set()

    def score():
        while True:
            s = rng.random()
            if s not in scores:
                scores.add(s)
                return s

    database = {}
    detections = {}
    proposals = {}
    for v in range(rng.randint(10, 40)):
        vid = f"vid_{seed}_{v}"
        subset = "validation" if rng.random() < 0.8 else "training"
        duration = rng.uniform(20, 200)
        annotations = []
        for _ in range(rng.randint(0, 4)):
            start = rng.uniform(0, duration * 0.9)
            end = min(start + rng.uniform(0.5, duration * 0.4), duration)
            label = labels[rng.randrange(gt_classes)]
            annotations.append({"segment": [start, end], "label": label})
            if rng.random() < 0.1:  # a duplicate annotation: both count
                annotations.append({"segment": [start, end], "label": label})
        database[vid] = {"subset": subset, "duration": duration, "annotations": annotations}
        if rng.random() < 0.15:
            continue  # no predictions for this video
        dets, props = [], []
        for _ in range(rng.randint(1, 30)):
            if annotations and rng.random() < 0.5:
                a = rng.choice(annotations)
                s, e = a["segment"]
                jitter = (e - s) * 0.3
                start = max(0.0, s + rng.uniform(-jitter, jitter))
                end = max(start + 0.01, e + rng.uniform(-jitter, jitter))
                label = a["label"] if rng.random() < 0.7 else labels[rng.randrange(gt_classes)]
            else:
                start = rng.uniform(0, duration * 0.9)
                end = start + rng.uniform(0.5, duration * 0.5)
                label = labels[rng.randrange(gt_classes)]
            dets.append({"label": label, "score": score(), "segment": [start, end]})
            props.append({"score": score(), "segment": [start, end]})
        detections[vid] = dets
        proposals[vid] = props[: rng.randint(1, len(props))]
    # Predictions for videos the ground truth does not know: false positives.
    for u in range(rng.randint(0, 3)):
        start = rng.uniform(0, 50)
        segment = [start, start + rng.uniform(1, 20)]
        detections[f"unknown_{seed}_{u}"] = [
            {"label": labels[0], "score": score(), "segment": segment}
        ]
        proposals[f"unknown_{seed}_{u}"] = [{"score": score(), "segment": segment}]
    if not any(a for v in database.values() if v["subset"] == "validation"
               for a in v["annotations"]):
        database["vid_anchor"] = {
            "subset": "validation",
            "annotations": [{"segment": [1.0, 5.0], "label": labels[0]}],
        }
    # A predicted label must be a class of the evaluated subset (an unknown label is an error
    # for every evaluator): labels seen only in training videos are moved to a validation one.
    known = [a["label"] for v in database.values() if v["subset"] == "validation"
             for a in v["annotations"]]
    for entries in detections.values():
        for e in entries:
            if e["label"] not in known:
                e["label"] = known[rng.randrange(len(known))]
    return Case(
        {"version": "VERSION 1.3", "taxonomy": [], "database": database},
        {"version": "VERSION 1.3", "results": detections, "external_data": {}},
        {"version": "VERSION 1.3", "results": proposals, "external_data": {}},
    )


def as_frame(case_part, with_label=True, with_score=True, subset=None, database=None):
    """An ActivityNet-layout dict as the official DataFrame (labels as names)."""
    import pandas as pd

    rows = []
    if database is not None:
        for vid, video in case_part["database"].items():
            if subset is not None and video["subset"] != subset:
                continue
            for a in video.get("annotations", []):
                rows.append({"video-id": vid, "t-start": a["segment"][0],
                             "t-end": a["segment"][1], "label": a["label"]})
        return pd.DataFrame(rows, columns=["video-id", "t-start", "t-end", "label"])
    for vid, entries in case_part["results"].items():
        for e in entries:
            row = {"video-id": vid, "t-start": e["segment"][0], "t-end": e["segment"][1]}
            if with_label:
                row["label"] = e["label"]
            if with_score:
                row["score"] = e["score"]
            rows.append(row)
    return pd.DataFrame(rows)


def assert_close(ours, theirs, what, tol=1e-12):
    """Every number of two results (nested dicts / lists) agrees to `tol`; keys are equal, but
    for lofi's ``protocol`` (the oracle does not state one)."""
    if isinstance(theirs, dict):
        keys = [k for k in ours if k != "protocol"] if isinstance(ours, dict) else None
        assert keys == list(theirs), (what, list(ours))
        for key in theirs:
            assert_close(ours[key], theirs[key], f"{what}.{key}", tol)
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), what
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_close(a, b, f"{what}[{i}]", tol)
    else:
        assert abs(float(ours) - float(theirs)) <= tol, f"{what}: ours {ours} vs oracle {theirs}"
