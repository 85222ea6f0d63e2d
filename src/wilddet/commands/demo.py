"""``wilddet demo --out runs/demo``: the whole pipeline on a fresh machine in minutes on a CPU
(the steps: ``wilddet.studies.demo``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder."),
    set_: list[str] = typer.Option([], "--set", help="Override a field of the demo config, "
                                   "e.g. train.max_iters=200 (repeatable)."),
) -> None:
    """Synthesise data, analyse it, train a CSM detector, predict, evaluate, draw: end to end."""
    from wilddet.studies.demo import run_demo

    console = Console(stderr=True)
    result = run_demo(out, overrides=set_, say=console.print)
    table = Table(title="val mAP (Open Images challenge metric)")
    table.add_column("model")
    table.add_column("mAP", justify="right")
    table.add_row("untrained (same network at initialisation)", f"{result.untrained_map:.4f}")
    table.add_row(f"trained ({result.iterations} iterations)", f"{result.trained_map:.4f}")
    console.print(table)
    console.print(f"total {sum(result.seconds.values()):.0f} s; per-class AP: "
                  f"{result.per_class_csv}; picture: {result.picture}; report: {result.summary}")
    if not result.trained_map > result.untrained_map:
        console.print("[bold red]the trained model did not beat the untrained one")
        raise typer.Exit(1)


__all__ = ["demo"]
