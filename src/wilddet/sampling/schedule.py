"""Hybrid training scheduler: phases of samplers over iterations, optionally mixed per batch (§3).

Shapes: ``I`` images, ``b`` images per rank per batch, ``W`` world size, ``G = b * W`` images per
global batch, ``b_j`` / ``G_j = b_j * W`` the part of a batch drawn from component sampler j.

A schedule is a list of ``Segment``s, each run for a number of iterations (given directly or as
epochs of its first sampler); a segment draws each batch from one sampler or from several at fixed
fractions (per-batch mixing). Default (``default_hybrid_schedule``): non-balance for a fraction
of the run (``hybrid_phase_iters``; optionally at least a given number of non-balance epochs, so
every image is seen), then soft-balance (λ = 0.5) to the end, including the LR decay. The phase
lengths are fractions of the run, so they do not move with the world size; a phase that comes
out empty is an error (``EmptyPhaseError``), never a silent one-sampler run.

Batches are a pure function of (sampler seeds, iteration, rank, world size): component j of the
segment that contains iteration i takes stream positions [s_j + t*G_j, s_j + (t+1)*G_j) of its
sampler's ``stream`` (t = i - segment start; s_j = what earlier segments already took from that
same sampler object, so a sampler reused later continues where it stopped), and rank r keeps
``chunk[r::W]``. So resuming at iteration i needs nothing but i: ``ScheduleBatchSampler(...,
start_iteration=i)``. The union over ranks of one iteration's batches is ``batch_indices(i)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch.utils.data

from wilddet.data.class_index import ClassImageIndex
from wilddet.sampling.samplers import IndexSampler, NonBalanceSampler, SoftBalanceSampler


@dataclass(frozen=True)
class Segment:
    """One phase. ``components``: ((sampler, fraction of each batch), ...), fractions sum to 1.
    Length: ``iterations``, or ``epochs`` of the first component (iterations =
    ceil(epochs * E_0 / G_0), E_0 its epoch length), or neither = until ``max_iters`` (last
    segment only). ``name`` is what ``phase_at`` reports (default from the samplers' names)."""

    components: tuple[tuple[IndexSampler, float], ...]
    iterations: int | None = None
    epochs: float | None = None
    name: str | None = None

    def __post_init__(self):
        if not self.components:
            raise ValueError("a segment needs at least one sampler")
        if self.iterations is not None and self.epochs is not None:
            raise ValueError("give a segment's length in iterations or in epochs, not both")
        if any(f < 0 for _, f in self.components):
            raise ValueError("batch fractions must be >= 0")
        if not math.isclose(sum(f for _, f in self.components), 1.0, abs_tol=1e-6):
            raise ValueError("a segment's batch fractions must sum to 1")
        if self.name is None:
            if len(self.components) == 1:
                label = self.components[0][0].name
            else:
                label = "mix(" + " + ".join(f"{f:g} {s.name}" for s, f in self.components) + ")"
            object.__setattr__(self, "name", label)


def segment(sampler: IndexSampler, *, iterations: int | None = None,
            epochs: float | None = None, name: str | None = None) -> Segment:
    """A phase drawing whole batches from one sampler."""
    return Segment(((sampler, 1.0),), iterations, epochs, name)


def mixed_segment(components, *, iterations: int | None = None, epochs: float | None = None,
                  name: str | None = None) -> Segment:
    """A phase whose every batch takes ``fraction`` of its images from each (sampler, fraction)."""
    return Segment(tuple((s, float(f)) for s, f in components), iterations, epochs, name)


def split_batch(batch_size: int, fractions) -> np.ndarray:
    """Per-rank images per component: largest-remainder rounding of ``fractions * batch_size``
    (ties to the earlier component); sums to ``batch_size``."""
    exact = np.asarray(fractions, dtype=np.float64) * batch_size
    counts = np.floor(exact + 1e-9).astype(np.int64)
    short = batch_size - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


@dataclass(frozen=True)
class _Phase:
    name: str
    start: int  # first iteration
    stop: int  # one past the last iteration
    samplers: tuple[IndexSampler, ...]
    per_rank: tuple[int, ...]  # b_j
    stream_start: tuple[int, ...]  # s_j


class HybridSchedule:
    """Segments laid out over iterations [0, max_iters) for ``batch_size`` images per rank and
    ``world_size`` ranks. Segments past ``max_iters`` are cut; fixed-length segments that end
    before ``max_iters`` are an error (end with an open-ended segment)."""

    def __init__(self, segments, *, batch_size: int, max_iters: int, world_size: int = 1):
        if batch_size < 1 or max_iters < 1 or world_size < 1:
            raise ValueError("batch_size, max_iters and world_size must be >= 1")
        segments = list(segments)
        if not segments:
            raise ValueError("a schedule needs at least one segment")
        self.batch_size = int(batch_size)
        self.max_iters = int(max_iters)
        self.world_size = int(world_size)
        phases: list[_Phase] = []
        consumed: dict[int, int] = {}  # id(sampler) -> stream positions used so far
        start = 0
        for n, seg in enumerate(segments):
            fractions = [f for _, f in seg.components]
            per_rank = split_batch(self.batch_size, fractions)
            if seg.iterations is not None:
                length = int(seg.iterations)
            elif seg.epochs is not None:
                first = seg.components[0][0]
                g0 = max(int(per_rank[0]), 1) * self.world_size
                length = math.ceil(seg.epochs * first.epoch_length / g0)
            else:
                if n != len(segments) - 1:
                    raise ValueError("only the last segment may run until max_iters")
                length = self.max_iters - start
            stop = min(start + max(length, 0), self.max_iters)
            samplers = tuple(s for s, _ in seg.components)
            stream_start = tuple(consumed.get(id(s), 0) for s in samplers)
            phases.append(_Phase(seg.name, start, stop, samplers, tuple(int(c) for c in per_rank),
                                 stream_start))
            for s, b in zip(samplers, per_rank):
                consumed[id(s)] = consumed.get(id(s), 0) + (stop - start) * int(b) * self.world_size
            start = stop
            if start >= self.max_iters:
                break
        if start < self.max_iters:
            raise ValueError(f"the segments cover {start} iterations, max_iters is "
                             f"{self.max_iters}: end with a segment without a length")
        self._phases = tuple(p for p in phases if p.stop > p.start)
        self._starts = np.array([p.start for p in self._phases], dtype=np.int64)

    @property
    def global_batch_size(self) -> int:
        """G = batch_size * world_size."""
        return self.batch_size * self.world_size

    def phases(self) -> list[tuple[str, int, int]]:
        """[(name, first iteration, one past the last iteration)] in order."""
        return [(p.name, p.start, p.stop) for p in self._phases]

    def _phase(self, iteration: int) -> _Phase:
        if not 0 <= iteration < self.max_iters:
            raise IndexError(f"iteration {iteration} outside [0, {self.max_iters})")
        return self._phases[int(np.searchsorted(self._starts, iteration, side="right")) - 1]

    def phase_at(self, iteration: int) -> str:
        """Name of the phase that iteration ``iteration`` belongs to (for logs)."""
        return self._phase(iteration).name

    def batch_indices(self, iteration: int, rank: int | None = None) -> np.ndarray:
        """Image codes of iteration ``iteration``'s batch: rank ``rank``'s [b] int64, or with
        rank=None the global [G] batch (each component's chunk of its stream, in component
        order; rank r's batch is each chunk's ``[r::W]`` concatenated)."""
        phase = self._phase(iteration)
        t = iteration - phase.start
        parts = []
        for sampler, b, s0 in zip(phase.samplers, phase.per_rank, phase.stream_start):
            g = b * self.world_size
            chunk = sampler.stream(s0 + t * g, s0 + (t + 1) * g)  # [G_j]
            parts.append(chunk if rank is None else chunk[rank::self.world_size])
        if rank is not None and not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} outside [0, {self.world_size})")
        return np.concatenate(parts)

    def state_dict(self) -> dict:
        """The layout (batch size, world size, phases and the samplers' seeds): batches depend only
        on it and the iteration, so this is all a checkpoint needs besides the iteration."""
        return {"batch_size": self.batch_size, "world_size": self.world_size,
                "max_iters": self.max_iters,
                "phases": [[p.name, p.start, p.stop, [s.seed for s in p.samplers]]
                           for p in self._phases]}

    def load_state_dict(self, state: dict) -> None:
        """Check that a checkpoint's schedule is this one (the schedule has no other state);
        a mismatch would silently change the image sequence, so it raises ValueError."""
        mine = self.state_dict()
        diff = [k for k in mine if state.get(k) != mine[k]]
        if diff:
            raise ValueError(f"checkpoint schedule differs from this one in {', '.join(diff)}")


class EmptyPhaseError(ValueError):
    """A hybrid phase of zero iterations. ``phase``: "non-balance" or "soft-balance";
    ``cause``: "fraction" (``non_balance_fraction`` rounds it away) or "min_epochs" (the
    minimum non-balance epochs fill the whole run)."""

    def __init__(self, phase: str, cause: str, message: str):
        self.phase = phase
        self.cause = cause
        super().__init__(message)


def hybrid_phase_iters(*, num_images: int, global_batch_size: int, max_iters: int,
                       non_balance_fraction: float, non_balance_min_epochs: float = 0.0) -> int:
    """Iterations of the hybrid schedule's non-balance phase (the soft-balance phase runs the
    remaining ``max_iters - n`` iterations):

        n = round(f * max_iters)                                  f = non_balance_fraction
        n = max(n, ceil(e_min * I / G))  when e_min > 0           e_min = non_balance_min_epochs

    (one non-balance epoch = ceil(I / G) iterations visits every image). Raises
    ``EmptyPhaseError`` when n = 0 or n >= max_iters (a phase would be empty)."""
    if num_images < 1 or global_batch_size < 1 or max_iters < 1:
        raise ValueError("num_images, global_batch_size and max_iters must be >= 1")
    first = round(non_balance_fraction * max_iters)
    min_iters = (math.ceil(non_balance_min_epochs * num_images / global_batch_size)
                 if non_balance_min_epochs > 0 else 0)
    if first <= 0 and min_iters == 0:
        raise EmptyPhaseError("non-balance", "fraction",
                              f"the non-balance phase is empty: {non_balance_fraction:g} of "
                              f"{max_iters} iterations rounds to 0")
    if min_iters >= max_iters and min_iters > first:
        raise EmptyPhaseError("soft-balance", "min_epochs",
                              f"the soft-balance phase is empty: {non_balance_min_epochs:g} "
                              f"non-balance epochs of {num_images} images at {global_batch_size} "
                              f"images per iteration take {min_iters} iterations, the run has "
                              f"{max_iters}")
    first = max(first, min_iters)
    if first >= max_iters:
        raise EmptyPhaseError("soft-balance", "fraction",
                              f"the soft-balance phase is empty: non-balance takes "
                              f"{non_balance_fraction:g} of {max_iters} iterations ({first})")
    return first


def default_hybrid_schedule(index: ClassImageIndex, *, batch_size: int, max_iters: int,
                            world_size: int = 1, seed: int = 0, lam: float = 0.5,
                            non_balance_fraction: float = 0.5,
                            non_balance_min_epochs: float = 0.0,
                            balance_first: bool = False) -> HybridSchedule:
    """Non-balance for ``hybrid_phase_iters(...)`` iterations (``non_balance_fraction`` of the
    run, at least ``non_balance_min_epochs`` epochs when > 0), then soft-balance(λ = ``lam``)
    until ``max_iters``; ``balance_first``: the same two phases in the other order
    (soft-balance first). Raises ``EmptyPhaseError`` when either phase would be empty."""
    non_balance = NonBalanceSampler(index, seed=seed)
    soft = SoftBalanceSampler(index, lam, seed=seed)
    first = hybrid_phase_iters(num_images=index.num_images,
                               global_batch_size=batch_size * world_size, max_iters=max_iters,
                               non_balance_fraction=non_balance_fraction,
                               non_balance_min_epochs=non_balance_min_epochs)
    phases = ([segment(soft, iterations=max_iters - first), segment(non_balance)] if balance_first
              else [segment(non_balance, iterations=first), segment(soft)])
    return HybridSchedule(phases, batch_size=batch_size, max_iters=max_iters,
                          world_size=world_size)


class ScheduleBatchSampler(torch.utils.data.Sampler[list[int]]):
    """``DataLoader(batch_sampler=...)`` adapter: rank ``rank``'s batches for iterations
    ``start_iteration`` .. max_iters-1 (``len`` = the count). Resume by constructing with
    ``start_iteration`` = the number of iterations the trainer completed. ``state_dict`` records
    the next iteration this object would yield, which runs ahead of training when a DataLoader
    prefetches, so a trainer should store its own iteration count instead."""

    def __init__(self, schedule: HybridSchedule, rank: int = 0, world_size: int | None = None,
                 start_iteration: int = 0):
        super().__init__()
        if world_size is not None and world_size != schedule.world_size:
            raise ValueError(f"world_size {world_size} != the schedule's {schedule.world_size}")
        if not 0 <= rank < schedule.world_size:
            raise ValueError(f"rank {rank} outside [0, {schedule.world_size})")
        if not 0 <= start_iteration <= schedule.max_iters:
            raise ValueError(f"start_iteration {start_iteration} outside [0, {schedule.max_iters}]")
        self.schedule = schedule
        self.rank = int(rank)
        self.start_iteration = int(start_iteration)
        self.iteration = self.start_iteration

    def __len__(self) -> int:
        return self.schedule.max_iters - self.start_iteration

    def __iter__(self):
        for i in range(self.start_iteration, self.schedule.max_iters):
            self.iteration = i + 1
            yield self.schedule.batch_indices(i, self.rank).tolist()

    def state_dict(self) -> dict:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.start_iteration = self.iteration = int(state["iteration"])
