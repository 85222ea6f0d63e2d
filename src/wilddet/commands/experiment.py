"""``wilddet experiment csm-grid|samplers CONFIG --out DIR``: the paper's ablation studies
(see ``wilddet.engine.experiments``)."""

from __future__ import annotations

from pathlib import Path

import typer

from wilddet.errors import InputError

app = typer.Typer(help="Reproduce the paper's ablation studies (resumable).", no_args_is_help=True)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _load(config: Path, overrides: list[str]):
    from wilddet.config import load_config

    return load_config(config, overrides or [])


@app.command("csm-grid")
def csm_grid(
    config: Path = typer.Argument(..., help="Training config (TOML or YAML)."),
    out: Path = typer.Option(..., "--out", help="Output folder (resumed if it exists)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field: key=value."),
    figure_images: int = typer.Option(3, help="Val images in figure1.png."),
) -> None:
    """Train softmax and concurrent-softmax models and test each both ways: the four
    balance_*.csv logs, the Table 1 gain table on co-occurring classes, figure1.png and
    summary.md."""
    from wilddet.engine.experiments import run_csm_grid

    console = _console()
    result = run_csm_grid(_load(config, overrides), out, say=console.print,
                          figure_images=figure_images)
    for stem, table in result.logs.items():
        console.print(f"{stem}.csv  mAP {table.mean_ap:.4f}")
    console.print(f"summary: {result.summary}\nfigure: {result.figure}")


def _parse_lams(text: str) -> list[float]:
    try:
        lams = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError("--lams", f"expected comma-separated numbers, got {text!r}") from None
    if not lams or any(lam < 0 or lam > 1 for lam in lams):
        raise InputError("--lams", f"each λ must be in [0, 1], got {text!r}")
    return lams


@app.command("samplers")
def samplers(
    config: Path = typer.Argument(..., help="Training config (TOML or YAML)."),
    out: Path = typer.Option(..., "--out", help="Output folder (resumed if it exists)."),
    lams: str = typer.Option("0,0.5,1", "--lams", help="Soft-balance exponents λ."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field: key=value."),
    figure_images: int = typer.Option(3, help="Val images in figure2.png."),
) -> None:
    """Train non-balance, class-aware, soft-balance (each λ) and hybrid: per-class logs, mAP by
    head / middle / tail classes, figure2.png and summary.md."""
    from wilddet.engine.experiments import run_sampler_study

    lam_values = _parse_lams(lams)
    console = _console()
    result = run_sampler_study(_load(config, overrides), out, lam_values, say=console.print,
                               figure_images=figure_images)
    for name, g in result.groups.items():
        console.print(f"{name:>18}: mAP {g['all']:.4f}  head {g['head']:.4f}  "
                      f"middle {g['middle']:.4f}  tail {g['tail']:.4f}")
    console.print(f"summary: {result.summary}\nfigure: {result.figure}")
