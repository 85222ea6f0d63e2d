"""COCO / LVIS ground-truth json -> Open Images tables and files (``wilddet convert --to oid``).

Shapes: ``A`` annotations, ``L`` image-label rows, ``I`` images, ``K`` categories (= classes).

The inverse of ``from_oid`` on files it wrote (their ``oid_*`` fields make it lossless), and a
reasonable reading of any other COCO/LVIS file:

- classes: one per category in ascending id order; LabelName = ``oid_label`` (else the category
  ``name``), DisplayName = ``name``.
- ImageID = ``oid_image_id`` (else ``file_name`` without its extension).
- boxes: ``XMin = x/W, XMax = (x+w)/W, YMin = y/H, YMax = (y+h)/H`` (``boxes.xywh_px_to_norm``,
  clipped into [0, 1]: boxes may pass the border by ``BORDER_TOLERANCE_PX``); IsGroupOf =
  ``iscrowd``; the other columns from ``oid`` (else Source = the format name, Confidence 1, and
  -1 = unknown for IsOccluded, IsTruncated, IsDepiction, IsInside).
- image-level labels: ``oid_image_labels`` when present. Otherwise LVIS: confidence 1 for every
  category with a box on the image and every ``not_exhaustive_category_ids``, 0 for
  ``neg_category_ids``; COCO (exhaustively annotated): 1 for the categories with a box, 0 for
  every other category.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilddet.boxes import xywh_px_to_norm
from wilddet.data import oid_csv
from wilddet.data.coco.json_io import CocoGroundTruth, _ints, _records
from wilddet.data.records import BoxTable, ClassList, ImageLabelTable
from wilddet.errors import InputError
from wilddet.fileio import atomic_path

OID_FILES = ("annotations-bbox.csv", "image-labels.csv", "class-descriptions.csv",
             "hierarchy.json")
UNKNOWN_FLAG = -1


@dataclass(frozen=True)
class OidTables:
    """Open Images annotations of a COCO/LVIS file: boxes [A] (doc order) and image_labels [L]
    share one image vocabulary ``image_ids`` [I] (the json's image order); box_attributes: the
    BOX_ATTRIBUTE_COLUMNS [A] each; label_sources [L] str; hierarchy: json doc or None."""

    classes: ClassList
    boxes: BoxTable
    box_attributes: dict
    image_labels: ImageLabelTable
    label_sources: np.ndarray
    hierarchy: dict | None


def classes_of(gt: CocoGroundTruth) -> ClassList:
    """The ClassList of the categories (class code = position in ascending id order)."""
    cats = gt.categories
    labels = [str(c.get("oid_label") or c["name"]) for c in cats]
    seen: dict[str, int] = {}
    for k, label in enumerate(labels):
        if label in seen:
            raise InputError(gt.path, f"two categories map to the class {label!r} (ids "
                             f"{int(gt.category_ids[seen[label]])} and {int(gt.category_ids[k])})",
                             field="categories")
        seen[label] = k
    return ClassList(np.asarray(labels, dtype=object),
                     np.asarray([str(c["name"]) for c in cats], dtype=object))


def oid_image_ids(gt: CocoGroundTruth) -> np.ndarray:
    """[I] ImageID of each json image: ``oid_image_id``, else ``file_name`` minus extension."""
    ids = []
    for i, im in enumerate(gt.images):
        value = im.get("oid_image_id")
        if value is None:
            name = im.get("file_name")
            if not isinstance(name, str) or not name:
                raise InputError(gt.path, "missing (needed for the ImageID)",
                                 field=f"images[{i}].file_name")
            value = os.path.splitext(os.path.basename(name))[0]
        ids.append(str(value))
    out = np.asarray(ids, dtype=object)
    if len(set(ids)) != len(ids):
        seen: dict[str, int] = {}
        for i, v in enumerate(ids):
            if v in seen:
                raise InputError(gt.path, f"ImageID {v!r} also used by images[{seen[v]}]",
                                 field=f"images[{i}].file_name")
            seen[v] = i
    return out


def coco_boxes(gt: CocoGroundTruth, image_ids: np.ndarray) -> BoxTable:
    """[A] boxes of the annotations, normalized by their image's size."""
    w = gt.widths[gt.ann_image]
    h = gt.heights[gt.ann_image]
    norm = xywh_px_to_norm(gt.ann_bbox, w, h, clip=True).astype(np.float32)
    return BoxTable(gt.ann_image.astype(np.int32), gt.ann_category.astype(np.int32), norm,
                    gt.ann_iscrowd.copy(), image_ids)


def _box_attributes(gt: CocoGroundTruth) -> dict:
    anns = gt.doc["annotations"]
    default = {"Source": gt.kind, "Confidence": 1, "IsOccluded": UNKNOWN_FLAG,
               "IsTruncated": UNKNOWN_FLAG, "IsDepiction": UNKNOWN_FLAG,
               "IsInside": UNKNOWN_FLAG}
    out = {}
    for name, fallback in default.items():
        values = [(a.get("oid") or {}).get(name, fallback) if isinstance(a.get("oid"), dict)
                  else fallback for a in anns]
        out[name] = np.asarray(values, dtype=object) if name == "Source" else \
            _ints(gt.path, values, "annotations", f"oid.{name}")
    return out


def _stored_image_labels(gt: CocoGroundTruth, image_ids: np.ndarray):
    records = _records(gt.path, gt.doc, "oid_image_labels")
    section = "oid_image_labels"
    img = _ints(gt.path, [r.get("image_id") for r in records], section, "image_id")
    cat = _ints(gt.path, [r.get("category_id") for r in records], section, "category_id")
    conf = _ints(gt.path, [r.get("confidence") for r in records], section, "confidence")
    image = gt.image_index(img)
    code = gt.category_code(cat)
    for bad, field, what in ((image < 0, "image_id", "unknown image id"),
                             (code < 0, "category_id", "unknown category id"),
                             ((conf != 0) & (conf != 1), "confidence", "not 0 or 1:")):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = {"image_id": img, "category_id": cat, "confidence": conf}[field][i]
            raise InputError(gt.path, f"{what} {int(value)}", field=f"{section}[{i}].{field}")
    sources = np.asarray([str(r.get("source", "verification")) for r in records], dtype=object)
    return ImageLabelTable(image.astype(np.int32), code.astype(np.int32), conf.astype(np.int8),
                           image_ids), sources


def _implied_image_labels(gt: CocoGroundTruth, image_ids: np.ndarray):
    K = len(gt.category_ids)
    present = np.unique(gt.ann_image * K + gt.ann_category)
    rows: list[tuple[int, int, int]] = [(int(k // K), int(k % K), 1) for k in present]
    if gt.kind == "lvis":
        for i, im in enumerate(gt.images):
            for key, conf in (("not_exhaustive_category_ids", 1), ("neg_category_ids", 0)):
                ids = im.get(key) or []
                rows.extend((i, int(c), conf) for c in gt.category_code(ids))
    else:  # COCO is exhaustive: every category without a box is verified absent
        has = np.zeros((len(gt.image_ids), K), bool)
        has[present // K, present % K] = True
        absent = np.argwhere(~has)
        rows.extend((int(i), int(c), 0) for i, c in absent)
    rows = sorted(set(rows))
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    labels = ImageLabelTable(arr[:, 0].astype(np.int32), arr[:, 1].astype(np.int32),
                             arr[:, 2].astype(np.int8), image_ids)
    return labels, np.full(len(rows), gt.kind, dtype=object)


def coco_to_oid(gt: CocoGroundTruth) -> OidTables:
    """The Open Images tables of a validated COCO / LVIS ground truth."""
    classes = classes_of(gt)
    image_ids = oid_image_ids(gt)
    boxes = coco_boxes(gt, image_ids)
    if "oid_image_labels" in gt.doc:
        labels, sources = _stored_image_labels(gt, image_ids)
    else:
        labels, sources = _implied_image_labels(gt, image_ids)
    hierarchy = gt.doc.get("oid_hierarchy")
    if hierarchy is not None and not isinstance(hierarchy, dict):
        raise InputError(gt.path, "not a hierarchy object", field="oid_hierarchy")
    return OidTables(classes, boxes, _box_attributes(gt), labels, sources, hierarchy)


def write_oid_folder(tables: OidTables, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``OID_FILES`` into ``out_dir`` (hierarchy.json only when there is one); every file
    goes through a temporary file and all are renamed only when all were written."""
    import json

    out_dir = Path(out_dir)
    paths = [out_dir / name for name in OID_FILES[:3]]
    if tables.hierarchy is not None:
        paths.append(out_dir / OID_FILES[3])
    with contextlib.ExitStack() as stack:
        tmp = [stack.enter_context(atomic_path(p)) for p in paths]
        oid_csv.write_boxes(tmp[0], tables.boxes, tables.classes,
                            attributes=tables.box_attributes)
        oid_csv.write_image_labels(tmp[1], tables.image_labels, tables.classes,
                                   source=tables.label_sources)
        oid_csv.write_classes(tmp[2], tables.classes)
        if tables.hierarchy is not None:
            tmp[3].write_text(json.dumps(tables.hierarchy, indent=1) + "\n", encoding="utf-8")
    return paths
