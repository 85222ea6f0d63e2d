"""``wilddet train CONFIG [--set key=value ...] [--out RUN_DIR] [--resume]`` (also under torchrun:
``torchrun --nproc_per_node N -m wilddet train CONFIG ...``)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import typer
from rich.console import Console

from wilddet.config import load_config

log = logging.getLogger(__name__)


def train(
    config: Path = typer.Argument(..., help="Run config (.toml, .yaml or .yml)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config field: "
                                   "section.field=value (repeatable), e.g. train.max_iters=2000."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (checkpoints, metrics, "
                                    "config.toml, tensorboard/); default runs/<config name>."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest valid "
                                "checkpoint in the run folder."),
) -> None:
    """Train a detector (DDP under torchrun: gloo on CPU, NCCL on GPUs)."""
    from wilddet.engine.train import train as run_training

    cfg = load_config(config, set_)
    run_dir = out if out is not None else Path("runs") / config.stem
    is_main = int(os.environ.get("RANK", "0")) == 0  # torchrun's rank; the group is made later
    if not is_main:  # only rank 0 talks
        logging.getLogger().setLevel(logging.ERROR)
    result = run_training(cfg, run_dir, resume=resume, config_source=config)
    if is_main:
        console = Console(stderr=True)
        val = "" if result.val_map is None or math.isnan(result.val_map) else \
            f", val mAP {result.val_map:.4f}"
        console.print(f"trained {result.iteration} iterations in {result.seconds:.0f} s{val}; "
                      f"checkpoint {result.checkpoint}")


__all__ = ["train"]
