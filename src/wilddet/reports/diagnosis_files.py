"""The files of ``wilddet diagnose`` (error-analysis spec, "Interface"): one writer and one
reader per file.

Shapes: ``F`` false positives, ``C`` classes, ``T`` = 7 error types, ``E`` PR points.

- ``errors.csv``: ``ImageID,LabelName,Score,XMin,XMax,YMin,YMax,error,other_label,iou``, one
  row per false positive, highest score first (ties in detection-file order). Score and
  coordinates rounded to 6 decimals as ``oid_csv.write_detections`` writes them; ``iou`` in
  full precision (so it is never rounded across a rule's threshold).
- ``summary.json``: ``{"mAP", "false_positives", "delta_mAP", "missed_gt", "missed_group_of",
  "per_class": {LabelName: {"ap", "false_positives", "missed_gt", "missed_group_of"}}}`` plus
  ``"inputs"`` (the paths it was made from, resolved), ``"num_false_positives"``, and per
  LabelName ``"num_gt"`` (expanded, as the metric counts it) and ``"names"`` (display names).
- ``pr_curves.csv``: ``label,name,recall,precision``, one row per PR point, classes with GT.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from wilddet.data.records import ClassList
from wilddet.errors import InputError
from wilddet.evaluation.diagnose import ERROR_TYPES, Diagnosis

ERRORS_COLUMNS = ("ImageID", "LabelName", "Score", "XMin", "XMax", "YMin", "YMax", "error",
                  "other_label", "iou")
PR_COLUMNS = ("label", "name", "recall", "precision")


def _null(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _by_type(counts: np.ndarray) -> dict[str, int]:
    return {t: int(n) for t, n in zip(ERROR_TYPES, counts)}


def summary_json(classes: ClassList, d: Diagnosis, inputs: dict[str, str | None]) -> dict:
    """The ``summary.json`` document (every class, all seven types everywhere)."""
    m = d.mean_ap
    per_class = {
        str(lab): {"ap": _null(d.ap[c]), "false_positives": _by_type(d.fp_counts[c]),
                   "missed_gt": int(d.missed_gt[c]), "missed_group_of": int(d.missed_group_of[c])}
        for c, lab in enumerate(classes.labels)}
    return {
        "mAP": _null(m),
        "false_positives": _by_type(d.fp_totals),
        "delta_mAP": None if math.isnan(m) else {t: float(v) for t, v in
                                                  zip(ERROR_TYPES, d.delta_map)},
        "missed_gt": int(d.missed_gt.sum()),
        "missed_group_of": int(d.missed_group_of.sum()),
        "num_false_positives": len(d.error),
        "per_class": per_class,
        "num_gt": {str(lab): float(n) for lab, n in zip(classes.labels, d.match.num_gt)},
        "names": {str(lab): str(n) for lab, n in zip(classes.labels, classes.names)},
        "inputs": inputs,
    }


def write_summary_json(path: str | os.PathLike, doc: dict) -> None:
    Path(path).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def read_summary_json(path: str | os.PathLike) -> dict:
    """A ``summary.json``; InputError when it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable JSON file ({e})") from None
    for key in ("mAP", "false_positives", "delta_mAP", "per_class"):
        if not isinstance(doc, dict) or key not in doc:
            raise InputError(path, "not a wilddet diagnose summary", field=key)
    return doc


def _strings(vocab, codes: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()),
                                          pa.array([str(v) for v in vocab], pa.string())
                                          ).cast(pa.string())


def _write_csv(path: str | os.PathLike, table: pa.Table) -> None:
    # the header by hand: pyarrow would quote the column names
    with open(path, "wb") as f:
        f.write((",".join(table.column_names) + "\n").encode())
        pcsv.write_csv(table, f, write_options=pcsv.WriteOptions(include_header=False,
                                                                 quoting_style="needed"))


def errors_order(d: Diagnosis) -> np.ndarray:
    """[F] positions into the diagnosis' FP arrays: highest score first, ties by file row."""
    scores = d.match.detections.scores[d.fp_rows].astype(np.float64)
    return np.lexsort((d.fp_rows, -scores))


def write_errors_csv(path: str | os.PathLike, classes: ClassList, d: Diagnosis) -> None:
    """``errors.csv`` (module doc)."""
    det = d.match.detections
    order = errors_order(d)
    rows = d.fp_rows[order]
    other = d.other_label[order]
    other_names = np.concatenate([np.asarray(classes.labels, dtype=object), [""]])
    cols = {"ImageID": _strings(det.image_ids, det.image_codes[rows]),
            "LabelName": _strings(classes.labels, det.label_codes[rows]),
            "Score": np.round(det.scores[rows].astype(np.float64), 6)}
    for name, c in (("XMin", 0), ("XMax", 2), ("YMin", 1), ("YMax", 3)):
        cols[name] = np.round(det.boxes_norm[rows, c].astype(np.float64), 6)
    cols["error"] = _strings(ERROR_TYPES, d.error[order].astype(np.int32))
    cols["other_label"] = _strings(other_names, np.where(other < 0, len(classes), other))
    cols["iou"] = d.iou[order]
    _write_csv(path, pa.table(cols))


def write_pr_curves_csv(path: str | os.PathLike, classes: ClassList, d: Diagnosis) -> None:
    """``pr_curves.csv`` (module doc)."""
    counts = np.diff(d.pr_offsets)
    codes = np.repeat(np.arange(len(classes), dtype=np.int32), counts)
    _write_csv(path, pa.table({"label": _strings(classes.labels, codes),
                               "name": _strings(classes.names, codes),
                               "recall": d.pr_recall, "precision": d.pr_precision}))


def read_pr_curves_csv(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{label: (recall [E_c], precision [E_c])} of a ``pr_curves.csv``, file order kept."""
    path = Path(path)
    try:
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            column_types={"label": pa.string(), "name": pa.string(), "recall": pa.float64(),
                          "precision": pa.float64()}, include_columns=list(PR_COLUMNS)))
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(path, f"not a PR-curves CSV with columns {','.join(PR_COLUMNS)} ({e})"
                         ) from None
    labels = np.asarray(table.column("label").to_pylist(), dtype=object)
    recall = table.column("recall").to_numpy()
    precision = table.column("precision").to_numpy()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if len(labels) == 0:
        return out
    starts = np.flatnonzero(np.concatenate([[True], labels[1:] != labels[:-1]]))
    ends = np.concatenate([starts[1:], [len(labels)]])
    for lo, hi in zip(starts, ends):
        out[str(labels[lo])] = (recall[lo:hi], precision[lo:hi])
    return out


__all__ = ["ERRORS_COLUMNS", "PR_COLUMNS", "errors_order",
           "read_pr_curves_csv", "read_summary_json", "summary_json", "write_errors_csv",
           "write_pr_curves_csv", "write_summary_json"]
