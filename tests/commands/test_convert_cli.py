"""``wilddet convert`` (the four forms) and ``wilddet evaluate --metric coco|lvis`` end to end:
the round trips keep the Open Images mAP, R.json / PER_CLASS.csv contracts, bad input."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from wilddet.cli import app, main
from wilddet.evaluation.coco_metric import COCO_KEYS, LVIS_KEYS

CLASSES = ["/m/a", "/m/b", "/m/c", "/m/d"]


def _write_oid(d, seed=0, num_images=14):
    """A random split with group-of boxes and verified labels; 4-decimal coordinates so that
    every conversion is exact."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    (d / "classes.csv").write_text("".join(f"{c},Class {c[-1].upper()}\n" for c in CLASSES))
    boxes, labels, dets, sizes = [], [], [], []
    for i in range(num_images):
        image = f"im{i:02d}"
        sizes.append(f"{image},{int(rng.integers(60, 300))},{int(rng.integers(60, 300))}")
        present = set()
        for _ in range(int(rng.integers(1, 5))):
            c = CLASSES[int(rng.integers(0, 4))]
            present.add(c)
            x0, y0 = rng.uniform(0, 0.6, 2).round(4)
            x1, y1 = (np.array([x0, y0]) + rng.uniform(0.05, 0.4, 2)).round(4)
            group = int(rng.random() < 0.15)
            boxes.append(f"{image},xclick,{c},1,{x0},{x1},{y0},{y1},0,0,{group},0,0")
            for _ in range(int(rng.integers(0, 3))):
                j = rng.normal(0, 0.03, 4)
                dets.append(f"{image},{c},{rng.random():.4f},{max(x0 + j[0], 0):.4f},"
                            f"{min(x1 + j[1], 1):.4f},{max(y0 + j[2], 0):.4f},"
                            f"{min(y1 + j[3], 1):.4f}")
        for c in CLASSES:
            if c in present and rng.random() < 0.7:
                labels.append(f"{image},verification,{c},1")
            elif c not in present and rng.random() < 0.5:
                labels.append(f"{image},verification,{c},0")
                dets.append(f"{image},{c},{rng.random():.4f},0.1,0.3,0.1,0.3")  # an FP
    header = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,"
              "IsGroupOf,IsDepiction,IsInside\n")
    (d / "boxes.csv").write_text(header + "\n".join(boxes) + "\n")
    (d / "labels.csv").write_text("ImageID,Source,LabelName,Confidence\n" + "\n".join(labels)
                                  + "\n")
    (d / "dets.csv").write_text("ImageID,LabelName,Score,XMin,XMax,YMin,YMax\n"
                                + "\n".join(dets) + "\n")
    (d / "sizes.csv").write_text("ImageID,width,height\n" + "\n".join(sizes) + "\n")
    return d


def _run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _oid_map(d, boxes, labels, classes, dets, out):
    _run("evaluate", "--boxes", boxes, "--image-labels", labels, "--classes", classes,
         "--detections", dets, "--out-json", out)
    return json.loads(out.read_text())


@pytest.mark.parametrize("kind", ["coco", "lvis"])
def test_round_trip_keeps_the_open_images_map(tmp_path, kind):
    d = _write_oid(tmp_path / "oid")
    gt = tmp_path / f"gt-{kind}.json"
    _run("convert", "--to", kind, "--boxes", d / "boxes.csv", "--classes", d / "classes.csv",
         "--image-labels", d / "labels.csv", "--image-sizes", d / "sizes.csv", "--out", gt)
    _run("convert", "--to", "oid", "--gt", gt, "--out", tmp_path / "back")
    _run("convert", "--to", "coco", "--detections", d / "dets.csv", "--gt", gt, "--out",
         tmp_path / "results.json")
    _run("convert", "--to", "oid", "--detections", tmp_path / "results.json", "--gt", gt,
         "--out", tmp_path / "dets-back.csv")
    before = _oid_map(d, d / "boxes.csv", d / "labels.csv", d / "classes.csv", d / "dets.csv",
                      tmp_path / "before.json")
    b = tmp_path / "back"
    after = _oid_map(d, b / "annotations-bbox.csv", b / "image-labels.csv",
                     b / "class-descriptions.csv", tmp_path / "dets-back.csv",
                     tmp_path / "after.json")
    assert 0.05 < before["mAP"] < 0.95
    assert after["mAP"] == pytest.approx(before["mAP"], abs=1e-9)
    assert after["per_class_AP"] == pytest.approx(before["per_class_AP"], abs=1e-9)


def test_evaluate_coco_and_lvis_outputs(tmp_path):
    d = _write_oid(tmp_path / "oid", seed=1)
    for kind in ("coco", "lvis"):
        gt = tmp_path / f"gt-{kind}.json"
        _run("convert", "--to", kind, "--boxes", d / "boxes.csv", "--classes",
             d / "classes.csv", "--image-labels", d / "labels.csv", "--image-sizes",
             d / "sizes.csv", "--out", gt)
        _run("convert", "--to", "coco", "--detections", d / "dets.csv", "--gt", gt, "--out",
             tmp_path / "results.json")
        out, per_class = tmp_path / f"R-{kind}.json", tmp_path / f"PC-{kind}.csv"
        result = _run("evaluate", "--metric", kind, "--gt", gt, "--detections",
                      tmp_path / "results.json", "--out-json", out, "--out-csv", per_class)
        doc = json.loads(out.read_text())
        keys = COCO_KEYS if kind == "coco" else LVIS_KEYS
        assert doc["metric"] == kind and all(k in doc for k in keys)
        assert doc["library"].startswith("faster-coco-eval")
        assert set(doc["per_class_AP"]) == {f"Class {c[-1].upper()}" for c in CLASSES}
        assert 0 < doc["AP"] < 1
        with open(per_class, newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["category_id", "name", "ap", "num_gt", "num_detections"]
        assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4"]
        aps = [doc["per_class_AP"][r[1]] for r in rows[1:]]
        assert [float(r[2]) if r[2] else None for r in rows[1:]] == pytest.approx(aps)
        assert "AP" in result.output


def test_coco_metric_equals_pycocotools_on_converted_files(tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    d = _write_oid(tmp_path / "oid", seed=2, num_images=20)
    gt = tmp_path / "gt.json"
    _run("convert", "--to", "coco", "--boxes", d / "boxes.csv", "--classes", d / "classes.csv",
         "--image-sizes", d / "sizes.csv", "--out", gt)
    _run("convert", "--to", "coco", "--detections", d / "dets.csv", "--gt", gt, "--out",
         tmp_path / "r.json")
    _run("evaluate", "--metric", "coco", "--gt", gt, "--detections", tmp_path / "r.json",
         "--out-json", tmp_path / "R.json")
    ours = json.loads((tmp_path / "R.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        ref_gt = COCO(str(gt))
        ev = COCOeval(ref_gt, ref_gt.loadRes(str(tmp_path / "r.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for key, value in zip(COCO_KEYS, ev.stats):
        expected = None if value == -1 else value
        assert ours[key] == pytest.approx(expected, abs=1e-6), key


def test_train_boxes_adds_frequency_groups(tmp_path):
    d = _write_oid(tmp_path / "oid", seed=3)
    # training images per class: a 1, b 12, c 150, d 0
    rows = [f"t{i},/m/a,0,1,0,1,0" for i in range(1)] + \
        [f"t{i},/m/b,0,1,0,1,0" for i in range(12)] + \
        [f"t{i},/m/c,0,1,0,1,0" for i in range(150)] + ["t0,/m/c,0,1,0,1,1"]
    (d / "train.csv").write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
                                 + "\n".join(rows) + "\n")
    result = _run("evaluate", "--boxes", d / "boxes.csv", "--image-labels", d / "labels.csv",
                  "--classes", d / "classes.csv", "--detections", d / "dets.csv",
                  "--out-json", tmp_path / "R.json", "--train-boxes", d / "train.csv")
    doc = json.loads((tmp_path / "R.json").read_text())
    ap = doc["per_class_AP"]
    groups = {g["name"]: g for g in doc["frequency_groups"]["lvis"]}
    assert groups["r"]["num_classes"] == 2  # a (1 image) and d (0 images)
    assert groups["r"]["ap"] == pytest.approx(np.nanmean(
        [v for v in (ap["/m/a"], ap["/m/d"]) if v is not None]))
    assert groups["c"]["ap"] == pytest.approx(ap["/m/b"])
    assert groups["f"]["ap"] == pytest.approx(ap["/m/c"])
    assert (groups["f"]["min_images"], groups["f"]["max_images"]) == (150, 150)
    bins = doc["frequency_groups"]["equal_count_bins"]
    assert [b["name"] for b in bins] == ["AP1", "AP2", "AP3", "AP4", "AP5"]
    # 4 classes in 5 bins: sorted by images d(0), a(1), b(12), c(150); the last bin is empty
    assert [b["num_classes"] for b in bins] == [1, 1, 1, 1, 0]
    assert bins[3]["ap"] == pytest.approx(ap["/m/c"]) and bins[4]["ap"] is None
    assert "AP by training images" in result.output


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    gt = tmp_path / "GT.json"
    gt.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}]}))
    for argv in (["convert", "--to", "oid", "--gt", gt, "--out", tmp_path / "out"],
                 ["evaluate", "--metric", "coco", "--gt", gt, "--detections", gt,
                  "--out-json", tmp_path / "R.json"]):
        monkeypatch.setattr(sys, "argv", ["wilddet", *map(str, argv)])
        with pytest.raises(SystemExit) as e:
            main()
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: {gt}: annotations[0].category_id: unknown category id 3"
    assert not (tmp_path / "out").exists() and not (tmp_path / "R.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--to", "voc", "--out", "x"], "is not coco, lvis or oid"),
    (["--to", "oid", "--out", "x"], "needs --gt"),
    (["--to", "coco", "--boxes", "b.csv", "--classes", "c.csv", "--out", "x"],
     "exactly one of --images"),
    (["--to", "lvis", "--detections", "d.csv", "--gt", "g.json", "--out", "x"],
     "detections convert to coco"),
])
def test_usage_errors(tmp_path, args, message):
    result = CliRunner().invoke(app, ["convert", *args])
    assert result.exit_code == 2 and message in result.output.replace("\n", " ")
