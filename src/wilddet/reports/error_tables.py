"""Error counts of two diagnoses side by side (``wilddet compare --diagnose A_DIR B_DIR``).

Shapes: ``T`` = 7 error types; rows are the types, then ``total`` (all false positives),
``missed_gt`` and ``missed_group_of``. ``change = B - A``; ΔmAP is each side's own
(error-analysis spec: mAP without that type's false positives minus the mAP).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass

from wilddet.evaluation.diagnose import ERROR_TYPES
from wilddet.fileio import atomic_path
from wilddet.reports.markdown import markdown_table

ROWS = (*ERROR_TYPES, "total", "missed_gt", "missed_group_of")


@dataclass(frozen=True)
class ErrorComparison:
    """names (A, B); counts[row] = (a, b) ints; delta_map[type] = (a, b) float or None;
    maps = (mAP A, mAP B) float or None."""

    names: tuple[str, str]
    counts: dict[str, tuple[int, int]]
    delta_map: dict[str, tuple[float | None, float | None]]
    maps: tuple[float | None, float | None]


def compare_diagnoses(a: dict, b: dict, names: tuple[str, str]) -> ErrorComparison:
    """From two ``summary.json`` documents."""
    counts = {}
    for t in ERROR_TYPES:
        counts[t] = (int(a["false_positives"][t]), int(b["false_positives"][t]))
    counts["total"] = (sum(v[0] for v in counts.values()), sum(v[1] for v in counts.values()))
    for key in ("missed_gt", "missed_group_of"):
        counts[key] = (int(a[key]), int(b[key]))
    delta = {t: tuple(None if doc["delta_mAP"] is None else doc["delta_mAP"][t]
                      for doc in (a, b)) for t in ERROR_TYPES}
    return ErrorComparison(names, counts, delta, (a["mAP"], b["mAP"]))


def _f(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def table_rows(c: ErrorComparison) -> list[list[str]]:
    """Display rows: error, A, B, change, ΔmAP A, ΔmAP B."""
    out = []
    for row in ROWS:
        a, b = c.counts[row]
        da, db = c.delta_map.get(row, (None, None))
        out.append([row, f"{a:,}", f"{b:,}", f"{b - a:+,}",
                    "" if row not in ERROR_TYPES else _f(da, True),
                    "" if row not in ERROR_TYPES else _f(db, True)])
    return out


def header(c: ErrorComparison) -> list[str]:
    a, b = c.names
    return ["error", a, b, f"change ({b} − {a})", f"ΔmAP {a}", f"ΔmAP {b}"]


def to_markdown(c: ErrorComparison) -> str:
    lines = [markdown_table(header(c), table_rows(c), "l" + "r" * 5), "",
             (f"mAP: {c.names[0]} {_f(c.maps[0])}, {c.names[1]} {_f(c.maps[1])}. "
              "ΔmAP: mAP without that type's false positives minus the mAP.")]
    return "\n".join(lines) + "\n"


def write_error_comparison_csv(path: str | os.PathLike, c: ErrorComparison) -> None:
    """``error,<A>,<B>,change,delta_mAP_<A>,delta_mAP_<B>`` (full precision), atomically."""
    a_name, b_name = c.names
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["error", a_name, b_name, "change", f"delta_mAP_{a_name}",
                    f"delta_mAP_{b_name}"])
        for row in ROWS:
            a, b = c.counts[row]
            da, db = c.delta_map.get(row, (None, None))
            w.writerow([row, a, b, b - a, "" if da is None else repr(float(da)),
                        "" if db is None else repr(float(db))])


__all__ = ["ErrorComparison", "compare_diagnoses", "header", "table_rows", "to_markdown",
           "write_error_comparison_csv"]
