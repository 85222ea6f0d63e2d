"""Pictures of ``wilddet diagnose``: error types per class, PR curves, and a gallery of the
highest-scored false positives of each type.

Shapes: ``K`` classes plotted, ``T`` = 7 error types, ``E_k`` PR points of class k.

Every picture is a PNG written atomically; error types keep one colour, hatch and letter
(``error_styles``) so the bars and boxes read in greyscale too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilddet.evaluation.diagnose import ERROR_TYPES
from wilddet.reports.error_styles import CODES, COLOURS, HATCHES
from wilddet.reports.figures import new_figure, save_png


def plot_error_breakdown(path: str | os.PathLike, names: Sequence[str], fp_counts: np.ndarray,
                         top: int = 20) -> Path:
    """Stacked horizontal bars of the error types [C, T] of the ``top`` classes with the most
    false positives (most on top)."""
    totals = fp_counts.sum(axis=1)
    order = np.argsort(-totals, kind="stable")[:top]
    order = order[totals[order] > 0]
    fig, ax = new_figure(8.0, 1.6 + 0.3 * max(len(order), 1))
    y = np.arange(len(order))
    left = np.zeros(len(order))
    for t, name in enumerate(ERROR_TYPES):
        width = fp_counts[order, t].astype(np.float64)
        ax.barh(y, width, left=left, color=COLOURS[name], hatch=HATCHES[name],
                edgecolor="black", linewidth=0.4, label=f"{CODES[name]} {name}")
        left += width
    ax.set_yticks(y, [str(names[c]) for c in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("false positives")
    ax.set_title(f"error types of the {len(order)} classes with the most false positives",
                 fontsize=10)
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    return save_png(fig, path, dpi=100)


def pick_pr_classes(num_gt: np.ndarray, count: int = 8) -> np.ndarray:
    """The ``count`` classes with the most ground truth (class order on ties)."""
    order = np.argsort(-np.asarray(num_gt, np.float64), kind="stable")
    return order[num_gt[order] > 0][:count]


def plot_pr_curves(path: str | os.PathLike, curves: Sequence[tuple[str, np.ndarray, np.ndarray]],
                   title: str = "precision-recall (before the monotone envelope)") -> Path:
    """One line per (name, recall [E], precision [E]), each with its own marker."""
    markers = "os^vD<>xP*"
    fig, ax = new_figure(6.0, 4.5)
    for k, (name, recall, precision) in enumerate(curves):
        every = max(1, len(recall) // 12)
        ax.plot(recall, precision, marker=markers[k % len(markers)], markevery=every,
                markersize=4, linewidth=1.2, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize=7, loc="lower left")
    return save_png(fig, path, dpi=100)


@dataclass(frozen=True)
class GalleryItem:
    """One false positive to draw: ``image`` uint8 [H, W, 3], its box and the annotated boxes
    of the image in normalized (xmin, ymin, xmax, ymax)."""

    image: np.ndarray
    error: str
    title: str
    box_norm: np.ndarray
    gt_boxes_norm: np.ndarray
    gt_names: Sequence[str]


def draw_error_gallery(path: str | os.PathLike, rows: Sequence[Sequence[GalleryItem]],
                       panel_in: float = 2.2) -> Path:
    """A grid: one row per error type (its highest-scored false positives), the false positive
    thick and dashed in its type's colour with its letter, the ground truth thin white."""
    from matplotlib.patches import Rectangle

    n_cols = max((len(r) for r in rows), default=1)
    n_rows = max(len(rows), 1)
    fig, axes = new_figure(panel_in * n_cols, panel_in * n_rows, n_rows, n_cols, squeeze=False)
    for r, items in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_axis_off()
            if c >= len(items):
                continue
            it = items[c]
            h, w = it.image.shape[:2]
            ax.imshow(it.image)
            for box, name in zip(it.gt_boxes_norm, it.gt_names):
                ax.add_patch(Rectangle((box[0] * w, box[1] * h), (box[2] - box[0]) * w,
                                       (box[3] - box[1]) * h, fill=False, edgecolor="white",
                                       linewidth=0.8))
            b = it.box_norm
            ax.add_patch(Rectangle((b[0] * w, b[1] * h), (b[2] - b[0]) * w, (b[3] - b[1]) * h,
                                   fill=False, edgecolor=COLOURS[it.error], linewidth=2.0,
                                   linestyle="--"))
            ax.text(b[0] * w, b[1] * h, CODES[it.error], fontsize=7, color="black",
                    va="bottom", bbox={"facecolor": COLOURS[it.error], "pad": 0.6,
                                       "linewidth": 0})
            ax.set_title(it.title, fontsize=6)
    return save_png(fig, path, dpi=100)


__all__ = ["GalleryItem", "draw_error_gallery", "pick_pr_classes", "plot_error_breakdown",
           "plot_pr_curves"]
