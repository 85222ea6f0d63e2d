"""The ``[model.<loss>]`` sub-sections: TOML/YAML tables, ``--set model.eqlv2.gamma=...``,
errors naming file, line and key, ``dump_toml`` round trips and the checkpoint fingerprint."""

from __future__ import annotations

import pytest

from wilddet.config import (
    Config,
    EQLv2Config,
    dump_toml,
    fingerprint,
    from_dict,
    load_config,
    to_dict,
    with_overrides,
)
from wilddet.errors import InputError

LOSSES = """\
[model]
classifier_loss = "seesaw"
test_scores = "concurrent_softmax"

[model.seesaw]
p = 0.5
use_rate = true

[model.eqlv2]
gamma = 10
"""


def test_sub_sections_load_typed_with_spec_defaults(write):
    cfg = load_config(write("l.toml", LOSSES))
    assert cfg.model.classifier_loss == "seesaw" and cfg.model.test_scores == "concurrent_softmax"
    assert cfg.model.seesaw.p == 0.5 and cfg.model.seesaw.use_rate is True
    assert cfg.model.seesaw.q == 2.0 and cfg.model.seesaw.eps == 0.01  # spec defaults
    assert cfg.model.eqlv2 == EQLv2Config(gamma=10.0, mu=0.8, alpha=4.0)
    assert isinstance(cfg.model.eqlv2.gamma, float)
    assert cfg.model.eql.lam == 1.76e-3
    assert (cfg.model.federated.num_sampled_classes, cfg.model.federated.freq_power) == (50, 0.5)
    yaml = write("l.yaml", "model:\n  classifier_loss: seesaw\n  test_scores: concurrent_softmax"
                           "\n  seesaw: {p: 0.5, use_rate: true}\n  eqlv2:\n    gamma: 10\n")
    assert load_config(yaml) == cfg
    dotted = write("d.toml", "[model]\neqlv2.gamma = 10\n")
    assert load_config(dotted).model.eqlv2.gamma == 10.0


def test_set_and_dump_toml_round_trip(write):
    cfg = with_overrides(Config(), ["model.classifier_loss=federated",
                                    "model.federated.num_sampled_classes=20",
                                    "model.eqlv2.alpha=2"])
    assert cfg.model.federated.num_sampled_classes == 20 and cfg.model.eqlv2.alpha == 2.0
    text = dump_toml(cfg)
    assert "[model.federated]\nnum_sampled_classes = 20\n" in text
    assert text.index("[model.eqlv2]") > text.index("rpn_post_nms_top_n_test")
    assert load_config(write("r.toml", text)) == cfg
    assert to_dict(cfg)["model"]["eqlv2"] == {"gamma": 12.0, "mu": 0.8, "alpha": 2.0}
    assert from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize("text, line, key, words", [
    ("[model]\n\n[model.eqlv2]\ngamma = -1\n", 4, "model.eqlv2.gamma", "> 0"),
    ("[model.seesaw]\np = 0.8\nqq = 1\n", 3, "model.seesaw.qq", "unknown key"),
    ("[model.eql]\nlam = \"small\"\n", 2, "model.eql.lam", "expected float"),
    ("[model]\neqlv2 = 3\n", 2, "model.eqlv2", "expected a table"),
    ("[model.eqlv3]\ngamma = 1\n", 1, "model.eqlv3", "unknown key"),
    ("[model]\nclassifier_loss = \"focal\"\n", 2, "model.classifier_loss", "one of"),
    ("[model]\neqlv2.mu = true\n", 2, "model.eqlv2.mu", "expected float"),
])
def test_bad_sub_section_names_file_line_and_key(write, text, line, key, words):
    path = write("bad.toml", text)
    with pytest.raises(InputError) as err:
        load_config(path)
    assert err.value.path == str(path) and err.value.field == key and err.value.line == line
    assert words in str(err.value)


@pytest.mark.parametrize("item, key, words", [
    ("model.seesaw.eps=0", "model.seesaw.eps", "> 0"),
    ("model.federated.num_sampled=3", "model.federated.num_sampled", "unknown key"),
    ("model.eqlv2=1", "model.eqlv2", "expected a table"),
    ("model..gamma=1", "model..gamma", "section.field"),
])
def test_bad_set_of_a_sub_section_names_the_key(item, key, words):
    with pytest.raises(InputError) as err:
        with_overrides(Config(), [item])
    assert err.value.path == "--set" and err.value.field == key and words in str(err.value)


def test_fingerprint_covers_the_selected_loss_section_only():
    base = with_overrides(Config(), ["model.classifier_loss=eqlv2"])
    assert fingerprint(with_overrides(base, ["model.eqlv2.gamma=10"])) != fingerprint(base)
    for item in ("model.seesaw.p=0.1", "model.eql.lam=0.5", "model.federated.freq_power=1"):
        assert fingerprint(with_overrides(base, [item])) == fingerprint(base), item
    assert fingerprint(with_overrides(base, ["model.classifier_loss=seesaw"])) != \
        fingerprint(base)
