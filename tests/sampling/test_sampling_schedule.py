"""Hybrid schedule: phases, coverage of the non-balance phase, DDP batches, resume, mixing."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from wilddet.data.class_index import ClassImageIndex
from wilddet.sampling.samplers import NonBalanceSampler, SoftBalanceSampler
from wilddet.sampling.schedule import (
    EmptyPhaseError,
    HybridSchedule,
    ScheduleBatchSampler,
    default_hybrid_schedule,
    hybrid_phase_iters,
    mixed_segment,
    segment,
    split_batch,
)


def index_with(num_images=103, num_classes=9, seed=0, empty=4):
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_classes + 1) ** 1.5
    n = 3 * num_images
    labels = rng.choice(num_classes, n, p=weights / weights.sum()).astype(np.int32)
    images = rng.integers(0, num_images - empty, n).astype(np.int32)
    return ClassImageIndex.from_codes(images, labels, num_images, num_classes)


@pytest.mark.parametrize("world_size,batch_size,max_iters", [(1, 4, 100), (3, 2, 60), (4, 5, 7)])
def test_default_visits_every_image_in_non_balance_phase(world_size, batch_size, max_iters):
    index = index_with()  # 103 images, 4 of them without boxes
    sched = default_hybrid_schedule(index, batch_size=batch_size, max_iters=max_iters,
                                    world_size=world_size, seed=2, non_balance_min_epochs=1)
    (name0, start0, stop0), (name1, start1, stop1) = sched.phases()
    assert name0 == "non-balance" and name1.startswith("soft-balance")
    assert start0 == 0 and stop0 == start1 and stop1 == max_iters
    assert stop0 >= math.ceil(103 / (batch_size * world_size))
    seen = set()
    for i in range(start0, stop0):
        for rank in range(world_size):
            seen.update(sched.batch_indices(i, rank).tolist())
    assert seen == set(range(103))  # images without boxes too


def test_phase_at_and_lengths():
    index = index_with()
    sched = default_hybrid_schedule(index, batch_size=4, max_iters=100, seed=0)
    assert sched.phase_at(0) == sched.phase_at(49) == "non-balance"
    assert sched.phase_at(50) == sched.phase_at(99) == "soft-balance(lam=0.5)"
    with pytest.raises(IndexError):
        sched.phase_at(100)
    # a short run: half of it by default; one full epoch (ceil(103 / 4) = 26) when asked
    short = default_hybrid_schedule(index, batch_size=4, max_iters=30, seed=0)
    assert short.phases()[0][2] == 15
    short = default_hybrid_schedule(index, batch_size=4, max_iters=30, seed=0,
                                    non_balance_min_epochs=1)
    assert short.phases()[0][2] == 26


def test_hybrid_phase_iters_hand_worked():
    kw = {"num_images": 1000, "global_batch_size": 10}
    assert hybrid_phase_iters(max_iters=300, non_balance_fraction=0.25, **kw) == 75
    # one epoch = 100 iterations > 75
    assert hybrid_phase_iters(max_iters=300, non_balance_fraction=0.25,
                              non_balance_min_epochs=1, **kw) == 100
    assert hybrid_phase_iters(max_iters=300, non_balance_fraction=0.5,
                              non_balance_min_epochs=1, **kw) == 150
    # 1.5 epochs of 1000 images at 16 per iteration: ceil(93.75) = 94
    assert hybrid_phase_iters(num_images=1000, global_batch_size=16, max_iters=300,
                              non_balance_fraction=0.0, non_balance_min_epochs=1.5) == 94


@pytest.mark.parametrize("kw, phase, cause", [
    ({"max_iters": 300, "non_balance_fraction": 1.0}, "soft-balance", "fraction"),
    ({"max_iters": 300, "non_balance_fraction": 0.0}, "non-balance", "fraction"),
    ({"max_iters": 1, "non_balance_fraction": 0.4}, "non-balance", "fraction"),
    ({"max_iters": 90, "non_balance_fraction": 0.5, "non_balance_min_epochs": 1},
     "soft-balance", "min_epochs"),
])
def test_empty_phase_is_an_error(kw, phase, cause):
    with pytest.raises(EmptyPhaseError) as err:
        hybrid_phase_iters(num_images=1000, global_batch_size=10, **kw)
    assert err.value.phase == phase and err.value.cause == cause
    assert f"the {phase} phase is empty" in str(err.value)
    with pytest.raises(EmptyPhaseError):  # the schedule refuses it too (no silent one-phase run)
        default_hybrid_schedule(index_with(), batch_size=5, max_iters=kw["max_iters"],
                                non_balance_fraction=kw["non_balance_fraction"],
                                non_balance_min_epochs=1e4 * kw.get("non_balance_min_epochs", 0))


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_rank_batches_union_is_global_batch(world_size):
    index = index_with()
    sched = default_hybrid_schedule(index, batch_size=3, max_iters=40, world_size=world_size)
    for i in (0, 5, 17, 39):
        glob = sched.batch_indices(i)
        per_rank = [sched.batch_indices(i, r) for r in range(world_size)]
        assert all(len(b) == 3 for b in per_rank)
        merged = np.empty(3 * world_size, np.int64)
        for r, b in enumerate(per_rank):
            merged[r::world_size] = b
        np.testing.assert_array_equal(merged, glob)


def test_single_process_batches_follow_sampler_streams():
    index = index_with()
    nb = NonBalanceSampler(index, seed=1)
    sb = SoftBalanceSampler(index, 0.5, seed=1)
    sched = HybridSchedule([segment(nb, iterations=10), segment(sb)], batch_size=4, max_iters=20)
    got = np.concatenate([sched.batch_indices(i, 0) for i in range(20)])
    np.testing.assert_array_equal(got[:40], nb.stream(0, 40))
    np.testing.assert_array_equal(got[40:], sb.stream(0, 40))


def test_batches_are_pure_functions_of_iteration():
    index = index_with()
    a = default_hybrid_schedule(index, batch_size=2, max_iters=200, world_size=2, seed=7)
    b = default_hybrid_schedule(index, batch_size=2, max_iters=200, world_size=2, seed=7)
    forward = [a.batch_indices(i, 1) for i in range(200)]
    backward = [b.batch_indices(i, 1) for i in reversed(range(200))][::-1]
    for x, y in zip(forward, backward):
        np.testing.assert_array_equal(x, y)
    c = default_hybrid_schedule(index, batch_size=2, max_iters=200, world_size=2, seed=8)
    assert not np.array_equal(np.concatenate(forward),
                              np.concatenate([c.batch_indices(i, 1) for i in range(200)]))


class _Identity(Dataset):
    def __len__(self):
        return 10**9

    def __getitem__(self, i):
        return i


def test_batch_sampler_resume_and_dataloader():
    index = index_with()
    sched = default_hybrid_schedule(index, batch_size=3, max_iters=30, world_size=2, seed=3)
    full = list(ScheduleBatchSampler(sched, rank=1, world_size=2))
    assert len(full) == 30 and all(len(b) == 3 for b in full)
    resumed = ScheduleBatchSampler(sched, 1, 2, start_iteration=12)
    assert len(resumed) == 18 and list(resumed) == full[12:]
    # state round trip mid-run
    bs = ScheduleBatchSampler(sched, 1)
    it = iter(bs)
    for _ in range(5):
        next(it)
    again = ScheduleBatchSampler(sched, 1)
    again.load_state_dict(bs.state_dict())
    assert list(again) == full[5:]
    loader = DataLoader(_Identity(), batch_sampler=ScheduleBatchSampler(sched, 1), num_workers=0)
    assert [b.tolist() for b in loader] == full
    with pytest.raises(ValueError, match="world_size"):
        ScheduleBatchSampler(sched, 0, world_size=4)


def test_indices_do_not_depend_on_num_workers():
    index = index_with()
    drawn = {}
    for workers in (0, 2):
        sched = HybridSchedule([segment(SoftBalanceSampler(index, 0.5, seed=8))], batch_size=8,
                               max_iters=8, world_size=2)
        loader = DataLoader(_Identity(), batch_sampler=ScheduleBatchSampler(sched, rank=1),
                            num_workers=workers)
        drawn[workers] = torch.cat(list(loader)).tolist()
    expected = SoftBalanceSampler(index, 0.5, seed=8).stream(0, 8 * 16)[1::2].tolist()
    assert drawn[0] == drawn[2] == expected


def test_mixed_segment_splits_each_batch():
    index = index_with()
    nb = NonBalanceSampler(index, seed=0)
    sb = SoftBalanceSampler(index, 0.5, seed=0)
    sched = HybridSchedule([mixed_segment([(nb, 0.25), (sb, 0.75)])], batch_size=4, max_iters=10,
                           world_size=2)
    assert sched.phase_at(3) == "mix(0.25 non-balance + 0.75 soft-balance(lam=0.5))"
    t = 3  # per rank: 1 non-balance + 3 soft-balance; globally 2 + 6
    np.testing.assert_array_equal(sched.batch_indices(t),
                                  np.concatenate([nb.stream(2 * t, 2 * t + 2),
                                                  sb.stream(6 * t, 6 * t + 6)]))
    rank1 = sched.batch_indices(t, 1)
    np.testing.assert_array_equal(rank1, [nb.stream(7, 8)[0], *sb.stream(18, 24)[1::2]])
    assert split_batch(4, [0.25, 0.75]).tolist() == [1, 3]
    assert split_batch(5, [0.5, 0.5]).tolist() == [3, 2]
    assert split_batch(7, [0.2, 0.3, 0.5]).sum() == 7


def test_reused_sampler_continues_its_stream_and_epoch_lengths():
    index = index_with()
    nb = NonBalanceSampler(index, seed=0)
    sb = SoftBalanceSampler(index, 1.0, seed=0)
    sched = HybridSchedule([segment(nb, epochs=1), segment(sb, iterations=5), segment(nb)],
                           batch_size=10, max_iters=20)
    assert [p[1:] for p in sched.phases()] == [(0, 11), (11, 16), (16, 20)]
    np.testing.assert_array_equal(sched.batch_indices(16), nb.stream(110, 120))


def test_schedule_errors_and_state_check():
    index = index_with()
    nb = NonBalanceSampler(index, seed=0)
    with pytest.raises(ValueError, match="sum to 1"):
        mixed_segment([(nb, 0.5), (nb, 0.4)])
    with pytest.raises(ValueError, match="cover"):
        HybridSchedule([segment(nb, iterations=3)], batch_size=2, max_iters=10)
    with pytest.raises(ValueError, match="last segment"):
        HybridSchedule([segment(nb), segment(nb, iterations=3)], batch_size=2, max_iters=10)
    a = default_hybrid_schedule(index, batch_size=2, max_iters=50, seed=0)
    a.load_state_dict(default_hybrid_schedule(index, batch_size=2, max_iters=50).state_dict())
    with pytest.raises(ValueError, match="phases"):
        a.load_state_dict(default_hybrid_schedule(index, batch_size=2, max_iters=50,
                                                  seed=1).state_dict())
