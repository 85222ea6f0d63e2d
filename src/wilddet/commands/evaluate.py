"""``wilddet evaluate``: the Open Images Detection Challenge metric of a detections file.

Shapes: ``C`` classes.

RESULT.json: ``{"mAP": float|null, "per_class_AP": {LabelName: float|null}, "num_gt_instances":
{LabelName: float}, "mode": "challenge"|"expand-detections", "settings": {...}, ...}`` with every
class of CLASSES.csv (null AP: no ground truth, left out of the mean). PER_CLASS.csv:
``label,name,ap,num_gt,num_detections,num_tp`` (``wilddet.reports.csv_logs``). Both outputs are
renamed into place only after both were written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from wilddet.data import oid_csv
from wilddet.data.hierarchy import read_hierarchy
from wilddet.data.records import ClassList
from wilddet.evaluation.oid_challenge import ChallengeResult, ChallengeSettings, evaluate_challenge
from wilddet.fileio import atomic_path
from wilddet.reports.csv_logs import PerClassAP, write_per_class_ap

log = logging.getLogger(__name__)
_Opt = typer.Option


def _float_or_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def result_json(classes: ClassList, result: ChallengeResult, *, hierarchy_expansion: bool,
                num_images: int, inputs: dict[str, str]) -> dict:
    """The RESULT.json document."""
    labels = [str(lab) for lab in classes.labels]
    return {
        "mAP": _float_or_none(result.mean_ap),
        "per_class_AP": {lab: _float_or_none(a) for lab, a in zip(labels, result.ap)},
        "num_gt_instances": {lab: float(n) for lab, n in zip(labels, result.num_gt)},
        "mode": result.settings.mode,
        "settings": {**asdict(result.settings), "hierarchy_expansion": hierarchy_expansion},
        "num_classes": len(labels),
        "num_classes_with_gt": int((result.num_gt > 0).sum()),
        "num_images": num_images,
        "inputs": inputs,
    }


def evaluate_files(boxes: Path, image_labels: Path, classes: Path, detections: Path,
                   hierarchy: Path | None, out_json: Path, out_csv: Path | None,
                   settings: ChallengeSettings | None = None
                   ) -> tuple[ClassList, ChallengeResult]:
    """Read, evaluate, write (the command without the terminal output); default settings are
    the challenge's."""
    settings = settings or ChallengeSettings()
    class_list = oid_csv.read_classes(classes)
    gt = oid_csv.read_boxes(boxes, class_list)
    labels = oid_csv.read_image_labels(image_labels, class_list)
    dets = oid_csv.read_detections(detections, class_list)
    tree = None if hierarchy is None else read_hierarchy(hierarchy, class_list)
    if tree is not None and tree.missing:
        log.warning("%d classes are not in the hierarchy (no ancestors): %s", len(tree.missing),
                    ", ".join(tree.missing[:5]) + (" ..." if len(tree.missing) > 5 else ""))
    gt, labels, dets = oid_csv.align_images(gt, labels, dets)
    result = evaluate_challenge(gt, labels, dets, len(class_list), settings, hierarchy=tree)
    doc = result_json(class_list, result, hierarchy_expansion=tree is not None,
                      num_images=gt.num_images,
                      inputs={"boxes": str(boxes), "image_labels": str(image_labels),
                              "classes": str(classes), "detections": str(detections),
                              "hierarchy": None if hierarchy is None else str(hierarchy)})
    with contextlib.ExitStack() as stack:  # rename both only when both are written
        tmp_json = stack.enter_context(atomic_path(out_json))
        tmp_json.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        if out_csv is not None:
            tmp_csv = stack.enter_context(atomic_path(out_csv))
            write_per_class_ap(tmp_csv, PerClassAP.from_result(class_list, result))
    return class_list, result


def evaluate(
    boxes: Annotated[Path, _Opt("--boxes", help="Ground-truth boxes CSV (13- or 7-column); raw "
                                "(unexpanded) when --hierarchy is given.")],
    image_labels: Annotated[Path, _Opt("--image-labels", help="Human-verified image-level labels "
                                       "CSV (ImageID,[Source,]LabelName,Confidence).")],
    classes: Annotated[Path, _Opt("--classes", help="Class descriptions CSV (the evaluated "
                                  "classes).")],
    detections: Annotated[Path, _Opt("--detections", help="Detections CSV: ImageID,LabelName,"
                                     "Score,XMin,XMax,YMin,YMax or Kaggle ImageId,"
                                     "PredictionString.")],
    out_json: Annotated[Path, _Opt("--out-json", help="Output RESULT.json.")],
    hierarchy: Annotated[Path | None, _Opt("--hierarchy", help="Class hierarchy JSON: expand "
                                           "boxes and image labels before evaluating.")] = None,
    out_csv: Annotated[Path | None, _Opt("--out-csv", help="Output per-class CSV label,name,ap,"
                                         "num_gt,num_detections,num_tp.")] = None,
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
    """Open Images Challenge mAP (exactly the TF OD API evaluator's numbers) of DETECTIONS."""
    if expand_detections and hierarchy is None:
        raise typer.BadParameter("--expand-detections needs --hierarchy",
                                 param_hint="--expand-detections")
    settings = ChallengeSettings(iou_threshold=iou_threshold, ioa_threshold=ioa_threshold,
                                 group_of_weight=group_of_weight,
                                 expand_detections=expand_detections)
    console = Console(stderr=True)
    t0 = time.perf_counter()
    with console.status("evaluating", spinner="dots"):
        class_list, result = evaluate_files(boxes, image_labels, classes, detections, hierarchy,
                                            out_json, out_csv, settings)
    seconds = time.perf_counter() - t0
    with_gt = int((result.num_gt > 0).sum())
    m = result.mean_ap
    console.print(f"mAP {'n/a' if math.isnan(m) else f'{m:.4f}'} over {with_gt}/"
                  f"{len(class_list)} classes with ground truth ({settings.mode}"
                  f"{', hierarchy-expanded ground truth' if hierarchy else ''}) in "
                  f"{seconds:.1f} s")
    console.print(f"wrote {out_json}" + (f" and {out_csv}" if out_csv else ""))


__all__ = ["evaluate", "evaluate_files", "result_json"]
