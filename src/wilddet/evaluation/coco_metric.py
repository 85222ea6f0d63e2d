"""COCO and LVIS box AP, computed by faster-coco-eval (its C++ COCOeval, and its LVIS mode).

Shapes: ``D`` detections, ``K`` categories, ``T`` = 10 IoU thresholds (0.5:0.05:0.95), ``R`` =
101 recall points, ``A`` = 4 area ranges (all, small < 32², medium < 96², large), ``M`` maxDets.

- ``"coco"``: pycocotools' ``COCOeval`` for boxes, maxDets (1, 10, 100): the twelve numbers of
  ``summarize()`` as ``COCO_KEYS``. Crowd boxes (``iscrowd`` 1) are ignored regions.
- ``"lvis"``: lvis-api's federated metric: a detection counts only on images where its category
  is verified (a box, or ``neg_category_ids``); an unmatched detection of a category in
  ``not_exhaustive_category_ids`` is ignored; APr/APc/APf average over the categories of each
  ``frequency``. As lvis-api, only the 300 top-scored detections of each image (all categories
  together, ties in file order) are kept, and then evaluated with ``maxDets = [300]``:
  faster-coco-eval alone caps per image *and category*, which differs when an image holds more
  than 300 detections. Like lvis-api, ``iscrowd`` plays no part (LVIS has no crowd boxes; a
  truthy ``ignore`` field is what lvis-api ignores).

faster-coco-eval matches and accumulates (``precision [T, R, K, A, M]``, ``recall [T, K, A,
M]``); a summary number is the mean of the entries > −1 of one slice of those arrays, exactly as
``COCOeval.summarize`` / ``LVISEval.summarize`` take it, None when there is none (computed here
so that the categories can be evaluated in slices, see ``MAX_PAIRS_PER_PASS``).
``per_class_ap[k]`` = mean of the precision entries > −1 of category k over all T and R, area
"all", the last maxDets (100 COCO, 300 LVIS); NaN when it has none (no ground truth). Pure:
takes the parsed documents, never prints (faster-coco-eval's messages go to a no-op function) and
never touches files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

MetricName = Literal["coco", "lvis"]
COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
             "ARl")
LVIS_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR300")
LVIS_EXTRA_KEYS = ("ARs300", "ARm300", "ARl300")
LVIS_MAX_DETS_PER_IMAGE = 300

# Pairs (image, category) faster-coco-eval is given at once: it builds a Python dict entry for
# every pair of its image x category product (23.8M at LVIS val size, ~4 GB), so larger sets
# are evaluated in slices of categories, each with only its own detections (so only one slice
# of detection records exists at a time). Exact: matching, the per-image LVIS filters and the
# accumulation are per category, and the summary means run over the concatenated arrays.
MAX_PAIRS_PER_PASS = 2_000_000

@dataclass(frozen=True)
class Detections:
    """D detections in json ids: image_ids [D] int64, category_ids [D] int64, bbox [D, 4]
    float64 ``[x, y, w, h]`` px, scores [D] float64."""

    image_ids: np.ndarray
    category_ids: np.ndarray
    bbox: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, rows: np.ndarray) -> Detections:
        return Detections(self.image_ids[rows], self.category_ids[rows], self.bbox[rows],
                          self.scores[rows])


@dataclass(frozen=True)
class CocoMetricResult:
    """summary: ``COCO_KEYS`` / ``LVIS_KEYS`` (+ ``LVIS_EXTRA_KEYS``) -> fraction or None;
    category_ids [K] ascending, per_class_ap [K] float64 (NaN: no entry), num_gt [K] (crowd /
    ignored boxes excluded), num_detections [K] (evaluated: after the LVIS per-image cap)."""

    metric: MetricName
    summary: dict
    category_ids: np.ndarray
    per_class_ap: np.ndarray
    num_gt: np.ndarray
    num_detections: np.ndarray
    library: str

    @property
    def mean_ap(self) -> float:
        """``summary["AP"]`` (NaN when there is none): the number training logs as val mAP."""
        ap = self.summary.get("AP")
        return math.nan if ap is None else float(ap)


def _silent(*args, **kwargs) -> None:
    """faster-coco-eval reports progress through a print function; the library stays quiet."""


def top_per_image(detections: Detections, max_per_image: int) -> np.ndarray:
    """Rows kept when each image keeps its ``max_per_image`` highest scores (ties: file order,
    as lvis-api's stable sort), in file order."""
    n = len(detections)
    order = np.lexsort((np.arange(n), -detections.scores, detections.image_ids))
    sorted_images = detections.image_ids[order]
    starts = np.r_[0, np.flatnonzero(sorted_images[1:] != sorted_images[:-1]) + 1] if n else \
        np.zeros(0, np.int64)
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.arange(n) - group_start
    return np.sort(order[rank < max_per_image])


def _gt_for_eval(gt_doc: dict, metric: MetricName) -> dict:
    """Shallow copies of the annotations (faster-coco-eval writes flags into them); for LVIS
    ``iscrowd`` is replaced by lvis-api's ``ignore`` rule."""
    keys = ("id", "image_id", "category_id", "bbox", "area")
    anns = []
    for a in gt_doc["annotations"]:
        b = {k: a[k] for k in keys if k in a}
        if "area" not in b:
            b["area"] = a["bbox"][2] * a["bbox"][3]
        b["iscrowd"] = int(bool(a.get("ignore", 0))) if metric == "lvis" else \
            int(a.get("iscrowd", 0))
        anns.append(b)
    return {"images": gt_doc["images"], "categories": gt_doc["categories"], "annotations": anns}


def _results_coco(gt_doc: dict, detections: Detections, rows: np.ndarray):
    """A faster-coco-eval ``COCO`` of the detections ``rows`` (ids = row + 1): what its
    ``loadRes`` builds for box results, minus the polygon it adds as ``segmentation`` (unused for
    boxes, and the largest part of its memory)."""
    from faster_coco_eval import COCO

    bbox = np.asarray(detections.bbox[rows], np.float64).reshape(-1, 4)
    area = (bbox[:, 2] * bbox[:, 3]).tolist()
    anns = [{"id": n + 1, "image_id": i, "category_id": c, "bbox": b, "score": s, "area": a,
             "iscrowd": 0}
            for n, i, c, b, s, a in zip(rows.tolist(), detections.image_ids[rows].tolist(),
                                        detections.category_ids[rows].tolist(), bbox.tolist(),
                                        detections.scores[rows].tolist(), area)]
    coco_dt = COCO(print_function=_silent)
    coco_dt.dataset = {"images": gt_doc["images"], "categories": gt_doc["categories"],
                       "annotations": anns}
    coco_dt.createIndex()
    return coco_dt


def _mean_valid(values: np.ndarray) -> float | None:
    """Mean of the entries > -1 (pycocotools' ``_summarize``), None when there is none."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def _summary(precision: np.ndarray, recall: np.ndarray, params, metric: MetricName,
             frequency: np.ndarray | None) -> dict:
    """The summary numbers (``COCO_KEYS`` / ``LVIS_KEYS`` + ``LVIS_EXTRA_KEYS``) from
    precision [T, R, K, A, M] and recall [T, K, A, M], as ``COCOeval.summarize`` /
    ``LVISEval.summarize`` compute them."""
    areas = {name: i for i, name in enumerate(params.areaRngLbl)}
    last = len(params.maxDets) - 1

    def iou(thr):
        return np.flatnonzero(np.isclose(params.iouThrs, thr))

    def ap(thr=None, area="all", cats=slice(None)):
        p = precision[:, :, cats, areas[area], last]
        return _mean_valid(p if thr is None else p[iou(thr)])

    def ar(area="all", m=last):
        return _mean_valid(recall[:, :, areas[area], m])

    out = {"AP": ap(), "AP50": ap(0.5), "AP75": ap(0.75), "APs": ap(area="small"),
           "APm": ap(area="medium"), "APl": ap(area="large")}
    if metric == "lvis":
        for f in ("r", "c", "f"):
            out[f"AP{f}"] = ap(cats=np.flatnonzero(frequency == f))
        out.update(AR300=ar(), ARs300=ar("small"), ARm300=ar("medium"), ARl300=ar("large"))
    else:
        out.update({f"AR{m}": ar(m=k) for k, m in enumerate(params.maxDets)})
        out.update(ARs=ar("small"), ARm=ar("medium"), ARl=ar("large"))
    return out


def _accumulate(coco_gt, gt_doc: dict, detections: Detections, category_ids: np.ndarray,
                metric: MetricName):
    """faster-coco-eval's evaluate + accumulate over slices of the categories, each given only
    its own detections: (precision [T, R, K, A, M], recall [T, K, A, M], params)."""
    from faster_coco_eval import COCOeval_faster

    step = max(1, MAX_PAIRS_PER_PASS // max(len(gt_doc["images"]), 1))
    order = np.argsort(detections.category_ids, kind="stable")
    sorted_cats = detections.category_ids[order]
    precision, recall, params = [], [], None
    for lo in range(0, max(len(category_ids), 1), step):
        cats = category_ids[lo:lo + step]
        first = np.searchsorted(sorted_cats, cats[0], side="left") if len(cats) else 0
        end = np.searchsorted(sorted_cats, cats[-1], side="right") if len(cats) else 0
        rows = np.sort(order[first:end])  # this slice's detections, in file order
        ev = COCOeval_faster(coco_gt, _results_coco(gt_doc, detections, rows), iouType="bbox",
                             print_function=_silent, lvis_style=metric == "lvis")
        ev.params.catIds = cats.tolist()
        if metric == "lvis":
            ev.params.maxDets = [LVIS_MAX_DETS_PER_IMAGE]
        ev.evaluate()
        ev.accumulate()
        precision.append(np.asarray(ev.eval["precision"]))
        recall.append(np.asarray(ev.eval["recall"]))
        params = ev.params
    return np.concatenate(precision, axis=2), np.concatenate(recall, axis=1), params


def evaluate_coco_style(gt_doc: dict, detections: Detections,
                        metric: MetricName = "coco") -> CocoMetricResult:
    """Box AP of ``detections`` on the (validated) COCO / LVIS document ``gt_doc``."""
    import faster_coco_eval
    from faster_coco_eval import COCO

    if metric not in ("coco", "lvis"):
        raise ValueError(f"metric {metric!r} is not coco or lvis")
    if metric == "lvis":
        detections = detections.take(top_per_image(detections, LVIS_MAX_DETS_PER_IMAGE))
    gt_eval = _gt_for_eval(gt_doc, metric)
    coco_gt = COCO(gt_eval, print_function=_silent)
    by_id = {int(c["id"]): c for c in gt_doc["categories"]}
    category_ids = np.asarray(sorted(by_id), np.int64)
    precision, recall, params = _accumulate(coco_gt, gt_doc, detections, category_ids, metric)
    frequency = np.asarray([by_id[int(c)].get("frequency", "") for c in category_ids])
    summary = _summary(precision, recall, params, metric, frequency)

    p = precision[:, :, :, 0, -1]  # [T, R, K] area "all", the last maxDets
    valid = p > -1
    counts = valid.sum(axis=(0, 1))
    per_class = np.where(counts > 0, np.where(valid, p, 0.0).sum(axis=(0, 1))
                         / np.maximum(counts, 1), np.nan)
    code = np.searchsorted(category_ids, [a["category_id"] for a in gt_eval["annotations"]])
    counted = np.asarray([a["iscrowd"] == 0 for a in gt_eval["annotations"]], bool)
    num_gt = np.bincount(code[counted] if len(code) else np.zeros(0, np.int64),
                         minlength=len(category_ids))
    det_code = np.searchsorted(category_ids, detections.category_ids)
    num_dets = np.bincount(det_code, minlength=len(category_ids))
    return CocoMetricResult(metric, summary, category_ids, per_class.astype(np.float64), num_gt,
                            num_dets, f"faster-coco-eval {faster_coco_eval.__version__}")
