"""ClassImageIndex and the closed-form sampler probabilities against hand-worked values and
brute-force loops."""

import math

import numpy as np
import pytest

from wilddet.data.class_index import ClassImageIndex
from wilddet.data.hierarchy import Hierarchy, expand_boxes
from wilddet.data.records import BoxTable
from wilddet.sampling.probabilities import (
    class_probabilities,
    expected_class_share,
    non_balance_image_probabilities,
    repeat_factor_image_probabilities,
    repeat_factors,
    soft_balance_image_probabilities,
)

# Hand example: classes A=0, B=1, C=2, D=3 (never annotated); images
#   0: {A, B} (two A boxes), 1: {B}, 2: {A, C}, 3: no boxes.   N = (2, 2, 1, 0), I = 4.
HAND_IMAGES = np.array([0, 0, 0, 1, 2, 2], dtype=np.int32)
HAND_LABELS = np.array([0, 0, 1, 1, 2, 0], dtype=np.int32)


def hand_index():
    return ClassImageIndex.from_codes(HAND_IMAGES, HAND_LABELS, num_images=4, num_classes=4)


def random_codes(seed, num_images=60, num_classes=7, num_boxes=150):
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_classes + 1) ** 1.5
    labels = rng.choice(num_classes, num_boxes, p=weights / weights.sum()).astype(np.int32)
    images = rng.integers(0, num_images, num_boxes).astype(np.int32)
    return images, labels


def test_hand_index_csr():
    idx = hand_index()
    assert idx.images_per_class.tolist() == [2, 2, 1, 0]
    assert idx.classes_per_image.tolist() == [2, 1, 2, 0]
    assert idx.image_classes.tolist() == [0, 1, 1, 0, 2]
    assert idx.class_images.tolist() == [0, 2, 0, 1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_index_matches_brute_force_sets(seed):
    images, labels = random_codes(seed)
    idx = ClassImageIndex.from_codes(images, labels, 60, 7)
    for k in range(60):
        want = sorted({int(c) for i, c in zip(images, labels) if i == k})
        got = idx.image_classes[idx.image_offsets[k]:idx.image_offsets[k + 1]].tolist()
        assert got == want
    for c in range(7):
        want = sorted({int(i) for i, lab in zip(images, labels) if lab == c})
        got = idx.class_images[idx.class_offsets[c]:idx.class_offsets[c + 1]].tolist()
        assert got == want


def test_hierarchy_expanded_index_equals_expand_boxes():
    # 0 <- 1 <- 2 (2's ancestors are 1 and 0), 3 has ancestor 0, 4 unrelated
    anc = tuple(np.array(a, np.int32) for a in ([], [0], [0, 1], [0], []))
    desc = tuple(np.array(d, np.int32) for d in ([1, 2, 3], [2], [], [], []))
    tree = Hierarchy(anc, desc, np.array([1, 2, 3, 2, 1], np.int32), ())
    images, labels = random_codes(3, num_images=30, num_classes=5, num_boxes=80)
    table = BoxTable(images, labels, np.zeros((80, 4), np.float32), np.zeros(80, bool),
                     np.array([f"i{k}" for k in range(30)], dtype=object))
    expanded = expand_boxes(table, tree)
    want = ClassImageIndex.from_codes(expanded.image_codes, expanded.label_codes, 30, 5)
    got = ClassImageIndex.from_codes(images, labels, 30, 5, hierarchy=tree)
    for name in ("image_offsets", "image_classes", "class_offsets", "class_images"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    raw = ClassImageIndex.from_codes(images, labels, 30, 5)
    assert got.images_per_class[0] > raw.images_per_class[0]


def test_bad_codes_raise():
    with pytest.raises(ValueError, match="image codes"):
        ClassImageIndex.from_codes(np.array([5]), np.array([0]), 4, 2)
    with pytest.raises(ValueError, match="label codes"):
        ClassImageIndex.from_codes(np.array([0]), np.array([2]), 4, 2)


def test_class_probabilities_lambda():
    n = np.array([2, 2, 1, 0])
    np.testing.assert_allclose(class_probabilities(n, 0.0), [1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(class_probabilities(n, 1.0), [0.4, 0.4, 0.2, 0])
    z = 2 * math.sqrt(2) + 1
    np.testing.assert_allclose(class_probabilities(n, 0.5), [math.sqrt(2) / z] * 2 + [1 / z, 0])
    with pytest.raises(ValueError, match="no class"):
        class_probabilities(np.zeros(3), 0.5)


def test_hand_worked_image_probabilities():
    idx = hand_index()
    # λ=0: P(c)=1/3; P(0)=1/3*1/2+1/3*1/2, P(1)=1/3*1/2, P(2)=1/3*1/2+1/3*1, P(3)=0
    np.testing.assert_allclose(soft_balance_image_probabilities(idx, 0.0), [1 / 3, 1 / 6, 1 / 2, 0])
    # λ=1: P(c)=N_c/5 -> P(k) = (#labels of k)/5
    np.testing.assert_allclose(soft_balance_image_probabilities(idx, 1.0), [0.4, 0.2, 0.4, 0])
    z = 2 * math.sqrt(2) + 1
    s = math.sqrt(2) / 2
    np.testing.assert_allclose(soft_balance_image_probabilities(idx, 0.5),
                               [2 * s / z, s / z, (s + 1) / z, 0])
    np.testing.assert_allclose(non_balance_image_probabilities(idx), [0.25] * 4)


def test_hand_worked_expected_share():
    idx = hand_index()
    share = expected_class_share(idx, soft_balance_image_probabilities(idx, 0.0))
    np.testing.assert_allclose(share, [1 / 3 + 1 / 2, 1 / 3 + 1 / 6, 1 / 2, 0])
    # non-balance: share = N_c / I
    np.testing.assert_allclose(expected_class_share(idx, non_balance_image_probabilities(idx)),
                               [0.5, 0.5, 0.25, 0])


def test_hand_worked_repeat_factors():
    idx = hand_index()
    # f = (0.5, 0.5, 0.25); t = 0.5 -> r_c = (1, 1, sqrt 2); image 3 has no labels -> 1
    r = repeat_factors(idx, 0.5)
    np.testing.assert_allclose(r, [1, 1, math.sqrt(2), 1])
    np.testing.assert_allclose(repeat_factor_image_probabilities(idx, 0.5), r / r.sum())
    np.testing.assert_allclose(repeat_factors(idx, 0.0), 1.0)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 1.7])
def test_image_probabilities_brute_force(lam):
    images, labels = random_codes(4)
    idx = ClassImageIndex.from_codes(images, labels, 60, 7)
    n_c = np.array([len({i for i, lab in zip(images, labels) if lab == c}) for c in range(7)])
    p_c = np.array([n ** lam if n else 0.0 for n in n_c])
    p_c /= p_c.sum()
    want = np.zeros(60)
    for k in range(60):
        for c in {int(lab) for i, lab in zip(images, labels) if i == k}:
            want[k] += p_c[c] / n_c[c]
    got = soft_balance_image_probabilities(idx, lam)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got.sum() == pytest.approx(1.0)


def test_repeat_factors_brute_force():
    images, labels = random_codes(5)
    idx = ClassImageIndex.from_codes(images, labels, 60, 7)
    t = 0.3
    want = np.ones(60)
    for k in range(60):
        for c in {int(lab) for i, lab in zip(images, labels) if i == k}:
            f = len({i for i, lab in zip(images, labels) if lab == c}) / 60
            want[k] = max(want[k], max(1.0, math.sqrt(t / f)))
    np.testing.assert_allclose(repeat_factors(idx, t), want)
