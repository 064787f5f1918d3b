"""The drop-in classes driven the way peers' scripts drive the official ones (G-TAD/BMN-style
evaluation code, with only the import changed), checked against the oracle."""

import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import as_frame, assert_close, random_case, run_reference
from lofi import ANETdetection, ANETproposal, EvaluationWarning


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)
        yield


# --- A peer's detection evaluation, as G-TAD-style code writes it --------------------------
def peer_detection(ground_truth_filename, prediction_filename):
    anet_detection = ANETdetection(
        ground_truth_filename=ground_truth_filename,
        prediction_filename=prediction_filename,
        tiou_thresholds=np.linspace(0.5, 0.95, 10),
        subset="validation", verbose=True, check_status=False)
    anet_detection.evaluate()
    mAP_at_tIoU = [f"mAP@{t:.2f} {mAP * 100:.3f}"
                   for t, mAP in zip(anet_detection.tiou_thresholds, anet_detection.mAP)]
    line = f"Detection: average-mAP {anet_detection.average_mAP * 100:.3f} {' '.join(mAP_at_tIoU)}"
    return anet_detection, line


# --- A peer's proposal evaluation, as BMN-style code writes it ----------------------------
def run_evaluation(ground_truth_filename, proposal_filename, max_avg_nr_proposals=100,
                   tiou_thresholds=np.linspace(0.5, 0.95, 10), subset="validation"):
    anet_proposal = ANETproposal(ground_truth_filename, proposal_filename,
                                 tiou_thresholds=tiou_thresholds,
                                 max_avg_nr_proposals=max_avg_nr_proposals,
                                 subset=subset, verbose=True, check_status=False)
    anet_proposal.evaluate()
    recall = anet_proposal.recall
    average_recall = anet_proposal.avg_recall
    average_nr_proposals = anet_proposal.proposals_per_video
    return (average_nr_proposals, average_recall, recall)


def peer_proposals(ground_truth_filename, proposal_filename):
    ppv, average_recall, recall = run_evaluation(ground_truth_filename, proposal_filename)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # np.trapz before numpy 2.0
    area_under_curve = trapezoid(average_recall, ppv)
    return {
        "AR@1": np.mean(recall[:, 0]),
        "AR@5": np.mean(recall[:, 4]),
        "AR@10": np.mean(recall[:, 9]),
        "AR@100": np.mean(recall[:, -1]),
        "AUC": 100.0 * float(area_under_curve) / ppv[-1],
        "average_recall": average_recall,
        "avg_proposals": ppv,
    }


@pytest.mark.parametrize("seed", range(6))
def test_detection_script_gets_the_oracle_numbers(seed, reference, tmp_path, capsys):
    case = random_case(200 + seed)
    paths = case.write(tmp_path)
    expected = run_reference(reference, "detection", paths["ground_truth"], paths["detections"])
    anet, line = peer_detection(str(paths["ground_truth"]), str(paths["detections"]))
    printed = capsys.readouterr().out
    assert "[INIT] Loaded annotations from validation subset." in printed
    assert "Average-mAP" in printed and line.startswith("Detection: average-mAP")
    assert anet.ap.shape == (10, len(expected["per_class_AP"]))
    assert_close(anet.mAP.tolist(), expected["mAP"], "mAP")
    assert_close(anet.average_mAP, expected["average_mAP"], "average_mAP")
    for label, column in anet.activity_index.items():
        assert_close(anet.ap[:, column].tolist(), expected["per_class_AP"][label], label)
    # The official derivation of the attributes holds bit for bit.
    assert np.array_equal(anet.ap.mean(axis=1), anet.mAP)
    assert anet.mAP.mean() == anet.average_mAP


@pytest.mark.parametrize("seed", range(6))
def test_proposal_script_gets_the_oracle_numbers(seed, reference, tmp_path):
    case = random_case(300 + seed)
    paths = case.write(tmp_path)
    expected = run_reference(reference, "proposals", paths["ground_truth"], paths["proposals"])
    ours = peer_proposals(str(paths["ground_truth"]), str(paths["proposals"]))
    assert_close({k: ours[k] for k in expected}, expected, "peer", tol=1e-12)


def test_constructor_checks_and_recomputation():
    with pytest.raises(OSError, match="Please input a valid ground truth file"):
        ANETdetection(None, "x.json")
    with pytest.raises(OSError, match="Please input a valid proposal file"):
        ANETproposal("gt.json", None)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        ANETdetection("nope.json", "other.json")
    case = random_case(5)
    anet = ANETdetection(case.ground_truth, case.detections, check_status=False)
    assert anet.ap is None and anet.mAP is None  # nothing published before evaluate()
    anet.evaluate()
    assert anet.ap.shape[0] == 10
    anet.tiou_thresholds = np.array([0.5])  # changed after construction: evaluate() follows
    anet.evaluate()
    assert anet.ap.shape[0] == 1 and anet.mAP.shape == (1,)


def test_tables_are_the_official_dataframes():
    case = random_case(9)
    anet = ANETdetection(case.ground_truth, case.detections, check_status=False)
    gt, pred = anet.ground_truth, anet.prediction
    assert list(gt.columns) == ["video-id", "t-start", "t-end", "label"]
    assert list(pred.columns) == ["video-id", "t-start", "t-end", "label", "score"]
    annotations = [(vid, a) for vid, v in case.ground_truth["database"].items()
                   if v["subset"] == "validation" for a in v["annotations"]]
    assert len(gt) == len(annotations)
    names = {i: name for name, i in anet.activity_index.items()}
    assert [names[i] for i in gt["label"]] == [a["label"] for _, a in annotations]
    assert len(pred) == sum(len(v) for v in case.detections["results"].values())
    proposals = ANETproposal(case.ground_truth, as_frame(case.proposals, with_label=False),
                             check_status=False)
    assert list(proposals.proposal.columns) == ["video-id", "t-start", "t-end", "score"]
    proposals.evaluate()
    assert proposals.recall.shape == (10, 100)
    assert proposals.auc == pytest.approx(
        100 * np.sum(np.diff(proposals.proposals_per_video)
                     * (proposals.avg_recall[1:] + proposals.avg_recall[:-1]) / 2)
        / proposals.proposals_per_video[-1], abs=1e-9)


def test_exclude_videos_stands_in_for_the_blocked_list():
    gt = {"database": {
        "a": {"subset": "validation", "annotations": [{"segment": [0, 10], "label": "A"}]},
        "b": {"subset": "validation", "annotations": [{"segment": [0, 10], "label": "A"}]}}}
    det = {"results": {"a": [{"label": "A", "score": 1.0, "segment": [0, 10]}]}}
    plain = ANETdetection(gt, det, tiou_thresholds=[0.5], check_status=False)
    plain.evaluate()
    blocked = ANETdetection(gt, det, tiou_thresholds=[0.5], check_status=False,
                            exclude_videos=["b"])
    blocked.evaluate()
    assert plain.average_mAP == 0.5 and blocked.average_mAP == 1.0
    assert isinstance(pd.DataFrame(blocked.ground_truth), pd.DataFrame)
