"""``wilddet compare``: per-class AP of two or more runs side by side, sorted by gain.

Shapes: ``R`` runs, ``K`` classes.

Inputs are per-class logs (``label,name,ap,num_gt,num_detections,num_tp``, as written by
``wilddet evaluate --out-csv``). ``--classes-from PAIRS.csv`` keeps the classes named in the
``source``/``confusion`` columns of a confusion-pairs file (or its ``label`` column), e.g. the
co-occurring classes of the seed's Table 1. ``--out TABLE.md`` also writes TABLE.csv (every
class, full precision) and TABLE.png (bar plot of the top gains) next to it.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from wilddet.errors import InputError
from wilddet.fileio import atomic_path
from wilddet.reports.csv_logs import read_per_class_ap
from wilddet.reports.tables import (
    ComparisonTable,
    compare_runs,
    header,
    rows,
    to_markdown,
    write_comparison_csv,
)

_Opt = typer.Option


def read_class_filter(path: Path) -> set[str]:
    """Labels named in a confusion-pairs CSV (``source`` and ``confusion`` columns) or in a
    ``label`` column."""
    if not path.is_file():
        raise InputError(path, "file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        head = next(reader, None)
        if not head:
            raise InputError(path, "empty file: expected a header line", line=1)
        cols = [c for c in ("source", "confusion") if c in head] or \
            (["label"] if "label" in head else [])
        if not cols:
            raise InputError(path, "needs columns source,confusion (confusion pairs) or label",
                             line=1, field="source")
        at = [head.index(c) for c in cols]
        labels: set[str] = set()
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            for i, c in zip(at, cols):
                if i >= len(row) or not row[i].strip():
                    raise InputError(path, "missing value", line=line_no, field=c)
                labels.add(row[i].strip())
    return labels


def _run_names(paths: list[Path]) -> list[str]:
    names = [p.stem for p in paths]
    if len(set(names)) < len(names):  # same file names in different folders
        names = [f"{p.parent.name}/{p.stem}" for p in paths]
    if len(set(names)) < len(names):
        names = [f"{chr(ord('A') + i)}:{n}" if i < 26 else f"{i}:{n}" for i, n in
                 enumerate(names)]
    return names


def _rich_table(table: ComparisonTable, top: int) -> Table:
    t = Table(title=f"per-class AP, sorted by gain ({len(table)} classes)")
    for i, title in enumerate(header(table)):
        t.add_column(title, justify="right" if i == 0 or i >= 3 else "left")
    body = rows(table, top)
    n_gain = len(table.run_names) - 1
    for k, row in enumerate(body):
        styled = list(row)
        for j in range(len(row) - n_gain, len(row)):
            if row[j].startswith("+") and row[j] != "+0.0000":
                styled[j] = f"[green]{row[j]}[/green]"
            elif row[j].startswith("-"):
                styled[j] = f"[red]{row[j]}[/red]"
        t.add_row(*styled, end_section=(k == len(body) - 2))
    return t


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Per-class AP CSVs (A.csv B.csv ...); gains "
                                               "are against the first.")],
    classes_from: Annotated[Path | None, _Opt("--classes-from", help="Restrict to the classes of "
                                              "a confusion-pairs CSV (source,confusion).")] = None,
    top: Annotated[int, _Opt("--top", min=0, help="Rows shown and written to the Markdown, bars "
                             "plotted (0 = all); the CSV has every class.")] = 20,
    out: Annotated[Path | None, _Opt("--out", help="Write TABLE.md, plus TABLE.csv and TABLE.png "
                                     "next to it.")] = None,
) -> None:
    """Per-class AP side by side with the gain B − A, sorted by gain."""
    if len(runs) < 2:
        raise typer.BadParameter("give at least two per-class CSVs", param_hint="RUNS")
    logs = [read_per_class_ap(p) for p in runs]
    restrict = None if classes_from is None else read_class_filter(classes_from)
    names = _run_names(runs)
    table = compare_runs(logs, names, restrict)
    if restrict is not None and len(table) == 0:
        raise InputError(classes_from, "none of its classes has an AP in the compared runs")

    console = Console()
    console.print(_rich_table(table, top))
    if out is not None:
        out_csv, out_png = out.with_suffix(".csv"), out.with_suffix(".png")
        last = len(names) - 1
        shown = len(table) if not top else min(top, len(table))
        from wilddet.reports.plots_compare import plot_top_gains  # matplotlib: load on use

        with contextlib.ExitStack() as stack:  # all three renamed only once all are written
            stack.enter_context(atomic_path(out)).write_text(to_markdown(table, top),
                                                             encoding="utf-8")
            write_comparison_csv(stack.enter_context(atomic_path(out_csv)), table)
            plot_top_gains(stack.enter_context(atomic_path(out_png)), table.names[:shown],
                           table.gain[last - 1, :shown],
                           title=f"top AP gains: {names[last]} − {names[0]}")
        Console(stderr=True).print(f"wrote {out}, {out_csv} and {out_png}")


__all__ = ["compare", "read_class_filter"]
