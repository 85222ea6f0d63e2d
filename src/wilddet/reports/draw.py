"""Pictures of detections next to ground truth (the demo's picture, the paper's Figures 1–2).

Shapes: ``M`` boxes of one panel, ``H``/``W`` image height/width in px.

A figure is a grid: one row per image, one column per ``Panel`` (e.g. ground truth | detections,
or ground truth | softmax | CSM). Boxes are xyxy pixels of the image; a panel with scores draws
only boxes with score >= ``score_thresh`` and writes "name 0.87" on each; the colour is a
function of the class name, so one class looks the same in every panel.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Panel:
    """One drawing of an image: ``boxes_xyxy_px`` [M, 4], ``names`` [M] class display names,
    ``scores`` [M] or None (ground truth)."""

    title: str
    boxes_xyxy_px: np.ndarray
    names: Sequence[str]
    scores: np.ndarray | None = None


def table_panel(title: str, table, class_names: Sequence[str], image_id: str, height: int,
                width: int, mark_group_of: bool = False) -> Panel:
    """The boxes of image ``image_id`` in a ground-truth or detection ``BoxTable`` (normalized)
    as a pixel ``Panel`` of an image of ``height`` × ``width`` px (scores kept when present)."""
    from wilddet.boxes import norm_to_xyxy_px

    hit = np.flatnonzero(table.image_ids == image_id)
    rows = (np.flatnonzero(table.image_codes == hit[0]) if len(hit) and len(table)
            else np.zeros(0, np.int64))
    names = [str(class_names[c]) + (" (group)" if mark_group_of and g else "")
             for c, g in zip(table.label_codes[rows], table.is_group_of[rows])]
    return Panel(title, norm_to_xyxy_px(table.boxes_norm[rows], height, width), names,
                 None if table.scores is None else table.scores[rows])


def class_colour(name: str) -> tuple[float, float, float]:
    """A stable, saturated RGB colour per class name."""
    import colorsys

    h = int(hashlib.md5(name.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    return colorsys.hsv_to_rgb(h, 0.85, 0.95)


def _as_hwc(image) -> np.ndarray:
    """float/uint8 [3, H, W] tensor or [H, W, 3] array -> uint8 [H, W, 3]."""
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * 255.0 if arr.max() <= 1.0 else arr, 0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def draw_panel(ax, image, panel: Panel, score_thresh: float = 0.5, max_boxes: int = 50) -> None:
    """Draw ``image`` and ``panel``'s boxes (score >= ``score_thresh``, best ``max_boxes``) on a
    matplotlib axis."""
    from matplotlib.patches import Rectangle

    ax.imshow(_as_hwc(image))
    ax.set_title(panel.title, fontsize=8)
    ax.set_axis_off()
    boxes = np.asarray(panel.boxes_xyxy_px, dtype=np.float32).reshape(-1, 4)
    order = np.arange(len(boxes))
    if panel.scores is not None:
        scores = np.asarray(panel.scores, dtype=np.float32)
        order = order[scores >= score_thresh]
        order = order[np.argsort(-scores[order], kind="stable")][:max_boxes]
    for i in order:
        x1, y1, x2, y2 = boxes[i].tolist()
        colour = class_colour(str(panel.names[i]))
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                               linewidth=1.2))
        text = str(panel.names[i]) if panel.scores is None else \
            f"{panel.names[i]} {float(panel.scores[i]):.2f}"
        ax.text(x1, y1, text, fontsize=5, color="black", va="bottom",
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 0.5, "linewidth": 0})


def draw_grid(path: str | os.PathLike, rows: Sequence[tuple[object, Sequence[Panel]]], *,
              score_thresh: float = 0.5, panel_size_in: float = 2.6, dpi: int = 150) -> Path:
    """Save a PNG grid: row k = image ``rows[k][0]`` drawn once per panel of ``rows[k][1]``.
    Written atomically."""
    from wilddet.reports.figures import new_figure, save_png  # matplotlib: load on use

    n_rows = len(rows)
    n_cols = max(len(panels) for _, panels in rows)
    fig, axes = new_figure(panel_size_in * n_cols, panel_size_in * n_rows, n_rows, n_cols,
                           squeeze=False)
    for r, (image, panels) in enumerate(rows):
        for c in range(n_cols):
            if c < len(panels):
                draw_panel(axes[r][c], image, panels[c], score_thresh)
            else:
                axes[r][c].set_axis_off()
    return save_png(fig, path, dpi=dpi)


def draw_detections_vs_truth(path: str | os.PathLike, images: Sequence[object],
                             truth: Sequence[Panel], detections: Sequence[Panel], *,
                             score_thresh: float = 0.5) -> Path:
    """The demo's picture: per image, ground truth on the left, detections on the right."""
    return draw_grid(path, [(img, (t, d)) for img, t, d in zip(images, truth, detections)],
                     score_thresh=score_thresh)
