"""The files of ``wilddet evaluate``: read ground truth, verified labels and detections, score
them (Open Images challenge metric, or COCO / LVIS through faster-coco-eval) and write the
result json and the per-class CSV. The one writer of RESULT.json / R.json.

Shapes: ``C`` classes.

RESULT.json: ``{"mAP": float|null, "per_class_AP": {LabelName: float|null}, "num_gt_instances":
{LabelName: float}, "mode": "challenge"|"expand-detections", "settings": {...}, ...}`` with every
class of CLASSES.csv (null AP: no ground truth, left out of the mean), plus
``frequency_groups`` with ``train_boxes``. PER_CLASS.csv: ``label,name,ap,num_gt,num_detections,
num_tp`` (``reports.csv_logs``). COCO / LVIS R.json: ``{"metric", AP..., "per_class_AP": {name:
float|null}, "library", ...}``. Both outputs are renamed into place only after both were written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from wilddet.data import oid_csv
from wilddet.data.coco.frequency import images_per_class
from wilddet.data.coco.json_io import CocoGroundTruth, read_ground_truth, read_results
from wilddet.data.hierarchy import expand_boxes, read_hierarchy
from wilddet.data.records import ClassList
from wilddet.evaluation.coco_metric import CocoMetricResult, Detections, evaluate_coco_style
from wilddet.evaluation.frequency_groups import GroupAP, binned_ap, lvis_group_ap
from wilddet.evaluation.oid_challenge import ChallengeResult, ChallengeSettings, evaluate_challenge
from wilddet.fileio import atomic_path
from wilddet.reports.csv_logs import PerClassAP, write_coco_per_class_ap, write_per_class_ap

log = logging.getLogger(__name__)


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


def _group_json(group: GroupAP) -> dict:
    return {**asdict(group), "ap": _float_or_none(group.ap)}


def frequency_groups_json(ap, train_images, train_boxes: Path) -> dict:
    """``frequency_groups`` of RESULT.json: AP over the classes grouped by training images."""
    return {"train_boxes": str(train_boxes),
            "lvis": [_group_json(g) for g in lvis_group_ap(ap, train_images)],
            "equal_count_bins": [_group_json(g) for g in binned_ap(ap, train_images)]}


def train_images_per_class(train_boxes: Path, classes: ClassList, tree) -> np.ndarray:
    """[C] training images per class (hierarchy-expanded when a hierarchy is given, as the
    evaluated ground truth)."""
    train = oid_csv.read_boxes(train_boxes, classes)
    if tree is not None:
        train = expand_boxes(train, tree)
    return images_per_class(train.image_codes, train.label_codes, len(classes))


def evaluate_files(boxes: Path, image_labels: Path, classes: Path, detections: Path,
                   hierarchy: Path | None, out_json: Path, out_csv: Path | None,
                   settings: ChallengeSettings | None = None, train_boxes: Path | None = None
                   ) -> tuple[ClassList, ChallengeResult, dict]:
    """Read, evaluate with the challenge metric, write RESULT.json (+ PER_CLASS.csv); returns
    (classes, result, the RESULT.json document). Default settings are the challenge's;
    ``train_boxes`` adds ``frequency_groups``."""
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
    if train_boxes is not None:
        counts = train_images_per_class(train_boxes, class_list, tree)
        doc["frequency_groups"] = frequency_groups_json(result.ap, counts, train_boxes)
    with contextlib.ExitStack() as stack:  # rename both only when both are written
        tmp_json = stack.enter_context(atomic_path(out_json))
        tmp_json.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        if out_csv is not None:
            tmp_csv = stack.enter_context(atomic_path(out_csv))
            write_per_class_ap(tmp_csv, PerClassAP.from_result(class_list, result))
    return class_list, result, doc


def _category_keys(gt: CocoGroundTruth) -> list[str]:
    """per_class_AP keys: the category names (``name (id)`` where a name repeats)."""
    names = [str(n) for n in gt.category_names]
    seen = {n: names.count(n) for n in names}
    return [n if seen[n] == 1 else f"{n} ({int(i)})" for n, i in zip(names, gt.category_ids)]


def coco_result_json(gt: CocoGroundTruth, result: CocoMetricResult, inputs: dict) -> dict:
    """R.json of ``--metric coco|lvis``."""
    return {"metric": result.metric, **result.summary,
            "per_class_AP": {k: _float_or_none(a) for k, a in zip(_category_keys(gt),
                                                                   result.per_class_ap)},
            "library": result.library, "num_images": len(gt.image_ids),
            "num_categories": len(gt.category_ids),
            "num_detections": int(result.num_detections.sum()), "inputs": inputs}


def evaluate_coco_files(gt_json: Path, detections: Path, metric: str, out_json: Path,
                        out_csv: Path | None) -> CocoMetricResult:
    """Read GT.json and RESULTS.json, evaluate with the COCO or LVIS metric, write R.json (and
    PER_CLASS.csv), both renamed into place only when both were written."""
    gt = read_ground_truth(gt_json, kind=metric)
    res = read_results(detections, gt)
    dets = Detections(gt.image_ids[res.image], gt.category_ids[res.category], res.bbox,
                      res.score)
    result = evaluate_coco_style(gt.doc, dets, metric)
    doc = coco_result_json(gt, result, {"gt": str(gt_json), "detections": str(detections)})
    with contextlib.ExitStack() as stack:
        tmp_json = stack.enter_context(atomic_path(out_json))
        tmp_json.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        if out_csv is not None:
            write_coco_per_class_ap(stack.enter_context(atomic_path(out_csv)), gt.category_ids,
                                    _category_keys(gt), result.per_class_ap, result.num_gt,
                                    result.num_detections)
    return result
