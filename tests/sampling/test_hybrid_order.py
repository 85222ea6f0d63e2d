"""The hybrid schedule in both orders (``sampling.hybrid_order``): the same two phases, swapped."""

import numpy as np

from wilddet.config import SamplingConfig
from wilddet.engine.builders import build_schedule
from wilddet.sampling import ClassImageIndex


def _index():
    rng = np.random.default_rng(0)
    return ClassImageIndex.from_codes(rng.integers(0, 40, 120), rng.integers(0, 5, 120), 40, 5)


def test_balance_first_swaps_the_phases():
    index = _index()
    kw = {"batch_size": 4, "max_iters": 30, "world_size": 1, "seed": 2}
    first = build_schedule(SamplingConfig(non_balance_fraction=0.4), index, **kw)
    swapped = build_schedule(SamplingConfig(non_balance_fraction=0.4,
                                            hybrid_order="balance-first"), index, **kw)
    assert first.phases() == [("non-balance", 0, 12), ("soft-balance(lam=0.5)", 12, 30)]
    assert swapped.phases() == [("soft-balance(lam=0.5)", 0, 18), ("non-balance", 18, 30)]
    # each phase draws the same images as in the other order (both streams start at 0)
    assert np.array_equal(swapped.batch_indices(0), first.batch_indices(12))
    assert np.array_equal(swapped.batch_indices(18), first.batch_indices(0))
