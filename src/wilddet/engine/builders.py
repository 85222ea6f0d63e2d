"""Config -> objects: dataset metadata, the detector, the batch schedule, the optimiser.

Shapes: ``C`` classes (codes 0..C-1; the model's labels are 1..C with 0 background), ``I``
training images.

One ``match`` per choice, no registry. Both training and prediction build the detector here,
so a checkpoint's model is rebuilt with exactly the architecture it was trained with.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wilddet.config import Config, ModelConfig, OptimConfig, SamplingConfig
from wilddet.data.class_index import ClassImageIndex
from wilddet.data.hierarchy import Hierarchy, read_hierarchy
from wilddet.data.oid_csv import read_classes
from wilddet.data.rate_file import read_rate_file
from wilddet.data.records import ClassList
from wilddet.errors import InputError
from wilddet.sampling import HybridSchedule, default_hybrid_schedule, segment
from wilddet.sampling.samplers import build_sampler

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
    if config.data.format != "oid":
        classes, hierarchy = json_label_space(config)
    else:
        classes = read_classes(require_file(config, "classes"))
        hierarchy = None
        if config.data.hierarchy:
            hierarchy = read_hierarchy(require_file(config, "hierarchy"), classes)
    rate = None
    if config.model.rate_file:
        rate = read_rate_file(Path(config.model.rate_file), classes.labels)
    return DatasetMeta(classes, hierarchy, rate)


def json_label_space(config: Config) -> tuple[ClassList, Hierarchy | None]:
    """``data.format = "coco"|"lvis"``: the classes are the training json's categories; the
    hierarchy its ``oid_hierarchy``, else ``data.hierarchy`` when that file exists, else none."""
    from wilddet.data.coco.split import load_json_split
    from wilddet.data.hierarchy import parse_hierarchy

    path = require_file(config, "train_annotations")
    _, tables = load_json_split(path, config.data.format)
    if tables.hierarchy is not None:
        return tables.classes, parse_hierarchy(tables.hierarchy, tables.classes,
                                               f"{path}:oid_hierarchy")
    tree = config.data.path("hierarchy")
    if tree is not None and tree.is_file():
        return tables.classes, read_hierarchy(tree, tables.classes)
    return tables.classes, None


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


@dataclass(frozen=True)
class TrainingContext:
    """What a classifier head needs from a training run besides its config: the samplers'
    class <-> image index over the training items (class frequencies), the run seed and this
    process's rank (the federated draw), and ``reduce_sum`` (sum of a tensor over the ranks;
    the identity in one process) for the heads whose state is summed over ranks."""

    index: ClassImageIndex
    seed: int = 0
    rank: int = 0
    reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None


def build_detector(model_cfg: ModelConfig, meta: DatasetMeta,
                   training: TrainingContext | None = None) -> torch.nn.Module:
    """The Faster R-CNN of ``wilddet.model.build`` for ``meta``'s classes, configured by
    ``model_cfg``, with the classifier of ``build_classifier``. ``training`` None (inference,
    a checkpoint follows): heads that need training-data statistics leave them unset until
    ``load_state_dict``. Initialisation draws from torch's global generator (seed it first)."""
    from wilddet.model.build import build_model

    pretrained = model_cfg.pretrained_backbone
    if pretrained not in ("", "DEFAULT") and not Path(pretrained).is_file():
        raise InputError(pretrained, "backbone weights not found (model.pretrained_backbone)")
    use_hierarchy = model_cfg.multi_hot and model_cfg.hierarchy_targets
    return build_model(build_classifier(model_cfg, meta, training),
                       detector_settings(model_cfg),
                       hierarchy=meta.hierarchy if use_hierarchy else None)


def detector_settings(model_cfg: ModelConfig):
    """``model.build.DetectorSettings`` from the ``[model]`` fields of the same names."""
    from wilddet.model.build import DetectorSettings

    names = {f.name for f in dataclasses.fields(DetectorSettings)}
    return DetectorSettings(**{f.name: getattr(model_cfg, f.name)
                               for f in dataclasses.fields(model_cfg) if f.name in names})


def csm_test_rate(model_cfg: ModelConfig, meta: DatasetMeta) -> np.ndarray | None:
    """[C, C] rate of test-time CSM scores: the training rate, plus r = 1 between each class and
    its ancestors with ``model.csm_test_hierarchy_pairs`` (when a hierarchy is loaded)."""
    if not (model_cfg.csm_test_hierarchy_pairs and meta.hierarchy is not None):
        return meta.rate
    from wilddet.stats.concurrency import add_hierarchy_pairs

    base = meta.rate if meta.rate is not None else np.zeros((len(meta.classes),) * 2, np.float32)
    return add_hierarchy_pairs(base, meta.hierarchy)


def build_classifier(model_cfg: ModelConfig, meta: DatasetMeta,
                     training: TrainingContext | None = None):
    """The ``model.classifiers`` head of ``model.classifier_loss`` with its config section,
    ``meta``'s rate and the test-time scores ``model.test_scores``."""
    from wilddet.model import classifiers as heads

    m = model_cfg
    num_classes = len(meta.classes)
    scoring = {"test_scores": m.test_scores, "test_rate": csm_test_rate(m, meta),
               "tau": m.csm_tau}
    counts, num_images, seed, rank, reduce_sum = None, 1, 0, 0, None  # inference
    if training is not None:
        counts, num_images = class_image_counts(
            training.index, meta.hierarchy if m.multi_hot and m.hierarchy_targets else None)
        seed, rank, reduce_sum = training.seed, training.rank, training.reduce_sum
    match m.classifier_loss:
        case "softmax":
            return heads.SoftmaxCE(num_classes, **scoring)
        case "concurrent_softmax":
            return heads.ConcurrentSoftmax(num_classes, meta.rate,
                                           normalize_by_positives=m.normalize_by_positives,
                                           **scoring)
        case "sigmoid":
            return heads.SigmoidBCE(num_classes, **scoring)
        case "eql":
            return heads.EQL(num_classes, counts, num_images, lam=m.eql.lam, **scoring)
        case "eqlv2":
            return heads.EQLv2Head(num_classes, gamma=m.eqlv2.gamma, mu=m.eqlv2.mu,
                                   alpha=m.eqlv2.alpha, reduce_sum=reduce_sum, **scoring)
        case "seesaw":
            return heads.SeesawHead(num_classes, meta.rate if m.seesaw.use_rate else None,
                                    p=m.seesaw.p, q=m.seesaw.q, eps=m.seesaw.eps,
                                    reduce_sum=reduce_sum, **scoring)
        case "federated":
            return heads.Federated(num_classes, counts,
                                   num_sampled_classes=m.federated.num_sampled_classes,
                                   freq_power=m.federated.freq_power, seed=seed, rank=rank,
                                   **scoring)
        case other:  # pragma: no cover - ModelConfig rules it out
            raise ValueError(f"unknown model.classifier_loss {other!r}")


def class_image_counts(index: ClassImageIndex, hierarchy: Hierarchy | None
                       ) -> tuple[np.ndarray, int]:
    """(N_c [C] images of the index that contain class c, I images): the class frequencies of
    the heads; with ``hierarchy``, an image also counts for every ancestor of its classes (the
    targets of a run that expands them). Expanding an expanded index changes nothing."""
    if hierarchy is None:
        return index.images_per_class, index.num_images
    images = np.repeat(np.arange(index.num_images), index.classes_per_image)
    expanded = ClassImageIndex.from_codes(images, index.image_classes, index.num_images,
                                          index.num_classes, hierarchy)
    return expanded.images_per_class, index.num_images


def training_index(cache, image_ids: list[str] | None, config: Config, meta: DatasetMeta
                   ) -> ClassImageIndex:
    """The samplers' class<->image index over the dataset's items (cache codes, or positions in
    ``image_ids``); hierarchy-expanded counts with ``sampling.hierarchy_counts``."""
    hier = meta.hierarchy if config.sampling.hierarchy_counts else None
    if image_ids is None and hier is None:
        return cache.class_image_index()  # memory-mapped, built once with the cache
    codes = np.asarray(cache.image_codes)
    labels = np.asarray(cache.label_codes)
    if image_ids is None:
        return ClassImageIndex.from_codes(codes, labels, cache.num_images, len(meta.classes), hier)
    position = np.full(cache.num_images, -1, np.int64)
    for pos, image_id in enumerate(image_ids):
        code = cache.image_code(image_id)
        if code >= 0:
            position[code] = pos
    mapped = position[codes]
    keep = mapped >= 0
    return ClassImageIndex.from_codes(mapped[keep], labels[keep], len(image_ids),
                                      len(meta.classes), hier)


def classifier_index(cache, image_ids: list[str] | None, config: Config, meta: DatasetMeta,
                     sampler_index: ClassImageIndex) -> ClassImageIndex:
    """The index whose class counts the classifier heads use (``class_image_counts``): the
    samplers' own, unless that one counts hierarchy-expanded labels (``sampling.hierarchy_counts``)
    while the RoI targets are not expanded; then the index of the labels as annotated."""
    m = config.model
    if (not config.sampling.hierarchy_counts or meta.hierarchy is None
            or (m.multi_hot and m.hierarchy_targets)):
        return sampler_index
    as_annotated = dataclasses.replace(
        config, sampling=dataclasses.replace(config.sampling, hierarchy_counts=False))
    return training_index(cache, image_ids, as_annotated, meta)


def build_schedule(sampling: SamplingConfig, index: ClassImageIndex, *, batch_size: int,
                   max_iters: int, world_size: int, seed: int) -> HybridSchedule:
    """Every sampler kind as a ``HybridSchedule`` (one segment unless "hybrid"), so batches are a
    function of (seeds, iteration, rank) and resume needs only the iteration."""
    match sampling.kind:
        case "hybrid":
            return default_hybrid_schedule(index, batch_size=batch_size, max_iters=max_iters,
                                           world_size=world_size, seed=seed, lam=sampling.lam,
                                           non_balance_fraction=sampling.non_balance_fraction,
                                           non_balance_min_epochs=sampling.non_balance_min_epochs,
                                           balance_first=sampling.hybrid_order == "balance-first")
        case kind:
            sampler = build_sampler(kind, index, lam=sampling.lam,
                                    repeat_threshold=sampling.repeat_threshold, seed=seed)
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
