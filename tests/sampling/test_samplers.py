"""Samplers: realized frequencies vs the formulas, the factory, DDP sharding through the
schedule, resume from any stream position, determinism."""

import typing

import numpy as np
import pytest
import torch

from wilddet.config import SamplerKind
from wilddet.data.class_index import ClassImageIndex
from wilddet.sampling.samplers import (
    ClassAwareSampler,
    NonBalanceSampler,
    RepeatFactorSampler,
    SoftBalanceSampler,
    build_sampler,
)
from wilddet.sampling.schedule import HybridSchedule, segment


def long_tail_index(num_images=400, num_classes=12, boxes_per_image=3, seed=0, empty=0):
    """Random long-tailed multi-label index; the last ``empty`` images have no boxes."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_classes + 1) ** 1.3
    n = (num_images - empty) * boxes_per_image
    labels = rng.choice(num_classes, n, p=weights / weights.sum()).astype(np.int32)
    images = rng.integers(0, num_images - empty, n).astype(np.int32)
    return ClassImageIndex.from_codes(images, labels, num_images, num_classes)


def assert_shares_match(index, drawn, image_probs, sigmas=5.0):
    """Realized share of draws containing each class within ``sigmas`` binomial standard errors
    of the expected share."""
    n = len(drawn)
    expected = index.class_share(image_probs)
    realized = index.class_share(np.bincount(drawn, minlength=index.num_images)) / n
    tol = sigmas * np.sqrt(expected * (1 - expected) / n) + 1e-12
    bad = np.abs(realized - expected) > tol
    assert not bad.any(), (expected[bad], realized[bad], tol[bad])
    return expected, realized


def make(kind, index, **kw):
    if kind == "non-balance":
        return NonBalanceSampler(index, **kw)
    if kind == "class-aware":
        return ClassAwareSampler(index, **kw)
    if kind == "soft-balance":
        return SoftBalanceSampler(index, 0.5, **kw)
    return RepeatFactorSampler(index, 0.2, **kw)


KINDS = ["non-balance", "class-aware", "soft-balance", "repeat-factor"]


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_soft_balance_realized_class_shares(lam):
    index = long_tail_index()
    sampler = SoftBalanceSampler(index, lam, num_samples_per_epoch=200_000, seed=3)
    drawn = sampler.epoch_sequence(0)
    expected, _ = assert_shares_match(index, drawn, sampler.image_probabilities())
    if lam == 0.0:  # the rarest class is boosted far above its data frequency
        rare = np.argmin(index.images_per_class)
        assert expected[rare] > 2 * index.images_per_class[rare] / index.num_images


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_hand_example_image_frequencies(lam):
    # images 0: {A, B}, 1: {B}, 2: {A, C}, 3: none
    index = ClassImageIndex.from_codes(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 0, 2]), 4, 3)
    sampler = SoftBalanceSampler(index, lam, num_samples_per_epoch=100_000, seed=1)
    counts = np.bincount(sampler.epoch_sequence(0), minlength=4)
    p = sampler.image_probabilities()
    n = counts.sum()
    assert counts[3] == 0  # an image without boxes is never drawn by a class-based sampler
    assert np.all(np.abs(counts / n - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12)


def test_repeat_factor_realized_class_shares():
    index = long_tail_index()
    sampler = RepeatFactorSampler(index, 0.2, seed=2)
    assert sampler.repeat_factors.max() > 1.5  # the threshold really repeats tail images
    drawn = sampler.stream(0, 200_000)  # ~300 epochs
    assert_shares_match(index, drawn, sampler.image_probabilities())


def test_repeat_factor_rounds_are_whole_repeats():
    index = long_tail_index()
    # threshold 0: every r = 1, so an epoch (= one round) is a permutation, as non-balance
    flat = RepeatFactorSampler(index, 0.0, seed=0)
    assert sorted(flat.epoch_sequence(0).tolist()) == list(range(index.num_images))
    # stochastic rounding: image k appears floor(r) or ceil(r) times in a round, r on average
    sampler = RepeatFactorSampler(index, 0.2, seed=0)
    r = sampler.repeat_factors
    rng = np.random.default_rng(7)
    counts = np.stack([np.bincount(sampler.round(rng), minlength=index.num_images)
                       for _ in range(400)])  # [rounds, I]
    assert np.all((counts >= np.floor(r)) & (counts <= np.ceil(r)))
    frac = r - np.floor(r)
    mean_err = np.abs(counts.mean(0) - r)
    assert np.all(mean_err <= 5 * np.sqrt(frac * (1 - frac) / 400) + 1e-12)
    assert sampler.num_samples_per_epoch == len(sampler.epoch_sequence(0)) == round(r.sum())


def test_non_balance_epochs_are_permutations():
    index = long_tail_index(empty=5)
    sampler = NonBalanceSampler(index, seed=0)
    e0, e1 = sampler.epoch_sequence(0), sampler.epoch_sequence(1)
    assert sorted(e0.tolist()) == list(range(400)) == sorted(e1.tolist())
    assert not np.array_equal(e0, e1)


def test_lambda_zero_equals_class_aware():
    index = long_tail_index()
    a = ClassAwareSampler(index, seed=11, num_samples_per_epoch=5000)
    b = SoftBalanceSampler(index, 0.0, seed=11, num_samples_per_epoch=5000)
    np.testing.assert_array_equal(a.epoch_sequence(2), b.epoch_sequence(2))
    np.testing.assert_allclose(a.class_probs[index.images_per_class > 0], 1 / 12)


def test_build_sampler_builds_every_config_kind():
    index = long_tail_index(num_images=60)
    kinds = [k for k in typing.get_args(SamplerKind) if k != "hybrid"]
    for kind in kinds:
        sampler = build_sampler(kind, index, lam=0.5, repeat_threshold=0.2, seed=3)
        assert sampler.name.split("(")[0] == kind  # the name training logs as its phase
        assert sampler.seed == 3
    np.testing.assert_array_equal(build_sampler("class-aware", index, seed=3).stream(0, 300),
                                  ClassAwareSampler(index, seed=3).stream(0, 300))
    assert build_sampler("soft-balance", index, lam=0.25).lam == 0.25
    assert build_sampler("repeat-factor", index, repeat_threshold=0.2).threshold == 0.2
    for bad in ("hybrid", "balanced"):
        with pytest.raises(ValueError, match="unknown sampler"):
            build_sampler(bad, index)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_images", [40, 37])  # 37: batches straddle epoch boundaries
def test_ddp_shards_union_is_single_process_stream(kind, num_images):
    """Training shards through the schedule: rank r takes every W-th image of each global batch,
    so the ranks' batches interleaved are the sampler's single-process stream."""
    index = long_tail_index(num_images=num_images)
    single = make(kind, index, seed=5).stream(0, 12 * 4 * 3)
    for world_size in (1, 2, 4):
        sched = HybridSchedule([segment(make(kind, index, seed=5))], batch_size=3,
                               max_iters=12, world_size=world_size)
        g = 3 * world_size
        for it in range(12):
            batches = [sched.batch_indices(it, r) for r in range(world_size)]
            assert {len(b) for b in batches} == {3}  # equal length on every rank
            merged = np.empty(g, np.int64)
            for r, b in enumerate(batches):
                merged[r::world_size] = b
            np.testing.assert_array_equal(merged, single[it * g:(it + 1) * g])


def test_ddp_non_balance_disjoint_and_complete():
    index = long_tail_index(num_images=40)
    sched = HybridSchedule([segment(NonBalanceSampler(index, seed=1))], batch_size=10,
                           max_iters=1, world_size=4)  # one global batch = one epoch
    shards = [set(sched.batch_indices(0, r).tolist()) for r in range(4)]
    assert sum(len(s) for s in shards) == 40
    assert set().union(*shards) == set(range(40))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cut", [0, 7, 80, 123])
def test_resume_anywhere_reproduces_rest(kind, cut):
    """A fresh sampler (as after a restart) continues the stream exactly at any position, also
    inside an epoch and across epoch boundaries."""
    index = long_tail_index(num_images=80)
    first = make(kind, index, seed=9)
    whole = first.stream(0, 300)
    resumed = make(kind, index, seed=9)
    np.testing.assert_array_equal(np.concatenate([whole[:cut], resumed.stream(cut, 300)]), whole)


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_and_no_global_rng(kind):
    index = long_tail_index(num_images=60)
    np.random.seed(1)
    torch.manual_seed(1)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    a = make(kind, index, seed=3).stream(0, 500)
    assert np.array_equal(np.random.get_state()[1], np_state)  # global RNGs untouched
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.random.seed(2)
    torch.manual_seed(2)
    b = make(kind, index, seed=3).stream(0, 500)
    np.testing.assert_array_equal(a, b)
    c = make(kind, index, seed=4).stream(0, 500)
    assert not np.array_equal(a, c)


def test_stream_crosses_epochs():
    index = long_tail_index(num_images=30)
    s = NonBalanceSampler(index, seed=0)
    np.testing.assert_array_equal(s.stream(25, 65), np.concatenate(
        [s.epoch_sequence(0)[25:], s.epoch_sequence(1), s.epoch_sequence(2)[:5]]))


def test_bad_arguments():
    index = long_tail_index(num_images=30)
    with pytest.raises(ValueError, match="seed"):
        NonBalanceSampler(index, seed=-1)
    empty = ClassImageIndex.from_codes(np.zeros(0, np.int32), np.zeros(0, np.int32), 5, 3)
    with pytest.raises(ValueError, match="no class"):
        ClassAwareSampler(empty)
    # non-balance still draws unlabelled images
    assert sorted(NonBalanceSampler(empty).epoch_sequence(0).tolist()) == list(range(5))
