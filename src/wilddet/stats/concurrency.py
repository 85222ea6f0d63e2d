"""The concurrent-rate matrix r that the concurrent softmax consumes (method spec §1, §2).

Shapes: ``C`` classes (codes 0..C-1 of the class list; the loss adds the background itself).

    r[i, j] = min(cap, confusion_boxes(i, j) / source_boxes(i))    for i != j
    r[i, i] = 0;  r[i, :] = 0 when class i has no box

The cap (default 1, an interpretation) keeps 1 - r_ij >= 0 in the loss; with the box-pair rule a
ratio can exceed 1 (one i-box overlapping several j-boxes).
"""

from __future__ import annotations

import numpy as np

from wilddet.data.hierarchy import Hierarchy


def concurrent_rate(counts: np.ndarray, source_boxes: np.ndarray, cap: float = 1.0) -> np.ndarray:
    """rate [C, C] float32 from confusion_boxes counts [C, C] and source_boxes [C] (formula
    above)."""
    counts = np.asarray(counts, dtype=np.float64)
    den = np.asarray(source_boxes, dtype=np.float64)[:, None]  # [C, 1]
    rate = np.divide(counts, den, out=np.zeros_like(counts), where=den > 0)
    np.fill_diagonal(rate, 0.0)
    np.minimum(rate, cap, out=rate)
    return rate.astype(np.float32)


def add_hierarchy_pairs(rate: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """A copy of rate [C, C] with r[child, ancestor] = r[ancestor, child] = 1 for every class and
    each of its ancestors (method spec §1, optional; off by default because the hierarchy already
    enters through multi-hot targets)."""
    out = np.array(rate, dtype=np.float32, copy=True)
    anc = hierarchy.ancestor_matrix()  # [C, C] bool, anc[c, a]: a is an ancestor of c
    out[anc | anc.T] = 1.0
    np.fill_diagonal(out, 0.0)
    return out
