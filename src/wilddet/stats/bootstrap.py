"""Paired bootstrap confidence intervals of per-class AP differences over val images.

Shapes: ``I`` val images, ``B`` bootstrap replicates, ``C`` classes, ``E`` ranked entries of one
run (scored detections and group-of TP entries, as the challenge metric ranks them), ``M``
(hierarchy-expanded) ground-truth boxes.

A replicate draws I images with replacement (multinomial counts n_b[k], Σ_k n_b[k] = I); two
runs scored on the same val images are resampled with the *same* counts, so their difference is
paired. The AP of a replicate is the challenge AP of the data set in which image k appears
n_b[k] times. The matching of the metric is per image, so every entry keeps its outcome; with
the m = n_b[image] copies of an entry ranked next to each other (ties between *different*
entries keep the metric's order):

    G_c        = Σ_{gt of c} m · w_gt                     (w_gt = 1, group-of boxes their weight)
    cum_tp[k]  = Σ_{j <= k} m_j w_j                       (w_j = 0 for a false positive)
    cum_fp[k]  = Σ_{j <= k} m_j [w_j <= 0]
    prec[k]    = cum_tp[k] / (cum_tp[k] + cum_fp[k])      (0 before the first counted entry)
    AP_c       = Σ_k (m_k w_k / G_c) · max_{j >= k} prec[j]          (NaN when G_c = 0)

This is the metric's all-point AP (``evaluation.ap``) of the expanded data set exactly: inside a
block of copies of one TP entry precision only rises, so each copy's envelope is the block end's
(and a FP block never lifts an earlier envelope). Counts of all ones reproduce the metric's AP.
It is written here, batched over replicates as [B, E_c] arrays, because the metric's AP takes
one unweighted ranked list at a time (and ``stats`` does not import ``evaluation``).

Intervals are bias-corrected percentile intervals (Efron & Tibshirani 1993, §14.3, the BCa
interval without the acceleration term) of the replicates θ_b of a statistic with value θ on the
data (an AP, a mean AP, or a paired difference d_b = AP_b(run 2) - AP_b(run 1)):

    z0   = Φ^-1( (#{θ_b < θ} + #{θ_b = θ} / 2) / B )        (clipped to [1/B, 1 - 1/B])
    low  = quantile of θ_b at Φ(2 z0 + z_{a/2}),  high = at Φ(2 z0 + z_{1-a/2})   (level 1 - a)

The correction matters here: the AP's monotone envelope (a max over later precisions) makes
resampled APs higher than the AP of the data on average, so plain percentiles sit too high.
With z0 = 0 (θ the replicates' median) it is the plain percentile interval. A class mean over a
group is averaged per replicate over the group's classes that have ground truth in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

_CHUNK_CELLS = 2_000_000  # replicate x entry cells per block: ~16 MB per float64 array


@dataclass(frozen=True)
class RankedOutcomes:
    """One run's scored entries and the ground truth they were matched against.

    classes, images [E] int64, scores [E] float64, weights [E] float64 (0 FP, 1 TP,
    group-of weight for a group-of TP entry), in the metric's ranking order within a class
    (stable: equal scores keep this order); gt_classes, gt_images [M] int64, gt_weights [M]
    float64 (1, or the group-of weight). Image codes are 0..I-1 of the evaluated images."""

    num_images: int
    classes: np.ndarray
    images: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    gt_classes: np.ndarray
    gt_images: np.ndarray
    gt_weights: np.ndarray


@dataclass(frozen=True)
class Interval:
    """point [K] value on the data as they are; low, high [K] the bias-corrected interval;
    replicates [B, K] the bootstrap differences (NaN where a replicate has no ground truth)."""

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray
    replicates: np.ndarray


def resample_counts(num_images: int, num_replicates: int, seed: int) -> np.ndarray:
    """[B, I] int32 multinomial counts: replicate b holds image k counts[b, k] times (Σ = I)."""
    if num_images < 1 or num_replicates < 1:
        raise ValueError("need >= 1 image and >= 1 replicate")
    rng = np.random.default_rng([seed, 0xB007])
    draws = rng.integers(0, num_images, size=(num_replicates, num_images))  # [B, I]
    counts = np.zeros((num_replicates, num_images), dtype=np.int32)
    np.add.at(counts, (np.repeat(np.arange(num_replicates), num_images), draws.ravel()), 1)
    return counts


def _class_ap(scores, weights, images, gt_mass, counts) -> np.ndarray:
    """[B] AP of one class (formula in the module docstring); gt_mass [B] = G_c."""
    order = np.argsort(-scores, kind="stable")
    w, img = weights[order], images[order]
    m = counts[:, img].astype(np.float64)                    # [B, E_c]
    cum_tp = np.cumsum(m * w, axis=1)                        # [B, E_c]
    cum_fp = np.cumsum(m * (w <= 0), axis=1)
    total = cum_tp + cum_fp
    prec = np.divide(cum_tp, total, out=np.zeros_like(cum_tp), where=total > 0)
    envelope = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
    area = (m * w * envelope).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gt_mass > 0, area / np.where(gt_mass > 0, gt_mass, 1.0), np.nan)


def bootstrap_ap(outcomes: RankedOutcomes, counts: np.ndarray, num_classes: int) -> np.ndarray:
    """[B, C] AP of every class in every replicate of ``counts`` [B, I] (NaN: no ground truth
    in the replicate)."""
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] != outcomes.num_images:
        raise ValueError(f"counts must be [B, {outcomes.num_images}], got {counts.shape}")
    gt_mass = np.zeros((counts.shape[0], num_classes))
    for c in np.unique(outcomes.gt_classes):
        sel = outcomes.gt_classes == c
        gt_mass[:, c] = counts[:, outcomes.gt_images[sel]] @ outcomes.gt_weights[sel]
    ap = np.full((counts.shape[0], num_classes), np.nan)
    by_class = np.argsort(outcomes.classes, kind="stable")
    bounds = np.searchsorted(outcomes.classes[by_class], np.arange(num_classes + 1))
    for c in range(num_classes):
        rows = by_class[bounds[c]:bounds[c + 1]]
        if len(rows) == 0:
            ap[:, c] = np.where(gt_mass[:, c] > 0, 0.0, np.nan)
            continue
        step = max(1, _CHUNK_CELLS // len(rows))  # replicates per [b, E_c] block (memory)
        for lo in range(0, counts.shape[0], step):
            ap[lo:lo + step, c] = _class_ap(outcomes.scores[rows], outcomes.weights[rows],
                                            outcomes.images[rows], gt_mass[lo:lo + step, c],
                                            counts[lo:lo + step])
    return ap


def point_ap(outcomes: RankedOutcomes, num_classes: int) -> np.ndarray:
    """[C] AP on the data as they are (every image once): the challenge metric's AP."""
    return bootstrap_ap(outcomes, np.ones((1, outcomes.num_images), np.int32), num_classes)[0]


def _intervals(values: np.ndarray, point: np.ndarray, level: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Columnwise bias-corrected percentile interval (module docstring) of replicates [B, K]
    around ``point`` [K], ignoring NaN replicates (NaN for an all-NaN column or NaN point)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    normal = NormalDist()
    z_tail = normal.inv_cdf((1 - level) / 2)  # < 0
    low = np.full(values.shape[1], np.nan)
    high = np.full(values.shape[1], np.nan)
    for k in range(values.shape[1]):
        reps = values[:, k][~np.isnan(values[:, k])]
        if len(reps) == 0 or np.isnan(point[k]):
            continue
        z0 = 0.0  # a constant statistic (or one replicate): nothing to correct
        if len(reps) > 1 and not np.all(reps == reps[0]):
            below = (np.count_nonzero(reps < point[k])
                     + 0.5 * np.count_nonzero(reps == point[k])) / len(reps)
            z0 = normal.inv_cdf(float(np.clip(below, 1 / len(reps), 1 - 1 / len(reps))))
        q = [normal.cdf(2 * z0 + z_tail) * 100, normal.cdf(2 * z0 - z_tail) * 100]
        low[k], high[k] = np.percentile(reps, q)
    return low, high


def paired_class_differences(ap_first: np.ndarray, ap_second: np.ndarray,
                             point_first: np.ndarray, point_second: np.ndarray,
                             level: float = 0.95) -> Interval:
    """Per class: point = point_second - point_first [C]; interval of the paired replicate
    differences ap_second - ap_first ([B, C] each, from the same ``resample_counts``)."""
    diff = np.asarray(ap_second, dtype=np.float64) - np.asarray(ap_first, dtype=np.float64)
    point = np.asarray(point_second, dtype=np.float64) - np.asarray(point_first, dtype=np.float64)
    low, high = _intervals(diff, point, level)
    return Interval(point, low, high, diff)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[..., C] -> [...]: mean over the masked classes that are not NaN (NaN if none)."""
    sub = values[..., mask]
    ok = ~np.isnan(sub)
    n = ok.sum(axis=-1)
    total = np.where(ok, sub, 0.0).sum(axis=-1)
    return np.divide(total, n, out=np.full(total.shape, np.nan), where=n > 0)


def group_mean_differences(ap_first: np.ndarray, ap_second: np.ndarray,
                           point_first: np.ndarray, point_second: np.ndarray,
                           groups: dict[str, np.ndarray], level: float = 0.95
                           ) -> dict[str, Interval]:
    """Per group (name -> [C] bool mask): the difference of the two runs' mean AP over the
    group's classes, and its paired percentile interval. A class counts in a replicate when
    both runs have its AP there (the same ground truth, so both or neither)."""
    out = {}
    for name, mask in groups.items():
        mask = np.asarray(mask, dtype=bool)
        reps = _masked_mean(ap_second, mask) - _masked_mean(ap_first, mask)  # [B]
        point = np.asarray([_masked_mean(point_second, mask) - _masked_mean(point_first, mask)])
        low, high = _intervals(reps[:, None], point, level)
        out[name] = Interval(point, low, high, reps[:, None])
    return out


def mean_intervals(ap: np.ndarray, point: np.ndarray, groups: dict[str, np.ndarray],
                   level: float = 0.95) -> dict[str, Interval]:
    """Per group: one run's mean AP (point) and its percentile interval over replicates."""
    out = {}
    for name, mask in groups.items():
        mask = np.asarray(mask, dtype=bool)
        reps = _masked_mean(ap, mask)
        value = np.asarray([_masked_mean(point, mask)])
        low, high = _intervals(reps[:, None], value, level)
        out[name] = Interval(value, low, high, reps[:, None])
    return out
