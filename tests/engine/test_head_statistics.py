"""The classifier heads' class frequencies count what their RoI targets hold: hierarchy-expanded
labels exactly when the run expands the targets (long-tail-losses spec §2), whatever the
samplers count (``sampling.hierarchy_counts``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import tiny_config

from wilddet.engine import train as trainer
from wilddet.engine.builders import class_image_counts
from wilddet.engine.distributed import DistInfo


def _heads_image_freq(config, tmp_path) -> tuple[np.ndarray, object]:
    """(EQL's image_freq [C] of the model train() builds, the samplers' index)."""
    info = DistInfo(0, 0, 1, torch.device("cpu"), None)
    inputs = trainer._check_inputs(config, tmp_path / "run", False)
    data = trainer._build_data(config, inputs, info)
    parts, _, _ = trainer._resume_or_init(config, inputs, data, info)
    return parts.model.roi_heads.classifier.image_freq.numpy(), data, inputs


@pytest.mark.parametrize("targets_expanded", [False, True])
def test_eql_frequencies_follow_the_targets_not_the_sampler_counts(tiny_data, tmp_path,
                                                                   targets_expanded):
    config = tiny_config(tiny_data, "model.classifier_loss=eql", "model.test_scores=eql",
                         "sampling.hierarchy_counts=true",
                         f"model.hierarchy_targets={str(targets_expanded).lower()}")
    freq, data, inputs = _heads_image_freq(config, tmp_path)
    hierarchy = inputs.meta.hierarchy
    assert hierarchy is not None
    raw = trainer.open_box_cache(inputs.boxes_csv, inputs.meta.classes).class_image_index()
    expanded_counts, num_images = class_image_counts(raw, hierarchy)
    raw_counts, _ = class_image_counts(raw, None)
    assert not np.array_equal(raw_counts, expanded_counts)  # the case is not vacuous
    assert np.array_equal(data.index.images_per_class, expanded_counts)  # samplers: expanded
    want = (expanded_counts if targets_expanded else raw_counts) / num_images
    np.testing.assert_allclose(freq[1:], want)
