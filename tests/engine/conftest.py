"""Shared by the engine tests: a tiny synthetic dataset (64 px images) and a fast config."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import tiny_config


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from wilddet.data.synthetic import SynthConfig, write_dataset

    root = tmp_path_factory.mktemp("engine") / "data"
    write_dataset(root, SynthConfig(train_images=16, val_images=6, classes=6, image_size=64,
                                    objects_per_image=2, seed=3))
    return root


@pytest.fixture(scope="session")
def trained(tiny_data, tmp_path_factory):
    """An uninterrupted 6-iteration run: (config, TrainResult)."""
    from wilddet.engine.train import train

    config = tiny_config(tiny_data)
    out = tmp_path_factory.mktemp("trained") / "run"
    return config, train(config, out, progress=False)
