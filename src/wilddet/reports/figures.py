"""The one matplotlib convention of the reports: build on ``matplotlib.figure.Figure`` (no pyplot
global state, no backend to select, nothing to close) and save a PNG atomically.

Shapes: ``r`` x ``c`` axes.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from wilddet.fileio import atomic_path

DPI = 120  # PNG resolution of every report figure unless a caller needs another


def new_figure(width_in: float, height_in: float, rows: int = 1, cols: int = 1,
               squeeze: bool = True):
    """(figure, axes) of ``width_in`` x ``height_in`` inches with constrained layout; axes as
    ``Figure.subplots`` returns them (one ``Axes`` for 1 x 1 with ``squeeze``, else an [r, c]
    array)."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=squeeze)


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Write ``fig`` to ``path`` as PNG through a temporary file (nothing half-written)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)  # explicit format: the temp name has no .png
    return path
