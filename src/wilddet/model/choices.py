"""The names of wilddet's classifiers: the one source of ``model.classifier_loss`` and
``model.test_scores`` values (the config, the model, ``wilddet predict`` and the studies import
them from here). Torch-free, so that reading a config does not import torch.

``test_scores`` takes the same names as ``classifier_loss``: each name stands for that loss's
natural test-time scores (``SCORE_ACTIVATION``), so a model trained with one loss can be scored
with another's activation (the 2×2 grid of method spec §2.2 trains softmax and tests CSM).
"""

from __future__ import annotations

import typing
from typing import Literal

ClassifierName = Literal["softmax", "concurrent_softmax", "sigmoid", "eql", "eqlv2", "seesaw",
                         "federated"]
CLASSIFIERS: tuple[str, ...] = typing.get_args(ClassifierName)

ScoreActivation = Literal["softmax", "concurrent_softmax", "sigmoid"]

# test_scores name -> the activation of the loss's natural scores (long-tail-losses spec §1-5)
SCORE_ACTIVATION: dict[str, ScoreActivation] = {
    "softmax": "softmax",
    "concurrent_softmax": "concurrent_softmax",
    "sigmoid": "sigmoid",
    "eql": "sigmoid",
    "eqlv2": "sigmoid",
    "seesaw": "softmax",
    "federated": "sigmoid",
}
assert set(SCORE_ACTIVATION) == set(CLASSIFIERS)

# backbone normalisation layers (model.backbone_norm; meanings in model.backbones)
BackboneNorm = Literal["auto", "frozen_bn", "group_norm", "sync_bn", "bn"]
BACKBONE_NORMS: tuple[str, ...] = typing.get_args(BackboneNorm)


def check_classifier_name(field: str, value: str) -> str:
    """``value`` if it is one of ``CLASSIFIERS``, else ValueError naming ``field``."""
    if value not in CLASSIFIERS:
        raise ValueError(f"{field} must be one of {', '.join(CLASSIFIERS)}; got {value!r}")
    return value
