"""Training image samplers: non-balance, class-aware, soft-balance (λ), repeat-factor (method §3).

Shapes: ``I`` images, ``C`` classes, ``E`` samples in one epoch of a sampler (its natural length).

Every sampler defines an endless, pure sequence of image codes (0..I-1):

- ``epoch_sequence(e) -> [E] int64``: the global draw of epoch e, from its own
  ``np.random.Generator`` seeded with (stream tag, seed, e); no global RNG is used, so the indices
  do not depend on ``num_workers``, on other code seeding numpy/torch, or on the rank.
- ``stream(start, stop)``: positions [start, stop) of the concatenation of epoch sequences
  0, 1, 2, ... . Training reads samplers only through this: ``sampling.schedule.HybridSchedule``
  slices each iteration's global batch out of the stream and gives rank r every W-th image of
  it, so DDP sharding and resume live there (a pure function of the iteration).
- ``build_sampler(kind, index, ...)``: the one factory (training's schedule and
  ``wilddet sampling-stats`` both use it, so a sampler has one name in every log).

Which images can be drawn: non-balance draws every image, with or without boxes; the class-based
samplers (class-aware, soft-balance) draw a class then an image of it, so images without labels
are never drawn; repeat-factor gives unlabelled images r = 1.
"""

from __future__ import annotations

import abc

import numpy as np

from wilddet.data.class_index import ClassImageIndex
from wilddet.sampling.probabilities import (
    class_probabilities,
    non_balance_image_probabilities,
    repeat_factor_image_probabilities,
    repeat_factors,
    soft_balance_image_probabilities,
)

_CACHED_EPOCHS = 2  # epoch sequences kept per sampler (a batch may straddle two epochs)

def build_sampler(kind: str, index: ClassImageIndex, *, lam: float = 0.5,
                  repeat_threshold: float = 0.001, seed: int = 0) -> IndexSampler:
    """The sampler of ``kind``: a ``config.SamplerKind`` other than "hybrid" (the schedule of
    two samplers, ``schedule.default_hybrid_schedule``); ``lam`` is used by soft-balance,
    ``repeat_threshold`` by repeat-factor. A single ``match``, no registry."""
    match kind:
        case "non-balance":
            return NonBalanceSampler(index, seed=seed)
        case "class-aware":
            return ClassAwareSampler(index, seed=seed)
        case "class-aware-cyclic":
            return CyclicClassAwareSampler(index, seed=seed)
        case "soft-balance":
            return SoftBalanceSampler(index, lam, seed=seed)
        case "repeat-factor":
            return RepeatFactorSampler(index, repeat_threshold, seed=seed)
        case other:
            raise ValueError(f"unknown sampler {other!r}")


def class_shares(sampler: IndexSampler, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(expected [C], realized [C]) share of drawn images that contain each class: the closed
    form S_c = Σ_{k ∋ c} P(k) (``probabilities.expected_class_share``) and the share among the
    first ``num_samples`` images of the sampler's stream."""
    index = sampler.index
    expected = index.class_share(sampler.image_probabilities())
    drawn = sampler.stream(0, num_samples)  # [num_samples] image codes
    realized = index.class_share(np.bincount(drawn, minlength=index.num_images)) / num_samples
    return expected, realized


class IndexSampler(abc.ABC):
    """Base class: seeding and the epoch / stream sequences (see the module docstring).

    Subclasses set ``_stream_tag`` and ``name``, implement ``_draw`` and ``image_probabilities``
    and either call ``_set_epoch_length`` or override ``epoch_length``.
    """

    _stream_tag = 0
    name = "sampler"

    def __init__(self, index: ClassImageIndex, *, seed: int = 0):
        if seed < 0:
            raise ValueError("seed must be >= 0")
        if index.num_images < 1:
            raise ValueError("the index has no images")
        self.index = index
        self.seed = int(seed)
        self._cache: dict[int, np.ndarray] = {}

    num_samples_per_epoch = 0  # E of the samplers with a fixed epoch length (set in __init__)

    @property
    def epoch_length(self) -> int:
        """E: length of one epoch sequence."""
        return self.num_samples_per_epoch

    def _set_epoch_length(self, num_samples_per_epoch: int | None, default: int) -> None:
        """E = ``num_samples_per_epoch`` (``default`` when None), at least 1."""
        self.num_samples_per_epoch = int(default if num_samples_per_epoch is None
                                         else num_samples_per_epoch)
        if self.num_samples_per_epoch < 1:
            raise ValueError("num_samples_per_epoch must be >= 1")

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
        ++ ... (position p is in epoch p // E)."""
        e_len = self.epoch_length
        parts, pos = [], int(start)
        while pos < stop:
            epoch, offset = divmod(pos, e_len)
            take = min(stop - pos, e_len - offset)
            parts.append(self.epoch_sequence(epoch)[offset:offset + take])
            pos += take
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


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
                 num_samples_per_epoch: int | None = None, seed: int = 0):
        super().__init__(index, seed=seed)
        self.lam = float(lam)
        self._set_epoch_length(num_samples_per_epoch, index.num_images)
        p = class_probabilities(index.images_per_class, self.lam)  # [C]
        self.class_probs = p
        self._cdf = np.cumsum(p)
        self._cdf /= self._cdf[-1]
        self._last_class = int(np.flatnonzero(p > 0)[-1])

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"soft-balance(lam={self.lam:g})"

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
                 seed: int = 0):
        super().__init__(index, 0.0, num_samples_per_epoch=num_samples_per_epoch, seed=seed)

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
       epoch has the same length; an image's long-run share is r(k) / Σ_j r(j).
    """

    _stream_tag = 3

    def __init__(self, index: ClassImageIndex, threshold: float = 0.001, *,
                 num_samples_per_epoch: int | None = None, seed: int = 0):
        super().__init__(index, seed=seed)
        self.threshold = float(threshold)
        self.repeat_factors = repeat_factors(index, self.threshold)  # [I]
        self._set_epoch_length(num_samples_per_epoch, round(self.repeat_factors.sum()))

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"repeat-factor(t={self.threshold:g})"

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


class CyclicClassAwareSampler(IndexSampler):
    """Class-aware balance with Shen et al.'s cyclic lists (relay backpropagation, 2016): every
    class once per round, and each image of a class once before any repeats.

    K = classes with images (codes in ascending order), n_c = N_c. The endless stream of draws,
    position s = 0, 1, 2, ... (epoch e is positions [e*E, (e+1)*E), E = ``epoch_length``):

    1. round t = s // K, slot j = s % K; class c = π_t[j], π_t a permutation of the K classes
       drawn from the generator (tag, seed, 0, t): each round visits every class once.
    2. class c is visited once per round, so round t is its t-th visit; pass q = t // n_c,
       image = ρ_{c,q}[t % n_c], ρ_{c,q} a permutation of c's images from (tag, seed, 1, c, q):
       each pass over a class shows each of its images once, reshuffled for the next pass.

    In the long run classes are uniform and images uniform within a class, so the closed-form
    image probabilities are class-aware balance's (λ = 0); the cycles remove the i.i.d.
    sampler's runs and gaps.
    """

    _stream_tag = 4
    name = "class-aware-cyclic"

    def __init__(self, index: ClassImageIndex, *, num_samples_per_epoch: int | None = None,
                 seed: int = 0):
        super().__init__(index, seed=seed)
        self._set_epoch_length(num_samples_per_epoch, index.num_images)
        self.classes = np.flatnonzero(index.images_per_class > 0)  # [K]
        if len(self.classes) == 0:
            raise ValueError("no class occurs in any image: a class-based sampler has nothing "
                             "to draw")
        self._epoch_being_drawn = 0

    def classes_and_images(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(class [n], image [n]) int64 of stream positions [start, stop) (steps 1-2)."""
        s = np.arange(start, stop, dtype=np.int64)
        k = len(self.classes)
        rounds, slot = s // k, s % k
        first = int(rounds[0]) if len(s) else 0
        perms = np.stack([np.random.default_rng([self._stream_tag, self.seed, 0, int(t)])
                          .permutation(k) for t in range(first, int(rounds.max(initial=first)) + 1)])
        cls = self.classes[perms[rounds - first, slot]] if len(s) else np.zeros(0, np.int64)
        n_c = self.index.images_per_class[cls]
        passes, within = rounds // n_c, rounds % n_c
        images = np.empty(len(s), dtype=np.int64)
        for c, q in {(int(c), int(q)) for c, q in zip(cls, passes)}:
            rows = np.flatnonzero((cls == c) & (passes == q))
            lo = self.index.class_offsets[c]
            order = np.random.default_rng([self._stream_tag, self.seed, 1, c, q]).permutation(
                int(self.index.images_per_class[c]))
            images[rows] = self.index.class_images[lo + order[within[rows]]]
        return cls.astype(np.int64), images

    def epoch_sequence(self, epoch: int) -> np.ndarray:
        # the draw depends on the epoch's place in the stream, not only on its generator
        self._epoch_being_drawn = int(epoch)
        return super().epoch_sequence(epoch)

    def _draw(self, rng):
        start = self._epoch_being_drawn * self.epoch_length
        return self.classes_and_images(start, start + self.epoch_length)[1]

    def image_probabilities(self):
        return soft_balance_image_probabilities(self.index, 0.0)
