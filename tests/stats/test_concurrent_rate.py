"""The concurrent-rate matrix r from confusion counts."""

import numpy as np

from wilddet.data.hierarchy import parse_hierarchy
from wilddet.data.records import ClassList
from wilddet.stats.concurrency import add_hierarchy_pairs, concurrent_rate


def test_rate_hand_worked():
    counts = np.array([[0, 11, 0, 3], [11, 0, 0, 0], [0, 0, 0, 0], [3, 0, 0, 0]])
    source = np.array([71, 17, 0, 2])  # Flashlight / Torch of Table 2; class 2 has no box
    r = concurrent_rate(counts, source)
    assert r.dtype == np.float32 and r.shape == (4, 4)
    assert r[0, 1] == np.float32(11 / 71) and r[1, 0] == np.float32(11 / 17)
    assert r[3, 0] == 1.0  # 3 / 2 capped at 1
    assert r[0, 3] == np.float32(3 / 71)
    assert np.all(r[2] == 0) and np.all(np.diag(r) == 0)
    uncapped = concurrent_rate(counts, source, cap=np.inf)
    assert uncapped[3, 0] == 1.5


def test_diagonal_is_zero_even_if_counts_have_one():
    r = concurrent_rate(np.array([[5, 1], [1, 5]]), np.array([10, 10]))
    np.testing.assert_array_equal(r, np.array([[0, 0.1], [0.1, 0]], np.float32))


def test_hierarchy_pairs():
    tree = {"LabelName": "/m/0bl9f", "Subcategory": [
        {"LabelName": "a",
         "Subcategory": [{"LabelName": "b", "Subcategory": [{"LabelName": "c"}]}]},
        {"LabelName": "d"}]}
    classes = ClassList(np.array(list("abcd"), object), np.array(list("ABCD"), object))
    h = parse_hierarchy(tree, classes)
    rate = np.zeros((4, 4), np.float32)
    rate[3, 0] = 0.25
    out = add_hierarchy_pairs(rate, h)
    want = np.array([[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 0], [0.25, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(out, want)
    assert rate[0, 1] == 0  # input untouched
