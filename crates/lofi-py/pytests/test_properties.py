"""Property tests: no input, however malformed, makes lofi crash. Every call either returns or
raises ValueError / TypeError / OSError; a Rust panic (pyo3's PanicException, a BaseException)
or any other exception fails the test."""

import math
import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lofi

ALLOWED = (ValueError, TypeError, OSError)
# No example database: the suite leaves nothing behind in the checkout.
SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-10**20, max_value=10**20),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, math.nan, math.inf, -math.inf]),
)
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=20,
)
labels = st.sampled_from(["A", "B", "a", "", "Ambiguous"])
segments = st.one_of(st.lists(numbers, min_size=0, max_size=3), json_like)
annotations = st.lists(
    st.fixed_dictionaries({}, optional={"segment": segments, "label": st.one_of(labels, json_like)}),
    max_size=4,
)
videos = st.fixed_dictionaries(
    {},
    optional={
        "subset": st.one_of(st.sampled_from(["validation", "Validation", "training"]), json_like),
        "duration": st.one_of(numbers, json_like),
        "annotations": st.one_of(annotations, json_like),
    },
)
ground_truths = st.one_of(
    st.fixed_dictionaries({"database": st.dictionaries(st.sampled_from(["v", "w", "x"]),
                                                       videos, max_size=3)}),
    st.dictionaries(st.text(max_size=8), json_like, max_size=3),
)
entries = st.fixed_dictionaries(
    {},
    optional={"label": st.one_of(labels, json_like), "score": st.one_of(numbers, json_like),
              "segment": segments},
)
results = st.one_of(
    st.fixed_dictionaries({"results": st.dictionaries(
        st.sampled_from(["v", "w", "y"]), st.one_of(st.lists(entries, max_size=5), json_like),
        max_size=3)}),
    st.dictionaries(st.text(max_size=8), json_like, max_size=3),
)
thresholds = st.one_of(st.none(), st.lists(numbers, max_size=4),
                       st.text(max_size=12), st.sampled_from(["0.5:0.95:10", "1:0:3", "a:b:c"]))


def survives(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except ALLOWED:
            pass


@SETTINGS
@given(ground_truths, results, thresholds)
def test_detection_never_crashes(ground_truth, predictions, tiou):
    survives(lambda: lofi.evaluate_detection(ground_truth, predictions, tiou_thresholds=tiou))


@SETTINGS
@given(ground_truths, results, thresholds,
       st.one_of(st.none(), numbers))
def test_proposals_never_crash(ground_truth, proposals, tiou, budget):
    survives(lambda: lofi.evaluate_proposals(ground_truth, proposals, tiou_thresholds=tiou,
                                             max_avg_proposals=budget))


@SETTINGS
@given(ground_truths, results)
def test_dropin_classes_never_crash(ground_truth, predictions):
    def run():
        anet = lofi.ANETdetection(ground_truth, predictions, check_status=False)
        anet.evaluate()

    survives(run)


cells = st.one_of(st.text(max_size=4), numbers, st.none(), st.booleans())


@SETTINGS
@given(st.lists(st.tuples(cells, cells, cells, cells, cells), max_size=6))
def test_dataframes_never_crash(rows):
    frame = pd.DataFrame(rows, columns=["video-id", "t-start", "t-end", "label", "score"])
    gt = frame.drop(columns=["score"])
    survives(lambda: lofi.evaluate_detection(gt, frame))
    survives(lambda: lofi.evaluate_proposals(gt, frame.drop(columns=["label"])))


arrays = st.lists(st.tuples(numbers, numbers, numbers), max_size=12)


@SETTINGS
@given(arrays, st.one_of(numbers, st.just(0.5)), st.integers(-2, 20), numbers)
def test_postprocessing_never_crashes(rows, parameter, top_k, min_score):
    segments = np.array([[r[0], r[1]] for r in rows], dtype=np.float64).reshape(-1, 2)
    scores = np.array([float(r[2]) for r in rows], dtype=np.float64)
    survives(lambda: lofi.nms(segments, scores, iou_threshold=parameter, top_k=top_k))
    survives(lambda: lofi.soft_nms(segments, scores, sigma=parameter, top_k=top_k,
                                   min_score=min_score))
    survives(lambda: lofi.soft_nms(segments, scores, method="linear", iou_threshold=parameter,
                                   top_k=top_k, min_score=min_score))
    survives(lambda: lofi.fuse_classes(segments, scores, scores, top_k=top_k))


@settings(max_examples=100, deadline=None, database=None)
@given(st.binary(max_size=300), st.booleans())
def test_feature_reading_never_crashes(tmp_path_factory, data, with_index):
    folder = tmp_path_factory.mktemp("features")
    (folder / "v.npy").write_bytes(data)
    if with_index:
        (folder / "index.json").write_bytes(data[:40])
    survives(lambda: lofi.read_features(folder))
