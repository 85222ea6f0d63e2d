"""Checkpoints and exact resume: SIGKILL a run after a checkpoint, resume, get the same weights
(and the same classifier state: EQLv2 gradient statistics, Seesaw class counts)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from engine_helpers import tiny_config, write_config

from wilddet.engine.checkpoint import list_checkpoints, load_checkpoint
from wilddet.engine.train import train
from wilddet.errors import InputError


def _weights(path):
    return load_checkpoint(path)["model"]


# the stateful heads' buffers, which must come back from the checkpoint
HEAD_STATE = {"concurrent_softmax": [],
              "eqlv2": ["roi_heads.classifier.eqlv2.pos_grad",
                        "roi_heads.classifier.eqlv2.neg_grad",
                        "roi_heads.classifier.eqlv2.num_updates"],
              "seesaw": ["roi_heads.classifier.seesaw.class_counts"]}


@pytest.mark.parametrize("loss", list(HEAD_STATE))
def test_sigkill_then_resume_equals_uninterrupted_run(loss, tiny_data, trained, tmp_path):
    config, reference = trained
    if loss != config.model.classifier_loss:
        config = tiny_config(tiny_data, f"model.classifier_loss={loss}")
    cfg_path = write_config(tmp_path / "run.toml", config)
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "wilddet", "train", str(cfg_path), "--out",
                             str(run), "--set", "train.max_iters=12",
                             "--set", "train.checkpoint_period_iters=3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = run / "checkpoints" / "iter_00000003.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    done = [int(p.stem.split("_")[1]) for p in list_checkpoints(run)]
    assert done and max(done) < 12  # killed mid-run, after at least one checkpoint

    from wilddet.config import with_overrides
    longer = with_overrides(config, ["train.max_iters=12", "train.checkpoint_period_iters=3"])
    resumed = train(longer, run, resume=True, progress=False)
    uninterrupted = train(longer, tmp_path / "straight", progress=False)
    a, b = _weights(resumed.checkpoint), _weights(uninterrupted.checkpoint)
    assert resumed.iteration == uninterrupted.iteration == 12
    assert set(a) == set(b) and set(HEAD_STATE[loss]) <= set(a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    if loss == "eqlv2":
        assert int(a["roi_heads.classifier.eqlv2.num_updates"]) == 12
    # the metrics log holds each iteration once, as if never interrupted
    lines = (run / "metrics.jsonl").read_text().splitlines()
    its = [json.loads(line)["iteration"] for line in lines]
    assert its == sorted(its) and len(its) == len(set(its))
    assert reference.iteration == 6  # the session run is untouched


def test_checkpoint_of_another_config_is_refused(trained, tmp_path):
    config, result = trained
    from wilddet.config import with_overrides

    before = sorted(p.name for p in result.run_dir.rglob("*"))
    other = with_overrides(config, ["optim.lr=0.5"])
    with pytest.raises(InputError) as err:
        train(other, result.run_dir, resume=True, progress=False)
    assert "another config" in str(err.value) and err.value.path.endswith("iter_00000006.pt")
    assert sorted(p.name for p in result.run_dir.rglob("*")) == before  # nothing written


def test_existing_run_needs_resume_and_a_finished_run_is_not_retrained(trained):
    config, result = trained
    with pytest.raises(InputError, match="--resume"):
        train(config, result.run_dir, progress=False)
    stamp = result.checkpoint.stat().st_mtime_ns
    again = train(config, result.run_dir, resume=True, progress=False)
    assert again.iteration == 6 and again.checkpoint == result.checkpoint
    assert result.checkpoint.stat().st_mtime_ns == stamp


def test_checkpoint_contents_and_run_folder(trained):
    _, result = trained
    state = load_checkpoint(result.checkpoint)
    assert {"model", "optimizer", "lr_scheduler", "schedule", "rng", "iteration",
            "fingerprint", "config", "classes"} <= set(state)
    assert [p.name for p in list_checkpoints(result.run_dir)] == [
        "iter_00000006.pt", "iter_00000004.pt", "iter_00000002.pt"]
    assert (result.run_dir / "config.toml").is_file()
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().split("\n")
               if x]
    assert [r["iteration"] for r in records] == [2, 4, 6]
    assert all({"loss", "lr", "images_per_s", "sampler/phase"} <= set(r) for r in records)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
