"""Typed config: TOML/YAML loading, --set overrides, errors naming file/line/key, fingerprint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wilddet.config import (
    Config,
    demo_config,
    dump_toml,
    fingerprint,
    from_dict,
    load_config,
    r50_fpn_config,
    to_dict,
    with_overrides,
)
from wilddet.errors import InputError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

GOOD = """\
[model]
backbone = "tiny"
min_size_px = 128
max_size_px = 128

[train]
max_iters = 50
batch_size = 4
hflip = false

[optim]
lr = 0.01
lr_step_iters = [30, 40]
"""


def test_toml_loads_typed_values_and_keeps_defaults(write):
    cfg = load_config(write("c.toml", GOOD))
    assert cfg.model.backbone == "tiny" and cfg.train.max_iters == 50
    assert cfg.optim.lr_step_iters == (30, 40) and cfg.train.hflip is False
    assert cfg.optim.momentum == Config().optim.momentum  # untouched default
    assert isinstance(cfg.optim.lr, float)


def test_yaml_equals_toml(write):
    yaml_text = ("model:\n  backbone: tiny\n  min_size_px: 128\n  max_size_px: 128\n"
                 "train:\n  max_iters: 50\n  batch_size: 4\n  hflip: false\n"
                 "optim:\n  lr: 0.01\n  lr_step_iters: [30, 40]\n")
    assert load_config(write("c.yaml", yaml_text)) == load_config(write("c.toml", GOOD))


def test_set_overrides_parse_types():
    cfg = with_overrides(Config(), ["train.max_iters=7", "optim.lr=1e-3", "model.backbone=tiny",
                                    "optim.lr_step_iters=3,5", "train.hflip=false",
                                    "data.root=/tmp/some data", "optim.warmup_factor=1"])
    assert cfg.train.max_iters == 7 and cfg.optim.lr == 0.001 and cfg.model.backbone == "tiny"
    assert cfg.optim.lr_step_iters == (3, 5) and cfg.train.hflip is False
    assert cfg.data.root == "/tmp/some data" and cfg.optim.warmup_factor == 1.0


def test_dump_toml_round_trips(write):
    cfg = with_overrides(Config(), ["optim.lr_step_iters=[3, 5]", "data.root=a \"quoted\" dir"])
    assert load_config(write("r.toml", dump_toml(cfg))) == cfg
    assert from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize("text, line, key, words", [
    ("[train]\nmax_iters = 5\nmax_iter = 3\n", 3, "train.max_iter", "unknown key"),
    ("[trian]\nmax_iters = 5\n", 1, "trian", "unknown section"),
    ("[train]\n\nmax_iters = \"ten\"\n", 3, "train.max_iters", "expected int"),
    ("[train]\nmax_iters = 1.5\n", 2, "train.max_iters", "expected int"),
    ("[train]\nmax_iters = true\n", 2, "train.max_iters", "expected int"),
    ("[model]\nbackbone = \"vgg16\"\n", 2, "model.backbone", "one of"),
    ("[train]\nhflip = 1\n", 2, "train.hflip", "bool"),
    ("[optim]\nlr_step_iters = [1, \"a\"]\n", 2, "optim.lr_step_iters", "list of int"),
    ("[train]\nbatch_size = 0\n", 2, "train.batch_size", ">= 1"),
    ("[model]\nmin_size_px = 1400\n", None, "model.max_size_px", ">= model.min_size_px"),
])
def test_bad_file_names_file_line_and_key(write, text, line, key, words):
    path = write("bad.toml", text)
    with pytest.raises(InputError) as err:
        load_config(path)
    assert err.value.path == str(path) and err.value.field == key and err.value.line == line
    assert words in str(err.value)
    assert str(err.value).startswith(f"{path}:{line}: {key}: " if line else f"{path}: {key}: ")


def test_malformed_toml_and_yaml_give_a_line(write):
    with pytest.raises(InputError) as err:
        load_config(write("m.toml", "[train]\nmax_iters = = 3\n"))
    assert err.value.line == 2 and "malformed TOML" in str(err.value)
    with pytest.raises(InputError) as err:
        load_config(write("m.yaml", "train:\n  max_iters: [1, 2\n"))
    assert err.value.line is not None and "malformed YAML" in str(err.value)


def test_missing_file_and_unknown_format(tmp_path, write):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(InputError, match="unknown config format"):
        load_config(write("c.json", "{}"))


@pytest.mark.parametrize("item, key, words", [
    ("train.max_iters=abc", "train.max_iters", "expected int"),
    ("train.nope=1", "train.nope", "unknown key"),
    ("max_iters=3", "max_iters", "section.field"),
    ("optim.lr=-1", "optim.lr", "> 0"),
])
def test_bad_set_names_the_key(item, key, words):
    with pytest.raises(InputError) as err:
        with_overrides(Config(), [item])
    assert err.value.path == "--set" and err.value.field == key and words in str(err.value)
    with pytest.raises(InputError, match="expected section.field=value"):
        with_overrides(Config(), ["train.max_iters"])


def test_fingerprint_ignores_runtime_fields_only():
    base = Config()
    same = with_overrides(base, ["data.num_workers=7", "train.checkpoint_period_iters=3",
                                 "eval.period_iters=5", "data.root=/elsewhere"])
    assert fingerprint(same) == fingerprint(base)
    for item in ("optim.lr=0.5", "train.max_iters=10", "model.classifier_loss=softmax",
                 "sampling.lam=0.25", "train.seed=3", "train.batch_size=4"):
        assert fingerprint(with_overrides(base, [item])) != fingerprint(base), item


def test_configs_are_frozen():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.max_iters = 3  # type: ignore[misc]


def test_shipped_configs_are_the_presets():
    assert load_config(CONFIGS / "demo.toml") == demo_config(
        "runs/demo/data", "runs/demo/analysis/concurrent_rate.npz")
    assert load_config(CONFIGS / "r50_fpn.toml") == r50_fpn_config()
