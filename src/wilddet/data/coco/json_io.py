"""Read, validate and write COCO / LVIS ground-truth json and COCO results json.

Shapes: ``I`` images, ``K`` categories, ``A`` annotations, ``D`` detections (results).

The one owner of the json formats (pycocotools' / lvis-api's layout). Bad input raises
``InputError`` as ``GT.json: annotations[12].category_id: unknown category id 999``; a json
syntax error names its line. Validation is columnar: the fields are pulled out with one list
comprehension each and checked with numpy; only on failure is the first bad record located.
Writers are atomic (``fileio.atomic_path``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from wilddet.data.coco.frequency import FREQUENCIES
from wilddet.errors import InputError
from wilddet.fileio import atomic_path

Kind = Literal["coco", "lvis"]
BORDER_TOLERANCE_PX = 1e-3   # a box may pass its image's border by this much (rounding)


# ----------------------------------------------------------------------------------------------
# plain json


def read_json(path: str | os.PathLike):
    """The parsed document; InputError for a missing file or a json syntax error (with line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(path, f"malformed json: {e.msg} (column {e.colno})", line=e.lineno) \
            from None
    except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 text: {e.reason}") from None


def write_json(path: str | os.PathLike, doc) -> None:
    """Atomic json (compact: annotation files are large); NaN is refused."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, allow_nan=False, separators=(",", ":"))
        f.write("\n")


def write_json_streamed(path: str | os.PathLike, head: dict, key: str, chunks) -> int:
    """Atomic json object: the fields of ``head``, then ``key`` as one list written from the
    lists ``chunks`` yields (one chunk in memory at a time). Returns the list's length; the
    same text layout as ``write_json``."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
        f.write("{" + "".join(f"{dumps(name)}:{dumps(value)}," for name, value in head.items())
                + f"{dumps(key)}:[")
        for part in chunks:
            if part:
                f.write(("," if count else "") + ",".join(map(dumps, part)))
                count += len(part)
        f.write("]}\n")
    return count


# ----------------------------------------------------------------------------------------------
# field helpers: pull a field out of every record, numpy-check it, name the first bad record


def _records(path, doc: dict, key: str) -> list:
    value = doc.get(key)
    if not isinstance(value, list):
        raise InputError(path, "missing or not a list (a COCO file has images, annotations "
                         "and categories lists)", field=key)
    for i, rec in enumerate(value):
        if not isinstance(rec, dict):
            raise InputError(path, "not an object", field=f"{key}[{i}]")
    return value


def _field(path, records: list, section: str, name: str, default=None) -> list:
    try:
        return [r[name] for r in records] if default is None else \
            [r.get(name, default) for r in records]
    except KeyError:
        i = next(i for i, r in enumerate(records) if name not in r)
        raise InputError(path, "missing", field=f"{section}[{i}].{name}") from None


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _numeric(values: list, ndim: int) -> np.ndarray | None:
    """``values`` as a numpy array when they are all numbers (ints / floats, no bool, str or
    None: numpy's inferred dtype tells) of the expected shape, else None."""
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):  # ragged nested lists
        return None
    if arr.dtype.kind not in "iuf" or arr.ndim != ndim:
        return None
    return arr


def _ints(path, values: list, section: str, name: str) -> np.ndarray:
    arr = _numeric(values, 1) if values else np.zeros(0, np.int64)
    if arr is not None and arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    for i, v in enumerate(values):
        if type(v) is not int or not -2**63 <= v < 2**63:
            raise InputError(path, f"{v!r} is not an integer", field=f"{section}[{i}].{name}")
    raise AssertionError("unreachable")


def _floats(path, values: list, section: str, name: str) -> np.ndarray:
    arr = _numeric(values, 1) if values else np.zeros(0)
    if arr is not None and np.isfinite(arr).all():
        return arr.astype(np.float64)
    i = next(i for i, v in enumerate(values) if not (_is_number(v) and math.isfinite(v)))
    raise InputError(path, f"{values[i]!r} is not a finite number",
                     field=f"{section}[{i}].{name}")


def _boxes(path, values: list, section: str) -> np.ndarray:
    """[n, 4] float64 from lists of 4 numbers."""
    if not values:
        return np.zeros((0, 4))
    arr = _numeric(values, 2)
    if arr is not None and arr.shape[1] == 4 and np.isfinite(arr).all():
        return arr.astype(np.float64)
    for i, v in enumerate(values):
        if not (isinstance(v, list) and len(v) == 4 and all(_is_number(x) and math.isfinite(x)
                                                            for x in v)):
            raise InputError(path, f"{v!r} is not [x, y, w, h] (4 finite numbers)",
                             field=f"{section}[{i}].bbox")
    raise AssertionError("unreachable")


def _unique(path, ids: np.ndarray, section: str) -> None:
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if len(dup):
        i = int(order[dup[0] + 1])
        raise InputError(path, f"duplicate id {int(ids[i])}", field=f"{section}[{i}].id")


def lookup(sorted_ids: np.ndarray, positions: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index (into the original order) of each ``query`` id, -1 if unknown. ``sorted_ids`` and
    ``positions`` come from ``argsort`` of the original ids."""
    if len(sorted_ids) == 0:
        return np.full(len(query), -1, np.int64)
    pos = np.minimum(np.searchsorted(sorted_ids, query), len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == query, positions[pos], -1)


def _sorted_lookup(sorted_ids: np.ndarray, query) -> np.ndarray:
    """[n] position of each ``query`` id in the ascending ``sorted_ids`` (-1 unknown)."""
    query = np.asarray(query, np.int64).reshape(-1)
    return lookup(sorted_ids, np.arange(len(sorted_ids)), query)


class _IdIndex:
    def __init__(self, ids: np.ndarray):
        self.positions = np.argsort(ids, kind="stable")
        self.sorted = ids[self.positions]

    def __call__(self, query: np.ndarray) -> np.ndarray:
        return lookup(self.sorted, self.positions, np.asarray(query, np.int64))


def _known(path, idx: np.ndarray, ids: np.ndarray, field: str, what: str) -> None:
    bad = idx < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(path, f"unknown {what} id {int(ids[i])}", field=field.format(i=i))


# ----------------------------------------------------------------------------------------------
# ground truth


@dataclass(frozen=True)
class CocoGroundTruth:
    """A validated COCO or LVIS ground-truth document plus its columns.

    image_ids [I] int64, widths/heights [I] float64 px (doc order); category_ids [K] int64 in
    ascending id order (class code k = position), category_names [K] str; annotation columns in
    doc order: ann_image [A] int64 (index into images), ann_category [A] int64 (class code),
    ann_bbox [A, 4] float64 ``[x, y, w, h]`` px, ann_area [A] float64 (the file's ``area``, w·h
    when absent), ann_iscrowd [A] bool. ``doc`` is the parsed json itself (kept: extra fields
    survive and the metric reads it).
    """

    path: str | None
    doc: dict
    kind: Kind
    image_ids: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    category_ids: np.ndarray
    category_names: np.ndarray
    ann_image: np.ndarray
    ann_category: np.ndarray
    ann_bbox: np.ndarray
    ann_area: np.ndarray
    ann_iscrowd: np.ndarray

    @property
    def images(self) -> list[dict]:
        return self.doc["images"]

    @property
    def categories(self) -> list[dict]:
        """Category records in class-code (ascending id) order."""
        by_id = {c["id"]: c for c in self.doc["categories"]}
        return [by_id[int(i)] for i in self.category_ids]

    def image_index(self, ids) -> np.ndarray:
        """[n] index into ``images`` of json image ids (-1 unknown)."""
        return _IdIndex(self.image_ids)(ids)

    def category_code(self, ids) -> np.ndarray:
        """[n] class code of json category ids (-1 unknown)."""
        return _sorted_lookup(self.category_ids, ids)


def detect_kind(doc: dict) -> Kind:
    """``"lvis"`` when images carry ``neg_category_ids`` or categories a ``frequency``."""
    images, cats = doc.get("images") or [], doc.get("categories") or []
    if any(isinstance(im, dict) and "neg_category_ids" in im for im in images[:1]) or \
            any(isinstance(c, dict) and "frequency" in c for c in cats[:1]):
        return "lvis"
    return "coco"


def validate_ground_truth(doc, path: str | os.PathLike | None = None,
                          kind: Kind | None = None) -> CocoGroundTruth:
    """Check a parsed COCO/LVIS document and return its columns (``kind`` None: detected).

    Checks: the three lists; unique integer image / category / annotation ids; positive image
    sizes; every annotation's image and category known, ``bbox`` 4 finite numbers with
    ``w, h >= 0`` inside its image (``BORDER_TOLERANCE_PX``); ``iscrowd`` 0/1; LVIS: the
    images' ``neg_category_ids`` / ``not_exhaustive_category_ids`` known, categories'
    ``frequency`` in r/c/f.
    """
    if not isinstance(doc, dict):
        raise InputError(path, "a COCO ground-truth file is a json object")
    kind = kind or detect_kind(doc)
    images = _records(path, doc, "images")
    cats = _records(path, doc, "categories")
    anns = _records(path, doc, "annotations")

    image_ids = _ints(path, _field(path, images, "images", "id"), "images", "id")
    _unique(path, image_ids, "images")
    widths = _floats(path, _field(path, images, "images", "width"), "images", "width")
    heights = _floats(path, _field(path, images, "images", "height"), "images", "height")
    for name, arr in (("width", widths), ("height", heights)):
        if (arr <= 0).any():
            i = int(np.flatnonzero(arr <= 0)[0])
            raise InputError(path, f"{arr[i]:g} must be > 0", field=f"images[{i}].{name}")
    cat_ids_doc = _ints(path, _field(path, cats, "categories", "id"), "categories", "id")
    _unique(path, cat_ids_doc, "categories")
    names_doc = _field(path, cats, "categories", "name")
    for i, n in enumerate(names_doc):
        if not isinstance(n, str) or not n:
            raise InputError(path, f"{n!r} is not a non-empty string", field=f"categories[{i}].name")
    order = np.argsort(cat_ids_doc, kind="stable")
    cat_ids = cat_ids_doc[order]
    names = np.asarray(names_doc, dtype=object)[order] if len(order) else np.zeros(0, object)

    gt = CocoGroundTruth(str(path) if path else None, doc, kind, image_ids, widths, heights,
                         cat_ids, names, *_annotation_columns(path, anns, image_ids, widths,
                                                               heights, cat_ids))
    if kind == "lvis":
        _check_lvis(path, images, cats, gt)
    return gt


def _annotation_columns(path, anns, image_ids, widths, heights, cat_ids):
    ann_ids = _ints(path, _field(path, anns, "annotations", "id"), "annotations", "id")
    _unique(path, ann_ids, "annotations")
    img = _ints(path, _field(path, anns, "annotations", "image_id"), "annotations", "image_id")
    cat = _ints(path, _field(path, anns, "annotations", "category_id"), "annotations",
                "category_id")
    image_index = _IdIndex(image_ids)(img)
    _known(path, image_index, img, "annotations[{i}].image_id", "image")
    code = _sorted_lookup(cat_ids, cat)
    _known(path, code, cat, "annotations[{i}].category_id", "category")
    bbox = _boxes(path, _field(path, anns, "annotations", "bbox"), "annotations")
    _check_inside(path, bbox, widths[image_index], heights[image_index])
    areas = [a.get("area") for a in anns]
    area = bbox[:, 2] * bbox[:, 3]
    if any(a is not None for a in areas):
        given = _floats(path, [area[i] if a is None else a for i, a in enumerate(areas)],
                        "annotations", "area")
        area = given
    crowd = _ints(path, _field(path, anns, "annotations", "iscrowd", default=0), "annotations",
                  "iscrowd")
    if ((crowd != 0) & (crowd != 1)).any():
        i = int(np.flatnonzero((crowd != 0) & (crowd != 1))[0])
        raise InputError(path, f"{int(crowd[i])} is not 0 or 1", field=f"annotations[{i}].iscrowd")
    return image_index.astype(np.int64), code.astype(np.int64), bbox, area, crowd.astype(bool)


def _check_inside(path, bbox: np.ndarray, width: np.ndarray, height: np.ndarray) -> None:
    tol = BORDER_TOLERANCE_PX
    checks = (
        (bbox[:, 2] < 0, "width {w:g} < 0"),
        (bbox[:, 3] < 0, "height {h:g} < 0"),
        ((bbox[:, 0] < -tol) | (bbox[:, 1] < -tol), "starts outside the image"),
        (bbox[:, 0] + bbox[:, 2] > width + tol, "x + w = {r:g} > image width {W:g}"),
        (bbox[:, 1] + bbox[:, 3] > height + tol, "y + h = {b:g} > image height {H:g}"),
    )
    for bad, message in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            x, y, w, h = bbox[i]
            raise InputError(path, f"box {[float(v) for v in bbox[i]]} " + message.format(
                w=w, h=h, r=x + w, b=y + h, W=width[i], H=height[i]),
                field=f"annotations[{i}].bbox")


def _check_lvis(path, images: list, cats: list, gt: CocoGroundTruth) -> None:
    for key in ("neg_category_ids", "not_exhaustive_category_ids"):
        for i, im in enumerate(images):
            value = im.get(key, [])
            if not isinstance(value, list) or not all(type(v) is int for v in value):
                raise InputError(path, "not a list of category ids", field=f"images[{i}].{key}")
            if value and (gt.category_code(value) < 0).any():
                bad = next(v for v in value if gt.category_code([v])[0] < 0)
                raise InputError(path, f"unknown category id {bad}", field=f"images[{i}].{key}")
    for i, c in enumerate(cats):
        if c.get("frequency") not in FREQUENCIES:
            raise InputError(path, f"{c.get('frequency')!r} is not one of r, c, f",
                             field=f"categories[{i}].frequency")


def read_ground_truth(path: str | os.PathLike, kind: Kind | None = None) -> CocoGroundTruth:
    """Read and validate a COCO / LVIS ground-truth json file."""
    return validate_ground_truth(read_json(path), path, kind)


# ----------------------------------------------------------------------------------------------
# results (detections)


@dataclass(frozen=True)
class CocoResults:
    """D detections of a COCO results file, checked against a ground truth: image [D] int64
    (index into the GT images), category [D] int64 (class code), bbox [D, 4] float64 xywh px,
    score [D] float64, in file order (the parsed json list itself is not kept: at LVIS size it
    is the largest thing in memory)."""

    image: np.ndarray
    category: np.ndarray
    bbox: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.score)


def validate_results(records, gt: CocoGroundTruth,
                     path: str | os.PathLike | None = None) -> CocoResults:
    """Check a parsed results list ``[{"image_id", "category_id", "bbox", "score"}]``: every
    image and category known to ``gt`` (an unknown one is an error, never dropped), 4-number
    boxes, finite scores."""
    if not isinstance(records, list):
        raise InputError(path, "a COCO results file is a json list of detections")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise InputError(path, "not an object", field=f"[{i}]")
    img = _ints(path, _field(path, records, "", "image_id"), "", "image_id")
    cat = _ints(path, _field(path, records, "", "category_id"), "", "category_id")
    image_index = gt.image_index(img)
    _known(path, image_index, img, "[{i}].image_id", "image (not in the ground truth)")
    code = gt.category_code(cat)
    _known(path, code, cat, "[{i}].category_id", "category (not in the ground truth)")
    bbox = _boxes(path, _field(path, records, "", "bbox"), "")
    score = _floats(path, _field(path, records, "", "score"), "", "score")
    return CocoResults(image_index, code, bbox, score)


def read_results(path: str | os.PathLike, gt: CocoGroundTruth) -> CocoResults:
    """Read and validate a COCO results json file against ``gt``."""
    return validate_results(read_json(path), gt, path)


def results_records(gt: CocoGroundTruth, image: np.ndarray, category: np.ndarray,
                    bbox_xywh_px: np.ndarray, score: np.ndarray) -> list[dict]:
    """The results list of D detections given as GT image indices and class codes."""
    image_ids = gt.image_ids[image].tolist()
    cat_ids = gt.category_ids[category].tolist()
    boxes = np.asarray(bbox_xywh_px, np.float64).tolist()
    scores = np.asarray(score, np.float64).tolist()
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(image_ids, cat_ids, boxes, scores)]
