"""Helpers (not tests) of the tests that train: a fast config for the tiny synthetic dataset of
the ``tiny_data`` fixture (tests/conftest.py)."""

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


def write_tiny_study(root: Path, synth, overrides: list[str]) -> Path:
    """A study's input: the synthetic dataset ``synth`` (a ``SynthConfig``) under ``root/data``
    and the demo config with ``overrides`` saved as ``root/tiny.toml`` (returned)."""
    from wilddet.data.synthetic import write_dataset

    write_dataset(root / "data", synth)
    return write_config(root / "tiny.toml", with_overrides(demo_config(root / "data"), overrides))
