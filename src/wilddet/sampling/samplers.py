"""Training image samplers: non-balance, class-aware, soft-balance (λ), repeat-factor (method §3).

Shapes: ``I`` images, ``C`` classes, ``E`` samples in one epoch of a sampler (its natural length),
``W`` world size (DDP ranks).

Every sampler is a ``torch.utils.data.Sampler[int]`` yielding image codes (0..I-1) and is a pure
function of its arguments:

- ``epoch_sequence(e) -> [E] int64``: the global draw of epoch e, from its own
  ``np.random.Generator`` seeded with (stream tag, seed, e); no global RNG is used, so the indices
  do not depend on ``num_workers``, on other code seeding numpy/torch, or on the rank.
- DDP: epoch e's global sequence is ``epoch_sequence(e)`` padded to a multiple of W by repeating
  its first elements (as ``torch.utils.data.DistributedSampler``); rank r takes ``global[r::W]``
  (``local_indices``), so all ranks get the same length and their union is the global sequence.
  ``rank`` and ``world_size`` are constructor arguments; ``torch.distributed`` is never read.
- ``stream(start, stop)``: positions [start, stop) of the endless concatenation of unpadded epoch
  sequences 0, 1, 2, ... (what ``HybridSchedule`` slices batches from).
- Epochs and resume: call ``set_epoch(e)`` before each epoch (``__iter__`` also advances to the
  next epoch by itself when it runs to the end). The sampler counts the indices it has yielded in
  the current epoch (``position``); ``state_dict()`` stores (epoch, position) and
  ``load_state_dict`` makes the next ``__iter__`` continue with exactly the remaining indices.
  A ``DataLoader`` pulls indices ahead of the batches the trainer has consumed (prefetching), so
  a trainer should pass what it really consumed: ``state_dict(position=batches_done * batch)``.

Which images can be drawn: non-balance draws every image, with or without boxes; the class-based
samplers (class-aware, soft-balance) draw a class then an image of it, so images without labels
are never drawn; repeat-factor gives unlabelled images r = 1.
"""

from __future__ import annotations

import abc
import math

import numpy as np
import torch.utils.data

from wilddet.sampling.probabilities import (
    ClassImageIndex,
    class_probabilities,
    non_balance_image_probabilities,
    repeat_factor_image_probabilities,
    repeat_factors,
    soft_balance_image_probabilities,
)

_CACHED_EPOCHS = 2  # epoch sequences kept per sampler (a batch may straddle two epochs)


def shard(global_indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s share of a global sequence: ``global[rank::world_size]`` (pure)."""
    return global_indices[rank::world_size]


def pad_to_multiple(sequence: np.ndarray, world_size: int) -> np.ndarray:
    """``sequence`` followed by its first elements (repeated cyclically if needed) so that its
    length is a multiple of ``world_size``."""
    n = len(sequence)
    total = math.ceil(n / world_size) * world_size
    if total == n:
        return sequence
    return np.concatenate([sequence, np.resize(sequence, total - n)]) if n else sequence


class IndexSampler(torch.utils.data.Sampler[int], abc.ABC):
    """Base class: seeding, DDP sharding, epoch/position state (see the module docstring).

    Subclasses set ``_stream_tag`` and ``name`` and implement ``epoch_length`` and ``_draw``.
    """

    _stream_tag = 0
    name = "sampler"

    def __init__(self, index: ClassImageIndex, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        super().__init__()
        if seed < 0:
            raise ValueError("seed must be >= 0")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
        if index.num_images < 1:
            raise ValueError("the index has no images")
        self.index = index
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.position = 0
        self._cache: dict[int, np.ndarray] = {}

    # -- pure sequence definition -------------------------------------------------------------
    @property
    @abc.abstractmethod
    def epoch_length(self) -> int:
        """E: length of one unpadded epoch sequence."""

    @abc.abstractmethod
    def _draw(self, rng: np.random.Generator) -> np.ndarray:
        """One epoch's [E] int64 image codes from ``rng``."""

    @abc.abstractmethod
    def image_probabilities(self) -> np.ndarray:
        """Closed-form [I] probability that one draw is image k (``probabilities`` module)."""

    def generator(self, epoch: int) -> np.random.Generator:
        """The epoch's own generator, seeded from (stream tag, seed, epoch)."""
        return np.random.default_rng([self._stream_tag, self.seed, int(epoch)])

    def epoch_sequence(self, epoch: int) -> np.ndarray:
        """[E] int64 global draw of ``epoch`` (read-only; cached for the last two epochs)."""
        epoch = int(epoch)
        seq = self._cache.get(epoch)
        if seq is None:
            seq = np.asarray(self._draw(self.generator(epoch)), dtype=np.int64)
            assert len(seq) == self.epoch_length
            seq.setflags(write=False)
            if len(self._cache) >= _CACHED_EPOCHS:
                self._cache.pop(next(iter(self._cache)))
            self._cache[epoch] = seq
        return seq

    def stream(self, start: int, stop: int) -> np.ndarray:
        """[stop-start] int64: positions [start, stop) of epoch_sequence(0) ++ epoch_sequence(1)
        ++ ... (unpadded; position p is in epoch p // E)."""
        e_len = self.epoch_length
        parts, pos = [], int(start)
        while pos < stop:
            epoch, offset = divmod(pos, e_len)
            take = min(stop - pos, e_len - offset)
            parts.append(self.epoch_sequence(epoch)[offset:offset + take])
            pos += take
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def global_indices(self, epoch: int | None = None) -> np.ndarray:
        """The epoch's global sequence: epoch_sequence padded to a multiple of world_size."""
        return pad_to_multiple(self.epoch_sequence(self.epoch if epoch is None else epoch),
                               self.world_size)

    def local_indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's share ``global[rank::world_size]`` of the epoch ([len(self)] int64)."""
        return shard(self.global_indices(epoch), self.rank, self.world_size)

    # -- torch Sampler protocol and resumable state --------------------------------------------
    def __len__(self) -> int:
        return math.ceil(self.epoch_length / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning (no-op if already there at position 0)."""
        self.epoch = int(epoch)
        self.position = 0

    def iter_from(self, position: int):
        """Yield this rank's indices of the current epoch from ``position`` on, updating
        ``self.position``; at the end of the epoch move to (epoch + 1, 0)."""
        if not 0 <= position <= len(self):
            raise ValueError(f"position {position} outside [0, {len(self)}]")
        local = self.local_indices(self.epoch)
        self.position = int(position)
        for value in local[position:].tolist():
            self.position += 1
            yield value
        self.set_epoch(self.epoch + 1)

    def __iter__(self):
        return self.iter_from(self.position)

    def state_dict(self, position: int | None = None) -> dict:
        """{kind, seed, world_size, epoch, position}; ``position`` overrides the number of this
        epoch's indices counted as consumed (pass what the trainer consumed, see module doc)."""
        return {"kind": self.name, "seed": self.seed, "world_size": self.world_size,
                "epoch": self.epoch,
                "position": self.position if position is None else int(position)}

    def load_state_dict(self, state: dict) -> None:
        """Continue at (epoch, position); the sampler's kind, seed and world size must match."""
        for key in ("kind", "seed", "world_size"):
            mine = {"kind": self.name, "seed": self.seed, "world_size": self.world_size}[key]
            if state[key] != mine:
                raise ValueError(f"sampler state has {key}={state[key]!r}, this sampler {mine!r}")
        if not 0 <= state["position"] <= len(self):
            raise ValueError(f"sampler state position {state['position']} outside "
                             f"[0, {len(self)}]")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


class NonBalanceSampler(IndexSampler):
    """Every image once per epoch in a random order (E = I; images without boxes included)."""

    _stream_tag = 1
    name = "non-balance"

    @property
    def epoch_length(self) -> int:
        return self.index.num_images

    def _draw(self, rng):
        return rng.permutation(self.index.num_images)

    def image_probabilities(self):
        return non_balance_image_probabilities(self.index)


class SoftBalanceSampler(IndexSampler):
    """Draw class c with P(c) = N_c^λ / Σ_k N_k^λ, then an image containing c uniformly.

    Draws are i.i.d.; one epoch is ``num_samples_per_epoch`` draws (default I). Vectorised:
    one uniform picks the class by ``searchsorted`` on the cumulative P(c), a second picks a
    position inside the class's CSR slice ``index.class_images[class_offsets[c]:...]``.
    λ = 0 is class-aware balance (``ClassAwareSampler`` is this class with λ = 0: the same seed
    gives the same sequence); λ = 1 draws classes by frequency.
    """

    _stream_tag = 2

    def __init__(self, index: ClassImageIndex, lam: float = 0.5, *,
                 num_samples_per_epoch: int | None = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        super().__init__(index, seed=seed, rank=rank, world_size=world_size)
        self.lam = float(lam)
        self.num_samples_per_epoch = int(index.num_images if num_samples_per_epoch is None
                                         else num_samples_per_epoch)
        if self.num_samples_per_epoch < 1:
            raise ValueError("num_samples_per_epoch must be >= 1")
        p = class_probabilities(index.images_per_class, self.lam)  # [C]
        self.class_probs = p
        self._cdf = np.cumsum(p)
        self._cdf /= self._cdf[-1]
        self._last_class = int(np.flatnonzero(p > 0)[-1])

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"soft-balance(lam={self.lam:g})"

    @property
    def epoch_length(self) -> int:
        return self.num_samples_per_epoch

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """[n] int64 i.i.d. image draws (class by P(c), then uniform image of the class)."""
        u = rng.random((n, 2))  # [n, 2] row-major: a prefix of a longer draw is the same
        classes = np.searchsorted(self._cdf, u[:, 0], side="right")
        # u < 1 but float rounding could land on the end: clamp to the last drawable class
        np.minimum(classes, self._last_class, out=classes)
        start = self.index.class_offsets[classes]
        count = self.index.class_offsets[classes + 1] - start
        within = np.minimum((u[:, 1] * count).astype(np.int64), count - 1)
        return self.index.class_images[start + within].astype(np.int64)

    def _draw(self, rng):
        return self.draw(rng, self.num_samples_per_epoch)

    def image_probabilities(self):
        return soft_balance_image_probabilities(self.index, self.lam)


class ClassAwareSampler(SoftBalanceSampler):
    """Class-aware balance (Shen et al.): a class uniformly among those with images, then an image
    of it uniformly. Identical to ``SoftBalanceSampler(lam=0)`` (same seed -> same sequence)."""

    def __init__(self, index: ClassImageIndex, *, num_samples_per_epoch: int | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(index, 0.0, num_samples_per_epoch=num_samples_per_epoch, seed=seed,
                         rank=rank, world_size=world_size)

    @property
    def name(self) -> str:  # type: ignore[override]
        return "class-aware"


class RepeatFactorSampler(IndexSampler):
    """LVIS repeat-factor sampling (the detectron2 peer), at a fixed epoch length for DDP.

    1. f_c = N_c / I; r_c = max(1, sqrt(threshold / f_c)).
    2. r(k) = max of r_c over the classes of image k (1 for an image without labels).
    3. A round repeats image k floor(r(k)) times plus once more with probability
       r(k) - floor(r(k)) (stochastic rounding, so E[copies] = r(k)), then shuffles.
    4. An epoch is the first E items of consecutive rounds drawn from the epoch's generator
       (E = ``num_samples_per_epoch``, default round(Σ_k r(k)), the mean round length), so every
       rank sees the same length; an image's long-run share is r(k) / Σ_j r(j).
    """

    _stream_tag = 3

    def __init__(self, index: ClassImageIndex, threshold: float = 0.001, *,
                 num_samples_per_epoch: int | None = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        super().__init__(index, seed=seed, rank=rank, world_size=world_size)
        self.threshold = float(threshold)
        self.repeat_factors = repeat_factors(index, self.threshold)  # [I]
        self.num_samples_per_epoch = int(round(self.repeat_factors.sum())
                                         if num_samples_per_epoch is None
                                         else num_samples_per_epoch)
        if self.num_samples_per_epoch < 1:
            raise ValueError("num_samples_per_epoch must be >= 1")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"repeat-factor(t={self.threshold:g})"

    @property
    def epoch_length(self) -> int:
        return self.num_samples_per_epoch

    def round(self, rng: np.random.Generator) -> np.ndarray:
        """One detectron2-style round (step 3): image k floor(r(k)) or ceil(r(k)) times,
        shuffled. [~Σ r] int64."""
        r = self.repeat_factors
        whole = np.floor(r)
        copies = (whole + (rng.random(len(r)) < r - whole)).astype(np.int64)  # [I]
        one_round = np.repeat(np.arange(self.index.num_images, dtype=np.int64), copies)
        rng.shuffle(one_round)
        return one_round

    def _draw(self, rng):
        parts, total = [], 0
        while total < self.num_samples_per_epoch:  # r >= 1: every round has >= I items
            parts.append(self.round(rng))
            total += len(parts[-1])
        return np.concatenate(parts)[:self.num_samples_per_epoch]

    def image_probabilities(self):
        return repeat_factor_image_probabilities(self.index, self.threshold)
