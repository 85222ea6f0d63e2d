"""Batched inference: images -> Open Images detections (normalized boxes, class codes, scores).

Shapes: ``B`` images in a batch, ``D`` detections of one image, ``N`` detections in total,
``C`` classes (model labels 1..C, class codes 0..C-1).

The model returns pixel boxes in each image's own size; ``wilddet.boxes.xyxy_px_to_norm`` turns
them into the normalized (xmin, ymin, xmax, ymax) of a ``BoxTable``. ``predict`` is the Python
form of ``wilddet predict``: load a checkpoint, run, write the CSV(s) atomically.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from wilddet.boxes import xyxy_px_to_norm
from wilddet.config import Config, from_dict
from wilddet.data.dataset import ImageFolderDataset, collate_detection, unpack_batch
from wilddet.data.records import BoxTable, ClassList
from wilddet.engine.builders import DatasetMeta, build_detector, hierarchy_from_state
from wilddet.engine.checkpoint import load_checkpoint
from wilddet.engine.distributed import resolve_device
from wilddet.errors import InputError
from wilddet.fileio import atomic_path
from wilddet.model.choices import CLASSIFIERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    meta: DatasetMeta
    config: Config
    iteration: int


def autocast_context(device: torch.device, amp: str):
    """``torch.autocast`` for "bf16"/"fp16" on CUDA; a no-op otherwise (CPU runs float32)."""
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def set_model_test_scores(model: torch.nn.Module, mode: str) -> None:
    """Switch the test-time scores to those of ``mode`` (a name of ``model.choices``)."""
    from wilddet.model.build import set_test_scores

    set_test_scores(model, mode)


def load_model(checkpoint: str | os.PathLike, *, device: str | torch.device = "cpu",
               test_scores: str | None = None) -> LoadedModel:
    """Rebuild the detector of a training checkpoint (architecture from its saved config, class
    list, rate matrix and hierarchy), in eval mode on ``device``."""
    state = load_checkpoint(checkpoint)
    try:
        config = from_dict(state["config"], source=checkpoint)
        classes = ClassList(np.asarray(state["classes"]["labels"], dtype=object),
                            np.asarray(state["classes"]["names"], dtype=object))
    except KeyError as e:
        raise InputError(checkpoint, f"checkpoint lacks {e}") from None
    rate = None if state.get("rate") is None else state["rate"].numpy()
    meta = DatasetMeta(classes, hierarchy_from_state(state.get("hierarchy")), rate)
    model_cfg = config.model
    model = build_detector(model_cfg, meta)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise InputError(checkpoint, f"weights do not fit the model: "
                         f"{str(e).splitlines()[0]}") from None
    if test_scores is not None:
        set_model_test_scores(model, test_scores)
    device = torch.device(device)
    model.to(device).eval()
    return LoadedModel(model, meta, config, int(state["iteration"]))


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset, *, device: torch.device | str = "cpu",
                    batch_size: int = 4, num_workers: int = 0, amp: str = "off",
                    channels_last: bool = False, progress: bool = False,
                    desc: str = "predict") -> BoxTable:
    """Run ``model`` (eval mode) over ``dataset`` (items (image, info) with ``info["image_id"]``).

    Returns a detections ``BoxTable``: one image code per dataset item in dataset order (images
    without detections included in ``image_ids``), class codes = model label - 1, normalized
    boxes, scores. The model's mode is restored afterwards.
    """
    from tqdm import tqdm

    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_detection, pin_memory=device.type == "cuda")
    image_ids: list[str] = []
    codes, labels, boxes, scores = [], [], [], []
    bar = tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress, leave=False,
               dynamic_ncols=True)
    try:
        for batch in loader:
            images, infos = unpack_batch(batch)
            images = [_to_float(im, device, channels_last) for im in images]
            with autocast_context(device, amp):
                outputs = model(images)
            for info, out in zip(infos, outputs):
                code = len(image_ids)
                image_ids.append(info["image_id"])
                height, width = info["size"]
                n = len(out["scores"])
                codes.append(np.full(n, code, np.int32))
                labels.append(out["labels"].cpu().numpy().astype(np.int32) - 1)
                boxes.append(xyxy_px_to_norm(out["boxes"].float().cpu().numpy(), height, width))
                scores.append(out["scores"].float().cpu().numpy())
            bar.update(len(infos))
    finally:
        bar.close()
        model.train(was_training)
    cat = (lambda parts, dtype, shape: np.concatenate(parts).astype(dtype) if parts
           else np.zeros(shape, dtype))
    return BoxTable(cat(codes, np.int32, (0,)), cat(labels, np.int32, (0,)),
                    cat(boxes, np.float32, (0, 4)).reshape(-1, 4),
                    np.zeros(sum(len(c) for c in codes), bool),
                    np.asarray(image_ids, dtype=object), cat(scores, np.float32, (0,)))


def _to_float(image: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    image = image.to(device, non_blocking=True)
    if not image.is_floating_point():
        image = image.float().div_(255)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    return image


def predict(checkpoint: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike, *,
            image_ids: Sequence[str] | None = None, test_scores: str | None = None,
            kaggle: str | os.PathLike | None = None, batch_size: int = 8,
            device: str = "auto", num_workers: int = 2, progress: bool | None = None
            ) -> BoxTable:
    """``wilddet predict`` as a function: detections of every image in ``images`` (or of
    ``image_ids``) written to ``out`` (OID ``ImageID,LabelName,Score,XMin,XMax,YMin,YMax``,
    normalized) and optionally to ``kaggle`` (``ImageId,PredictionString``). Inputs are checked
    before any work; files are written atomically at the end. Returns the detections."""
    from wilddet.data.oid_csv import write_detections, write_kaggle_submission

    if test_scores is not None and test_scores not in CLASSIFIERS:
        raise InputError(None, f"{test_scores!r} is not one of {', '.join(CLASSIFIERS)}",
                         field="--test-scores")
    dataset = ImageFolderDataset(images, image_ids, uint8=True)
    dev = resolve_device(device)
    loaded = load_model(checkpoint, device=dev, test_scores=test_scores)
    show = sys.stderr.isatty() if progress is None else progress
    detections = predict_dataset(loaded.model, dataset, device=dev, batch_size=batch_size,
                                 num_workers=num_workers, amp=loaded.config.train.amp,
                                 channels_last=False, progress=show)
    with contextlib.ExitStack() as stack:  # both files appear together or not at all
        out_tmp = stack.enter_context(atomic_path(out))
        write_detections(out_tmp, detections, loaded.meta.classes)
        if kaggle is not None:
            kaggle_tmp = stack.enter_context(atomic_path(kaggle))
            write_kaggle_submission(kaggle_tmp, detections, loaded.meta.classes,
                                    all_image_ids=list(dataset.image_ids))
    log.info("wrote %d detections on %d images to %s", len(detections), len(dataset), out)
    return detections

