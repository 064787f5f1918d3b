"""Bad input raises ValueError with `lofi eval`'s message: for a file, exactly the text the CLI
prints after "Error: " (the messages of lofi-eval's readers); for a dict or a DataFrame, the same
text with the input named `<predictions dict>`, `<ground truth DataFrame>`, ..."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import lofi

GT = {"database": {
    "a": {"subset": "validation", "annotations": [{"segment": [1, 3], "label": "Run"}]},
    "b": {"subset": "validation", "annotations": [{"segment": [4, 8], "label": "Jump"}]},
    "t": {"subset": "training", "annotations": [{"segment": [0, 1], "label": "Swim"}]},
}}


def entry(**fields):
    base = {"label": "Run", "score": 1.0, "segment": [0.0, 1.0]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def predictions(*entries):
    return {"results": {"a": list(entries)}}


# (entries of video "a", the message after "NAME: ") for inputs a dict and a file agree on.
SHARED = [
    (entry(segment=[3.0, 1.0]), "video a: entry 0: segment end 1 is before start 3"),
    (entry(label="run"), 'video a: label "run" is not a class of the ground truth\'s '
                         '"validation" subset (did you mean "Run"?)'),
    (entry(label="Swim"), 'video a: label "Swim" is not a class of the ground truth\'s '
                          '"validation" subset'),
    (entry(score=...), 'video a: entry 0: has no "score"'),
    (entry(segment=...), 'video a: entry 0: has no "segment"'),
    (entry(label=...), 'video a: entry 0: has no "label" (detections need one; use `lofi eval '
                       'proposals` for class-agnostic proposals)'),
]


@pytest.mark.parametrize("bad, message", SHARED)
def test_file_and_dict_give_the_cli_message(bad, message, tmp_path):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(GT))
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(predictions(bad)))
    with pytest.raises(ValueError) as from_file:
        lofi.evaluate_detection(gt_path, pred_path)
    assert str(from_file.value) == f"{pred_path}: {message}"
    with pytest.raises(ValueError) as from_dict:
        lofi.evaluate_detection(GT, predictions(bad))
    assert str(from_dict.value) == f"<predictions dict>: {message}"


def test_file_syntax_errors_name_the_place(tmp_path):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(GT))
    cases = [
        ('{"results": {"a": [{"label": "Run", "score": NaN, "segment": [0, 1]}]}}',
         "NaN and Infinity are not JSON"),
        ('{"results": {"a": [{"label": "Run", "score": 1, "segment": [0]}]}}',
         "found 1 number(s) (in video a, entry 0)"),
        ('{"results": {"a": [], "a": []}}', "video a: appears twice"),
        ('{"res": {}}', 'missing the "results" key'),
        ("", "the file is empty"),
        ('{"results": {"a": [}', "line 1"),
    ]
    for text, expected in cases:
        path = tmp_path / "pred.json"
        path.write_text(text)
        with pytest.raises(ValueError) as caught:
            lofi.evaluate_detection(gt_path, path)
        assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value), text


def test_dict_specific_problems():
    cases = [
        (predictions(entry(score=math.nan)), "video a: entry 0: score NaN is not finite"),
        (predictions(entry(score=math.inf)), "video a: entry 0: score inf is not finite"),
        (predictions(entry(segment=[0.0])), "entry 0: a segment must be [start, end], found 1 "
                                            "number(s)"),
        (predictions(entry(segment=[0.0, math.nan])), "entry 0: segment [0, NaN] is not finite"),
        (predictions(entry(label=3)), "entry 0: `label` must be a string, found int"),
        (predictions(entry(score="high")), "entry 0: `score` must be a number, found str"),
        (predictions(entry(segment="0-1")), "a segment must be [start, end], found str"),
        (predictions("not an object"), "entry 0: expected a prediction object, found str"),
        ({"results": {"a": {"x": 1}}}, "video a: expected a list of predictions, found dict"),
        ({"results": [1, 2]}, "expected an object mapping video ids to lists of predictions, "
                              "found list"),
        ({"results": {1: []}}, "a video id must be a string, found int"),
        ({"res": {}}, 'missing the "results" key'),
        ({"results": {"a": []}}, "the file has no detections to evaluate"),
    ]
    for bad, expected in cases:
        with pytest.raises(ValueError) as caught:
            lofi.evaluate_detection(GT, bad)
        message = str(caught.value)
        assert message.startswith("<predictions dict>: ") and expected in message, message


def test_ground_truth_problems_from_every_source(tmp_path):
    reversed_gt = json.loads(json.dumps(GT))
    reversed_gt["database"]["b"]["annotations"][0]["segment"] = [8, 4]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(reversed_gt))
    det = predictions(entry())
    message = "video b: annotation 0: segment end 4 is before start 8"
    with pytest.raises(ValueError, match=f"^{path}: {message}$"):
        lofi.evaluate_detection(path, det)
    with pytest.raises(ValueError, match=f"^<ground truth dict>: {message}$"):
        lofi.evaluate_detection(reversed_gt, det)
    frame = pd.DataFrame({"video-id": ["a", "b"], "t-start": [1.0, 8.0], "t-end": [3.0, 4.0],
                          "label": ["Run", "Jump"]})
    with pytest.raises(ValueError, match=f"^<ground truth DataFrame>: {message}$"):
        lofi.evaluate_detection(frame, det)
    unknown = 'no video has subset "test"; subsets present: "training" (1 videos), ' \
              '"validation" (2 videos)'
    with pytest.raises(ValueError, match=f"^<ground truth dict>: {unknown}$".replace("(", r"\(")
                       .replace(")", r"\)")):
        lofi.evaluate_detection(GT, det, subset="test")
    with pytest.raises(ValueError, match="missing field `subset`"):
        lofi.evaluate_detection({"database": {"a": {"annotations": []}}}, det)
    with pytest.raises(ValueError, match='missing the "database" key'):
        lofi.evaluate_detection({"db": {}}, det)
    with pytest.raises(ValueError, match="has no annotations to evaluate against"):
        lofi.evaluate_detection({"database": {"a": {"subset": "validation"}}}, det)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        lofi.evaluate_detection(tmp_path / "missing.json", det)


def test_dataframe_problems():
    good = pd.DataFrame({"video-id": ["a"], "t-start": [1.0], "t-end": [3.0], "label": ["Run"],
                         "score": [0.5]})
    with pytest.raises(ValueError, match="^<predictions DataFrame>: missing column\\(s\\) score"):
        lofi.evaluate_detection(GT, good.drop(columns=["score"]))
    bad = good.assign(**{"t-end": [0.5]})
    with pytest.raises(ValueError, match="^<predictions DataFrame>: video a: entry 0: segment "
                                         "end 0.5 is before start 1$"):
        lofi.evaluate_detection(GT, bad)
    with pytest.raises(ValueError, match="column 't-start' is not numeric"):
        lofi.evaluate_detection(GT, good.assign(**{"t-start": ["x"]}))
    with pytest.raises(ValueError, match="entry 0: score NaN is not finite"):
        lofi.evaluate_detection(GT, good.assign(score=[np.nan]))
    with pytest.raises(ValueError, match='column "video-id", row 0: expected a string, found '
                                         'list'):
        lofi.evaluate_detection(GT, good.assign(**{"video-id": [["a"]]}))


def test_argument_problems():
    det = predictions(entry())
    with pytest.raises(ValueError, match='tIoU thresholds "0.5:0.95": expected START:STOP:COUNT'):
        lofi.evaluate_detection(GT, det, tiou_thresholds="0.5:0.95")
    with pytest.raises(ValueError, match="needs at least one finite tIoU threshold"):
        lofi.evaluate_detection(GT, det, tiou_thresholds=[])
    with pytest.raises(ValueError, match="needs at least one finite tIoU threshold"):
        lofi.evaluate_detection(GT, det, tiou_thresholds=[0.5, math.nan])
    with pytest.raises(ValueError, match="preset must be one of"):
        lofi.evaluate_detection(GT, det, preset="hacs")
    with pytest.raises(TypeError, match="expected a path, a dict"):
        lofi.evaluate_detection(GT, [1, 2])
    props = {"results": {"a": [{"score": 1.0, "segment": [1, 3]}]}}
    with pytest.raises(ValueError, match="must be positive, got -1"):
        lofi.evaluate_proposals(GT, props, max_avg_proposals=-1)
    with pytest.raises(ValueError, match="^<proposals dict>: the file has no proposals$"):
        lofi.evaluate_proposals(GT, {"results": {}})
    with pytest.raises(ValueError, match="^<proposals dict>: the file has no proposals$"):
        lofi.evaluate_proposals(GT, {"results": {}}, max_avg_proposals=None)


def test_postprocessing_problems():
    with pytest.raises(ValueError, match=r"segments must have shape \[N, 2\]"):
        lofi.nms(np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"scores must have shape \[N\] = \[3\]"):
        lofi.nms(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="NMS got a non-finite score NaN for segment \\[0, 1\\]"):
        lofi.nms([[0, 1]], [math.nan])
    with pytest.raises(ValueError, match=r"NMS tIoU threshold must lie in \[0, 1\], got 2"):
        lofi.nms([[0, 1]], [1.0], iou_threshold=2)
    with pytest.raises(ValueError, match="Soft-NMS sigma must be positive, got 0"):
        lofi.soft_nms([[0, 1]], [1.0], sigma=0)
    with pytest.raises(ValueError, match='method must be "gaussian" or "linear"'):
        lofi.soft_nms([[0, 1]], [1.0], method="cubic")
    with pytest.raises(ValueError, match=r"class_scores\[1\] is NaN"):
        lofi.fuse_classes([[0, 1]], [1.0], [0.5, math.nan])
    with pytest.raises(ValueError, match=r"class_scores\[1\] is -0.5: .* not logits"):
        lofi.fuse_classes([[0, 1]], [1.0], [0.5, -0.5])
    with pytest.raises(ValueError, match="top_k must be at least 0"):
        lofi.nms([[0, 1]], [1.0], top_k=-1)
