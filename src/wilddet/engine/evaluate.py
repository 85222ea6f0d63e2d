"""Evaluate a detector on a split with the Open Images challenge metric (periodic val mAP, demo).

Shapes: ``I`` evaluated images, ``M`` ground-truth boxes, ``N`` detections, ``C`` classes.

The evaluated images are ``data.val_image_list`` or every image in ``data.val_images`` (sorted),
the first ``max_images`` of them when that is > 0; ground truth of other images is left out, so
a subset is scored as if it were the whole split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from wilddet.config import Config
from wilddet.data.dataset import ImageFolderDataset, read_image_list
from wilddet.data.oid_csv import align_images, read_boxes, read_image_labels
from wilddet.data.records import BoxTable, ImageLabelTable
from wilddet.engine.builders import DatasetMeta, require_file
from wilddet.engine.inference import predict_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitEvaluation:
    image_ids: list[str]            # [I] evaluated images
    detections: BoxTable            # [N] on those images
    ground_truth: BoxTable          # [M] raw (not hierarchy-expanded) boxes of those images
    image_labels: ImageLabelTable | None
    result: object                  # evaluation.oid_challenge.ChallengeResult

    @property
    def mean_ap(self) -> float:
        return float(self.result.mean_ap)


def split_image_ids(config: Config, max_images: int = 0) -> list[str]:
    if config.data.val_image_list:
        ids = read_image_list(require_file(config, "val_image_list"))
    else:
        ids = ImageFolderDataset(require_file(config, "val_images")).image_ids
    return ids[:max_images] if max_images > 0 else ids


def evaluate_detections(detections: BoxTable, config: Config, meta: DatasetMeta,
                        image_ids: list[str]) -> SplitEvaluation:
    """Score ``detections`` against the val ground truth (boxes + verified image labels) of
    ``image_ids`` with the challenge metric, hierarchy-expanding the ground truth."""
    from wilddet.evaluation.oid_challenge import evaluate_challenge

    gt = read_boxes(require_file(config, "val_boxes"), meta.classes)
    labels = None
    if config.data.val_image_labels and config.data.path("val_image_labels").exists():
        labels = read_image_labels(require_file(config, "val_image_labels"), meta.classes)
    wanted = set(image_ids)
    gt = gt.take(np.isin(gt.image_ids[gt.image_codes], list(wanted)) if len(gt) else
                 np.zeros(0, bool))
    if labels is not None:
        labels = labels.take(np.isin(labels.image_ids[labels.image_codes], list(wanted))
                             if len(labels) else np.zeros(0, bool))
    gt_a, labels_a, det_a = align_images(gt, labels, detections)
    result = evaluate_challenge(gt_a, labels_a, det_a, len(meta.classes),
                                hierarchy=meta.hierarchy)
    return SplitEvaluation(list(image_ids), detections, gt, labels, result)


def evaluate_split(model: torch.nn.Module, config: Config, meta: DatasetMeta, *,
                   device: torch.device | str = "cpu", max_images: int = 0,
                   progress: bool = False) -> SplitEvaluation:
    """Predict on the val split with ``model`` and score it (``evaluate_detections``)."""
    ids = split_image_ids(config, max_images)
    dataset = ImageFolderDataset(require_file(config, "val_images"), ids, uint8=True)
    dets = predict_dataset(model, dataset, device=device, batch_size=config.eval.batch_size,
                           num_workers=0, amp=config.train.amp, progress=progress,
                           desc="val")
    return evaluate_detections(dets, config, meta, ids)


def per_class_rows(evaluation: SplitEvaluation, meta: DatasetMeta) -> list[dict]:
    """One dict per class: label, name, ap (NaN without ground truth), num_gt, num_detections,
    num_tp."""
    r = evaluation.result
    return [{"LabelName": str(meta.classes.labels[c]), "DisplayName": str(meta.classes.names[c]),
             "AP": float(r.ap[c]), "num_gt": float(r.num_gt[c]),
             "num_detections": int(r.num_detections[c]), "num_tp": float(r.num_tp[c])}
            for c in range(len(meta.classes))]
