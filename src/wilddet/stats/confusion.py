"""Implicit multi-labels: confusion pairs (method spec §1, seed Table 2).

Shapes: ``N`` box rows, ``I`` images, ``C`` classes, ``P`` listed pairs, ``T`` worker threads.

Within one image, two boxes of *different* classes whose IoU is strictly greater than a threshold
(0.9 in the paper) form a confusion pair. For an ordered pair of classes (source i, confusion j):

    source_boxes(i)       = number of boxes of class i (after the optional group-of filter)
    confusion_boxes(i, j) = counted by ``rule``:
        "box-pairs"     (default, Table 2): the number of (i-box, j-box) pairs in one image with
                        IoU > t; symmetric, confusion_boxes(i, j) == confusion_boxes(j, i)
        "source-boxes"  the number of distinct i-boxes having at least one such j-box
    ratio(i, j)           = confusion_boxes(i, j) / source_boxes(i)

IoU is computed in float64 on the normalized (xmin, ymin, xmax, ymax) coordinates, continuous
(no +1): ``inter / (area_a + area_b - inter)``. A box is never paired with itself and two boxes
of the same class never pair.

The per-image all-pairs IoU is a hand-written numba kernel over rows grouped by image (no library
counts pairs per image without materialising them: torchvision's ``box_iou`` would need one call
per image, a self-join would hold every pair). Counts accumulate into one [C, C] int64 matrix per
thread, summed at the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np

from wilddet.data.csr import offsets_of_codes
from wilddet.data.records import rows_by_image

CountingRule = Literal["box-pairs", "source-boxes"]
COUNTING_RULES: tuple[str, ...] = ("box-pairs", "source-boxes")


@numba.njit(cache=True, nogil=True)
def _count_images(boxes, labels, offsets, img_lo, img_hi, threshold, distinct, counts, stamp):
    """Add the pairs of images [img_lo, img_hi) to ``counts`` [C, C].

    boxes [N, 4] float32 and labels [N] int32 are grouped by image (rows of image k are
    offsets[k]:offsets[k+1]). ``stamp`` [C] int64 remembers, per confusion class, the last source
    row that counted it ("source-boxes" rule); row indices are unique so it never needs a reset.
    """
    for im in range(img_lo, img_hi):
        start = offsets[im]
        end = offsets[im + 1]
        if end - start < 2:
            continue
        for a in range(start, end):
            la = labels[a]
            ax0 = np.float64(boxes[a, 0])
            ay0 = np.float64(boxes[a, 1])
            ax1 = np.float64(boxes[a, 2])
            ay1 = np.float64(boxes[a, 3])
            area_a = (ax1 - ax0) * (ay1 - ay0)
            first = start if distinct else a + 1
            for b in range(first, end):
                lb = labels[b]
                if lb == la:  # same class (and b == a) never pairs
                    continue
                bx0 = np.float64(boxes[b, 0])
                bx1 = np.float64(boxes[b, 2])
                iw = min(ax1, bx1) - max(ax0, bx0)
                if iw <= 0.0:
                    continue
                by0 = np.float64(boxes[b, 1])
                by1 = np.float64(boxes[b, 3])
                ih = min(ay1, by1) - max(ay0, by0)
                if ih <= 0.0:
                    continue
                inter = iw * ih
                union = area_a + (bx1 - bx0) * (by1 - by0) - inter
                if inter / union > threshold:
                    if distinct:
                        if stamp[lb] != a:
                            stamp[lb] = a
                            counts[la, lb] += 1
                    else:
                        counts[la, lb] += 1
                        counts[lb, la] += 1


@numba.njit(cache=True, parallel=True)
def _count_parallel(boxes, labels, offsets, bounds, threshold, distinct, counts, stamps):
    """Thread t handles images bounds[t]:bounds[t+1] into its own counts[t] [C, C]."""
    for t in numba.prange(len(bounds) - 1):
        _count_images(boxes, labels, offsets, bounds[t], bounds[t + 1], threshold, distinct,
                      counts[t], stamps[t])


def _split_by_work(work_cum: np.ndarray, lo: int, hi: int, parts: int) -> np.ndarray:
    """Image boundaries [parts+1] cutting [lo, hi) into ``parts`` runs of about equal work.
    ``work_cum`` [I+1] is the cumulative per-image work (pairs to test)."""
    targets = np.linspace(work_cum[lo], work_cum[hi], parts + 1)
    bounds = np.searchsorted(work_cum, targets, side="left").astype(np.int64)
    bounds = np.clip(bounds, lo, hi)
    bounds[0], bounds[-1] = lo, hi
    return np.maximum.accumulate(bounds)


def count_confusion_pairs(boxes_norm: np.ndarray, label_codes: np.ndarray,
                          image_codes: np.ndarray, num_images: int, num_classes: int,
                          iou_threshold: float = 0.9, *, rule: CountingRule = "box-pairs",
                          keep: np.ndarray | None = None,
                          grouping: tuple[np.ndarray, np.ndarray] | None = None,
                          num_blocks: int | None = None,
                          progress: Callable[[int], None] | None = None) -> np.ndarray:
    """confusion_boxes [C, C] int64 (see the module docstring), zero diagonal.

    boxes_norm [N, 4] (xmin, ymin, xmax, ymax) normalized; label_codes [N] 0..C-1;
    image_codes [N] 0..I-1. ``keep`` [N] bool drops rows (e.g. ``~is_group_of``).
    ``grouping``: a precomputed ``rows_by_image(image_codes, num_images)`` to reuse.
    ``progress(num_images_done)`` is called after each of ``num_blocks`` blocks of images
    (default: about one block per 2M box pairs to test, at most 100; each block is one parallel
    launch, so tiny blocks would only add thread wake-ups).
    """
    if rule not in COUNTING_RULES:
        raise ValueError(f"rule must be one of {COUNTING_RULES}, got {rule!r}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    order, offsets = grouping if grouping is not None else rows_by_image(image_codes, num_images)
    if keep is not None:
        order = order[keep[order]]  # still grouped by image
        offsets = offsets_of_codes(image_codes[order], num_images)
    boxes = np.ascontiguousarray(boxes_norm[order], dtype=np.float32)  # [N', 4] grouped
    labels = np.ascontiguousarray(label_codes[order], dtype=np.int32)  # [N']

    sizes = np.diff(offsets)  # [I]
    work_cum = np.zeros(num_images + 1, dtype=np.float64)
    # work per image: box pairs to test, plus a constant for the per-image overhead
    np.cumsum(sizes.astype(np.float64) * (sizes - 1) / 2 + 4.0, out=work_cum[1:])
    if num_blocks is None:
        num_blocks = int(np.clip(work_cum[-1] // 2e6, 1, 100))

    threads = max(1, numba.get_num_threads())
    counts = np.zeros((threads, num_classes, num_classes), dtype=np.int64)  # [T, C, C]
    stamps = np.full((threads, num_classes), -1, dtype=np.int64)  # [T, C]
    block_bounds = _split_by_work(work_cum, 0, num_images, max(1, num_blocks))
    for lo, hi in itertools.pairwise(block_bounds):
        if hi > lo:
            bounds = _split_by_work(work_cum, int(lo), int(hi), threads)
            _count_parallel(boxes, labels, offsets, bounds, float(iou_threshold),
                            rule == "source-boxes", counts, stamps)
        if progress is not None:
            progress(int(hi))
    return counts.sum(axis=0)


def source_box_counts(label_codes: np.ndarray, num_classes: int,
                      keep: np.ndarray | None = None) -> np.ndarray:
    """source_boxes [C] int64: boxes per class (rows with ``keep`` [N] True only, if given)."""
    labels = label_codes if keep is None else label_codes[keep]
    return np.bincount(labels, minlength=num_classes).astype(np.int64)


@dataclass(frozen=True)
class ConfusionPairs:
    """P ordered pairs, sorted by ratio (largest first), ties by source then confusion code.

    source, confusion [P] int32 class codes; source_boxes, confusion_boxes [P] int64;
    ratio [P] float64 = confusion_boxes / source_boxes.
    """

    source: np.ndarray
    confusion: np.ndarray
    source_boxes: np.ndarray
    confusion_boxes: np.ndarray
    ratio: np.ndarray

    def __len__(self) -> int:
        return len(self.source)


def confusion_pairs(counts: np.ndarray, source_boxes: np.ndarray,
                    min_ratio: float = 0.1) -> ConfusionPairs:
    """The ordered pairs (i != j) with confusion_boxes > 0 and ratio >= ``min_ratio`` (inclusive,
    as Table 2 lists Winter melon -> Cucumber at exactly 4/40 = 0.1).

    counts [C, C] from ``count_confusion_pairs``; source_boxes [C]."""
    if min_ratio < 0:
        raise ValueError(f"min_ratio must be >= 0, got {min_ratio}")
    counts = np.asarray(counts)
    src_boxes = np.asarray(source_boxes, dtype=np.int64)
    src, conf = np.nonzero(counts > 0)
    src, conf = src[src != conf], conf[src != conf]
    num = counts[src, conf].astype(np.int64)
    den = src_boxes[src]
    ratio = num / np.maximum(den, 1)  # den > 0 whenever num > 0
    sel = ratio >= min_ratio
    src, conf, num, den, ratio = src[sel], conf[sel], num[sel], den[sel], ratio[sel]
    order = np.lexsort((conf, src, -ratio))
    return ConfusionPairs(src[order].astype(np.int32), conf[order].astype(np.int32),
                          den[order], num[order], ratio[order])
