"""Columnar in-memory records of Open Images annotations.

Shapes: ``N`` box rows, ``L`` image-label rows, ``I`` images, ``C`` classes.
Class codes are 0..C-1 in the order of the class-descriptions file (the model adds 1: 0 is
background there). Image codes index ``image_ids`` (ImageID strings, a vocabulary shared by the
tables that were read together, see ``oid_csv.read_dataset``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wilddet.data.csr import offsets_of_codes


@dataclass(frozen=True)
class ClassList:
    """The evaluated classes: ``labels`` [C] MIDs (str), ``names`` [C] display names (str)."""

    labels: np.ndarray
    names: np.ndarray
    index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if not self.index:
            object.__setattr__(self, "index", {lab: i for i, lab in enumerate(self.labels)})

    def __len__(self) -> int:
        return len(self.labels)

    def code(self, label: str) -> int:
        return self.index[label]


@dataclass(frozen=True)
class BoxTable:
    """N ground-truth (or detection) boxes, one row each, in file order.

    image_codes [N] int32 into ``image_ids``; label_codes [N] int32 class codes 0..C-1;
    boxes_norm [N, 4] float32 (xmin, ymin, xmax, ymax) in [0, 1]; is_group_of [N] bool;
    scores [N] float32 or None (detections only); image_ids [I] str (object array).
    """

    image_codes: np.ndarray
    label_codes: np.ndarray
    boxes_norm: np.ndarray
    is_group_of: np.ndarray
    image_ids: np.ndarray
    scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.label_codes)

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    def take(self, rows: np.ndarray) -> BoxTable:
        """Rows ``rows`` (indices or bool mask), same image vocabulary."""
        return BoxTable(self.image_codes[rows], self.label_codes[rows], self.boxes_norm[rows],
                        self.is_group_of[rows], self.image_ids,
                        None if self.scores is None else self.scores[rows])


@dataclass(frozen=True)
class ImageLabelTable:
    """L human-verified image-level labels: image_codes [L] int32, label_codes [L] int32,
    confidence [L] int8 (1 verified present, 0 verified absent), image_ids [I] str."""

    image_codes: np.ndarray
    label_codes: np.ndarray
    confidence: np.ndarray
    image_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.label_codes)

    def take(self, rows: np.ndarray) -> ImageLabelTable:
        return ImageLabelTable(self.image_codes[rows], self.label_codes[rows],
                               self.confidence[rows], self.image_ids)


def rows_by_image(image_codes: np.ndarray, num_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Group rows by image in O(N): returns (order [N] int64, offsets [I+1] int64) so that the rows
    of image i are ``order[offsets[i]:offsets[i+1]]``, in file order (stable)."""
    return np.argsort(image_codes, kind="stable"), offsets_of_codes(image_codes, num_images)


def rate_matrix_problem(rate: np.ndarray) -> str | None:
    """Why ``rate`` is not a valid concurrent-rate matrix r [K, K] (method spec §1), or None.

    Valid: square, finite, every value in [0, 1], zero diagonal. The one validation of r, used by
    the rate-file reader (which wraps the message in an InputError naming the file) and by
    ``losses.pad_rate_matrix`` (which raises ValueError).
    """
    rate = np.asarray(rate)
    if rate.ndim != 2 or rate.shape[0] != rate.shape[1]:
        return f"rate must be a square [K, K] matrix, got shape {tuple(rate.shape)}"
    if not np.isfinite(rate).all() or (rate < 0).any() or (rate > 1).any():
        return "rate values must be finite and in [0, 1]"
    if (np.diagonal(rate) != 0).any():
        return "rate must have a zero diagonal"
    return None
