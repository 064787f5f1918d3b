"""lofi.analyze_detection against the DETAD oracle (test-tools/detad_reference.py), to 1e-12, on
random tie-free cases from files, dicts and DataFrames, and against `lofi eval --analysis`."""

import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest

import lofi
from conftest import EXAMPLES, REPO, TEST_TOOLS, as_frame, random_case


def oracle(ground_truth, predictions, dataset):
    out = subprocess.run(
        [sys.executable, str(TEST_TOOLS / "detad_reference.py"), "analysis", "--ground-truth",
         str(ground_truth), "--predictions", str(predictions), "--dataset", dataset],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def same(ours, theirs, what, tol=1e-12):
    """Every key of the oracle's result is ours, with numbers within `tol`."""
    if isinstance(theirs, dict):
        for key in theirs:
            assert key in ours, f"{what}: missing {key}"
            same(ours[key], theirs[key], f"{what}.{key}", tol)
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), what
        for i, (a, b) in enumerate(zip(ours, theirs)):
            same(a, b, f"{what}[{i}]", tol)
    elif isinstance(theirs, (int, float)) and not isinstance(theirs, bool):
        assert abs(ours - theirs) <= tol, f"{what}: ours {ours} vs oracle {theirs}"
    else:
        assert ours == theirs, what


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lofi.EvaluationWarning)
        yield


@pytest.mark.parametrize("seed", range(6))
def test_analysis_equals_the_oracle_from_files_dicts_and_frames(seed, tmp_path):
    case = random_case(300 + seed)
    paths = case.write(tmp_path)
    preset = "activitynet" if seed % 2 == 0 else "thumos14"
    subset = {"subset": "validation"}
    expected = oracle(paths["ground_truth"], paths["detections"], preset)
    from_files = lofi.analyze_detection(paths["ground_truth"], paths["detections"],
                                        preset=preset, **subset)
    same(from_files, expected, "files")
    from_dicts = lofi.analyze_detection(case.ground_truth, case.detections, preset=preset,
                                        **subset)
    assert from_dicts == from_files
    # A ground-truth DataFrame has no durations: coverage is left out, the rest is the same.
    from_frames = lofi.analyze_detection(
        as_frame(case.ground_truth, database=True, subset="validation"),
        as_frame(case.detections), preset=preset, **subset)
    assert "coverage" not in from_frames["false_negative"]
    assert from_frames["false_positive"] == from_files["false_positive"]
    assert from_frames["false_negative"]["length"] == from_files["false_negative"]["length"]


def test_thresholds_default_to_detads_and_can_be_given():
    gt, pred = EXAMPLES / "ground_truth.json", EXAMPLES / "detections.json"
    assert len(lofi.analyze_detection(gt, pred)["tiou_thresholds"]) == 10
    assert lofi.analyze_detection(gt, pred, preset="thumos14",
                                  subset="validation")["tiou_thresholds"] == [0.5]
    given = lofi.analyze_detection(gt, pred, tiou_thresholds="0.3:0.7:5")
    assert len(given["false_positive"]["mAP_N"]) == 5
    with pytest.raises(ValueError, match="preset"):
        lofi.analyze_detection(gt, pred, preset="kinetics")


def lofi_binary():
    for profile in ("debug", "release"):
        path = REPO / "target" / profile / "lofi"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which("lofi")


@pytest.mark.skipif(lofi_binary() is None, reason="no lofi binary built in target/ or on PATH")
def test_the_cli_prints_the_same_numbers():
    gt, pred = EXAMPLES / "ground_truth.json", EXAMPLES / "detections.json"
    out = subprocess.run([lofi_binary(), "eval", "detection", "--ground-truth", str(gt),
                          "--predictions", str(pred), "--analysis", "--json"],
                         check=True, capture_output=True, text=True)
    printed = json.loads(out.stdout)
    assert printed.pop("analysis") == lofi.analyze_detection(gt, pred)
    assert printed == lofi.evaluate_detection(gt, pred)
