"""Multi-hot RoI targets (spec §2.3) on hand-worked boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wilddet.data.hierarchy import Hierarchy
from wilddet.model.targets import ancestor_matrix, gt_label_sets, roi_multi_hot


def small_hierarchy() -> Hierarchy:
    # class codes: 0 Person, 1 Man (child of Person), 2 Car, 3 Boy (child of Man)
    anc = (np.array([], np.int32), np.array([0], np.int32), np.array([], np.int32),
           np.array([0, 1], np.int32))
    desc = (np.array([1, 3], np.int32), np.array([3], np.int32), np.array([], np.int32),
            np.array([], np.int32))
    return Hierarchy(anc, desc, np.array([1, 2, 1, 3], np.int32), ())


def as_sets(mask: torch.Tensor) -> list[set[int]]:
    return [set(torch.nonzero(row).squeeze(1).tolist()) for row in mask]


def test_ancestor_matrix_shifts_codes_to_model_labels():
    m = ancestor_matrix(small_hierarchy(), 4)
    assert m.shape == (5, 5) and m.dtype == torch.bool
    # model labels: 1 Person, 2 Man, 3 Car, 4 Boy
    assert as_sets(m) == [set(), set(), {1}, set(), {1, 2}]
    with pytest.raises(ValueError, match="classes"):
        ancestor_matrix(small_hierarchy(), 5)


def test_gt_label_sets_hand_worked():
    boxes = torch.tensor([
        [0, 0, 10, 10.0],    # A label 1
        [0, 0, 10, 10.5],    # B label 2: IoU(A, B) = 100 / 105 = 0.952
        [0, 0, 10, 11.5],    # C label 3: IoU(A, C) = 100 / 115 = 0.870, IoU(B, C) = 0.913
        [20, 20, 30, 30.0],  # D label 1: alone
        [0, 0, 9, 10.0],     # E label 4: IoU(A, E) = 90 / 100 = 0.9, not > 0.9
    ])
    labels = torch.tensor([1, 2, 3, 1, 4])
    sets = gt_label_sets(boxes, labels, 5)
    # pairwise to the matched box, not transitive: A and C are not one object
    assert as_sets(sets) == [{1, 2}, {1, 2, 3}, {2, 3}, {1}, {4}]
    assert as_sets(gt_label_sets(boxes, labels, 5, iou_thresh=0.85)) == [
        {1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3}, {1}, {1, 2, 4}]


def test_gt_label_sets_with_ancestors_and_degenerate_box():
    anc = ancestor_matrix(small_hierarchy(), 4)
    boxes = torch.tensor([[0, 0, 10, 10.0], [0, 0, 10, 10.0], [5, 5, 5, 5.0], [50, 50, 60, 60.0]])
    labels = torch.tensor([4, 3, 2, 1])  # Boy and Car on one box; a zero-area Man box
    sets = gt_label_sets(boxes, labels, 5, ancestors=anc)
    assert as_sets(sets) == [{4, 3, 2, 1}, {4, 3, 2, 1}, {2, 1}, {1}]
    assert gt_label_sets(boxes[:0], labels[:0], 5).shape == (0, 5)


def test_roi_multi_hot():
    gt_sets = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 1], [0, 1, 0, 1]], dtype=torch.bool)
    labels = torch.tensor([0, 2, 3, 0, 1])
    matched = torch.tensor([0, 0, 2, 1, 2])  # background rows' matches are ignored
    out = roi_multi_hot(labels, matched, gt_sets)
    assert as_sets(out) == [{0}, {1, 2}, {1, 3}, {0}, {1, 3}]
