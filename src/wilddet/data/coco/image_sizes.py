"""Image sizes for the OID -> COCO conversion, without decoding any image.

Shapes: ``I`` images.

Two sources: the image files' headers (``imagesize`` reads the few bytes of the JPEG/PNG header
that hold the size) or a ``SIZES.csv`` with columns ``ImageID,width,height`` (px, by name, rows
in any order, extra columns ignored).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from wilddet.data.image_files import find_image
from wilddet.errors import InputError


@dataclass(frozen=True)
class ImageSizes:
    """file_names [I] str, widths / heights [I] int64 px, in the order of the ImageIDs asked."""

    file_names: list[str]
    widths: np.ndarray
    heights: np.ndarray


def sizes_from_folder(folder: str | os.PathLike, image_ids) -> ImageSizes:
    """Width and height of ``<folder>/<ImageID>.jpg`` (or .jpeg / .png) from the file header."""
    import imagesize

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "image folder not found")
    names, widths, heights = [], [], []
    for image_id in map(str, image_ids):
        path = find_image(folder, image_id)
        if path is None:
            raise InputError(folder / f"{image_id}.jpg", "image file not found (needed for its "
                             "size; or pass --image-sizes SIZES.csv)")
        try:
            w, h = imagesize.get(path)
        except (OSError, ValueError) as e:
            raise InputError(path, f"cannot read the image header: {e}") from None
        if w <= 0 or h <= 0:
            raise InputError(path, "cannot read the image size from the header (not a JPEG/PNG?)")
        names.append(path.name)
        widths.append(w)
        heights.append(h)
    return ImageSizes(names, np.asarray(widths, np.int64), np.asarray(heights, np.int64))


def read_sizes_csv(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """``ImageID,width,height`` -> {ImageID: (width, height)}; InputError at the bad line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(path, f"malformed CSV: {str(e).splitlines()[0]}") from None
    for col in ("ImageID", "width", "height"):
        if col not in frame.columns:
            raise InputError(path, "missing column; needs ImageID,width,height", line=1,
                             field=col)
    out: dict[str, tuple[int, int]] = {}
    for col in ("width", "height"):
        numbers = pd.to_numeric(frame[col], errors="coerce")
        bad = (numbers.isna() | (numbers <= 0) | (numbers != numbers.round())).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(path, f"{frame[col].iloc[row]!r} is not a positive integer",
                             line=row + 2, field=col)
        frame[col] = numbers.astype(np.int64)
    dup = frame["ImageID"].duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise InputError(path, f"duplicate ImageID {frame['ImageID'].iloc[row]!r}",
                         line=row + 2, field="ImageID")
    for image_id, w, h in zip(frame["ImageID"], frame["width"], frame["height"]):
        out[image_id] = (int(w), int(h))
    return out


def sizes_from_csv(path: str | os.PathLike, image_ids) -> ImageSizes:
    """Sizes of ``image_ids`` from SIZES.csv; an image it lacks is an error. ``file_name`` is
    ``<ImageID>.jpg``."""
    table = read_sizes_csv(path)
    names, widths, heights = [], [], []
    for image_id in map(str, image_ids):
        if image_id not in table:
            raise InputError(path, f"no size for image {image_id!r}", field="ImageID")
        w, h = table[image_id]
        names.append(f"{image_id}.jpg")
        widths.append(w)
        heights.append(h)
    return ImageSizes(names, np.asarray(widths, np.int64), np.asarray(heights, np.int64))
