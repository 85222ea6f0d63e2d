"""``wilddet plan CONFIG [--set k=v ...] [--world-size N] [--json] [--num-train-images N]``:
what a training run will do (batch, LR, length, sampler phases, draws per image, LR steps,
evaluation and checkpoint cadence) before it costs GPU hours."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from wilddet.config import load_config


def plan(
    config: Path = typer.Argument(..., help="Run config (.toml, .yaml or .yml)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config field: "
                                   "section.field=value (repeatable)."),
    world_size: int = typer.Option(0, "--world-size", min=0, help="Number of ranks (GPUs) "
                                   "to plan for; 0 = $WORLD_SIZE or 1."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    num_train_images: int = typer.Option(0, "--num-train-images", min=0, help="Plan for a "
                                         "training set of this many images without reading "
                                         "the boxes (no per-class draws); 0 = read "
                                         "data.train_boxes (data.train_annotations for "
                                         "coco/lvis)."),
) -> None:
    """Print the run plan of CONFIG on --world-size ranks (exit 2 when the config contradicts
    itself, e.g. an empty sampler phase)."""
    from wilddet.engine.plan import count_val_images, format_plan, load_training_index, plan_run

    cfg = load_config(config, set_)
    ranks = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    if num_train_images:
        inputs = {"num_train_images": num_train_images}
    else:
        index, names = load_training_index(cfg, hint="or plan without the data with "
                                           "--num-train-images N")
        inputs = {"index": index, "class_names": names}
    result = plan_run(cfg, source=config, world_size=ranks,
                      num_val_images=count_val_images(cfg), **inputs)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(format_plan(result, f"{config} on {ranks} rank(s)"), nl=False)


__all__ = ["plan"]
