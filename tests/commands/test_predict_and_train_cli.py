"""`wilddet predict` output read back by the evaluator; `wilddet train` / `predict` bad input:
one line naming the key or file, exit code 2, nothing written."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from engine_helpers import write_config

from wilddet.cli import main
from wilddet.data.oid_csv import align_images, read_boxes, read_classes, read_detections
from wilddet.engine.inference import predict
from wilddet.evaluation.oid_challenge import evaluate_challenge


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["wilddet", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_predict_csv_and_kaggle_are_read_back_by_the_evaluator(tiny_data, trained, tmp_path,
                                                               monkeypatch, capsys):
    _, result = trained
    out, kaggle = tmp_path / "dets.csv", tmp_path / "sub.csv"
    code, err = run_cli(monkeypatch, capsys, "predict", "--checkpoint", result.checkpoint,
                        "--images", tiny_data / "val", "--out", out, "--kaggle", kaggle,
                        "--batch-size", 4, "--num-workers", 0)
    assert code in (0, None), err
    header = out.read_text().splitlines()[0]
    assert header == "ImageID,LabelName,Score,XMin,XMax,YMin,YMax"
    classes = read_classes(tiny_data / "class-descriptions.csv")
    dets = read_detections(out, classes)
    from_kaggle = read_detections(kaggle, classes)
    assert len(dets) > 0 and len(dets) == len(from_kaggle)
    np.testing.assert_allclose(np.sort(dets.scores), np.sort(from_kaggle.scores), atol=1e-6)
    frame = pd.read_csv(out)
    assert frame[["XMin", "XMax", "YMin", "YMax", "Score"]].apply(
        lambda c: c.between(0, 1)).all().all()
    assert (frame.XMin <= frame.XMax).all() and (frame.YMin <= frame.YMax).all()
    val_ids = sorted(p.stem for p in (tiny_data / "val").iterdir())
    assert sorted(pd.read_csv(kaggle).ImageId) == val_ids  # every image, even without boxes
    gt = read_boxes(tiny_data / "val-annotations-bbox.csv", classes)
    gt, dets = align_images(gt, dets)
    result_map = evaluate_challenge(gt, None, dets, len(classes)).mean_ap
    assert 0.0 <= result_map <= 1.0


def test_predict_image_list_and_test_scores_switch(tiny_data, trained, tmp_path):
    _, result = trained
    ids = sorted(p.stem for p in (tiny_data / "val").iterdir())[:2]
    a = predict(result.checkpoint, tiny_data / "val", tmp_path / "a.csv", image_ids=ids,
                test_scores="softmax", num_workers=0, device="cpu")
    b = predict(result.checkpoint, tiny_data / "val", tmp_path / "b.csv", image_ids=ids,
                test_scores="concurrent_softmax", num_workers=0, device="cpu")
    assert list(a.image_ids) == ids == list(b.image_ids)
    assert set(pd.read_csv(tmp_path / "a.csv").ImageID) <= set(ids)
    assert not np.array_equal(np.sort(a.scores), np.sort(b.scores))


@pytest.mark.parametrize("args, words", [
    (["--test-scores", "cosine"], "--test-scores"),
    (["--images", "MISSING_DIR"], "image folder not found"),
    (["--image-list", "LIST_WITH_MISSING"], "image file not found"),
    (["--checkpoint", "NOT_A_CKPT"], "not a readable wilddet checkpoint"),
])
def test_predict_bad_input_writes_nothing(tiny_data, trained, tmp_path, monkeypatch, capsys,
                                          args, words):
    _, result = trained
    (tmp_path / "ids.txt").write_text("no-such-image\n")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    subst = {"MISSING_DIR": tmp_path / "nope", "LIST_WITH_MISSING": tmp_path / "ids.txt",
             "NOT_A_CKPT": tmp_path / "junk.pt"}
    opts = {"--checkpoint": result.checkpoint, "--images": tiny_data / "val",
            "--out": tmp_path / "out" / "d.csv"}
    for k in range(0, len(args), 2):
        opts[args[k]] = subst.get(args[k + 1], args[k + 1])
    code, err = run_cli(monkeypatch, capsys, "predict", *[x for kv in opts.items() for x in kv],
                        "--kaggle", tmp_path / "out" / "k.csv", "--num-workers", 0)
    assert code == 2 and words in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("setting, words", [
    ("train.max_itres=3", "train.max_itres: unknown key"),
    ("train.max_iters=three", "train.max_iters: expected int"),
    ("data.root=/no/such/dataset", "/no/such/dataset/class-descriptions.csv: not found"),
    ("model.rate_file=/no/rate.npz", "/no/rate.npz"),
])
def test_train_bad_input_is_one_line_and_writes_nothing(tiny_data, tmp_path, monkeypatch,
                                                        capsys, setting, words):
    from engine_helpers import tiny_config

    cfg = write_config(tmp_path / "c.toml", tiny_config(tiny_data))
    code, err = run_cli(monkeypatch, capsys, "train", cfg, "--out", tmp_path / "run",
                        "--set", setting)
    assert code == 2 and words in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "run").exists()


def test_train_bad_config_file_names_file_and_line(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[train]\nmax_iters = 10\nbatch = 2\n")
    code, err = run_cli(monkeypatch, capsys, "train", cfg, "--out", tmp_path / "run")
    assert code == 2 and f"{cfg}:3: train.batch: unknown key" in err
    assert not (tmp_path / "run").exists()


def test_train_plan_contradiction_names_the_config_file_and_key(tiny_data, tmp_path,
                                                                 monkeypatch, capsys):
    """Review H8: an empty sampler phase found by the run plan at train start used to be
    reported as 'config: ...' instead of the config file."""
    from engine_helpers import tiny_config

    cfg = write_config(tmp_path / "c.toml", tiny_config(tiny_data))
    code, err = run_cli(monkeypatch, capsys, "train", cfg, "--out", tmp_path / "run",
                        "--set", "sampling.kind=hybrid", "--set",
                        "sampling.non_balance_fraction=0.01")
    assert code == 2 and err.strip().count("\n") == 0, err
    assert f"{cfg}: sampling.non_balance_fraction: " in err and "empty" in err, err
    assert not (tmp_path / "run").exists()
