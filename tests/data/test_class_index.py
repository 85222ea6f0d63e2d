"""ClassImageIndex (the class <-> image CSRs) against a hand-worked example and brute-force sets,
raw and hierarchy-expanded."""

import numpy as np
import pytest

from wilddet.data.class_index import ClassImageIndex
from wilddet.data.hierarchy import Hierarchy, expand_boxes
from wilddet.data.records import BoxTable

# Hand example: classes A=0, B=1, C=2, D=3 (never annotated); images
#   0: {A, B} (two A boxes), 1: {B}, 2: {A, C}, 3: no boxes.   N = (2, 2, 1, 0), I = 4.
HAND_IMAGES = np.array([0, 0, 0, 1, 2, 2], dtype=np.int32)
HAND_LABELS = np.array([0, 0, 1, 1, 2, 0], dtype=np.int32)


def test_hand_index_csr():
    idx = ClassImageIndex.from_codes(HAND_IMAGES, HAND_LABELS, num_images=4, num_classes=4)
    assert idx.images_per_class.tolist() == [2, 2, 1, 0]
    assert idx.classes_per_image.tolist() == [2, 1, 2, 0]
    assert idx.image_classes.tolist() == [0, 1, 1, 0, 2]
    assert idx.class_images.tolist() == [0, 2, 0, 1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_index_matches_brute_force_sets(seed, random_codes):
    images, labels = random_codes(seed)
    idx = ClassImageIndex.from_codes(images, labels, 60, 7)
    for k in range(60):
        want = sorted({int(c) for i, c in zip(images, labels) if i == k})
        got = idx.image_classes[idx.image_offsets[k]:idx.image_offsets[k + 1]].tolist()
        assert got == want
    for c in range(7):
        want = sorted({int(i) for i, lab in zip(images, labels) if lab == c})
        got = idx.class_images[idx.class_offsets[c]:idx.class_offsets[c + 1]].tolist()
        assert got == want


def test_hierarchy_expanded_index_equals_expand_boxes(random_codes):
    # 0 <- 1 <- 2 (2's ancestors are 1 and 0), 3 has ancestor 0, 4 unrelated
    anc = tuple(np.array(a, np.int32) for a in ([], [0], [0, 1], [0], []))
    desc = tuple(np.array(d, np.int32) for d in ([1, 2, 3], [2], [], [], []))
    tree = Hierarchy(anc, desc, np.array([1, 2, 3, 2, 1], np.int32), ())
    images, labels = random_codes(3, num_images=30, num_classes=5, num_boxes=80)
    table = BoxTable(images, labels, np.zeros((80, 4), np.float32), np.zeros(80, bool),
                     np.array([f"i{k}" for k in range(30)], dtype=object))
    expanded = expand_boxes(table, tree)
    want = ClassImageIndex.from_codes(expanded.image_codes, expanded.label_codes, 30, 5)
    got = ClassImageIndex.from_codes(images, labels, 30, 5, hierarchy=tree)
    for name in ("image_offsets", "image_classes", "class_offsets", "class_images"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    raw = ClassImageIndex.from_codes(images, labels, 30, 5)
    assert got.images_per_class[0] > raw.images_per_class[0]


def test_bad_codes_raise():
    with pytest.raises(ValueError, match="image codes"):
        ClassImageIndex.from_codes(np.array([5]), np.array([0]), 4, 2)
    with pytest.raises(ValueError, match="label codes"):
        ClassImageIndex.from_codes(np.array([0]), np.array([2]), 4, 2)
