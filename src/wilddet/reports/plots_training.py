"""Training curves of a run folder (``wilddet train``'s ``metrics.jsonl``) as one PNG.

Shapes: ``R`` logged records.

``metrics.jsonl`` has one JSON object per line with ``iteration`` and numbers: losses
(``loss`` and its parts ``loss_*``), ``lr``, throughput, and ``val/mAP`` when evaluated.
Panels: losses (log scale when positive), learning rate, val mAP (when present).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from wilddet.reports.figures import new_figure, save_png


def read_metrics(path: str | os.PathLike) -> dict[str, tuple[list[int], list[float]]]:
    """{key: (iterations, values)} of every finite numeric field; unreadable lines skipped."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        it = record.get("iteration")
        if not isinstance(it, int):
            continue
        for key, value in record.items():
            if key != "iteration" and isinstance(value, (int, float)) and \
                    not isinstance(value, bool) and math.isfinite(value):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(it)
                ys.append(float(value))
    return series


def plot_training_curves(path: str | os.PathLike, series: dict, title: str) -> Path | None:
    """The PNG (module doc); None when there is nothing to plot."""
    losses = sorted(k for k in series if k == "loss" or k.startswith("loss"))
    panels = [p for p in (("losses", losses),
                          ("learning rate", [k for k in ("lr",) if k in series]),
                          ("val mAP", [k for k in series if k.endswith("mAP")])) if p[1]]
    if not panels:
        return None
    fig, axes = new_figure(4.2 * len(panels), 3.2, 1, len(panels), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, (name, keys) in zip(axes[0], panels):
        for k, key in enumerate(keys):
            xs, ys = series[key]
            ax.plot(xs, ys, linestyle=styles[k % len(styles)], marker="o" if len(xs) < 30 else None,
                    markersize=3, label=key)
        if name == "losses" and all(min(series[k][1]) > 0 for k in keys):
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(name, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_png(fig, path, dpi=100)


__all__ = ["plot_training_curves", "read_metrics"]
