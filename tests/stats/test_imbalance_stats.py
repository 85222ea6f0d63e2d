"""Per-class counts (raw and hierarchy-expanded), Gini, imbalance and multi-label summaries."""

import numpy as np
import pytest

from wilddet.data.hierarchy import expand_boxes, parse_hierarchy
from wilddet.data.records import BoxTable, ClassList
from wilddet.stats.imbalance import (
    class_counts,
    gini,
    image_label_counts,
    imbalance_summary,
    multilabel_summary,
)

# Entity > Animal(0) > Dog(1) > Puppy(2); Animal > Cat(3); Toy(4) under Entity and under Dog too
# (a class with two parents); Rock(5) not in the hierarchy.
TREE = {"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "animal", "Subcategory": [
        {"LabelName": "dog", "Subcategory": [{"LabelName": "puppy"}, {"LabelName": "toy"}]},
        {"LabelName": "cat"}]},
    {"LabelName": "toy"}]}
CLASSES = ClassList(np.array(["animal", "dog", "puppy", "cat", "toy", "rock"], object),
                    np.array(["Animal", "Dog", "Puppy", "Cat", "Toy", "Rock"], object))


@pytest.fixture
def hierarchy():
    return parse_hierarchy(TREE, CLASSES)


def _random_table(seed, num_images=40, n=300, num_classes=6):
    rng = np.random.default_rng(seed)
    return BoxTable(rng.integers(0, num_images, n).astype(np.int32),
                    rng.integers(0, num_classes, n).astype(np.int32),
                    rng.random((n, 4)).astype(np.float32), rng.random(n) < 0.2,
                    np.array([f"img{i}" for i in range(num_images)], object))


def _naive_counts(table, num_classes):
    boxes = np.zeros(num_classes, int)
    group = np.zeros(num_classes, int)
    images = [set() for _ in range(num_classes)]
    for img, lab, g in zip(table.image_codes, table.label_codes, table.is_group_of):
        boxes[lab] += 1
        group[lab] += int(g)
        images[lab].add(int(img))
    return boxes, np.array([len(s) for s in images]), group


@pytest.mark.parametrize("seed", [0, 1])
def test_raw_counts_match_naive_loop(seed):
    t = _random_table(seed)
    got = class_counts(t.label_codes, t.image_codes, t.is_group_of, 6, t.num_images)
    boxes, images, group = _naive_counts(t, 6)
    np.testing.assert_array_equal(got.boxes, boxes)
    np.testing.assert_array_equal(got.images, images)
    np.testing.assert_array_equal(got.group_of_boxes, group)


@pytest.mark.parametrize("seed", [0, 1])
def test_expanded_counts_match_expand_boxes(seed, hierarchy):
    t = _random_table(seed)
    got = class_counts(t.label_codes, t.image_codes, t.is_group_of, 6, t.num_images, hierarchy)
    boxes, images, group = _naive_counts(expand_boxes(t, hierarchy), 6)
    np.testing.assert_array_equal(got.boxes, boxes)
    np.testing.assert_array_equal(got.images, images)
    np.testing.assert_array_equal(got.group_of_boxes, group)


def test_expanded_counts_hand_worked(hierarchy):
    # image 0: puppy, toy; image 1: cat, cat. Puppy -> dog, animal; toy -> dog, animal (via dog).
    t = BoxTable(np.array([0, 0, 1, 1], np.int32), np.array([2, 4, 3, 3], np.int32),
                 np.zeros((4, 4), np.float32), np.zeros(4, bool), np.array(["a", "b"], object))
    got = class_counts(t.label_codes, t.image_codes, t.is_group_of, 6, 2, hierarchy)
    #                        animal dog puppy cat toy rock
    np.testing.assert_array_equal(got.boxes, [4, 2, 1, 2, 1, 0])
    np.testing.assert_array_equal(got.images, [2, 1, 1, 1, 1, 0])


def test_gini_hand_worked():
    assert gini([5, 5, 5, 5]) == 0.0
    assert gini([0, 0, 0, 1]) == pytest.approx(0.75)  # 2*4/(4*1) - 5/4
    assert gini([1, 3]) == pytest.approx(0.25)  # 2*(1+6)/(2*4) - 3/2
    assert gini([0, 0]) == 0.0 and gini([]) == 0.0


def test_imbalance_summary():
    s = imbalance_summary(np.array([10, 0, 1000, 10, 3]), k=2)
    assert list(s.head) == [2, 0]  # ties (10, 10) by class code
    assert list(s.tail) == [4, 0]  # fewest boxes among classes that have any
    assert s.imbalance_ratio == pytest.approx(1000 / 3)
    assert s.num_empty == 1 and s.num_boxes == 1023 and s.median_boxes == 10
    assert s.gini == pytest.approx(gini([10, 0, 1000, 10, 3]))
    assert np.isnan(imbalance_summary(np.zeros(3, int)).imbalance_ratio)


def test_multilabel_summary(hierarchy):
    boxes = np.array([5, 4, 3, 2, 1, 7])  # animal dog puppy cat toy rock
    s = multilabel_summary(boxes, hierarchy, k=3)
    # ancestors: animal {}, dog {animal}, puppy {dog, animal}, cat {animal}, toy {dog, animal}
    assert s.boxes_with_ancestors == 4 + 3 + 2 + 1
    assert s.added_boxes == 4 * 1 + 3 * 2 + 2 * 1 + 1 * 2
    np.testing.assert_array_equal(s.labels_per_box, [0, 5 + 7, 4 + 2, 3 + 1])
    assert s.classes_with_ancestors == 4
    assert list(s.deepest) == [2, 4, 1]  # 2 ancestors (puppy has more boxes than toy), then dog
    assert [list(c) for c in s.chains] == [[0, 1, 2], [0, 1, 4], [0, 1]]


def test_image_label_counts():
    pos, neg = image_label_counts(np.array([0, 0, 2, 1]), np.array([1, 0, 1, 1], np.int8), 3)
    np.testing.assert_array_equal(pos, [1, 1, 1])
    np.testing.assert_array_equal(neg, [1, 0, 0])
