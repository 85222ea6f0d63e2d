"""``wilddet diagnose``: why each false positive of the challenge metric is wrong (the
error-analysis spec): seven error types, ΔmAP per type, missed ground truth, PR curves.

Shapes: ``T`` = 7 error types.

Writes DIR/errors.csv, DIR/summary.json, DIR/pr_curves.csv and pictures
(``wilddet.reports.diagnose_run``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from wilddet.evaluation.diagnose import ERROR_TYPES
from wilddet.reports.diagnose_run import DiagnoseInputs, diagnose_files

_Opt = typer.Option


def diagnose(
    boxes: Annotated[Path, _Opt("--boxes", help="Ground-truth boxes CSV; raw (unexpanded) when "
                                "--hierarchy is given.")],
    image_labels: Annotated[Path, _Opt("--image-labels", help="Human-verified image-level "
                                       "labels CSV.")],
    classes: Annotated[Path, _Opt("--classes", help="Class descriptions CSV.")],
    detections: Annotated[Path, _Opt("--detections", help="Detections CSV (OID or Kaggle).")],
    out: Annotated[Path, _Opt("--out", help="Output folder (created).")],
    hierarchy: Annotated[Path | None, _Opt("--hierarchy", help="Class hierarchy JSON: expand the "
                                           "ground truth; enables the hierarchy error.")] = None,
    pairs: Annotated[Path | None, _Opt("--pairs", help="confusion_pairs.csv of wilddet analyze "
                                       "(source,confusion): enables the confusion error.")] = None,
    images: Annotated[Path | None, _Opt("--images", help="Folder of <ImageID>.jpg: also draw a "
                                        "gallery of the highest-scored false positives.")] = None,
) -> None:
    """Error types of every false positive under the Open Images challenge rules, with ΔmAP."""
    console = Console(stderr=True)
    t0 = time.perf_counter()
    inputs = DiagnoseInputs(boxes, image_labels, classes, detections, hierarchy, pairs, images)
    with console.status("diagnosing", spinner="dots"):
        _, d = diagnose_files(inputs, out)
    seconds = time.perf_counter() - t0
    table = Table(title=f"false positives by error type (mAP "
                        f"{'n/a' if math.isnan(d.mean_ap) else f'{d.mean_ap:.4f}'})")
    for col, just in (("error", "left"), ("false positives", "right"), ("ΔmAP", "right")):
        table.add_column(col, justify=just)
    for t, name in enumerate(ERROR_TYPES):
        delta = d.delta_map[t]
        table.add_row(name, f"{int(d.fp_totals[t]):,}",
                      "n/a" if math.isnan(delta) else f"{delta:+.4f}")
    Console().print(table)
    console.print(f"missed ground truth: {int(d.missed_gt.sum()):,} boxes, "
                  f"{int(d.missed_group_of.sum()):,} group-of boxes; {seconds:.1f} s")
    console.print(f"wrote {out}/errors.csv, summary.json, pr_curves.csv and pictures")


__all__ = ["diagnose"]
