"""Where an image of a dataset folder is: ``<folder>/<ImageID>.jpg`` (or ``.jpeg`` / ``.png``).

The one lookup used by the dataset, the COCO converter's size reader and the diagnosis gallery;
torch-free so that commands which only read headers do not import torch.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # in lookup order


def find_image(image_dir: Path, image_id: str) -> Path | None:
    """``image_dir/<image_id>`` with the first of IMAGE_EXTENSIONS that exists, else None."""
    for ext in IMAGE_EXTENSIONS:
        path = image_dir / f"{image_id}{ext}"
        if path.is_file():
            return path
    return None


def image_path(image_dir: Path, image_id: str) -> Path:
    """``find_image``, or ``image_dir/<image_id>.jpg`` when none exists (for the error message of
    whoever opens it)."""
    return find_image(image_dir, image_id) or image_dir / f"{image_id}.jpg"
