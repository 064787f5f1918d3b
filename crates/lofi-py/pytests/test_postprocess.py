"""NMS, Soft-NMS and class fusion on numpy arrays against a plain re-statement of the rules
(written here, independently of the Rust code)."""

import numpy as np
import pytest

import lofi


def tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (b[1] - b[0]) + (a[1] - a[0]) - inter
    return inter / union if union > 0 else 0.0


def plain_nms(segments, scores, threshold, top_k):
    alive = list(range(len(scores)))
    kept = []
    while alive and len(kept) < top_k:
        best = max(alive, key=lambda i: (scores[i], -i))
        kept.append(best)
        alive = [j for j in alive if j != best and tiou(segments[j], segments[best]) <= threshold]
    return kept


def plain_soft_nms(segments, scores, sigma, top_k, min_score):
    scores = list(scores)
    alive = [i for i in range(len(scores)) if scores[i] >= min_score]
    kept = []
    while alive and len(kept) < top_k:
        best = max(alive, key=lambda i: (scores[i], -i))
        kept.append((best, scores[best]))
        alive.remove(best)
        for j in list(alive):
            o = tiou(segments[j], segments[best])
            scores[j] *= np.exp(-(o * o) / sigma)
            if scores[j] < min_score:
                alive.remove(j)
    return kept


def random_candidates(rng, n):
    starts = rng.uniform(0, 100, n)
    segments = np.stack([starts, starts + rng.uniform(0.5, 30, n)], axis=1)
    return segments, rng.permutation(n) / n + 0.01  # distinct scores


@pytest.mark.parametrize("seed", range(5))
def test_nms_keeps_what_the_rule_keeps(seed):
    rng = np.random.default_rng(seed)
    segments, scores = random_candidates(rng, 60)
    for threshold, top_k in [(0.3, 100), (0.5, 10), (0.9, 60)]:
        keep = lofi.nms(segments, scores, iou_threshold=threshold, top_k=top_k)
        assert keep.dtype == np.int64
        assert keep.tolist() == plain_nms(segments.tolist(), scores.tolist(), threshold, top_k)


@pytest.mark.parametrize("seed", range(5))
def test_gaussian_soft_nms_matches_the_rule(seed):
    rng = np.random.default_rng(10 + seed)
    segments, scores = random_candidates(rng, 40)
    keep, decayed = lofi.soft_nms(segments, scores, sigma=0.8, top_k=25, min_score=0.001)
    expected = plain_soft_nms(segments.tolist(), scores.tolist(), 0.8, 25, 0.001)
    assert keep.tolist() == [i for i, _ in expected]
    np.testing.assert_allclose(decayed, [s for _, s in expected], rtol=1e-12)


def test_linear_soft_nms_and_ties_in_input_order():
    segments = np.array([[0, 10], [1, 10], [20, 30], [5, 15]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    keep, decayed = lofi.soft_nms(segments, scores, method="linear", iou_threshold=0.5,
                                  min_score=0.1)
    # [1, 10] overlaps [0, 10] by 0.9 and decays to 0.08 < 0.1: dropped.
    assert keep.tolist() == [0, 2, 3]
    np.testing.assert_allclose(decayed, [0.9, 0.7, 0.6])
    tied = lofi.nms([[0, 1], [5, 6]], [0.5, 0.5])
    assert tied.tolist() == [0, 1]
    empty = lofi.nms(np.zeros((0, 2)), np.zeros(0))
    assert empty.shape == (0,)


def test_fusion_pairs_each_proposal_with_the_top_classes():
    segments = np.array([[0.0, 1.0], [2.0, 3.0]])
    scores = np.array([0.8, 0.4])
    class_scores = np.array([0.25, 0.5, 0.125, 0.5])  # a tie: class 1 before class 3
    fused_segments, fused, classes = lofi.fuse_classes(segments, scores, class_scores, top_k=2)
    assert classes.tolist() == [1, 3, 1, 3]
    np.testing.assert_array_equal(fused, [0.4, 0.4, 0.2, 0.2])
    np.testing.assert_array_equal(fused_segments, [[0, 1], [0, 1], [2, 3], [2, 3]])
    _, _, all_classes = lofi.fuse_classes(segments, scores, class_scores, top_k=10)
    assert all_classes.tolist() == [1, 3, 0, 2] * 2
