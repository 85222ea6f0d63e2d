"""LR schedule: a pure function of the iteration, checked against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from wilddet.config import OptimConfig
from wilddet.engine.lr_schedule import build_lr_scheduler, default_step_iters, lr_factor


def test_warmup_is_linear_from_warmup_factor_to_one():
    kw = {"max_iters": 100, "warmup_iters": 10, "warmup_factor": 0.1, "schedule": "constant"}
    assert lr_factor(0, **kw) == pytest.approx(0.1)
    assert lr_factor(5, **kw) == pytest.approx(0.1 * 0.5 + 0.5)  # 0.55
    assert lr_factor(10, **kw) == 1.0 and lr_factor(99, **kw) == 1.0


def test_step_decay_and_default_steps():
    kw = {"max_iters": 90, "schedule": "step", "gamma": 0.1}
    assert default_step_iters(90) == (60, 80)
    assert [lr_factor(i, **kw) for i in (0, 59, 60, 79, 80, 89)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(30, step_iters=(30,), **kw) == pytest.approx(0.1)


def test_cosine_ends_at_min_factor():
    kw = {"max_iters": 100, "schedule": "cosine", "min_lr_factor": 0.2}
    assert lr_factor(0, **kw) == pytest.approx(1.0)
    assert lr_factor(50, **kw) == pytest.approx(0.2 + 0.8 * 0.5)
    assert lr_factor(100, **kw) == pytest.approx(0.2)
    assert lr_factor(25, **kw) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_lambda_scheduler_follows_the_function_and_resumes():
    cfg = OptimConfig(lr=0.5, warmup_iters=4, warmup_factor=0.25, lr_schedule="step",
                      lr_step_iters=(6,), gamma=0.5)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.lr)
    sched = build_lr_scheduler(opt, cfg, max_iters=10)
    seen = []
    for i in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expect = [0.5 * lr_factor(i, max_iters=10, warmup_iters=4, warmup_factor=0.25,
                              step_iters=(6,), gamma=0.5) for i in range(8)]
    assert seen == pytest.approx(expect)
    opt2 = torch.optim.SGD([p], lr=cfg.lr)
    sched2 = build_lr_scheduler(opt2, cfg, max_iters=10)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.5 * 0.5)  # iteration 8, after step 6
