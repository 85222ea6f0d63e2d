"""The Open Images Detection Challenge metric (metric spec §§2-7), exact and fast.

Shapes: ``M`` ground-truth boxes, ``L`` image-level label rows, ``N`` detections, ``I`` images,
``C`` classes, ``G`` (image, class) groups that hold detections, ``E`` ranked entries.

Agrees with the TF Object Detection API's ``OpenImagesDetectionChallengeEvaluator`` (fed
hierarchy-expanded ground truth) class by class:

1. Verified labels: the classes of image i that can be scored are its box classes and its
   image-level label classes, positive or negative. Detections of other classes are dropped
   (neither TP nor FP); an image with no ground-truth row at all drops all its detections; an
   image with labels but no boxes turns its verified-class detections into FPs.
2. Detections with ``xmin >= xmax`` or ``ymin >= ymax`` and scores ``<= -10`` are dropped. Per
   (image, class) the detections are ranked by descending score (stable) and only the first
   ``max_detections_per_group`` (10000, the reference's "NMS" cap) are scored.
3. Stage 1, non-group-of boxes (VOC rule): ``j* = argmax_j IoU(d, g_j)`` (first on ties); if
   ``IoU >= iou_threshold`` and ``g_j*`` is still free, d is a TP and takes it; otherwise d stays
   a FP: no fall-back to the second-best box.
4. Stage 2, group-of boxes, for every detection that is not a TP:
   ``k* = argmax_k IoA(d, r_k)`` with ``IoA = inter / area(d)``; if ``IoA >= ioa_threshold`` d is
   removed and ``best[k*] = max(best[k*], score(d))`` (``best`` starts at 0). Each group-of box
   with ``best > 0`` then gives one entry (score ``best[k]``, TP weight ``group_of_weight``).
5. ``num_gt[c] = #non-group-of boxes + group_of_weight * #group-of boxes``; AP per class as
   ``wilddet.evaluation.ap`` (NaN where ``num_gt == 0``); mAP = mean of the non-NaN APs.

IoU/IoA are computed in float64, continuous coordinates, with the reference's operation order.
Ties in score are broken by the reference's concatenation order (image, then detections before
group-of entries, then rank) instead of its unstable sort: any deterministic order is allowed.

Implementation: rows are keyed by ``image * C + class``; one stable sort groups the detections
and another the ground truth, and a numba kernel walks the groups (no library matches detections
per (image, class) group without a Python loop per group; that loop is what makes the reference
slow). Memory is O(M + N).

The steps are public so that other analyses reuse the one implementation of the rules:
``match_detections`` (steps 1-4, returns a ``ChallengeMatch`` with every detection's outcome),
``ranked_entries`` (the entries the AP ranks) and ``result_from_match`` (step 5);
``evaluate_challenge`` is the three in a row. ``wilddet.evaluation.diagnose`` classifies the
false positives of a ``ChallengeMatch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from wilddet.data.csr import sorted_unique
from wilddet.data.hierarchy import Hierarchy, expand_boxes, expand_image_labels
from wilddet.data.records import BoxTable, ImageLabelTable
from wilddet.evaluation.ap import average_precision_per_class, mean_ap, rank_within_groups

# Per-detection outcome codes (``det_state``).
FALSE_POSITIVE, TRUE_POSITIVE, IN_GROUP_OF, NOT_SCORED = 0, 1, 2, 3


@dataclass(frozen=True)
class ChallengeSettings:
    """Metric settings; the defaults are the challenge's.

    iou_threshold / ioa_threshold: inclusive (``>=``) match thresholds of stage 1 / stage 2.
    group_of_weight: TP weight of a hit group-of box and its ``num_gt`` weight (0 = the V2
    metric: detections inside group-of boxes are ignored, group-of boxes are not counted).
    expand_detections: copy each detection to the ancestors of its class that are verified on
    the image before scoring (mmdetection's ``OpenImagesMetric``); not the challenge rule.
    max_detections_per_group: detections scored per (image, class); min_score: exclusive floor.
    """

    iou_threshold: float = 0.5
    ioa_threshold: float = 0.5
    group_of_weight: float = 1.0
    expand_detections: bool = False
    max_detections_per_group: int = 10_000
    min_score: float = -10.0

    def __post_init__(self):
        for name in ("iou_threshold", "ioa_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} not in [0, 1]")
        if not self.group_of_weight >= 0.0:
            raise ValueError(f"group_of_weight={self.group_of_weight} must be >= 0")
        if self.max_detections_per_group < 1:
            raise ValueError("max_detections_per_group must be >= 1")

    @property
    def mode(self) -> str:
        """``"challenge"`` or ``"expand-detections"``."""
        return "expand-detections" if self.expand_detections else "challenge"


@dataclass(frozen=True)
class ChallengeResult:
    """Per-class results [C] in class-code order.

    ap: float64, NaN where num_gt == 0. num_gt: weighted GT instances (float64).
    num_detections: int64 detections scored (after the verified-label, validity, score and
    per-group cap filters; including those absorbed by group-of boxes).
    num_tp: float64 sum of TP weights (plain TPs + group_of_weight per hit group-of box).
    """

    ap: np.ndarray
    num_gt: np.ndarray
    num_detections: np.ndarray
    num_tp: np.ndarray
    settings: ChallengeSettings

    @property
    def mean_ap(self) -> float:
        """Mean over classes with ground truth (NaN if none has)."""
        return mean_ap(self.ap)


@dataclass(frozen=True)
class ChallengeMatch:
    """Outcome of steps 1-4 for every detection and every (expanded) ground-truth box.

    Detections (``N'`` kept rows, ranked within their (image, class) group):
    det_rows [N'] int64 rows of ``detections`` (the table that was scored: expanded when
    ``settings.expand_detections``); det_keys [N'] int64 ``image * C + class``; det_boxes [N', 4]
    float32; det_scores [N'] float32; det_state [N'] int8 (FALSE_POSITIVE, TRUE_POSITIVE,
    IN_GROUP_OF, NOT_SCORED); det_group [N'] int64 index of the detection's group.
    Groups (``G``): grp_keys [G], grp_gt_lo / grp_gt_hi [G] the group's ground-truth range.
    Ground truth (``M'`` expanded boxes, sorted by key, file order inside a key): gt_rows [M']
    rows of ``ground_truth``; gt_keys [M']; gt_boxes [M', 4]; gt_group_of [M'] bool;
    gt_taken [M'] bool (a plain box matched by a TP); gt_best [M'] float64 (best score absorbed
    by a group-of box, 0 when none). num_gt [C] float64 (weighted).
    """

    num_classes: int
    settings: ChallengeSettings
    ground_truth: BoxTable
    detections: BoxTable
    num_gt: np.ndarray
    det_rows: np.ndarray
    det_keys: np.ndarray
    det_boxes: np.ndarray
    det_scores: np.ndarray
    det_state: np.ndarray
    det_group: np.ndarray
    grp_keys: np.ndarray
    grp_gt_lo: np.ndarray
    grp_gt_hi: np.ndarray
    gt_rows: np.ndarray
    gt_keys: np.ndarray
    gt_boxes: np.ndarray
    gt_group_of: np.ndarray
    gt_taken: np.ndarray
    gt_best: np.ndarray

    @property
    def det_classes(self) -> np.ndarray:
        """[N'] int64 class code of each ranked detection."""
        return self.det_keys % np.int64(self.num_classes)

    @property
    def gt_hit(self) -> np.ndarray:
        """[M'] bool: group-of boxes that give a TP entry (step 4)."""
        return self.gt_group_of & (self.gt_best > 0) & (self.settings.group_of_weight > 0)


@dataclass(frozen=True)
class RankedEntries:
    """The entries the AP ranks (step 4's output), in the reference's concatenation order (by
    image, detections before group-of entries, then rank). classes [E] int64, scores [E]
    float64, weights [E] float64 (0 FP, 1 TP, ``group_of_weight`` group-of TP), det_index [E]
    int64 position in the ``ChallengeMatch`` detection arrays (-1 for a group-of entry)."""

    classes: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    det_index: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)


@numba.njit(cache=True, nogil=True, inline="always")
def box_overlap(dx0, dy0, dx1, dy1, gx0, gy0, gx1, gy1):
    """(intersection, detection area, box area) of two (xmin, ymin, xmax, ymax) boxes in
    float64, in the reference's operation order (``[ymin, xmin, ymax, xmax]``: height first).
    IoU = inter / (d_area + g_area - inter); IoA = inter / d_area."""
    h = max(0.0, min(dy1, gy1) - max(dy0, gy0))
    w = max(0.0, min(dx1, gx1) - max(dx0, gx0))
    return h * w, (dy1 - dy0) * (dx1 - dx0), (gy1 - gy0) * (gx1 - gx0)


@numba.njit(cache=True, nogil=True)
def _match_groups(det_boxes, det_scores, grp_offsets, grp_gt_lo, grp_gt_hi, gt_boxes,
                  gt_group_of, iou_threshold, ioa_threshold, max_per_group, det_state,
                  gt_best, gt_taken):
    """Label every detection of every (image, class) group (steps 2-4 of the module doc).

    det_* are ranked within each group; group g owns detections grp_offsets[g]:[g+1] and ground
    truth grp_gt_lo[g]:grp_gt_hi[g]. Writes det_state [N] (int8 codes), gt_best [M] (best
    score of the detections absorbed by each group-of box, starts at 0) and gt_taken [M].
    """
    for g in range(len(grp_offsets) - 1):
        lo = grp_offsets[g]
        hi = grp_offsets[g + 1]
        glo = grp_gt_lo[g]
        ghi = grp_gt_hi[g]
        for i in range(lo, hi):
            if i - lo >= max_per_group:
                det_state[i] = 3  # NOT_SCORED
                continue
            dx0 = np.float64(det_boxes[i, 0])
            dy0 = np.float64(det_boxes[i, 1])
            dx1 = np.float64(det_boxes[i, 2])
            dy1 = np.float64(det_boxes[i, 3])
            best_iou = -1.0
            best_j = -1
            best_ioa = -1.0
            best_k = -1
            for j in range(glo, ghi):
                inter, d_area, g_area = box_overlap(
                    dx0, dy0, dx1, dy1, np.float64(gt_boxes[j, 0]), np.float64(gt_boxes[j, 1]),
                    np.float64(gt_boxes[j, 2]), np.float64(gt_boxes[j, 3]))
                if gt_group_of[j]:
                    ioa = inter / d_area
                    if ioa > best_ioa:
                        best_ioa = ioa
                        best_k = j
                else:
                    iou = inter / (d_area + g_area - inter)
                    if iou > best_iou:
                        best_iou = iou
                        best_j = j
            state = 0  # FALSE_POSITIVE
            if best_j >= 0 and best_iou >= iou_threshold and not gt_taken[best_j]:
                gt_taken[best_j] = True
                state = 1  # TRUE_POSITIVE
            if state == 0 and best_k >= 0 and best_ioa >= ioa_threshold:
                state = 2  # IN_GROUP_OF
                gt_best[best_k] = max(gt_best[best_k], np.float64(det_scores[i]))
            det_state[i] = state


def _check_aligned(boxes: BoxTable, labels: ImageLabelTable, detections: BoxTable) -> None:
    ids = boxes.image_ids
    for name, t in (("image_labels", labels), ("detections", detections)):
        if t.image_ids is not ids and not np.array_equal(t.image_ids, ids):
            raise ValueError(f"{name} use another image vocabulary than boxes; "
                             "call wilddet.data.oid_csv.align_images first")


def _check_codes(table, num_classes: int, name: str) -> None:
    codes = table.label_codes
    if len(codes) and (codes.min() < 0 or codes.max() >= num_classes):
        raise ValueError(f"{name}: class codes outside 0..{num_classes - 1}")


def _validated_inputs(boxes: BoxTable, image_labels: ImageLabelTable | None,
                      detections: BoxTable, num_classes: int, settings: ChallengeSettings,
                      hierarchy: Hierarchy | None) -> ImageLabelTable:
    """Check the three tables; returns the image labels (an empty table for None)."""
    if detections.scores is None:
        raise ValueError("detections need scores")
    if image_labels is None:
        image_labels = ImageLabelTable(np.zeros(0, np.int32), np.zeros(0, np.int32),
                                       np.zeros(0, np.int8), boxes.image_ids)
    _check_aligned(boxes, image_labels, detections)
    for table, name in ((boxes, "boxes"), (image_labels, "image_labels"),
                        (detections, "detections")):
        _check_codes(table, num_classes, name)
    gb = boxes.boxes_norm
    if len(gb) and ((gb[:, 0] > gb[:, 2]) | (gb[:, 1] > gb[:, 3])).any():
        raise ValueError("ground-truth box with xmin > xmax or ymin > ymax")
    if settings.expand_detections and hierarchy is None:
        raise ValueError("expand_detections needs the class hierarchy")
    return image_labels


def _scored_rows(detections: BoxTable, verified: np.ndarray, num_classes: int,
                 min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, keys) of the detections kept by step 1-2's filters (verified class, valid box,
    score > min_score), ranked by key then descending score (stable)."""
    db = detections.boxes_norm
    scores = detections.scores
    det_keys = detections.image_codes.astype(np.int64) * np.int64(num_classes) + \
        detections.label_codes
    pos = np.searchsorted(verified, det_keys)
    is_verified = verified[np.minimum(pos, len(verified) - 1)] == det_keys if len(verified) \
        else np.zeros(len(det_keys), bool)
    keep = is_verified & (db[:, 0] < db[:, 2]) & (db[:, 1] < db[:, 3]) & (scores > min_score)
    rows = np.flatnonzero(keep)
    order = rows[rank_within_groups(det_keys[rows], scores[rows])]
    return order, det_keys[order]


def _group_offsets(sorted_keys: np.ndarray) -> np.ndarray:
    """[G+1] int64 start of each run of equal keys in ``sorted_keys``, and its end."""
    starts = np.flatnonzero(np.diff(sorted_keys)) + 1 if len(sorted_keys) else \
        np.zeros(0, np.int64)
    return np.concatenate([[0], starts, [len(sorted_keys)]]).astype(np.int64)


def match_detections(boxes: BoxTable, image_labels: ImageLabelTable | None,
                     detections: BoxTable, num_classes: int,
                     settings: ChallengeSettings = ChallengeSettings(), *,
                     hierarchy: Hierarchy | None = None,
                     expand_ground_truth: bool = True) -> ChallengeMatch:
    """Steps 1-4 of the module doc: the outcome of every detection (arguments as
    ``evaluate_challenge``)."""
    image_labels = _validated_inputs(boxes, image_labels, detections, num_classes, settings,
                                     hierarchy)
    if hierarchy is not None and expand_ground_truth:
        boxes = expand_boxes(boxes, hierarchy)
        image_labels = expand_image_labels(image_labels, hierarchy)
    if settings.expand_detections:
        detections = expand_boxes(detections, hierarchy)
    C = np.int64(num_classes)

    # ground truth: verified (image, class) keys and num_gt
    gt_keys = boxes.image_codes.astype(np.int64) * C + boxes.label_codes
    label_keys = image_labels.image_codes.astype(np.int64) * C + image_labels.label_codes
    verified = sorted_unique(np.concatenate([gt_keys, label_keys]))
    group = boxes.is_group_of.astype(bool)
    num_gt = (np.bincount(boxes.label_codes[~group], minlength=num_classes).astype(np.float64)
              + float(settings.group_of_weight)
              * np.bincount(boxes.label_codes[group], minlength=num_classes))

    # detections ranked per (image, class); ground truth grouped by the same keys
    d_rows, d_keys = _scored_rows(detections, verified, num_classes, settings.min_score)
    grp_offsets = _group_offsets(d_keys)
    grp_keys = d_keys[grp_offsets[:-1]] if len(d_keys) else np.zeros(0, np.int64)
    gt_rows = np.argsort(gt_keys, kind="stable")
    g_keys = gt_keys[gt_rows]
    g_boxes = np.ascontiguousarray(boxes.boxes_norm[gt_rows])
    g_group = np.ascontiguousarray(group[gt_rows])
    grp_gt_lo = np.searchsorted(g_keys, grp_keys, side="left").astype(np.int64)
    grp_gt_hi = np.searchsorted(g_keys, grp_keys, side="right").astype(np.int64)

    d_boxes = np.ascontiguousarray(detections.boxes_norm[d_rows])
    d_scores = np.ascontiguousarray(detections.scores[d_rows])
    det_state = np.empty(len(d_keys), dtype=np.int8)
    gt_best = np.zeros(len(g_keys), dtype=np.float64)
    gt_taken = np.zeros(len(g_keys), dtype=np.bool_)
    _match_groups(d_boxes, d_scores, grp_offsets, grp_gt_lo, grp_gt_hi, g_boxes, g_group,
                  float(settings.iou_threshold), float(settings.ioa_threshold),
                  int(settings.max_detections_per_group), det_state, gt_best, gt_taken)
    det_group = np.repeat(np.arange(len(grp_keys), dtype=np.int64), np.diff(grp_offsets))
    return ChallengeMatch(num_classes, settings, boxes, detections, num_gt, d_rows, d_keys,
                          d_boxes, d_scores, det_state, det_group, grp_keys, grp_gt_lo,
                          grp_gt_hi, gt_rows, g_keys, g_boxes, g_group, gt_taken, gt_best)


def ranked_entries(match: ChallengeMatch) -> RankedEntries:
    """Scored detections, then one entry per hit group-of box, in the reference's
    concatenation order (by image, detections before group-of entries, then rank)."""
    scored = np.flatnonzero(match.det_state <= TRUE_POSITIVE)
    hit = match.gt_hit
    w_group = float(match.settings.group_of_weight)
    e_keys = np.concatenate([match.det_keys[scored], match.gt_keys[hit]])
    e_scores = np.concatenate([match.det_scores[scored].astype(np.float64),
                               match.gt_best[hit]])
    e_weights = np.concatenate([(match.det_state[scored] == TRUE_POSITIVE).astype(np.float64),
                                np.full(int(hit.sum()), w_group)])
    e_det = np.concatenate([scored, np.full(int(hit.sum()), -1, np.int64)])
    concat = np.argsort(e_keys, kind="stable")
    return RankedEntries(e_keys[concat] % np.int64(match.num_classes), e_scores[concat],
                         e_weights[concat], e_det[concat])


def result_from_match(match: ChallengeMatch, entries: RankedEntries | None = None
                      ) -> ChallengeResult:
    """Step 5: AP per class and the counts of ``ChallengeResult``."""
    entries = ranked_entries(match) if entries is None else entries
    C = match.num_classes
    ap = average_precision_per_class(entries.classes, entries.scores, entries.weights,
                                     match.num_gt)
    num_det = np.bincount(match.det_classes[match.det_state != NOT_SCORED], minlength=C)
    num_tp = np.bincount(entries.classes, weights=entries.weights, minlength=C)
    return ChallengeResult(ap=ap, num_gt=match.num_gt, num_detections=num_det.astype(np.int64),
                           num_tp=num_tp.astype(np.float64), settings=match.settings)


def evaluate_challenge(boxes: BoxTable, image_labels: ImageLabelTable | None,
                       detections: BoxTable, num_classes: int,
                       settings: ChallengeSettings = ChallengeSettings(), *,
                       hierarchy: Hierarchy | None = None,
                       expand_ground_truth: bool = True) -> ChallengeResult:
    """Score ``detections`` against ground truth with the challenge metric.

    boxes: ground-truth BoxTable (M rows); image_labels: verified image-level labels (None = no
    label file); detections: BoxTable with ``scores`` (N rows). All three must share one image
    vocabulary (``oid_csv.align_images``); coordinates are (xmin, ymin, xmax, ymax), any scale.
    hierarchy: with ``expand_ground_truth`` the raw boxes and labels are expanded first (spec §6);
    also required by ``settings.expand_detections``. Detections are never expanded otherwise.
    """
    return result_from_match(match_detections(boxes, image_labels, detections, num_classes,
                                              settings, hierarchy=hierarchy,
                                              expand_ground_truth=expand_ground_truth))
