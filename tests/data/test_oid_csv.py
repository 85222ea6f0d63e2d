import numpy as np
import pytest

from wilddet.data import oid_csv
from wilddet.errors import InputError

CLASSES = "/m/a,Apple\n/m/b,Ball, red\n/m/c,Cat\n"
FULL = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,"
        "IsGroupOf,IsDepiction,IsInside\n")
SHORT = "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"


@pytest.fixture
def classes(write):
    return oid_csv.read_classes(write("classes.csv", CLASSES))


def test_classes_keep_order_and_commas_in_names(classes):
    assert list(classes.labels) == ["/m/a", "/m/b", "/m/c"]
    assert classes.names[1] == "Ball, red"
    assert classes.code("/m/c") == 2


def test_full_and_short_box_formats_read_the_same(write, classes):
    full = write("full.csv", FULL + "0002,xclick,/m/b,1,0.1,0.5,0.2,0.6,0,0,1,0,0\n"
                 "0001,xclick,/m/a,1,0.0,1.0,0.25,0.75,1,0,0,0,0\n")
    short = write("short.csv", SHORT + "0002,/m/b,0.1,0.5,0.2,0.6,1\n"
                  "0001,/m/a,0.0,1.0,0.25,0.75,0\n")
    a, b = oid_csv.read_boxes(full, classes), oid_csv.read_boxes(short, classes)
    for t in (a, b):
        # rows keep file order; ImageIDs stay strings (leading zeros kept)
        assert list(t.image_ids[t.image_codes]) == ["0002", "0001"]
        assert t.label_codes.tolist() == [1, 0]
        assert t.boxes_norm.dtype == np.float32
        # boxes_norm is (xmin, ymin, xmax, ymax) although files store XMin,XMax,YMin,YMax
        np.testing.assert_allclose(t.boxes_norm[0], [0.1, 0.2, 0.5, 0.6], rtol=1e-6)
        assert t.is_group_of.tolist() == [True, False]


def test_group_of_minus_one_counts_as_group_of(write, classes):
    t = oid_csv.read_boxes(write("b.csv", SHORT + "x,/m/a,0.1,0.5,0.2,0.6,-1\n"), classes)
    assert t.is_group_of.tolist() == [True]


@pytest.mark.parametrize("row, line, field, words", [
    ("x,/m/a,abc,0.5,0.2,0.6,0", 3, "XMin", "'abc' is not a number"),
    ("x,/m/a,0.6,0.5,0.2,0.6,0", 3, "XMin", "> XMax"),
    ("x,/m/a,0.1,0.5,0.7,0.6,0", 3, "YMin", "> YMax"),
    ("x,/m/a,0.1,1.5,0.2,0.6,0", 3, "XMax", "not in [0, 1]"),
    ("x,/m/a,-0.1,0.5,0.2,0.6,0", 3, "XMin", "not in [0, 1]"),
    ("x,/m/zz,0.1,0.5,0.2,0.6,0", 3, "LabelName", "unknown LabelName '/m/zz'"),
    ("x,/m/a,0.1,,0.2,0.6,0", 3, "XMax", "missing value"),
])
def test_bad_box_rows_name_file_line_field(write, classes, row, line, field, words):
    path = write("bad.csv", SHORT + "ok,/m/b,0.1,0.5,0.2,0.6,0\n" + row + "\n")
    with pytest.raises(InputError) as err:
        oid_csv.read_boxes(path, classes)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), line, field)
    assert words in str(err.value)
    assert str(err.value).startswith(f"{path}:{line}: {field}: ")


def test_missing_column_is_named(write, classes):
    path = write("bad.csv", "ImageID,LabelName,XMin,XMax,YMin,IsGroupOf\nx,/m/a,0,1,0,0\n")
    with pytest.raises(InputError) as err:
        oid_csv.read_boxes(path, classes)
    assert err.value.line == 1 and err.value.field == "YMax"


def test_duplicate_class_and_missing_file(write, tmp_path):
    with pytest.raises(InputError) as err:
        oid_csv.read_classes(write("c.csv", "/m/a,A\n/m/b,B\n/m/a,A again\n"))
    assert err.value.line == 3 and err.value.field == "LabelName" and "line 1" in str(err.value)
    with pytest.raises(InputError, match="file not found"):
        oid_csv.read_classes(tmp_path / "nope.csv")


def test_image_labels_header_only_and_bad_confidence(write, classes):
    empty = oid_csv.read_image_labels(write("l.csv", "ImageID,Source,LabelName,Confidence\n"),
                                      classes)
    assert len(empty) == 0
    lab = oid_csv.read_image_labels(write("l2.csv", "ImageID,Source,LabelName,Confidence\n"
                                          "b,verification,/m/c,0\na,verification,/m/a,1\n"),
                                    classes)
    assert lab.confidence.tolist() == [0, 1] and lab.label_codes.tolist() == [2, 0]
    with pytest.raises(InputError) as err:
        oid_csv.read_image_labels(write("l3.csv", "ImageID,Source,LabelName,Confidence\n"
                                        "a,v,/m/a,0.5\n"), classes)
    assert (err.value.line, err.value.field) == (2, "Confidence")


def test_detections_oid_and_kaggle_formats_agree(write, classes):
    oid = write("d.csv", "ImageID,LabelName,Score,XMin,XMax,YMin,YMax\n"
                "i1,/m/a,0.9,0.1,0.5,0.2,0.6\ni1,/m/c,0.3,0.0,0.4,0.1,0.9\n")
    kaggle = write("k.csv", "ImageId,PredictionString\n"
                   "i1,/m/a 0.9 0.1 0.2 0.5 0.6 /m/c 0.3 0.0 0.1 0.4 0.9\ni2,\n")
    a, b = oid_csv.read_detections(oid, classes), oid_csv.read_detections(kaggle, classes)
    np.testing.assert_array_equal(a.boxes_norm, b.boxes_norm)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.label_codes.tolist() == b.label_codes.tolist() == [0, 2]
    with pytest.raises(InputError) as err:
        oid_csv.read_detections(write("k2.csv", "ImageId,PredictionString\ni1,/m/a 0.9 0.1\n"),
                                classes)
    assert (err.value.line, err.value.field) == (2, "PredictionString")


def test_align_images_gives_one_sorted_vocabulary(write, classes):
    boxes = oid_csv.read_boxes(write("b.csv", SHORT + "z,/m/a,0,1,0,1,0\nb,/m/a,0,1,0,1,0\n"),
                               classes)
    labels = oid_csv.read_image_labels(write("l.csv", "ImageID,Source,LabelName,Confidence\n"
                                             "c,v,/m/a,1\nz,v,/m/b,0\n"), classes)
    b2, l2 = oid_csv.align_images(boxes, labels)
    assert list(b2.image_ids) == ["b", "c", "z"]
    assert list(b2.image_ids[b2.image_codes]) == ["z", "b"]
    assert list(l2.image_ids[l2.image_codes]) == ["c", "z"]


def test_writers_round_trip(tmp_path, write, classes):
    boxes = oid_csv.read_boxes(write("b.csv", SHORT + "z,/m/b,0.125,0.5,0.25,0.75,1\n"), classes)
    for short in (False, True):
        out = tmp_path / f"out{short}.csv"
        oid_csv.write_boxes(out, boxes, classes, short_format=short)
        back = oid_csv.read_boxes(out, classes)
        np.testing.assert_array_equal(back.boxes_norm, boxes.boxes_norm)
        assert back.is_group_of.tolist() == [True]
        assert out.read_text().splitlines()[0].startswith("ImageID,")  # no quoted header
