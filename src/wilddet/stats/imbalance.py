"""Class imbalance and explicit multi-labels (method spec §1).

Shapes: ``N`` box rows, ``L`` image-label rows, ``I`` images, ``C`` classes, ``k`` listed classes.

- ``class_counts``: boxes, images (distinct images holding the class) and group-of boxes per class,
  raw or after hierarchy expansion (every box copied to each ancestor, ``hierarchy.expand_boxes``;
  counted without materialising the copies).
- ``imbalance_summary``: head / tail classes, imbalance ratio max/min over classes with boxes and
  the Gini coefficient of boxes per class, G = 2 Σ_i i x_(i) / (n Σ_i x_i) − (n + 1) / n with
  x_(1) <= ... <= x_(n) over all n classes (0 = uniform, → 1 = one class has everything).
- ``multilabel_summary``: how many boxes gain ancestor labels and the deepest label chains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from wilddet.data.hierarchy import Hierarchy
from wilddet.data.records import rows_by_image


@numba.njit(cache=True, nogil=True)
def _count_per_image(labels, groups, offsets, rel_offsets, rel_values, num_classes):
    """Rows grouped by image (offsets [I+1]); each row of class c counts for every class in
    rel_values[rel_offsets[c]:rel_offsets[c+1]] (c itself first, then its relatives).
    Returns boxes [C], images [C], group_of [C] int64."""
    boxes = np.zeros(num_classes, np.int64)
    images = np.zeros(num_classes, np.int64)
    group_of = np.zeros(num_classes, np.int64)
    last_image = np.full(num_classes, -1, np.int64)
    for im in range(len(offsets) - 1):
        for r in range(offsets[im], offsets[im + 1]):
            c = labels[r]
            for k in range(rel_offsets[c], rel_offsets[c + 1]):
                a = rel_values[k]
                boxes[a] += 1
                if groups[r]:
                    group_of[a] += 1
                if last_image[a] != im:
                    last_image[a] = im
                    images[a] += 1
    return boxes, images, group_of


@dataclass(frozen=True)
class ClassCounts:
    """Per class code [C] int64: boxes, images holding at least one such box, group-of boxes."""

    boxes: np.ndarray
    images: np.ndarray
    group_of_boxes: np.ndarray


def _self_and_ancestors(num_classes: int, hierarchy: Hierarchy | None):
    """CSR (offsets [C+1], values) of [c, ancestors(c)...] per class (just [c] without
    hierarchy)."""
    if hierarchy is None:
        return np.arange(num_classes + 1, dtype=np.int64), np.arange(num_classes, dtype=np.int32)
    return hierarchy.self_and_ancestors()


def class_counts(label_codes: np.ndarray, image_codes: np.ndarray, is_group_of: np.ndarray,
                 num_classes: int, num_images: int, hierarchy: Hierarchy | None = None,
                 grouping: tuple[np.ndarray, np.ndarray] | None = None) -> ClassCounts:
    """Counts per class of N boxes (label_codes, image_codes [N]); with ``hierarchy``, counts of the
    expanded boxes (each box also counts once for each ancestor of its class, as
    ``expand_boxes``). ``grouping``: a precomputed ``rows_by_image(image_codes, num_images)``."""
    if hierarchy is not None and hierarchy.num_classes != num_classes:
        raise ValueError(f"hierarchy has {hierarchy.num_classes} classes, expected {num_classes}")
    order, offsets = grouping if grouping is not None else rows_by_image(image_codes, num_images)
    rel_offsets, rel_values = _self_and_ancestors(num_classes, hierarchy)
    boxes, images, group_of = _count_per_image(
        np.ascontiguousarray(label_codes[order], dtype=np.int32),
        np.ascontiguousarray(is_group_of[order], dtype=np.bool_),
        offsets, rel_offsets, rel_values, num_classes)
    return ClassCounts(boxes, images, group_of)


def image_label_counts(label_codes: np.ndarray, confidence: np.ndarray,
                       num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(positive [C], negative [C]) int64: verified image-level labels per class (confidence
    1 / 0)."""
    pos = confidence == 1
    return (np.bincount(label_codes[pos], minlength=num_classes).astype(np.int64),
            np.bincount(label_codes[~pos], minlength=num_classes).astype(np.int64))


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts [n] (formula in the module docstring); 0 if all 0."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    rank = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * (rank * x).sum() / (n * total) - (n + 1) / n)


@dataclass(frozen=True)
class ImbalanceSummary:
    """head / tail: class codes [k] with the most / fewest boxes (tail: classes with >= 1 box,
    fewest first); ties by class code. imbalance_ratio = max / min boxes over classes with boxes
    (nan without boxes). gini over all classes."""

    num_classes: int
    num_boxes: int
    num_empty: int
    head: np.ndarray
    tail: np.ndarray
    imbalance_ratio: float
    gini: float
    median_boxes: float


def imbalance_summary(boxes_per_class: np.ndarray, k: int = 10) -> ImbalanceSummary:
    """Summary of boxes per class [C] (see ``ImbalanceSummary``)."""
    boxes = np.asarray(boxes_per_class, dtype=np.int64)
    codes = np.arange(len(boxes))
    by_desc = np.lexsort((codes, -boxes))
    present = np.flatnonzero(boxes > 0)
    by_asc = present[np.lexsort((present, boxes[present]))]
    ratio = float(boxes.max() / boxes[present].min()) if len(present) else float("nan")
    return ImbalanceSummary(
        num_classes=len(boxes), num_boxes=int(boxes.sum()), num_empty=int((boxes == 0).sum()),
        head=by_desc[:k].astype(np.int32), tail=by_asc[:k].astype(np.int32),
        imbalance_ratio=ratio, gini=gini(boxes),
        median_boxes=float(np.median(boxes)) if len(boxes) else float("nan"))


@dataclass(frozen=True)
class MultiLabelSummary:
    """Explicit multi-labels of the raw boxes under the hierarchy.

    boxes_with_ancestors: boxes whose class has >= 1 ancestor class (they gain labels);
    added_boxes: copies added by the expansion (Σ_c boxes[c] * |ancestors(c)|);
    labels_per_box [m+1] int64: labels_per_box[n] = boxes carrying n labels after expansion;
    deepest: class codes [k] with the most ancestors (ties by more boxes, then code); chains: per
    such class, its ancestors then itself, top first (fewest ancestors) - one root-to-class chain,
    or the union of several when the class sits under more than one parent.
    """

    num_boxes: int
    boxes_with_ancestors: int
    added_boxes: int
    labels_per_box: np.ndarray
    classes_with_ancestors: int
    deepest: np.ndarray
    chains: tuple[np.ndarray, ...]


def multilabel_summary(boxes_per_class: np.ndarray, hierarchy: Hierarchy,
                       k: int = 5) -> MultiLabelSummary:
    """Summary of boxes per class [C] under ``hierarchy`` (see ``MultiLabelSummary``)."""
    boxes = np.asarray(boxes_per_class, dtype=np.int64)
    num_anc = np.array([len(a) for a in hierarchy.ancestors], dtype=np.int64)  # [C]
    labels_per_box = np.bincount(num_anc + 1, weights=boxes,
                                 minlength=int(num_anc.max(initial=0)) + 2).astype(np.int64)
    codes = np.arange(len(boxes))
    deepest = np.lexsort((codes, -boxes, -num_anc))[:k]
    deepest = deepest[num_anc[deepest] > 0].astype(np.int32)
    chains = []
    for c in deepest:
        anc = hierarchy.ancestors[c]
        # an ancestor has fewer ancestors than its descendants: sorting by that count orders a chain
        chain = anc[np.lexsort((anc, num_anc[anc]))]
        chains.append(np.concatenate([chain, [c]]).astype(np.int32))
    return MultiLabelSummary(
        num_boxes=int(boxes.sum()), boxes_with_ancestors=int(boxes[num_anc > 0].sum()),
        added_boxes=int((boxes * num_anc).sum()), labels_per_box=labels_per_box,
        classes_with_ancestors=int((num_anc > 0).sum()), deepest=deepest, chains=tuple(chains))
