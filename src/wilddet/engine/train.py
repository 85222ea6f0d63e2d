"""The training loop: one code path for 1 CPU process, torchrun on CPUs (gloo) and GPUs (NCCL).

Shapes: ``b`` images per rank per iteration (``train.batch_size``), ``W`` ranks, ``G = b * W``
images per global batch, ``C`` classes.

Per iteration i (0-based): rank r loads its ``b`` images of the schedule's global batch i
(``ScheduleBatchSampler``), flips each with probability 1/2 (decided by (seed, i, ImageID), so
not by the rank or the number of workers), runs the detector under autocast (CUDA only), sums
its losses, and steps SGD/AdamW with lr(i) (``lr_schedule``); DDP averages gradients over ranks,
so W ranks with b images compute what one process with G images computes (up to float
summation order, as long as each image gets the same number of sampled anchors/RoIs).

Rank 0 writes everything: ``RUN_DIR/config.toml`` (resolved), ``metrics.jsonl`` (losses reduced
over ranks, LR, sampler phase, images/s, val mAP), TensorBoard scalars, and checkpoints every
``train.checkpoint_period_iters`` and at the end (``engine.checkpoint``). ``resume=True``
continues from the newest readable checkpoint and reproduces the uninterrupted run exactly on
CPU with ``train.deterministic`` (all RNG states, the optimiser, the LR schedule and the batch
schedule are restored; the DataLoader owns its own generator so creating it draws nothing from
torch's global one).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from wilddet.config import Config, dump_toml, fingerprint, to_dict
from wilddet.data.cache import open_box_cache
from wilddet.data.class_index import ClassImageIndex
from wilddet.data.dataset import DetectionDataset, collate_detection, read_image_list, unpack_batch
from wilddet.engine import distributed as ddp
from wilddet.engine.builders import (
    DatasetMeta,
    TrainingContext,
    build_detector,
    build_optimizer,
    build_schedule,
    classifier_index,
    hierarchy_to_state,
    load_meta,
    require_file,
    training_index,
)
from wilddet.engine.checkpoint import (
    FORMAT_VERSION,
    capture_rng_state,
    check_fingerprint,
    checkpoint_path,
    latest_valid_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
)
from wilddet.engine.inference import autocast_context
from wilddet.engine.lr_schedule import build_lr_scheduler
from wilddet.engine.plan import RunPlan, count_val_images, format_plan, plan_run, resolve
from wilddet.errors import InputError
from wilddet.fileio import write_text_atomic
from wilddet.sampling import ScheduleBatchSampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    checkpoint: Path            # the final checkpoint
    iteration: int              # iterations done (= train.max_iters)
    losses: dict[str, float]    # last logged losses (mean over the log window and the ranks)
    val_map: float | None       # final val mAP (None when not evaluated)
    seconds: float              # wall time of this call


# ----------------------------------------------------------------------------------------------
# pieces


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s global torch generator during training (independent streams)."""
    return int(np.random.SeedSequence([seed, rank, 0x5EED]).generate_state(1, np.uint32)[0])


def flip_flags(seed: int, iteration: int, image_ids) -> list[bool]:
    """Horizontal flip decision per image: a pure function of (seed, iteration, ImageID)."""
    return [bool(np.random.default_rng([seed, iteration, zlib.crc32(i.encode())]).random() < 0.5)
            for i in image_ids]


def prepare_batch(images, targets, device: torch.device, flips, channels_last: bool):
    """uint8 [3, H, W] images -> float [0, 1] on ``device``, flipped where asked (boxes too);
    targets keep the tensors the model uses (``boxes`` xyxy px, ``labels``, ``is_group_of``)."""
    out_images, out_targets = [], []
    for image, target, flip in zip(images, targets, flips):
        image = image.to(device, non_blocking=True)
        image = image.float().div_(255) if not image.is_floating_point() else image
        boxes = target["boxes"].to(device, non_blocking=True)
        if flip:
            width = image.shape[-1]
            image = image.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0],
                                 boxes[:, 3]], dim=1)
        if channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        out_images.append(image)
        out_targets.append({"boxes": boxes,
                            "labels": target["labels"].to(device, non_blocking=True),
                            "is_group_of": target["is_group_of"].to(device, non_blocking=True)})
    return out_images, out_targets


class _Writer:
    """Rank 0's outputs: metrics.jsonl (+ TensorBoard scalars when enabled)."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, start_iteration: int):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if self.path.exists():  # drop what a killed run logged after its last checkpoint
            keep = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("iteration", 0) <= start_iteration]
            write_text_atomic(self.path, "".join(line + "\n" for line in keep))
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"),
                                    purge_step=start_iteration + 1)

    def log(self, iteration: int, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"iteration": iteration, **record}) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(key, value, iteration)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------------------------
# the entry point


def train(config: Config, out_dir: str | os.PathLike, *, resume: bool = False,
          progress: bool | None = None,
          config_source: str | os.PathLike | None = None) -> TrainResult:
    """Train ``config`` into ``out_dir`` (created). ``resume``: continue from the newest valid
    checkpoint there (from scratch if there is none). Without ``resume`` a folder that already
    holds checkpoints is refused. Under torchrun every rank calls this; the process group is
    created here (and destroyed at the end) unless the caller made one.

    ``progress``: live bar on rank 0 (None = when stderr is a terminal). ``config_source``:
    the config file, named by errors about the config (e.g. an empty sampler phase).
    Bad input raises ``InputError`` before anything is written.
    """
    owned_group = not ddp.is_distributed()
    info = ddp.init_distributed(config.train.device, timeout_s=config.train.dist_timeout_s)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    if config.train.num_threads > 0:
        torch.set_num_threads(config.train.num_threads)
    try:
        return _train(config, Path(out_dir), resume, progress, info, config_source)
    finally:
        # torch.use_deterministic_algorithms imports torch._inductor (~3 s): call it only to undo
        if torch.are_deterministic_algorithms_enabled() != deterministic_before:
            torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)
        if owned_group:
            ddp.cleanup()


def _train(config: Config, run_dir: Path, resume: bool, progress: bool | None,
           info: ddp.DistInfo, config_source=None) -> TrainResult:
    start_time = time.perf_counter()
    inputs = _check_inputs(config, run_dir, resume)
    data = _build_data(config, inputs, info, config_source)
    user_config, config = config, data.config  # from here on: the plan's numbers written in
    parts, start_iteration, rng_state = _resume_or_init(config, inputs, data, info)
    parts = _wrap_ddp(parts, config, info)
    writer = _open_outputs(user_config, data.plan, run_dir, info, start_iteration)
    loader = _build_loader(data, config, info, start_iteration)
    if rng_state is not None:
        restore_rng_state(rng_state)
    run = _Run(config, run_dir, inputs.fingerprint, inputs.meta, info, writer)
    last_checkpoint = inputs.found[0] if inputs.found is not None else None
    outcome = _train_loop(run, parts, loader, start_iteration, last_checkpoint, progress)

    iteration = outcome.iteration
    val_map = outcome.val_map
    if iteration > start_iteration and config.eval.period_iters >= 0:
        val_map = _periodic_eval(parts.model, run, iteration)
    writer.close()
    ddp.barrier()
    last_checkpoint = outcome.last_checkpoint
    if last_checkpoint is None:  # resumed a finished run: nothing to do
        last_checkpoint = checkpoint_path(run_dir, iteration)
    return TrainResult(run_dir, last_checkpoint, iteration, outcome.losses, val_map,
                       time.perf_counter() - start_time)


# ----------------------------------------------------------------------------------------------
# the steps of _train, in order


@dataclass(frozen=True)
class _Inputs:
    """Everything read and checked before anything is written."""
    meta: DatasetMeta
    image_dir: Path
    boxes_csv: Path
    image_ids: list[str] | None     # train_image_list (None = every image of the cache)
    fingerprint: str
    found: tuple[Path, dict] | None  # (path, state) of the checkpoint to resume from


@dataclass(frozen=True)
class _Data:
    dataset: DetectionDataset
    index: ClassImageIndex          # class <-> dataset item index the samplers draw from
    plan: RunPlan                   # what the config resolves to on this world size
    config: Config                  # the config with the plan's numbers written in (resolve)
    schedule: object                # the sampler schedule (global batches per iteration)
    heads_index: ClassImageIndex    # the classifier heads' class counts (builders.classifier_index)


@dataclass(frozen=True)
class _Parts:
    """What one iteration touches. ``model`` is the bare detector (saved, evaluated); ``net``
    is what the forward pass runs (``model`` or its DDP wrapper)."""
    model: torch.nn.Module
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    schedule: object


@dataclass(frozen=True)
class _Run:
    """Run-wide context shared by the loop, checkpoints and evaluation."""
    config: Config
    run_dir: Path
    fingerprint: str
    meta: DatasetMeta
    info: ddp.DistInfo
    writer: _Writer


@dataclass(frozen=True)
class _LoopOutcome:
    iteration: int
    losses: dict[str, float]
    val_map: float | None
    last_checkpoint: Path | None


def _check_inputs(config: Config, run_dir: Path, resume: bool) -> _Inputs:
    """Read the metadata, check every input file and the checkpoint to resume from (its
    fingerprint must match ``config``); nothing is written until they all check out."""
    meta = load_meta(config)
    image_dir = require_file(config, "train_images")
    boxes_csv = require_file(config, config.data.train_annotation_field)
    image_ids = (read_image_list(require_file(config, "train_image_list"))
                 if config.data.train_image_list else None)
    if config.eval.period_iters >= 0 and config.data.has_val_split:
        require_file(config, "val_images")  # fail now, not after hours of training
        require_file(config, config.data.val_annotation_field)
    fp = fingerprint(config)
    found = None
    if resume:
        found = latest_valid_checkpoint(run_dir)
        if found is not None:
            check_fingerprint(found[1], fp, found[0])
    elif list_checkpoints(run_dir):
        raise InputError(run_dir, "already holds checkpoints of a run; pass --resume to "
                         "continue it or choose another --out")
    return _Inputs(meta, image_dir, boxes_csv, image_ids, fp, found)


def _build_data(config: Config, inputs: _Inputs, info: ddp.DistInfo,
                config_source=None) -> _Data:
    """The annotation cache, the dataset, the samplers' index, the run plan (InputError naming
    ``config_source`` and the key when the config contradicts itself) and the batch
    schedule."""
    cache = open_box_cache(inputs.boxes_csv, inputs.meta.classes,
                           cache_dir=config.data.cache_dir or None)
    dataset = DetectionDataset(inputs.image_dir, cache, image_ids=inputs.image_ids,
                               drop_degenerate=True, uint8=True)
    index = training_index(cache, inputs.image_ids, config, inputs.meta)
    num_val = count_val_images(config) if config.eval.period_iters >= 0 else None
    plan = plan_run(config, source=config_source or "config", world_size=info.world_size,
                    index=index, class_names=inputs.meta.classes.names, num_val_images=num_val)
    resolved = resolve(config, plan)
    tc = resolved.train
    schedule = build_schedule(resolved.sampling, index, batch_size=tc.batch_size,
                              max_iters=tc.max_iters, world_size=info.world_size, seed=tc.seed)
    heads_index = classifier_index(cache, inputs.image_ids, config, inputs.meta, index)
    return _Data(dataset, index, plan, resolved, schedule, heads_index)


def _resume_or_init(config: Config, inputs: _Inputs, data: _Data, info: ddp.DistInfo
                    ) -> tuple[_Parts, int, dict | None]:
    """Build the model (same initial weights on every rank), optimiser, LR schedule and grad
    scaler; load their states (and the batch schedule's) from the checkpoint when resuming,
    else seed this rank's generator. Returns (parts, start iteration, this rank's saved RNG
    state to restore once the loader exists, or None)."""
    tc = config.train
    device = info.device
    use_cuda = device.type == "cuda"
    if tc.deterministic and not torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(tc.seed)  # same initial weights on every rank
    # the classifier's class frequencies come from the training index (as annotated when the
    # samplers count expanded labels but the targets are not expanded); its state is summed
    # over the ranks
    heads_input = TrainingContext(data.heads_index, tc.seed, info.rank, ddp.all_reduce_sum)
    model = build_detector(config.model, inputs.meta, heads_input).to(device)
    if use_cuda and tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_lr_scheduler(optimizer, config.optim, tc.max_iters)
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda and tc.amp == "fp16")
    parts = _Parts(model, model, optimizer, scheduler, scaler, data.schedule)
    if inputs.found is None:
        torch.manual_seed(rank_seed(tc.seed, info.rank))
        return parts, 0, None
    path, state = inputs.found
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["lr_scheduler"])
    scaler.load_state_dict(state["grad_scaler"])
    try:
        data.schedule.load_state_dict(state["schedule"])
    except ValueError as e:
        raise InputError(path, f"{e} (world size or data changed since the checkpoint)"
                         ) from None
    start_iteration = int(state["iteration"])
    log.info("resuming %s at iteration %d", path, start_iteration)
    return parts, start_iteration, state["rng"][info.rank]


def _wrap_ddp(parts: _Parts, config: Config, info: ddp.DistInfo) -> _Parts:
    """With several ranks: SyncBatchNorm on CUDA when ``model.backbone_norm = "sync_bn"``, then
    the DDP wrapper (``net``); ``model`` becomes the (converted) module inside it."""
    tc = config.train
    if info.world_size == 1:
        return parts
    device = info.device
    use_cuda = device.type == "cuda"
    model = parts.model
    if use_cuda and config.model.backbone_norm == "sync_bn":
        # BatchNorm statistics over the global batch ("bn" keeps them per rank, as asked)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if use_cuda else None,
        find_unused_parameters=tc.find_unused_parameters)
    return replace(parts, model=model, net=net)


def _open_outputs(config: Config, plan: RunPlan, run_dir: Path, info: ddp.DistInfo,
                  start_iteration: int) -> _Writer:
    """Rank 0 logs the run plan, creates the run folder and writes the config as given
    (config.toml, what ``--resume`` checks) and the plan (plan.txt, plan.json)."""
    if info.is_main:
        text = format_plan(plan, f"{run_dir} on {info.world_size} rank(s)")
        log.info("%s", text.rstrip())
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.toml", dump_toml(config))
        write_text_atomic(run_dir / "plan.txt", text)
        write_text_atomic(run_dir / "plan.json", json.dumps(plan.to_json(), indent=2) + "\n")
    return _Writer(run_dir, info.is_main, config.train.tensorboard, start_iteration)


def _build_loader(data: _Data, config: Config, info: ddp.DistInfo, start_iteration: int
                  ) -> DataLoader:
    """This rank's share of each global batch from ``start_iteration`` on; the loader owns its
    generator, so creating it draws nothing from torch's global one."""
    sampler = ScheduleBatchSampler(data.schedule, info.rank, start_iteration=start_iteration)
    return DataLoader(data.dataset, batch_sampler=sampler, num_workers=config.data.num_workers,
                      collate_fn=collate_detection, pin_memory=info.device.type == "cuda",
                      generator=torch.Generator().manual_seed(config.train.seed))


def _train_loop(run: _Run, parts: _Parts, loader: DataLoader, start_iteration: int,
                last_checkpoint: Path | None, progress: bool | None) -> _LoopOutcome:
    """Iterate the loader: one optimiser step per batch; log the loss window every
    ``train.log_period_iters``, checkpoint every ``train.checkpoint_period_iters`` (and at
    the end), evaluate every ``eval.period_iters`` (before the end)."""
    config, info = run.config, run.info
    tc = config.train
    show = info.is_main and (sys.stderr.isatty() if progress is None else progress)
    from tqdm import tqdm

    bar = tqdm(total=tc.max_iters, initial=start_iteration, disable=not show, unit="it",
               dynamic_ncols=True, desc="train")
    losses: dict[str, float] = {}
    window = _LossWindow()
    iteration = start_iteration
    val_map = None
    parts.net.train()
    try:
        for batch in loader:
            loss_dict, loss = _train_step(parts, batch, iteration, config, info.device)
            iteration += 1
            window.add(loss_dict, loss)
            bar.update(1)

            if iteration % tc.log_period_iters == 0 or iteration == tc.max_iters:
                losses, record = _log_window(window, parts, iteration, info.device)
                run.writer.log(iteration, record)
                bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{record['lr']:.2g}",
                                img_s=f"{record['images_per_s']:.1f}")
                window = _LossWindow()

            if iteration % tc.checkpoint_period_iters == 0 or iteration == tc.max_iters:
                last_checkpoint = _save(run, parts, iteration)
            if (config.eval.period_iters > 0 and iteration % config.eval.period_iters == 0
                    and iteration < tc.max_iters):
                val_map = _periodic_eval(parts.model, run, iteration)
    finally:
        bar.close()
    return _LoopOutcome(iteration, losses, val_map, last_checkpoint)


def _train_step(parts: _Parts, batch, iteration: int, config: Config, device: torch.device
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimiser step on this rank's images of global batch ``iteration`` (flipped as
    ``flip_flags`` decides). Returns (the detector's losses, their sum)."""
    tc = config.train
    use_cuda = device.type == "cuda"
    images, targets = unpack_batch(batch)
    flips = (flip_flags(tc.seed, iteration, [t["image_id"] for t in targets])
             if tc.hflip else [False] * len(images))
    images, targets = prepare_batch(images, targets, device, flips, use_cuda and tc.channels_last)
    with autocast_context(device, tc.amp):
        loss_dict = parts.net(images, targets)
    loss = sum(loss_dict.values())
    optimizer, scaler = parts.optimizer, parts.scaler
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if config.optim.grad_clip_norm > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parts.model.parameters(), config.optim.grad_clip_norm)
    scaler.step(optimizer)
    scaler.update()
    parts.scheduler.step()
    return loss_dict, loss


class _LossWindow:
    """Sums of each loss over the iterations since the last log line (kept on the device)."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.iters = 0
        self.start = time.perf_counter()

    def add(self, loss_dict: dict[str, torch.Tensor], loss: torch.Tensor) -> None:
        for key, value in loss_dict.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach().float()
        self.sums["loss"] = self.sums.get("loss", 0.0) + loss.detach().float()
        self.iters += 1


def _log_window(window: _LossWindow, parts: _Parts, iteration: int, device: torch.device
                ) -> tuple[dict[str, float], dict]:
    """Window means reduced over the ranks, and the metrics.jsonl record (losses, LR, images/s,
    sampler phase). A non-finite loss stops training with advice."""
    losses = ddp.all_reduce_mean({k: float(v) / window.iters for k, v in window.sums.items()},
                                 device)
    if not math.isfinite(losses["loss"]):
        raise FloatingPointError(
            f"training loss is {losses['loss']} at iteration {iteration}; lower "
            "optim.lr, raise optim.warmup_iters or set optim.grad_clip_norm")
    elapsed = time.perf_counter() - window.start
    schedule = parts.schedule
    record = {**{f"loss/{k}" if k != "loss" else "loss": v for k, v in losses.items()},
              "lr": parts.optimizer.param_groups[0]["lr"],
              "images_per_s": window.iters * schedule.global_batch_size / elapsed,
              "sampler/phase_index": _phase_index(schedule, iteration - 1),
              "sampler/phase": schedule.phase_at(iteration - 1)}
    return losses, record


def _phase_index(schedule, iteration: int) -> int:
    for k, (_, start, stop) in enumerate(schedule.phases()):
        if start <= iteration < stop:
            return k
    return -1


def _save(run: _Run, parts: _Parts, iteration: int) -> Path:
    """Every rank contributes its RNG state; rank 0 writes atomically and prunes old ones."""
    rng = ddp.all_gather_object(capture_rng_state())
    path = checkpoint_path(run.run_dir, iteration)
    if run.info.is_main:
        meta = run.meta
        state = {
            "format_version": FORMAT_VERSION, "iteration": iteration,
            "fingerprint": run.fingerprint, "config": to_dict(run.config),
            "world_size": run.info.world_size,
            "model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
            "lr_scheduler": parts.scheduler.state_dict(),
            "grad_scaler": parts.scaler.state_dict(),
            "schedule": parts.schedule.state_dict(), "rng": rng,
            "classes": {"labels": [str(x) for x in meta.classes.labels],
                        "names": [str(x) for x in meta.classes.names]},
            "rate": None if meta.rate is None else torch.from_numpy(meta.rate),
            "hierarchy": hierarchy_to_state(meta.hierarchy),
        }
        save_checkpoint(path, state)
        prune_checkpoints(run.run_dir, run.config.train.keep_checkpoints)
    return path


def _periodic_eval(model, run: _Run, iteration: int) -> float | None:
    """Val mAP, sharded: every rank predicts its share of the val images, rank 0 gathers and
    scores them (``evaluate_split_sharded``; the others return None). RNG states are kept so
    evaluation never changes the training trajectory."""
    from wilddet.engine.evaluate import evaluate_split_sharded

    config = run.config
    if not config.data.has_val_split:
        return None
    rng = capture_rng_state()
    result = evaluate_split_sharded(model, config, run.meta, device=run.info.device,
                                    max_images=config.eval.max_images)
    restore_rng_state(rng)
    value = None
    if result is not None:
        value = result.mean_ap
        run.writer.log(iteration, {"val/mAP": value})
        log.info("iteration %d: val mAP %.4f", iteration, value)
    ddp.barrier()
    return value
