"""Config -> objects: dataset metadata, the detector, the batch schedule, the optimiser.

Shapes: ``C`` classes (codes 0..C-1; the model's labels are 1..C with 0 background), ``I``
training images.

One ``match`` per choice, no registry. Both training and prediction build the detector here,
so a checkpoint's model is rebuilt with exactly the architecture it was trained with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wilddet.config import Config, ModelConfig, OptimConfig, SamplingConfig
from wilddet.data.hierarchy import Hierarchy, read_hierarchy
from wilddet.data.oid_csv import read_classes
from wilddet.data.records import ClassList
from wilddet.errors import InputError
from wilddet.sampling import (
    ClassImageIndex,
    HybridSchedule,
    NonBalanceSampler,
    RepeatFactorSampler,
    SoftBalanceSampler,
    default_hybrid_schedule,
    segment,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetMeta:
    """What the model needs to know about the label space."""

    classes: ClassList
    hierarchy: Hierarchy | None
    rate: np.ndarray | None   # [C, C] float32 concurrent rate (class codes), None = r ≡ 0


def require_file(config: Config, name: str) -> Path:
    """Resolved path of data file field ``name``; InputError naming the key and the file."""
    path = config.data.path(name)
    if path is None:
        raise InputError(None, "a file is required here", field=f"data.{name}")
    if not path.exists():
        raise InputError(path, f"not found (data.{name})")
    return path


def load_meta(config: Config) -> DatasetMeta:
    """Read the class list, the hierarchy (if ``data.hierarchy``) and the rate matrix (if
    ``model.rate_file``)."""
    classes = read_classes(require_file(config, "classes"))
    hierarchy = None
    if config.data.hierarchy:
        hierarchy = read_hierarchy(require_file(config, "hierarchy"), classes)
    rate = None
    if config.model.rate_file:
        rate = read_rate_file(Path(config.model.rate_file), classes)
    return DatasetMeta(classes, hierarchy, rate)


def read_rate_file(path: Path, classes: ClassList) -> np.ndarray:
    """[C, C] float32 rate from ``wilddet analyze``'s ``concurrent_rate.npz`` in ``classes``
    order (``model.load_rate_matrix``; InputError naming the file when it does not fit)."""
    from wilddet.model.build import load_rate_matrix

    return load_rate_matrix(path, classes.labels)


def hierarchy_to_state(hierarchy: Hierarchy | None) -> dict | None:
    """Plain lists (checkpoint-safe) of a ``Hierarchy``."""
    if hierarchy is None:
        return None
    return {"ancestors": [a.tolist() for a in hierarchy.ancestors],
            "descendants": [d.tolist() for d in hierarchy.descendants],
            "depth": hierarchy.depth.tolist(), "missing": list(hierarchy.missing)}


def hierarchy_from_state(state: dict | None) -> Hierarchy | None:
    if state is None:
        return None
    return Hierarchy(tuple(np.asarray(a, np.int32) for a in state["ancestors"]),
                     tuple(np.asarray(d, np.int32) for d in state["descendants"]),
                     np.asarray(state["depth"], np.int32), tuple(state["missing"]))


def build_detector(model_cfg: ModelConfig, meta: DatasetMeta) -> torch.nn.Module:
    """The Faster R-CNN of ``wilddet.model.build`` for ``meta``'s classes, configured by
    ``model_cfg``. Initialisation draws from torch's global generator (seed it first)."""
    from wilddet.model.build import build_model

    pretrained = model_cfg.pretrained_backbone or None
    if pretrained not in (None, "DEFAULT") and not Path(pretrained).is_file():
        raise InputError(pretrained, "backbone weights not found (model.pretrained_backbone)")
    use_hierarchy = model_cfg.multi_hot and model_cfg.hierarchy_targets
    m = model_cfg
    test_rate = None
    if m.csm_test_hierarchy_pairs and meta.hierarchy is not None:
        from wilddet.stats.concurrency import add_hierarchy_pairs

        base = meta.rate if meta.rate is not None else \
            np.zeros((len(meta.classes),) * 2, np.float32)
        test_rate = add_hierarchy_pairs(base, meta.hierarchy)
    return build_model(
        len(meta.classes), backbone=m.backbone, classifier_loss=m.classifier_loss,
        test_scores=m.test_scores, rate=meta.rate, test_rate=test_rate, tau=m.csm_tau,
        hierarchy=meta.hierarchy if use_hierarchy else None, multi_hot=m.multi_hot,
        multi_hot_iou=m.multi_hot_iou, class_agnostic_regression=m.class_agnostic_regression,
        normalize_by_positives=m.normalize_by_positives,
        trainable_backbone_layers=m.trainable_backbone_layers, pretrained_backbone=pretrained,
        min_size=m.min_size_px, max_size=m.max_size_px, box_score_thresh=m.box_score_thresh,
        box_nms_thresh=m.box_nms_thresh, box_detections_per_img=m.box_detections_per_img,
        box_batch_size_per_image=m.box_batch_size_per_image,
        rpn_batch_size_per_image=m.rpn_batch_size_per_image,
        rpn_pre_nms_top_n_train=m.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=m.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=m.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=m.rpn_post_nms_top_n_test)


def build_schedule(sampling: SamplingConfig, index: ClassImageIndex, *, batch_size: int,
                   max_iters: int, world_size: int, seed: int) -> HybridSchedule:
    """Every sampler kind as a ``HybridSchedule`` (one segment unless "hybrid"), so batches are a
    function of (seeds, iteration, rank) and resume needs only the iteration."""
    match sampling.kind:
        case "hybrid":
            return default_hybrid_schedule(index, batch_size=batch_size, max_iters=max_iters,
                                           world_size=world_size, seed=seed, lam=sampling.lam,
                                           non_balance_fraction=sampling.non_balance_fraction)
        case "non-balance":
            sampler = NonBalanceSampler(index, seed=seed)
        case "class-aware":
            sampler = SoftBalanceSampler(index, 0.0, seed=seed)
        case "soft-balance":
            sampler = SoftBalanceSampler(index, sampling.lam, seed=seed)
        case "repeat-factor":
            sampler = RepeatFactorSampler(index, sampling.repeat_threshold, seed=seed)
        case other:  # pragma: no cover - the config's Literal rules it out
            raise ValueError(f"unknown sampler {other!r}")
    return HybridSchedule([segment(sampler)], batch_size=batch_size, max_iters=max_iters,
                          world_size=world_size)


def build_optimizer(model: torch.nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over trainable parameters; no weight decay on norms and biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    match optim.optimizer:
        case "sgd":
            return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)
        case "adamw":
            return torch.optim.AdamW(groups, lr=optim.lr)
        case other:  # pragma: no cover
            raise ValueError(f"unknown optimizer {other!r}")
