"""Per-class AP of several runs side by side (``wilddet compare``), as in Table 1 of the seed.

Shapes: ``R`` runs (R >= 2), ``K`` classes in the table.

Rows are the classes of the first run, optionally restricted to a set of labels, minus classes
without ground truth in every run. ``gain[r] = ap[r] - ap[0]`` for r = 1..R-1; rows are sorted by
the last run's gain, largest first (classes missing an AP in either run last, then label order).
The mean row averages each run over the classes that have an AP in every run.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilddet.fileio import atomic_path
from wilddet.reports.csv_logs import PerClassAP
from wilddet.reports.markdown import markdown_table

COMPARE_CSV_FIXED = ("label", "name", "num_gt")


@dataclass(frozen=True)
class ComparisonTable:
    """run_names [R]; labels/names [K] (str); num_gt [K] (first run); ap [R, K] float64 (NaN = no
    AP); gain [R-1, K] = ap[1:] - ap[0]. Rows already sorted (module doc)."""

    run_names: tuple[str, ...]
    labels: np.ndarray
    names: np.ndarray
    num_gt: np.ndarray
    ap: np.ndarray
    gain: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def common(self) -> np.ndarray:
        """[K] bool: the class has an AP in every run."""
        return ~np.isnan(self.ap).any(axis=0)

    def mean_ap(self) -> np.ndarray:
        """[R] mean AP of each run over the classes with an AP in every run (NaN if none)."""
        common = self.common
        if not common.any():
            return np.full(len(self.run_names), math.nan)
        return self.ap[:, common].mean(axis=1)


def compare_runs(runs: list[PerClassAP], run_names: list[str],
                 restrict_to: set[str] | None = None) -> ComparisonTable:
    """Join the runs on the first run's class labels (a label missing from a later run has no AP
    there) and sort by gain."""
    if len(runs) < 2:
        raise ValueError("compare needs at least two runs")
    base = runs[0]
    keep = np.ones(len(base), dtype=bool)
    if restrict_to is not None:
        keep &= np.isin(base.labels.astype(str), np.asarray(sorted(restrict_to), dtype=str))
    ap = np.full((len(runs), len(base)), np.nan)
    for r, run in enumerate(runs):
        index = {lab: i for i, lab in enumerate(run.labels)}
        rows = np.array([index.get(lab, -1) for lab in base.labels], dtype=np.int64)
        found = rows >= 0
        ap[r, found] = run.ap[rows[found]]
    keep &= ~np.isnan(ap).all(axis=0)  # no ground truth anywhere: nothing to compare
    cols = np.flatnonzero(keep)
    ap = ap[:, cols]
    gain = ap[1:] - ap[0]
    last = gain[-1]
    missing = np.isnan(last)
    # sort: rows with a gain first (largest first), then the rest; ties by class order
    order = np.lexsort((np.arange(len(cols)), np.where(missing, 0.0, -last), missing))
    cols, ap, gain = cols[order], ap[:, order], gain[:, order]
    return ComparisonTable(tuple(run_names), base.labels[cols], base.names[cols],
                           base.num_gt[cols], ap, gain)


def _fmt(x: float, signed: bool = False) -> str:
    if math.isnan(x):
        return "–"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def _gain_header(table: ComparisonTable, r: int) -> str:
    return f"gain {table.run_names[r + 1]} − {table.run_names[0]}"


def header(table: ComparisonTable) -> list[str]:
    """Column titles of the rendered table."""
    return (["#", "class", "label", "num_gt"] + [f"AP {n}" for n in table.run_names]
            + [_gain_header(table, r) for r in range(len(table.run_names) - 1)])


def rows(table: ComparisonTable, top: int | None = None) -> list[list[str]]:
    """Formatted rows (first ``top`` if given), then a mean row."""
    n = len(table) if not top else min(top, len(table))
    out = []
    for k in range(n):
        g = table.num_gt[k]
        out.append([str(k + 1), str(table.names[k]), str(table.labels[k]),
                    str(int(g)) if float(g).is_integer() else f"{g:g}"]
                   + [_fmt(v) for v in table.ap[:, k]]
                   + [_fmt(v, signed=True) for v in table.gain[:, k]])
    means = table.mean_ap()
    out.append(["", f"mean over {int(table.common.sum())} classes", "", ""]
               + [_fmt(v) for v in means] + [_fmt(v - means[0], signed=True) for v in means[1:]])
    return out


def to_markdown(table: ComparisonTable, top: int | None = None) -> str:
    """GitHub Markdown table of the first ``top`` rows (all if None/0) and the mean row."""
    head = header(table)
    align = "".join("r" if i == 0 or i >= 3 else "l" for i in range(len(head)))
    shown = len(table) if not top else min(top, len(table))
    return (markdown_table(head, rows(table, top), align) + "\n\n"
            f"{shown} of {len(table)} classes shown, sorted by "
            f"{_gain_header(table, len(table.run_names) - 2)}.\n")


def write_comparison_csv(path: str | os.PathLike, table: ComparisonTable) -> None:
    """All rows: ``label,name,num_gt,ap_<run>...,gain_<run>...`` (full precision), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(list(COMPARE_CSV_FIXED) + [f"ap_{n}" for n in table.run_names]
                   + [f"gain_{n}" for n in table.run_names[1:]])
        for k in range(len(table)):
            w.writerow([table.labels[k], table.names[k], f"{table.num_gt[k]:g}"]
                       + ["" if math.isnan(v) else repr(float(v)) for v in table.ap[:, k]]
                       + ["" if math.isnan(v) else repr(float(v)) for v in table.gain[:, k]])


def write_comparison(out_md: str | os.PathLike, table: ComparisonTable, top: int | None = None
                     ) -> tuple[Path, Path, Path]:
    """``wilddet compare --out``: TABLE.md (``to_markdown``, ``top`` rows), TABLE.csv (every
    class) and TABLE.png (bars of the ``top`` gains of the last run over the first) next to it;
    all three renamed in only once all are written. Returns their paths."""
    from wilddet.reports.plots_compare import plot_top_gains  # matplotlib: load on use

    out_md = Path(out_md)
    out_csv, out_png = out_md.with_suffix(".csv"), out_md.with_suffix(".png")
    shown = len(table) if not top else min(top, len(table))
    names = table.run_names
    with contextlib.ExitStack() as stack:
        stack.enter_context(atomic_path(out_md)).write_text(to_markdown(table, top),
                                                            encoding="utf-8")
        write_comparison_csv(stack.enter_context(atomic_path(out_csv)), table)
        plot_top_gains(stack.enter_context(atomic_path(out_png)), table.names[:shown],
                       table.gain[-1, :shown], title=f"top AP gains: {names[-1]} − {names[0]}")
    return out_md, out_csv, out_png
