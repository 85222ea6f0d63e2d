import json

import numpy as np
import pytest

from wilddet.data import hierarchy as hmod
from wilddet.data import oid_csv
from wilddet.data.records import BoxTable, ClassList, ImageLabelTable
from wilddet.errors import InputError
from wilddet.resources import OPENIMAGES_DIR as RESOURCES

# Entity > Animal > {Mammal > {Dog, Cat}, Pet > {Dog, Cat}};  "Dog" occurs twice.
TREE = {"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "animal", "Subcategory": [
        {"LabelName": "mammal", "Subcategory": [{"LabelName": "dog"}, {"LabelName": "cat"}]},
        {"LabelName": "pet", "Subcategory": [{"LabelName": "dog"}]}]},
    {"LabelName": "car"}]}
LABELS = ["animal", "mammal", "pet", "dog", "cat", "car"]


@pytest.fixture
def classes():
    return ClassList(np.array(LABELS, dtype=object), np.array(LABELS, dtype=object))


@pytest.fixture
def h(classes):
    return hmod.parse_hierarchy(TREE, classes)


def names(codes):
    return {LABELS[c] for c in codes}


def test_ancestors_union_over_repeated_subtrees(h):
    assert names(h.ancestors[3]) == {"animal", "mammal", "pet"}  # dog, under two parents
    assert names(h.ancestors[4]) == {"animal", "mammal"}
    assert names(h.descendants[0]) == {"mammal", "pet", "dog", "cat"}
    assert len(h.ancestors[5]) == 0 and len(h.descendants[5]) == 0
    assert h.depth.tolist() == [1, 2, 2, 3, 3, 1]


def test_expand_boxes_copies_once_per_ancestor_and_never_deduplicates(h):
    # one object boxed as dog AND as mammal -> two mammal boxes, two animal boxes
    boxes = BoxTable(np.array([0, 0], np.int32), np.array([3, 1], np.int32),
                     np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.float32), np.array([True, False]),
                     np.array(["img"], dtype=object))
    out = hmod.expand_boxes(boxes, h)
    got = [LABELS[c] for c in out.label_codes]
    assert got[:4] == ["dog", "animal", "mammal", "pet"]  # original row first, then its copies
    assert sorted(got) == sorted(["dog", "animal", "mammal", "pet", "mammal", "animal"])
    assert out.is_group_of.tolist() == [True] * 4 + [False] * 2  # group-of copied to ancestors


def test_expand_image_labels_positive_up_negative_down(h):
    labels = ImageLabelTable(np.array([0, 1], np.int32), np.array([4, 1], np.int32),
                             np.array([1, 0], np.int8), np.array(["a", "b"], dtype=object))
    out = hmod.expand_image_labels(labels, h)
    rows = {(int(i), LABELS[c], int(v)) for i, c, v in
            zip(out.image_codes, out.label_codes, out.confidence)}
    assert rows == {(0, "cat", 1), (0, "mammal", 1), (0, "animal", 1),
                    (1, "mammal", 0), (1, "dog", 0), (1, "cat", 0)}
    assert len(out) == 6


def test_real_open_images_hierarchy():
    classes = oid_csv.read_classes(RESOURCES / "class-descriptions-boxable.csv")
    h = hmod.read_hierarchy(RESOURCES / "bbox_labels_600_hierarchy.json", classes)
    by_name = {n: i for i, n in enumerate(classes.names)}
    assert h.depth.max() == 5 and h.missing == ()
    ladybug = by_name["Ladybug"]
    assert {classes.names[a] for a in h.ancestors[ladybug]} == {
        "Beetle", "Insect", "Invertebrate", "Animal"}
    assert h.depth[ladybug] == 5
    # ancestor/descendant relations are each other's transpose
    m = h.ancestor_matrix()
    for c in range(len(classes)):
        assert set(np.flatnonzero(m[:, c])) == set(h.descendants[c].tolist())


def test_malformed_json_names_line(write, classes):
    path = write("h.json", '{"LabelName": "/m/0bl9f",\n "Subcategory": [\n  {"LabelName": }\n]}')
    with pytest.raises(InputError) as err:
        hmod.read_hierarchy(path, classes)
    assert err.value.line == 3 and "malformed JSON" in str(err.value)
    bad = write("h2.json", json.dumps({"LabelName": "/m/0bl9f", "Subcategory": [{"x": 1}]}))
    with pytest.raises(InputError) as err:
        hmod.read_hierarchy(bad, classes)
    assert err.value.field == "LabelName"
