"""torch Datasets over an image folder (``<ImageID>.jpg``) and its box annotations.

Shapes: ``M`` boxes of one image, ``H``/``W`` image height/width in px, ``B`` images in a batch.

``DetectionDataset[i]`` -> ``(image, target)``:

- image: float32 [3, H, W] in [0, 1] (``uint8=True``: uint8 [3, H, W], 4x less to move; the
  trainer converts on the device);
- target: ``boxes`` float32 [M, 4] xyxy in pixels (converted by ``wilddet.boxes``, the one
  place that does it), ``labels`` int64 [M] class codes 1..C (0 is the model's background),
  ``is_group_of`` bool [M], ``image_id`` str, ``size`` (H, W).

The annotations come from a ``BoxCache`` (memory-mapped, see ``data.cache``), so a dataset is
cheap to hand to DataLoader workers. A missing or unreadable image raises ``InputError`` naming
the file; inside a DataLoader worker it is returned as a ``LoadFailure`` instead (the DataLoader
cannot re-raise an ``InputError``), and ``collate_detection`` + ``unpack_batch`` raise it in
the main process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.utils.data
from PIL import Image, UnidentifiedImageError

from wilddet.boxes import norm_to_xyxy_px
from wilddet.data.cache import BoxCache
from wilddet.data.image_files import IMAGE_EXTENSIONS, image_path
from wilddet.errors import InputError


@dataclass(frozen=True)
class LoadFailure:
    """An ``InputError`` raised inside a DataLoader worker, carried to the main process."""

    path: str | None
    message: str


def read_image(path: Path) -> torch.Tensor:
    """uint8 [3, H, W] RGB (grey and RGBA images converted); InputError naming the file."""
    if not path.is_file():
        raise InputError(path, "image file not found")
    try:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"))  # [H, W, 3] uint8
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(path, f"unreadable image: {str(e).splitlines()[0]}") from None
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))  # [3, H, W]


def _in_worker() -> bool:
    return torch.utils.data.get_worker_info() is not None


def read_image_list(path: str | os.PathLike) -> list[str]:
    """One ImageID per line (blank lines ignored; a ``.jpg``-style extension is stripped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip().split(",")[0]
        if line and line != "ImageID":
            stem, ext = os.path.splitext(line)
            ids.append(stem if ext.lower() in IMAGE_EXTENSIONS else line)
    if not ids:
        raise InputError(path, "no image IDs in file")
    return ids


class DetectionDataset(torch.utils.data.Dataset):
    """Images + boxes for training and evaluation.

    ``image_ids=None``: item i is the cache's image code i (what the samplers draw). Otherwise item
    i is ``image_ids[i]``; listed images without boxes get empty targets.
    ``drop_degenerate``: drop boxes with zero width or height in pixels (training needs it).
    """

    def __init__(self, image_dir: str | os.PathLike, boxes: BoxCache, *,
                 image_ids: Sequence[str] | None = None, drop_degenerate: bool = False,
                 uint8: bool = False):
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise InputError(self.image_dir, "image folder not found")
        self.boxes = boxes
        self.image_ids = None if image_ids is None else list(image_ids)
        self._codes = None if image_ids is None else np.array(
            [boxes.image_code(i) for i in self.image_ids], dtype=np.int64)
        self.drop_degenerate = drop_degenerate
        self.uint8 = uint8

    def __len__(self) -> int:
        return self.boxes.num_images if self.image_ids is None else len(self.image_ids)

    def image_id(self, index: int) -> str:
        return self.boxes.image_id(index) if self.image_ids is None else self.image_ids[index]

    def load_image(self, image_id: str) -> torch.Tensor:
        """uint8 [3, H, W] of ``image_id`` (InputError naming the file)."""
        return read_image(image_path(self.image_dir, image_id))

    def __getitem__(self, index: int):
        image_id = self.image_id(index)
        try:
            image = self.load_image(image_id)
        except InputError as e:
            if _in_worker():
                return LoadFailure(e.path, e.message)
            raise
        height, width = int(image.shape[1]), int(image.shape[2])
        code = index if self._codes is None else int(self._codes[index])
        rows = self.boxes.rows(code) if code >= 0 else np.zeros(0, np.int64)
        boxes_px = norm_to_xyxy_px(np.asarray(self.boxes.boxes_norm[rows]), height, width)  # [M, 4]
        labels = np.asarray(self.boxes.label_codes[rows], dtype=np.int64) + 1
        group = np.asarray(self.boxes.is_group_of[rows], dtype=bool)
        if self.drop_degenerate:
            keep = (boxes_px[:, 2] > boxes_px[:, 0]) & (boxes_px[:, 3] > boxes_px[:, 1])
            boxes_px, labels, group = boxes_px[keep], labels[keep], group[keep]
        target = {"boxes": torch.from_numpy(np.ascontiguousarray(boxes_px, np.float32))
                  .reshape(-1, 4),
                  "labels": torch.from_numpy(labels),
                  "is_group_of": torch.from_numpy(group),
                  "image_id": image_id,
                  "size": (height, width)}
        return (image if self.uint8 else image.float().div_(255)), target


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images only (prediction): ``image_ids`` or every ``*.jpg|jpeg|png`` in ``image_dir``
    (sorted). Item -> (image, {"image_id", "size"})."""

    def __init__(self, image_dir: str | os.PathLike, image_ids: Sequence[str] | None = None, *,
                 uint8: bool = False):
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise InputError(self.image_dir, "image folder not found")
        if image_ids is None:
            image_ids = sorted(p.stem for p in self.image_dir.iterdir()
                               if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not image_ids:
                raise InputError(self.image_dir, "no .jpg/.jpeg/.png images in the folder")
        self.image_ids = list(image_ids)
        self.uint8 = uint8

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int):
        image_id = self.image_ids[index]
        try:
            image = read_image(image_path(self.image_dir, image_id))
        except InputError as e:
            if _in_worker():
                return LoadFailure(e.path, e.message)
            raise
        info = {"image_id": image_id, "size": (int(image.shape[1]), int(image.shape[2]))}
        return (image if self.uint8 else image.float().div_(255)), info


@dataclass(frozen=True)
class _PackedTargets:
    """Targets on their way from a worker: numpy arrays travel inside the batch's one pickle,
    while each torch tensor would cost a shared-memory file and descriptor of its own (3x fewer
    images/s for small images). Images stay tensors (shared memory suits large buffers)."""

    targets: tuple


def collate_detection(batch):
    """[(image, target)] * B -> (tuple of B images, tuple of B targets); a worker's
    ``LoadFailure`` is passed on alone. Read batches with ``unpack_batch``."""
    for item in batch:
        if isinstance(item, LoadFailure):
            return item
    images, targets = zip(*batch)
    if _in_worker():
        targets = _PackedTargets(tuple({k: v.numpy() if isinstance(v, torch.Tensor) else v
                                        for k, v in t.items()} for t in targets))
    return images, targets


def unpack_batch(batch):
    """A DataLoader batch of ``collate_detection`` -> (images, targets) with tensors; raises the
    ``InputError`` a worker could not raise itself."""
    if isinstance(batch, LoadFailure):
        raise InputError(batch.path, batch.message)
    images, targets = batch
    if isinstance(targets, _PackedTargets):
        targets = tuple({k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                         for k, v in t.items()} for t in targets.targets)
    return images, targets
