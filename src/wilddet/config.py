"""Typed run configuration: frozen dataclasses read from TOML or YAML, overridable with ``--set``.

One ``Config`` holds ``data``, ``model``, ``sampling``, ``optim``, ``train`` and ``eval`` sections;
every field is addressed as ``section.field`` (``--set train.max_iters=2000``). Field names carry
their units (``*_iters`` iterations, ``*_px`` pixels). Validation happens in ``__post_init__``;
the loaders turn every problem (unknown key, wrong type, value out of range) into one
``InputError`` naming the file, the line when it can be found, and the key.

Presets are functions (``demo_config``, ``r50_fpn_config``); variants use ``dataclasses.replace``
or ``with_overrides``. Relative data paths are resolved against ``data.root`` (itself relative to
the working directory).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from wilddet.errors import InputError
from wilddet.model.choices import CLASSIFIERS, BackboneNorm, ClassifierName

Backbone = Literal["resnet50", "resnet18", "mobilenet_v3_large", "tiny"]
SamplerKind = Literal["hybrid", "non-balance", "class-aware", "class-aware-cyclic", "soft-balance",
                      "repeat-factor"]


class ConfigValueError(ValueError):
    """A value that has the right type but is not allowed; ``key`` is ``section.field``."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigValueError(key, message)


DataFormat = Literal["oid", "coco", "lvis"]


@dataclass(frozen=True)
class DataConfig:
    """Dataset files. Relative paths are resolved against ``root``; "" disables an optional file.

    ``format = "coco"|"lvis"``: annotations from the COCO / LVIS json files ``train_annotations``
    / ``val_annotations`` (classes = their categories; ``classes``, ``train_boxes``, ``val_boxes``,
    ``val_image_labels`` are not read; ``hierarchy`` only if the json has no ``oid_hierarchy``
    and the file exists); images are ``<train_images|val_images>/<file_name stem>.jpg|jpeg|png``,
    and the val metric is COCO's / LVIS's.
    """

    root: str = ""
    format: DataFormat = "oid"
    train_annotations: str = ""                      # format coco|lvis: GT json
    val_annotations: str = ""
    classes: str = "class-descriptions.csv"
    hierarchy: str = "hierarchy.json"
    train_images: str = "train"                      # folder of <ImageID>.jpg
    train_boxes: str = "train-annotations-bbox.csv"
    train_image_list: str = ""                       # optional: one ImageID per line
    val_images: str = "val"
    val_boxes: str = "val-annotations-bbox.csv"
    val_image_labels: str = "val-annotations-human-imagelabels.csv"
    val_image_list: str = ""
    cache_dir: str = ""          # "" = .wilddet-cache/ beside each annotation CSV
    num_workers: int = 2         # DataLoader workers per rank

    def __post_init__(self):
        _require(self.num_workers >= 0, "data.num_workers", "must be >= 0")
        _require(self.format == "oid" or bool(self.train_annotations), "data.train_annotations",
                 f'format "{self.format}" needs the training json')

    @property
    def train_annotation_field(self) -> str:
        """The field naming the training ground truth: ``train_boxes`` or ``train_annotations``."""
        return "train_boxes" if self.format == "oid" else "train_annotations"

    @property
    def val_annotation_field(self) -> str:
        """The field naming the val ground truth: ``val_boxes`` or ``val_annotations``."""
        return "val_boxes" if self.format == "oid" else "val_annotations"

    @property
    def has_val_split(self) -> bool:
        """Both the val ground truth and the val image folder are configured."""
        return bool(getattr(self, self.val_annotation_field) and self.val_images)

    def path(self, name: str) -> Path | None:
        """The resolved path of file field ``name`` (None when the field is "")."""
        value = getattr(self, name)
        if not value:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() or not self.root else Path(self.root).expanduser() / p


@dataclass(frozen=True)
class EQLConfig:
    """``[model.eql]``: Equalization Loss (Tan et al., CVPR 2020; long-tail-losses spec §2)."""

    lam: float = 1.76e-3    # λ: classes in fewer than this fraction of training images are rare

    def __post_init__(self):
        _require(0 <= self.lam <= 1, "model.eql.lam", "must be in [0, 1]")


@dataclass(frozen=True)
class EQLv2Config:
    """``[model.eqlv2]``: gradient-guided reweighting (Tan et al., CVPR 2021; spec §3),
    φ(x) = 1 / (1 + exp(-gamma (x - mu))), positive weights 1 + alpha (1 - φ)."""

    gamma: float = 12.0
    mu: float = 0.8
    alpha: float = 4.0

    def __post_init__(self):
        _require(self.gamma > 0, "model.eqlv2.gamma", "must be > 0")
        _require(self.alpha >= 0, "model.eqlv2.alpha", "must be >= 0")


@dataclass(frozen=True)
class SeesawConfig:
    """``[model.seesaw]``: Seesaw loss (Wang et al., CVPR 2021; spec §4): mitigation exponent
    p, compensation exponent q, eps; ``use_rate`` multiplies the weights by (1 - r)^csm_tau of
    ``model.rate_file`` (seesaw × concurrent softmax)."""

    p: float = 0.8
    q: float = 2.0
    eps: float = 1e-2
    use_rate: bool = False

    def __post_init__(self):
        _require(self.p >= 0, "model.seesaw.p", "must be >= 0")
        _require(self.q >= 0, "model.seesaw.q", "must be >= 0")
        _require(self.eps > 0, "model.seesaw.eps", "must be > 0")


@dataclass(frozen=True)
class FederatedConfig:
    """``[model.federated]``: federated loss (Zhou et al. 2021; spec §5): BCE over the batch's
    positive classes plus classes drawn ∝ (image count)^freq_power, ``num_sampled_classes``
    in all."""

    num_sampled_classes: int = 50
    freq_power: float = 0.5

    def __post_init__(self):
        _require(self.num_sampled_classes >= 1, "model.federated.num_sampled_classes",
                 "must be >= 1")
        _require(self.freq_power >= 0, "model.federated.freq_power", "must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    """Faster R-CNN + FPN with a swappable classifier (method spec §2; the losses:
    long-tail-losses spec). Each loss with parameters has its sub-section ``[model.<loss>]``;
    only the one of ``classifier_loss`` is used (and fingerprinted)."""

    backbone: Backbone = "resnet50"
    classifier_loss: ClassifierName = "concurrent_softmax"
    test_scores: ClassifierName = "concurrent_softmax"   # a loss's name = its natural scores
    rate_file: str = ""              # concurrent_rate.npz from `wilddet analyze`; "" = r ≡ 0
    multi_hot: bool = True           # RoI targets = labels of IoU>0.9 duplicates (+ ancestors)
    hierarchy_targets: bool = True   # add ancestors to multi-hot targets (needs data.hierarchy)
    class_agnostic_regression: bool = True
    pretrained_backbone: str = ""    # "" random init, "DEFAULT" torchvision weights, or a path
    trainable_backbone_layers: int = 3
    # "auto": FrozenBatchNorm with pretrained weights, GroupNorm from scratch; also "frozen_bn",
    # "group_norm", "sync_bn" (SyncBatchNorm under DDP on CUDA), "bn" (per-rank BatchNorm)
    backbone_norm: BackboneNorm = "auto"
    min_size_px: int = 800
    max_size_px: int = 1333
    csm_tau: float = 1.0             # exponent on (1 - r_ij)
    # Test-time CSM: also set r = 1 between each class and its ancestors (needs data.hierarchy),
    # so a box keeps high scores for a class and its parents; the training loss is unaffected.
    csm_test_hierarchy_pairs: bool = True
    multi_hot_iou: float = 0.9       # GT boxes with IoU above this are one object
    normalize_by_positives: bool = False   # CSM loss: mean over positive labels, not RoIs
    box_score_thresh: float = 1e-4   # detections kept at test time (Open Images: keep many)
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 300   # per-image cap after NMS (torchvision's parameter)
    box_pre_nms_top_n: int = 0       # per image, top (box, class) candidates kept before NMS
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    rpn_pre_nms_top_n_train: int = 2000   # per FPN level
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    eql: EQLConfig = field(default_factory=EQLConfig)
    eqlv2: EQLv2Config = field(default_factory=EQLv2Config)
    seesaw: SeesawConfig = field(default_factory=SeesawConfig)
    federated: FederatedConfig = field(default_factory=FederatedConfig)

    def __post_init__(self):
        for name in ("classifier_loss", "test_scores"):
            _require(getattr(self, name) in CLASSIFIERS, f"model.{name}",
                     f"must be one of {', '.join(CLASSIFIERS)}")
        _require(self.min_size_px >= 16, "model.min_size_px", "must be >= 16")
        _require(self.max_size_px >= self.min_size_px, "model.max_size_px",
                 "must be >= model.min_size_px")
        _require(0 <= self.box_score_thresh <= 1, "model.box_score_thresh", "must be in [0, 1]")
        _require(0 < self.box_nms_thresh <= 1, "model.box_nms_thresh", "must be in (0, 1]")
        _require(self.box_detections_per_img >= 1, "model.box_detections_per_img", "must be >= 1")
        _require(self.box_pre_nms_top_n >= 0, "model.box_pre_nms_top_n",
                 "must be >= 0 (0 = off)")
        _require(self.rpn_batch_size_per_image >= 1, "model.rpn_batch_size_per_image",
                 "must be >= 1")
        _require(self.box_batch_size_per_image >= 1, "model.box_batch_size_per_image",
                 "must be >= 1")
        _require(0 <= self.trainable_backbone_layers <= 6, "model.trainable_backbone_layers",
                 "must be in [0, 6]")
        _require(self.csm_tau >= 0, "model.csm_tau", "must be >= 0")
        _require(0 < self.multi_hot_iou <= 1, "model.multi_hot_iou", "must be in (0, 1]")
        for name in ("rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train",
                     "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test"):
            _require(getattr(self, name) >= 1, f"model.{name}", "must be >= 1")


@dataclass(frozen=True)
class SamplingConfig:
    """Which images make up each batch (method spec §3).

    kind "hybrid": non-balance for ``non_balance_fraction`` of the run (round(f * max_iters)
    iterations; at least ``non_balance_min_epochs`` epochs of the training set when that is > 0,
    e.g. 1.0 = every image visited once), then soft-balance(``lam``) to the end. Both are
    fractions of the run, so the phases keep their share on any number of GPUs; a phase that
    comes out empty stops the run before it starts (``wilddet plan`` shows the phases). The
    other kinds use one sampler throughout.
    """

    kind: SamplerKind = "hybrid"
    lam: float = 0.5
    non_balance_fraction: float = 0.5
    non_balance_min_epochs: float = 0.0   # 0 = the fraction alone sizes the phases
    # "hybrid": which phase comes first (the LR decay of a "step" schedule falls in the last)
    hybrid_order: Literal["non-balance-first", "balance-first"] = "non-balance-first"
    repeat_threshold: float = 0.001
    hierarchy_counts: bool = False   # N_c counts hierarchy-expanded labels

    def __post_init__(self):
        _require(0 <= self.lam <= 1, "sampling.lam", "must be in [0, 1]")
        _require(0 <= self.non_balance_fraction <= 1, "sampling.non_balance_fraction",
                 "must be in [0, 1]")
        _require(self.non_balance_min_epochs >= 0, "sampling.non_balance_min_epochs",
                 "must be >= 0")
        _require(self.repeat_threshold > 0, "sampling.repeat_threshold", "must be > 0")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and LR schedule: lr(i) = lr * warmup(i) * decay(i) (see engine.lr_schedule).

    ``lr_scaling`` "none": ``lr`` is the LR of the run whatever its global batch G; "linear":
    ``lr`` is the LR at ``reference_batch_size`` images per global batch and the run uses
    lr * G / reference_batch_size (Goyal et al., 2017). LR steps are given in iterations
    (``lr_step_iters``) or in epochs of the training set (``lr_step_epochs``), not both.
    """

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.02                  # at reference_batch_size when lr_scaling = "linear"
    lr_scaling: Literal["none", "linear"] = "none"
    reference_batch_size: int = 16    # images per global batch that ``lr`` is tuned for
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    warmup_factor: float = 0.001      # lr multiplier at iteration 0, linear to 1
    lr_schedule: Literal["step", "cosine", "constant"] = "step"
    lr_step_iters: tuple[int, ...] = ()   # "step": () = 2/3 and 8/9 of max_iters
    lr_step_epochs: tuple[float, ...] = ()   # "step": the same in epochs (instead of iterations)
    gamma: float = 0.1                # "step": factor at each step
    min_lr_factor: float = 0.0        # "cosine": final lr / lr
    grad_clip_norm: float = 0.0       # 0 = off

    def __post_init__(self):
        _require(self.lr > 0, "optim.lr", "must be > 0")
        _require(self.reference_batch_size >= 1, "optim.reference_batch_size", "must be >= 1")
        _require(0 <= self.momentum < 1, "optim.momentum", "must be in [0, 1)")
        _require(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        _require(self.warmup_iters >= 0, "optim.warmup_iters", "must be >= 0")
        _require(0 < self.warmup_factor <= 1, "optim.warmup_factor", "must be in (0, 1]")
        _require(all(s > 0 for s in self.lr_step_iters), "optim.lr_step_iters",
                 "steps must be > 0")
        _require(list(self.lr_step_iters) == sorted(self.lr_step_iters), "optim.lr_step_iters",
                 "steps must be increasing")
        _require(all(s > 0 for s in self.lr_step_epochs), "optim.lr_step_epochs",
                 "steps must be > 0")
        _require(list(self.lr_step_epochs) == sorted(self.lr_step_epochs),
                 "optim.lr_step_epochs", "steps must be increasing")
        _require(not (self.lr_step_iters and self.lr_step_epochs), "optim.lr_step_epochs",
                 "give LR steps in iterations (optim.lr_step_iters) or in epochs, not both")
        _require(0 < self.gamma <= 1, "optim.gamma", "must be in (0, 1]")
        _require(0 <= self.min_lr_factor <= 1, "optim.min_lr_factor", "must be in [0, 1]")
        _require(self.grad_clip_norm >= 0, "optim.grad_clip_norm", "must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop. AMP and channels-last apply on CUDA only.

    Batch: ``global_batch_size`` G > 0 fixes the images per iteration over all ranks (each of W
    ranks takes G / W, which must be a whole number; ``batch_size`` is then not used); with
    ``global_batch_size = 0``, ``batch_size`` is the images *per rank* and G = batch_size * W.
    Length: ``max_epochs`` > 0 runs ceil(max_epochs * I / G) iterations over I training images
    (``max_iters`` is then not used); ``max_epochs = 0`` runs ``max_iters``. ``wilddet plan``
    prints what a config resolves to on a given number of ranks.
    """

    max_iters: int = 90_000
    max_epochs: float = 0.0            # > 0: the run length in epochs of the training set
    batch_size: int = 2                # images per rank (when global_batch_size = 0)
    global_batch_size: int = 0         # > 0: images per iteration over all ranks
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = 0               # torch CPU threads; 0 = torch's default (one per core)
    amp: Literal["off", "bf16", "fp16"] = "bf16"
    channels_last: bool = True
    hflip: bool = True                 # random horizontal flip (seeded by seed, iteration, rank)
    deterministic: bool = False        # torch.use_deterministic_algorithms (exact resume tests)
    checkpoint_period_iters: int = 5000
    keep_checkpoints: int = 3          # newest checkpoints kept (0 = all)
    log_period_iters: int = 20
    tensorboard: bool = True           # scalars in RUN_DIR/tensorboard (rank 0)
    find_unused_parameters: bool = False   # DDP: for models with parameters a step may not use
    # process-group timeout: the longest any rank may wait in a collective, e.g. while the
    # others finish their share of a periodic evaluation and rank 0 scores it
    dist_timeout_s: float = 1800.0

    def __post_init__(self):
        _require(self.max_iters >= 1, "train.max_iters", "must be >= 1")
        _require(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _require(self.max_epochs >= 0, "train.max_epochs", "must be >= 0")
        _require(self.global_batch_size >= 0, "train.global_batch_size", "must be >= 0")
        _require(self.dist_timeout_s > 0, "train.dist_timeout_s", "must be > 0")
        _require(self.seed >= 0, "train.seed", "must be >= 0")
        _require(self.num_threads >= 0, "train.num_threads", "must be >= 0")
        _require(self.checkpoint_period_iters >= 1, "train.checkpoint_period_iters",
                 "must be >= 1")
        _require(self.keep_checkpoints >= 0, "train.keep_checkpoints", "must be >= 0")
        _require(self.log_period_iters >= 1, "train.log_period_iters", "must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """Periodic validation mAP (Open Images challenge metric) during training: each rank
    predicts every W-th val image, rank 0 gathers the detections and scores them."""

    period_iters: int = 0        # 0 = only at the end of training; -1 = never
    max_images: int = 0          # 0 = the whole val split
    batch_size: int = 4

    def __post_init__(self):
        _require(self.period_iters >= -1, "eval.period_iters", "must be >= -1")
        _require(self.max_images >= 0, "eval.max_images", "must be >= 0")
        _require(self.batch_size >= 1, "eval.batch_size", "must be >= 1")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


SECTIONS = {f.name: f.type for f in fields(Config)}
_SECTION_TYPES = typing.get_type_hints(Config)
# [model.<loss>] sub-sections, named after their loss
LOSS_SECTIONS = tuple(f.name for f in fields(ModelConfig) if f.name in CLASSIFIERS)

# Fields that do not change what is computed: a run may be resumed with other values.
RUNTIME_KEYS = frozenset({
    "data.root", "data.cache_dir", "data.num_workers", "data.val_images", "data.val_boxes",
    "data.val_image_labels", "data.val_image_list", "train.checkpoint_period_iters",
    "train.keep_checkpoints", "train.log_period_iters", "train.device", "train.tensorboard",
    "train.num_threads",
    "train.find_unused_parameters", "train.dist_timeout_s", "eval.period_iters",
    "eval.max_images", "eval.batch_size", "model.test_scores", "model.box_score_thresh",
    "model.box_nms_thresh", "model.box_detections_per_img", "model.box_pre_nms_top_n",
    "model.rpn_pre_nms_top_n_test",
    "model.rpn_post_nms_top_n_test",
})


# ----------------------------------------------------------------------------------------------
# dict <-> config with type checks


def _plain(value: Any) -> Any:
    """A config value as plain data: dataclasses (sections, sub-sections) become dicts, tuples
    lists."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return list(value) if isinstance(value, tuple) else value


def to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict (tuples become lists, sub-sections such as ``model.eqlv2`` nested
    dicts), the form saved with a run."""
    return {sec.name: _plain(getattr(config, sec.name)) for sec in fields(Config)}


def _flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    """{"model": {"eqlv2": {"gamma": 12.0}}} -> {"model.eqlv2.gamma": 12.0}."""
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def fingerprint(config: Config) -> str:
    """sha256 (16 hex) of the fields that change what training computes (not ``RUNTIME_KEYS``,
    nor the ``[model.<loss>]`` sub-sections of losses other than ``model.classifier_loss``);
    a checkpoint is resumed only under the same fingerprint."""
    unused = tuple(f"model.{name}." for name in LOSS_SECTIONS
                   if name != config.model.classifier_loss)
    flat = {k: v for k, v in _flatten(to_dict(config)).items()
            if k not in RUNTIME_KEYS and not k.startswith(unused)}
    blob = json.dumps(flat, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"a list of {typing.get_args(tp)[0].__name__}"
    return tp.__name__


def _coerce(value: Any, tp, key: str) -> Any:
    """Check ``value`` against field type ``tp``; returns the value in the field's type or raises
    TypeError with a message that says what was expected."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise TypeError(f"got {value!r}")
        return value
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if isinstance(value, str):  # "--set optim.lr_step_iters=600,800"
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
            value = [_parse_scalar(v.strip()) for v in value]
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"got {value!r}")
        return tuple(_coerce(v, item, key) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"got {value!r}")
        return value
    raise AssertionError(f"unsupported config type {tp} for {key}")


def _parse_scalar(text: str) -> Any:
    """A ``--set`` value: a TOML literal when it parses as one (1, 0.5, true, [1, 2], "x"),
    otherwise the bare string (``--set model.backbone=tiny``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def from_dict(raw: dict, *, source: str | os.PathLike | None = None, text: str | None = None,
              base: Config | None = None) -> Config:
    """Build a ``Config`` from a nested dict (missing keys keep ``base``'s values, default: the
    defaults). Unknown sections/keys, wrong types and invalid values raise ``InputError``
    naming ``source`` (with the line when ``text`` is given) and the key."""
    base = base or Config()
    if not isinstance(raw, dict):
        raise InputError(source, "expected a table of sections (data, model, ...) at the top")
    sections = {}
    for sec_name, values in raw.items():
        if sec_name not in SECTIONS:
            raise InputError(source, f"unknown section; expected one of "
                             f"{', '.join(SECTIONS)}", field=sec_name,
                             line=_find_line(text, None, sec_name))
        if not isinstance(values, dict):
            raise InputError(source, "expected a table of keys", field=sec_name,
                             line=_find_line(text, None, sec_name))
        sections[sec_name] = _table_updates(_SECTION_TYPES[sec_name], values, sec_name,
                                            source, text)
    try:
        built = {}
        for sec in fields(Config):
            built[sec.name] = _replace_tree(getattr(base, sec.name), sections.get(sec.name, {}))
        return Config(**built)
    except ConfigValueError as e:
        table, key = e.key.rsplit(".", 1)
        line = _find_line(text, table, key) if e.key in _flatten(sections) else None
        raise InputError(source, str(e), field=e.key, line=line) from None


def _table_updates(cls, values: dict, path: str, source, text: str | None) -> dict:
    """Type-checked updates of dataclass ``cls`` (a section or a sub-section such as
    ``model.eqlv2``, at ``path``) from a raw table; sub-sections become nested dicts."""
    hints = typing.get_type_hints(cls)
    updates = {}
    for key, value in values.items():
        full = f"{path}.{key}"
        if key not in hints:
            raise InputError(source, f"unknown key; {path} has {', '.join(hints)}",
                             field=full, line=_find_line(text, path, key))
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise InputError(source, f"expected a table [{full}] of keys, got {value!r}",
                                 field=full, line=_find_line(text, path, key))
            updates[key] = _table_updates(hints[key], value, full, source, text)
            continue
        try:
            updates[key] = _coerce(value, hints[key], full)
        except TypeError as e:
            raise InputError(source, f"expected {_type_name(hints[key])}: {e}", field=full,
                             line=_find_line(text, path, key)) from None
    return updates


def _replace_tree(obj, updates: dict):
    """``obj`` with ``updates`` (nested dicts update sub-sections; each level's
    ``__post_init__`` checks run)."""
    return dataclasses.replace(obj, **{
        key: _replace_tree(getattr(obj, key), value) if isinstance(value, dict) else value
        for key, value in updates.items()})


def _find_line(text: str | None, section: str | None, key: str) -> int | None:
    """Best-effort 1-based line of ``key`` inside ``[section]`` (TOML) or ``section:`` (YAML)."""
    if not text:
        return None
    current = None
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if m := re.match(r"^\[\s*([\w.-]+)\s*\]", stripped):
            current = m.group(1)
            if current == (key if section is None else f"{section}.{key}"):
                return n  # a section, or a sub-section such as [model.eqlv2]
            continue
        if not line.startswith((" ", "\t")) and (m := re.match(r"^([\w-]+)\s*:", line)):
            current = m.group(1)  # YAML top-level section
            if section is None and current == key:
                return n
            continue
        if section is not None and current == section and re.match(
                rf"^{re.escape(key)}\s*[=:]", stripped):
            return n
        if section is not None and re.match(
                rf"^{re.escape(section)}\.{re.escape(key)}\s*=", stripped):
            return n
    if section is not None and "." in section:  # a dotted key: eqlv2.gamma = 1 under [model]
        parent, sub = section.rsplit(".", 1)
        return _find_line(text, parent, f"{sub}.{key}")
    return None


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config, then apply ``--set``
    overrides ``section.field=value``. Errors raise ``InputError`` naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config file not found")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            m = re.search(r"line (\d+)", str(e))
            raise InputError(path, f"malformed TOML: {e}",
                             line=int(m.group(1)) if m else None) from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise InputError(path, f"malformed YAML: {getattr(e, 'problem', e)}",
                             line=mark.line + 1 if mark else None) from None
    else:
        raise InputError(path, "unknown config format; use .toml, .yaml or .yml")
    config = from_dict(raw, source=path, text=text)
    return with_overrides(config, overrides)


def with_overrides(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``section.field=value`` strings (the CLI's ``--set``; a sub-section field is
    ``model.eqlv2.gamma=10``); errors name ``--set``."""
    raw: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise InputError("--set", f"expected section.field=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if len(parts) < 2 or not all(parts):
            raise InputError("--set", "expected section.field (e.g. train.max_iters)",
                             field=key)
        table = raw
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise InputError("--set", "a field cannot also be a section", field=key)
        table[parts[-1]] = _parse_scalar(value.strip())
    if not raw:
        return config
    return from_dict(raw, source="--set", base=config)


def dump_toml(config: Config) -> str:
    """The config as TOML text (every field; what a run saves as ``config.toml``);
    sub-sections follow their section as ``[model.eqlv2]`` tables."""
    lines: list[str] = []
    for sec, values in to_dict(config).items():
        _dump_table(lines, sec, values)
    return "\n".join(lines)


def _dump_table(lines: list[str], name: str, values: dict) -> None:
    lines.append(f"[{name}]")
    subtables = []
    for key, value in values.items():
        if isinstance(value, dict):
            subtables.append((f"{name}.{key}", value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    lines.append("")
    for sub_name, sub_values in subtables:
        _dump_table(lines, sub_name, sub_values)


# ----------------------------------------------------------------------------------------------
# presets


def demo_config(data_root: str | os.PathLike, rate_file: str | os.PathLike = "") -> Config:
    """The CPU demo: 128 px synthetic images, the tiny GroupNorm backbone from scratch, CSM
    training and testing, the hybrid schedule (what `wilddet demo` and configs/demo.toml run).

    One torch thread: this small network gains ~15% from a second thread on an idle 2-core
    machine, but with any other busy process the threads' barrier waits make each step ~50x
    slower (measured: 46 ms vs 2.3 s per 64 px step)."""
    return Config(
        data=DataConfig(root=str(data_root), num_workers=0),
        model=ModelConfig(backbone="tiny", classifier_loss="concurrent_softmax",
                          test_scores="concurrent_softmax", rate_file=str(rate_file),
                          min_size_px=128, max_size_px=128, box_score_thresh=0.01,
                          box_detections_per_img=100, rpn_batch_size_per_image=128,
                          box_batch_size_per_image=64, rpn_pre_nms_top_n_train=300,
                          rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
                          rpn_post_nms_top_n_test=300),
        sampling=SamplingConfig(kind="hybrid", lam=0.5, non_balance_fraction=0.5),
        optim=OptimConfig(optimizer="sgd", lr=0.02, warmup_iters=100, lr_schedule="cosine",
                          weight_decay=1e-4, grad_clip_norm=10.0),
        train=TrainConfig(max_iters=600, batch_size=8, amp="off", checkpoint_period_iters=200,
                          log_period_iters=10, keep_checkpoints=2, num_threads=1),
        eval=EvalConfig(period_iters=0, max_images=0, batch_size=16),
    )


def r50_fpn_config(data_root: str | os.PathLike = "data/openimages") -> Config:
    """Faster R-CNN R50-FPN, 800 px, ImageNet weights with FrozenBatchNorm, 2 images per GPU,
    SGD 0.02 per 16 images scaled linearly with the global batch, 12 epochs with LR steps at
    epochs 8 and 11 (mmdetection's 1x on Open Images), hybrid sampling half non-balance, half
    soft-balance(0.5). In epochs, so 8 or 32 GPUs train the same schedule (``wilddet plan``)."""
    return Config(data=DataConfig(root=str(data_root), num_workers=4),
                  model=ModelConfig(backbone="resnet50", pretrained_backbone="DEFAULT",
                                    backbone_norm="frozen_bn"),
                  sampling=SamplingConfig(kind="hybrid", lam=0.5, non_balance_fraction=0.5),
                  train=TrainConfig(max_epochs=12.0, batch_size=2),
                  optim=OptimConfig(lr=0.02, lr_scaling="linear", reference_batch_size=16,
                                    warmup_iters=1000, lr_step_epochs=(8.0, 11.0)),
                  eval=EvalConfig(period_iters=20_000, max_images=5000))