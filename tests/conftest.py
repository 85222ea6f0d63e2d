"""Shared fixtures of every test folder: small files written into tmp_path, one torch thread, the
tiny synthetic dataset and a 6-iteration run trained on it (helpers: ``engine_helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import tiny_config

from wilddet.resources import OPENIMAGES_DIR as RESOURCES  # noqa: F401


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test: the test machine is shared, several threads per op thrash."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def random_codes():
    """random_codes(seed, num_images=60, num_classes=7, num_boxes=150) -> (image_codes [N],
    label_codes [N]) int32 of random boxes with long-tailed labels, P(c) ∝ (c + 1)^-1.5."""
    import numpy as np

    def _codes(seed, num_images=60, num_classes=7, num_boxes=150):
        rng = np.random.default_rng(seed)
        weights = 1.0 / np.arange(1, num_classes + 1) ** 1.5
        labels = rng.choice(num_classes, num_boxes, p=weights / weights.sum()).astype(np.int32)
        images = rng.integers(0, num_images, num_boxes).astype(np.int32)
        return images, labels

    return _codes


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A tiny synthetic dataset: 16 train / 6 val images of 64 px, 6 classes."""
    from wilddet.data.synthetic import SynthConfig, write_dataset

    root = tmp_path_factory.mktemp("engine") / "data"
    write_dataset(root, SynthConfig(train_images=16, val_images=6, classes=6, image_size=64,
                                    objects_per_image=2, seed=3))
    return root


@pytest.fixture(scope="session")
def trained(tiny_data, tmp_path_factory):
    """An uninterrupted 6-iteration run on ``tiny_data``: (config, TrainResult)."""
    from wilddet.engine.train import train

    config = tiny_config(tiny_data)
    out = tmp_path_factory.mktemp("trained") / "run"
    return config, train(config, out, progress=False)


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> Path of a new file under tmp_path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write
