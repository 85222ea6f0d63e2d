"""A slow, obviously-correct second implementation of the challenge metric (one Python loop per
detection, written from metric spec §§3-5 without numpy), compared with the fast evaluator on
random data: the APs must agree to 1e-12.

Tie order both sides: the reference's concatenation order (image, then detections before group-of
entries, then rank inside the image), then a stable sort by descending score.
"""

import math
from collections import defaultdict

import numpy as np
import pytest

from wilddet.data import hierarchy as hmod
from wilddet.data.records import BoxTable, ClassList, ImageLabelTable
from wilddet.evaluation.oid_challenge import ChallengeSettings, evaluate_challenge


def _inter(a, b):
    # boxes (x0, y0, x1, y1); the reference computes height then width
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    return h * w


def _area(a):
    return (a[3] - a[1]) * (a[2] - a[0])


def _argmax(values):
    best = 0
    for k, v in enumerate(values):
        if v > values[best]:
            best = k
    return best


def slow_challenge(gt_rows, label_rows, det_rows, num_classes, s: ChallengeSettings):
    """gt_rows (image, cls, box, group), label_rows (image, cls), det_rows (image, cls, score,
    box), all Python values. Returns (ap list, num_gt list)."""
    verified = defaultdict(set)
    gt_by_key = defaultdict(list)
    num_gt = [0.0] * num_classes
    for image, cls, box, group in gt_rows:
        verified[image].add(cls)
        gt_by_key[(image, cls)].append((box, group))
        num_gt[cls] += s.group_of_weight if group else 1.0
    for image, cls in label_rows:
        verified[image].add(cls)

    dets_by_key = defaultdict(list)
    for image, cls, score, box in det_rows:
        if cls not in verified.get(image, set()):
            continue  # unverified class, or image without any ground truth
        if not (box[0] < box[2] and box[1] < box[3]):
            continue  # invalid box
        if not score > s.min_score:
            continue
        dets_by_key[(image, cls)].append((score, box))

    entries = [[] for _ in range(num_classes)]  # (score, tp weight), in concatenation order
    for key in sorted(dets_by_key):  # by image, then class
        image, cls = key
        dets = sorted(dets_by_key[key], key=lambda d: -d[0])[:s.max_detections_per_group]
        gts = gt_by_key.get(key, [])
        plain = [b for b, g in gts if not g]
        groups = [b for b, g in gts if g]
        taken = [False] * len(plain)
        best = [0.0] * len(groups)
        for score, box in dets:
            if plain:
                ious = [_inter(box, g) / (_area(box) + _area(g) - _inter(box, g)) for g in plain]
                j = _argmax(ious)
                if ious[j] >= s.iou_threshold and not taken[j]:
                    taken[j] = True
                    entries[cls].append((score, 1.0))
                    continue
            if groups:
                ioas = [_inter(box, g) / _area(box) for g in groups]
                k = _argmax(ioas)
                if ioas[k] >= s.ioa_threshold:
                    best[k] = max(best[k], score)
                    continue
            entries[cls].append((score, 0.0))
        for k in range(len(groups)):
            if best[k] > 0 and s.group_of_weight > 0:
                entries[cls].append((best[k], s.group_of_weight))

    aps = []
    for c in range(num_classes):
        if num_gt[c] == 0:
            aps.append(math.nan)
            continue
        ranked = sorted(entries[c], key=lambda e: -e[0])  # stable
        tp = fp = 0.0
        precision, recall = [], []
        for _, w in ranked:
            tp += w
            fp += 1.0 if w <= 0 else 0.0
            precision.append(tp / (tp + fp))
            recall.append(tp / num_gt[c])
        ap, prev = 0.0, 0.0
        for k in range(len(ranked)):
            if recall[k] != prev:
                ap += (recall[k] - prev) * max(precision[k:])
            prev = recall[k]
        aps.append(ap)
    return aps, num_gt


def random_case(seed, num_images=14, num_classes=5):
    rng = np.random.default_rng(seed)
    grid = rng.random() < 0.5  # coarse dyadic grid: exact threshold hits and identical boxes

    def box():
        if grid:
            x0, y0 = rng.integers(0, 6, 2) / 8
            w, h = rng.integers(1, 5, 2) / 8
            return (x0, y0, x0 + w, y0 + h)
        x0, y0 = rng.random(2) * 0.7
        w, h = 0.05 + rng.random(2) * 0.3
        return (x0, y0, x0 + w, y0 + h)

    gt = []
    for image in range(num_images - 2):  # the last two images have no ground truth
        for _ in range(rng.integers(0, 7)):
            gt.append((image, int(rng.integers(num_classes)), box(), bool(rng.random() < 0.25)))
    labels = [(int(rng.integers(num_images - 1)), int(rng.integers(num_classes)),
               int(rng.integers(0, 2))) for _ in range(12)]
    dets = []
    for _ in range(rng.integers(20, 90)):
        image = int(rng.integers(num_images))
        if rng.random() < 0.5 and gt:  # near a GT box of the same image
            g = gt[rng.integers(len(gt))]
            image, cls = g[0], g[1] if rng.random() < 0.8 else int(rng.integers(num_classes))
            j = (rng.random(4) - 0.5) * 0.1 if not grid else rng.integers(-1, 2, 4) / 16
            b = tuple(float(v) for v in np.add(g[2], j))
        else:
            cls, b = int(rng.integers(num_classes)), box()
        if rng.random() < 0.05:
            b = (b[2], b[1], b[0], b[3])  # inverted
        score = float(np.round(rng.random(), 1) if rng.random() < 0.5 else rng.random())
        if rng.random() < 0.05:
            score = float(rng.choice([-10.0, -10.5, -0.25, 0.0]))
        dets.append((image, cls, score, b))
    return gt, labels, dets


def to_tables(gt, labels, dets, num_images):
    ids = np.array([f"im{i:03d}" for i in range(num_images)], dtype=object)

    def f32(rows, k):
        return np.array([r[k] for r in rows], np.float32).reshape(-1, 4)

    g = BoxTable(np.array([r[0] for r in gt], np.int32), np.array([r[1] for r in gt], np.int32),
                 f32(gt, 2), np.array([r[3] for r in gt], bool), ids)
    lab = ImageLabelTable(np.array([r[0] for r in labels], np.int32),
                          np.array([r[1] for r in labels], np.int32),
                          np.array([r[2] for r in labels], np.int8), ids)
    d = BoxTable(np.array([r[0] for r in dets], np.int32), np.array([r[1] for r in dets], np.int32),
                 f32(dets, 3), np.zeros(len(dets), bool), ids,
                 np.array([r[2] for r in dets], np.float32))
    return g, lab, d


def as_float32(rows, box_at):
    """The fast evaluator sees float32 boxes/scores; give the slow loop the same values."""
    out = []
    for r in rows:
        r = list(r)
        r[box_at] = tuple(float(np.float32(v)) for v in r[box_at])
        if box_at == 3:
            r[2] = float(np.float32(r[2]))
        out.append(tuple(r))
    return out


SETTINGS = [ChallengeSettings(), ChallengeSettings(group_of_weight=0.5),
            ChallengeSettings(group_of_weight=0.0), ChallengeSettings(group_of_weight=0.3),
            ChallengeSettings(iou_threshold=0.25, ioa_threshold=0.75),
            ChallengeSettings(max_detections_per_group=2)]


@pytest.mark.parametrize("seed", range(60))
def test_fast_equals_slow_on_random_data(seed):
    num_images, num_classes = 14, 5
    gt, labels, dets = random_case(seed, num_images, num_classes)
    settings = SETTINGS[seed % len(SETTINGS)]
    g, lab, d = to_tables(gt, labels, dets, num_images)
    fast = evaluate_challenge(g, lab, d, num_classes, settings)
    slow_ap, slow_gt = slow_challenge(as_float32(gt, 2), [(r[0], r[1]) for r in labels],
                                      as_float32(dets, 3), num_classes, settings)
    np.testing.assert_allclose(fast.num_gt, slow_gt, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.ap, slow_ap, rtol=0, atol=1e-12)  # NaN positions must match
    assert fast.mean_ap == pytest.approx(np.nanmean(slow_ap) if not np.all(np.isnan(slow_ap))
                                         else math.nan, abs=1e-12, nan_ok=True)


TREE = {"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "c0", "Subcategory": [
        {"LabelName": "c1", "Subcategory": [{"LabelName": "c3"}, {"LabelName": "c4"}]},
        {"LabelName": "c2", "Subcategory": [{"LabelName": "c3"}]}]}]}


@pytest.mark.parametrize("seed", range(20))
def test_fast_equals_slow_with_hierarchy_and_expanded_detections(seed):
    num_images, num_classes = 14, 5
    classes = ClassList(np.array([f"c{i}" for i in range(5)], dtype=object),
                        np.array([f"c{i}" for i in range(5)], dtype=object))
    tree = hmod.parse_hierarchy(TREE, classes)
    gt, labels, dets = random_case(1000 + seed, num_images, num_classes)
    expand = seed % 2 == 0
    settings = ChallengeSettings(expand_detections=expand)
    g, lab, d = to_tables(gt, labels, dets, num_images)
    fast = evaluate_challenge(g, lab, d, num_classes, settings, hierarchy=tree)

    # the slow side expands with plain Python from the ancestor/descendant lists
    anc = [list(a) for a in tree.ancestors]
    desc = [list(x) for x in tree.descendants]
    gt_x = [(i, c2, b, grp) for i, c, b, grp in as_float32(gt, 2) for c2 in [c] + anc[c]]
    lab_x = [(i, c2) for i, c, v in labels for c2 in [c] + (anc[c] if v == 1 else desc[c])]
    det_x = as_float32(dets, 3)
    if expand:
        det_x = [(i, c2, s, b) for i, c, s, b in det_x for c2 in [c] + anc[c]]
    slow_ap, _ = slow_challenge(gt_x, lab_x, det_x, num_classes, settings)
    np.testing.assert_allclose(fast.ap, slow_ap, rtol=0, atol=1e-12)
