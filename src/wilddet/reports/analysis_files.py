"""The output folder of ``wilddet analyze``: the one writer of its six files and the one reader
of its confusion-pairs CSV.

Shapes: ``C`` classes, ``P`` confusion pairs.

- ``class_stats.csv``: ``label,name,boxes,images,group_of_boxes`` (+ ``boxes_expanded,
  images_expanded`` with a hierarchy), one row per class in class-list order.
- ``confusion_pairs.csv``: ``source,confusion,source_name,confusion_name,source_boxes,
  confusion_boxes,ratio``, one row per pair, strongest first.
- ``concurrent_rate.npz`` (``data.rate_file``), ``report.md`` (``reports.analysis_report``),
  ``imbalance.png`` and ``confusion.png`` (``reports.plots_analysis``).

All six are written to temporary files and renamed in only once every one was written.
Readers: ``read_class_filter`` (the labels a pairs file names) and ``read_confusion_pairs`` (its
class-code pairs).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from wilddet.data import hierarchy as hmod
from wilddet.data import oid_csv
from wilddet.data.csv_table import read_csv_rows
from wilddet.data.rate_file import RATE_FILE, write_rate_file
from wilddet.data.records import ClassList
from wilddet.errors import InputError
from wilddet.fileio import atomic_path
from wilddet.reports.analysis_report import render_report
from wilddet.stats.analysis import Analysis, analyze_tables

CLASS_STATS_FILE = "class_stats.csv"
PAIRS_FILE = "confusion_pairs.csv"
REPORT_FILE = "report.md"
OUTPUT_FILES = (CLASS_STATS_FILE, PAIRS_FILE, RATE_FILE, REPORT_FILE, "imbalance.png",
                "confusion.png")
PAIRS_COLUMNS = ("source", "confusion", "source_name", "confusion_name", "source_boxes",
                 "confusion_boxes", "ratio")


def class_stats_frame(a: Analysis) -> pd.DataFrame:
    """The rows of ``class_stats.csv``."""
    cols = {"label": a.classes.labels, "name": a.classes.names, "boxes": a.counts.boxes,
            "images": a.counts.images, "group_of_boxes": a.counts.group_of_boxes}
    if a.expanded is not None:
        cols |= {"boxes_expanded": a.expanded.boxes, "images_expanded": a.expanded.images}
    return pd.DataFrame(cols)


def pairs_frame(a: Analysis) -> pd.DataFrame:
    """The rows of ``confusion_pairs.csv``."""
    p, labels, names = a.pairs, a.classes.labels, a.classes.names
    columns = (labels[p.source], labels[p.confusion], names[p.source], names[p.confusion],
               p.source_boxes, p.confusion_boxes, p.ratio)
    return pd.DataFrame(dict(zip(PAIRS_COLUMNS, columns)))


def write_analysis(a: Analysis, out_dir: str | os.PathLike,
                   settings: dict[str, object] | None = None) -> list[Path]:
    """Write the six output files into ``out_dir`` (created); all or none are renamed in.
    ``settings``: option -> value shown at the top of report.md."""
    from wilddet.reports.plots_analysis import plot_confusion, plot_imbalance  # matplotlib

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in OUTPUT_FILES]
    with contextlib.ExitStack() as stack:
        tmp = {p.name: stack.enter_context(atomic_path(p)) for p in paths}
        class_stats_frame(a).to_csv(tmp[CLASS_STATS_FILE], index=False)
        pairs_frame(a).to_csv(tmp[PAIRS_FILE], index=False)
        write_rate_file(tmp[RATE_FILE], a.classes.labels, a.rate, a.confusion_boxes,
                        a.source_boxes)
        tmp[REPORT_FILE].write_text(render_report(a, settings, OUTPUT_FILES), encoding="utf-8")
        plot_imbalance(tmp["imbalance.png"], a.counts.boxes, a.classes.names, a.counts.images)
        plot_confusion(tmp["confusion.png"], a.pairs, a.classes.names)
    return paths


def analyze_dataset(boxes_csv: Path, classes_csv: Path, hierarchy_json: Path | None,
                    out_dir: Path) -> Analysis:
    """Read a dataset's files, analyse them with the default options and write the outputs into
    ``out_dir`` (what the demo and the studies run before training)."""
    classes = oid_csv.read_classes(classes_csv)
    boxes = oid_csv.read_boxes(boxes_csv, classes)
    hierarchy = None if hierarchy_json is None else hmod.read_hierarchy(hierarchy_json, classes)
    analysis = analyze_tables(boxes, classes, hierarchy)
    write_analysis(analysis, out_dir)
    return analysis


def read_class_filter(path: str | os.PathLike) -> set[str]:
    """Labels named in a confusion-pairs CSV (``source`` and ``confusion`` columns) or in a
    ``label`` column (e.g. a per-class AP log)."""
    path, head, rows = read_csv_rows(path)
    cols = [c for c in ("source", "confusion") if c in head] or \
        (["label"] if "label" in head else [])
    if not cols:
        raise InputError(path, "needs columns source,confusion (confusion pairs) or label",
                         line=1, field="source")
    return {label for _, labels in _column_values(path, head, rows, cols) for label in labels}


def read_pairs_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a confusion-pairs CSV as {column: text} in file order (strongest first as
    written); the ``source`` and ``confusion`` columns must be there and filled."""
    path, head, rows = _read_pairs_csv(path)
    list(_column_values(path, head, rows, ["source", "confusion"]))  # both filled on every row
    return [dict(zip(head, row)) for _, row in rows]


def read_confusion_pairs(path: str | os.PathLike, classes: ClassList) -> np.ndarray:
    """[P, 2] int64 class codes (source, confusion) of every row of a confusion-pairs CSV
    (columns ``source`` and ``confusion`` hold LabelNames; other columns ignored)."""
    path, head, rows = _read_pairs_csv(path)
    pairs = []
    for line_no, labels in _column_values(path, head, rows, ["source", "confusion"]):
        for label, col in zip(labels, ("source", "confusion")):
            if label not in classes.index:
                raise InputError(path, f"{label!r} is not a class of the class list",
                                 line=line_no, field=col)
        pairs.append([classes.index[label] for label in labels])
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def _read_pairs_csv(path: str | os.PathLike):
    """``read_csv_rows`` of a file that must have the ``source`` and ``confusion`` columns."""
    path, head, rows = read_csv_rows(path)
    for col in ("source", "confusion"):
        if col not in head:
            raise InputError(path, "needs columns source,confusion", line=1, field=col)
    return path, head, rows


def _column_values(path: Path, head: list[str], rows, cols: list[str]):
    """Yield (line number, [stripped value of each of ``cols``]); a missing value raises."""
    at = [head.index(c) for c in cols]
    for line_no, row in rows:
        values = [row[i].strip() if i < len(row) else "" for i in at]
        for value, col in zip(values, cols):
            if not value:
                raise InputError(path, "missing value", line=line_no, field=col)
        yield line_no, values
