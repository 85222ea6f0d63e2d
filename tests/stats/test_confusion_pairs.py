"""Confusion-pair counting against a brute-force double loop, hand-worked examples and Table 2."""

import csv

import numpy as np
import pytest

from wilddet.data.records import ClassList
from wilddet.resources import SEED_TABLE2_CSV
from wilddet.stats.confusion import confusion_pairs, count_confusion_pairs, source_box_counts


def _brute_force(boxes, labels, images, num_classes, thr, rule="box-pairs", keep=None):
    """Independent reference: every ordered pair of rows of one image, plain Python floats."""
    n = len(labels)
    keep = np.ones(n, bool) if keep is None else keep
    counts = np.zeros((num_classes, num_classes), np.int64)
    b = boxes.astype(np.float64).tolist()
    rows_of = {}
    for r in range(n):
        rows_of.setdefault(int(images[r]), []).append(r)
    for a in range(n):
        seen = set()
        for c in rows_of[int(images[a])]:
            if a == c or not keep[a] or not keep[c] or labels[a] == labels[c]:
                continue
            x0, y0, x1, y1 = b[a]
            u0, v0, u1, v1 = b[c]
            iw = min(x1, u1) - max(x0, u0)
            ih = min(y1, v1) - max(y0, v0)
            if iw <= 0 or ih <= 0:
                continue
            inter = iw * ih
            iou = inter / ((x1 - x0) * (y1 - y0) + (u1 - u0) * (v1 - v0) - inter)
            if iou > thr:
                if rule == "box-pairs":
                    counts[labels[a], labels[c]] += 1
                elif labels[c] not in seen:
                    seen.add(labels[c])
                    counts[labels[a], labels[c]] += 1
    return counts


def _random_data(seed, num_images=60, num_classes=7, max_boxes=14):
    """Random boxes plus planted near-duplicates (other class, same class, chains of three)."""
    rng = np.random.default_rng(seed)
    rows_img, rows_lab, rows_box = [], [], []
    for im in range(num_images):
        for _ in range(rng.integers(0, max_boxes)):
            x0, y0 = rng.uniform(0, 0.7, 2)
            w, h = rng.uniform(0.05, 0.3, 2)
            box = np.array([x0, y0, x0 + w, y0 + h])
            lab = rng.integers(num_classes)
            rows_img.append(im), rows_lab.append(lab), rows_box.append(box)
            for _ in range(rng.choice([0, 0, 1, 2, 3])):  # near-duplicates, IoU around 0.9
                jit = box + rng.uniform(-0.012, 0.012, 4) * np.array([w, h, w, h])
                rows_img.append(im), rows_lab.append(rng.integers(num_classes))
                rows_box.append(np.clip(jit, 0, 1))
    perm = rng.permutation(len(rows_img))  # rows not grouped by image, as in a file
    return (np.asarray(rows_box, np.float32)[perm], np.asarray(rows_lab, np.int32)[perm],
            np.asarray(rows_img, np.int32)[perm], num_images, num_classes)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("thr", [0.9, 0.95, 0.5])
def test_matches_brute_force(seed, thr):
    boxes, labels, images, num_images, num_classes = _random_data(seed)
    got = count_confusion_pairs(boxes, labels, images, num_images, num_classes, thr, num_blocks=5)
    want = _brute_force(boxes, labels, images, num_classes, thr)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64
    assert got.sum() > 0  # the planted duplicates do pair
    np.testing.assert_array_equal(got, got.T)  # Table 2's symmetry
    assert np.all(np.diag(got) == 0)


@pytest.mark.parametrize("seed", [3, 4])
def test_source_boxes_rule_and_keep_match_brute_force(seed):
    boxes, labels, images, num_images, num_classes = _random_data(seed)
    keep = np.random.default_rng(seed).random(len(labels)) < 0.8
    for rule in ("box-pairs", "source-boxes"):
        got = count_confusion_pairs(boxes, labels, images, num_images, num_classes, 0.9,
                                    rule=rule, keep=keep)
        np.testing.assert_array_equal(got, _brute_force(boxes, labels, images, num_classes, 0.9,
                                                        rule, keep))
    np.testing.assert_array_equal(source_box_counts(labels, num_classes, keep),
                                  np.bincount(labels[keep], minlength=num_classes))


def test_iou_exactly_at_threshold_is_not_a_pair():
    # widths 10/16 and 9/16, full height: inter = 9/16, union = 10/16, IoU == 0.9 in float64
    boxes = np.array([[0, 0, 0.625, 1], [0, 0, 0.5625, 1]], np.float32)
    assert (0.5625 * 1.0) / (0.625 + 0.5625 - 0.5625) == 0.9
    labels, images = np.array([0, 1], np.int32), np.zeros(2, np.int32)
    at = count_confusion_pairs(boxes, labels, images, 1, 2, 0.9)
    assert at.sum() == 0
    below = count_confusion_pairs(boxes, labels, images, 1, 2, 0.8999)
    np.testing.assert_array_equal(below, [[0, 1], [1, 0]])


def test_hand_worked_image():
    # image 0: A (class 0) with a near copy B (class 1) and a same-class copy A' (class 0);
    # image 1: the same boxes as B but class 2 -> no pair across images.
    a = [0.1, 0.1, 0.5, 0.5]
    b = [0.1, 0.1, 0.5, 0.49]      # IoU 0.975 with A
    boxes = np.array([a, b, a, a, b], np.float32)
    labels = np.array([0, 1, 0, 0, 2], np.int32)
    images = np.array([0, 0, 0, 1, 1], np.int32)
    got = count_confusion_pairs(boxes, labels, images, 2, 3, 0.9)
    # image 0 pairs: (A, B), (A', B) -> count(0, 1) = 2 = count(1, 0); image 1: (A, B'') class 0-2
    np.testing.assert_array_equal(got, [[0, 2, 1], [2, 0, 0], [1, 0, 0]])
    distinct = count_confusion_pairs(boxes, labels, images, 2, 3, 0.9, rule="source-boxes")
    # B overlaps two class-0 boxes but is one source box
    np.testing.assert_array_equal(distinct, [[0, 2, 1], [1, 0, 0], [1, 0, 0]])


def test_non_transitive_overlap():
    # J overlaps L and C (IoU 0.923) but L and C do not overlap enough (IoU 0.852).
    boxes = np.array([[0.2, 0, 0.6, 1], [0.184, 0, 0.584, 1], [0.216, 0, 0.616, 1]], np.float32)
    labels, images = np.array([0, 1, 2], np.int32), np.zeros(3, np.int32)
    got = count_confusion_pairs(boxes, labels, images, 1, 3, 0.9)
    np.testing.assert_array_equal(got, [[0, 1, 1], [1, 0, 0], [1, 0, 0]])


def test_empty_and_degenerate_inputs():
    none = count_confusion_pairs(np.zeros((0, 4), np.float32), np.zeros(0, np.int32),
                                 np.zeros(0, np.int32), 0, 3)
    np.testing.assert_array_equal(none, np.zeros((3, 3)))
    # zero-area boxes never pair (and do not divide by zero)
    boxes = np.array([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]], np.float32)
    got = count_confusion_pairs(boxes, np.array([0, 1], np.int32), np.zeros(2, np.int32), 1, 2)
    assert got.sum() == 0
    with pytest.raises(ValueError, match="rule"):
        count_confusion_pairs(boxes, np.array([0, 1], np.int32), np.zeros(2, np.int32), 1, 2,
                              rule="boxes")
    with pytest.raises(ValueError, match="iou_threshold"):
        count_confusion_pairs(boxes, np.array([0, 1], np.int32), np.zeros(2, np.int32), 1, 2, 1.5)


def test_progress_reports_every_image():
    boxes, labels, images, num_images, num_classes = _random_data(5)
    seen = []
    count_confusion_pairs(boxes, labels, images, num_images, num_classes, num_blocks=7,
                          progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == num_images and len(seen) == 7
    auto = []  # default: blocks sized by work, here one block
    count_confusion_pairs(boxes, labels, images, num_images, num_classes, progress=auto.append)
    assert auto == [num_images]


def test_pairs_table_sorted_inclusive_and_deterministic():
    counts = np.array([[0, 4, 2, 0], [4, 0, 0, 0], [2, 0, 0, 1], [0, 0, 1, 0]])
    source = np.array([40, 8, 20, 10])
    pairs = confusion_pairs(counts, source, min_ratio=0.1)
    # ratios: (0,1) 0.1, (1,0) 0.5, (0,2) 0.05, (2,0) 0.1, (2,3) 0.05, (3,2) 0.1
    assert list(zip(pairs.source, pairs.confusion)) == [(1, 0), (0, 1), (2, 0), (3, 2)]
    np.testing.assert_allclose(pairs.ratio, [0.5, 0.1, 0.1, 0.1])
    assert pairs.ratio[1] == 4 / 40 == 0.1  # the cut is inclusive (Table 2: 4/40 is listed)
    np.testing.assert_array_equal(pairs.source_boxes, [8, 40, 20, 10])
    np.testing.assert_array_equal(pairs.confusion_boxes, [4, 4, 2, 1])
    everything = confusion_pairs(counts, source, min_ratio=0.0)
    assert len(everything) == 6  # all observed pairs, never the zero ones
    with pytest.raises(ValueError):
        confusion_pairs(counts, source, min_ratio=-1)


# ------------------------------------------------------------------------------------------------
# Table 2 of the seed: a data set built to its counts gives back exactly its 115 rows.

def _table2_rows():
    with open(SEED_TABLE2_CSV, newline="") as f:
        return list(csv.DictReader(f))


def _table2_dataset(rows):
    """Boxes reproducing Table 2: per unordered pair {i, j} with k confusion boxes, k images with
    an i-box and a j-box at IoU 0.96; a class with more pairs than boxes (Jaguar: 347 + 218 > 553)
    shares boxes through three-box images (J overlaps L and C, L and C do not pair); the rest of
    each class's boxes alone in their own images. Classes that are never a source get enough
    boxes that their reverse ratios stay below 0.1."""
    labels = sorted({r["source"] for r in rows} | {r["confusion"] for r in rows})
    classes = ClassList(np.asarray(labels, object), np.asarray(labels, object))
    code = classes.index
    num = {code[r["source"]]: int(r["source_boxes"]) for r in rows}
    pair_k = {}
    for r in rows:
        pair_k[tuple(sorted((code[r["source"]], code[r["confusion"]])))] = int(r["confusion_boxes"])
    need = np.zeros(len(labels), np.int64)
    for (i, j), k in pair_k.items():
        need[i] += k
        need[j] += k
    for c in range(len(labels)):
        if c not in num:
            partners = [k for (i, j), k in pair_k.items() if c in (i, j)]
            num[c] = max(need[c], 10 * max(partners) + 1)
    parts = []  # (labels per image [m], boxes [m, 4], number of images)
    base, near = [0.2, 0.0, 0.6, 1.0], [0.192, 0.0, 0.592, 1.0]  # IoU 0.96
    left, right = [0.184, 0.0, 0.584, 1.0], [0.216, 0.0, 0.616, 1.0]  # with base 0.923, 0.852
    used = np.zeros(len(labels), np.int64)
    for hub in range(len(labels)):
        excess = need[hub] - num[hub]
        if excess <= 0:
            continue
        p, q = [(j if i == hub else i) for (i, j) in pair_k if hub in (i, j)][:2]
        parts.append(([hub, p, q], [base, left, right], excess))
        used[[hub, p, q]] += excess
        pair_k[tuple(sorted((hub, p)))] -= excess
        pair_k[tuple(sorted((hub, q)))] -= excess
    for (i, j), k in pair_k.items():
        parts.append(([i, j], [base, near], k))
        used[[i, j]] += k
    for c in range(len(labels)):
        assert used[c] <= num[c]
        parts.append(([c], [base], num[c] - used[c]))
    labs = np.concatenate([np.tile(lab, n) for lab, _, n in parts]).astype(np.int32)
    boxes = np.concatenate([np.tile(np.array(bx, np.float32), (n, 1)) for _, bx, n in parts])
    per_image = np.concatenate([np.full(n, len(lab)) for lab, _, n in parts])
    images = np.repeat(np.arange(len(per_image)), per_image).astype(np.int32)
    return classes, boxes, labs, images, len(per_image)


def test_table2_convention_reproduces_the_seed():
    rows = _table2_rows()
    classes, boxes, labels, images, num_images = _table2_dataset(rows)
    c = len(classes)
    counts = count_confusion_pairs(boxes, labels, images, num_images, c, 0.9)
    np.testing.assert_array_equal(counts, counts.T)
    pairs = confusion_pairs(counts, source_box_counts(labels, c), min_ratio=0.1)
    got = {(classes.labels[s], classes.labels[t]): (int(sb), int(cb), float(r)) for s, t, sb, cb, r
           in zip(pairs.source, pairs.confusion, pairs.source_boxes, pairs.confusion_boxes,
                  pairs.ratio)}
    want = {(r["source"], r["confusion"]): (int(r["source_boxes"]), int(r["confusion_boxes"]),
                                            float(r["ratio"])) for r in rows}
    assert len(want) == 115 and set(got) == set(want)
    for key, (sb, cb, ratio) in want.items():
        assert got[key][:2] == (sb, cb)
        assert round(got[key][2], 4) == pytest.approx(ratio, abs=1e-9)
    assert np.all(np.diff(pairs.ratio) <= 0)
    winter = [v for k, v in got.items() if v[:2] == (40, 4)]
    assert winter and winter[0][2] == 0.1  # Winter melon -> Cucumber, the inclusive cut
