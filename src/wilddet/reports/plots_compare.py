"""Bar plot of the largest per-class AP gains (``wilddet compare``).

Shapes: ``K`` classes plotted.
"""

from __future__ import annotations

import os

import numpy as np

from wilddet.reports.figures import new_figure, save_png


def plot_top_gains(path: str | os.PathLike, names: np.ndarray, gains: np.ndarray, *,
                   title: str) -> None:
    """Horizontal bars of ``gains`` [K] (AP points, already sorted, largest first) labelled by
    ``names`` [K]; positive green, negative red. NaN gains are skipped. PNG, written atomically."""
    gains = np.asarray(gains, dtype=np.float64)
    keep = ~np.isnan(gains)
    names = [str(n) for n in np.asarray(names)[keep]]
    gains = gains[keep]
    fig, ax = new_figure(7.0, 1.2 + 0.28 * max(len(gains), 1))
    y = np.arange(len(gains))
    ax.barh(y, gains, color=np.where(gains >= 0, "tab:green", "tab:red"))
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()  # largest gain on top
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.set_xlabel("AP gain")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    save_png(fig, path, dpi=100)
