"""Plot of a sampler's class shares against class frequency (``wilddet sampling-stats --plot``).

Shapes: ``C`` classes.
"""

from __future__ import annotations

import os

import numpy as np

from wilddet.reports.figures import new_figure, save_png


def plot_class_shares(path: str | os.PathLike, class_frequency: np.ndarray,
                      expected_share: np.ndarray, realized_share: np.ndarray, *,
                      sampler_name: str, num_samples: int) -> None:
    """Log-log scatter of expected and realized share of drawn images containing each class
    (y) against its frequency N_c / I in the data (x), with the identity line (non-balance).
    Classes with a zero value are left out (log axes). Written atomically as PNG."""
    freq = np.asarray(class_frequency, dtype=np.float64)
    fig, ax = new_figure(6.4, 4.8)
    shown = freq > 0
    if shown.any():
        lo, hi = freq[shown].min(), freq[shown].max()
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, ls="--", label="data frequency (no boost)")
    series = ((expected_share, {"marker": "o", "s": 22, "facecolors": "none", "edgecolors": "C0"},
               "expected"),
              (realized_share, {"marker": "x", "s": 14, "color": "C1"},
               f"realized ({num_samples} draws)"))
    for values, style, label in series:
        v = np.asarray(values, dtype=np.float64)
        keep = shown & (v > 0)
        ax.scatter(freq[keep], v[keep], label=label, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("class frequency N_c / images")
    ax.set_ylabel("share of drawn images containing the class")
    ax.set_title(f"{sampler_name}: tail boost")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    save_png(fig, path, dpi=100)
