"""``wilddet evaluate`` on real-format files: RESULT.json / per-class CSV contract, both detection
formats, the 7-column challenge box format with hierarchy expansion, bad input."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from wilddet.cli import app
from wilddet.errors import InputError
from wilddet.reports.csv_logs import read_per_class_ap

CLASSES = "/m/cat,Cat\n/m/dog,Dog\n/m/ele,Elephant\n/m/pet,Pet\n"
# TF Challenge test fixture (group_of_weight 0.5 -> cat 1/7, dog 1/3, elephant 1/3), written with
# pixel boxes scaled by 1/1000 into [0, 1] (the metric is scale invariant). Rows shuffled.
BOXES_13 = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,"
    "IsDepiction,IsInside\n"
    "img2,x,/m/cat,1,0.5,0.51,0.5,0.51,0,0,0,0,0\n"
    "img1,x,/m/cat,1,0,0.001,0,0.001,0,0,0,0,0\n"
    "img3,x,/m/dog,1,0,0.001,0,0.001,0,0,0,0,0\n"
    "img1,x,/m/ele,1,0,0.002,0,0.002,0,0,0,0,0\n"
    "img1,x,/m/cat,1,0,0.003,0,0.003,0,0,1,0,0\n"
    "img2,x,/m/cat,1,0.01,0.011,0.01,0.011,0,0,0,0,0\n"
    "img2,x,/m/ele,1,0.01,0.012,0.01,0.012,0,0,1,0,0\n")
LABELS = ("ImageID,Source,LabelName,Confidence\n"
          "img1,verification,/m/cat,1\nimg1,verification,/m/dog,1\nimg1,verification,/m/ele,0\n")
DETS = ("ImageID,LabelName,Score,XMin,XMax,YMin,YMax\n"
        "img3,/m/dog,0.5,0,0.001,0,0.001\n"
        "img1,/m/dog,0.7,0.01,0.011,0.01,0.011\n"
        "img2,/m/cat,0.7,0.01,0.011,0.01,0.011\n"
        "img1,/m/dog,0.8,0.1,0.12,0.1,0.12\n"
        "img2,/m/cat,0.8,0.1,0.12,0.1,0.12\n"
        "img2,/m/dog,0.5,0.1,0.22,0.1,0.22\n"
        "img2,/m/ele,0.9,0.01,0.011,0.01,0.011\n"
        "img9,/m/cat,0.99,0,1,0,1\n")  # image without ground truth: dropped
KAGGLE = ("ImageId,PredictionString\n"
          "img1,/m/dog 0.7 0.01 0.01 0.011 0.011 /m/dog 0.8 0.1 0.1 0.12 0.12\n"
          "img2,/m/cat 0.7 0.01 0.01 0.011 0.011 /m/cat 0.8 0.1 0.1 0.12 0.12 "
          "/m/dog 0.5 0.1 0.1 0.22 0.22 /m/ele 0.9 0.01 0.01 0.011 0.011\n"
          "img3,/m/dog 0.5 0 0 0.001 0.001\n"
          "img4,\n")
EXPECTED = {"/m/cat": 1 / 7, "/m/dog": 1 / 3, "/m/ele": 1 / 3, "/m/pet": None}


@pytest.fixture
def files(tmp_path):
    for name, text in (("classes.csv", CLASSES), ("boxes.csv", BOXES_13), ("labels.csv", LABELS),
                       ("dets.csv", DETS), ("kaggle.csv", KAGGLE)):
        (tmp_path / name).write_text(text)
    return tmp_path


def run(files, *extra, dets="dets.csv", boxes="boxes.csv", labels="labels.csv"):
    args = ["evaluate", "--boxes", str(files / boxes), "--image-labels", str(files / labels),
            "--classes", str(files / "classes.csv"), "--detections", str(files / dets),
            "--out-json", str(files / "out" / "result.json"), *extra]
    return CliRunner().invoke(app, args)


def check_expected(doc):
    assert set(doc["per_class_AP"]) == set(EXPECTED)  # every class, in the JSON
    for label, want in EXPECTED.items():
        if want is None:
            assert doc["per_class_AP"][label] is None
        else:
            assert doc["per_class_AP"][label] == pytest.approx(want, abs=1e-12)
    assert doc["mAP"] == pytest.approx((1 / 7 + 2 / 3) / 3, abs=1e-12)
    assert doc["num_gt_instances"] == {"/m/cat": 3.5, "/m/dog": 1.0, "/m/ele": 1.5, "/m/pet": 0.0}


@pytest.mark.parametrize("dets", ["dets.csv", "kaggle.csv"])
def test_tf_fixture_through_the_cli(files, dets):
    result = run(files, "--group-of-weight", "0.5", "--out-csv", str(files / "out" / "ap.csv"),
                 dets=dets)
    assert result.exit_code == 0, result.output
    doc = json.loads((files / "out" / "result.json").read_text())
    check_expected(doc)
    assert doc["mode"] == "challenge" and doc["settings"]["group_of_weight"] == 0.5
    assert doc["settings"]["hierarchy_expansion"] is False and doc["num_images"] == 4
    with open(files / "out" / "ap.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", "name", "ap", "num_gt", "num_detections", "num_tp"]
    assert rows[1][:2] == ["/m/cat", "Cat"] and rows[4] == ["/m/pet", "Pet", "", "0", "0", "0"]
    assert rows[1][3:] == ["3.5", "2", "1"]  # cat: 2 detections (one TP, one FP)
    assert rows[3][3:] == ["1.5", "1", "0.5"]  # elephant: one detection in a group-of box
    log = read_per_class_ap(files / "out" / "ap.csv")
    np.testing.assert_allclose(log.ap[:3], [1 / 7, 1 / 3, 1 / 3], rtol=0, atol=1e-15)


def test_default_settings_are_the_challenge(files):
    result = run(files)
    assert result.exit_code == 0, result.output
    doc = json.loads((files / "out" / "result.json").read_text())
    assert doc["settings"]["iou_threshold"] == 0.5 and doc["settings"]["ioa_threshold"] == 0.5
    assert doc["settings"]["group_of_weight"] == 1.0
    assert doc["settings"]["expand_detections"] is False
    assert doc["num_gt_instances"]["/m/cat"] == 4.0


HIERARCHY = {"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "/m/pet", "Subcategory": [{"LabelName": "/m/cat"}, {"LabelName": "/m/dog"}]},
    {"LabelName": "/m/ele"}]}
BOXES_7 = ("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
           "a,/m/dog,0,0.5,0,0.5,0\n"
           "b,/m/cat,0,0.5,0,0.5,0\n")
LABELS_HEADER_ONLY = "ImageID,Source,LabelName,Confidence\n"
DETS_H = ("ImageID,LabelName,Score,XMin,XMax,YMin,YMax\n"
          "a,/m/dog,0.9,0,0.5,0,0.5\n"
          "b,/m/pet,0.8,0,0.5,0,0.5\n")


@pytest.fixture
def hfiles(tmp_path):
    (tmp_path / "classes.csv").write_text(CLASSES)
    (tmp_path / "boxes.csv").write_text(BOXES_7)
    (tmp_path / "labels.csv").write_text(LABELS_HEADER_ONLY)
    (tmp_path / "dets.csv").write_text(DETS_H)
    (tmp_path / "h.json").write_text(json.dumps(HIERARCHY))
    return tmp_path


def test_hierarchy_expands_ground_truth_not_detections(hfiles):
    result = run(hfiles, "--hierarchy", str(hfiles / "h.json"))
    assert result.exit_code == 0, result.output
    doc = json.loads((hfiles / "out" / "result.json").read_text())
    # pet boxes come from expanding dog (a) and cat (b); only b has a pet detection
    assert doc["num_gt_instances"]["/m/pet"] == 2.0
    assert doc["per_class_AP"]["/m/pet"] == pytest.approx(0.5)
    assert doc["per_class_AP"]["/m/dog"] == 1.0 and doc["per_class_AP"]["/m/cat"] == 0.0
    assert doc["settings"]["hierarchy_expansion"] is True and doc["mode"] == "challenge"
    # without the hierarchy pet has no ground truth and the pet detection is unverified
    result = run(hfiles)
    doc = json.loads((hfiles / "out" / "result.json").read_text())
    assert doc["per_class_AP"]["/m/pet"] is None


def test_expand_detections_mode_is_recorded(hfiles):
    result = run(hfiles, "--hierarchy", str(hfiles / "h.json"), "--expand-detections")
    assert result.exit_code == 0, result.output
    doc = json.loads((hfiles / "out" / "result.json").read_text())
    assert doc["mode"] == "expand-detections" and doc["settings"]["expand_detections"] is True
    # the dog detection on image a is copied to pet (verified there by the expanded dog box)
    assert doc["per_class_AP"]["/m/pet"] == 1.0
    (hfiles / "out" / "result.json").unlink()
    result = run(hfiles, "--expand-detections")
    assert result.exit_code == 2 and "--hierarchy" in result.output
    assert not (hfiles / "out" / "result.json").exists()


def test_bad_detection_row_names_file_line_field_and_writes_nothing(files):
    (files / "bad.csv").write_text(DETS.replace("img2,/m/cat,0.8", "img2,/m/cow,0.8"))
    result = run(files, "--out-csv", str(files / "out" / "ap.csv"), dets="bad.csv")
    assert isinstance(result.exception, InputError)
    assert str(result.exception).startswith(f"{files / 'bad.csv'}:6: LabelName: unknown LabelName")
    assert not (files / "out" / "result.json").exists() and not (files / "out" / "ap.csv").exists()


def test_bad_box_row_writes_nothing(files):
    (files / "bad.csv").write_text(BOXES_13.replace("img3,x,/m/dog,1,0,0.001",
                                                    "img3,x,/m/dog,1,0,1.5"))
    result = run(files, boxes="bad.csv")
    assert isinstance(result.exception, InputError)
    assert str(result.exception).startswith(f"{files / 'bad.csv'}:4: XMax:")
    assert not (files / "out").exists() or not any((files / "out").iterdir())
