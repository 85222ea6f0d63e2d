"""``wilddet experiment csm-grid|samplers|losses|samplers-overfit CONFIG --out DIR``: the
paper's ablation studies (see ``wilddet.studies``)."""

from __future__ import annotations

from pathlib import Path

import typer

from wilddet.errors import InputError
from wilddet.studies.arms import LOSS_ARMS, SAMPLER_ARMS

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
    from wilddet.studies.csm_grid import run_csm_grid

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
    from wilddet.studies.samplers import run_sampler_study

    lam_values = _parse_lams(lams)
    console = _console()
    result = run_sampler_study(_load(config, overrides), out, lam_values, say=console.print,
                               figure_images=figure_images)
    for name, g in result.groups.items():
        console.print(f"{name:>18}: mAP {g['all']:.4f}  head {g['head']:.4f}  "
                      f"middle {g['middle']:.4f}  tail {g['tail']:.4f}")
    console.print(f"summary: {result.summary}\nfigure: {result.figure}")


def _names(arms) -> str:
    return ", ".join(arm.name for arm in arms)


def _run_study(study: str, config: Path, out: Path, arms: str, seeds: str,
               reference: str | None, replicates: int, overrides: list[str]) -> None:
    from wilddet.studies.ablation import run_ablation, study_plan
    from wilddet.studies.arms import parse_seeds

    plan = study_plan(study, arms, parse_seeds(seeds), reference=reference,
                      replicates=replicates)
    console = _console()
    report = run_ablation(_load(config, overrides), out, plan, say=console.print)
    console.print(f"summary: {report.summary}")


@app.command("losses")
def losses(
    config: Path = typer.Argument(..., help="Training config (TOML or YAML)."),
    out: Path = typer.Option(..., "--out", help="Output folder (resumed if it exists)."),
    arms: str = typer.Option("", "--arms", help="Comma-separated arms (default all): "
                             f"{_names(LOSS_ARMS)}."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Training seeds, comma-separated."),
    reference: str = typer.Option(None, "--reference", help="Arm the paired differences are "
                                  "taken to (default softmax_expand)."),
    replicates: int = typer.Option(1000, "--replicates", help="Bootstrap replicates."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field: key=value."),
) -> None:
    """Loss arms one switch apart (softmax, its expanded evaluation, sigmoid, CSM with r = 0 and
    with the analyzer's r, EQL, EQLv2, Seesaw, federated): group mAP with bootstrap intervals,
    paired differences, post-hoc choices on a tuning half, summary.md."""
    _run_study("losses", config, out, arms, seeds, reference, replicates, overrides)


@app.command("samplers-overfit")
def samplers_overfit(
    config: Path = typer.Argument(..., help="Training config (TOML or YAML)."),
    out: Path = typer.Option(..., "--out", help="Output folder (resumed if it exists)."),
    arms: str = typer.Option("", "--arms", help="Comma-separated arms (default all): "
                             f"{_names(SAMPLER_ARMS)}."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Training seeds, comma-separated."),
    reference: str = typer.Option(None, "--reference", help="Arm the paired differences are "
                                  "taken to (default class_aware)."),
    replicates: int = typer.Option(1000, "--replicates", help="Bootstrap replicates."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field: key=value."),
) -> None:
    """Sampler arms in an over-fitting set-up: tail AP on training images beside val, confident
    detections and their precision, group mAP with bootstrap intervals, summary.md."""
    _run_study("samplers-overfit", config, out, arms, seeds, reference, replicates, overrides)
