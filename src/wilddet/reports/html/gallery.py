"""Gallery data of one diagnosis for the HTML report: per image, the annotated ground truth and
the evaluated detections with their outcome, in JSON-ready lists.

Shapes: ``N'`` evaluated detections, ``I`` gallery images, ``K`` detections kept per image.

Kinds: 0-6 the error types (``ERROR_TYPES``), 7 true positive, 8 absorbed by a group-of box.
Boxes are integers in 0..1000 (normalized × 1000: ``x0, y0, x1, y1``), scores × 1000.

Images: those with an annotated box or an evaluated detection, ordered by their highest-scored
false positive (worst first; images without one last, by ImageID). Per image the ``K``
highest-scored evaluated detections are kept. The index gives per image every distinct
(class, kind) among them with its best score, and (class, 9, 1000) for each ground-truth class,
so the page can filter tens of thousands of images without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wilddet.data.records import BoxTable, rows_by_image
from wilddet.evaluation.diagnose import Diagnosis
from wilddet.evaluation.oid_challenge import IN_GROUP_OF, TRUE_POSITIVE

TP_KIND, GROUP_KIND, GT_KIND = 7, 8, 9


@dataclass(frozen=True)
class GalleryData:
    """image_ids [I] str; gt[i] / dets[i] lists of [x0, y0, x1, y1, class, flag] (flag: group-of
    0/1) and [x0, y0, x1, y1, class, kind, score]; index[i] flat [class, kind, score, ...]."""

    image_ids: list[str]
    gt: list[list[list[int]]]
    dets: list[list[list[int]]]
    index: list[list[int]]


def _milli(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(np.asarray(x, np.float64), 0, 1) * 1000).astype(np.int64)


def detection_kinds(d: Diagnosis) -> tuple[np.ndarray, np.ndarray]:
    """(positions [N'] into the match's detection arrays, kind [N']) of every TP, FP and
    group-of-absorbed detection."""
    m = d.match
    kind = np.full(len(m.det_keys), -1, np.int64)
    kind[m.det_state == TRUE_POSITIVE] = TP_KIND
    kind[m.det_state == IN_GROUP_OF] = GROUP_KIND
    kind[d.fp_index] = d.error
    pos = np.flatnonzero(kind >= 0)
    return pos, kind[pos]


def gallery_data(d: Diagnosis, annotated: BoxTable, max_dets_per_image: int = 25) -> GalleryData:
    """The gallery of ``d`` (module doc); ``annotated``: the boxes as in the boxes file."""
    m = d.match
    C = np.int64(m.num_classes)
    pos, kind = detection_kinds(d)
    img = m.det_keys[pos] // C
    cls = m.det_keys[pos] % C
    score = m.det_scores[pos].astype(np.float64)
    order = np.lexsort((-score, img))  # by image, best score first
    pos, kind, img, cls, score = pos[order], kind[order], img[order], cls[order], score[order]
    num_images = annotated.num_images
    starts = np.searchsorted(img, np.arange(num_images + 1))
    rank = np.arange(len(img)) - starts[img]
    keep = rank < max_dets_per_image
    worst = np.full(num_images, -np.inf)
    is_fp = kind < TP_KIND
    np.maximum.at(worst, img[is_fp], score[is_fp])

    ann_order, ann_offsets = rows_by_image(annotated.image_codes, num_images)
    has = np.zeros(num_images, bool)
    has[annotated.image_codes] = True
    has[img] = True
    ids = annotated.image_ids
    images = np.flatnonzero(has)
    images = images[np.lexsort((ids[images].astype(str), -worst[images]))]

    det_box = _milli(m.det_boxes[pos])
    det_score = np.rint(score * 1000).astype(np.int64)
    gt_box = _milli(annotated.boxes_norm)
    out = GalleryData([], [], [], [])
    for i in images:
        rows = np.arange(starts[i], starts[i + 1])[keep[starts[i]:starts[i + 1]]]
        dets = np.column_stack([det_box[rows], cls[rows], kind[rows], det_score[rows]])
        g = ann_order[ann_offsets[i]:ann_offsets[i + 1]]
        gts = np.column_stack([gt_box[g], annotated.label_codes[g],
                               annotated.is_group_of[g].astype(np.int64)])
        out.image_ids.append(str(ids[i]))
        out.dets.append(dets.tolist())
        out.gt.append(gts.tolist())
        out.index.append(_image_index(cls[rows], kind[rows], det_score[rows],
                                      annotated.label_codes[g]))
    return out


def _image_index(cls: np.ndarray, kind: np.ndarray, score: np.ndarray,
                 gt_cls: np.ndarray) -> list[int]:
    """Flat [class, kind, best score, ...] of one image (module doc)."""
    key = cls * 16 + kind
    best: dict[int, int] = {}
    for k, s in zip(key.tolist(), score.tolist()):  # rows are best-first: first wins
        best.setdefault(k, s)
    flat: list[int] = []
    for k, s in best.items():
        flat += [k // 16, k % 16, s]
    for c in sorted(set(gt_cls.tolist())):
        flat += [c, GT_KIND, 1000]
    return flat


__all__ = [
    "GROUP_KIND",
    "GT_KIND",
    "TP_KIND",
    "GalleryData",
    "detection_kinds",
    "gallery_data",
]
