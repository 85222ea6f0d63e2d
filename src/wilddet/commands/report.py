"""``wilddet report RUN_OR_RESULT_DIR ... --out REPORT_DIR``: one static HTML report that opens
from disk (``wilddet.reports.html.build``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

_Opt = typer.Option


def report(
    sources: Annotated[list[Path], typer.Argument(help="Run folders (wilddet train), analysis "
                                                  "folders (wilddet analyze), diagnose folders, "
                                                  "per-class AP CSVs, or folders holding them.")],
    out: Annotated[Path, _Opt("--out", help="Report folder (index.html, assets/, data/, img/).")],
    images: Annotated[Path | None, _Opt("--images", help="Folder of <ImageID>.jpg for the "
                                        "gallery (default: the diagnosis' --images).")] = None,
    copy_images: Annotated[bool, _Opt("--copy-images", help="Copy the gallery's images into "
                                      "the report instead of linking them by relative path.")
                           ] = False,
    title: Annotated[str, _Opt("--title", help="Page title.")] = "wilddet report",
    max_detections: Annotated[int, _Opt("--max-detections", min=1, help="Highest-scored "
                                        "detections kept per gallery image.")] = 25,
) -> None:
    """Static HTML report: config, training curves, label analysis, per-class AP, errors, PR
    curves and a filterable gallery; no server, no network."""
    from wilddet.reports.html.build import build_report

    console = Console(stderr=True)
    with console.status("writing the report", spinner="dots"):
        index = build_report(sources, out, images=images, copy_images=copy_images, title=title,
                             max_dets_per_image=max_detections)
    console.print(f"wrote {index} (open it in a browser: file://{index.resolve()})")


__all__ = ["report"]
