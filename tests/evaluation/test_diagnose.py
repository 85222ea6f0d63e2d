"""``wilddet.evaluation.diagnose`` (error-analysis spec): one hand-made case per rule, the rule
order and the ties; ΔmAP against re-running the evaluator; TP/FP counts against the evaluator and
the rules against a plain-Python loop on random cases.

Hand-made classes: 0 Mammal > {1 Dog, 2 Cat, 3 Lynx}, 4 Car, 5 Tree; confusion pair Cat-Lynx.
Boxes are dyadic so the IoUs are exact."""

import math

import numpy as np
import pytest
from test_oid_challenge import det_table, gt_table, label_table
from test_oid_challenge_bruteforce import TREE, random_case, to_tables

from wilddet.data import hierarchy as hmod
from wilddet.data.records import ClassList
from wilddet.evaluation.diagnose import ERROR_TYPES, diagnose
from wilddet.evaluation.oid_challenge import ChallengeSettings, evaluate_challenge

MAMMAL, DOG, CAT, LYNX, CAR, TREE_CLS = range(6)
NAMES = ["Mammal", "Dog", "Cat", "Lynx", "Car", "Tree"]
CLASSES = ClassList(np.array([f"/m/{n.lower()}" for n in NAMES], dtype=object),
                    np.array(NAMES, dtype=object))
HIER = hmod.parse_hierarchy({"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "/m/mammal", "Subcategory": [{"LabelName": "/m/dog"}, {"LabelName": "/m/cat"},
                                               {"LabelName": "/m/lynx"}]},
    {"LabelName": "/m/car"}, {"LabelName": "/m/tree"}]}, CLASSES)
PAIRS = np.array([[CAT, LYNX]])
A = (0.0, 0.0, 0.5, 0.5)
A_QUARTER = (0.0, 0.0, 0.5, 0.125)      # IoU 0.25 with A
FAR = (0.75, 0.75, 1.0, 1.0)            # IoU 0 with A
A_SLIVER = (0.375, 0.375, 0.75, 0.75)   # IoU 1/24 with A (> 0, < 0.1)


def errors_of(gt, dets, labels=(), hierarchy=HIER, pairs=PAIRS, **settings):
    """[(detection row, error, other label name or '', iou)] sorted by row."""
    n = 1 + max([r[0] for r in list(gt) + list(dets) + list(labels)] + [0])
    d = diagnose(gt_table(gt, n), label_table(labels, n), det_table(dets, n), len(NAMES),
                 hierarchy=hierarchy, pairs=pairs, settings=ChallengeSettings(**settings))
    out = [(int(r), ERROR_TYPES[e], NAMES[o] if o >= 0 else "", float(i))
           for r, e, o, i in zip(d.fp_rows, d.error, d.other_label, d.iou)]
    return sorted(out), d


def test_rule_1_duplicate_and_score_ties_in_input_order():
    got, _ = errors_of([(0, DOG, A, False)], [(0, DOG, 0.9, A), (0, DOG, 0.9, A)])
    assert got == [(1, "duplicate", "Dog", 1.0)]  # equal scores: the first row is the TP


def test_rule_2_localization():
    got, _ = errors_of([(0, DOG, A, False)], [(0, DOG, 0.9, A_QUARTER)])
    assert got == [(0, "localization", "Dog", 0.25)]


def test_rule_3_hierarchy_child_on_a_parent_box_needs_the_hierarchy():
    gt, labels, dets = [(0, MAMMAL, A, False)], [(0, DOG, 0)], [(0, DOG, 0.9, A)]
    assert errors_of(gt, dets, labels)[0] == [(0, "hierarchy", "Mammal", 1.0)]
    assert errors_of(gt, dets, labels, hierarchy=None)[0] == [(0, "class", "Mammal", 1.0)]


def test_rule_4_confusion_either_direction_and_only_with_pairs():
    gt, labels, dets = [(0, LYNX, A, False)], [(0, CAT, 1)], [(0, CAT, 0.9, A)]
    assert errors_of(gt, dets, labels)[0] == [(0, "confusion", "Lynx", 1.0)]
    assert errors_of(gt, dets, labels, pairs=np.array([[LYNX, CAT]]))[0] == \
        [(0, "confusion", "Lynx", 1.0)]
    assert errors_of(gt, dets, labels, pairs=None)[0] == [(0, "class", "Lynx", 1.0)]
    # a pair does not extend to descendants: Mammal-Lynx pair, Cat detection on a Lynx box
    assert errors_of(gt, dets, labels, pairs=np.array([[MAMMAL, LYNX]]), hierarchy=None)[0] == \
        [(0, "class", "Lynx", 1.0)]


def test_rule_5_class():
    got, _ = errors_of([(0, CAR, A, False)], [(0, DOG, 0.9, A)], [(0, DOG, 1)])
    assert got == [(0, "class", "Car", 1.0)]


def test_rule_6_background_with_and_without_any_overlap_and_label_only_image():
    gt = [(0, CAR, A, False)]
    labels = [(0, DOG, 1), (1, DOG, 0)]
    dets = [(0, DOG, 0.9, FAR), (0, DOG, 0.8, A_SLIVER), (1, DOG, 0.7, A)]
    got, _ = errors_of(gt, dets, labels)
    assert got[0] == (0, "background", "", 0.0)
    assert got[1][:3] == (1, "background", "Car") and got[1][3] == pytest.approx(1 / 24, rel=1e-15)
    assert got[2] == (2, "background", "", 0.0)  # image 1 has verified labels and no box


def test_rule_7_other():
    got, _ = errors_of([(0, CAR, A, False)], [(0, DOG, 0.9, A_QUARTER)], [(0, DOG, 1)])
    assert got == [(0, "other", "Car", 0.25)]


def test_rule_order():
    # 1 before 3: a duplicate on a Dog box that is also annotated Mammal
    got, _ = errors_of([(0, DOG, A, False), (0, MAMMAL, A, False)],
                       [(0, DOG, 0.9, A), (0, DOG, 0.8, A)])
    assert got == [(1, "duplicate", "Dog", 1.0)]
    # 2 before 5: IoU 0.25 with a Dog box, 1.0 with a Car box
    got, _ = errors_of([(0, DOG, A_QUARTER, False), (0, CAR, A, False)], [(0, DOG, 0.9, A)])
    assert got == [(0, "localization", "Dog", 0.25)]
    # 3 before 4: a Cat on a box annotated Mammal and Lynx
    got, _ = errors_of([(0, LYNX, A, False), (0, MAMMAL, A, False)], [(0, CAT, 0.9, A)],
                       [(0, CAT, 1)])
    assert got == [(0, "hierarchy", "Mammal", 1.0)]
    # 4 before 5, even when the other class overlaps more (other_label: the rule's best box)
    got, _ = errors_of([(0, CAR, A, False), (0, LYNX, (0.0, 0.0, 0.5, 0.375), False)],
                       [(0, CAT, 0.9, A)], [(0, CAT, 1)])
    assert got == [(0, "confusion", "Lynx", 0.75)]


def test_ties_go_to_the_first_box_in_the_file():
    dets, labels = [(0, DOG, 0.9, A)], [(0, DOG, 1)]
    got, _ = errors_of([(0, TREE_CLS, A, False), (0, CAR, A, False)], dets, labels)
    assert got == [(0, "class", "Tree", 1.0)]
    got, _ = errors_of([(0, CAR, A, False), (0, TREE_CLS, A, False)], dets, labels)
    assert got == [(0, "class", "Car", 1.0)]


def test_ignored_detections_are_never_listed_and_fp_of_class_without_gt_counts():
    gt = [(0, DOG, A, False), (0, DOG, (0.5, 0.5, 1.0, 1.0), True)]
    labels = [(0, CAR, 0)]  # Car verified, no Car box anywhere: its AP is null
    dets = [(0, TREE_CLS, 0.9, A),                  # class not verified on the image
            (0, DOG, 0.9, (0.5, 0.5, 0.5, 0.75)),   # zero-area box
            (1, DOG, 0.9, A),                       # image in neither ground-truth file
            (0, DOG, 0.8, (0.625, 0.625, 0.75, 0.75)),  # absorbed by the group-of box
            (0, CAR, 0.7, FAR)]
    got, d = errors_of(gt, dets, labels)
    assert got == [(4, "other", "Dog", 0.25)]  # IoU 0.25 with the group-of Dog box
    assert math.isnan(d.ap[CAR]) and d.fp_counts[CAR].sum() == 1


def test_missed_ground_truth_adds_up_to_num_gt():
    gt = [(0, DOG, A, False), (0, DOG, FAR, False), (0, DOG, (0.5, 0.0, 1.0, 0.5), True),
          (1, DOG, A, True)]
    dets = [(0, DOG, 0.9, A), (1, DOG, 0.5, (0.0, 0.0, 0.25, 0.25))]
    _, d = errors_of(gt, dets)
    assert d.missed_gt[DOG] == 1 and d.missed_group_of[DOG] == 1
    assert d.tp_counts[DOG] == 2
    np.testing.assert_array_equal(d.match.num_gt, d.tp_counts + d.missed_gt + d.missed_group_of)


def test_pr_points_one_per_entry_before_the_envelope():
    gt = [(0, DOG, A, False), (0, DOG, FAR, False)]
    dets = [(0, DOG, 0.9, A_QUARTER), (0, DOG, 0.8, A), (0, CAR, 0.5, A)]
    _, d = errors_of(gt, dets, [(0, CAR, 1)])
    lo, hi = d.pr_offsets[DOG], d.pr_offsets[DOG + 1]
    np.testing.assert_allclose(d.pr_precision[lo:hi], [0.0, 0.5])
    np.testing.assert_allclose(d.pr_recall[lo:hi], [0.0, 0.5])
    assert d.pr_offsets[CAR + 1] == d.pr_offsets[CAR]  # no GT: no PR rows


# ---------------------------------------------------------------------------------------------
# random cases: the evaluator as the reference

def _slow_error(det, expanded, annotated, related, pairs):
    """The seven rules with plain Python (module doc of diagnose)."""
    img, cls, box = det

    def iou(a, b):
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        da, db = (a[3] - a[1]) * (a[2] - a[0]), (b[3] - b[1]) * (b[2] - b[0])
        return h * w / (da + db - h * w)

    own = [iou(box, b) for i, c, b, _ in expanded if i == img and c == cls]
    if own and max(own) >= 0.1:
        return ("duplicate" if max(own) >= 0.5 else "localization"), cls, max(own)
    ann = [(c, iou(box, b)) for i, c, b, _ in annotated if i == img]
    rules = [("hierarchy", lambda c: c in related[cls]),
             ("confusion", lambda c: (cls, c) in pairs or (c, cls) in pairs),
             ("class", lambda c: c != cls)]
    for name, applies in rules:
        cand = [(v, -k, c) for k, (c, v) in enumerate(ann) if applies(c) and v >= 0.5]
        if cand:
            v, _, c = max(cand)
            return name, c, v
    best = max([(v, -k, c) for k, (c, v) in enumerate(ann)], default=(0.0, 0, -1))
    kind = "background" if best[0] < 0.1 else "other"
    return (kind, best[2], best[0]) if best[0] > 0 else (kind, -1, 0.0)


@pytest.mark.parametrize("seed", range(16))
def test_random_cases_agree_with_the_evaluator(seed):
    num_images, num_classes = 14, 5
    classes = ClassList(np.array([f"c{i}" for i in range(5)], dtype=object),
                        np.array([f"c{i}" for i in range(5)], dtype=object))
    tree = hmod.parse_hierarchy(TREE, classes) if seed % 2 else None
    pairs = np.array([[1, 2], [3, 4]])
    settings = ChallengeSettings(max_detections_per_group=2) if seed % 4 == 3 else \
        ChallengeSettings()
    gt, labels, dets = random_case(500 + seed, num_images, num_classes)
    g, lab, d = to_tables(gt, labels, dets, num_images)
    diag = diagnose(g, lab, d, num_classes, hierarchy=tree, pairs=pairs, settings=settings)
    ref = evaluate_challenge(g, lab, d, num_classes, settings, hierarchy=tree)
    np.testing.assert_array_equal(diag.ap, ref.ap)
    np.testing.assert_array_equal(diag.tp_counts, ref.num_tp)

    # without its false positives the evaluator keeps every TP and finds no FP (AP = recall)
    fp_count = diag.fp_counts.sum(axis=1)
    keep = np.ones(len(d), bool)
    keep[diag.fp_rows] = False
    clean = evaluate_challenge(g, lab, d.take(keep), num_classes, settings, hierarchy=tree)
    if settings.max_detections_per_group > 2:
        np.testing.assert_array_equal(clean.num_tp, ref.num_tp)
        np.testing.assert_array_equal(ref.num_detections - clean.num_detections, fp_count)
        has = ref.num_gt > 0
        np.testing.assert_allclose(clean.ap[has], clean.num_tp[has] / ref.num_gt[has],
                                   rtol=0, atol=1e-12)

    # ΔmAP: re-run the evaluator on the detections without each type's false positives
    for t in range(len(ERROR_TYPES)):
        keep = np.ones(len(d), bool)
        keep[diag.fp_rows[diag.error == t]] = False
        again = evaluate_challenge(g, lab, d.take(keep), num_classes, settings, hierarchy=tree)
        assert diag.delta_map[t] == pytest.approx(again.mean_ap - ref.mean_ap, abs=1e-12,
                                                  nan_ok=True)

    # each error type against the plain-Python rules
    expanded = [(int(i), int(c), tuple(map(float, b)), bool(x)) for i, c, b, x in zip(
        diag.match.ground_truth.image_codes, diag.match.ground_truth.label_codes,
        diag.match.ground_truth.boxes_norm, diag.match.ground_truth.is_group_of)]
    annotated = [(int(i), int(c), tuple(map(float, b)), bool(x)) for i, c, b, x in zip(
        g.image_codes, g.label_codes, g.boxes_norm, g.is_group_of)]
    related = [set() if tree is None else set(tree.ancestors[c]) | set(tree.descendants[c])
               for c in range(num_classes)]
    pair_set = {(1, 2), (3, 4)}
    for row, e, o, v in zip(diag.fp_rows, diag.error, diag.other_label, diag.iou):
        det = (int(d.image_codes[row]), int(d.label_codes[row]),
               tuple(map(float, d.boxes_norm[row])))
        name, other, value = _slow_error(det, expanded, annotated, related, pair_set)
        assert (ERROR_TYPES[e], int(o)) == (name, other)
        assert v == pytest.approx(value, rel=1e-12, abs=1e-15)
