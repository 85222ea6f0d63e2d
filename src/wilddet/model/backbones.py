"""FPN backbones for Faster R-CNN, built from torchvision parts; pretrained weights only from a
user's file or the torch hub cache (never downloaded).

Shapes: ``B`` images; feature maps [B, out_channels, H / stride, W / stride].

Backbones: "resnet18", "resnet34", "resnet50", "resnet101" (torchvision ``resnet_fpn_backbone``,
5 FPN levels), "mobilenet_v3_large" (torchvision ``mobilenet_backbone`` with FPN, 3 levels) and
"tiny" (4 conv stages + FPN with 64 channels, for CPU tests and demos on 128-256 px images).

Normalisation layers of the torchvision networks (``norm``, the config's ``model.backbone_norm``):

- "frozen_bn": ``FrozenBatchNorm2d``, fixed statistics and affine (torchvision's choice with
  ImageNet weights: detection batches of 2 images per GPU are too small to re-estimate them);
- "group_norm": ``GroupNorm(gcd(32, channels))`` (Wu & He, 2018), independent of the batch size,
  the choice for training from scratch;
- "sync_bn": ``BatchNorm2d`` that the trainer converts to ``SyncBatchNorm`` under DDP on CUDA, so
  its statistics are over the global batch (a single process keeps plain BatchNorm);
- "bn": plain ``BatchNorm2d`` over each rank's images (only when asked for);
- "auto": "frozen_bn" with pretrained weights, "group_norm" from scratch.

ImageNet weights hold BatchNorm statistics, so they load only with "frozen_bn", "sync_bn" and
"bn". The tiny backbone always uses GroupNorm ("auto" or "group_norm").
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    _mobilenet_extractor,
    _resnet_fpn_extractor,
)
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from wilddet.errors import InputError
from wilddet.model.choices import BACKBONE_NORMS

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
NORMS = BACKBONE_NORMS
BACKBONES = ("tiny", *RESNETS, "mobilenet_v3_large")

_WEIGHTS = {
    "resnet18": torchvision.models.ResNet18_Weights,
    "resnet34": torchvision.models.ResNet34_Weights,
    "resnet50": torchvision.models.ResNet50_Weights,
    "resnet101": torchvision.models.ResNet101_Weights,
    "mobilenet_v3_large": torchvision.models.MobileNet_V3_Large_Weights,
}


@dataclass
class BackboneParts:
    """What ``FasterRCNN`` needs besides the heads: the FPN body (with ``out_channels``), an
    anchor generator with one size tuple per feature map, the RoI pooler and the width of the
    two-layer box head."""

    body: nn.Module
    anchor_generator: AnchorGenerator
    roi_pool: MultiScaleRoIAlign
    representation_size: int


def _conv(in_channels: int, out_channels: int) -> nn.Sequential:
    # stride-2 3x3 conv; GroupNorm so that small CPU batches train the same as large ones
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
                         nn.GroupNorm(8, out_channels), nn.ReLU(inplace=True))


def tiny_body() -> nn.Sequential:
    """Strides 2 (stem), 4, 8, 16 with 16, 32, 64, 128 channels."""
    return nn.Sequential(OrderedDict(stem=_conv(3, 16), layer1=_conv(16, 32),
                                     layer2=_conv(32, 64), layer3=_conv(64, 128)))


def hub_weights_path(weights) -> str:
    """Where torchvision keeps ``weights`` in the torch hub cache
    (``$TORCH_HOME/hub/checkpoints``)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def _load_state_dict(model: nn.Module, path: str | os.PathLike, name: str) -> None:
    if not os.path.isfile(path):
        raise InputError(path, f"pretrained {name} weights: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is bad input
        raise InputError(path, f"pretrained {name} weights: cannot read a state_dict ({e})"
                         ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(path, f"pretrained {name} weights: expected a state_dict, got "
                               f"{type(state).__name__}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise InputError(path, f"not a torchvision {name} state_dict: missing keys "
                               f"{missing[:3]}, unexpected keys {result.unexpected_keys[:3]}")


def group_norm(num_channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (gcd(32, C) when C is not a multiple of 32)."""
    return nn.GroupNorm(math.gcd(32, num_channels), num_channels)


def resolve_norm(norm: str, pretrained: str | os.PathLike | None) -> str:
    """The concrete norm of ``norm`` ("auto": "frozen_bn" with weights, else "group_norm");
    ValueError for an unknown name or GroupNorm with (BatchNorm) ImageNet weights."""
    if norm not in NORMS:
        raise ValueError(f"backbone norm must be one of {NORMS}, got {norm!r}")
    if norm == "auto":
        return "frozen_bn" if pretrained is not None else "group_norm"
    if norm == "group_norm" and pretrained is not None:
        raise InputError(None, "pretrained weights hold BatchNorm statistics and cannot load "
                               "into GroupNorm; use frozen_bn (or sync_bn / bn) with "
                               "model.pretrained_backbone, group_norm from scratch",
                         field="model.backbone_norm")
    return norm


_NORM_LAYERS = {"frozen_bn": FrozenBatchNorm2d, "group_norm": group_norm,
                "sync_bn": nn.BatchNorm2d, "bn": nn.BatchNorm2d}


def _classifier(name: str, pretrained: str | os.PathLike | None, norm: str) -> nn.Module:
    """The torchvision classification network ``name`` with ``norm`` layers (a concrete name of
    ``NORMS``) and pretrained weights when asked."""
    norm = _NORM_LAYERS[norm]
    builder = getattr(torchvision.models, name)
    if pretrained == "DEFAULT":
        weights = _WEIGHTS[name].DEFAULT
        path = hub_weights_path(weights)
        if not os.path.isfile(path):
            raise InputError(path, f"pretrained_backbone='DEFAULT' but torchvision's {name} "
                                   f"weights are not in the torch hub cache and wilddet never "
                                   f"downloads: copy {os.path.basename(weights.url)} (from "
                                   f"{weights.url}) to this path, set TORCH_HOME, or pass the "
                                   f"path of a state_dict file instead")
        return builder(weights=weights, norm_layer=norm)
    model = builder(weights=None, norm_layer=norm)
    if pretrained is not None:
        _load_state_dict(model, pretrained, name)
    return model


def build_backbone(name: str, *, pretrained: str | os.PathLike | None = None,
                   trainable_layers: int = 3, norm: str = "auto") -> BackboneParts:
    """FPN backbone ``name`` (one of ``BACKBONES``).

    pretrained: None (random init, every layer trainable), "DEFAULT" (torchvision's ImageNet
    weights, only if already in the torch hub cache) or the path of a state_dict of the
    torchvision classification model (of ``tiny_body()`` for "tiny"); with weights only the last
    ``trainable_layers`` stages train (torchvision's convention: 0-5 for ResNets, 0-6 for
    MobileNet). ``norm``: one of ``NORMS`` (module docstring). Raises InputError when weights
    are missing or do not fit.
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")
    if name == "tiny":
        if norm not in ("auto", "group_norm"):
            raise ValueError(f"the tiny backbone uses GroupNorm; backbone norm {norm!r} "
                             "applies to the torchvision backbones")
        body = tiny_body()
        if pretrained is not None:
            if pretrained == "DEFAULT":
                raise InputError(None, "the tiny backbone has no torchvision weights; pass the "
                                       "path of a state_dict of tiny_body()")
            _load_state_dict(body, pretrained, "tiny")
        fpn = BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2"},
                              [32, 64, 128], out_channels=64)
        anchors = AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4)
        return BackboneParts(fpn, anchors, MultiScaleRoIAlign(["0", "1", "2"], 7, 2), 256)
    network = _classifier(name, pretrained, resolve_norm(norm, pretrained))
    if name in RESNETS:
        layers = trainable_layers if pretrained is not None else 5
        fpn = _resnet_fpn_extractor(network, layers)
        # torchvision's defaults for ResNet-FPN: one size per level, 3 aspect ratios
        anchors = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
        pool = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    else:
        layers = trainable_layers if pretrained is not None else 6
        fpn = _mobilenet_extractor(network, True, layers)
        # torchvision's fasterrcnn_mobilenet_v3_large_fpn: 5 sizes on each of the 3 levels
        anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
        pool = MultiScaleRoIAlign(["0", "1"], 7, 2)
    return BackboneParts(fpn, anchors, pool, 1024)
