"""``wilddet analyze``: label problems of a data set (method spec §1) and the concurrent-rate
matrix r the concurrent softmax consumes.

Shapes: ``N`` box rows, ``I`` images, ``C`` classes, ``P`` confusion pairs.

Reads every input first (bad input -> InputError naming file, line, field), computes everything,
then writes all outputs together: each through ``atomic_path`` (temporary file + rename), and the
renames only happen once every file has been written, so a failure leaves no new file in DIR.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
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
from wilddet.data.records import BoxTable, ClassList, rows_by_image
from wilddet.errors import InputError
from wilddet.fileio import atomic_path
from wilddet.reports.analysis_report import AnalysisReport, render_report
from wilddet.stats.concurrency import add_hierarchy_pairs, concurrent_rate
from wilddet.stats.confusion import (
    COUNTING_RULES,
    ConfusionPairs,
    confusion_pairs,
    count_confusion_pairs,
    source_box_counts,
)
from wilddet.stats.imbalance import (
    ClassCounts,
    class_counts,
    image_label_counts,
    imbalance_summary,
    multilabel_summary,
)

log = logging.getLogger(__name__)

OUTPUT_FILES = ("class_stats.csv", "confusion_pairs.csv", "concurrent_rate.npz", "report.md",
                "imbalance.png", "confusion.png")


@dataclass(frozen=True)
class Analysis:
    """All results of one analysis (what the output files hold)."""

    classes: ClassList
    num_images: int
    counts: ClassCounts
    expanded: ClassCounts | None
    confusion_boxes: np.ndarray   # [C, C] int64
    source_boxes: np.ndarray      # [C] int64
    pairs: ConfusionPairs
    rate: np.ndarray              # [C, C] float32
    report: AnalysisReport


def analyze_tables(boxes: BoxTable, classes: ClassList, hierarchy: hmod.Hierarchy | None = None,
                   image_labels=None, *, iou_threshold: float = 0.9, min_ratio: float = 0.1,
                   exclude_group_of: bool = False, counting: str = "box-pairs",
                   hierarchy_pairs: bool = False, settings: dict | None = None,
                   progress=None, step=None) -> Analysis:
    """Compute every output from in-memory tables. ``progress(done_images)`` follows the pair
    count; ``step(text)`` announces each phase (both optional, for the CLI)."""
    step = step or (lambda text: None)
    num_classes, num_images = len(classes), boxes.num_images
    step("grouping boxes by image")
    grouping = rows_by_image(boxes.image_codes, num_images)
    step("counting boxes and images per class")
    counts = class_counts(boxes.label_codes, boxes.image_codes, boxes.is_group_of, num_classes,
                          num_images, grouping=grouping)
    expanded = None if hierarchy is None else class_counts(
        boxes.label_codes, boxes.image_codes, boxes.is_group_of, num_classes, num_images,
        hierarchy, grouping=grouping)
    keep = ~boxes.is_group_of if exclude_group_of else None
    step(f"counting confusion pairs (IoU > {iou_threshold})")
    confusion = count_confusion_pairs(boxes.boxes_norm, boxes.label_codes, boxes.image_codes,
                                      num_images, num_classes, iou_threshold, rule=counting,
                                      keep=keep, grouping=grouping, progress=progress)
    source = source_box_counts(boxes.label_codes, num_classes, keep)
    pairs = confusion_pairs(confusion, source, min_ratio)
    rate = concurrent_rate(confusion, source)
    if hierarchy_pairs:
        rate = add_hierarchy_pairs(rate, hierarchy)
    labels = None if image_labels is None else image_label_counts(
        image_labels.label_codes, image_labels.confidence, num_classes)
    report = AnalysisReport(
        classes=classes, num_images=num_images, counts=counts,
        imbalance=imbalance_summary(counts.boxes), pairs=pairs, source_boxes=source,
        settings=dict(settings or {}), expanded=expanded,
        multilabel=None if hierarchy is None else multilabel_summary(counts.boxes, hierarchy),
        image_labels=labels, files=OUTPUT_FILES)
    return Analysis(classes, num_images, counts, expanded, confusion, source, pairs, rate, report)


def analyze_dataset(boxes_csv: Path, classes_csv: Path, hierarchy_json: Path | None,
                    out_dir: Path) -> Analysis:
    """Read a dataset's files, analyse them with the default options and write the outputs into
    ``out_dir`` (what the demo and the experiments run before training)."""
    classes = oid_csv.read_classes(classes_csv)
    boxes = oid_csv.read_boxes(boxes_csv, classes)
    hierarchy = None if hierarchy_json is None else hmod.read_hierarchy(hierarchy_json, classes)
    analysis = analyze_tables(boxes, classes, hierarchy)
    write_outputs(analysis, out_dir)
    return analysis


def _class_stats_frame(a: Analysis) -> pd.DataFrame:
    cols = {"label": a.classes.labels, "name": a.classes.names, "boxes": a.counts.boxes,
            "images": a.counts.images, "group_of_boxes": a.counts.group_of_boxes}
    if a.expanded is not None:
        cols |= {"boxes_expanded": a.expanded.boxes, "images_expanded": a.expanded.images}
    return pd.DataFrame(cols)


def _pairs_frame(a: Analysis) -> pd.DataFrame:
    p, labels, names = a.pairs, a.classes.labels, a.classes.names
    return pd.DataFrame({"source": labels[p.source], "confusion": labels[p.confusion],
                         "source_name": names[p.source], "confusion_name": names[p.confusion],
                         "source_boxes": p.source_boxes, "confusion_boxes": p.confusion_boxes,
                         "ratio": p.ratio})


def write_outputs(a: Analysis, out_dir: Path) -> list[Path]:
    """Write the six output files into ``out_dir`` (created); all or none are renamed in."""
    from wilddet.reports.plots_analysis import plot_confusion, plot_imbalance  # matplotlib

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in OUTPUT_FILES]
    with contextlib.ExitStack() as stack:
        tmp = {p.name: stack.enter_context(atomic_path(p)) for p in paths}
        _class_stats_frame(a).to_csv(tmp["class_stats.csv"], index=False)
        _pairs_frame(a).to_csv(tmp["confusion_pairs.csv"], index=False)
        with open(tmp["concurrent_rate.npz"], "wb") as f:  # a file object: savez adds no suffix
            np.savez(f, labels=np.asarray(a.classes.labels, dtype=str), rate=a.rate,
                     confusion_boxes=a.confusion_boxes, source_boxes=a.source_boxes)
        tmp["report.md"].write_text(render_report(a.report), encoding="utf-8")
        plot_imbalance(tmp["imbalance.png"], a.counts.boxes, a.classes.names, a.counts.images)
        plot_confusion(tmp["confusion.png"], a.pairs, a.classes.names)
    return paths


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


def analyze(
    boxes: Path = typer.Option(..., "--boxes", help="Box annotations CSV (13- or 7-column)."),
    classes: Path = typer.Option(..., "--classes", help="Class descriptions CSV "
                                 "(LabelName,DisplayName; no header)."),
    out: Path = typer.Option(..., "--out", help="Output folder (created if missing)."),
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
    table = oid_csv.read_boxes(boxes, class_list)
    step(f"read {len(table):,} boxes in {table.num_images:,} images")
    settings = {"boxes": str(boxes), "classes": f"{classes} ({len(class_list)} classes)",
                "hierarchy": str(hierarchy) if hierarchy else "-",
                "image labels": str(image_labels) if image_labels else "-",
                "iou threshold": iou_threshold, "min ratio": min_ratio,
                "group-of boxes": "excluded" if exclude_group_of else "included",
                "counting": counting, "hierarchy pairs in r": hierarchy_pairs}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("images scanned for confusion pairs", total=table.num_images)
        result = analyze_tables(
            table, class_list, tree, labels, iou_threshold=iou_threshold, min_ratio=min_ratio,
            exclude_group_of=exclude_group_of, counting=counting,
            hierarchy_pairs=hierarchy_pairs, settings=settings,
            progress=lambda done: bar.update(task, completed=done), step=step)
    step("writing outputs")
    write_outputs(result, out)
    Console().print(_pairs_table(result, top))
    console.print(f"analyzed {len(table):,} boxes in {table.num_images:,} images "
                  f"({time.perf_counter() - start:.1f} s); {len(result.pairs)} confusion pairs "
                  f"with ratio >= {min_ratio}")
    console.print(f"report: {out / 'report.md'}")


__all__ = ["OUTPUT_FILES", "Analysis", "analyze", "analyze_dataset", "analyze_tables",
           "write_outputs"]
