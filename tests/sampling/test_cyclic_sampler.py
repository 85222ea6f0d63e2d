"""Cyclic class-aware sampling (Shen et al.): every class once per round, each image of a class
once per pass, a pure function of (seed, position)."""

import typing

import numpy as np
import pytest

from wilddet.config import SamplerKind
from wilddet.sampling import ClassImageIndex
from wilddet.sampling.probabilities import soft_balance_image_probabilities
from wilddet.sampling.samplers import CyclicClassAwareSampler, build_sampler
from wilddet.sampling.schedule import HybridSchedule, segment


@pytest.fixture
def index():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 25, 80)
    labels = np.where(rng.random(80) < 0.1, 4, rng.integers(0, 4, 80))  # class 4 is rare
    images[labels == 4] = np.arange((labels == 4).sum()) % 2   # ... in 2 images only
    return ClassImageIndex.from_codes(images, labels, 27, 6)   # class 5 empty, 2 images empty


def test_every_class_once_per_round(index):
    sampler = CyclicClassAwareSampler(index, seed=3)
    k = len(sampler.classes)
    assert list(sampler.classes) == [0, 1, 2, 3, 4]
    classes, _ = sampler.classes_and_images(0, 40 * k)
    for r in range(40):
        assert sorted(classes[r * k:(r + 1) * k]) == list(sampler.classes)


def test_each_image_of_a_class_once_before_repeats(index):
    sampler = CyclicClassAwareSampler(index, seed=3)
    classes, images = sampler.classes_and_images(0, 60 * len(sampler.classes))
    for c in sampler.classes:
        members = index.class_images[index.class_offsets[c]:index.class_offsets[c + 1]]
        visits = images[classes == c]
        n = len(members)
        for start in range(0, len(visits) - n + 1, n):  # one pass = n consecutive visits
            assert sorted(visits[start:start + n]) == sorted(members)
        assert len({tuple(visits[s:s + n]) for s in range(0, len(visits) - n + 1, n)}) > 1


def test_epochs_are_slices_of_one_stream_and_seeded(index):
    sampler = CyclicClassAwareSampler(index, seed=5, num_samples_per_epoch=13)
    stream = sampler.classes_and_images(0, 13 * 4)[1]
    assert np.array_equal(np.concatenate([sampler.epoch_sequence(e) for e in (0, 1, 2, 3)]),
                          stream)
    assert np.array_equal(sampler.epoch_sequence(2), stream[26:39])  # any order of calls
    assert np.array_equal(sampler.stream(7, 40), stream[7:40])
    other = CyclicClassAwareSampler(index, seed=6, num_samples_per_epoch=13)
    assert not np.array_equal(other.epoch_sequence(0), sampler.epoch_sequence(0))
    assert sampler.epoch_length == 13 and CyclicClassAwareSampler(index).epoch_length == 27


def test_long_run_matches_class_aware_probabilities(index):
    sampler = CyclicClassAwareSampler(index, seed=0)
    k = len(sampler.classes)
    # lcm of the class sizes' passes is large; 2000 rounds put the shares within ~1%
    _, images = sampler.classes_and_images(0, 2000 * k)
    realized = np.bincount(images, minlength=index.num_images) / len(images)
    expected = soft_balance_image_probabilities(index, 0.0)
    assert np.allclose(sampler.image_probabilities(), expected)
    assert np.abs(realized - expected).max() < 0.01
    assert realized[index.classes_per_image == 0].sum() == 0  # unlabelled images never drawn


def test_ddp_ranks_share_the_stream_through_the_schedule(index):
    sampler = build_sampler("class-aware-cyclic", index, seed=1)
    assert isinstance(sampler, CyclicClassAwareSampler) and sampler.name in typing.get_args(SamplerKind)
    schedule = HybridSchedule([segment(sampler)], batch_size=2, max_iters=10, world_size=3)
    for it in range(10):
        ranks = np.concatenate([schedule.batch_indices(it, r) for r in range(3)])
        assert np.array_equal(np.sort(ranks), np.sort(sampler.stream(6 * it, 6 * it + 6)))


def test_no_labelled_class_raises():
    empty = ClassImageIndex.from_codes(np.zeros(0, np.int64), np.zeros(0, np.int64), 3, 2)
    with pytest.raises(ValueError, match="nothing to draw"):
        CyclicClassAwareSampler(empty)
