"""Frequency-group AP: per-class APs averaged over classes grouped by training image counts.

Shapes: ``C`` classes, ``G`` groups.

Two groupings of the classes by ``n_c`` = number of training images with a box of class c:

- LVIS's (Gupta et al. 2019): r ``n_c <= 10``, c ``10 < n_c <= 100``, f ``n_c > 100``
  (``data.coco.frequency``; ``n_c = 0`` counts as rare);
- EQLv2's for Open Images (Tan et al. 2021): the classes sorted by ``n_c`` (ascending, ties by
  class code) and cut into 5 bins of equal class count (``np.array_split``: sizes differ by at
  most one), bin 1 the rarest.

``AP_g = mean over classes c in g with an AP (not NaN) of AP_c``; NaN when none has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wilddet.data.coco.frequency import FREQUENCIES, frequency_of
from wilddet.evaluation.ap import mean_ap

NUM_EQUAL_BINS = 5


@dataclass(frozen=True)
class GroupAP:
    """One group: name, ap (NaN: no class with AP), num_classes, num_classes_with_ap,
    min_images / max_images (the range of n_c over its classes; -1 for an empty group)."""

    name: str
    ap: float
    num_classes: int
    num_classes_with_ap: int
    min_images: int
    max_images: int


def _group(name: str, members: np.ndarray, ap: np.ndarray, counts: np.ndarray) -> GroupAP:
    values = ap[members]
    return GroupAP(name, mean_ap(values), len(members),
                   int((~np.isnan(values)).sum()), int(counts[members].min()) if len(members) else -1,
                   int(counts[members].max()) if len(members) else -1)


def lvis_group_ap(ap: np.ndarray, train_images: np.ndarray) -> list[GroupAP]:
    """[3] groups r, c, f of ``ap`` [C] by ``train_images`` [C]."""
    ap = np.asarray(ap, np.float64)
    counts = np.asarray(train_images, np.int64)
    freq = np.asarray(frequency_of(counts))
    return [_group(f, np.flatnonzero(freq == f), ap, counts) for f in FREQUENCIES]


def equal_count_bins(train_images: np.ndarray, num_bins: int = NUM_EQUAL_BINS) -> np.ndarray:
    """[C] bin index 0..num_bins-1 (0 = rarest) of each class."""
    counts = np.asarray(train_images, np.int64)
    order = np.argsort(counts, kind="stable")
    bins = np.empty(len(counts), np.int64)
    for b, members in enumerate(np.array_split(order, num_bins)):
        bins[members] = b
    return bins


def binned_ap(ap: np.ndarray, train_images: np.ndarray,
              num_bins: int = NUM_EQUAL_BINS) -> list[GroupAP]:
    """[num_bins] groups "AP1" (rarest) .. "AP<num_bins>" of ``ap`` [C]."""
    ap = np.asarray(ap, np.float64)
    counts = np.asarray(train_images, np.int64)
    bins = equal_count_bins(counts, num_bins)
    return [_group(f"AP{b + 1}", np.flatnonzero(bins == b), ap, counts) for b in range(num_bins)]
