"""``wilddet sampling-stats``: expected vs realized class shares of one training sampler.

Shapes: ``I`` images, ``C`` classes.

STATS.csv (``wilddet.reports.sampling_files``): per class N_c, the closed-form probability that a
drawn image contains the class, and the share observed in ``--num-samples`` draws (positions
0..n-1 of the sampler's stream, ``sampling.samplers.class_shares``).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, get_args

import numpy as np
import typer
from rich.console import Console

from wilddet.config import SamplerKind
from wilddet.data.hierarchy import read_hierarchy
from wilddet.data.oid_csv import read_boxes, read_classes
from wilddet.errors import InputError
from wilddet.reports.sampling_files import write_sampling_stats

# typer's choices: the config's sampler kinds that are one sampler (not the hybrid schedule)
SamplerChoice = Enum("SamplerChoice", {k.replace("-", "_"): k for k in get_args(SamplerKind)
                                       if k != "hybrid"}, type=str)


_Opt = typer.Option


def sampling_stats(
    boxes: Annotated[Path, _Opt("--boxes", help="Ground-truth boxes CSV (13- or 7-column).")],
    classes: Annotated[Path, _Opt("--classes", help="Class descriptions CSV.")],
    sampler: Annotated[SamplerChoice, _Opt("--sampler", help="Which sampler to measure.")],
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
    from wilddet.data.class_index import ClassImageIndex

    index = ClassImageIndex.from_codes(table.image_codes, table.label_codes, table.num_images,
                                       len(class_list), hierarchy=tree)
    from wilddet.sampling.samplers import build_sampler, class_shares

    try:
        chosen = build_sampler(SamplerChoice(sampler).value, index, lam=lam,
                               repeat_threshold=repeat_threshold, seed=seed)
    except ValueError as e:  # e.g. a file without boxes: nothing to draw
        raise InputError(boxes, str(e)) from None
    expected, realized = class_shares(chosen, num_samples)  # [C] each
    n_c = index.images_per_class
    write_sampling_stats(out, class_list, n_c, expected, realized)
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
