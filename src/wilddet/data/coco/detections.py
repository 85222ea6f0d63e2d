"""Detections: Open Images CSV <-> COCO results json, against a COCO/LVIS ground truth.

Shapes: ``D`` detections.

CSV -> json: ImageID -> the GT image whose ImageID (``to_oid.oid_image_ids``) it is, LabelName ->
the category of that class (``to_oid.classes_of``), ``bbox = boxes.norm_to_xywh_px`` with the GT
image's size, score kept. json -> CSV: the inverse (``boxes.xywh_px_to_norm``, not clipped:
detections are not range-checked). A detection on an image or of a class the GT does not know
is an error naming the file, line (CSV) or record (json), never dropped.
"""

from __future__ import annotations

import os

import numpy as np

from wilddet.boxes import norm_to_xywh_px, xywh_px_to_norm
from wilddet.data import oid_csv
from wilddet.data.coco.json_io import CocoGroundTruth, CocoResults, results_records
from wilddet.data.coco.to_oid import classes_of, oid_image_ids
from wilddet.data.records import BoxTable
from wilddet.errors import InputError


def detections_to_results(path: str | os.PathLike, gt: CocoGroundTruth) -> list[dict]:
    """Read an Open Images detections CSV (or Kaggle file) and return the COCO results list."""
    dets = oid_csv.read_detections(path, classes_of(gt))
    image, xywh = table_to_pixels(dets, gt, path)
    return results_records(gt, image, dets.label_codes.astype(np.int64), xywh, dets.scores)


def table_to_pixels(dets: BoxTable, gt: CocoGroundTruth, path: str | os.PathLike | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(image [D] int64 index into the GT images, bbox [D, 4] float64 xywh px) of normalized
    detections whose ImageIDs the GT knows (else InputError naming the CSV line)."""
    index = {image_id: i for i, image_id in enumerate(oid_image_ids(gt))}
    vocab = np.asarray([index.get(str(i), -1) for i in dets.image_ids], dtype=np.int64)
    image = vocab[dets.image_codes] if len(dets) else np.zeros(0, np.int64)
    if (image < 0).any():
        row = int(np.flatnonzero(image < 0)[0])
        raise InputError(path, f"image {dets.image_ids[dets.image_codes[row]]!r} is not in the "
                         "ground truth", line=row + 2, field="ImageID")
    return image, norm_to_xywh_px(dets.boxes_norm, gt.widths[image], gt.heights[image])


def results_to_detections(results: CocoResults, gt: CocoGroundTruth) -> BoxTable:
    """The detections of a validated results list as a normalized BoxTable (GT image
    vocabulary)."""
    norm = xywh_px_to_norm(results.bbox, gt.widths[results.image], gt.heights[results.image])
    return BoxTable(results.image.astype(np.int32), results.category.astype(np.int32),
                    norm.astype(np.float32), np.zeros(len(results), bool), oid_image_ids(gt),
                    results.score.astype(np.float32))
