"""Figures of ``wilddet analyze``: boxes per class (imbalance.png), strongest confusion pairs
(confusion.png).

Shapes: ``C`` classes, ``P`` confusion pairs. Figures follow ``reports.figures`` (``Figure``
objects, PNG written atomically).
"""

from __future__ import annotations

import os

import numpy as np

from wilddet.reports.figures import new_figure, save_png
from wilddet.stats.confusion import ConfusionPairs


def plot_imbalance(path: str | os.PathLike, boxes_per_class: np.ndarray, names: np.ndarray,
                   images_per_class: np.ndarray | None = None, label_top: int = 10) -> None:
    """Boxes per class [C], sorted largest first, log y axis; the ``label_top`` head classes and
    the tail class (fewest boxes, at least one) are named. ``images_per_class`` [C] is drawn as
    a second line when given."""
    boxes = np.asarray(boxes_per_class, dtype=np.int64)
    order = np.lexsort((np.arange(len(boxes)), -boxes))
    rank = np.arange(1, len(boxes) + 1)
    fig, ax = new_figure(10, 4.5)
    shown = np.maximum(boxes[order], 0)
    ax.bar(rank, shown, width=1.0, color="#4477aa", label="boxes")
    if images_per_class is not None:
        images = np.asarray(images_per_class, dtype=np.float64)[order]
        ax.plot(rank, np.where(images > 0, images, np.nan), color="#ee6677", lw=1.2,
                label="images")  # nan: no point at 0 on the log axis
    if shown.max(initial=0) > 0:
        ax.set_yscale("log")
        ax.set_ylim(0.8, shown.max() * 60)  # head room for the class names
    last = int((shown > 0).sum()) - 1  # the tail class: fewest boxes, at least one
    for r in sorted(set(range(min(label_top, len(boxes)))) | ({last} if last >= 0 else set())):
        if shown[r] > 0:
            ax.annotate(str(names[order[r]]), (rank[r], shown[r]), rotation=60, fontsize=7,
                        xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("class rank (by boxes)")
    ax.set_ylabel("count (log scale)")
    nonzero = shown[shown > 0]
    ratio = f"{nonzero.max() / nonzero.min():.0f}" if len(nonzero) else "n/a"
    ax.set_title(f"Boxes per class: {len(boxes)} classes, {int(boxes.sum())} boxes, "
                 f"head/tail {ratio}")
    ax.set_xlim(0.5, max(len(boxes), 1) + 0.5)
    ax.legend(loc="upper right")
    save_png(fig, path)


def plot_confusion(path: str | os.PathLike, pairs: ConfusionPairs, names: np.ndarray,
                   top: int = 30) -> None:
    """Horizontal bars of the ``top`` strongest pairs (ratio), labelled "source -> confusion
    (confusion_boxes / source_boxes)"."""
    n = min(top, len(pairs))
    fig, ax = new_figure(9, 1.5 + 0.28 * max(n, 1))
    if n == 0:
        ax.text(0.5, 0.5, "no confusion pair above the ratio cut", ha="center", va="center")
        ax.set_axis_off()
    else:
        ratio = pairs.ratio[:n][::-1]
        labels = [f"{names[s]} -> {names[c]} ({cb}/{sb})" for s, c, sb, cb in
                  zip(pairs.source[:n], pairs.confusion[:n], pairs.source_boxes[:n],
                      pairs.confusion_boxes[:n])][::-1]
        y = np.arange(n)
        ax.barh(y, ratio, color="#228833")
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlabel("confusion ratio = #confusion boxes / #source boxes")
        ax.set_xlim(0, max(1.0, float(ratio.max()) * 1.05))
        ax.set_title(f"Strongest confusion pairs (top {n} of {len(pairs)})")
    save_png(fig, path)
