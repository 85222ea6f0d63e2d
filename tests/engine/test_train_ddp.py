"""DDP: 2 gloo processes under torchrun with b images each == 1 process with 2b images."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from ddp_deterministic_train import first_k_sampler
from engine_helpers import tiny_config, write_config

from wilddet.engine.checkpoint import load_checkpoint
from wilddet.engine.train import train

HELPER = Path(__file__).with_name("ddp_deterministic_train.py")


def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(tiny_data, tmp_path,
                                                                     monkeypatch):
    # EQLv2: its gradient statistics must be summed over the ranks (engine all_reduce_sum) for
    # the two set-ups to weight the loss alike from step 2 on; checked with the weights below
    steps = ["train.max_iters=4", "train.checkpoint_period_iters=4", "optim.lr=0.02",
             "model.classifier_loss=eqlv2"]
    two = tiny_config(tiny_data, *steps, "train.batch_size=1")   # 2 ranks x 1 image
    one = tiny_config(tiny_data, *steps, "train.batch_size=2")   # 1 rank x 2 images
    cfg = write_config(tmp_path / "ddp.toml", two)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(HELPER), str(cfg), str(tmp_path / "ddp")],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]

    from torchvision.models.detection import _utils as det_utils
    monkeypatch.setattr(det_utils.BalancedPositiveNegativeSampler, "__call__", first_k_sampler)
    single = train(one, tmp_path / "single", progress=False)

    ddp_state = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "iter_00000004.pt")
    ref = load_checkpoint(single.checkpoint)
    assert ddp_state["world_size"] == 2 and len(ddp_state["rng"]) == 2
    init = None
    moved = 0.0
    for key, value in ref["model"].items():
        torch.testing.assert_close(ddp_state["model"][key], value, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, k=key: f"{k}: {m}")
    # the weights did move (the comparison is not between two untouched initialisations)
    torch.manual_seed(one.train.seed)
    from wilddet.engine.builders import build_detector, load_meta
    init = build_detector(one.model, load_meta(one)).state_dict()
    moved = max(float((ref["model"][k].float() - init[k].float()).abs().max()) for k in init)
    assert moved > 1e-3
