"""Learning-rate schedule as a pure function of the iteration (so resuming needs only i).

    lr(i) = lr * warmup(i) * decay(i)
    warmup(i) = warmup_factor + (1 - warmup_factor) * i / warmup_iters  (i < warmup_iters; else 1)
    decay(i)  = "constant": 1
                "step":     gamma ** (number of steps s in step_iters with s <= i)
                "cosine":   m + (1 - m) * (1 + cos(pi * i / max_iters)) / 2,  m = min_lr_factor

``step_iters=()`` with "step" means the 1x-style steps at 2/3 and 8/9 of ``max_iters``.
"""

from __future__ import annotations

import bisect
import math

import torch

from wilddet.config import OptimConfig


def default_step_iters(max_iters: int) -> tuple[int, ...]:
    """(2/3, 8/9) of ``max_iters`` (detectron2's 1x: 60k, 80k of 90k)."""
    return (max(1, round(max_iters * 2 / 3)), max(1, round(max_iters * 8 / 9)))


def lr_factor(iteration: int, *, max_iters: int, warmup_iters: int = 0,
              warmup_factor: float = 0.001, schedule: str = "step",
              step_iters: tuple[int, ...] = (), gamma: float = 0.1,
              min_lr_factor: float = 0.0) -> float:
    """Multiplier of the base LR at ``iteration`` (0-based; the formula in the module doc)."""
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        warm = warmup_factor * (1 - alpha) + alpha
    else:
        warm = 1.0
    if schedule == "constant":
        decay = 1.0
    elif schedule == "step":
        steps = step_iters or default_step_iters(max_iters)
        decay = gamma ** bisect.bisect_right(steps, iteration)
    elif schedule == "cosine":
        t = min(iteration, max_iters) / max_iters
        decay = min_lr_factor + (1 - min_lr_factor) * 0.5 * (1 + math.cos(math.pi * t))
    else:
        raise ValueError(f"unknown LR schedule {schedule!r}")
    return warm * decay


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig,
                       max_iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over ``lr_factor``; call ``.step()`` once per iteration."""
    def factor(i: int) -> float:
        return lr_factor(i, max_iters=max_iters, warmup_iters=optim.warmup_iters,
                         warmup_factor=optim.warmup_factor, schedule=optim.lr_schedule,
                         step_iters=optim.lr_step_iters, gamma=optim.gamma,
                         min_lr_factor=optim.min_lr_factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
