"""The stateful classifier heads under DDP: with the engine's ``all_reduce_sum``, two gloo ranks
that each see half of a batch end with the state of one process that sees all of it (EQLv2
gradient statistics, Seesaw class counts), and every rank holds the same state."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wilddet.engine.distributed import all_reduce_sum
from wilddet.model.classifiers import EQLv2Head, SeesawHead

K = 5


def batches(steps=2, rois=12):
    """Fixed logits [R, K+1] and multi-hot targets per step (multi-label RoIs included)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(steps):
        logits = torch.randn(rois, K + 1, generator=gen, dtype=torch.float64)
        labels = torch.randint(0, K + 1, (rois,), generator=gen)
        targets = torch.nn.functional.one_hot(labels, K + 1).bool()
        targets[::3, 2] = targets[::3, 1:].any(1)  # some foreground RoIs also carry class 2
        out.append((logits, targets))
    return out


def run_heads(rank, world_size, reduce_sum):
    """State of both heads after the steps, rank ``rank`` seeing every world_size-th RoI."""
    heads = [EQLv2Head(K, reduce_sum=reduce_sum), SeesawHead(K, reduce_sum=reduce_sum)]
    for logits, targets in batches():
        for head in heads:
            head.loss(logits[rank::world_size], targets[rank::world_size])
    return {f"{type(h).__name__}.{k}": v for h in heads for k, v in h.state_dict().items()}


def _worker(rank, world_size, init_file, queue):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        # plain lists: a tensor would be shared through a file descriptor of this process,
        # which may have exited before the parent reads it
        state = run_heads(rank, world_size, all_reduce_sum)
        queue.put((rank, {k: (v.dtype, v.tolist()) for k, v in state.items()}))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_sum_the_head_state(tmp_path):
    one = run_heads(0, 1, all_reduce_sum)  # one process: all_reduce_sum is the identity
    assert one["EQLv2Head.eqlv2.num_updates"] == 2 and one["EQLv2Head.eqlv2.pos_grad"].sum() > 0
    context = mp.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_worker, args=(r, 2, str(tmp_path / "init"), queue))
             for r in range(2)]
    for p in procs:
        p.start()
    states = {rank: {k: torch.tensor(v, dtype=dtype) for k, (dtype, v) in state.items()}
              for rank, state in (queue.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for rank in (0, 1):
        assert set(states[rank]) == set(one)
        for key, value in one.items():
            torch.testing.assert_close(states[rank][key], value, msg=key)
    # without the reduction each rank would only count its own half
    alone = run_heads(0, 2, None)
    assert not torch.equal(alone["SeesawHead.seesaw.class_counts"],
                           one["SeesawHead.seesaw.class_counts"])
