"""Shared pieces of the loss tests (one torch thread: tests/conftest.py)."""

from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture
def bce():
    """BCE(z, y) = max(z, 0) - z y + log(1 + e^{-|z|}) on python floats (the spec's formula)."""
    return lambda z, y: max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z)))


@pytest.fixture
def multi_hot_case():
    """case(R, C, seed) -> (logits [R, C] float64, targets [R, C] bool): ~40 % background RoIs
    (e_0), the others with 1-3 foreground labels."""

    def _case(num_rows: int, num_cols: int, seed: int, scale: float = 3.0):
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(num_rows, num_cols, generator=gen, dtype=torch.float64) * scale
        y = torch.zeros(num_rows, num_cols, dtype=torch.bool)
        for r in range(num_rows):
            if float(torch.rand((), generator=gen)) < 0.4:
                y[r, 0] = True
            else:
                count = int(torch.randint(1, 4, (), generator=gen))
                y[r, 1 + torch.randperm(num_cols - 1, generator=gen)[:count]] = True
        return z, y

    return _case
