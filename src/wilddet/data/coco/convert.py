"""The four file conversions of ``wilddet convert`` (read, validate everything, then write
atomically), callable from the CLI, ``wilddet synth --format`` and tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from wilddet.data import oid_csv
from wilddet.data.coco.detections import detections_to_results, results_to_detections
from wilddet.data.coco.from_oid import annotation_chunks, coco_head, read_oid_split
from wilddet.data.coco.image_sizes import ImageSizes, sizes_from_csv, sizes_from_folder
from wilddet.data.coco.json_io import (
    Kind,
    read_ground_truth,
    read_results,
    write_json,
    write_json_streamed,
)
from wilddet.data.coco.to_oid import classes_of, coco_to_oid, write_oid_folder

PathLike = str | os.PathLike


def oid_files_to_coco(boxes: PathLike, classes: PathLike, out: PathLike, *, kind: Kind = "coco",
                      image_labels: PathLike | None = None, hierarchy: PathLike | None = None,
                      images: PathLike | None = None, image_sizes: PathLike | None = None
                      ) -> dict:
    """Open Images CSVs -> ``out`` COCO / LVIS json; image sizes from the files in ``images``
    (headers only) or the ``image_sizes`` CSV (exactly one of the two). Returns the counts
    ``{"images", "annotations", "categories"}``."""
    if (images is None) == (image_sizes is None):
        raise ValueError("give exactly one of images / image_sizes")
    split = read_oid_split(boxes, classes, image_labels, hierarchy)
    sizes = sizes_from_folder(images, split.image_ids) if images is not None else \
        sizes_from_csv(image_sizes, split.image_ids)
    return _write_split(out, split, sizes, kind)


def _write_split(out: PathLike, split, sizes: ImageSizes, kind: Kind) -> dict:
    head = coco_head(split, sizes, kind)
    n = write_json_streamed(out, head, "annotations", annotation_chunks(split, sizes))
    return {"images": len(head["images"]), "annotations": n,
            "categories": len(head["categories"])}


def coco_file_to_oid(gt: PathLike, out_dir: PathLike) -> list[Path]:
    """COCO / LVIS json -> ``out_dir``/annotations-bbox.csv, image-labels.csv,
    class-descriptions.csv (+ hierarchy.json). Returns the written paths."""
    return write_oid_folder(coco_to_oid(read_ground_truth(gt)), out_dir)


def detections_csv_to_results(detections: PathLike, gt: PathLike, out: PathLike) -> int:
    """Open Images detections CSV -> COCO results json against ``gt``; returns the count."""
    truth = read_ground_truth(gt)
    records = detections_to_results(detections, truth)
    write_json(out, records)
    return len(records)


def results_to_detections_csv(results: PathLike, gt: PathLike, out: PathLike) -> int:
    """COCO results json -> Open Images detections CSV against ``gt``; returns the count."""
    truth = read_ground_truth(gt)
    table = results_to_detections(read_results(results, truth), truth)
    oid_csv.write_detections(out, table, classes_of(truth))
    return len(table)


SYNTH_JSON = "{split}-{kind}.json"


def synthetic_split_to_json(dataset_dir: PathLike, split: str, kind: Kind,
                            image_size: int) -> Path:
    """``wilddet synth --format coco|lvis``: ``DIR/<split>-<kind>.json`` from the split's CSVs
    (``<split>-annotations-bbox.csv``, ``-human-imagelabels.csv``, class-descriptions.csv,
    hierarchy.json); sizes from the images' headers, or ``image_size`` when the set has none."""
    d = Path(dataset_dir)
    hierarchy = d / "hierarchy.json"
    split_data = read_oid_split(d / f"{split}-annotations-bbox.csv", d / "class-descriptions.csv",
                                d / f"{split}-annotations-human-imagelabels.csv",
                                hierarchy if hierarchy.is_file() else None)
    if (d / split).is_dir():
        sizes = sizes_from_folder(d / split, split_data.image_ids)
    else:
        n = len(split_data.image_ids)
        sizes = ImageSizes([f"{i}.jpg" for i in split_data.image_ids],
                           np.full(n, image_size, np.int64), np.full(n, image_size, np.int64))
    out = d / SYNTH_JSON.format(split=split, kind=kind)
    _write_split(out, split_data, sizes, kind)
    return out
