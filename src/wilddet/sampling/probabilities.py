"""The closed-form probabilities of the training samplers (method spec §3).

Shapes: ``N`` box rows, ``I`` images, ``C`` classes (codes 0..C-1, no background here),
``P`` unique (image, class) pairs (an image with three "Person" boxes counts once for Person).

N_c = number of images that contain class c (``data.class_index.ClassImageIndex.images_per_class``).

- Non-balance: P(k) = 1 / I (every image once per epoch).
- Soft-balance(λ): P(c) = N_c^λ / Σ_k N_k^λ (classes with N_c = 0 get 0), then an image of c
  uniformly, so P(k) = Σ_{c ∈ labels(k)} P(c) / N_c ∝ Σ_{c ∈ labels(k)} N_c^(λ−1).
  λ = 0 is class-aware balance (uniform over non-empty classes), λ = 1 draws classes by frequency.
- Repeat factor (LVIS): f_c = N_c / I, r(k) = max_{c ∈ labels(k)} max(1, sqrt(t / f_c)) (r = 1 for
  an image without labels); an epoch repeats image k r(k) times on average, so P(k) = r(k) / Σ r.
- Expected share of drawn images that contain c: S_c = Σ_{k ∋ c} P(k).

Images without boxes are in the index (an empty row); class-based samplers cannot draw them.
"""

from __future__ import annotations

import numpy as np

from wilddet.data.class_index import ClassImageIndex


def class_probabilities(images_per_class: np.ndarray, lam: float) -> np.ndarray:
    """P(c) = N_c^λ / Σ_k N_k^λ over classes with N_c > 0 (others 0). [C] float64."""
    n = np.asarray(images_per_class, dtype=np.float64)
    present = n > 0
    if not present.any():
        raise ValueError("no class occurs in any image: a class-based sampler has nothing to draw")
    p = np.zeros_like(n)
    p[present] = n[present] ** float(lam)
    return p / p.sum()


def soft_balance_image_probabilities(index: ClassImageIndex, lam: float) -> np.ndarray:
    """P(k) = Σ_{c ∈ labels(k)} P(c) / N_c with P(c) from ``class_probabilities``. [I] float64."""
    n_c = index.images_per_class
    p_c = class_probabilities(n_c, lam)
    per_image_of_class = np.divide(p_c, n_c, out=np.zeros_like(p_c), where=n_c > 0)
    return np.bincount(index.pair_images(), weights=per_image_of_class[index.image_classes],
                       minlength=index.num_images)


def non_balance_image_probabilities(index: ClassImageIndex) -> np.ndarray:
    """P(k) = 1 / I. [I] float64."""
    return np.full(index.num_images, 1.0 / index.num_images)


def repeat_factors(index: ClassImageIndex, threshold: float) -> np.ndarray:
    """LVIS repeat factors r(k) = max_{c ∈ k} max(1, sqrt(t / f_c)), f_c = N_c / I. [I] float64;
    1.0 for an image without labels."""
    if threshold < 0:
        raise ValueError("repeat threshold must be >= 0")
    freq = index.images_per_class / max(index.num_images, 1)
    class_r = np.ones(index.num_classes)
    seen = freq > 0
    class_r[seen] = np.maximum(1.0, np.sqrt(threshold / freq[seen]))
    r = np.ones(index.num_images)
    nonempty = np.flatnonzero(index.classes_per_image > 0)
    if len(nonempty):
        pair_r = class_r[index.image_classes]
        # reduceat over each non-empty image's run of pairs
        r[nonempty] = np.maximum.reduceat(pair_r, index.image_offsets[nonempty])
    return r


def repeat_factor_image_probabilities(index: ClassImageIndex, threshold: float) -> np.ndarray:
    """P(k) = r(k) / Σ_j r(j) (share of a long repeat-factor stream that is image k). [I]."""
    r = repeat_factors(index, threshold)
    return r / r.sum()


def expected_class_share(index: ClassImageIndex, image_probabilities: np.ndarray) -> np.ndarray:
    """S_c = Σ_{k ∋ c} P(k): probability that one drawn image contains class c. [C] float64."""
    return index.class_share(image_probabilities)
