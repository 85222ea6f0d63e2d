"""`wilddet plan`: batch, LR scaling, length, sampler phases and draws per image on W ranks; the
same config on 8 and 32 GPUs trains the same epochs; contradictions exit 2 naming the key."""

from __future__ import annotations

import json
import math
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

from wilddet.cli import main
from wilddet.config import (
    ConfigValueError,
    SamplerKind,
    demo_config,
    r50_fpn_config,
    with_overrides,
)
from wilddet.data.class_index import ClassImageIndex
from wilddet.engine.builders import build_schedule
from wilddet.engine.plan import class_draws, compute_plan, format_plan, resolve

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
OID_TRAIN_IMAGES = 1_743_042  # challenge-2019 training images


def plan_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``wilddet plan ARGS``."""
    monkeypatch.setattr(sys, "argv", ["wilddet", "plan", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def small_index(num_images=60, num_classes=5, seed=0) -> ClassImageIndex:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_classes + 1) ** 2
    labels = rng.choice(num_classes, 3 * num_images, p=weights / weights.sum()).astype(np.int32)
    images = rng.integers(0, num_images, 3 * num_images).astype(np.int32)
    return ClassImageIndex.from_codes(images, labels, num_images, num_classes)


@pytest.mark.parametrize("config", ["preset", "toml"])
def test_r50_preset_has_soft_balance_and_the_same_epochs_on_8_and_32_gpus(config, monkeypatch,
                                                                          capsys):
    plans = {}
    for ranks in (8, 32):
        if config == "preset":
            plans[ranks] = compute_plan(r50_fpn_config(), world_size=ranks,
                                        num_train_images=OID_TRAIN_IMAGES).to_json()
        else:
            code, out, err = plan_cli(monkeypatch, capsys, CONFIGS / "r50_fpn.toml",
                                      "--world-size", ranks, "--json",
                                      "--num-train-images", OID_TRAIN_IMAGES)
            assert code == 0, err
            plans[ranks] = json.loads(out)
    p8, p32 = plans[8], plans[32]
    for key in ("world_size", "batch_per_rank", "global_batch", "lr", "max_iters", "epochs",
                "phases"):
        assert key in p8
    assert (p8["global_batch"], p32["global_batch"]) == (16, 64)
    assert p8["lr"] == pytest.approx(0.02) and p32["lr"] == pytest.approx(0.08)  # linear
    assert p8["max_iters"] == math.ceil(12 * OID_TRAIN_IMAGES / 16)
    assert p8["epochs"] == pytest.approx(12, abs=1e-3) == p32["epochs"]
    for plan in (p8, p32):
        kinds = [p["kind"] for p in plan["phases"]]
        assert kinds == ["non-balance", "soft-balance"]
        soft = plan["phases"][1]
        assert soft["stop"] > soft["start"] and soft["stop"] == plan["max_iters"]
        assert soft["epochs"] == pytest.approx(6, abs=1e-3)
        assert [round(m["epoch"], 3) for m in plan["lr_milestones"]] == [8.0, 11.0]
    assert [p["fraction"] for p in p8["phases"]] == pytest.approx(
        [p["fraction"] for p in p32["phases"]], abs=1e-5)


def test_global_batch_keeps_every_number_but_the_per_rank_batch():
    cfg = with_overrides(demo_config("x"), ["train.global_batch_size=64", "train.max_iters=1000",
                                            "optim.lr_scaling=linear"])
    p8 = compute_plan(cfg, world_size=8, num_train_images=10_000)
    p32 = compute_plan(cfg, world_size=32, num_train_images=10_000)
    assert (p8.batch_per_rank, p32.batch_per_rank) == (8, 2)
    assert p8.global_batch == p32.global_batch == 64
    assert p8.lr == p32.lr == pytest.approx(0.02 * 64 / 16)
    assert p8.max_iters == p32.max_iters == 1000 and p8.epochs == p32.epochs == 6.4
    assert [(p.start, p.stop) for p in p8.phases] == [(p.start, p.stop) for p in p32.phases]
    assert any("train.batch_size is not used" in n for n in p8.notes)
    resolved = resolve(cfg, p8)
    assert resolved.train.batch_size == 8 and resolved.train.global_batch_size == 0
    assert resolved.optim.lr == pytest.approx(0.08) and resolved.optim.lr_scaling == "none"
    with pytest.raises(ConfigValueError) as err:
        compute_plan(cfg, world_size=48, num_train_images=10_000)
    assert err.value.key == "train.global_batch_size"


def test_per_rank_batch_with_iterations_moves_with_the_world_size_and_says_so():
    cfg = with_overrides(demo_config("x"), ["train.batch_size=2", "train.max_iters=1000"])
    p8 = compute_plan(cfg, world_size=8, num_train_images=16_000)
    p32 = compute_plan(cfg, world_size=32, num_train_images=16_000)
    assert (p8.epochs, p32.epochs) == (1.0, 4.0)
    assert p8.lr == p32.lr == 0.02  # lr_scaling "none": the config's LR as given
    assert any("different number of epochs" in n for n in p8.notes)
    assert not any("BatchNorm" in n for n in p8.notes)  # the tiny GroupNorm backbone
    bn = with_overrides(cfg, ["model.backbone=resnet50", "model.backbone_norm=bn"])
    assert any("BatchNorm statistics over the 2 images of each rank" in n
               for n in compute_plan(bn, world_size=8, num_train_images=16_000).notes)


def test_demo_defaults_plan_today_s_run_on_one_process():
    """configs/demo.toml on 1 process: 8 images, LR 0.02, 600 iterations, half non-balance (as
    before the plan existed: one epoch of 1200 images is 150 < 300 iterations)."""
    from wilddet.config import load_config

    cfg = load_config(CONFIGS / "demo.toml")
    plan = compute_plan(cfg, world_size=1, num_train_images=1200)
    assert (plan.batch_per_rank, plan.global_batch, plan.lr, plan.max_iters) == (8, 8, 0.02, 600)
    assert [(p.kind, p.start, p.stop) for p in plan.phases] == [("non-balance", 0, 300),
                                                                ("soft-balance", 300, 600)]
    assert resolve(cfg, plan) == cfg  # nothing to write in: the engine runs the config as is


def test_plan_phases_are_the_schedule_that_runs():
    index = small_index()
    for ranks, extra in ((1, []), (3, ["sampling.non_balance_min_epochs=2"]),
                         (2, ["sampling.kind=repeat-factor"])):
        cfg = with_overrides(demo_config("x"), ["train.batch_size=2", "train.max_iters=90",
                                                "sampling.non_balance_fraction=0.3", *extra])
        plan = compute_plan(cfg, world_size=ranks, index=index)
        run = resolve(cfg, plan)
        schedule = build_schedule(run.sampling, index, batch_size=run.train.batch_size,
                                  max_iters=run.train.max_iters, world_size=ranks, seed=0)
        assert [(s, e) for _, s, e in schedule.phases()] == [(p.start, p.stop)
                                                             for p in plan.phases]
        if ranks == 3:  # 2 epochs of 60 images at 6 per iteration = 20 < round(0.3 * 90) = 27
            assert plan.phases[0].stop == 27
    assert [p.kind for p in plan.phases] == ["repeat-factor"] and plan.phases[0].stop == 90


@pytest.mark.parametrize("kind", typing.get_args(SamplerKind))
@pytest.mark.parametrize("order", ["non-balance-first", "balance-first"])
def test_every_sampler_kind_and_hybrid_order_plans_the_phases_that_run(kind, order):
    """Review H8: the plan used to crash on "class-aware-cyclic" (so did `wilddet train`, which
    plans first) and to list a balance-first hybrid run's phases in the default order."""
    index = small_index()
    cfg = with_overrides(demo_config("x"), ["train.batch_size=2", "train.max_iters=90",
                                            "sampling.non_balance_fraction=0.3",
                                            f"sampling.kind={kind}",
                                            f"sampling.hybrid_order={order}"])
    plan = compute_plan(cfg, world_size=2, index=index)
    run = resolve(cfg, plan)
    schedule = build_schedule(run.sampling, index, batch_size=run.train.batch_size,
                              max_iters=run.train.max_iters, world_size=2, seed=0)
    assert [(s, e) for _, s, e in schedule.phases()] == [(p.start, p.stop) for p in plan.phases]
    assert [name.split("(")[0] for name, _, _ in schedule.phases()] == [p.kind
                                                                        for p in plan.phases]
    assert all(p.draws for p in plan.phases)

def test_plan_warns_when_a_sigmoid_loss_is_scored_with_a_softmax():
    """Review H8: the default test_scores (concurrent_softmax) silently applied to an EQL/EQLv2/
    federated/sigmoid model uses a background logit those losses never train."""
    index = small_index()
    for loss, scores, warned in (("eqlv2", "concurrent_softmax", True), ("eqlv2", "eqlv2", False),
                                 ("federated", "softmax", True), ("seesaw", "seesaw", False),
                                 ("sigmoid", "eql", False)):
        cfg = with_overrides(demo_config("x"), [f"model.classifier_loss={loss}",
                                                f"model.test_scores={scores}"])
        notes = compute_plan(cfg, world_size=1, index=index).notes
        assert any("never trains" in n for n in notes) == warned, (loss, scores)

def test_draws_per_image_brute_force():
    """D_c = T * Σ_{k ∋ c} P(k) / N_c against loops over images for soft-balance(λ)."""
    index = small_index(num_images=40, num_classes=4, seed=2)
    lam, draws = 0.5, 1000
    labels = [set(index.image_classes[index.image_offsets[k]:index.image_offsets[k + 1]])
              for k in range(index.num_images)]
    n = [sum(c in ls for ls in labels) for c in range(4)]
    z = sum(x ** lam for x in n if x)
    p_img = [sum(n[c] ** lam / z / n[c] for c in ls) for ls in labels]
    expected = [draws * sum(p for p, ls in zip(p_img, labels) if c in ls) / n[c]
                for c in range(4)]
    from wilddet.sampling.probabilities import soft_balance_image_probabilities

    got = class_draws(index, soft_balance_image_probabilities(index, lam), draws,
                      ["a", "b", "c", "d"])
    by_count = sorted(range(4), key=lambda c: (-n[c], c))
    assert [d.class_code for d in got] == [by_count[0], by_count[2], by_count[-1]]
    for d in got:
        assert d.images == n[d.class_code] and d.name == "abcd"[d.class_code]
        assert d.draws_per_image == pytest.approx(expected[d.class_code], rel=1e-12)
    assert got[2].draws_per_image > got[0].draws_per_image  # the tail is drawn more per image


def test_non_balance_draws_equal_epochs_and_text_lists_everything():
    index = small_index()
    cfg = with_overrides(demo_config("x"), ["train.batch_size=3", "train.max_iters=100"])
    plan = compute_plan(cfg, world_size=2, index=index, class_names=list("vwxyz"))
    first = plan.phases[0]
    assert first.epochs == pytest.approx(50 * 6 / 60)
    assert all(d.draws_per_image == pytest.approx(first.epochs) for d in first.draws)
    text = format_plan(plan, "demo")
    for words in ("3 per rank x 2 = 6 per iteration", "100 iterations = 10.00 epochs",
                  "non-balance", "soft-balance(lam=0.5)", "head v", "checkpoints"):
        assert words in text, words


@pytest.mark.parametrize("sets, key", [
    (["sampling.non_balance_fraction=1.0"], "sampling.non_balance_fraction"),
    (["sampling.non_balance_min_epochs=1", "train.max_iters=100"],
     "sampling.non_balance_min_epochs"),
    (["optim.lr_schedule=step", "optim.lr_step_iters=100,700"], "optim.lr_step_iters"),
])
def test_contradictions_exit_2_with_one_line_naming_the_key(sets, key, monkeypatch, capsys):
    args = [CONFIGS / "demo.toml", "--num-train-images", 1200]
    for item in sets:
        args += ["--set", item]
    code, out, err = plan_cli(monkeypatch, capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and f"{key}:" in err and "demo.toml" in err


def test_plan_reads_the_training_boxes_or_fails_clearly(tiny_data, tmp_path, monkeypatch,
                                                        capsys):
    from engine_helpers import tiny_config, write_config

    cfg = write_config(tmp_path / "c.toml", tiny_config(tiny_data, "train.max_iters=20"))
    code, out, err = plan_cli(monkeypatch, capsys, cfg, "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["index_available"] and plan["num_train_images"] == 16
    head = plan["phases"][1]["draws"]["head"]
    assert head["images"] >= 1 and head["name"] and head["draws_per_image"] > 0
    missing = write_config(tmp_path / "m.toml", tiny_config(tmp_path / "nowhere"))
    code, out, err = plan_cli(monkeypatch, capsys, missing)
    assert code == 2 and "--num-train-images" in err and "not found" in err


def test_train_prints_and_stores_the_plan(trained):
    """RUN/plan.json and RUN/plan.txt are the plan of the config on the run's world size."""
    from wilddet.engine.plan import load_training_index

    config, result = trained
    index, names = load_training_index(config)
    expected = compute_plan(config, world_size=1, index=index, class_names=names)
    assert json.loads((result.run_dir / "plan.json").read_text()) == json.loads(
        json.dumps(expected.to_json()))
    text = (result.run_dir / "plan.txt").read_text()
    assert text == format_plan(expected, f"{result.run_dir} on 1 rank(s)")
    assert "6 iterations" in text and result.iteration == expected.max_iters == 6


def test_new_config_fields_are_checked():
    from wilddet.config import Config
    from wilddet.errors import InputError

    for items, key in ((["optim.lr_step_iters=10,20", "optim.lr_step_epochs=1"],
                        "optim.lr_step_epochs"),
                       (["optim.lr_scaling=sqrt"], "optim.lr_scaling"),
                       (["train.max_epochs=-1"], "train.max_epochs"),
                       (["sampling.non_balance_min_epochs=-0.5"],
                        "sampling.non_balance_min_epochs")):
        with pytest.raises(InputError) as err:
            with_overrides(Config(), items)
        assert err.value.field == key


def test_challenge_recipe_config_plans_on_8_and_32_gpus():
    from wilddet.config import load_config

    cfg = load_config(CONFIGS / "oid_challenge2019_r50_fpn.toml")
    assert cfg.data.train_boxes == "challenge-2019-train-detection-bbox.csv"
    assert cfg.data.hierarchy == "challenge-2019-label500-hierarchy.json"
    plans = [compute_plan(cfg, world_size=w, num_train_images=OID_TRAIN_IMAGES) for w in (8, 32)]
    for plan in plans:
        assert [p.kind for p in plan.phases] == ["non-balance", "soft-balance"]
        assert plan.phases[1].epochs == pytest.approx(6, abs=1e-3)
    assert plans[0].epochs == pytest.approx(plans[1].epochs, abs=1e-3)
