"""``concurrent_rate.npz``: the concurrent-rate matrix r written by ``wilddet analyze`` and read by
training (``model.rate_file``). The one reader and writer of that file.

Shapes: ``C`` classes of the file, ``K`` classes of the model.

Arrays (``np.savez``, no pickles): ``labels [C]`` str (class MIDs), ``rate [C, C]`` float32 (r_ij,
method spec §1; zero diagonal), ``confusion_boxes [C, C]`` int64 and ``source_boxes [C]`` int64
(the counts r was computed from). The reader needs only ``labels`` and ``rate``.
"""

from __future__ import annotations

import logging
import os
import zipfile

import numpy as np

from wilddet.data.records import rate_matrix_problem
from wilddet.errors import InputError
from wilddet.fileio import atomic_path

logger = logging.getLogger(__name__)

RATE_FILE = "concurrent_rate.npz"  # its name in the analyzer's output folder


def write_rate_file(path: str | os.PathLike, labels, rate: np.ndarray,
                    confusion_boxes: np.ndarray, source_boxes: np.ndarray) -> None:
    """Write the file atomically: ``labels [C]`` (MIDs), ``rate [C, C]``, ``confusion_boxes
    [C, C]``, ``source_boxes [C]``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
        np.savez(f, labels=np.asarray(labels, dtype=str), rate=rate,
                 confusion_boxes=confusion_boxes, source_boxes=source_boxes)


def read_rate_file(path_npz: str | os.PathLike, class_labels) -> np.ndarray:
    """The analyzer's ``concurrent_rate.npz`` as a [K, K] float32 rate in ``class_labels`` order.

    The file holds ``labels`` [C'] (MIDs) and ``rate`` [C', C']; every model label must be among
    them (extra labels are dropped: a rate between two classes does not depend on the others).
    Values above 1 (a box can overlap several boxes of a class) are capped at 1 (spec §1). Raises
    InputError naming the file for a missing array, wrong shapes, unknown labels, negative or
    non-finite values.
    """
    labels = [str(x) for x in class_labels]
    try:
        with np.load(path_npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError(path_npz, "file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(path_npz, f"not a readable .npz file ({e})") from None
    for field in ("labels", "rate"):
        if field not in arrays:
            raise InputError(path_npz, f"missing array (has {sorted(arrays)})", field=field)
    file_labels = [str(x) for x in arrays["labels"].tolist()]
    rate = arrays["rate"]
    n = len(file_labels)
    if arrays["labels"].ndim != 1 or rate.shape != (n, n):
        raise InputError(path_npz, f"expected labels [C] and rate [C, C], got "
                                   f"{arrays['labels'].shape} and {rate.shape}", field="rate")
    index = {lab: i for i, lab in enumerate(file_labels)}
    if len(index) != n:
        raise InputError(path_npz, "duplicate labels", field="labels")
    unknown = [lab for lab in labels if lab not in index]
    if unknown:
        raise InputError(path_npz, f"{len(unknown)} class label(s) of the model are not in the "
                                   f"file, e.g. {unknown[:3]}: was it made for another class "
                                   f"list?", field="labels")
    order = np.array([index[lab] for lab in labels], dtype=np.int64)
    rate = np.asarray(rate, dtype=np.float64)[np.ix_(order, order)]
    capped = np.minimum(rate, 1.0)  # NaN stays NaN, so the check below still sees it
    problem = rate_matrix_problem(capped)
    if problem:
        raise InputError(path_npz, problem, field="rate")
    if (rate > 1).any():
        logger.info("%s: %d rate values above 1 capped at 1", path_npz, int((rate > 1).sum()))
    return capped.astype(np.float32)
