"""Backbone normalisation (model.backbone_norm): FrozenBatchNorm with weights, GroupNorm from
scratch, BatchNorm only when asked, GroupNorm refused for BatchNorm ImageNet weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from wilddet.config import Config, ModelConfig
from wilddet.engine.builders import detector_settings
from wilddet.errors import InputError
from wilddet.model.backbones import NORMS, build_backbone, group_norm, resolve_norm


def norm_types(parts) -> set[type]:
    body = parts.body.body  # the ResNet/MobileNet trunk (FPN layers excluded)
    return {type(m) for m in body.modules()
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, FrozenBatchNorm2d))}


@pytest.mark.parametrize("norm, expected", [("auto", nn.GroupNorm), ("group_norm", nn.GroupNorm),
                                            ("bn", nn.BatchNorm2d), ("sync_bn", nn.BatchNorm2d),
                                            ("frozen_bn", FrozenBatchNorm2d)])
def test_resnet_from_scratch_norms(norm, expected):
    parts = build_backbone("resnet18", norm=norm)
    assert norm_types(parts) == {expected}
    with torch.no_grad():
        out = parts.body.train()(torch.rand(1, 3, 64, 64))
    assert len(out) == 5


def test_group_norm_groups_and_auto_rule():
    assert group_norm(64).num_groups == 32 and group_norm(72).num_groups == 8
    assert resolve_norm("auto", None) == "group_norm"
    assert resolve_norm("auto", "DEFAULT") == "frozen_bn"
    assert resolve_norm("bn", "w.pt") == "bn"
    with pytest.raises(InputError) as err:
        resolve_norm("group_norm", "DEFAULT")
    assert err.value.field == "model.backbone_norm" and "frozen_bn" in str(err.value)
    with pytest.raises(ValueError, match="backbone norm"):
        resolve_norm("layer_norm", None)
    with pytest.raises(ValueError, match="tiny backbone uses GroupNorm"):
        build_backbone("tiny", norm="bn")


def test_pretrained_weights_load_into_frozen_bn(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        reference.bn1.running_mean.uniform_(0, 1)
    path = tmp_path / "r18.pt"
    torch.save(reference.state_dict(), path)
    parts = build_backbone("resnet18", pretrained=path)  # auto -> frozen_bn
    assert norm_types(parts) == {FrozenBatchNorm2d}
    torch.testing.assert_close(parts.body.body.bn1.running_mean, reference.bn1.running_mean)
    with pytest.raises(InputError, match="GroupNorm"):
        build_backbone("resnet18", pretrained=path, norm="group_norm")


def test_config_field_reaches_the_detector_settings():
    assert set(NORMS) == {"auto", "frozen_bn", "group_norm", "sync_bn", "bn"}
    assert Config().model.backbone_norm == "auto"
    settings = detector_settings(ModelConfig(backbone="resnet18", backbone_norm="sync_bn"))
    assert settings.backbone_norm == "sync_bn"
