"""Per-class AP logs: ``label,name,ap,num_gt,num_detections,num_tp`` (one row per class).

Shapes: ``C`` classes.

``ap`` is empty for a class without ground truth (no AP; left out of the mean). Floats are written
with Python's shortest round-trip repr, so reading a log back gives the exact numbers.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilddet.data.csv_table import read_csv_rows
from wilddet.data.records import ClassList
from wilddet.errors import InputError
from wilddet.evaluation.ap import mean_ap
from wilddet.fileio import atomic_path

PER_CLASS_COLUMNS = ("label", "name", "ap", "num_gt", "num_detections", "num_tp")


@dataclass(frozen=True)
class PerClassAP:
    """labels [C] / names [C] (str), ap [C] float64 (NaN = no ground truth), num_gt [C] float64,
    num_detections [C] int64, num_tp [C] float64."""

    labels: np.ndarray
    names: np.ndarray
    ap: np.ndarray
    num_gt: np.ndarray
    num_detections: np.ndarray
    num_tp: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def mean_ap(self) -> float:
        return mean_ap(self.ap)

    @classmethod
    def from_result(cls, classes: ClassList, result) -> PerClassAP:
        """From a ``wilddet.evaluation.oid_challenge.ChallengeResult`` over ``classes``."""
        return cls(np.asarray(classes.labels, dtype=object),
                   np.asarray(classes.names, dtype=object),
                   np.asarray(result.ap, np.float64), np.asarray(result.num_gt, np.float64),
                   np.asarray(result.num_detections, np.int64),
                   np.asarray(result.num_tp, np.float64))


def _number(x: float) -> str:
    x = float(x)
    if math.isnan(x):
        return ""
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)


def write_per_class_ap(path: str | os.PathLike, table: PerClassAP) -> None:
    """Write the log atomically (class order kept)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PER_CLASS_COLUMNS)
        for c in range(len(table)):
            writer.writerow([table.labels[c], table.names[c], _number(table.ap[c]),
                             _number(table.num_gt[c]), int(table.num_detections[c]),
                             _number(table.num_tp[c])])


COCO_PER_CLASS_COLUMNS = ("category_id", "name", "ap", "num_gt", "num_detections")


def write_coco_per_class_ap(path: str | os.PathLike, category_ids, names, ap, num_gt,
                            num_detections) -> None:
    """``evaluate --metric coco|lvis --out-csv``: one row per category (ascending id), ``ap``
    empty when the category has no AP (no ground truth); atomic."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COCO_PER_CLASS_COLUMNS)
        for cid, name, a, n_gt, n_det in zip(category_ids, names, ap, num_gt, num_detections):
            writer.writerow([int(cid), name, _number(a), int(n_gt), int(n_det)])


def _parse_number(path: Path, text: str, line_no: int, col: str, allow_empty: bool) -> float:
    """A number >= 0 (empty -> NaN when allowed), else InputError at ``line_no``/``col``."""
    text = text.strip()
    if allow_empty and text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise InputError(path, f"{text!r} is not a number", line=line_no, field=col) from None
    if math.isnan(value) or value < 0:
        raise InputError(path, f"{text!r} must be a number >= 0", line=line_no, field=col)
    return value


def read_per_class_ap(path: str | os.PathLike) -> PerClassAP:
    """Read a log written by ``write_per_class_ap`` (columns found by name; extra columns are
    ignored). Bad values raise InputError naming the line and column."""
    path, header, rows = read_csv_rows(path)
    for col in PER_CLASS_COLUMNS:
        if col not in header:
            raise InputError(path, f"missing column; needs {','.join(PER_CLASS_COLUMNS)}",
                             line=1, field=col)
    at = {col: header.index(col) for col in PER_CLASS_COLUMNS}
    labels, names, ap, num_gt, num_det, num_tp = [], [], [], [], [], []
    seen: dict[str, int] = {}
    for line_no, row in rows:
        if len(row) < len(header):
            raise InputError(path, f"expected {len(header)} fields, got {len(row)}",
                             line=line_no)

        def number(col, allow_empty=False, row=row, line_no=line_no):
            return _parse_number(path, row[at[col]], line_no, col, allow_empty)

        label = row[at["label"]].strip()
        if not label:
            raise InputError(path, "empty label", line=line_no, field="label")
        if label in seen:
            raise InputError(path, f"duplicate class {label!r} (first on line "
                             f"{seen[label]})", line=line_no, field="label")
        seen[label] = line_no
        a = number("ap", allow_empty=True)
        if a > 1:
            raise InputError(path, f"{a!r} not in [0, 1]", line=line_no, field="ap")
        labels.append(label)
        names.append(row[at["name"]])
        ap.append(a)
        num_gt.append(number("num_gt"))
        d = number("num_detections")
        if not d.is_integer():
            raise InputError(path, f"{d!r} is not an integer", line=line_no,
                             field="num_detections")
        num_det.append(int(d))
        num_tp.append(number("num_tp"))
    return PerClassAP(np.asarray(labels, dtype=object), np.asarray(names, dtype=object),
                      np.asarray(ap, np.float64), np.asarray(num_gt, np.float64),
                      np.asarray(num_det, np.int64), np.asarray(num_tp, np.float64))
