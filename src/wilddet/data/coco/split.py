"""COCO / LVIS json as a training or evaluation split: the Open Images tables of one file,
parsed once per process (``data.format = "coco"|"lvis"``).

Shapes: ``A`` annotations, ``I`` images, ``C`` classes.

``load_json_split`` is memoised on (absolute path, size, mtime), so the metadata reader, the
annotation cache and the evaluator of one process share one parse of a large file.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from wilddet.data.coco.json_io import CocoGroundTruth, Kind, read_ground_truth
from wilddet.data.coco.to_oid import OidTables, coco_to_oid
from wilddet.data.records import BoxTable, ClassList
from wilddet.errors import InputError


@functools.lru_cache(maxsize=4)
def _load(path: str, size: int, mtime_ns: int) -> tuple[CocoGroundTruth, OidTables]:
    gt = read_ground_truth(path)
    return gt, coco_to_oid(gt)


def load_json_split(path: str | os.PathLike, kind: Kind | None = None
                    ) -> tuple[CocoGroundTruth, OidTables]:
    """The validated ground truth of ``path`` and its Open Images tables (memoised); ``kind``
    "lvis" requires an LVIS file (``neg_category_ids`` / ``frequency``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    st = path.stat()
    gt, tables = _load(str(path.resolve()), st.st_size, st.st_mtime_ns)
    if kind == "lvis" and gt.kind != "lvis":
        raise InputError(path, "not an LVIS file (no neg_category_ids / frequency)",
                         field="categories")
    return gt, tables


def json_boxes(path: str | os.PathLike, classes: ClassList) -> BoxTable:
    """The boxes of a json split coded in ``classes`` (the training categories): a val file
    must hold the same categories in the same order."""
    _, tables = load_json_split(path)
    if list(tables.classes.labels) != list(classes.labels):
        raise InputError(path, "its categories differ from the training file's (same ids, "
                         "names and order needed)", field="categories")
    return tables.boxes


def subset_ground_truth(gt: CocoGroundTruth, image_ids) -> dict:
    """A document with only the images whose ImageID (``to_oid.oid_image_ids``) is in
    ``image_ids`` and their annotations (categories and top-level fields kept)."""
    from wilddet.data.coco.to_oid import oid_image_ids

    wanted = set(map(str, image_ids))
    keep = np.asarray([i in wanted for i in oid_image_ids(gt)], dtype=bool)
    images = [im for im, k in zip(gt.images, keep.tolist()) if k]
    anns = [a for a, k in zip(gt.doc["annotations"], keep[gt.ann_image].tolist()) if k]
    return {**gt.doc, "images": images, "annotations": anns}
