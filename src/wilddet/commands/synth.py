"""``wilddet synth OUT_DIR``: write a synthetic Open Images dataset (see wilddet.data.synthetic)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from wilddet.data.synthetic import SynthConfig, write_dataset
from wilddet.errors import InputError

_DEFAULTS = SynthConfig()


def synth(
    out_dir: Path = typer.Argument(..., help="Output folder (created; must be empty if it exists)."),
    train_images: int = typer.Option(_DEFAULTS.train_images, help="Images in the train split."),
    val_images: int = typer.Option(_DEFAULTS.val_images, help="Images in the val split."),
    classes: int = typer.Option(_DEFAULTS.classes, help="Leaf classes (parents are added)."),
    image_size: int = typer.Option(_DEFAULTS.image_size, help="Image side in pixels."),
    seed: int = typer.Option(_DEFAULTS.seed, help="Random seed; the dataset is a function of it."),
    objects_per_image: float = typer.Option(_DEFAULTS.objects_per_image,
                                            help="Mean objects per image."),
    alpha: float = typer.Option(_DEFAULTS.alpha, help="Power-law exponent of class frequency."),
    pair_duplicate_rate: float = typer.Option(_DEFAULTS.pair_duplicate_rate,
                                              help="Share of a look-alike pair's objects that "
                                                   "carry a second box of the partner class."),
    group_of_rate: float = typer.Option(_DEFAULTS.group_of_rate,
                                        help="Share of objects that are group-of clusters."),
    no_images: bool = typer.Option(False, "--no-images",
                                   help="Write only the CSVs (Open Images scale benchmarks)."),
) -> None:
    """Write a synthetic Open Images dataset: long tail, 3-level hierarchy, confusion pairs,
    group-of boxes, non-exhaustive image-level labels, and learnable images."""
    try:
        cfg = SynthConfig(train_images=train_images, val_images=val_images, classes=classes,
                          image_size=image_size, seed=seed, objects_per_image=objects_per_image,
                          alpha=alpha, pair_duplicate_rate=pair_duplicate_rate,
                          group_of_rate=group_of_rate)
    except ValueError as e:
        raise InputError(None, str(e)) from None
    console = Console(stderr=True)
    start = time.perf_counter()
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, disable=no_images) as bar:
        tasks: dict[str, int] = {}

        def progress(split: str, done: int, total: int) -> None:
            if split not in tasks:
                tasks[split] = bar.add_task(f"rendering {split}", total=total)
            bar.update(tasks[split], completed=done)

        try:
            manifest = write_dataset(out_dir, cfg, with_images=not no_images, progress=progress)
        except FileExistsError as e:
            raise InputError(out_dir, f"{e}; choose another folder") from None
    splits = manifest["splits"]
    console.print(f"wrote {out_dir}: train {splits['train']['images']} images / "
                  f"{splits['train']['boxes']} boxes, val {splits['val']['images']} images / "
                  f"{splits['val']['boxes']} boxes, {len(manifest['planted_pairs']) // 2} planted "
                  f"confusion pairs ({time.perf_counter() - start:.1f} s)")


__all__ = ["synth"]
