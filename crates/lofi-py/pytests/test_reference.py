"""lofi from Python against the pure-Python oracle (test-tools/anet_reference.py), to 1e-12, on
random tie-free cases, from files, dicts and DataFrames."""

import warnings

import numpy as np
import pandas as pd
import pytest

import lofi
from conftest import EXAMPLES, as_frame, assert_close, random_case, run_reference

THRESHOLDS = ["0.5:0.95:10", "0.3:0.7:5", "0.1:0.9:17"]


@pytest.fixture(autouse=True)
def quiet():
    # Random cases have unknown videos and classes without predictions on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lofi.EvaluationWarning)
        yield


@pytest.mark.parametrize("seed", range(12))
def test_detection_equals_the_oracle_from_files_dicts_and_frames(seed, reference, tmp_path):
    case = random_case(seed)
    paths = case.write(tmp_path)
    tiou = THRESHOLDS[seed % 3]
    expected = run_reference(reference, "detection", paths["ground_truth"],
                             paths["detections"], tiou=tiou)
    from_files = lofi.evaluate_detection(paths["ground_truth"], paths["detections"],
                                         tiou_thresholds=tiou)
    assert_close(from_files, expected, "files")
    from_dicts = lofi.evaluate_detection(case.ground_truth, case.detections,
                                         tiou_thresholds=tiou)
    assert from_dicts == from_files  # the same numbers, bit for bit
    gt_frame = as_frame(case.ground_truth, database=True, subset="validation")
    from_frames = lofi.evaluate_detection(gt_frame, as_frame(case.detections),
                                          tiou_thresholds=tiou)
    assert from_frames == from_files
    # Mixed: a file for the ground truth, a DataFrame for the predictions.
    mixed = lofi.evaluate_detection(str(paths["ground_truth"]), as_frame(case.detections),
                                    tiou_thresholds=tiou)
    assert mixed == from_files


@pytest.mark.parametrize("seed", range(12))
def test_proposals_equal_the_oracle_from_files_dicts_and_frames(seed, reference, tmp_path):
    case = random_case(100 + seed)
    paths = case.write(tmp_path)
    tiou = THRESHOLDS[seed % 3]
    budget = [100, 20, 5][seed % 3]
    expected = run_reference(reference, "proposals", paths["ground_truth"],
                             paths["proposals"], tiou=tiou, max_avg_proposals=budget)
    from_files = lofi.evaluate_proposals(paths["ground_truth"], paths["proposals"],
                                         tiou_thresholds=tiou, max_avg_proposals=budget)
    assert_close(from_files, expected, "files")
    from_dicts = lofi.evaluate_proposals(case.ground_truth, case.proposals,
                                         tiou_thresholds=tiou, max_avg_proposals=budget)
    assert from_dicts == from_files
    gt_frame = as_frame(case.ground_truth, database=True, subset="validation")
    frame = as_frame(case.proposals, with_label=False)
    from_frames = lofi.evaluate_proposals(gt_frame, frame, tiou_thresholds=tiou,
                                          max_avg_proposals=budget)
    assert from_frames == from_files


def test_threshold_arrays_and_strings_are_the_same_thresholds():
    gt, det = EXAMPLES / "ground_truth.json", EXAMPLES / "detections.json"
    by_string = lofi.evaluate_detection(gt, det, tiou_thresholds="0.5:0.95:10")
    by_array = lofi.evaluate_detection(gt, det, tiou_thresholds=np.linspace(0.5, 0.95, 10))
    assert by_array == by_string == lofi.evaluate_detection(gt, det)
    thumos = lofi.evaluate_detection(gt, det, preset="thumos14", subset="validation")
    assert thumos["tiou_thresholds"] == np.linspace(0.3, 0.7, 5).tolist()


def test_example_matches_the_documented_cli_output():
    # README: `lofi eval detection` on examples/eval prints average mAP 44.64.
    result = lofi.evaluate_detection(EXAMPLES / "ground_truth.json",
                                     EXAMPLES / "detections.json")
    assert list(result) == ["tiou_thresholds", "mAP", "average_mAP", "per_class_AP",
                            "protocol"]
    assert result["protocol"]["annotated_videos"] == 16
    assert result["protocol"]["class_scores"] is None
    assert round(result["average_mAP"] * 100, 2) == 44.64
    assert round(result["mAP"][0] * 100, 2) == 76.13
    assert len(result["per_class_AP"]) == 5


def test_frame_rows_keep_their_order_for_ties():
    # Equal scores: the earlier row is ranked first, like file order for a JSON input.
    gt = {"database": {"v": {"subset": "validation", "annotations": [
        {"segment": [0.0, 10.0], "label": "A"}]}}}
    rows = [
        {"video-id": "v", "t-start": 50.0, "t-end": 60.0, "label": "A", "score": 0.5},
        {"video-id": "v", "t-start": 0.0, "t-end": 10.0, "label": "A", "score": 0.5},
    ]
    wrong_first = lofi.evaluate_detection(gt, pd.DataFrame(rows), tiou_thresholds=[0.5])
    right_first = lofi.evaluate_detection(gt, pd.DataFrame(rows[::-1]), tiou_thresholds=[0.5])
    assert right_first["mAP"] == [1.0]
    assert wrong_first["mAP"] == [0.5]


def test_integer_labels_and_numpy_scalars_are_accepted():
    gt = pd.DataFrame({"video-id": ["v", "w"], "t-start": [0, 5], "t-end": [10, 9],
                       "label": [3, 7]})
    pred = pd.DataFrame({"video-id": ["v", "w"], "t-start": np.array([0.0, 5.0]),
                         "t-end": [10.0, 9.0], "label": [3, 7],
                         "score": np.array([0.9, 0.8], dtype=np.float32)})
    result = lofi.evaluate_detection(gt, pred)
    assert result["average_mAP"] == 1.0
    assert list(result["per_class_AP"]) == ["3", "7"]
    det = {"results": {"v": [{"label": "3", "score": np.float64(0.5),
                              "segment": np.array([0.0, 10.0])}]}}
    with pytest.warns(lofi.EvaluationWarning):
        assert lofi.evaluate_detection(gt, det)["mAP"][0] == 0.5


def test_warnings_say_what_lofi_eval_logs():
    gt = {"database": {"v": {"subset": "validation", "annotations": [
        {"segment": [0.0, 10.0], "label": "A"}, {"segment": [0.0, 10.0], "label": "B"}]}}}
    det = {"results": {"v_x": [{"label": "A", "score": 1.0, "segment": [0.0, 10.0]}]}}
    with pytest.warns(lofi.EvaluationWarning) as caught:
        lofi.evaluate_detection(gt, det)
    text = " | ".join(str(w.message) for w in caught)
    assert "not in the \"validation\" subset" in text
    assert "have no predictions" in text
    assert "1 class(es) have no predictions and get AP 0: B" in text


def test_thumos_options_drop_videos_and_labels():
    gt = {"database": {
        "video_test_0000270": {"subset": "test", "annotations": [
            {"segment": [0.0, 1.0], "label": "A"}]},
        "video_test_0000001": {"subset": "test", "annotations": [
            {"segment": [0.0, 10.0], "label": "A"}, {"segment": [20.0, 30.0], "label": "Ambiguous"}]},
    }}
    det = {"results": {"video_test_0000001": [
        {"label": "A", "score": 0.9, "segment": [0.0, 10.0]},
        {"label": "Ambiguous", "score": 0.8, "segment": [20.0, 30.0]}]}}
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        plain = lofi.evaluate_detection(gt, det, preset="thumos14")
        dropped = lofi.evaluate_detection(gt, det, preset="thumos14", drop_disputed=True,
                                          drop_ambiguous=True)
    assert list(plain["per_class_AP"]) == ["A", "Ambiguous"]
    assert plain["per_class_AP"]["A"] == [0.5] * 5
    assert list(dropped["per_class_AP"]) == ["A"]
    assert dropped["average_mAP"] == 1.0


def test_official_default_budget_is_the_files_average(reference, tmp_path):
    case = random_case(7)
    paths = case.write(tmp_path)
    result = lofi.evaluate_proposals(case.ground_truth, case.proposals, max_avg_proposals=None)
    total = sum(len(v) for v in case.proposals["results"].values())
    annotated = sum(1 for v in case.ground_truth["database"].values()
                    if v["subset"] == "validation" and v["annotations"])
    # The curve ends at AN_max = proposals in the input / annotated videos.
    assert result["avg_proposals"][-1] == pytest.approx(total / annotated, rel=1e-12)
    # Explicitly passing that average gives the same curve.
    explicit = lofi.evaluate_proposals(paths["ground_truth"], paths["proposals"],
                                       max_avg_proposals=total / annotated)
    assert explicit == result
