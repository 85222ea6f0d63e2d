"""Paired bootstrap over val images: the AP of a replicate against the metric's AP of the
expanded data set (brute force), and the intervals against hand-worked cases."""

import numpy as np
import pytest

from wilddet.evaluation.ap import average_precision
from wilddet.stats.bootstrap import (
    RankedOutcomes,
    bootstrap_ap,
    group_mean_differences,
    mean_intervals,
    paired_class_differences,
    point_ap,
    resample_counts,
)


def _random_outcomes(rng, num_images=12, num_classes=3, num_entries=60, num_gt=25):
    scores = rng.choice(np.linspace(0.05, 0.95, 19), size=num_entries)  # ties on purpose
    weights = (rng.random(num_entries) < 0.5).astype(float)
    weights[rng.random(num_entries) < 0.1] = 0.7  # group-of TP entries with their weight
    gt_w = np.where(rng.random(num_gt) < 0.2, 0.7, 1.0)
    return RankedOutcomes(num_images, rng.integers(0, num_classes, num_entries),
                          rng.integers(0, num_images, num_entries), scores, weights,
                          rng.integers(0, num_classes, num_gt),
                          rng.integers(0, num_images, num_gt), gt_w)


def _brute_force_ap(o: RankedOutcomes, counts: np.ndarray, c: int) -> float:
    """The metric's AP of the data set holding image k counts[k] times: each entry copied
    counts[image] times, copies next to each other."""
    rows = np.flatnonzero(o.classes == c)
    rows = rows[np.argsort(-o.scores[rows], kind="stable")]
    scores, weights = [], []
    for r in rows:
        scores += [o.scores[r]] * int(counts[o.images[r]])
        weights += [o.weights[r]] * int(counts[o.images[r]])
    gt = float(sum(counts[i] * w for k, i, w in zip(o.gt_classes, o.gt_images, o.gt_weights)
                   if k == c))
    return average_precision(np.asarray(scores), np.asarray(weights), gt)


def test_counts_of_ones_give_the_metric_ap():
    rng = np.random.default_rng(0)
    o = _random_outcomes(rng)
    ap = point_ap(o, 4)
    for c in range(3):
        rows = np.flatnonzero(o.classes == c)
        gt = o.gt_weights[o.gt_classes == c].sum()
        assert ap[c] == pytest.approx(average_precision(o.scores[rows], o.weights[rows], gt),
                                      abs=1e-12)
    assert np.isnan(ap[3])  # no ground truth


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replicates_equal_the_metric_on_the_resampled_set(seed):
    rng = np.random.default_rng(seed)
    o = _random_outcomes(rng)
    counts = resample_counts(o.num_images, 20, seed)
    ap = bootstrap_ap(o, counts, 3)
    for b in range(20):
        for c in range(3):
            want = _brute_force_ap(o, counts[b], c)
            assert (np.isnan(want) and np.isnan(ap[b, c])) or ap[b, c] == pytest.approx(
                want, abs=1e-12)


def test_resample_counts_are_multinomial_and_seeded():
    a = resample_counts(50, 200, 7)
    assert a.shape == (200, 50) and (a.sum(axis=1) == 50).all()
    assert (a == resample_counts(50, 200, 7)).all() and (a != resample_counts(50, 200, 8)).any()
    assert abs(a.mean() - 1.0) < 1e-12 and 0.8 < a.var() < 1.2  # Binomial(I, 1/I) per cell


def test_identical_runs_have_a_zero_interval():
    o = _random_outcomes(np.random.default_rng(4))
    counts = resample_counts(o.num_images, 100, 0)
    ap, point = bootstrap_ap(o, counts, 3), point_ap(o, 3)
    diff = paired_class_differences(ap, ap, point, point)
    assert (diff.point == 0).all() and (diff.low == 0).all() and (diff.high == 0).all()


def test_a_run_better_on_every_image_has_a_positive_interval():
    # run 1: on each image one FP above the TP of class 0; run 2: the TP alone
    num_images = 30
    images = np.arange(num_images)
    gt = (np.zeros(num_images, np.int64), images, np.ones(num_images))
    run1 = RankedOutcomes(num_images, np.zeros(2 * num_images, np.int64),
                          np.concatenate([images, images]),
                          np.concatenate([np.full(num_images, 0.9), np.full(num_images, 0.5)]),
                          np.concatenate([np.zeros(num_images), np.ones(num_images)]), *gt)
    run2 = RankedOutcomes(num_images, np.zeros(num_images, np.int64), images,
                          np.full(num_images, 0.5), np.ones(num_images), *gt)
    counts = resample_counts(num_images, 200, 0)
    d = paired_class_differences(bootstrap_ap(run1, counts, 1), bootstrap_ap(run2, counts, 1),
                                 point_ap(run1, 1), point_ap(run2, 1))
    # AP(run 1) = 0.5 exactly in every replicate (all FPs rank above all TPs), AP(run 2) = 1
    assert d.point[0] == pytest.approx(0.5) and d.low[0] == pytest.approx(0.5)
    assert d.high[0] == pytest.approx(0.5)


def test_group_means_average_classes_per_replicate():
    ap1 = np.array([[0.2, 0.4, np.nan], [0.1, 0.5, 0.3]])
    ap2 = np.array([[0.3, 0.6, np.nan], [0.2, 0.5, 0.9]])
    p1, p2 = np.array([0.2, 0.4, 0.3]), np.array([0.3, 0.6, 0.6])
    groups = {"ab": np.array([True, True, False]), "c": np.array([False, False, True])}
    g = group_mean_differences(ap1, ap2, p1, p2, groups, level=0.5)
    assert g["ab"].replicates[:, 0] == pytest.approx([0.15, 0.05])
    assert g["ab"].point[0] == pytest.approx(0.15)
    assert np.isnan(g["c"].replicates[0, 0]) and g["c"].replicates[1, 0] == pytest.approx(0.6)
    assert g["c"].low[0] == pytest.approx(0.6) == g["c"].high[0]  # NaN replicate left out
    m = mean_intervals(ap1, p1, groups, level=0.5)
    assert m["ab"].point[0] == pytest.approx(0.3)
    assert m["ab"].low[0] == pytest.approx(0.3) and m["ab"].high[0] == pytest.approx(0.3)


def test_bad_arguments():
    o = _random_outcomes(np.random.default_rng(5))
    with pytest.raises(ValueError, match="counts must be"):
        bootstrap_ap(o, np.ones((3, o.num_images + 1)), 3)
    with pytest.raises(ValueError, match="level"):
        paired_class_differences(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(1), np.zeros(1),
                                 level=1.5)
    with pytest.raises(ValueError, match="replicate"):
        resample_counts(10, 0, 0)


def test_replicate_blocks_do_not_change_the_result(monkeypatch):
    from wilddet.stats import bootstrap

    o = _random_outcomes(np.random.default_rng(9))
    counts = resample_counts(o.num_images, 37, 1)
    whole = bootstrap_ap(o, counts, 3)
    monkeypatch.setattr(bootstrap, "_CHUNK_CELLS", 25)  # blocks of 1-2 replicates
    assert np.allclose(bootstrap_ap(o, counts, 3), whole, rtol=0, atol=1e-12, equal_nan=True)


def test_intervals_correct_the_bias_of_skewed_replicates():
    from statistics import NormalDist

    from wilddet.stats.bootstrap import _intervals

    reps = (np.arange(1, 101) / 100.0)[:, None]  # [B=100, 1]
    # the point at the median: the plain percentile interval
    low, high = _intervals(reps, np.array([0.505]), 0.9)
    assert low[0] == pytest.approx(np.percentile(reps, 5)) and high[0] == pytest.approx(
        np.percentile(reps, 95))
    # the point at the 25th percentile (25 replicates below): the interval moves down
    z0 = NormalDist().inv_cdf(0.25)
    z = NormalDist().inv_cdf(0.05)
    low, high = _intervals(reps, np.array([0.255]), 0.9)
    assert low[0] == pytest.approx(np.percentile(reps, 100 * NormalDist().cdf(2 * z0 + z)))
    assert high[0] == pytest.approx(np.percentile(reps, 100 * NormalDist().cdf(2 * z0 - z)))
    assert high[0] < np.percentile(reps, 95)
