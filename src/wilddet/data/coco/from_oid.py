"""Open Images (CSV) -> COCO / LVIS ground-truth json (``wilddet convert --to coco|lvis``).

Shapes: ``N`` box rows, ``L`` image-label rows, ``I`` images, ``C`` classes.

Mapping (spec ``coco-lvis.md``; README "COCO and LVIS"):

- images: ``id`` 1..I in order of first appearance of the ImageID in the boxes file, then the
  image-labels file; ``file_name`` ``<ImageID>.jpg`` (or the file found under ``--images``);
  ``width``/``height`` from the image file header (``imagesize``, never decoded) or SIZES.csv;
  extra ``oid_image_id``.
- categories: ``id`` 1..C in class-file order, ``name`` DisplayName, extra ``oid_label``;
  ``supercategory`` the DisplayName of the first parent in the hierarchy ("none" at the top or
  without a hierarchy); the hierarchy json itself as the top-level ``oid_hierarchy``.
- annotations: one per box row, ``bbox = [XMin·W, YMin·H, (XMax−XMin)·W, (YMax−YMin)·H]`` float
  pixels (``boxes.norm_to_xywh_px``, no rounding), ``area = w·h``, ``iscrowd = IsGroupOf``, extra
  ``oid`` = the other columns present (Source, Confidence, IsOccluded, IsTruncated, IsDepiction,
  IsInside).
- image-level labels: the top-level ``oid_image_labels`` list (``image_id, category_id,
  confidence, source``); LVIS also gets ``neg_category_ids`` (confidence 0) and
  ``not_exhaustive_category_ids`` (confidence 1, no box of that class on the image) per image,
  and ``frequency`` r (1–10) / c (11–100) / f (> 100 images with a box; 0 images counts as r),
  ``image_count`` and ``instance_count`` (boxes; a group-of box counts once) per category.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from wilddet.boxes import norm_to_xywh_px
from wilddet.data import oid_csv
from wilddet.data.coco.frequency import frequency_of, images_per_class
from wilddet.data.coco.image_sizes import ImageSizes
from wilddet.data.coco.json_io import Kind
from wilddet.data.hierarchy import ROOT_LABEL, read_hierarchy
from wilddet.data.records import BoxTable, ClassList, ImageLabelTable

_COORDS = ("XMin", "XMax", "YMin", "YMax")


@dataclass(frozen=True)
class OidSplit:
    """The Open Images files of one split, as conversion needs them.

    boxes and image_labels share one image vocabulary (first appearance: boxes, then labels);
    boxes_norm [N, 4] float64 (xmin, ymin, xmax, ymax): the coordinates as written in the file
    (``boxes.boxes_norm`` holds them as float32);
    box_attributes: ``BOX_ATTRIBUTE_COLUMNS`` present in the boxes file, [N] each;
    label_sources [L] str or None; hierarchy: the hierarchy json document or None.
    """

    classes: ClassList
    boxes: BoxTable
    boxes_norm: np.ndarray
    box_attributes: dict
    image_labels: ImageLabelTable | None
    label_sources: np.ndarray | None
    hierarchy: dict | None

    @property
    def image_ids(self) -> np.ndarray:
        return self.boxes.image_ids


def read_oid_split(boxes: str | os.PathLike, classes: str | os.PathLike,
                   image_labels: str | os.PathLike | None = None,
                   hierarchy: str | os.PathLike | None = None) -> OidSplit:
    """Read and validate the CSVs (and hierarchy) of one split with the ``oid_csv`` readers."""
    class_list = oid_csv.read_classes(classes)
    box_table = oid_csv.read_boxes(boxes, class_list)
    attributes = oid_csv.read_attribute_columns(boxes)
    coords = oid_csv.read_attribute_columns(boxes, _COORDS, float_columns=_COORDS)
    boxes_norm = np.stack([coords[c] for c in ("XMin", "YMin", "XMax", "YMax")], axis=1)
    labels = sources = None
    if image_labels is not None:
        labels = oid_csv.read_image_labels(image_labels, class_list)
        sources = oid_csv.read_attribute_columns(image_labels, ("Source",)).get("Source")
    tree = None
    if hierarchy is not None:
        read_hierarchy(hierarchy, class_list)  # validates
        with open(hierarchy, encoding="utf-8") as f:
            tree = json.load(f)
    box_table, labels = first_appearance_images(box_table, labels)
    return OidSplit(class_list, box_table, boxes_norm, attributes, labels, sources, tree)


def first_appearance_images(boxes: BoxTable, labels: ImageLabelTable | None):
    """Re-code both tables onto one vocabulary: the boxes' images in order, then the images
    that only the labels have, in their order."""
    if labels is None:
        return boxes, None
    known = {str(i): k for k, i in enumerate(boxes.image_ids)}
    extra = [str(i) for i in labels.image_ids if str(i) not in known]
    ids = np.asarray([*map(str, boxes.image_ids), *extra], dtype=object)
    for k, i in enumerate(extra, start=len(known)):
        known[i] = k
    remap = np.asarray([known[str(i)] for i in labels.image_ids], dtype=np.int32)
    label_codes = remap[labels.image_codes] if len(labels) else labels.image_codes
    return (BoxTable(boxes.image_codes, boxes.label_codes, boxes.boxes_norm, boxes.is_group_of,
                     ids, boxes.scores),
            ImageLabelTable(label_codes, labels.label_codes, labels.confidence, ids))


def first_parents(hierarchy: dict | None, classes: ClassList) -> list[str]:
    """[C] supercategory of each class: the DisplayName (the LabelName when it is no class) of
    its first parent met walking the hierarchy depth-first in file order; "none" for top-level
    classes and classes outside the hierarchy."""
    parent: dict[str, str] = {}

    def walk(node: dict, above: str | None) -> None:
        label = node.get("LabelName")
        if label is not None and above is not None and label not in parent:
            parent[label] = above
        for child in node.get("Subcategory", []) or []:
            walk(child, None if label == ROOT_LABEL else label)

    if hierarchy is not None:
        walk(hierarchy, None)
    out = []
    for label in classes.labels:
        p = parent.get(str(label))
        out.append("none" if p is None else
                   str(classes.names[classes.index[p]]) if p in classes.index else p)
    return out


def _categories(split: OidSplit, kind: Kind) -> list[dict]:
    classes = split.classes
    supers = first_parents(split.hierarchy, classes)
    cats = [{"id": k + 1, "name": str(classes.names[k]), "supercategory": supers[k],
             "oid_label": str(classes.labels[k])} for k in range(len(classes))]
    if kind == "lvis":
        b = split.boxes
        image_count = images_per_class(b.image_codes, b.label_codes, len(classes))
        instance_count = np.bincount(b.label_codes, minlength=len(classes))
        for cat, n_img, n_inst, freq in zip(cats, image_count.tolist(), instance_count.tolist(),
                                            frequency_of(image_count)):
            cat.update(frequency=freq, image_count=n_img, instance_count=n_inst)
    return cats


def _images(split: OidSplit, sizes: ImageSizes, kind: Kind) -> list[dict]:
    images = [{"id": i + 1, "file_name": name, "width": w, "height": h, "oid_image_id": image_id}
              for i, (image_id, name, w, h) in enumerate(zip(
                  map(str, split.image_ids), sizes.file_names, sizes.widths.tolist(),
                  sizes.heights.tolist()))]
    if kind == "lvis":
        neg, not_exhaustive = lvis_label_lists(split)
        for im, n, e in zip(images, neg, not_exhaustive):
            im["neg_category_ids"] = n
            im["not_exhaustive_category_ids"] = e
    return images


def lvis_label_lists(split: OidSplit) -> tuple[list[list[int]], list[list[int]]]:
    """Per image, sorted category ids: verified negatives (confidence 0), and verified positives
    without a box of that class on the image (LVIS's not-exhaustive categories)."""
    num_images = len(split.image_ids)
    neg = [[] for _ in range(num_images)]
    not_exhaustive = [[] for _ in range(num_images)]
    labels = split.image_labels
    if labels is None or not len(labels):
        return neg, not_exhaustive
    C = len(split.classes)
    boxed = set((split.boxes.image_codes.astype(np.int64) * C + split.boxes.label_codes).tolist())
    keys = labels.image_codes.astype(np.int64) * C + labels.label_codes
    for key, conf in sorted(set(zip(keys.tolist(), labels.confidence.tolist()))):
        image, code = divmod(key, C)
        if conf == 0:
            neg[image].append(code + 1)
        elif key not in boxed:
            not_exhaustive[image].append(code + 1)
    return neg, not_exhaustive


ANNOTATIONS_PER_CHUNK = 200_000


def annotation_chunks(split: OidSplit, sizes: ImageSizes, chunk: int | None = None):
    """The ``annotations`` records, ``chunk`` (default ``ANNOTATIONS_PER_CHUNK``) box rows at a
    time (a list each), so that a file of Open Images train size (14.6M boxes) is written
    without holding every record at once."""
    chunk = chunk or ANNOTATIONS_PER_CHUNK
    b = split.boxes
    names = list(split.box_attributes)
    for lo in range(0, len(b), chunk):
        hi = min(lo + chunk, len(b))
        codes = b.image_codes[lo:hi]
        xywh = norm_to_xywh_px(split.boxes_norm[lo:hi], sizes.widths[codes],
                               sizes.heights[codes])  # [n, 4]
        area = (xywh[:, 2] * xywh[:, 3]).tolist()
        values = [split.box_attributes[n][lo:hi].tolist() for n in names]
        extras = [dict(zip(names, row)) for row in zip(*values)] if names else \
            [{} for _ in range(hi - lo)]
        yield [{"id": n + 1, "image_id": i + 1, "category_id": c + 1, "bbox": box, "area": a,
                "iscrowd": int(g), "oid": extra}
               for n, i, c, box, a, g, extra in zip(
                   range(lo, hi), codes.tolist(), b.label_codes[lo:hi].tolist(), xywh.tolist(),
                   area, b.is_group_of[lo:hi].tolist(), extras)]


def _image_label_records(split: OidSplit) -> list[dict]:
    labels = split.image_labels
    if labels is None:
        return []
    sources = split.label_sources if split.label_sources is not None else \
        np.full(len(labels), "verification", dtype=object)
    return [{"image_id": i + 1, "category_id": c + 1, "confidence": conf, "source": src}
            for i, c, conf, src in zip(labels.image_codes.tolist(), labels.label_codes.tolist(),
                                       labels.confidence.tolist(), list(sources))]


def coco_head(split: OidSplit, sizes: ImageSizes, kind: Kind = "coco") -> dict:
    """Every top-level field of the document but ``annotations``."""
    head = {
        "info": {"description": f"Open Images converted to {kind.upper()} by wilddet",
                 "version": "1.0"},
        "licenses": [],
        "images": _images(split, sizes, kind),
        "categories": _categories(split, kind),
        "oid_image_labels": _image_label_records(split),
    }
    if split.hierarchy is not None:
        head["oid_hierarchy"] = split.hierarchy
    return head


def oid_to_coco(split: OidSplit, sizes: ImageSizes, kind: Kind = "coco") -> dict:
    """The COCO (or LVIS) ground-truth document of ``split`` in memory; ``sizes`` in
    ``split.image_ids`` order (files: ``coco_head`` + ``annotation_chunks``, streamed)."""
    head = coco_head(split, sizes, kind)
    return {**head, "annotations": [a for part in annotation_chunks(split, sizes) for a in part]}


__all__ = [
    "OidSplit",
    "annotation_chunks",
    "coco_head",
    "first_appearance_images",
    "first_parents",
    "lvis_label_lists",
    "oid_to_coco",
    "read_oid_split",
]
