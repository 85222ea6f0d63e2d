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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from wilddet.config import Config, dump_toml, fingerprint, to_dict
from wilddet.data.cache import open_box_cache
from wilddet.data.dataset import DetectionDataset, collate_detection, read_image_list, unpack_batch
from wilddet.engine import distributed as ddp
from wilddet.engine.builders import (
    DatasetMeta,
    build_detector,
    build_optimizer,
    build_schedule,
    hierarchy_to_state,
    load_meta,
    require_file,
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
from wilddet.errors import InputError
from wilddet.fileio import write_text_atomic
from wilddet.sampling import ClassImageIndex, ScheduleBatchSampler

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


def training_index(cache, image_ids: list[str] | None, config: Config, meta: DatasetMeta
                   ) -> ClassImageIndex:
    """The samplers' class<->image index over the dataset's items (cache codes, or positions in
    ``image_ids``); hierarchy-expanded counts with ``sampling.hierarchy_counts``."""
    hier = meta.hierarchy if config.sampling.hierarchy_counts else None
    if image_ids is None and hier is None:
        return cache.class_image_index()  # memory-mapped, built once with the cache
    codes = np.asarray(cache.image_codes)
    labels = np.asarray(cache.label_codes)
    if image_ids is None:
        return ClassImageIndex.from_codes(codes, labels, cache.num_images, len(meta.classes), hier)
    position = np.full(cache.num_images, -1, np.int64)
    for pos, image_id in enumerate(image_ids):
        code = cache.image_code(image_id)
        if code >= 0:
            position[code] = pos
    mapped = position[codes]
    keep = mapped >= 0
    return ClassImageIndex.from_codes(mapped[keep], labels[keep], len(image_ids),
                                      len(meta.classes), hier)


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
          progress: bool | None = None) -> TrainResult:
    """Train ``config`` into ``out_dir`` (created). ``resume``: continue from the newest valid
    checkpoint there (from scratch if there is none). Without ``resume`` a folder that already
    holds checkpoints is refused. Under torchrun every rank calls this; the process group is
    created here (and destroyed at the end) unless the caller made one.

    ``progress``: live bar on rank 0 (None = when stderr is a terminal).
    Bad input raises ``InputError`` before anything is written.
    """
    owned_group = not ddp.is_distributed()
    info = ddp.init_distributed(config.train.device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    if config.train.num_threads > 0:
        torch.set_num_threads(config.train.num_threads)
    try:
        return _train(config, Path(out_dir), resume, progress, info)
    finally:
        # torch.use_deterministic_algorithms imports torch._inductor (~3 s): call it only to undo
        if torch.are_deterministic_algorithms_enabled() != deterministic_before:
            torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)
        if owned_group:
            ddp.cleanup()


def _train(config: Config, run_dir: Path, resume: bool, progress: bool | None,
           info: ddp.DistInfo) -> TrainResult:
    start_time = time.perf_counter()
    tc = config.train
    device = info.device
    use_cuda = device.type == "cuda"

    # -- inputs first: nothing is written until they all check out ----------------------------
    meta = load_meta(config)
    image_dir = require_file(config, "train_images")
    boxes_csv = require_file(config, "train_boxes")
    image_ids = (read_image_list(require_file(config, "train_image_list"))
                 if config.data.train_image_list else None)
    if config.eval.period_iters >= 0 and config.data.val_boxes and config.data.val_images:
        require_file(config, "val_images")  # fail now, not after hours of training
        require_file(config, "val_boxes")
    fp = fingerprint(config)
    found = None
    if resume:
        found = latest_valid_checkpoint(run_dir)
        if found is not None:
            check_fingerprint(found[1], fp, found[0])
    elif list_checkpoints(run_dir):
        raise InputError(run_dir, "already holds checkpoints of a run; pass --resume to "
                         "continue it or choose another --out")
    cache = open_box_cache(boxes_csv, meta.classes, cache_dir=config.data.cache_dir or None)
    dataset = DetectionDataset(image_dir, cache, image_ids=image_ids, drop_degenerate=True,
                               uint8=True)
    index = training_index(cache, image_ids, config, meta)
    schedule = build_schedule(config.sampling, index, batch_size=tc.batch_size,
                              max_iters=tc.max_iters, world_size=info.world_size, seed=tc.seed)

    # -- model, optimiser, state ------------------------------------------------------------
    if tc.deterministic and not torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(tc.seed)  # same initial weights on every rank
    model = build_detector(config.model, meta).to(device)
    if use_cuda and tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_lr_scheduler(optimizer, config.optim, tc.max_iters)
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda and tc.amp == "fp16")
    start_iteration = 0
    rng_state = None
    if found is not None:
        path, state = found
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["lr_scheduler"])
        scaler.load_state_dict(state["grad_scaler"])
        try:
            schedule.load_state_dict(state["schedule"])
        except ValueError as e:
            raise InputError(path, f"{e} (world size or data changed since the checkpoint)"
                             ) from None
        start_iteration = int(state["iteration"])
        rng_state = state["rng"][info.rank]
        log.info("resuming %s at iteration %d", path, start_iteration)
    else:
        torch.manual_seed(rank_seed(tc.seed, info.rank))
    net = model
    if info.world_size > 1:
        if use_cuda and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                            for m in model.modules()):
            # trainable BatchNorm (random-init ResNets) must see the global batch
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if use_cuda else None,
            find_unused_parameters=tc.find_unused_parameters)

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.toml", dump_toml(config))
    writer = _Writer(run_dir, info.is_main, tc.tensorboard, start_iteration)
    sampler = ScheduleBatchSampler(schedule, info.rank, start_iteration=start_iteration)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.data.num_workers,
                        collate_fn=collate_detection, pin_memory=use_cuda,
                        generator=torch.Generator().manual_seed(tc.seed))
    if rng_state is not None:
        restore_rng_state(rng_state)

    show = info.is_main and (sys.stderr.isatty() if progress is None else progress)
    from tqdm import tqdm

    bar = tqdm(total=tc.max_iters, initial=start_iteration, disable=not show, unit="it",
               dynamic_ncols=True, desc="train")
    last_checkpoint = found[0] if found is not None else None
    losses: dict[str, float] = {}
    window: dict[str, torch.Tensor] = {}
    window_iters, window_start = 0, time.perf_counter()
    iteration = start_iteration
    val_map = None
    net.train()
    try:
        for batch in loader:
            images, targets = unpack_batch(batch)
            flips = (flip_flags(tc.seed, iteration, [t["image_id"] for t in targets])
                     if tc.hflip else [False] * len(images))
            images, targets = prepare_batch(images, targets, device, flips,
                                            use_cuda and tc.channels_last)
            with autocast_context(device, tc.amp):
                loss_dict = net(images, targets)
            loss = sum(loss_dict.values())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.optim.grad_clip_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            iteration += 1
            for key, value in loss_dict.items():
                window[key] = window.get(key, 0.0) + value.detach().float()
            window["loss"] = window.get("loss", 0.0) + loss.detach().float()
            window_iters += 1
            bar.update(1)

            if iteration % tc.log_period_iters == 0 or iteration == tc.max_iters:
                losses = ddp.all_reduce_mean(
                    {k: float(v) / window_iters for k, v in window.items()}, device)
                if not math.isfinite(losses["loss"]):
                    raise FloatingPointError(
                        f"training loss is {losses['loss']} at iteration {iteration}; lower "
                        "optim.lr, raise optim.warmup_iters or set optim.grad_clip_norm")
                elapsed = time.perf_counter() - window_start
                record = {**{f"loss/{k}" if k != "loss" else "loss": v
                             for k, v in losses.items()},
                          "lr": optimizer.param_groups[0]["lr"],
                          "images_per_s": window_iters * schedule.global_batch_size / elapsed,
                          "sampler/phase_index": _phase_index(schedule, iteration - 1),
                          "sampler/phase": schedule.phase_at(iteration - 1)}
                writer.log(iteration, record)
                bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{record['lr']:.2g}",
                                img_s=f"{record['images_per_s']:.1f}")
                window, window_iters, window_start = {}, 0, time.perf_counter()

            if iteration % tc.checkpoint_period_iters == 0 or iteration == tc.max_iters:
                last_checkpoint = _save(run_dir, iteration, model, optimizer, scheduler, scaler,
                                        schedule, config, fp, meta, info)
            if (config.eval.period_iters > 0 and iteration % config.eval.period_iters == 0
                    and iteration < tc.max_iters):
                val_map = _periodic_eval(model, config, meta, device, writer, iteration, info)
    finally:
        bar.close()

    if iteration > start_iteration and config.eval.period_iters >= 0:
        val_map = _periodic_eval(model, config, meta, device, writer, iteration, info)
    writer.close()
    ddp.barrier()
    if last_checkpoint is None:  # resumed a finished run: nothing to do
        last_checkpoint = checkpoint_path(run_dir, iteration)
    return TrainResult(run_dir, last_checkpoint, iteration, losses, val_map,
                       time.perf_counter() - start_time)


def _phase_index(schedule, iteration: int) -> int:
    for k, (_, start, stop) in enumerate(schedule.phases()):
        if start <= iteration < stop:
            return k
    return -1


def _save(run_dir: Path, iteration: int, model, optimizer, scheduler, scaler, schedule,
          config: Config, fp: str, meta: DatasetMeta, info: ddp.DistInfo) -> Path:
    """Every rank contributes its RNG state; rank 0 writes atomically and prunes old ones."""
    rng = ddp.all_gather_object(capture_rng_state())
    path = checkpoint_path(run_dir, iteration)
    if info.is_main:
        state = {
            "format_version": FORMAT_VERSION, "iteration": iteration, "fingerprint": fp,
            "config": to_dict(config), "world_size": info.world_size,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "lr_scheduler": scheduler.state_dict(), "grad_scaler": scaler.state_dict(),
            "schedule": schedule.state_dict(), "rng": rng,
            "classes": {"labels": [str(x) for x in meta.classes.labels],
                        "names": [str(x) for x in meta.classes.names]},
            "rate": None if meta.rate is None else torch.from_numpy(meta.rate),
            "hierarchy": hierarchy_to_state(meta.hierarchy),
        }
        save_checkpoint(path, state)
        prune_checkpoints(run_dir, config.train.keep_checkpoints)
    return path


def _periodic_eval(model, config: Config, meta: DatasetMeta, device, writer: _Writer,
                   iteration: int, info: ddp.DistInfo) -> float | None:
    """Val mAP on rank 0 (others wait); RNG states are kept so evaluation never changes the
    training trajectory."""
    from wilddet.engine.evaluate import evaluate_split

    value = None
    if info.is_main and config.data.val_boxes and config.data.val_images:
        rng = capture_rng_state()
        result = evaluate_split(model, config, meta, device=device,
                                max_images=config.eval.max_images)
        restore_rng_state(rng)
        value = result.mean_ap
        writer.log(iteration, {"val/mAP": value})
        log.info("iteration %d: val mAP %.4f", iteration, value)
    ddp.barrier()
    return value
