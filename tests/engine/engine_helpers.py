"""Helpers of the engine tests (not tests): a fast config for a tiny synthetic dataset."""

from __future__ import annotations

from pathlib import Path

from wilddet.config import Config, demo_config, dump_toml, with_overrides


def tiny_config(root: Path, *extra: str) -> Config:
    """The demo config shrunk to a handful of 64 px iterations, CPU, deterministic, no
    TensorBoard or val evaluation."""
    return with_overrides(demo_config(root), [
        "model.min_size_px=64", "model.max_size_px=64", "model.rpn_batch_size_per_image=32",
        "model.box_batch_size_per_image=32", "model.rpn_pre_nms_top_n_train=100",
        "model.rpn_post_nms_top_n_train=100", "model.rpn_pre_nms_top_n_test=100",
        "model.rpn_post_nms_top_n_test=100", "model.box_detections_per_img=50",
        "train.max_iters=6", "train.batch_size=2", "train.checkpoint_period_iters=2",
        "train.log_period_iters=2", "train.keep_checkpoints=0", "train.tensorboard=false",
        "train.deterministic=true", "train.device=cpu", "train.num_threads=1",
        "optim.warmup_iters=2", "optim.lr=0.01", "eval.period_iters=-1", "eval.batch_size=4",
        *extra])


def write_config(path: Path, config: Config) -> Path:
    path.write_text(dump_toml(config))
    return path
