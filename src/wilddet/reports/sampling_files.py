"""STATS.csv of ``wilddet sampling-stats``: its one writer.

Shapes: ``C`` classes.

One row per class (class-descriptions order), columns exactly ``STATS_COLUMNS``: N_c (images
holding the class), the closed-form share of drawn images containing it and the share realized in
the drawn sample (``sampling.samplers.class_shares``), 8 significant digits.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from wilddet.data.records import ClassList
from wilddet.fileio import atomic_path

STATS_COLUMNS = ("label", "name", "images", "expected_share", "realized_share")


def write_sampling_stats(path: str | os.PathLike, classes: ClassList,
                         images_per_class: np.ndarray, expected: np.ndarray,
                         realized: np.ndarray) -> None:
    """Write STATS.csv atomically from [C] arrays."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(STATS_COLUMNS)
        for c in range(len(classes)):
            writer.writerow([classes.labels[c], classes.names[c], int(images_per_class[c]),
                             f"{expected[c]:.8g}", f"{realized[c]:.8g}"])
