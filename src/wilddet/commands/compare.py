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
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from wilddet.errors import InputError
from wilddet.fileio import atomic_path
from wilddet.reports.analysis_files import read_class_filter
from wilddet.reports.csv_logs import read_per_class_ap
from wilddet.reports.tables import ComparisonTable, compare_runs, header, rows, write_comparison

_Opt = typer.Option


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
    runs: Annotated[list[Path] | None, typer.Argument(help="Per-class AP CSVs (A.csv B.csv ...); "
                                                      "gains are against the first.")] = None,
    classes_from: Annotated[Path | None, _Opt("--classes-from", help="Restrict to the classes of "
                                              "a confusion-pairs CSV (source,confusion).")] = None,
    top: Annotated[int, _Opt("--top", min=0, help="Rows shown and written to the Markdown, bars "
                             "plotted (0 = all); the CSV has every class.")] = 20,
    out: Annotated[Path | None, _Opt("--out", help="Write TABLE.md, plus TABLE.csv and TABLE.png "
                                     "next to it.")] = None,
    diagnose: Annotated[tuple[Path, Path] | None, _Opt("--diagnose", help="Two `wilddet "
                                                      "diagnose` folders A_DIR B_DIR: error "
                                                      "counts per type side by side with the "
                                                      "change B − A (--out: TABLE.md + "
                                                      "TABLE.csv).")] = None,
) -> None:
    """Per-class AP side by side with the gain B − A, sorted by gain."""
    if diagnose is not None:
        _compare_diagnoses(*diagnose, out)
        return
    runs = runs or []
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
        out_md, out_csv, out_png = write_comparison(out, table, top)
        Console(stderr=True).print(f"wrote {out_md}, {out_csv} and {out_png}")


def _compare_diagnoses(a_dir: Path, b_dir: Path, out: Path | None) -> None:
    from wilddet.reports.diagnosis_files import read_summary_json
    from wilddet.reports.error_tables import (
        compare_diagnoses,
        header,
        table_rows,
        to_markdown,
        write_error_comparison_csv,
    )

    names = _run_names([a_dir, b_dir])  # folder names, made unique
    comparison = compare_diagnoses(read_summary_json(a_dir / "summary.json"),
                                   read_summary_json(b_dir / "summary.json"),
                                   (names[0], names[1]))
    t = Table(title="false positives by error type, and missed ground truth")
    for i, title in enumerate(header(comparison)):
        t.add_column(title, justify="left" if i == 0 else "right")
    for row in table_rows(comparison):
        t.add_row(*row)
    Console().print(t)
    if out is not None:
        out_csv = out.with_suffix(".csv")
        with contextlib.ExitStack() as stack:
            stack.enter_context(atomic_path(out)).write_text(to_markdown(comparison),
                                                             encoding="utf-8")
            write_error_comparison_csv(stack.enter_context(atomic_path(out_csv)), comparison)
        Console(stderr=True).print(f"wrote {out} and {out_csv}")


__all__ = ["compare"]
