"""Smoke test of the demo pipeline (`wilddet demo`) on a tiny dataset and a few iterations."""

from __future__ import annotations

import csv
import json
import math

from rich.console import Console

from wilddet.studies.demo import run_demo

TINY_SYNTH = {"train_images": 16, "val_images": 6, "classes": 6, "image_size": 64,
              "objects_per_image": 2, "seed": 3}
TINY = ["model.min_size_px=64", "model.max_size_px=64", "model.rpn_pre_nms_top_n_train=100",
        "model.rpn_post_nms_top_n_train=100", "model.rpn_pre_nms_top_n_test=100",
        "model.rpn_post_nms_top_n_test=100", "train.max_iters=3", "train.batch_size=2",
        "train.checkpoint_period_iters=3", "train.tensorboard=false"]


def test_demo_writes_every_output_and_reruns_without_retraining(tmp_path):
    with open(tmp_path / "log.txt", "w") as log_file:
        result = run_demo(tmp_path / "demo", overrides=TINY, synth=TINY_SYNTH, progress=False,
                          say=Console(file=log_file, width=200).print)
    out = tmp_path / "demo"
    for path in ("data/synth.json", "analysis/concurrent_rate.npz", "train/config.toml",
                 "train/checkpoints/iter_00000003.pt", "predictions/val-detections.csv",
                 "predictions/untrained-detections.csv", "eval/trained.json",
                 "eval/untrained-per-class.csv", "report/detections.png", "report/summary.md",
                 "diagnose/trained/errors.csv", "diagnose/untrained/summary.json",
                 "report/html/index.html", "report/html/assets/report.js",
                 "eval/val-coco.json", "eval/trained-coco-results.json", "eval/trained-coco.json"):
        assert (out / path).is_file(), path
    coco = json.loads((out / "eval/trained-coco.json").read_text())
    assert set(coco["per_class_AP"]) and 0.0 <= coco["AP"] <= 1.0  # the json path ran the metric
    assert len(json.loads((out / "eval/val-coco.json").read_text())["images"]) == 6
    with open(result.per_class_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 6 and {"label", "name", "ap"} <= set(rows[0])
    assert not math.isnan(result.trained_map) and not math.isnan(result.untrained_map)
    summary = result.summary.read_text()
    assert f"{result.trained_map:.4f}" in summary and f"{result.untrained_map:.4f}" in summary
    log = (tmp_path / "log.txt").read_text()
    assert "untrained" in log and str(result.picture) in log.replace("\n", "")
    stamp = (out / "train/checkpoints/iter_00000003.pt").stat().st_mtime_ns
    with open(tmp_path / "log2.txt", "w") as log_file:
        again = run_demo(out, overrides=TINY, synth=TINY_SYNTH, progress=False,
                         say=Console(file=log_file).print)
    assert (out / "train/checkpoints/iter_00000003.pt").stat().st_mtime_ns == stamp
    assert again.trained_map == result.trained_map
