"""The run plan: what a config does on W ranks, worked out before any GPU hour is spent.

Shapes: ``W`` ranks, ``b`` images per rank per iteration, ``G = b * W`` images per iteration,
``I`` training images, ``C`` classes, ``N_c`` training images that contain class c.

From a config, a world size and the training set (its class<->image index, or only its size):

- batch: ``train.global_batch_size`` G > 0 gives b = G / W (must divide); else b =
  ``train.batch_size`` and G = b * W;
- LR: ``optim.lr`` ("none"), or lr * G / ``optim.reference_batch_size`` ("linear");
- length: ``train.max_epochs`` e > 0 gives max_iters = ceil(e * I / G), else ``train.max_iters``;
  epochs = max_iters * G / I;
- sampler phases: [start, stop) iterations of each phase (``sampling.hybrid_phase_iters`` for
  "hybrid"), fraction = (stop - start) / max_iters, epochs = (stop - start) * G / I;
- expected draws per image of class c in a phase of T = (stop - start) * G draws from image
  probabilities P(k) (``sampling.probabilities``): D_c = T * S_c / N_c, S_c = Σ_{k ∋ c} P(k),
  for the head (largest N_c), median and tail (smallest N_c > 0) class; non-balance gives
  D_c = epochs for every class;
- LR milestones (``lr_step_iters``, ``lr_step_epochs`` as ceil(e * I / G), or the 1x default),
  evaluation and checkpoint cadence.

``compute_plan`` is pure; contradictions raise ``ConfigValueError`` naming the key (an empty
phase, a global batch that does not split over the ranks, an LR step past the end).
``resolve`` writes the derived numbers into the config the engine runs. ``load_training_index``
reads the training boxes (the only I/O here).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from wilddet.config import Config, ConfigValueError, SamplingConfig
from wilddet.data.class_index import ClassImageIndex
from wilddet.engine.lr_schedule import default_step_iters
from wilddet.errors import InputError
from wilddet.model.choices import SCORE_ACTIVATION
from wilddet.sampling.samplers import build_sampler
from wilddet.sampling.schedule import EmptyPhaseError, hybrid_phase_iters


@dataclass(frozen=True)
class ClassDraws:
    """Expected draws per training image of one class over a phase."""

    role: str              # "head", "median" or "tail"
    class_code: int        # 0..C-1
    name: str              # display name ("" when unknown)
    images: int            # N_c
    draws_per_image: float  # D_c


@dataclass(frozen=True)
class PhasePlan:
    kind: str              # a sampler kind: "non-balance", "soft-balance", "class-aware", ...
    params: dict           # {"lam": 0.5} / {"threshold": 0.001} / {}
    start: int             # first iteration
    stop: int              # one past the last iteration
    fraction: float        # (stop - start) / max_iters
    epochs: float          # (stop - start) * G / I
    draws: tuple[ClassDraws, ...] | None   # head, median, tail (None without an index)

    @property
    def label(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.kind}({args})" if args else self.kind


@dataclass(frozen=True)
class Milestone:
    iteration: int
    epoch: float
    lr: float              # LR from this iteration on (before any warmup factor)


@dataclass(frozen=True)
class RunPlan:
    world_size: int
    batch_per_rank: int
    global_batch: int
    base_lr: float
    lr_scaling: str
    reference_batch_size: int
    lr: float
    num_train_images: int
    index_available: bool
    max_iters: int
    epochs: float
    warmup_iters: int
    lr_schedule: str
    lr_milestones: tuple[Milestone, ...]
    phases: tuple[PhasePlan, ...]
    eval_period_iters: int           # 0 = at the end only, -1 = never
    num_evaluations: int
    eval_images: int | None          # per evaluation (None: unknown, the whole val split)
    checkpoint_period_iters: int
    num_checkpoints: int
    notes: tuple[str, ...]

    def iterations_to_epochs(self, iterations: int) -> float:
        return iterations * self.global_batch / self.num_train_images

    def to_json(self) -> dict:
        """The plan as plain JSON types (what ``plan --json`` and ``RUN/plan.json`` hold)."""
        out = dataclasses.asdict(self)
        out["phases"] = [{**dataclasses.asdict(p), "name": p.label,
                          "draws": None if p.draws is None else
                          {d.role: dataclasses.asdict(d) for d in p.draws}}
                         for p in self.phases]
        out["eval_images_per_rank"] = (None if self.eval_images is None else
                                       math.ceil(self.eval_images / self.world_size))
        return out


# ----------------------------------------------------------------------------------------------
# computing the plan


def compute_plan(config: Config, *, world_size: int, index: ClassImageIndex | None = None,
                 num_train_images: int | None = None, class_names=None,
                 num_val_images: int | None = None) -> RunPlan:
    """The plan of ``config`` on ``world_size`` ranks. Give the training ``index`` (phases get
    per-class draws) or only ``num_train_images`` (index-free what-if). ``class_names`` [C]
    labels the head/median/tail classes; ``num_val_images`` sizes the evaluations.
    Raises ``ConfigValueError`` (key = ``section.field``) when the config contradicts itself."""
    if world_size < 1:
        raise ValueError("world_size must be >= 1")
    if index is not None:
        num_train_images = index.num_images
    if num_train_images is None or num_train_images < 1:
        raise ValueError("need the training index or num_train_images >= 1")
    notes: list[str] = []
    batch_per_rank, global_batch = _batch(config, world_size, notes)
    lr = _scaled_lr(config, global_batch)
    max_iters = _length(config, num_train_images, global_batch, notes)
    to_epochs = global_batch / num_train_images
    phases = _phases(config, index, num_train_images, global_batch, max_iters, class_names)
    milestones = _milestones(config, lr, max_iters, num_train_images, global_batch)
    if config.optim.warmup_iters >= max_iters:
        notes.append(f"optim.warmup_iters = {config.optim.warmup_iters} is not shorter than the "
                     f"run ({max_iters} iterations): the LR never reaches {lr:g}")
    _norm_notes(config, batch_per_rank, world_size, notes)
    _score_notes(config, notes)
    n_evals, eval_images = _evaluations(config, max_iters, num_val_images, notes)
    period = config.train.checkpoint_period_iters
    n_ckpt = max_iters // period + (1 if max_iters % period else 0)
    return RunPlan(world_size, batch_per_rank, global_batch, config.optim.lr,
                   config.optim.lr_scaling, config.optim.reference_batch_size, lr,
                   int(num_train_images), index is not None, max_iters, max_iters * to_epochs,
                   config.optim.warmup_iters, config.optim.lr_schedule, milestones, phases,
                   config.eval.period_iters, n_evals, eval_images, period, n_ckpt, tuple(notes))


def plan_run(config: Config, *, source=None, **kwargs) -> RunPlan:
    """``compute_plan(config, **kwargs)`` with a contradiction raised as ``InputError`` naming
    ``source`` (the config file) and the key: one line and exit code 2 at the CLI."""
    try:
        return compute_plan(config, **kwargs)
    except ConfigValueError as e:
        raise InputError(source, str(e), field=e.key) from None


def _batch(config: Config, world_size: int, notes: list[str]) -> tuple[int, int]:
    """(b, G) from ``train.global_batch_size`` or ``train.batch_size`` (per rank)."""
    tc = config.train
    if tc.global_batch_size > 0:
        if tc.global_batch_size % world_size:
            raise ConfigValueError("train.global_batch_size",
                                   f"{tc.global_batch_size} images do not split over "
                                   f"{world_size} ranks; use a multiple of {world_size}")
        notes.append(f"train.global_batch_size = {tc.global_batch_size} fixes the batch: "
                     "train.batch_size is not used")
        return tc.global_batch_size // world_size, tc.global_batch_size
    if world_size > 1 and tc.max_epochs == 0:
        notes.append("train.batch_size is per rank and the run length is in iterations: on "
                     "another number of ranks the run sees a different number of epochs (set "
                     "train.global_batch_size or train.max_epochs to keep it)")
    return tc.batch_size, tc.batch_size * world_size


def _norm_notes(config: Config, batch_per_rank: int, world_size: int,
                notes: list[str]) -> None:
    """Say when BatchNorm statistics come from a rank's few images (``model.backbone_norm``)."""
    norm, backbone = config.model.backbone_norm, config.model.backbone
    if backbone == "tiny" or norm not in ("bn", "sync_bn"):
        return
    if norm == "bn" or world_size == 1:
        notes.append(f"model.backbone_norm = {norm}: BatchNorm statistics over the "
                     f"{batch_per_rank} images of each rank")
    else:
        notes.append("model.backbone_norm = sync_bn: BatchNorm statistics over the global "
                     "batch on CUDA; a CPU (gloo) run keeps them per rank")


def _score_notes(config: Config, notes: list[str]) -> None:
    """Say when a sigmoid-family loss is scored with a softmax over all C columns: its
    background logit (column 0) is never trained (long-tail-losses spec: column 0 unused)."""
    loss, scores = config.model.classifier_loss, config.model.test_scores
    if SCORE_ACTIVATION[loss] == "sigmoid" and SCORE_ACTIVATION[scores] != "sigmoid":
        notes.append(f"model.test_scores = {scores} scores the sigmoid-family loss {loss} with "
                     "a softmax whose background logit that loss never trains: set "
                     f"model.test_scores = {loss} for its own (sigmoid) scores")


def _scaled_lr(config: Config, global_batch: int) -> float:
    """lr, or lr * G / reference_batch_size with linear scaling."""
    optim = config.optim
    if optim.lr_scaling == "linear":
        return optim.lr * global_batch / optim.reference_batch_size
    return optim.lr


def _length(config: Config, num_images: int, global_batch: int, notes: list[str]) -> int:
    """max_iters = ceil(max_epochs * I / G) when ``train.max_epochs`` > 0, else max_iters."""
    tc = config.train
    if tc.max_epochs > 0:
        notes.append(f"train.max_epochs = {tc.max_epochs:g} sets the length: train.max_iters "
                     "is not used")
        return max(1, math.ceil(tc.max_epochs * num_images / global_batch))
    return tc.max_iters


def _epochs_to_iters(epochs: float, num_images: int, global_batch: int) -> int:
    return math.ceil(epochs * num_images / global_batch)


def _phases(config: Config, index, num_images: int, global_batch: int, max_iters: int,
            class_names) -> tuple[PhasePlan, ...]:
    """Each sampler phase with its share of the run and (with an index) per-class draws."""
    sampling = config.sampling
    if sampling.kind == "hybrid":
        try:
            first = hybrid_phase_iters(num_images=num_images, global_batch_size=global_batch,
                                       max_iters=max_iters,
                                       non_balance_fraction=sampling.non_balance_fraction,
                                       non_balance_min_epochs=sampling.non_balance_min_epochs)
        except EmptyPhaseError as e:
            key = ("sampling.non_balance_min_epochs" if e.cause == "min_epochs"
                   else "sampling.non_balance_fraction")
            raise ConfigValueError(key, str(e)) from None
        if sampling.hybrid_order == "balance-first":  # as default_hybrid_schedule
            layout = [("soft-balance", 0, max_iters - first),
                      ("non-balance", max_iters - first, max_iters)]
        else:
            layout = [("non-balance", 0, first), ("soft-balance", first, max_iters)]
    else:
        layout = [(sampling.kind, 0, max_iters)]
    phases = []
    for kind, start, stop in layout:
        params = {"soft-balance": {"lam": sampling.lam},
                  "repeat-factor": {"threshold": sampling.repeat_threshold}}.get(kind, {})
        draws = None
        if index is not None:
            probabilities = _image_probabilities(kind, sampling, index)
            draws = class_draws(index, probabilities, (stop - start) * global_batch,
                                class_names)
        phases.append(PhasePlan(kind, params, start, stop, (stop - start) / max_iters,
                                (stop - start) * global_batch / num_images, draws))
    return tuple(phases)


def _image_probabilities(kind: str, sampling: SamplingConfig, index: ClassImageIndex
                         ) -> np.ndarray:
    """P(k) [I] of one sampler kind: the closed form of the sampler training builds
    (``sampling.samplers.build_sampler``, the one list of kinds besides the config's)."""
    sampler = build_sampler(kind, index, lam=sampling.lam,
                            repeat_threshold=sampling.repeat_threshold)
    return sampler.image_probabilities()


def class_draws(index: ClassImageIndex, image_probabilities: np.ndarray, num_draws: int,
                class_names=None) -> tuple[ClassDraws, ...]:
    """Head (largest N_c), median and tail (smallest N_c > 0) class of ``index`` with their
    expected draws per image D_c = T * S_c / N_c over T = ``num_draws`` draws.
    Ties in N_c go to the smaller class code."""
    n_c = index.images_per_class
    present = np.flatnonzero(n_c > 0)
    if not len(present):
        return ()
    share = index.class_share(image_probabilities)  # S_c [C]
    order = present[np.argsort(-n_c[present], kind="stable")]  # most images first
    picks = (("head", order[0]), ("median", order[len(order) // 2]), ("tail", order[-1]))
    return tuple(ClassDraws(role, int(c), "" if class_names is None else str(class_names[c]),
                            int(n_c[c]), float(num_draws * share[c] / n_c[c]))
                 for role, c in picks)


def _milestones(config: Config, lr: float, max_iters: int, num_images: int,
                global_batch: int) -> tuple[Milestone, ...]:
    """Iterations where the step schedule multiplies the LR by gamma (and the cosine end)."""
    optim = config.optim
    to_epochs = global_batch / num_images
    if optim.lr_schedule == "cosine":
        return (Milestone(max_iters, max_iters * to_epochs, lr * optim.min_lr_factor),)
    if optim.lr_schedule != "step":
        return ()
    steps, key = resolved_lr_steps(config, max_iters, num_images, global_batch)
    late = [s for s in steps if s >= max_iters]
    if key is not None and late:
        raise ConfigValueError(key, f"LR step at iteration {late[0]} is not before the end of "
                               f"the run ({max_iters} iterations): the LR would never decay")
    return tuple(Milestone(s, s * to_epochs, lr * optim.gamma ** (k + 1))
                 for k, s in enumerate(steps))


def resolved_lr_steps(config: Config, max_iters: int, num_images: int, global_batch: int
                      ) -> tuple[tuple[int, ...], str | None]:
    """(step iterations, the key they come from; None for the 1x default of lr_schedule)."""
    optim = config.optim
    if optim.lr_step_epochs:
        return (tuple(_epochs_to_iters(e, num_images, global_batch)
                      for e in optim.lr_step_epochs), "optim.lr_step_epochs")
    if optim.lr_step_iters:
        return tuple(optim.lr_step_iters), "optim.lr_step_iters"
    return default_step_iters(max_iters), None


def _evaluations(config: Config, max_iters: int, num_val_images: int | None,
                 notes: list[str]) -> tuple[int, int | None]:
    """(number of val evaluations, images per evaluation or None when unknown)."""
    ev = config.eval
    if ev.period_iters < 0 or not config.data.has_val_split:
        return 0, None
    n = (max_iters - 1) // ev.period_iters + 1 if ev.period_iters > 0 else 1
    if ev.period_iters >= max_iters:
        notes.append(f"eval.period_iters = {ev.period_iters} is not shorter than the run: "
                     "val mAP only at the end")
    images = num_val_images
    if ev.max_images > 0:
        images = ev.max_images if images is None else min(images, ev.max_images)
    return n, images


def resolve(config: Config, plan: RunPlan) -> Config:
    """``config`` with the plan's numbers written in, as the engine runs it: per-rank batch in
    ``train.batch_size`` (``global_batch_size`` 0), ``train.max_iters`` (``max_epochs`` 0),
    the scaled ``optim.lr`` (``lr_scaling`` "none") and explicit LR steps in iterations."""
    steps, key = resolved_lr_steps(config, plan.max_iters, plan.num_train_images,
                                   plan.global_batch)
    train = dataclasses.replace(config.train, batch_size=plan.batch_per_rank,
                                global_batch_size=0, max_iters=plan.max_iters, max_epochs=0.0)
    optim = dataclasses.replace(config.optim, lr=plan.lr, lr_scaling="none",
                                lr_step_iters=steps if key is not None else (),
                                lr_step_epochs=())
    return dataclasses.replace(config, train=train, optim=optim)


# ----------------------------------------------------------------------------------------------
# text


def _n(x: int) -> str:
    return f"{x:,}"


def format_plan(plan: RunPlan, title: str = "") -> str:
    """The plan as a fixed-width text block (what ``wilddet plan`` prints and RUN/plan.txt
    holds)."""
    g, w = plan.global_batch, plan.world_size
    src = "given" if not plan.index_available else "from the training boxes"
    lr_how = (f"{plan.lr:g} = {plan.base_lr:g} x {g} / {plan.reference_batch_size} "
              "(optim.lr_scaling = linear)" if plan.lr_scaling == "linear"
              else f"{plan.lr:g} (optim.lr_scaling = none)")
    lines = [f"run plan{': ' + title if title else ''}",
             f"  world size         {w} rank{'s' if w > 1 else ''}",
             f"  training images    {_n(plan.num_train_images)} ({src})",
             f"  batch              {plan.batch_per_rank} per rank x {w} = {g} per iteration",
             f"  LR                 {lr_how}",
             f"  length             {_n(plan.max_iters)} iterations = {plan.epochs:.2f} epochs",
             (f"  warmup             {_n(plan.warmup_iters)} iterations "
              f"({plan.iterations_to_epochs(plan.warmup_iters):.3f} epochs)"),
             f"  LR schedule        {_lr_schedule_text(plan)}",
             "  sampler phases",
             _phase_table(plan)]
    lines += _cadence_lines(plan)
    if plan.notes:
        lines.append("  notes")
        lines += [f"    - {n}" for n in plan.notes]
    return "\n".join(lines) + "\n"


def _lr_schedule_text(plan: RunPlan) -> str:
    if plan.lr_schedule == "cosine":
        end = plan.lr_milestones[0]
        return f"cosine to {end.lr:.4g} at {_n(end.iteration)} ({end.epoch:.2f} epochs)"
    if plan.lr_schedule == "step":
        return "step: " + "; ".join(f"{m.lr:.4g} from {_n(m.iteration)} ({m.epoch:.2f} epochs)"
                                    for m in plan.lr_milestones)
    return plan.lr_schedule


def _phase_table(plan: RunPlan) -> str:
    rows = [("#", "kind", "start", "stop", "fraction", "epochs", "draws/img head", "median",
             "tail")]
    for k, p in enumerate(plan.phases):
        draws = (["n/a"] * 3 if p.draws is None else [f"{d.draws_per_image:.3g}" for d in p.draws])
        rows.append((str(k), p.label, _n(p.start), _n(p.stop), f"{p.fraction:.3f}",
                     f"{p.epochs:.2f}", *draws))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = ["    " + "  ".join(c.ljust(wd) if i == 1 else c.rjust(wd)
                               for i, (c, wd) in enumerate(zip(r, widths))) for r in rows]
    first = next((p.draws for p in plan.phases if p.draws), None)
    if first:
        text.append("    classes: " + ", ".join(
            f"{d.role} {d.name or d.class_code} ({_n(d.images)} images)" for d in first))
    elif plan.phases and plan.phases[0].draws is None:
        text.append("    draws per image need the training boxes (index-free plan: only "
                    "non-balance draws, = epochs, are known)")
    return "\n".join(text)


def _cadence_lines(plan: RunPlan) -> list[str]:
    if plan.num_evaluations == 0:
        ev = "never (eval.period_iters = -1 or no val files)"
    else:
        every = (f"every {_n(plan.eval_period_iters)} iterations and at the end"
                 if plan.eval_period_iters > 0 else "at the end")
        imgs = ("the whole val split" if plan.eval_images is None else
                f"{_n(plan.eval_images)} val images, "
                f"{_n(math.ceil(plan.eval_images / plan.world_size))} per rank")
        ev = f"{every}: {plan.num_evaluations} x {imgs}"
    ckpt = (f"every {_n(plan.checkpoint_period_iters)} iterations "
            f"({plan.iterations_to_epochs(plan.checkpoint_period_iters):.3f} epochs) and at the "
            f"end: {plan.num_checkpoints}")
    return [f"  evaluation         {ev}", f"  checkpoints        {ckpt}"]


# ----------------------------------------------------------------------------------------------
# reading the training set


def load_training_index(config: Config, hint: str = ""):
    """(index, class display names) of the training set ``config`` trains on: reads the class
    list and hierarchy (``builders.load_meta``; the rate file is not needed) and the training
    ground truth (or maps its cache) and ``data.train_image_list``. A missing file raises
    InputError (with ``hint`` appended)."""
    from wilddet.data.cache import open_box_cache
    from wilddet.data.dataset import read_image_list
    from wilddet.engine.builders import load_meta, require_file, training_index

    try:
        meta = load_meta(dataclasses.replace(
            config, model=dataclasses.replace(config.model, rate_file="")))
        boxes = require_file(config, config.data.train_annotation_field)
        image_ids = (read_image_list(require_file(config, "train_image_list"))
                     if config.data.train_image_list else None)
    except InputError as e:
        if not hint:
            raise
        raise InputError(e.path, f"{e.message}; {hint}", line=e.line, field=e.field) from None
    cache = open_box_cache(boxes, meta.classes, cache_dir=config.data.cache_dir or None)
    return training_index(cache, image_ids, config, meta), meta.classes.names


def count_val_images(config: Config) -> int | None:
    """Images of the val split (``data.val_image_list`` lines or the folder's images); None
    when neither exists."""
    from wilddet.engine.evaluate import split_image_ids

    try:
        return len(split_image_ids(config))
    except InputError:
        return None
