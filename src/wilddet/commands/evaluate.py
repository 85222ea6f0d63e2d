"""``wilddet evaluate``: the Open Images Detection Challenge metric of a detections file.

Shapes: ``C`` classes.

Writes RESULT.json and PER_CLASS.csv (formats: ``wilddet.reports.evaluation_files``).
``--train-boxes`` adds ``frequency_groups`` (AP over classes grouped by training images: LVIS
r/c/f and 5 equal-count bins).

``--metric coco|lvis --gt GT.json``: COCO's / LVIS's AP computed by faster-coco-eval
(``wilddet.evaluation.coco_metric``); R.json ``{"metric", AP..., "per_class_AP": {name:
float|null}, "library"}``, PER_CLASS.csv ``category_id,name,ap,num_gt,num_detections``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from wilddet.evaluation.coco_metric import CocoMetricResult
from wilddet.evaluation.oid_challenge import ChallengeSettings
from wilddet.reports.evaluation_files import evaluate_coco_files, evaluate_files

_Opt = typer.Option


def _groups_table(groups: dict) -> Table:
    table = Table(title=f"AP by training images ({groups['train_boxes']})")
    for col in ("group", "AP", "classes with AP", "training images"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for g in groups["lvis"] + groups["equal_count_bins"]:
        ap = "n/a" if g["ap"] is None else f"{g['ap']:.4f}"
        span = "-" if g["min_images"] < 0 else f"{g['min_images']}-{g['max_images']}"
        table.add_row(g["name"], ap, f"{g['num_classes_with_ap']}/{g['num_classes']}", span)
    return table


def _print_coco(console: Console, result: CocoMetricResult, seconds: float) -> None:
    table = Table(title=f"{result.metric.upper()} box metrics ({result.library})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.summary.items():
        table.add_row(key, "n/a" if value is None else f"{value:.4f}")
    console.print(table)
    console.print(f"evaluated in {seconds:.1f} s")


def _require(value, flag: str, metric: str) -> None:
    if value is None:
        raise typer.BadParameter(f"--metric {metric} needs {flag}", param_hint=flag)


def evaluate(
    detections: Annotated[Path, _Opt("--detections", help="Detections: Open Images CSV "
                                     "ImageID,LabelName,Score,XMin,XMax,YMin,YMax or Kaggle "
                                     "ImageId,PredictionString (--metric oid); COCO results "
                                     "json (--metric coco|lvis).")],
    out_json: Annotated[Path, _Opt("--out-json", help="Output RESULT.json.")],
    metric: Annotated[str, _Opt("--metric", help="oid (the Open Images challenge metric), coco "
                                "or lvis (faster-coco-eval).")] = "oid",
    boxes: Annotated[Path | None, _Opt("--boxes", help="Ground-truth boxes CSV (13- or "
                                       "7-column); raw (unexpanded) when --hierarchy is given. "
                                       "--metric oid.")] = None,
    image_labels: Annotated[Path | None, _Opt("--image-labels", help="Human-verified "
                                              "image-level labels CSV (ImageID,[Source,]"
                                              "LabelName,Confidence). --metric oid.")] = None,
    classes: Annotated[Path | None, _Opt("--classes", help="Class descriptions CSV (the "
                                         "evaluated classes). --metric oid.")] = None,
    gt: Annotated[Path | None, _Opt("--gt", help="COCO / LVIS ground-truth json (--metric "
                                    "coco|lvis).")] = None,
    train_boxes: Annotated[Path | None, _Opt("--train-boxes", help="Training boxes CSV: add AP "
                                             "by training-image frequency (r/c/f and 5 "
                                             "equal-count bins). --metric oid.")] = None,
    hierarchy: Annotated[Path | None, _Opt("--hierarchy", help="Class hierarchy JSON: expand "
                                           "boxes and image labels before evaluating.")] = None,
    out_csv: Annotated[Path | None, _Opt("--out-csv", help="Output per-class CSV label,name,ap,"
                                         "num_gt,num_detections,num_tp (coco|lvis: "
                                         "category_id,name,ap,num_gt,num_detections).")] = None,
    expand_detections: Annotated[bool, _Opt("--expand-detections", help="Copy each detection to "
                                            "its ancestors verified on the image (mmdetection's "
                                            "behaviour; not the challenge rule). Needs "
                                            "--hierarchy.")] = False,
    iou_threshold: Annotated[float, _Opt("--iou-threshold", min=0.0, max=1.0,
                                         help="IoU match threshold (inclusive).")] = 0.5,
    ioa_threshold: Annotated[float, _Opt("--ioa-threshold", min=0.0, max=1.0,
                                         help="Group-of IoA threshold (inclusive).")] = 0.5,
    group_of_weight: Annotated[float, _Opt("--group-of-weight", min=0.0, help="TP and num_gt "
                                           "weight of a group-of box (0 = the V2 metric).")] = 1.0,
) -> None:
    """Open Images Challenge mAP (exactly the TF OD API evaluator's numbers) of DETECTIONS, or
    COCO / LVIS AP with --metric coco|lvis --gt GT.json."""
    metric = metric.lower()
    if metric not in ("oid", "coco", "lvis"):
        raise typer.BadParameter(f"{metric!r} is not oid, coco or lvis", param_hint="--metric")
    console = Console(stderr=True)
    if metric != "oid":
        _require(gt, "--gt", metric)
        t0 = time.perf_counter()
        with console.status("evaluating", spinner="dots"):
            coco_result = evaluate_coco_files(gt, detections, metric, out_json, out_csv)
        _print_coco(console, coco_result, time.perf_counter() - t0)
        console.print(f"wrote {out_json}" + (f" and {out_csv}" if out_csv else ""))
        return
    for value, flag in ((boxes, "--boxes"), (image_labels, "--image-labels"),
                        (classes, "--classes")):
        _require(value, flag, metric)
    if expand_detections and hierarchy is None:
        raise typer.BadParameter("--expand-detections needs --hierarchy",
                                 param_hint="--expand-detections")
    settings = ChallengeSettings(iou_threshold=iou_threshold, ioa_threshold=ioa_threshold,
                                 group_of_weight=group_of_weight,
                                 expand_detections=expand_detections)
    t0 = time.perf_counter()
    with console.status("evaluating", spinner="dots"):
        class_list, result, doc = evaluate_files(boxes, image_labels, classes, detections,
                                                 hierarchy, out_json, out_csv, settings,
                                                 train_boxes)
    seconds = time.perf_counter() - t0
    with_gt = int((result.num_gt > 0).sum())
    m = result.mean_ap
    console.print(f"mAP {'n/a' if math.isnan(m) else f'{m:.4f}'} over {with_gt}/"
                  f"{len(class_list)} classes with ground truth ({settings.mode}"
                  f"{', hierarchy-expanded ground truth' if hierarchy else ''}) in "
                  f"{seconds:.1f} s")
    if "frequency_groups" in doc:
        console.print(_groups_table(doc["frequency_groups"]))
    console.print(f"wrote {out_json}" + (f" and {out_csv}" if out_csv else ""))


__all__ = ["evaluate"]
