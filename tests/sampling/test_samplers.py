"""Samplers: realized frequencies vs the formulas, DDP sharding, resume, determinism."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from wilddet.sampling.probabilities import ClassImageIndex
from wilddet.sampling.samplers import (
    ClassAwareSampler,
    NonBalanceSampler,
    RepeatFactorSampler,
    SoftBalanceSampler,
    pad_to_multiple,
)


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


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_images", [40, 37])  # 37: padding needed for world size 2 and 4
def test_ddp_shards_union_is_single_process_sequence(kind, num_images):
    index = long_tail_index(num_images=num_images)
    single = list(make(kind, index, seed=5))
    single_epoch1 = make(kind, index, seed=5).epoch_sequence(1)
    for world_size in (1, 2, 4):
        ranks = [make(kind, index, seed=5, rank=r, world_size=world_size)
                 for r in range(world_size)]
        locals_ = [list(s) for s in ranks]
        assert len({len(x) for x in locals_}) == 1  # equal length on every rank
        assert all(len(x) == len(s) for x, s in zip(locals_, ranks))
        merged = np.empty(len(locals_[0]) * world_size, np.int64)
        for r, x in enumerate(locals_):
            merged[r::world_size] = x  # position p of the global sequence went to rank p % W
        assert merged[:len(single)].tolist() == single  # nothing lost, same order
        # the padding repeats the head: no position is drawn twice except the padding
        np.testing.assert_array_equal(merged, pad_to_multiple(np.array(single), world_size))
        for s in ranks:  # epoch 1 likewise
            s.set_epoch(1)
            np.testing.assert_array_equal(s.local_indices(),
                                          pad_to_multiple(single_epoch1, world_size)[
                                              s.rank::world_size])


def test_ddp_non_balance_disjoint_and_complete():
    index = long_tail_index(num_images=40)
    shards = [set(NonBalanceSampler(index, seed=1, rank=r, world_size=4)) for r in range(4)]
    assert sum(len(s) for s in shards) == 40
    assert set().union(*shards) == set(range(40))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("world_size,rank", [(1, 0), (2, 1), (4, 2)])
def test_resume_mid_epoch_reproduces_rest(kind, world_size, rank):
    index = long_tail_index(num_images=80)
    first = make(kind, index, seed=9, rank=rank, world_size=world_size)
    first.set_epoch(3)
    it = iter(first)
    head = [next(it) for _ in range(7)]
    state = first.state_dict()
    rest = list(it)
    assert state["epoch"] == 3 and state["position"] == 7
    resumed = make(kind, index, seed=9, rank=rank, world_size=world_size)
    resumed.load_state_dict(state)
    assert list(resumed) == rest
    assert head + rest == first.local_indices(3).tolist()
    # after a full pass the sampler moved on to the start of the next epoch
    assert (first.epoch, first.position) == (4, 0) == (resumed.epoch, resumed.position)


def test_state_dict_position_override_and_checks():
    index = long_tail_index(num_images=50)
    s = SoftBalanceSampler(index, 0.5, seed=4)
    state = s.state_dict(position=12)  # e.g. what the trainer consumed
    other = SoftBalanceSampler(index, 0.5, seed=4)
    other.load_state_dict(state)
    assert list(other) == s.local_indices(0)[12:].tolist()
    with pytest.raises(ValueError, match="seed"):
        SoftBalanceSampler(index, 0.5, seed=5).load_state_dict(state)
    with pytest.raises(ValueError, match="kind"):
        SoftBalanceSampler(index, 0.7, seed=4).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size"):
        SoftBalanceSampler(index, 0.5, seed=4, world_size=2).load_state_dict(state)


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


class _Identity(Dataset):
    def __len__(self):
        return 10**9

    def __getitem__(self, i):
        return i


def test_indices_do_not_depend_on_num_workers():
    index = long_tail_index(num_images=64)
    drawn = {}
    for workers in (0, 2):
        sampler = SoftBalanceSampler(index, 0.5, seed=8)
        loader = DataLoader(_Identity(), batch_size=8, sampler=sampler, num_workers=workers)
        drawn[workers] = torch.cat(list(loader)).tolist()
    assert drawn[0] == drawn[2] == SoftBalanceSampler(index, 0.5, seed=8).local_indices(0).tolist()


def test_stream_crosses_epochs():
    index = long_tail_index(num_images=30)
    s = NonBalanceSampler(index, seed=0)
    np.testing.assert_array_equal(s.stream(25, 65), np.concatenate(
        [s.epoch_sequence(0)[25:], s.epoch_sequence(1), s.epoch_sequence(2)[:5]]))


def test_bad_arguments():
    index = long_tail_index(num_images=30)
    with pytest.raises(ValueError, match="rank"):
        NonBalanceSampler(index, rank=2, world_size=2)
    with pytest.raises(ValueError, match="seed"):
        NonBalanceSampler(index, seed=-1)
    empty = ClassImageIndex.from_codes(np.zeros(0, np.int32), np.zeros(0, np.int32), 5, 3)
    with pytest.raises(ValueError, match="no class"):
        ClassAwareSampler(empty)
    assert len(list(NonBalanceSampler(empty))) == 5  # non-balance still draws unlabelled images
