"""Backbones, pretrained-weight handling (never a download) and the rate-matrix file."""

from __future__ import annotations

import pytest
import torch

from wilddet.errors import InputError
from wilddet.model.backbones import build_backbone, hub_weights_path, tiny_body
from wilddet.model.build import DetectorSettings, build_model
from wilddet.model.classifiers import SoftmaxCE


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    # an empty hub cache: nothing may be found there, and nothing may be fetched
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)


@pytest.mark.parametrize("name,levels", [("resnet18", 5), ("mobilenet_v3_large", 3)])
def test_torchvision_backbones_build_with_random_weights(name, levels):
    model = build_model(SoftmaxCE(5), DetectorSettings(backbone=name, min_size_px=64,
                                                       max_size_px=64))
    assert model.backbone.out_channels == 256
    assert len(model.rpn.anchor_generator.sizes) == levels
    with torch.no_grad():
        features = model.backbone.eval()(torch.zeros(1, 3, 64, 64))
    assert len(features) == levels
    assert model.roi_heads.box_predictor.cls_score.out_features == 6
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 4  # class-agnostic
    assert all(p.requires_grad for p in model.backbone.parameters())  # random init: all train


def test_default_weights_missing_from_cache_is_a_clear_error(tmp_path):
    with pytest.raises(InputError) as err:
        build_backbone("resnet50", pretrained="DEFAULT")
    text = str(err.value)
    assert str(tmp_path / "torch_home") in text and "never downloads" in text
    assert "resnet50" in text and "TORCH_HOME" in text


def test_default_weights_are_used_from_the_cache(tmp_path):
    import torchvision

    weights = torchvision.models.ResNet18_Weights.DEFAULT
    reference = torchvision.models.resnet18(weights=None)
    path = hub_weights_path(weights)
    assert path.startswith(str(tmp_path / "torch_home"))
    (tmp_path / "torch_home" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    parts = build_backbone("resnet18", pretrained="DEFAULT", trainable_layers=2)
    body = parts.body.body
    torch.testing.assert_close(body.conv1.weight, reference.conv1.weight)
    assert not body.layer2[0].conv1.weight.requires_grad  # frozen below the last 2 stages
    assert body.layer3[0].conv1.weight.requires_grad


def test_pretrained_state_dict_path(tmp_path):
    source = tiny_body()
    path = tmp_path / "tiny.pt"
    torch.save(source.state_dict(), path)
    parts = build_backbone("tiny", pretrained=path)
    torch.testing.assert_close(parts.body.body.layer2[0].weight, source.layer2[0].weight)
    model = build_model(SoftmaxCE(2), DetectorSettings(backbone="tiny",
                                                       pretrained_backbone=str(path)))
    torch.testing.assert_close(model.backbone.body.stem[0].weight, source.stem[0].weight)

    with pytest.raises(InputError, match="file not found") as err:
        build_backbone("tiny", pretrained=tmp_path / "missing.pt")
    assert "missing.pt" in str(err.value)
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(InputError, match="not a torchvision tiny state_dict"):
        build_backbone("tiny", pretrained=wrong)
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        build_backbone("tiny", pretrained=garbage)
    with pytest.raises(ValueError, match="backbone"):
        build_backbone("vgg16")
