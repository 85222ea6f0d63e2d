"""The class<->image index of a box table: which classes each image holds and which images each
class occurs in (two CSRs). The samplers draw from it; the annotation cache stores it.

Shapes: ``N`` box rows, ``I`` images, ``C`` classes (codes 0..C-1, no background here),
``P`` unique (image, class) pairs (an image with three "Person" boxes counts once for Person).

Images without boxes are in the index (an empty row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wilddet.data.csr import expand_rows, offsets_of_codes, sorted_unique
from wilddet.data.hierarchy import Hierarchy


@dataclass(frozen=True)
class ClassImageIndex:
    """Which classes each image contains and which images each class occurs in (two CSRs).

    image_offsets [I+1] int64, image_classes [P] int32: classes of image k are
    ``image_classes[image_offsets[k]:image_offsets[k+1]]`` (sorted, unique).
    class_offsets [C+1] int64, class_images [P] int32: images of class c are
    ``class_images[class_offsets[c]:class_offsets[c+1]]`` (sorted, unique).
    """

    num_images: int
    num_classes: int
    image_offsets: np.ndarray
    image_classes: np.ndarray
    class_offsets: np.ndarray
    class_images: np.ndarray

    @classmethod
    def from_codes(cls, image_codes: np.ndarray, label_codes: np.ndarray, num_images: int,
                   num_classes: int, hierarchy: Hierarchy | None = None) -> ClassImageIndex:
        """Build from a ``BoxTable``'s ``image_codes [N]`` and ``label_codes [N]`` (int codes).

        ``hierarchy``: count hierarchy-expanded labels (each box also counts for every ancestor of
        its class, as ``hierarchy.expand_boxes``); None (default): the raw box labels.
        Cost: one integer sort of the N (image, class) keys plus O(N) passes (~1 s for 12M boxes).
        """
        image_codes = np.asarray(image_codes)
        label_codes = np.asarray(label_codes)
        if image_codes.shape != label_codes.shape or image_codes.ndim != 1:
            raise ValueError("image_codes and label_codes must be 1-D arrays of the same length")
        if len(image_codes) and (image_codes.min() < 0 or image_codes.max() >= num_images):
            raise ValueError(f"image codes must lie in [0, {num_images})")
        if len(label_codes) and (label_codes.min() < 0 or label_codes.max() >= num_classes):
            raise ValueError(f"label codes must lie in [0, {num_classes})")
        pair_image, pair_class = _unique_pairs(image_codes, label_codes, num_classes)
        if hierarchy is not None:
            if hierarchy.num_classes != num_classes:
                raise ValueError("hierarchy has a different number of classes")
            # each pair (k, c) -> (k, c) and one (k, a) per ancestor a of c
            source, pair_class = expand_rows(pair_class, *hierarchy.self_and_ancestors())
            pair_image, pair_class = _unique_pairs(pair_image[source], pair_class, num_classes)
        image_offsets = offsets_of_codes(pair_image, num_images)
        # Pairs are sorted by (image, class); re-sort by (class, image) for the class CSR.
        key = pair_class.astype(np.int64) * max(num_images, 1) + pair_image
        key.sort()
        class_images = (key % max(num_images, 1)).astype(np.int32)
        class_offsets = offsets_of_codes(pair_class, num_classes)
        return cls(int(num_images), int(num_classes), image_offsets, pair_class.astype(np.int32),
                   class_offsets, class_images)

    @property
    def images_per_class(self) -> np.ndarray:
        """N_c [C] int64: images that contain class c."""
        return np.diff(self.class_offsets)

    @property
    def classes_per_image(self) -> np.ndarray:
        """[I] int64: distinct classes in image k (0 for an image without boxes)."""
        return np.diff(self.image_offsets)

    @property
    def num_pairs(self) -> int:
        return len(self.image_classes)

    def pair_images(self) -> np.ndarray:
        """[P] int32 image code of each pair in image-CSR order (parallel to ``image_classes``)."""
        return np.repeat(np.arange(self.num_images, dtype=np.int32), self.classes_per_image)

    def class_share(self, image_weights: np.ndarray) -> np.ndarray:
        """[C] float64: Σ_{k ∋ c} w_k for per-image weights w [I] (probabilities -> expected share
        of drawn images containing c; draw counts -> number of draws containing c)."""
        w = np.asarray(image_weights, dtype=np.float64)
        return np.bincount(self.image_classes, weights=w[self.pair_images()],
                           minlength=self.num_classes)


def _unique_pairs(image_codes, label_codes, num_classes):
    """Sorted unique (image, class) pairs, as the int64 keys image*C+class."""
    c = max(num_classes, 1)
    key = sorted_unique(np.asarray(image_codes, np.int64) * c + label_codes)
    return (key // c).astype(np.int32), (key % c).astype(np.int32)
