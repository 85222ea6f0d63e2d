"""The closed-form sampler probabilities against hand-worked values and brute-force loops
(the index itself: tests/data/test_class_index.py)."""

import math

import numpy as np
import pytest

from wilddet.data.class_index import ClassImageIndex
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
def test_image_probabilities_brute_force(lam, random_codes):
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


def test_repeat_factors_brute_force(random_codes):
    images, labels = random_codes(5)
    idx = ClassImageIndex.from_codes(images, labels, 60, 7)
    t = 0.3
    want = np.ones(60)
    for k in range(60):
        for c in {int(lab) for i, lab in zip(images, labels) if i == k}:
            f = len({i for i, lab in zip(images, labels) if lab == c}) / 60
            want[k] = max(want[k], max(1.0, math.sqrt(t / f)))
    np.testing.assert_allclose(repeat_factors(idx, t), want)
