"""``wilddet analyze``: label problems of a data set (method spec §1) and the concurrent-rate
matrix r the concurrent softmax consumes.

Shapes: ``N`` box rows, ``I`` images, ``C`` classes, ``P`` confusion pairs.

Reads every input first (bad input -> InputError naming file, line, field), computes everything
(``stats.analysis``), then writes all outputs together (``reports.analysis_files``: temporary
files renamed in only once every file has been written, so a failure leaves no new file in DIR).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from wilddet.data import hierarchy as hmod
from wilddet.data import oid_csv
from wilddet.errors import InputError
from wilddet.reports.analysis_files import write_analysis
from wilddet.stats.analysis import Analysis, analyze_tables
from wilddet.stats.confusion import COUNTING_RULES

log = logging.getLogger(__name__)


def _pairs_table(a: Analysis, top: int) -> Table:
    p, names = a.pairs, a.classes.names
    table = Table(title=f"Top confusion pairs ({min(top, len(p))} of {len(p)})")
    for col, just in (("source", "left"), ("confusion", "left"), ("#source", "right"),
                      ("#confusion", "right"), ("ratio", "right")):
        table.add_column(col, justify=just)
    for k in range(min(top, len(p))):
        table.add_row(str(names[p.source[k]]), str(names[p.confusion[k]]),
                      f"{p.source_boxes[k]:,}", f"{p.confusion_boxes[k]:,}", f"{p.ratio[k]:.4f}")
    return table


def _read_json_dataset(gt: Path, hierarchy: Path | None):
    """(classes, hierarchy or None, image labels, boxes) of a COCO / LVIS json
    (``data.coco.to_oid``: LVIS negatives / not-exhaustive lists become image labels)."""
    from wilddet.data.coco.split import load_json_split

    _, tables = load_json_split(gt)
    tree = None
    if hierarchy is not None:
        tree = hmod.read_hierarchy(hierarchy, tables.classes)
    elif tables.hierarchy is not None:
        tree = hmod.parse_hierarchy(tables.hierarchy, tables.classes, f"{gt}:oid_hierarchy")
    return tables.classes, tree, tables.image_labels, tables.boxes


def _read_oid_dataset(boxes: Path | None, classes: Path | None, hierarchy: Path | None,
                      image_labels: Path | None, step):
    """(classes, hierarchy or None, image labels or None, boxes) of Open Images CSVs."""
    if boxes is None or classes is None:
        raise InputError(None, "needs --boxes and --classes (or --gt GT.json)", field="--boxes")
    step(f"reading {classes}")
    class_list = oid_csv.read_classes(classes)
    tree = None
    if hierarchy is not None:
        step(f"reading {hierarchy}")
        tree = hmod.read_hierarchy(hierarchy, class_list)
    labels = None
    if image_labels is not None:
        step(f"reading {image_labels}")
        labels = oid_csv.read_image_labels(image_labels, class_list)
    step(f"reading {boxes}")
    return class_list, tree, labels, oid_csv.read_boxes(boxes, class_list)


def _analyze_with_progress(console: Console, table, class_list, tree, labels, step,
                           **options) -> Analysis:
    """``stats.analysis.analyze_tables`` under a progress bar of the confusion-pair scan."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("images scanned for confusion pairs", total=table.num_images)
        return analyze_tables(table, class_list, tree, labels, step=step,
                              progress=lambda done: bar.update(task, completed=done), **options)


def analyze(
    out: Path = typer.Option(..., "--out", help="Output folder (created if missing)."),
    boxes: Path | None = typer.Option(None, "--boxes", help="Box annotations CSV (13- or "
                                      "7-column)."),
    classes: Path | None = typer.Option(None, "--classes", help="Class descriptions CSV "
                                        "(LabelName,DisplayName; no header)."),
    gt: Path | None = typer.Option(None, "--gt", help="COCO / LVIS ground-truth json instead "
                                   "of --boxes/--classes/--image-labels (categories = classes; "
                                   "its oid_hierarchy unless --hierarchy is given)."),
    hierarchy: Path | None = typer.Option(None, "--hierarchy", help="Hierarchy JSON: adds "
                                          "boxes_expanded/images_expanded and the multi-label "
                                          "summary."),
    image_labels: Path | None = typer.Option(None, "--image-labels", help="Human-verified "
                                             "image-level labels CSV (counts in report.md)."),
    iou_threshold: float = typer.Option(0.9, "--iou-threshold", min=0.0, max=1.0,
                                        help="Boxes pair when IoU is strictly greater."),
    min_ratio: float = typer.Option(0.1, "--min-ratio", min=0.0,
                                    help="List pairs with ratio >= this (inclusive)."),
    exclude_group_of: bool = typer.Option(False, "--exclude-group-of",
                                          help="Leave group-of boxes out of the pair counts "
                                               "and source boxes."),
    counting: str = typer.Option("box-pairs", "--counting", help="box-pairs: (i-box, j-box) "
                                 "pairs, symmetric, as Table 2; source-boxes: distinct i-boxes "
                                 "with a j partner."),
    hierarchy_pairs: bool = typer.Option(False, "--hierarchy-pairs", help="Set r = 1 between "
                                         "each class and its ancestors in concurrent_rate.npz "
                                         "(needs --hierarchy)."),
    top: int = typer.Option(20, "--top", min=0, help="Pairs shown on the terminal."),
) -> None:
    """Measure imbalance, explicit multi-labels and confusion pairs; write the concurrent-rate
    matrix for the concurrent softmax."""
    if counting not in COUNTING_RULES:
        raise InputError(None, f"must be one of {', '.join(COUNTING_RULES)}, got {counting!r}",
                         field="--counting")
    if hierarchy_pairs and hierarchy is None:
        raise InputError(None, "needs --hierarchy", field="--hierarchy-pairs")
    console = Console(stderr=True)
    start = time.perf_counter()

    def step(text: str) -> None:
        console.print(f"[{time.perf_counter() - start:6.1f} s] {text}", highlight=False)

    if gt is not None:
        if boxes is not None or classes is not None or image_labels is not None:
            raise InputError(None, "give either --gt or --boxes/--classes/--image-labels",
                             field="--gt")
        step(f"reading {gt}")
        class_list, tree, labels, table = _read_json_dataset(gt, hierarchy)
        boxes = classes = gt
    else:
        class_list, tree, labels, table = _read_oid_dataset(boxes, classes, hierarchy,
                                                            image_labels, step)
    step(f"read {len(table):,} boxes in {table.num_images:,} images")
    settings = {"boxes": str(boxes), "classes": f"{classes} ({len(class_list)} classes)",
                "hierarchy": str(hierarchy) if hierarchy else
                ("oid_hierarchy of the json" if tree is not None else "-"),
                "image labels": str(image_labels) if image_labels else
                ("from the json" if gt is not None else "-"),
                "iou threshold": iou_threshold, "min ratio": min_ratio,
                "group-of boxes": "excluded" if exclude_group_of else "included",
                "counting": counting, "hierarchy pairs in r": hierarchy_pairs}
    result = _analyze_with_progress(
        console, table, class_list, tree, labels, step, iou_threshold=iou_threshold,
        min_ratio=min_ratio, exclude_group_of=exclude_group_of, counting=counting,
        hierarchy_pairs=hierarchy_pairs)
    step("writing outputs")
    write_analysis(result, out, settings)
    Console().print(_pairs_table(result, top))
    console.print(f"analyzed {len(table):,} boxes in {table.num_images:,} images "
                  f"({time.perf_counter() - start:.1f} s); {len(result.pairs)} confusion pairs "
                  f"with ratio >= {min_ratio}")
    console.print(f"report: {out / 'report.md'}")


__all__ = ["analyze"]
