"""The ``wilddet`` command line (typer). Each sub-command lives in ``wilddet.commands.<name>``;
this module only wires them and turns ``InputError`` into one clear line and exit code 2."""

from __future__ import annotations

import logging
import sys

import typer

from wilddet.errors import InputError

app = typer.Typer(
    help="wilddet: long-tailed, multi-label object detection on Open Images-style data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """wilddet: long-tailed, multi-label object detection on Open Images-style data."""


def _register() -> None:
    # Explicit composition: one import and one line per command (no registry).
    from wilddet.commands import synth
    app.command("synth")(synth.synth)
    # -- more commands are registered below this line --
    from wilddet.commands import experiment
    app.add_typer(experiment.app, name="experiment")
    from wilddet.commands import train
    app.command("train")(train.train)
    from wilddet.commands import plan
    app.command("plan")(plan.plan)
    from wilddet.commands import predict
    app.command("predict")(predict.predict)
    from wilddet.commands import demo
    app.command("demo")(demo.demo)
    from wilddet.commands import evaluate
    app.command("evaluate")(evaluate.evaluate)
    from wilddet.commands import compare
    app.command("compare")(compare.compare)
    from wilddet.commands import analyze
    app.command("analyze")(analyze.analyze)
    from wilddet.commands import sampling_stats
    app.command("sampling-stats")(sampling_stats.sampling_stats)
    from wilddet.commands import diagnose
    app.command("diagnose")(diagnose.diagnose)
    from wilddet.commands import report
    app.command("report")(report.report)
    from wilddet.commands import convert
    app.command("convert")(convert.convert)


_register()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
