"""Why each false positive is wrong, under the Open Images challenge rules
(``error-analysis.md``).

Shapes: ``N'`` kept detections of a ``ChallengeMatch``, ``F`` false positives, ``M`` annotated
(unexpanded) ground-truth boxes, ``C`` classes, ``T`` = 7 error types, ``E`` ranked entries.

The false positives are exactly those of the challenge metric: ``match_detections`` of
``wilddet.evaluation.oid_challenge`` labels every detection (one implementation of the rules),
and this module only classifies its ``FALSE_POSITIVE`` rows. For a false positive d of class c
on image m, with IoU as the metric computes it (``box_overlap``), the first rule that applies:

1. duplicate     max IoU(d, expanded GT of class c, group-of included) >= 0.5
2. localization  that max IoU in [0.1, 0.5)
3. hierarchy     an annotated box of an ancestor / descendant of c has IoU >= 0.5
4. confusion     an annotated box of a confusion partner of c has IoU >= 0.5
5. class         an annotated box of any other class has IoU >= 0.5
6. background    every annotated box of m has IoU < 0.1 (or m has none)
7. other         anything else

``other_label`` / ``iou``: rules 1-2 c and that max IoU; rules 3-5 the highest-IoU box among
those satisfying the rule; rules 6-7 the highest-IoU annotated box if its IoU > 0 (else -1, 0).
Ties go to the box first in the boxes file.

ΔmAP of type t = mAP(detections without the false positives of type t) - mAP(all). A false
positive takes no ground truth and is not absorbed by a group-of box, so removing it changes
no other detection's outcome: the entries are ranked once and each type's entries are dropped
from the ranking (the order of the others is what re-running the evaluator gives). Only the
per-group cap (``max_detections_per_group``) breaks this: when a group was truncated, the
evaluator is re-run on the filtered detections instead.

Missed ground truth (expanded, as ``num_gt``): ``missed_gt[c]`` plain boxes no TP took,
``missed_group_of[c]`` group-of boxes without a TP entry, so with weight 1
``num_gt = TPs + missed_gt + missed_group_of``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from wilddet.data.csr import offsets_of_codes
from wilddet.data.hierarchy import Hierarchy
from wilddet.data.records import BoxTable, ImageLabelTable, rows_by_image
from wilddet.evaluation.ap import (
    average_precision_of_ranked,
    mean_ap,
    precision_recall_of_ranked,
    ranked_by_class,
)
from wilddet.evaluation.oid_challenge import (
    FALSE_POSITIVE,
    NOT_SCORED,
    TRUE_POSITIVE,
    ChallengeMatch,
    ChallengeSettings,
    RankedEntries,
    box_overlap,
    evaluate_challenge,
    match_detections,
    ranked_entries,
)

ERROR_TYPES = ("duplicate", "localization", "hierarchy", "confusion", "class", "background",
               "other")
DUPLICATE, LOCALIZATION, HIERARCHY, CONFUSION, CLASS, BACKGROUND, OTHER = range(7)
MATCH_IOU = 0.5       # rules 1, 3, 4, 5
NEAR_IOU = 0.1        # rules 2 and 6


@dataclass(frozen=True)
class Diagnosis:
    """Error analysis of one detections table.

    match / entries: the metric's outcome (``oid_challenge``). fp_index [F] int64 positions of
    the false positives in the match's detection arrays (ranked order); error [F] int8 codes
    into ``ERROR_TYPES``; other_label [F] int32 class code (-1 = none); iou [F] float64.
    ap [C] (NaN without GT); fp_counts [C, T] int64 per class (the FP's own class) and type;
    delta_map [T] float64 (NaN when the mAP is); tp_counts [C] float64 (TP weight sum);
    missed_gt / missed_group_of [C] int64. PR points: pr_offsets [C+1] into pr_precision /
    pr_recall [E] (ranked order; empty for classes without GT).
    """

    match: ChallengeMatch
    entries: RankedEntries
    fp_index: np.ndarray
    error: np.ndarray
    other_label: np.ndarray
    iou: np.ndarray
    ap: np.ndarray
    fp_counts: np.ndarray
    delta_map: np.ndarray
    tp_counts: np.ndarray
    missed_gt: np.ndarray
    missed_group_of: np.ndarray
    pr_offsets: np.ndarray
    pr_precision: np.ndarray
    pr_recall: np.ndarray

    @property
    def mean_ap(self) -> float:
        return mean_ap(self.ap)

    @property
    def fp_rows(self) -> np.ndarray:
        """[F] rows of the scored detections table (the input table) of the false positives."""
        return self.match.det_rows[self.fp_index]

    @property
    def fp_totals(self) -> np.ndarray:
        """[T] false positives per type over all classes."""
        return self.fp_counts.sum(axis=0)


def relation_matrices(num_classes: int, hierarchy: Hierarchy | None,
                      pairs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(related [C, C], paired [C, C]) bool: ``related[c, k]`` k is an ancestor or descendant of
    c (rule 3); ``paired[c, k]`` (c, k) or (k, c) is a row of the confusion pairs [P, 2] class
    codes (rule 4; exact classes, no descendants)."""
    related = np.zeros((num_classes, num_classes), dtype=np.bool_)
    if hierarchy is not None:
        for c in range(num_classes):
            related[c, hierarchy.ancestors[c]] = True
            related[c, hierarchy.descendants[c]] = True
    paired = np.zeros((num_classes, num_classes), dtype=np.bool_)
    if pairs is not None and len(pairs):
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        paired[pairs[:, 0], pairs[:, 1]] = True
        paired[pairs[:, 1], pairs[:, 0]] = True
    return related, paired


@numba.njit(cache=True, nogil=True)
def _classify(fp_index, det_keys, det_boxes, det_group, grp_gt_lo, grp_gt_hi, gt_boxes,
              ann_order, ann_offsets, ann_boxes, ann_labels, related, paired, num_classes,
              error, other_label, iou_out):
    """Rules 1-7 of the module doc for every false positive; writes error / other_label /
    iou_out [F]. Ties keep the first box (strict ``>``; annotated boxes in file order)."""
    for f in range(len(fp_index)):
        p = fp_index[f]
        c = det_keys[p] % num_classes
        m = det_keys[p] // num_classes
        dx0 = np.float64(det_boxes[p, 0])
        dy0 = np.float64(det_boxes[p, 1])
        dx1 = np.float64(det_boxes[p, 2])
        dy1 = np.float64(det_boxes[p, 3])
        g = det_group[p]
        best_c = 0.0
        for j in range(grp_gt_lo[g], grp_gt_hi[g]):  # expanded GT of class c, group-of too
            inter, d_area, g_area = box_overlap(
                dx0, dy0, dx1, dy1, np.float64(gt_boxes[j, 0]), np.float64(gt_boxes[j, 1]),
                np.float64(gt_boxes[j, 2]), np.float64(gt_boxes[j, 3]))
            best_c = max(best_c, inter / (d_area + g_area - inter))
        if best_c >= NEAR_IOU:
            error[f] = DUPLICATE if best_c >= MATCH_IOU else LOCALIZATION
            other_label[f] = c
            iou_out[f] = best_c
            continue
        # annotated boxes of image m, file order: the best IoU among the boxes each rule
        # looks at (strict > keeps the first box on ties)
        best_rel, best_pair, best_cls, best_any = -1.0, -1.0, -1.0, -1.0
        k_rel, k_pair, k_cls, k_any = -1, -1, -1, -1
        for q in range(ann_offsets[m], ann_offsets[m + 1]):
            b = ann_order[q]
            k = ann_labels[b]
            inter, d_area, g_area = box_overlap(
                dx0, dy0, dx1, dy1, np.float64(ann_boxes[b, 0]), np.float64(ann_boxes[b, 1]),
                np.float64(ann_boxes[b, 2]), np.float64(ann_boxes[b, 3]))
            v = inter / (d_area + g_area - inter)
            if related[c, k] and v > best_rel:
                best_rel, k_rel = v, k
            if paired[c, k] and v > best_pair:
                best_pair, k_pair = v, k
            if k != c and v > best_cls:
                best_cls, k_cls = v, k
            if v > best_any:
                best_any, k_any = v, k
        if best_rel >= MATCH_IOU:
            error[f], other_label[f], iou_out[f] = HIERARCHY, k_rel, best_rel
        elif best_pair >= MATCH_IOU:
            error[f], other_label[f], iou_out[f] = CONFUSION, k_pair, best_pair
        elif best_cls >= MATCH_IOU:
            error[f], other_label[f], iou_out[f] = CLASS, k_cls, best_cls
        else:
            error[f] = BACKGROUND if best_any < NEAR_IOU else OTHER
            if best_any > 0:
                other_label[f], iou_out[f] = k_any, best_any
            else:
                other_label[f], iou_out[f] = -1, 0.0


def classify_false_positives(match: ChallengeMatch, annotated: BoxTable, related: np.ndarray,
                             paired: np.ndarray) -> tuple[np.ndarray, ...]:
    """(fp_index [F], error [F] int8, other_label [F] int32, iou [F]) of the match's false
    positives; ``annotated`` is the ground truth as in the boxes file (before expansion), on
    the match's image vocabulary."""
    fp_index = np.flatnonzero(match.det_state == FALSE_POSITIVE).astype(np.int64)
    ann_order, ann_offsets = rows_by_image(annotated.image_codes, annotated.num_images)
    error = np.empty(len(fp_index), np.int8)
    other = np.empty(len(fp_index), np.int32)
    iou = np.empty(len(fp_index), np.float64)
    _classify(fp_index, match.det_keys, match.det_boxes, match.det_group, match.grp_gt_lo,
              match.grp_gt_hi, match.gt_boxes, ann_order.astype(np.int64), ann_offsets,
              np.ascontiguousarray(annotated.boxes_norm),
              annotated.label_codes.astype(np.int64), related, paired,
              np.int64(match.num_classes), error, other, iou)
    return fp_index, error, other, iou


def _missed(match: ChallengeMatch) -> tuple[np.ndarray, np.ndarray]:
    """(missed_gt [C], missed_group_of [C]) on the expanded ground truth."""
    C = match.num_classes
    cls = match.gt_keys % np.int64(C)
    plain_missed = ~match.gt_group_of & ~match.gt_taken
    group_missed = match.gt_group_of & ~match.gt_hit
    return (np.bincount(cls[plain_missed], minlength=C).astype(np.int64),
            np.bincount(cls[group_missed], minlength=C).astype(np.int64))


def _entry_types(match: ChallengeMatch, entries: RankedEntries, fp_index: np.ndarray,
                 error: np.ndarray) -> np.ndarray:
    """[E] int8 error type of each entry (-1 for TPs and group-of entries)."""
    det_error = np.full(len(match.det_keys), -1, np.int8)
    det_error[fp_index] = error
    out = np.full(len(entries), -1, np.int8)
    is_det = entries.det_index >= 0
    out[is_det] = det_error[entries.det_index[is_det]]
    return out


def _delta_map_ranked(entries: RankedEntries, entry_type: np.ndarray, num_gt: np.ndarray,
                      order: np.ndarray) -> np.ndarray:
    """ΔmAP [T] by dropping each type's entries from one ranking (no truncated group)."""
    C = len(num_gt)
    w = entries.weights[order]
    cls = entries.classes[order]
    kind = entry_type[order]
    base = mean_ap(average_precision_of_ranked(w, offsets_of_codes(cls, C), num_gt))
    delta = np.full(len(ERROR_TYPES), np.nan)
    for t in range(len(ERROR_TYPES)):
        keep = kind != t
        ap_t = average_precision_of_ranked(w[keep], offsets_of_codes(cls[keep], C), num_gt)
        delta[t] = mean_ap(ap_t) - base
    return delta


def _delta_map_rerun(match: ChallengeMatch, fp_index: np.ndarray, error: np.ndarray,
                     inputs: tuple, base: float) -> np.ndarray:
    """ΔmAP [T] by re-running the evaluator on the detections without each type's FPs (needed
    when the per-group cap truncated a group: removing FPs lets later detections in)."""
    boxes, image_labels, detections, hierarchy = inputs
    delta = np.full(len(ERROR_TYPES), np.nan)
    for t in range(len(ERROR_TYPES)):
        keep = np.ones(len(detections), bool)
        keep[match.det_rows[fp_index[error == t]]] = False
        res = evaluate_challenge(boxes, image_labels, detections.take(keep), match.num_classes,
                                 match.settings, hierarchy=hierarchy)
        delta[t] = res.mean_ap - base
    return delta


def diagnose(boxes: BoxTable, image_labels: ImageLabelTable | None, detections: BoxTable,
             num_classes: int, *, hierarchy: Hierarchy | None = None,
             pairs: np.ndarray | None = None,
             settings: ChallengeSettings | None = None) -> Diagnosis:
    """Error analysis of ``detections`` (arguments as ``evaluate_challenge``; ``boxes`` and
    ``image_labels`` raw, expanded with ``hierarchy`` when given). ``pairs``: [P, 2] class codes
    (source, confusion) of the confusion pairs; ``settings`` default: the challenge's.
    Detections are never expanded."""
    settings = settings or ChallengeSettings()
    if settings.expand_detections:
        raise ValueError("the error analysis scores detections as given (expand_detections=False)")
    match = match_detections(boxes, image_labels, detections, num_classes, settings,
                             hierarchy=hierarchy)
    related, paired = relation_matrices(num_classes, hierarchy, pairs)
    fp_index, error, other, iou = classify_false_positives(match, boxes, related, paired)
    entries = ranked_entries(match)
    order, offsets = ranked_by_class(entries.classes, entries.scores, num_classes)
    ap = average_precision_of_ranked(entries.weights[order], offsets, match.num_gt)
    base = mean_ap(ap)
    if np.isnan(base):
        delta = np.full(len(ERROR_TYPES), np.nan)
    elif (match.det_state == NOT_SCORED).any():
        delta = _delta_map_rerun(match, fp_index, error,
                                 (boxes, image_labels, detections, hierarchy), base)
    else:
        delta = _delta_map_ranked(entries, _entry_types(match, entries, fp_index, error),
                                  match.num_gt, order)
    fp_class = match.det_classes[fp_index]
    fp_counts = np.bincount(fp_class * len(ERROR_TYPES) + error,
                            minlength=num_classes * len(ERROR_TYPES)
                            ).reshape(num_classes, len(ERROR_TYPES)).astype(np.int64)
    tp_counts = np.bincount(entries.classes, weights=entries.weights, minlength=num_classes)
    missed_gt, missed_group_of = _missed(match)
    precision, recall = precision_recall_of_ranked(entries.weights[order], offsets,
                                                   match.num_gt)
    has_gt = match.num_gt > 0
    in_pr = has_gt[entries.classes[order]]
    pr_offsets = offsets_of_codes(entries.classes[order][in_pr], num_classes)
    return Diagnosis(match, entries, fp_index, error, other, iou, ap, fp_counts, delta,
                     tp_counts, missed_gt, missed_group_of, pr_offsets, precision[in_pr],
                     recall[in_pr])


__all__ = [
    "BACKGROUND",
    "CLASS",
    "CONFUSION",
    "DUPLICATE",
    "ERROR_TYPES",
    "HIERARCHY",
    "LOCALIZATION",
    "OTHER",
    "TRUE_POSITIVE",
    "Diagnosis",
    "classify_false_positives",
    "diagnose",
    "relation_matrices",
]
