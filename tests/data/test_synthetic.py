"""`wilddet synth` writes a dataset that the loaders read back with the planted statistics."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from wilddet.cli import app
from wilddet.data import hierarchy as hmod
from wilddet.data import oid_csv
from wilddet.data.synthetic import SynthConfig, build_taxonomy, planted_case_classes
from wilddet.errors import InputError


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "s"
    result = CliRunner().invoke(app, ["synth", str(out), "--train-images", "200",
                                      "--val-images", "50", "--seed", "0"])
    assert result.exit_code == 0, result.output
    return out


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_files_and_images_exist(synth_dir):
    for split, n in (("train", 200), ("val", 50)):
        ids = (synth_dir / f"{split}-image-ids.txt").read_text().split()
        assert len(ids) == n == len(set(ids))
        assert all((synth_dir / split / f"{i}.jpg").is_file() for i in ids)
    assert {"train-annotations-bbox.csv", "val-annotations-human-imagelabels.csv",
            "class-descriptions.csv", "hierarchy.json"} <= {p.name for p in synth_dir.iterdir()}


def test_planted_statistics(synth_dir):
    classes = oid_csv.read_classes(synth_dir / "class-descriptions.csv")
    h = hmod.read_hierarchy(synth_dir / "hierarchy.json", classes)
    boxes = oid_csv.read_boxes(synth_dir / "train-annotations-bbox.csv", classes)
    labels = oid_csv.read_image_labels(synth_dir / "train-annotations-human-imagelabels.csv",
                                       classes)
    # hierarchy of 3 class levels; boxes carry leaf labels, shape labels only for cases (b), (c)
    manifest = json.loads((synth_dir / "synth.json").read_text())
    groups = planted_case_classes(manifest)
    assert h.depth.max() == 3
    inner = {str(classes.labels[c]) for c in np.unique(boxes.label_codes)
             if len(h.descendants[c])}
    assert inner and inner <= set(groups["b_parents"]) | set(groups["c_parents"])
    # long tail: the planted head/tail look probability ratio is >= 100 and the data follows it
    tax = build_taxonomy(SynthConfig())
    looks = np.flatnonzero(tax.leaf_probs > 0)
    assert tax.leaf_probs.max() / tax.leaf_probs[looks].min() >= 100
    counts = np.bincount(boxes.label_codes, minlength=len(classes))[tax.leaf_codes]
    # compare leaves outside the planted cases (whose boxes also come from other looks)
    case_labels = {label for members in groups.values() for label in members}
    plain = np.asarray([leaf for leaf in looks
                        if classes.labels[tax.leaf_codes[leaf]] not in case_labels])
    head, tail = plain[np.argmax(tax.leaf_probs[plain])], plain[np.argmin(tax.leaf_probs[plain])]
    ratio = tax.leaf_probs[head] / tax.leaf_probs[tail]
    assert ratio >= 10 and counts[head] >= ratio / 3 * max(counts[tail], 1)
    # planted confusion pairs: duplicate boxes of the partner class with IoU > 0.9
    assert len(manifest["planted_pairs"]) >= 2
    found = 0
    for a, b in manifest["planted_pairs"]:
        ca, cb = classes.code(a), classes.code(b)
        for img in np.unique(boxes.image_codes[boxes.label_codes == ca]):
            rows_a = np.flatnonzero((boxes.image_codes == img) & (boxes.label_codes == ca))
            rows_b = np.flatnonzero((boxes.image_codes == img) & (boxes.label_codes == cb))
            found += sum(_iou(boxes.boxes_norm[i], boxes.boxes_norm[j]) > 0.9
                         for i in rows_a for j in rows_b)
    assert found >= 10
    # group-of boxes exist but are a minority
    assert 0 < boxes.is_group_of.mean() < 0.2
    # image labels: verified positives and negatives; some present classes unverified
    assert (labels.confidence == 1).any() and (labels.confidence == 0).any()
    present = set(zip(boxes.image_codes.tolist(), boxes.label_codes.tolist()))
    pos_ids = labels.image_ids[labels.image_codes[labels.confidence == 1]]
    pos = set(zip(pos_ids.tolist(), labels.label_codes[labels.confidence == 1].tolist()))
    present_ids = {(boxes.image_ids[i], c) for i, c in present}
    # a verified positive without a box of its class is a planted case's other label
    assert {c for _, c in pos - present_ids} <= {classes.code(x) for x in case_labels}
    assert len(pos & present_ids) < len(present_ids)
    neg_ids = labels.image_ids[labels.image_codes[labels.confidence == 0]]
    neg = set(zip(neg_ids.tolist(), labels.label_codes[labels.confidence == 0].tolist()))
    assert not (neg & present_ids)


def test_deterministic_from_seed(tmp_path):
    cfg = SynthConfig(train_images=30, val_images=5, seed=3)
    from wilddet.data.synthetic import write_dataset
    write_dataset(tmp_path / "a", cfg, with_images=False)
    write_dataset(tmp_path / "b", cfg, with_images=False)
    write_dataset(tmp_path / "c", SynthConfig(train_images=30, val_images=5, seed=4),
                  with_images=False)
    name = "train-annotations-bbox.csv"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_refuses_non_empty_output_and_writes_nothing(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = CliRunner().invoke(app, ["synth", str(out), "--train-images", "5"])
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError) and "not empty" in str(result.exception)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".taken")]
