"""Evaluate a detector on a split with the Open Images challenge metric (periodic val mAP, demo).

Shapes: ``I`` evaluated images, ``M`` ground-truth boxes, ``N`` detections, ``C`` classes.

The evaluated images are ``data.val_image_list`` or every image in ``data.val_images`` (sorted),
the first ``max_images`` of them when that is > 0; ground truth of other images is left out, so
a subset is scored as if it were the whole split.

During training the evaluation is sharded (``evaluate_split_sharded``, a collective): rank r of
W predicts images r, r + W, r + 2W, ... of the list, rank 0 gathers the W detection tables,
restores the single-process image order (``merge_shards``) and scores them, so the time per
evaluation is ~1/W of a rank-0-only one and the other ranks wait only for the metric.
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
from wilddet.engine import distributed as ddp
from wilddet.engine.builders import DatasetMeta, require_file
from wilddet.engine.inference import predict_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitEvaluation:
    image_ids: list[str]            # [I] evaluated images
    detections: BoxTable            # [N] on those images
    ground_truth: BoxTable          # [M] raw (not hierarchy-expanded) boxes of those images
    image_labels: ImageLabelTable | None
    result: object                  # oid_challenge.ChallengeResult (coco_metric.CocoMetricResult)

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

    if config.data.format != "oid":
        return evaluate_detections_json(detections, config, meta, image_ids)
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


def _rows_on(table, wanted: list[str]) -> np.ndarray:
    return np.isin(table.image_ids[table.image_codes].astype(str), wanted) if len(table) else \
        np.zeros(0, bool)


def evaluate_detections_json(detections: BoxTable, config: Config, meta: DatasetMeta,
                             image_ids: list[str]) -> SplitEvaluation:
    """``data.format = "coco"|"lvis"``: score ``detections`` with COCO's / LVIS's metric
    (``evaluation.coco_metric``) on the images of ``image_ids`` that ``data.val_annotations``
    holds (others are left out, with a warning); ``result`` is a ``CocoMetricResult``."""
    from wilddet.data.coco.detections import table_to_pixels
    from wilddet.data.coco.json_io import validate_ground_truth
    from wilddet.data.coco.split import json_boxes, load_json_split, subset_ground_truth
    from wilddet.evaluation.coco_metric import Detections, evaluate_coco_style

    path = require_file(config, "val_annotations")
    json_boxes(path, meta.classes)  # the val categories must be the training ones
    gt, tables = load_json_split(path, config.data.format)
    known = set(map(str, tables.boxes.image_ids))
    ids = [i for i in image_ids if i in known]
    if len(ids) < len(image_ids):
        log.warning("%d of %d evaluated images are not in %s: left out",
                    len(image_ids) - len(ids), len(image_ids), path)
    sub = validate_ground_truth(subset_ground_truth(gt, ids), path, gt.kind)
    dets = detections.take(_rows_on(detections, ids))
    image, xywh = table_to_pixels(dets, sub)
    result = evaluate_coco_style(sub.doc, Detections(
        sub.image_ids[image], sub.category_ids[dets.label_codes], xywh,
        np.asarray(dets.scores, np.float64)), config.data.format)
    return SplitEvaluation(ids, dets, tables.boxes.take(_rows_on(tables.boxes, ids)),
                           tables.image_labels.take(_rows_on(tables.image_labels, ids)), result)


def evaluate_split(model: torch.nn.Module, config: Config, meta: DatasetMeta, *,
                   device: torch.device | str = "cpu", max_images: int = 0,
                   progress: bool = False) -> SplitEvaluation:
    """Predict on the val split with ``model`` and score it (``evaluate_detections``)."""
    ids, dets = predict_shard(model, config, device=device, max_images=max_images,
                              progress=progress)
    return evaluate_detections(dets, config, meta, ids)


def shard_image_ids(image_ids: list[str], rank: int, world_size: int) -> list[str]:
    """Rank ``rank``'s share of the evaluated images: ``image_ids[rank::world_size]`` (pure)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                         f"world_size={world_size}")
    return list(image_ids[rank::world_size])


def merge_shards(shards: list[BoxTable], image_ids: list[str]) -> BoxTable:
    """One detections table over ``image_ids`` [I] from the W tables of ``shard_image_ids``
    (shard r over ``image_ids[r::W]``, rows grouped by image in shard order), rows in the order
    a single process predicting ``image_ids`` in order would write them."""
    world_size = len(shards)
    codes = []
    for rank, table in enumerate(shards):
        position = np.arange(rank, len(image_ids), world_size)  # shard code -> global code
        if table.num_images != len(position):
            raise ValueError(f"shard {rank} covers {table.num_images} images, expected "
                             f"{len(position)}")
        codes.append(position[table.image_codes].astype(np.int32))
    code = np.concatenate(codes) if codes else np.zeros(0, np.int32)
    order = np.argsort(code, kind="stable")  # images in list order, rows within one kept

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(t, name) for t in shards])[order]

    return BoxTable(code[order], cat("label_codes"), cat("boxes_norm").reshape(-1, 4),
                    cat("is_group_of"), np.asarray(image_ids, dtype=object), cat("scores"))


def predict_shard(model: torch.nn.Module, config: Config, *, device: torch.device | str,
                  max_images: int = 0, rank: int = 0, world_size: int = 1,
                  progress: bool = False) -> tuple[list[str], BoxTable]:
    """(all evaluated image IDs, detections of this rank's share of them)."""
    ids = split_image_ids(config, max_images)
    mine = shard_image_ids(ids, rank, world_size)
    dataset = ImageFolderDataset(require_file(config, "val_images"), mine, uint8=True)
    dets = predict_dataset(model, dataset, device=device, batch_size=config.eval.batch_size,
                           num_workers=0, amp=config.train.amp, progress=progress, desc="val")
    return ids, dets


def evaluate_split_sharded(model: torch.nn.Module, config: Config, meta: DatasetMeta, *,
                           device: torch.device | str = "cpu", max_images: int = 0,
                           progress: bool = False) -> SplitEvaluation | None:
    """``evaluate_split`` shared by every rank of the process group (call it on all of them):
    each predicts its share, rank 0 gathers and scores and gets the ``SplitEvaluation``; the
    other ranks get None. In a single process it is ``evaluate_split``."""
    rank, world_size = ddp.rank_and_world_size()
    ids, local = predict_shard(model, config, device=device, max_images=max_images, rank=rank,
                               world_size=world_size, progress=progress)
    shards = ddp.gather_object(local)
    if shards is None:
        return None
    return evaluate_detections(merge_shards(shards, ids), config, meta, ids)


