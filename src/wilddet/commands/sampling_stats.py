"""``wilddet sampling-stats``: expected vs realized class shares of one training sampler.

Shapes: ``I`` images, ``C`` classes.

STATS.csv has one row per class (class-descriptions order), columns exactly
``label,name,images,expected_share,realized_share``: N_c, the closed-form probability that a drawn
image contains the class (``wilddet.sampling.probabilities``), and the share observed in
``--num-samples`` draws (positions 0..n-1 of the sampler's stream, world size 1).
"""

from __future__ import annotations

import csv
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.console import Console

from wilddet.data.hierarchy import read_hierarchy
from wilddet.data.oid_csv import read_boxes, read_classes
from wilddet.errors import InputError
from wilddet.fileio import atomic_path

if TYPE_CHECKING:
    from wilddet.sampling import ClassImageIndex

STATS_COLUMNS = ("label", "name", "images", "expected_share", "realized_share")


class SamplerKind(str, Enum):
    non_balance = "non-balance"
    class_aware = "class-aware"
    soft_balance = "soft-balance"
    repeat_factor = "repeat-factor"


def build_sampler(kind: SamplerKind, index: ClassImageIndex, *, lam: float,
                  repeat_threshold: float, seed: int):
    """One sampler for world size 1 (a single ``match``, no registry)."""
    # imported here: wilddet.sampling pulls in torch, which `wilddet --help` should not pay for
    from wilddet.sampling import (
        ClassAwareSampler,
        NonBalanceSampler,
        RepeatFactorSampler,
        SoftBalanceSampler,
    )

    match SamplerKind(kind):
        case SamplerKind.non_balance:
            return NonBalanceSampler(index, seed=seed)
        case SamplerKind.class_aware:
            return ClassAwareSampler(index, seed=seed)
        case SamplerKind.soft_balance:
            return SoftBalanceSampler(index, lam, seed=seed)
        case SamplerKind.repeat_factor:
            return RepeatFactorSampler(index, repeat_threshold, seed=seed)


_Opt = typer.Option


def sampling_stats(
    boxes: Annotated[Path, _Opt("--boxes", help="Ground-truth boxes CSV (13- or 7-column).")],
    classes: Annotated[Path, _Opt("--classes", help="Class descriptions CSV.")],
    sampler: Annotated[SamplerKind, _Opt("--sampler", help="Which sampler to measure.")],
    out: Annotated[Path, _Opt("--out", help="Output STATS.csv.")],
    lam: Annotated[float, _Opt("--lam", help="Soft-balance λ: P(c) ∝ N_c^λ.")] = 0.5,
    repeat_threshold: Annotated[float, _Opt("--repeat-threshold", min=0.0,
                                            help="Repeat-factor threshold t (LVIS).")] = 0.001,
    num_samples: Annotated[int, _Opt("--num-samples", min=1,
                                     help="Images drawn for the realized shares.")] = 100_000,
    seed: Annotated[int, _Opt("--seed", min=0, help="Sampler seed.")] = 0,
    plot: Annotated[Path | None, _Opt("--plot", help="Also write a log-log PNG plot.")] = None,
    hierarchy: Annotated[Path | None, _Opt("--hierarchy", help="Class hierarchy JSON: count "
                                           "hierarchy-expanded labels for N_c (default: raw "
                                           "box labels).")] = None,
) -> None:
    """Expected (formula) and realized (drawn) share of images containing each class under a
    sampler, to see how much the tail is boosted."""
    class_list = read_classes(classes)
    table = read_boxes(boxes, class_list)
    tree = None if hierarchy is None else read_hierarchy(hierarchy, class_list)
    from wilddet.sampling import ClassImageIndex

    index = ClassImageIndex.from_codes(table.image_codes, table.label_codes, table.num_images,
                                       len(class_list), hierarchy=tree)
    try:
        chosen = build_sampler(sampler, index, lam=lam, repeat_threshold=repeat_threshold,
                               seed=seed)
    except ValueError as e:  # e.g. a file without boxes: nothing to draw
        raise InputError(boxes, str(e)) from None
    expected = index.class_share(chosen.image_probabilities())  # [C]
    drawn = chosen.stream(0, num_samples)  # [num_samples] image codes
    realized = index.class_share(np.bincount(drawn, minlength=index.num_images)) / num_samples
    n_c = index.images_per_class

    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(STATS_COLUMNS)
        for c in range(len(class_list)):
            writer.writerow([class_list.labels[c], class_list.names[c], int(n_c[c]),
                             f"{expected[c]:.8g}", f"{realized[c]:.8g}"])
    if plot is not None:
        from wilddet.reports.plots_sampling import plot_class_shares

        plot_class_shares(plot, n_c / index.num_images, expected, realized,
                          sampler_name=chosen.name, num_samples=num_samples)

    console = Console(stderr=True)
    present = np.flatnonzero(n_c > 0)
    tail = present[np.argsort(n_c[present], kind="stable")[: max(1, len(present) // 10)]]
    console.print(f"{chosen.name}: {index.num_images} images, {len(present)}/{len(class_list)} "
                  f"classes with images; rarest 10% of classes: data frequency "
                  f"{(n_c[tail] / index.num_images).mean():.4g}, expected share "
                  f"{expected[tail].mean():.4g}, realized {realized[tail].mean():.4g}")
    console.print(f"wrote {out}" + (f" and {plot}" if plot is not None else ""))


__all__ = ["sampling_stats"]
