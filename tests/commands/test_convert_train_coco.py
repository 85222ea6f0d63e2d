"""Training, evaluation and analysis from COCO json (``data.format = "coco"``), end to end on a
tiny synthetic set written by ``wilddet synth --format coco``."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from wilddet.cli import app
from wilddet.config import demo_config, dump_toml, with_overrides


def _run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def synth_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco") / "data"
    _run("synth", root, "--train-images", 16, "--val-images", 6, "--classes", 6,
         "--image-size", 64, "--objects-per-image", 2, "--seed", 3, "--format", "coco")
    return root


def test_synth_writes_coco_json_of_both_splits(synth_coco):
    for split in ("train", "val"):
        doc = json.loads((synth_coco / f"{split}-coco.json").read_text())
        boxes = pd.read_csv(synth_coco / f"{split}-annotations-bbox.csv")
        assert len(doc["annotations"]) == len(boxes)
        assert {im["width"] for im in doc["images"]} == {64}  # read from the jpg headers
        assert [c["oid_label"] for c in doc["categories"]] == \
            pd.read_csv(synth_coco / "class-descriptions.csv", header=None)[0].tolist()


def test_analyze_gt_json_equals_analyze_csv(synth_coco, tmp_path):
    d = synth_coco
    _run("analyze", "--boxes", d / "train-annotations-bbox.csv", "--classes",
         d / "class-descriptions.csv", "--hierarchy", d / "hierarchy.json", "--out",
         tmp_path / "csv")
    _run("analyze", "--gt", d / "train-coco.json", "--out", tmp_path / "json")
    for name in ("class_stats.csv", "confusion_pairs.csv"):
        a = pd.read_csv(tmp_path / "csv" / name)
        b = pd.read_csv(tmp_path / "json" / name)
        pd.testing.assert_frame_equal(a, b)
    assert len(pd.read_csv(tmp_path / "json" / "confusion_pairs.csv")) > 0


def test_train_from_coco_json_and_evaluate_with_the_coco_metric(synth_coco, tmp_path):
    config = with_overrides(demo_config(synth_coco), [
        "data.format=coco", "data.train_annotations=train-coco.json",
        "data.val_annotations=val-coco.json", "data.classes=", "data.hierarchy=",
        "model.min_size_px=64", "model.max_size_px=64", "model.rpn_pre_nms_top_n_train=64",
        "model.rpn_post_nms_top_n_train=64", "model.rpn_pre_nms_top_n_test=64",
        "model.rpn_post_nms_top_n_test=64", "model.rpn_batch_size_per_image=32",
        "model.box_batch_size_per_image=32", "model.box_detections_per_img=40",
        "train.max_iters=4", "train.batch_size=2", "train.checkpoint_period_iters=4",
        "train.tensorboard=false", "train.device=cpu", "train.keep_checkpoints=1",
        "optim.warmup_iters=1", "eval.period_iters=0", "eval.batch_size=6"])
    from wilddet.engine.train import train

    (tmp_path / "coco.toml").write_text(dump_toml(config))  # a config a user would write
    trained = train(config, tmp_path / "run", progress=False)
    assert trained.iteration == 4 and trained.val_map is not None
    checkpoint = trained.checkpoint
    # the same numbers from the user's path: predict -> convert -> evaluate --metric coco
    _run("predict", "--checkpoint", checkpoint, "--images", synth_coco / "val", "--out",
         tmp_path / "dets.csv")
    _run("convert", "--to", "coco", "--detections", tmp_path / "dets.csv", "--gt",
         synth_coco / "val-coco.json", "--out", tmp_path / "results.json")
    _run("evaluate", "--metric", "coco", "--gt", synth_coco / "val-coco.json", "--detections",
         tmp_path / "results.json", "--out-json", tmp_path / "R.json")
    doc = json.loads((tmp_path / "R.json").read_text())
    assert 0.0 <= doc["AP"] <= 1.0
    assert trained.val_map == pytest.approx(doc["AP"], abs=1e-6)  # during-training metric



def test_during_training_metric_equals_evaluate_cli(synth_coco, tmp_path):
    """The trainer's val metric (engine.evaluate on data.format coco) and ``wilddet evaluate
    --metric coco`` give the same AP on the same detections (jittered GT: AP well above 0)."""
    import numpy as np

    from wilddet.data.oid_csv import read_detections
    from wilddet.engine.builders import load_meta
    from wilddet.engine.evaluate import evaluate_detections_json

    rng = np.random.default_rng(0)
    gt = pd.read_csv(synth_coco / "val-annotations-bbox.csv")
    coords = gt[["XMin", "XMax", "YMin", "YMax"]].to_numpy()
    coords = np.clip(coords + rng.normal(0, 0.02, coords.shape), 0, 1)
    dets = pd.DataFrame({"ImageID": gt["ImageID"], "LabelName": gt["LabelName"],
                         "Score": rng.random(len(gt)).round(4), "XMin": coords[:, 0],
                         "XMax": coords[:, 1], "YMin": coords[:, 2], "YMax": coords[:, 3]})
    dets.to_csv(tmp_path / "dets.csv", index=False)
    _run("convert", "--to", "coco", "--detections", tmp_path / "dets.csv", "--gt",
         synth_coco / "val-coco.json", "--out", tmp_path / "results.json")
    _run("evaluate", "--metric", "coco", "--gt", synth_coco / "val-coco.json", "--detections",
         tmp_path / "results.json", "--out-json", tmp_path / "R.json")
    expected = json.loads((tmp_path / "R.json").read_text())["AP"]
    assert expected > 0.2

    config = with_overrides(demo_config(synth_coco), [
        "data.format=coco", "data.train_annotations=train-coco.json",
        "data.val_annotations=val-coco.json"])
    meta = load_meta(config)
    table = read_detections(tmp_path / "dets.csv", meta.classes)
    ids = sorted(p.stem for p in (synth_coco / "val").glob("*.jpg"))
    evaluation = evaluate_detections_json(table, config, meta, ids)
    assert evaluation.result.metric == "coco"
    assert evaluation.mean_ap == pytest.approx(expected, abs=1e-6)


def test_coco_format_needs_the_training_json():
    from wilddet.errors import InputError

    with pytest.raises(InputError, match="data.train_annotations: format \"coco\" needs"):
        with_overrides(demo_config("x"), ["data.format=coco"])
    with pytest.raises(InputError, match="data.format: expected one of 'oid', 'coco', 'lvis'"):
        with_overrides(demo_config("x"), ["data.format=voc"])


def test_cache_and_sampler_counts_from_lvis_json(synth_coco, tmp_path):
    """The json feeds the same memory-mapped cache; the samplers' (and EQL's / the federated
    loss's) per-class image counts are LVIS's image_count of the file."""
    from wilddet.data.cache import open_box_cache
    from wilddet.data.coco.split import load_json_split

    d = synth_coco
    gt = tmp_path / "train-lvis.json"
    _run("convert", "--to", "lvis", "--boxes", d / "train-annotations-bbox.csv", "--classes",
         d / "class-descriptions.csv", "--image-labels",
         d / "train-annotations-human-imagelabels.csv", "--images", d / "train", "--out", gt)
    _, tables = load_json_split(gt, "lvis")
    cache = open_box_cache(gt, tables.classes, cache_dir=tmp_path / "cache")
    assert cache.directory is not None and (cache.directory / "meta.json").is_file()
    assert len(cache) == len(pd.read_csv(d / "train-annotations-bbox.csv"))
    counts = cache.class_image_index().images_per_class
    doc = json.loads(gt.read_text())
    assert counts.tolist() == [c["image_count"] for c in doc["categories"]]
