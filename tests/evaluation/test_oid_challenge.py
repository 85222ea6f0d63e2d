"""The challenge metric on the TF OD API's own test fixtures and on hand-worked cases, one per
rule of metric spec §§3-7. Coordinates in the cases are dyadic so that thresholds hit exactly."""

import math

import numpy as np
import pytest

from wilddet.data import hierarchy as hmod
from wilddet.data.records import BoxTable, ClassList, ImageLabelTable
from wilddet.evaluation.oid_challenge import ChallengeSettings, evaluate_challenge

UNIT = (0.0, 0.0, 1.0, 1.0)


def gt_table(rows, num_images):
    """rows: (image, class, (x0, y0, x1, y1), is_group_of)."""
    ids = np.array([f"img{i}" for i in range(num_images)], dtype=object)
    if not rows:
        return BoxTable(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros((0, 4), np.float32),
                        np.zeros(0, bool), ids)
    img, cls, box, grp = zip(*rows)
    return BoxTable(np.array(img, np.int32), np.array(cls, np.int32),
                    np.array(box, np.float32).reshape(-1, 4), np.array(grp, bool), ids)


def det_table(rows, num_images):
    """rows: (image, class, score, (x0, y0, x1, y1))."""
    ids = np.array([f"img{i}" for i in range(num_images)], dtype=object)
    if not rows:
        return BoxTable(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros((0, 4), np.float32),
                        np.zeros(0, bool), ids, np.zeros(0, np.float32))
    img, cls, score, box = zip(*rows)
    return BoxTable(np.array(img, np.int32), np.array(cls, np.int32),
                    np.array(box, np.float32).reshape(-1, 4), np.zeros(len(img), bool), ids,
                    np.array(score, np.float32))


def label_table(rows, num_images):
    """rows: (image, class, confidence)."""
    ids = np.array([f"img{i}" for i in range(num_images)], dtype=object)
    if not rows:
        return ImageLabelTable(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8),
                               ids)
    img, cls, conf = zip(*rows)
    return ImageLabelTable(np.array(img, np.int32), np.array(cls, np.int32),
                           np.array(conf, np.int8), ids)


def run(gt, dets, labels=(), num_classes=1, num_images=None, **settings):
    n = num_images or 1 + max([r[0] for r in list(gt) + list(dets) + list(labels)] + [0])
    return evaluate_challenge(gt_table(gt, n), label_table(labels, n), det_table(dets, n),
                              num_classes, ChallengeSettings(**settings))


# ---------------------------------------------------------------------------------------------
# TF OD API unit-test fixtures (object_detection_evaluation_test.py). Boxes there are
# [ymin, xmin, ymax, xmax] in pixels; all of them are squares so the order does not matter,
# and the metric is scale invariant.

def _sq(a, b):
    return (a, a, b, b)


TF_GT = [  # image, class (0 cat, 1 dog, 2 elephant), box, group-of (Challenge test)
    (0, 0, _sq(0, 1), False), (0, 2, _sq(0, 2), False), (0, 0, _sq(0, 3), True),
    (1, 0, _sq(10, 11), False), (1, 0, _sq(500, 510), False), (1, 2, _sq(10, 12), True),
    (2, 1, _sq(0, 1), False)]


def test_tf_challenge_evaluator_fixture_group_of_weight_half():
    # OpenImagesDetectionChallengeEvaluatorTest: img1 has verified labels {cat, dog, elephant}
    dets = [(0, 1, 0.7, _sq(10, 11)), (0, 1, 0.8, _sq(100, 120)),
            (1, 0, 0.7, _sq(10, 11)), (1, 0, 0.8, _sq(100, 120)), (1, 1, 0.5, _sq(100, 220)),
            (1, 2, 0.9, _sq(10, 11)),
            (2, 1, 0.5, _sq(0, 1))]
    labels = [(0, 0, 1), (0, 1, 1), (0, 2, 1)]
    r = run(TF_GT, dets, labels, num_classes=3, group_of_weight=0.5)
    cat, dog, elephant = r.ap
    assert dog == pytest.approx(1 / 3, abs=1e-12)
    assert elephant == pytest.approx(1 / 3, abs=1e-12)
    assert cat == pytest.approx(1 / 7, abs=1e-12)
    assert r.mean_ap == pytest.approx(0.269841269, abs=1e-9)
    assert r.num_gt.tolist() == [3.5, 1.0, 1.5]
    # dog on img2 is not verified there (img2 has no labels and no dog box): dropped
    assert r.num_detections.tolist() == [2, 3, 1]


def test_tf_open_images_v2_fixture_through_group_of_weight_zero():
    # OpenImagesV2EvaluationTest: the V2 evaluator has no verified-label filter, but every
    # detection's class is a box class of its image, so the challenge evaluator with
    # group_of_weight=0 computes the same thing: cat 1/6, dog 0, elephant 0, mAP 1/18.
    gt = [(0, 0, _sq(0, 1), False), (0, 2, _sq(0, 2), False), (0, 0, _sq(0, 3), False),
          (1, 0, _sq(10, 11), False), (1, 0, _sq(500, 510), True), (1, 2, _sq(10, 12), False),
          (2, 1, _sq(0, 1), False)]
    dets = [(1, 0, 0.7, _sq(10, 11)), (1, 0, 0.8, _sq(100, 120)), (1, 2, 0.9, _sq(100, 220))]
    r = run(gt, dets, num_classes=3, group_of_weight=0.0)
    assert r.ap.tolist() == pytest.approx([1 / 6, 0.0, 0.0], abs=1e-12)
    assert r.mean_ap == pytest.approx(1 / 18, abs=1e-12)
    assert r.num_gt.tolist() == [3.0, 1.0, 2.0]


# ---------------------------------------------------------------------------------------------
# §4.1-2 verified labels, negative labels, label-only images, images without ground truth

def test_unverified_class_detections_are_ignored_not_false_positives():
    gt = [(0, 0, UNIT, False)]
    dets = [(0, 0, 0.5, UNIT), (0, 1, 0.9, UNIT)]  # class 1 never verified on img0
    r = run(gt, dets, num_classes=2)
    assert r.ap[0] == 1.0 and math.isnan(r.ap[1])
    assert r.num_detections.tolist() == [1, 0]


def test_negative_image_label_verifies_the_class_so_detections_are_false_positives():
    gt = [(0, 0, UNIT, False)]
    dets = [(0, 0, 0.5, UNIT), (0, 1, 0.9, UNIT), (1, 0, 0.9, UNIT)]
    # img0: class 1 verified absent; img1: label-only image with class 0 verified absent
    r = run(gt, dets, labels=[(0, 1, 0), (1, 0, 0)], num_classes=2)
    assert r.num_detections.tolist() == [2, 1]
    assert r.ap[0] == pytest.approx(0.5)  # FP at 0.9 (label-only img1) ranked before the TP
    assert math.isnan(r.ap[1])  # verified but no box anywhere: no ground truth -> NaN
    assert r.mean_ap == pytest.approx(0.5)  # NaN classes excluded from the mean


def test_positive_image_label_without_box_turns_detections_into_false_positives():
    r = run([(0, 0, UNIT, False)], [(0, 0, 0.4, UNIT), (1, 0, 0.6, UNIT)], labels=[(1, 0, 1)])
    assert r.ap[0] == pytest.approx(0.5)


def test_images_absent_from_ground_truth_drop_their_detections():
    # img1 appears in neither the boxes nor the labels: its (higher-scored) detection is dropped
    r = run([(0, 0, UNIT, False)], [(0, 0, 0.4, UNIT), (1, 0, 0.9, UNIT)], num_images=2)
    assert r.ap[0] == 1.0 and r.num_detections[0] == 1


# ---------------------------------------------------------------------------------------------
# §4.3 invalid detections and the score floor

def test_invalid_detections_are_dropped_not_false_positives():
    dets = [(0, 0, 0.9, (0.5, 0.0, 0.5, 1.0)),   # xmin == xmax
            (0, 0, 0.8, (0.0, 0.75, 1.0, 0.25)),  # ymin > ymax
            (0, 0, 0.5, UNIT)]
    r = run([(0, 0, UNIT, False)], dets)
    assert r.ap[0] == 1.0 and r.num_detections[0] == 1


def test_scores_at_or_below_minus_ten_are_dropped():
    gt = [(0, 0, UNIT, False), (0, 0, (0.0, 0.0, 0.5, 0.5), False)]
    dets = [(0, 0, -10.0, UNIT), (0, 0, -9.5, (0.0, 0.0, 0.5, 0.5)),
            (0, 0, -11.0, (0.5, 0.5, 1.0, 1.0))]
    r = run(gt, dets)
    assert r.num_detections[0] == 1 and r.ap[0] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# §4.4 stage 1: Pascal rule, no fall-back, inclusive threshold, duplicates

def test_iou_threshold_is_inclusive():
    half = (0.0, 0.0, 0.5, 1.0)  # IoU with the unit box = 0.5 exactly
    assert run([(0, 0, UNIT, False)], [(0, 0, 0.5, half)]).ap[0] == 1.0
    assert run([(0, 0, UNIT, False)], [(0, 0, 0.5, half)], iou_threshold=0.5 + 1e-9).ap[0] == 0.0


def test_duplicate_detection_on_a_taken_box_is_a_false_positive():
    r = run([(0, 0, UNIT, False)], [(0, 0, 0.9, UNIT), (0, 0, 0.8, UNIT)])
    assert r.ap[0] == 1.0 and r.num_tp[0] == 1.0  # TP then FP: precision 1 at recall 1
    r = run([(0, 0, UNIT, False)], [(0, 0, 0.8, UNIT), (0, 0, 0.9, (0.0, 0.0, 0.25, 0.25))])
    assert r.ap[0] == pytest.approx(0.5)


def test_no_fall_back_to_the_second_best_box():
    a = (0.0, 0.0, 1.0, 1.0)
    b = (0.125, 0.0, 1.0, 1.0)  # IoU(a, b) = 0.875
    d2 = (0.0625, 0.0, 1.0, 1.0)  # IoU with a 0.9375 (best), with b 0.9333: both >= 0.5
    r = run([(0, 0, a, False), (0, 0, b, False)], [(0, 0, 0.9, a), (0, 0, 0.8, d2)])
    # d2's best box a is taken by the first detection: d2 is a FP although b is free
    assert r.num_tp[0] == 1.0
    assert r.ap[0] == pytest.approx(0.5)


def test_first_index_wins_on_equal_iou_even_when_it_is_taken():
    a = (0.0, 0.0, 1.0, 1.0)
    # two identical GT boxes: argmax picks the first for both detections; the second detection
    # finds it taken and is a FP (no fall-back to the identical free box)
    r = run([(0, 0, a, False), (0, 0, a, False)], [(0, 0, 0.9, a), (0, 0, 0.8, a)])
    assert r.num_tp[0] == 1.0 and r.ap[0] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# §4.4 stage 2 and §7: group-of boxes

def test_group_of_box_yields_one_true_positive_with_the_max_score():
    crowd = UNIT
    dets = [(0, 0, 0.3, (0.0, 0.0, 0.25, 0.25)), (0, 0, 0.7, (0.5, 0.5, 0.75, 0.75)),
            (0, 0, 0.5, (0.25, 0.25, 0.5, 0.5)), (0, 0, 0.6, (2.0, 2.0, 3.0, 3.0))]  # last: FP
    gt = [(0, 0, crowd, True), (0, 0, (4.0, 4.0, 5.0, 5.0), True)]  # second group-of never hit
    r = run(gt, dets)
    # entries: group TP at 0.7, FP at 0.6; num_gt = 2 -> AP = 1 * 1/2
    assert r.ap[0] == pytest.approx(0.5)
    assert r.num_gt[0] == 2.0 and r.num_tp[0] == 1.0 and r.num_detections[0] == 4


def test_group_of_weight_scales_num_gt_and_the_true_positive():
    dets = [(0, 0, 0.9, (0.0, 0.0, 0.5, 0.5)), (0, 0, 0.8, (2.0, 2.0, 3.0, 3.0))]
    gt = [(0, 0, UNIT, True), (0, 0, (2.0, 2.0, 3.0, 3.0), False)]
    r = run(gt, dets, group_of_weight=0.5)
    # entries (0.9, w=.5), (0.8, TP): precision [1, 1], recall [1/3, 1]
    assert r.num_gt[0] == 1.5 and r.ap[0] == pytest.approx(1.0)
    r0 = run(gt, dets, group_of_weight=0.0)  # V2: group-of ignored entirely
    assert r0.num_gt[0] == 1.0 and r0.ap[0] == 1.0 and r0.num_tp[0] == 1.0


def test_ioa_threshold_is_inclusive_and_uses_the_detection_area():
    d = (0.5, 0.0, 1.5, 1.0)  # half of its area inside the unit group-of box: IoA 0.5, IoU 1/3
    assert run([(0, 0, UNIT, True)], [(0, 0, 0.5, d)]).ap[0] == 1.0
    assert run([(0, 0, UNIT, True)], [(0, 0, 0.5, d)], ioa_threshold=0.51).ap[0] == 0.0
    # a small detection fully inside a big group-of box: IoU tiny, IoA 1
    small = (0.0, 0.0, 0.125, 0.125)
    assert run([(0, 0, UNIT, True)], [(0, 0, 0.5, small)]).ap[0] == 1.0


def test_ioa_is_not_summed_over_group_of_boxes():
    left, right = (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)
    d = (0.25, 0.0, 0.875, 1.0)  # IoA 0.4 with left, 0.6 with right -> right only
    r = run([(0, 0, left, True), (0, 0, right, True)], [(0, 0, 0.5, d)])
    assert r.num_tp[0] == 1.0 and r.ap[0] == pytest.approx(0.5)
    d = (0.25, 0.0, 0.75, 1.0)  # IoA 0.5 with both: first index wins, still one TP
    r = run([(0, 0, left, True), (0, 0, right, True)], [(0, 0, 0.5, d)])
    assert r.num_tp[0] == 1.0
    d = (0.0, 0.0, 1.0, 1.0)  # IoA 0.5 with each box; the sum 1.0 is never used
    r = run([(0, 0, left, True), (0, 0, right, True)], [(0, 0, 0.5, d)], ioa_threshold=0.6)
    assert r.num_tp[0] == 0.0 and r.ap[0] == 0.0


def test_stage_one_has_priority_over_group_of_boxes():
    crowd, person = UNIT, (0.0, 0.0, 0.5, 0.5)
    gt = [(0, 0, crowd, True), (0, 0, person, False)]
    # d1 matches the plain box (TP) although it lies inside the group-of box; d2 duplicates the
    # taken plain box and is absorbed by the group-of box, whose TP takes d2's score.
    r = run(gt, [(0, 0, 0.9, person), (0, 0, 0.8, person)])
    assert r.num_tp[0] == 2.0 and r.ap[0] == 1.0
    # without the group-of box d2 would be a FP
    r = run([(0, 0, person, False)], [(0, 0, 0.9, person), (0, 0, 0.8, person)])
    assert r.num_tp[0] == 1.0


def test_group_of_hit_only_by_non_positive_scores_gives_no_true_positive():
    # the reference keeps best score 0 -> no TP entry, yet the detections are removed
    gt = [(0, 0, UNIT, True), (0, 0, (2.0, 2.0, 3.0, 3.0), False)]
    dets = [(0, 0, -0.5, (0.0, 0.0, 0.5, 0.5)), (0, 0, 0.0, (0.0, 0.0, 0.5, 0.5)),
            (0, 0, 0.1, (2.0, 2.0, 3.0, 3.0))]
    r = run(gt, dets)
    assert r.num_tp[0] == 1.0 and r.ap[0] == pytest.approx(0.5)
    assert r.num_detections[0] == 3


def test_detections_beyond_the_per_group_cap_are_not_scored():
    dets = [(0, 0, 0.9, (2.0, 2.0, 3.0, 3.0)), (0, 0, 0.8, (2.0, 2.0, 3.0, 3.0)),
            (0, 0, 0.7, UNIT)]
    r = run([(0, 0, UNIT, False)], dets, max_detections_per_group=2)
    assert r.num_detections[0] == 2 and r.ap[0] == 0.0
    assert run([(0, 0, UNIT, False)], dets).ap[0] == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------------------------
# §5 AP, NaN and ties

def test_class_with_ground_truth_but_no_detection_has_ap_zero_and_counts_in_the_mean():
    r = run([(0, 0, UNIT, False), (0, 1, UNIT, False)], [(0, 0, 0.5, UNIT)], num_classes=3)
    assert r.ap[0] == 1.0 and r.ap[1] == 0.0 and math.isnan(r.ap[2])
    assert r.mean_ap == pytest.approx(0.5)


def test_equal_scores_keep_input_order_stably():
    far = (2.0, 2.0, 3.0, 3.0)
    # TP listed first -> ranked first among equal scores: AP 1; FP first -> AP 1/2
    assert run([(0, 0, UNIT, False)], [(0, 0, 0.5, UNIT), (0, 0, 0.5, far)]).ap[0] == 1.0
    assert run([(0, 0, UNIT, False)], [(0, 0, 0.5, far), (0, 0, 0.5, UNIT)]).ap[0] == 0.5
    # across images: image order decides
    gt = [(0, 0, UNIT, False), (1, 0, UNIT, False)]
    r = run(gt, [(1, 0, 0.5, far), (0, 0, 0.5, UNIT), (1, 0, 0.4, UNIT)])
    assert r.ap[0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_result_does_not_depend_on_row_order_when_scores_are_distinct():
    rng = np.random.default_rng(0)
    gt = [(i % 3, i % 2, (0.0, 0.0, 0.5 + 0.0625 * (i % 4), 0.75), i % 5 == 0) for i in range(12)]
    dets = [(i % 3, i % 2, float(s), (0.0, 0.0, 0.5 + 0.0625 * (i % 5), 0.75))
            for i, s in enumerate(rng.permutation(30) / 30.0)]
    a = run(gt, dets, num_classes=2)
    b = run(gt[::-1], dets[::-1], num_classes=2)
    np.testing.assert_array_equal(a.ap, b.ap)


# ---------------------------------------------------------------------------------------------
# §6 hierarchy: ground truth expanded, detections not (unless expand_detections)

# Entity > Animal > {Mammal > {Dog, Cat}, Pet > {Dog}}; Dog occurs in two subtrees.
TREE = {"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "animal", "Subcategory": [
        {"LabelName": "mammal", "Subcategory": [{"LabelName": "dog"}, {"LabelName": "cat"}]},
        {"LabelName": "pet", "Subcategory": [{"LabelName": "dog"}]}]},
    {"LabelName": "car"}]}
NAMES = ["animal", "mammal", "pet", "dog", "cat", "car"]
ANIMAL, MAMMAL, PET, DOG, CAT, CAR = range(6)


@pytest.fixture
def tree():
    classes = ClassList(np.array(NAMES, dtype=object), np.array(NAMES, dtype=object))
    return hmod.parse_hierarchy(TREE, classes)


def run_h(tree, gt, dets, labels=(), settings=None):
    n = 1 + max([r[0] for r in list(gt) + list(dets) + list(labels)] + [0])
    return evaluate_challenge(gt_table(gt, n), label_table(labels, n), det_table(dets, n),
                              len(NAMES), settings or ChallengeSettings(), hierarchy=tree)


def test_repeated_subtree_gives_each_ancestor_once(tree):
    r = run_h(tree, [(0, DOG, UNIT, False)], [(0, ANIMAL, 0.5, UNIT)])
    assert r.num_gt.tolist() == [1, 1, 1, 1, 0, 0]  # dog under mammal and pet: animal once
    assert r.ap[ANIMAL] == 1.0


def test_expanded_ground_truth_is_not_deduplicated(tree):
    # one object boxed as Dog and as Mammal -> two Mammal instances; one Mammal detection
    r = run_h(tree, [(0, DOG, UNIT, False), (0, MAMMAL, UNIT, False)], [(0, MAMMAL, 0.5, UNIT)])
    assert r.num_gt[MAMMAL] == 2.0 and r.ap[MAMMAL] == pytest.approx(0.5)


def test_detections_are_never_expanded_by_default(tree):
    gt = [(0, DOG, UNIT, False)]
    r = run_h(tree, gt, [(0, DOG, 0.5, UNIT)])
    assert r.ap[DOG] == 1.0 and r.ap[MAMMAL] == 0.0 and r.ap[ANIMAL] == 0.0
    assert np.nanmean(r.ap) == pytest.approx(0.25)
    # mmdetection-style: the Dog detection is copied to its verified ancestors
    r = run_h(tree, gt, [(0, DOG, 0.5, UNIT)], settings=ChallengeSettings(expand_detections=True))
    assert r.ap[[DOG, MAMMAL, PET, ANIMAL]].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert r.settings.mode == "expand-detections"


def test_expanded_detections_only_go_to_verified_ancestors(tree):
    # img0: cat box (verifies cat, mammal, animal); img1: mammal box. A Dog detection on img0 is
    # not verified (dog, pet never labelled there) but its Mammal/Animal copies are: FPs there;
    # the Mammal detection on img1 is copied to Animal (verified there by the expanded box).
    gt = [(0, CAT, UNIT, False), (1, MAMMAL, UNIT, False)]
    dets = [(0, DOG, 0.9, (2.0, 2.0, 3.0, 3.0)), (1, MAMMAL, 0.5, UNIT)]
    r = run_h(tree, gt, dets, settings=ChallengeSettings(expand_detections=True))
    assert r.num_detections[[DOG, PET, MAMMAL, ANIMAL]].tolist() == [0, 0, 2, 2]
    assert r.ap[MAMMAL] == pytest.approx(0.5 * 1 / 2)  # FP copy first, then a TP: p=1/2 at r=1/2
    r = run_h(tree, gt, dets)
    assert r.ap[MAMMAL] == pytest.approx(0.5)


def test_negative_parent_label_verifies_descendants(tree):
    gt = [(0, CAT, UNIT, False)]
    dets = [(0, CAT, 0.5, UNIT), (1, DOG, 0.9, UNIT)]
    labels = [(1, MAMMAL, 0)]  # img1: "no mammal" -> dog and cat verified absent there
    r = run_h(tree, gt, dets, labels)
    assert r.num_detections[DOG] == 1 and math.isnan(r.ap[DOG])
    labels = [(1, DOG, 0)]  # a negative child says nothing about its parents
    r = run_h(tree, gt, [(0, CAT, 0.5, UNIT), (1, MAMMAL, 0.9, UNIT)], labels)
    assert r.num_detections[MAMMAL] == 0
    labels = [(1, DOG, 1)]  # a positive child verifies its ancestors (as positive)
    r = run_h(tree, gt, [(0, CAT, 0.5, UNIT), (1, MAMMAL, 0.9, UNIT)], labels)
    assert r.num_detections[MAMMAL] == 1 and r.ap[MAMMAL] == 0.0  # a FP on img1


def test_expand_detections_needs_a_hierarchy():
    with pytest.raises(ValueError, match="hierarchy"):
        run([(0, 0, UNIT, False)], [(0, 0, 0.5, UNIT)], expand_detections=True)


def test_misaligned_image_vocabularies_are_rejected():
    gt = gt_table([(0, 0, UNIT, False)], 1)
    dets = det_table([(0, 0, 0.5, UNIT)], 1)
    other = BoxTable(dets.image_codes, dets.label_codes, dets.boxes_norm, dets.is_group_of,
                     np.array(["zzz"], dtype=object), dets.scores)
    with pytest.raises(ValueError, match="align_images"):
        evaluate_challenge(gt, None, other, 1)
