"""``wilddet diagnose`` on real-format files: the file contract of the error-analysis spec, the
agreement with ``wilddet evaluate`` on the same files, bad input (nothing written), and
``wilddet compare --diagnose``."""

import csv
import json

import pytest
from typer.testing import CliRunner

from wilddet.cli import app
from wilddet.errors import InputError
from wilddet.evaluation.diagnose import ERROR_TYPES

CLASSES = "/m/ani,Animal\n/m/dog,Dog\n/m/cat,Cat\n/m/lyn,Lynx\n/m/car,Car\n"
HIERARCHY = json.dumps({"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "/m/ani", "Subcategory": [{"LabelName": "/m/dog"}, {"LabelName": "/m/cat"},
                                            {"LabelName": "/m/lyn"}]},
    {"LabelName": "/m/car"}]})
BOXES = ("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
         "i1,/m/dog,0,0.5,0,0.5,0\n"
         "i1,/m/lyn,0.5,1,0.5,1,0\n"
         "i2,/m/ani,0,0.5,0,0.5,0\n"
         "i2,/m/car,0.5,1,0,0.5,0\n")
LABELS = ("ImageID,Source,LabelName,Confidence\n"
          "i1,v,/m/cat,0\ni2,v,/m/dog,1\ni3,v,/m/dog,0\n")
PAIRS = "source,confusion,source_name,confusion_name,source_boxes,confusion_boxes,ratio\n" \
        "/m/cat,/m/lyn,Cat,Lynx,10,3,0.3\n"
DETS = ("ImageID,LabelName,Score,XMin,XMax,YMin,YMax\n"
        "i1,/m/dog,0.9,0,0.5,0,0.5\n"          # TP
        "i1,/m/dog,0.8,0,0.5,0,0.5\n"          # duplicate
        "i1,/m/dog,0.7,0,0.5,0,0.125\n"        # localization (IoU 0.25)
        "i1,/m/cat,0.6,0.5,1,0.5,1\n"          # confusion (Lynx box)
        "i2,/m/dog,0.95,0,0.5,0,0.5\n"         # hierarchy (box annotated Animal)
        "i2,/m/dog,0.5,0.5,1,0,0.5\n"          # class (Car box)
        "i3,/m/dog,0.4,0,0.5,0,0.5\n"          # background (label-only image)
        "i9,/m/dog,0.99,0,1,0,1\n")            # image without ground truth: ignored
EXPECTED = {"duplicate": 1, "localization": 1, "hierarchy": 1, "confusion": 1, "class": 1,
            "background": 1, "other": 0}


@pytest.fixture
def files(tmp_path):
    for name, text in (("classes.csv", CLASSES), ("boxes.csv", BOXES), ("labels.csv", LABELS),
                       ("dets.csv", DETS), ("hierarchy.json", HIERARCHY), ("pairs.csv", PAIRS)):
        (tmp_path / name).write_text(text)
    return tmp_path


def _args(files, out, dets="dets.csv", pairs="pairs.csv"):
    return ["--boxes", str(files / "boxes.csv"), "--image-labels", str(files / "labels.csv"),
            "--classes", str(files / "classes.csv"), "--detections", str(files / dets),
            "--hierarchy", str(files / "hierarchy.json"), "--pairs", str(files / pairs),
            "--out", str(out)]


def test_diagnose_writes_the_spec_files_and_agrees_with_evaluate(files):
    out = files / "diag"
    res = CliRunner().invoke(app, ["diagnose", *_args(files, out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["false_positives"] == EXPECTED
    assert set(summary["delta_mAP"]) == set(ERROR_TYPES)
    assert all(v >= -1e-12 for v in summary["delta_mAP"].values())
    assert set(summary["per_class"]) == {"/m/ani", "/m/dog", "/m/cat", "/m/lyn", "/m/car"}
    for entry in summary["per_class"].values():
        assert set(entry) == {"ap", "false_positives", "missed_gt", "missed_group_of"}
        assert set(entry["false_positives"]) == set(ERROR_TYPES)
    assert summary["per_class"]["/m/dog"]["false_positives"]["duplicate"] == 1
    assert summary["per_class"]["/m/cat"]["ap"] is None  # no Cat box: FP counted, no AP

    with open(out / "errors.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["ImageID", "LabelName", "Score", "XMin", "XMax", "YMin", "YMax",
                             "error", "other_label", "iou"]
    assert [r["Score"] for r in rows] == ["0.95", "0.8", "0.7", "0.6", "0.5", "0.4"]
    by_score = {r["Score"]: (r["error"], r["other_label"], float(r["iou"])) for r in rows}
    assert by_score["0.95"] == ("hierarchy", "/m/ani", 1.0)
    assert by_score["0.6"] == ("confusion", "/m/lyn", 1.0)
    assert by_score["0.4"] == ("background", "", 0.0)
    with open(out / "pr_curves.csv", newline="") as f:
        pr = list(csv.DictReader(f))
    assert list(pr[0]) == ["label", "name", "recall", "precision"]
    assert {r["label"] for r in pr} <= {"/m/ani", "/m/dog", "/m/lyn", "/m/car"}
    assert (out / "error_types.png").stat().st_size > 0 and (out / "pr_curves.png").is_file()

    ev = CliRunner().invoke(app, ["evaluate", "--boxes", str(files / "boxes.csv"),
                                  "--image-labels", str(files / "labels.csv"),
                                  "--classes", str(files / "classes.csv"),
                                  "--detections", str(files / "dets.csv"),
                                  "--hierarchy", str(files / "hierarchy.json"),
                                  "--out-json", str(files / "r.json")])
    assert ev.exit_code == 0, ev.output
    assert json.loads((files / "r.json").read_text())["mAP"] == summary["mAP"]


def test_bad_pairs_file_names_file_line_field_and_writes_nothing(files):
    (files / "bad.csv").write_text("source,confusion\n/m/cat,/m/lyn\n/m/cat,/m/zebra\n")
    out = files / "diag"
    with pytest.raises(InputError) as err:
        CliRunner().invoke(app, ["diagnose", *_args(files, out, pairs="bad.csv")],
                           catch_exceptions=False)
    assert err.value.line == 3 and err.value.field == "confusion" and "bad.csv" in str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_compare_diagnose_side_by_side(files):
    a, b = files / "a", files / "b"
    assert CliRunner().invoke(app, ["diagnose", *_args(files, a)]).exit_code == 0
    (files / "fewer.csv").write_text("\n".join(DETS.splitlines()[:2]) + "\n")
    assert CliRunner().invoke(app, ["diagnose", *_args(files, b, dets="fewer.csv")]
                              ).exit_code == 0
    table = files / "errs.md"
    res = CliRunner().invoke(app, ["compare", "--diagnose", str(a), str(b), "--out", str(table)])
    assert res.exit_code == 0, res.output
    with open(table.with_suffix(".csv"), newline="") as f:
        rows = {r["error"]: r for r in csv.DictReader(f)}
    assert rows["duplicate"]["a"] == "1" and rows["duplicate"]["b"] == "0"
    assert rows["duplicate"]["change"] == "-1"
    assert rows["total"]["a"] == "6" and rows["total"]["change"] == "-6"
    assert "duplicate" in table.read_text()
