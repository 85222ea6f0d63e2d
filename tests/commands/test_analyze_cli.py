"""`wilddet analyze` end to end: outputs, contract columns, planted pairs, bad input, atomicity."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from wilddet import cli
from wilddet.cli import app
from wilddet.errors import InputError

OUTPUTS = {"class_stats.csv", "confusion_pairs.csv", "concurrent_rate.npz", "report.md",
           "imbalance.png", "confusion.png"}
PAIR_COLUMNS = ["source", "confusion", "source_name", "confusion_name", "source_boxes",
                "confusion_boxes", "ratio"]

CLASSES = "/m/a,Leopard\n/m/b,Cheetah\n/m/c,Car\n/m/d,Wheel\n"
HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated," \
         "IsGroupOf,IsDepiction,IsInside\n"


def _row(image, label, x0, x1, y0, y1, group=0):
    return f"{image},xclick,{label},1,{x0},{x1},{y0},{y1},0,0,{group},0,0\n"


def _hand_files(write):
    """img1: Leopard + Cheetah (IoU 0.96) + a second Leopard on it; img2: Car + Wheel group-of box
    on the same place (IoU 0.96); img3: Car alone; exact-threshold Car/Wheel pair (IoU == 0.9)."""
    rows = [_row("img1", "/m/a", 0.2, 0.6, 0, 1), _row("img1", "/m/b", 0.192, 0.592, 0, 1),
            _row("img1", "/m/a", 0.2, 0.6, 0, 1),
            _row("img2", "/m/c", 0.2, 0.6, 0, 1), _row("img2", "/m/d", 0.192, 0.592, 0, 1, 1),
            _row("img3", "/m/c", 0.1, 0.3, 0.1, 0.3),
            _row("img4", "/m/c", 0, 0.625, 0, 1), _row("img4", "/m/d", 0, 0.5625, 0, 1)]
    return write("classes.csv", CLASSES), write("boxes.csv", HEADER + "".join(rows))


def _run(args):
    return CliRunner().invoke(app, ["analyze", *args])


def test_hand_worked_outputs(write, tmp_path):
    classes, boxes = _hand_files(write)
    out = tmp_path / "new" / "out"  # created, parents too
    result = _run(["--boxes", str(boxes), "--classes", str(classes), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == OUTPUTS
    stats = pd.read_csv(out / "class_stats.csv")
    assert list(stats.columns) == ["label", "name", "boxes", "images", "group_of_boxes"]
    assert stats.to_dict("list") == {"label": ["/m/a", "/m/b", "/m/c", "/m/d"],
                                     "name": ["Leopard", "Cheetah", "Car", "Wheel"],
                                     "boxes": [2, 1, 3, 2], "images": [1, 1, 3, 2],
                                     "group_of_boxes": [0, 0, 0, 1]}
    pairs = pd.read_csv(out / "confusion_pairs.csv")
    assert list(pairs.columns) == PAIR_COLUMNS
    # Cheetah pairs with both Leopards: 2 box pairs each way; Car/Wheel 1 pair (img4 is IoU 0.9)
    got = list(pairs.itertuples(index=False, name=None))
    assert got == [("/m/b", "/m/a", "Cheetah", "Leopard", 1, 2, 2.0),
                   ("/m/a", "/m/b", "Leopard", "Cheetah", 2, 2, 1.0),
                   ("/m/d", "/m/c", "Wheel", "Car", 2, 1, 0.5),
                   ("/m/c", "/m/d", "Car", "Wheel", 3, 1, pytest.approx(1 / 3))]
    npz = np.load(out / "concurrent_rate.npz")
    assert list(npz["labels"]) == ["/m/a", "/m/b", "/m/c", "/m/d"]
    rate = npz["rate"]
    assert rate.dtype == np.float32 and rate.shape == (4, 4)
    want = np.zeros((4, 4), np.float32)
    want[0, 1], want[1, 0] = 1.0, 1.0  # 2/1 capped at 1
    want[3, 2], want[2, 3] = 0.5, np.float32(1 / 3)
    np.testing.assert_array_equal(rate, want)
    report = (out / "report.md").read_text()
    assert "| Source Classes | Cheetah | Leopard | Wheel | Car |" in report
    assert "| #Confusion bboxes | 2 | 2 | 1 | 1 |" in report
    assert "Gini" in report and "imbalance.png" in report
    assert "report:" in result.output and "Top confusion pairs" in result.output


def test_options_exclude_group_of_threshold_and_ratio(write, tmp_path):
    classes, boxes = _hand_files(write)
    out = tmp_path / "o"
    result = _run(["--boxes", str(boxes), "--classes", str(classes), "--out", str(out),
                   "--exclude-group-of", "--min-ratio", "0.5", "--iou-threshold", "0.8999"])
    assert result.exit_code == 0, result.output
    pairs = pd.read_csv(out / "confusion_pairs.csv")
    # group-of Wheel in img2 gone; img4 now pairs (IoU 0.9 > 0.8999); Car->Wheel 1/3 < 0.5 cut
    assert list(zip(pairs.source, pairs.confusion, pairs.source_boxes, pairs.confusion_boxes)) \
        == [("/m/b", "/m/a", 1, 2), ("/m/a", "/m/b", 2, 2), ("/m/d", "/m/c", 1, 1)]  # tie 1.0
    # ties in ratio are ordered by source class code, then confusion class code
    # class_stats stays on the raw boxes
    assert pd.read_csv(out / "class_stats.csv")["boxes"].tolist() == [2, 1, 3, 2]


def test_source_boxes_counting_rule(write, tmp_path):
    classes, boxes = _hand_files(write)
    out = tmp_path / "o"
    result = _run(["--boxes", str(boxes), "--classes", str(classes), "--out", str(out),
                   "--counting", "source-boxes"])
    assert result.exit_code == 0, result.output
    pairs = pd.read_csv(out / "confusion_pairs.csv")
    row = pairs[(pairs.source == "/m/b") & (pairs.confusion == "/m/a")]
    assert row.confusion_boxes.tolist() == [1]  # one Cheetah box, however many Leopards


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "s"
    result = CliRunner().invoke(app, ["synth", str(out), "--train-images", "400",
                                      "--val-images", "0", "--no-images", "--seed", "3"])
    assert result.exit_code == 0, result.output
    return out


def test_synth_planted_pairs_on_top(synth_dir, tmp_path):
    out = tmp_path / "a"
    result = _run(["--boxes", str(synth_dir / "train-annotations-bbox.csv"),
                   "--classes", str(synth_dir / "class-descriptions.csv"),
                   "--hierarchy", str(synth_dir / "hierarchy.json"),
                   "--image-labels", str(synth_dir / "train-annotations-human-imagelabels.csv"),
                   "--out", str(out)])
    assert result.exit_code == 0, result.output
    planted = {tuple(p) for p in json.loads((synth_dir / "synth.json").read_text())
               ["planted_pairs"]}
    pairs = pd.read_csv(out / "confusion_pairs.csv")
    top = set(zip(pairs.source[:len(planted)], pairs.confusion[:len(planted)]))
    assert top == planted
    # the box-pair counts are symmetric and r follows the table
    counts = dict(zip(zip(pairs.source, pairs.confusion), pairs.confusion_boxes))
    assert all(counts.get((b, a)) in (None, n) for (a, b), n in counts.items())
    npz = np.load(out / "concurrent_rate.npz")
    index = {lab: i for i, lab in enumerate(npz["labels"])}
    for s, c, r in zip(pairs.source, pairs.confusion, pairs.ratio):
        assert npz["rate"][index[s], index[c]] == np.float32(min(r, 1.0))
    assert np.all(np.diag(npz["rate"]) == 0)
    # expanded columns: independent check with pandas on the CSV and the hierarchy
    stats = pd.read_csv(out / "class_stats.csv")
    assert list(stats.columns)[-2:] == ["boxes_expanded", "images_expanded"]
    raw = pd.read_csv(synth_dir / "train-annotations-bbox.csv")
    by_label = raw.groupby("LabelName").agg(boxes=("ImageID", "size"),
                                            images=("ImageID", "nunique"))
    merged = stats.merge(by_label, left_on="label", right_index=True, how="left",
                         suffixes=("", "_pd")).fillna(0)
    assert (merged.boxes == merged.boxes_pd).all() and (merged.images == merged.images_pd).all()
    # a leaf box gains 2 ancestor labels, a shape box (synth cases b, c) gains 1
    tree = json.loads((synth_dir / "hierarchy.json").read_text())
    shapes = {s["LabelName"] for fam in tree["Subcategory"] for s in fam["Subcategory"]}
    is_shape = stats.label.isin(shapes)
    assert stats.boxes_expanded.sum() == (3 * stats.boxes[~is_shape].sum()
                                          + 2 * stats.boxes[is_shape].sum())
    report = (out / "report.md").read_text()
    assert "gain at least one ancestor label" in report and "verified positive" in report


def test_bad_box_file_names_file_line_field_and_writes_nothing(write, tmp_path):
    rows = [_row("img1", "/m/a", 0.2, 0.6, 0, 1), _row("img1", "/m/b", 0.2, 1.7, 0, 1)]
    classes = write("classes.csv", CLASSES)
    boxes = write("bad.csv", HEADER + "".join(rows))
    out = tmp_path / "out"
    result = _run(["--boxes", str(boxes), "--classes", str(classes), "--out", str(out)])
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError)
    assert str(result.exception).startswith(f"{boxes}:3: XMax:")
    assert not out.exists()


def test_unknown_label_via_main_exits_2(write, tmp_path, monkeypatch, capsys):
    classes = write("classes.csv", CLASSES)
    boxes = write("b.csv", HEADER + _row("img1", "/m/zzz", 0.2, 0.6, 0, 1))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["wilddet", "analyze", "--boxes", str(boxes), "--classes",
                                      str(classes), "--out", str(out)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"{boxes}:2: LabelName:" in err and "/m/zzz" in err
    assert not out.exists()


def test_failure_while_writing_leaves_no_output(write, tmp_path, monkeypatch):
    classes, boxes = _hand_files(write)
    out = tmp_path / "out"

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    import wilddet.reports.plots_analysis as plots  # imported by write_analysis when it runs

    monkeypatch.setattr(plots, "plot_confusion", broken)
    result = _run(["--boxes", str(boxes), "--classes", str(classes), "--out", str(out)])
    assert isinstance(result.exception, RuntimeError)
    assert list(out.iterdir()) == []  # no file, no temporary left behind


def test_option_errors(write, tmp_path):
    classes, boxes = _hand_files(write)
    base = ["--boxes", str(boxes), "--classes", str(classes), "--out", str(tmp_path / "o")]
    bad_iou = _run(base + ["--iou-threshold", "1.5"])
    assert bad_iou.exit_code == 2 and not (tmp_path / "o").exists()
    needs = _run(base + ["--hierarchy-pairs"])
    assert isinstance(needs.exception, InputError) and "--hierarchy" in str(needs.exception)
    rule = _run(base + ["--counting", "objects"])
    assert isinstance(rule.exception, InputError) and "--counting" in str(rule.exception)
