"""LVIS frequency groups of classes by their number of training images (no dependencies).

r (rare): 1–10 images, c (common): 11–100, f (frequent): > 100. A class with no training image
is counted as rare (LVIS itself has none such).
"""

from __future__ import annotations

import numpy as np

FREQUENCIES = ("r", "c", "f")
RARE_MAX_IMAGES = 10
COMMON_MAX_IMAGES = 100


def frequency_of(image_count) -> list[str]:
    """[C] "r" / "c" / "f" from [C] training image counts."""
    return ["r" if n <= RARE_MAX_IMAGES else "c" if n <= COMMON_MAX_IMAGES else "f"
            for n in np.asarray(image_count).reshape(-1).tolist()]


def images_per_class(image_codes: np.ndarray, label_codes: np.ndarray,
                     num_classes: int) -> np.ndarray:
    """[C] int64 number of distinct images holding at least one box of each class."""
    keys = np.unique(np.asarray(image_codes, np.int64) * num_classes
                     + np.asarray(label_codes, np.int64))
    return np.bincount(keys % num_classes, minlength=num_classes).astype(np.int64)
