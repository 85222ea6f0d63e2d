"""Backbones, pretrained-weight handling (never a download) and the rate-matrix file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wilddet.errors import InputError
from wilddet.model import build_model, load_rate_matrix
from wilddet.model.backbones import build_backbone, hub_weights_path, tiny_body


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    # an empty hub cache: nothing may be found there, and nothing may be fetched
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)


@pytest.mark.parametrize("name,levels", [("resnet18", 5), ("mobilenet_v3_large", 3)])
def test_torchvision_backbones_build_with_random_weights(name, levels):
    model = build_model(5, backbone=name, min_size=64, max_size=64)
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
    model = build_model(2, backbone="tiny", pretrained_backbone=str(path))
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


def write_rate(path, labels, rate):
    np.savez(path, labels=np.array(labels), rate=np.asarray(rate, dtype=np.float32))


def test_load_rate_matrix_reorders_and_caps(tmp_path):
    path = tmp_path / "concurrent_rate.npz"
    # file order b, a, x (x unknown to the model); model order a, b
    write_rate(path, ["/m/b", "/m/a", "/m/x"], [[0, 0.25, 0.1], [1.5, 0, 0.2], [0.3, 0.4, 0]])
    rate = load_rate_matrix(path, ["/m/a", "/m/b"])
    assert rate.dtype == np.float32
    np.testing.assert_array_equal(rate, np.array([[0, 1.0], [0.25, 0]], np.float32))


@pytest.mark.parametrize("labels,rate,message", [
    (["/m/a", "/m/c"], [[0, 0.5], [0.5, 0]], "not in the file"),
    (["/m/a", "/m/b"], [[0, -0.5], [0.5, 0]], ">= 0"),
    (["/m/a", "/m/b"], [[0.1, 0.5], [0.5, 0]], "zero diagonal"),
    (["/m/a", "/m/b"], [[0, 0.5, 0], [0.5, 0, 0]], r"\[C, C\]"),
    (["/m/a", "/m/a"], [[0, 0.5], [0.5, 0]], "duplicate"),
])
def test_load_rate_matrix_errors_name_the_file(tmp_path, labels, rate, message):
    path = tmp_path / "concurrent_rate.npz"
    write_rate(path, labels, rate)
    with pytest.raises(InputError, match=message) as err:
        load_rate_matrix(path, ["/m/a", "/m/b"])
    assert str(err.value).startswith(str(path))


def test_load_rate_matrix_missing_array_and_file(tmp_path):
    path = tmp_path / "r.npz"
    np.savez(path, labels=np.array(["/m/a"]))
    with pytest.raises(InputError, match="missing array") as err:
        load_rate_matrix(path, ["/m/a"])
    assert err.value.field == "rate"
    with pytest.raises(InputError, match="file not found"):
        load_rate_matrix(tmp_path / "nope.npz", ["/m/a"])
    bad = tmp_path / "bad.npz"
    bad.write_text("xx")
    with pytest.raises(InputError, match="npz"):
        load_rate_matrix(bad, ["/m/a"])
