"""Average precision (metric spec §5): hand-worked values, the TF internals fixture, and the
vectorised per-class kernel against the one-class numpy path."""

import math

import numpy as np
import pytest

from wilddet.evaluation.ap import (
    average_precision,
    average_precision_from_pr,
    average_precision_per_class,
    mean_ap,
    precision_recall,
    rank_within_groups,
)


def test_tf_object_detection_evaluation_internals():
    # ObjectDetectionEvaluationTest: class 0 gets a FP at 0.8 and a TP at 0.7, num_gt 3
    precision, recall = precision_recall(np.array([0.7, 0.8]), np.array([1.0, 0.0]), 3)
    np.testing.assert_allclose(precision, [0.0, 0.5])
    np.testing.assert_allclose(recall, [0.0, 1 / 3])
    assert average_precision(np.array([0.7, 0.8]), np.array([1.0, 0.0]), 3) == pytest.approx(1 / 6)


def test_hand_worked_envelope():
    # ranks: TP FP TP FP TP, num_gt 4 -> precisions 1, 1/2, 2/3, 1/2, 3/5
    # envelope at the TPs: 1, 2/3, 3/5 -> AP = (1 + 2/3 + 3/5) / 4
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    w = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    assert average_precision(scores, w, 4) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4, abs=1e-15)
    # a later, higher precision lifts earlier TPs: TP FP FP TP TP, num_gt 3
    w = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    assert average_precision(scores, w, 3) == pytest.approx((1 + 3 / 5 + 3 / 5) / 3, abs=1e-15)


def test_weighted_entries_and_edge_cases():
    # a group-of entry of weight 0.5 ranked first, then a TP: num_gt 1.5
    assert average_precision(np.array([0.9, 0.8]), np.array([0.5, 1.0]), 1.5) == pytest.approx(1.0)
    assert average_precision(np.array([]), np.array([]), 2) == 0.0
    assert math.isnan(average_precision(np.array([0.5]), np.array([0.0]), 0))
    assert average_precision_from_pr(np.array([]), np.array([])) == 0.0
    assert average_precision(np.array([0.5]), np.array([0.0]), 1) == 0.0


def test_ties_rank_in_input_order():
    s = np.array([0.5, 0.5])
    assert average_precision(s, np.array([1.0, 0.0]), 1) == 1.0
    assert average_precision(s, np.array([0.0, 1.0]), 1) == 0.5


def test_per_class_kernel_equals_one_class_path():
    rng = np.random.default_rng(7)
    num_classes = 9
    e = 4000
    classes = rng.integers(0, num_classes, e)
    scores = np.round(rng.random(e), 2)  # many ties
    weights = rng.choice([0.0, 1.0, 0.5], e, p=[0.6, 0.3, 0.1])
    num_gt = np.array([np.sum(weights[classes == c]) + rng.integers(0, 5) for c in
                       range(num_classes)], dtype=np.float64)
    num_gt[3] = 0.0  # no ground truth -> NaN
    classes[classes == 5] = 6  # no entries -> 0
    got = average_precision_per_class(classes, scores, weights, num_gt)
    for c in range(num_classes):
        m = classes == c
        want = average_precision(scores[m], weights[m], num_gt[c])
        if math.isnan(want):
            assert math.isnan(got[c])
        else:
            assert got[c] == pytest.approx(want, abs=1e-13)
    assert got[5] == 0.0 and math.isnan(got[3])
    assert mean_ap(got) == pytest.approx(np.nanmean(got))
    assert math.isnan(mean_ap(np.array([np.nan])))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_within_groups_equals_lexsort(dtype):
    rng = np.random.default_rng(3)
    n = 5000
    keys = rng.integers(0, 40, n)
    scores = rng.choice([-0.0, 0.0, -1.5, 1e-30, -1e-30, np.inf, -np.inf, 0.25, 0.5, 3.0], n)
    scores = np.where(rng.random(n) < 0.5, scores, rng.standard_normal(n)).astype(dtype)
    want = np.lexsort((-scores.astype(np.float64), keys))
    np.testing.assert_array_equal(rank_within_groups(keys, scores), want)
    big = keys + 2**40  # not packable: lexsort path
    np.testing.assert_array_equal(rank_within_groups(big, scores), want)
    assert rank_within_groups(np.zeros(0, np.int64), np.zeros(0)).tolist() == []
