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
    num_pairs: int = typer.Option(_DEFAULTS.num_pairs, "--pairs",
                                  help="Control look-alike pairs (distinct hue); 0: classes // 8."),
    parent_label_rate: float = typer.Option(
        _DEFAULTS.parent_label_rate, help="(c) Share of a case-(c) leaf's objects whose only box "
        "carries the parent (shape) label."),
    parent_label_classes: int = typer.Option(
        _DEFAULTS.parent_label_classes, help="(c) Leaves planted with parent-only boxes; -1: auto."),
    explicit_duplicate_rate: float = typer.Option(
        _DEFAULTS.explicit_duplicate_rate, help="(b) Share of a case-(b) leaf's objects boxed "
        "as the leaf and as its parent."),
    explicit_duplicate_classes: int = typer.Option(
        _DEFAULTS.explicit_duplicate_classes, help="(b) Leaves planted with parent duplicates; "
        "-1: auto."),
    co_label_groups: int = typer.Option(
        _DEFAULTS.co_label_groups, help="(a) Pairs of unrelated leaves (A, B): an A object "
        "sometimes also carries a B box; -1: auto."),
    co_label_rate: float = typer.Option(_DEFAULTS.co_label_rate,
                                        help="(a) Share of A objects that also carry B."),
    synonym_groups: int = typer.Option(
        _DEFAULTS.synonym_groups, help="(d) Groups of 2-3 leaves rendered identically, each "
        "object labelled with one by fixed shares; -1: auto."),
    synonym_both_rate: float = typer.Option(
        _DEFAULTS.synonym_both_rate, help="(d) Share of a synonym group's objects labelled with "
        "two members."),
    second_annotation_rate: float = typer.Option(
        _DEFAULTS.second_annotation_rate, help="Share of objects labelled again, independently, "
        "for the image-level labels (how often a label not chosen for the box is verified)."),
    appearance_jitter: float = typer.Option(
        _DEFAULTS.appearance_jitter, help="Per-object hue/brightness variation (0: every object "
        "of a class looks the same; 1: hue sd 8 degrees, brightness down to 65%)."),
    val_class_balance: int = typer.Option(
        _DEFAULTS.val_class_balance, help="Draw val images so that every class with boxes has "
        "at least this many (0: plain draw; the split may grow past --val-images)."),
    no_images: bool = typer.Option(False, "--no-images",
                                   help="Write only the CSVs (Open Images scale benchmarks)."),
    data_format: str = typer.Option("oid", "--format", help="coco or lvis: also write "
                                    "<split>-coco.json / <split>-lvis.json (wilddet convert)."),
) -> None:
    """Write a synthetic Open Images dataset: long tail, 3-level hierarchy, the paper's four
    label cases (a) co-label, (b) explicit duplicate, (c) parent label, (d) synonyms, control
    look-alike pairs, group-of boxes, non-exhaustive image-level labels, learnable images."""
    try:
        cfg = SynthConfig(train_images=train_images, val_images=val_images, classes=classes,
                          image_size=image_size, seed=seed, objects_per_image=objects_per_image,
                          alpha=alpha, pair_duplicate_rate=pair_duplicate_rate,
                          group_of_rate=group_of_rate, num_pairs=num_pairs,
                          parent_label_rate=parent_label_rate,
                          parent_label_classes=parent_label_classes,
                          explicit_duplicate_rate=explicit_duplicate_rate,
                          explicit_duplicate_classes=explicit_duplicate_classes,
                          co_label_groups=co_label_groups, co_label_rate=co_label_rate,
                          synonym_groups=synonym_groups, synonym_both_rate=synonym_both_rate,
                          second_annotation_rate=second_annotation_rate,
                          appearance_jitter=appearance_jitter,
                          val_class_balance=val_class_balance)
    except ValueError as e:
        raise InputError(None, str(e)) from None
    if data_format not in ("oid", "coco", "lvis"):
        raise typer.BadParameter(f"{data_format!r} is not oid, coco or lvis", param_hint="--format")
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
    if data_format != "oid":
        from wilddet.data.coco.convert import synthetic_split_to_json

        for split in ("train", "val"):
            synthetic_split_to_json(out_dir, split, data_format, cfg.image_size)
    splits, cases = manifest["splits"], manifest["cases"]
    console.print(f"wrote {out_dir}: train {splits['train']['images']} images / "
                  f"{splits['train']['boxes']} boxes, val {splits['val']['images']} images / "
                  f"{splits['val']['boxes']} boxes; planted: (a) {len(cases['co_label']['pairs'])}"
                  f" co-label pairs, (b) {len(cases['explicit_duplicate']['classes'])} and (c) "
                  f"{len(cases['parent_label']['classes'])} leaves, (d) "
                  f"{len(cases['synonym']['groups'])} synonym groups, "
                  f"{len(cases['control']['pairs'])} control look-alike pairs "
                  f"({time.perf_counter() - start:.1f} s)")


__all__ = ["synth"]
