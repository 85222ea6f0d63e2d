"""`wilddet train` with each of the seven classifier losses on the tiny synthetic data, then
`wilddet predict` with the loss's natural scores: the run trains, its head state is in the
checkpoint, and the detections are valid scores."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from engine_helpers import tiny_config, write_config
from typer.testing import CliRunner

from wilddet.cli import app
from wilddet.engine.checkpoint import load_checkpoint
from wilddet.model.choices import CLASSIFIERS

# persistent state of each head in the checkpoint (beyond the network's weights)
HEAD_STATE = {
    "eql": ["image_freq"],
    "eqlv2": ["eqlv2.pos_grad", "eqlv2.neg_grad", "eqlv2.num_updates"],
    "seesaw": ["seesaw.class_counts"],
    "federated": ["freq_weight", "iteration"],
}


@pytest.mark.parametrize("loss", CLASSIFIERS)
def test_train_then_predict_with_each_loss(loss, tiny_data, tmp_path):
    config = tiny_config(tiny_data, f"model.classifier_loss={loss}", f"model.test_scores={loss}",
                         "train.max_iters=2", "model.federated.num_sampled_classes=3")
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(write_config(tmp_path / "c.toml", config)),
                                 "--out", str(run)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    checkpoint = run / "checkpoints" / "iter_00000002.pt"
    state = load_checkpoint(checkpoint)
    assert state["config"]["model"]["classifier_loss"] == loss
    heads = {k.removeprefix("roi_heads.classifier."): v for k, v in state["model"].items()
             if k.startswith("roi_heads.classifier.")}
    assert sorted(heads) == sorted(HEAD_STATE.get(loss, []))
    if loss in ("eqlv2", "federated"):  # one update per iteration
        step = heads["eqlv2.num_updates" if loss == "eqlv2" else "iteration"]
        assert int(step) == 2
    if loss == "seesaw":
        assert heads["seesaw.class_counts"][1:].sum() > 0 and heads["seesaw.class_counts"][0] == 0
    out = tmp_path / "dets.csv"
    result = runner.invoke(app, ["predict", "--checkpoint", str(checkpoint), "--images",
                                 str(tiny_data / "val"), "--out", str(out), "--num-workers", "0",
                                 "--batch-size", "6"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    dets = pd.read_csv(out)
    assert len(dets) > 0
    assert dets.Score.between(0, 1).all() and all(math.isfinite(s) for s in dets.Score)
