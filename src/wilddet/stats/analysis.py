"""The label analysis of a box table (method spec §1): everything ``wilddet analyze`` reports, as
numbers (the files are written by ``reports.analysis_files``).

Shapes: ``N`` box rows, ``I`` images, ``C`` classes, ``P`` confusion pairs.

Steps: group the boxes by image once; count boxes / images / group-of boxes per class (raw and,
with a hierarchy, expanded); count confusion boxes (IoU > threshold, ``stats.confusion``); keep
the pairs with ratio >= ``min_ratio``; r = ``concurrent_rate(confusion, source)``
(``stats.concurrency``), optionally with r = 1 between a class and its ancestors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wilddet.data.hierarchy import Hierarchy
from wilddet.data.records import BoxTable, ClassList, ImageLabelTable, rows_by_image
from wilddet.stats.concurrency import add_hierarchy_pairs, concurrent_rate
from wilddet.stats.confusion import (
    ConfusionPairs,
    confusion_pairs,
    count_confusion_pairs,
    source_box_counts,
)
from wilddet.stats.imbalance import (
    ClassCounts,
    ImbalanceSummary,
    MultiLabelSummary,
    class_counts,
    image_label_counts,
    imbalance_summary,
    multilabel_summary,
)


@dataclass(frozen=True)
class Analysis:
    """All results of one analysis. ``expanded`` / ``multilabel``: None without a hierarchy;
    ``image_labels``: (verified positive [C], verified negative [C]) label counts, or None."""

    classes: ClassList
    num_images: int
    counts: ClassCounts
    expanded: ClassCounts | None
    confusion_boxes: np.ndarray   # [C, C] int64
    source_boxes: np.ndarray      # [C] int64
    pairs: ConfusionPairs
    rate: np.ndarray              # [C, C] float32
    imbalance: ImbalanceSummary
    multilabel: MultiLabelSummary | None
    image_labels: tuple[np.ndarray, np.ndarray] | None
    iou_threshold: float
    min_ratio: float


def analyze_tables(boxes: BoxTable, classes: ClassList, hierarchy: Hierarchy | None = None,
                   image_labels: ImageLabelTable | None = None, *, iou_threshold: float = 0.9,
                   min_ratio: float = 0.1, exclude_group_of: bool = False,
                   counting: str = "box-pairs", hierarchy_pairs: bool = False,
                   progress: Callable[[int], None] | None = None,
                   step: Callable[[str], None] | None = None) -> Analysis:
    """Analyse in-memory tables. ``progress(done_images)`` follows the pair count; ``step(text)``
    announces each phase (both optional, for the CLI). ``hierarchy_pairs`` needs ``hierarchy``."""
    step = step or (lambda text: None)
    num_classes, num_images = len(classes), boxes.num_images
    step("grouping boxes by image")
    grouping = rows_by_image(boxes.image_codes, num_images)
    step("counting boxes and images per class")
    counts = class_counts(boxes.label_codes, boxes.image_codes, boxes.is_group_of, num_classes,
                          num_images, grouping=grouping)
    expanded = None if hierarchy is None else class_counts(
        boxes.label_codes, boxes.image_codes, boxes.is_group_of, num_classes, num_images,
        hierarchy, grouping=grouping)
    keep = ~boxes.is_group_of if exclude_group_of else None
    step(f"counting confusion pairs (IoU > {iou_threshold})")
    confusion = count_confusion_pairs(boxes.boxes_norm, boxes.label_codes, boxes.image_codes,
                                      num_images, num_classes, iou_threshold, rule=counting,
                                      keep=keep, grouping=grouping, progress=progress)
    source = source_box_counts(boxes.label_codes, num_classes, keep)
    rate = concurrent_rate(confusion, source)
    if hierarchy_pairs:
        rate = add_hierarchy_pairs(rate, hierarchy)
    labels = None if image_labels is None else image_label_counts(
        image_labels.label_codes, image_labels.confidence, num_classes)
    return Analysis(
        classes=classes, num_images=num_images, counts=counts, expanded=expanded,
        confusion_boxes=confusion, source_boxes=source,
        pairs=confusion_pairs(confusion, source, min_ratio), rate=rate,
        imbalance=imbalance_summary(counts.boxes),
        multilabel=None if hierarchy is None else multilabel_summary(counts.boxes, hierarchy),
        image_labels=labels, iou_threshold=iou_threshold, min_ratio=min_ratio)
