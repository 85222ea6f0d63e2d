"""``wilddet predict --checkpoint CKPT --images DIR [--image-list IDS.txt]
[--test-scores NAME] --out DETECTIONS.csv [--kaggle SUBMISSION.csv]``; NAME is one of
``wilddet.model.choices.CLASSIFIERS`` (a loss's name = its natural scores)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from wilddet.errors import InputError
from wilddet.model.choices import CLASSIFIERS


def predict(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A training checkpoint (.pt)."),
    images: Path = typer.Option(..., "--images", help="Folder of <ImageID>.jpg images."),
    out: Path = typer.Option(..., "--out", help="Detections CSV: ImageID,LabelName,Score,XMin,"
                             "XMax,YMin,YMax (normalized)."),
    image_list: Path | None = typer.Option(None, "--image-list", help="Only these ImageIDs "
                                           "(one per line); default every image in --images."),
    test_scores: str | None = typer.Option(None, "--test-scores", help="Score activation: "
                                           "the natural scores of a loss, one of "
                                           f"{', '.join(CLASSIFIERS)} (default: the "
                                           "checkpoint's model.test_scores)."),
    kaggle: Path | None = typer.Option(None, "--kaggle", help="Also write the Kaggle submission "
                                       "(ImageId,PredictionString)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    num_workers: int = typer.Option(2, "--num-workers", min=0, help="DataLoader workers."),
) -> None:
    """Detect objects in a folder of images with a trained checkpoint."""
    from wilddet.data.dataset import read_image_list
    from wilddet.engine.inference import predict as run_predict

    if device not in ("auto", "cpu", "cuda"):
        raise InputError(None, f"{device!r} is not one of auto, cpu, cuda", field="--device")
    ids = read_image_list(image_list) if image_list is not None else None
    detections = run_predict(checkpoint, images, out, image_ids=ids, test_scores=test_scores,
                             kaggle=kaggle, batch_size=batch_size, device=device,
                             num_workers=num_workers)
    Console(stderr=True).print(f"wrote {len(detections)} detections on "
                               f"{detections.num_images} images to {out}"
                               + (f" and {kaggle}" if kaggle else ""))


__all__ = ["predict"]
