"""Box formats. The ONLY place that converts Open Images normalized boxes to pixel boxes and back.

Formats:
- ``boxes_norm``: float32 [N, 4] as ``(xmin, ymin, xmax, ymax)`` in [0, 1] (the files store the
  columns in the order XMin, XMax, YMin, YMax; readers reorder on load).
- ``boxes_xywh_px``: float64 [N, 4] COCO ``[x, y, w, h]`` in pixels (json files).
- ``boxes_xyxy_px``: float32 [N, 4] as ``(x1, y1, x2, y2)`` in pixels of an image of size
  (height, width); continuous coordinates, no +1.
"""

from __future__ import annotations

import numpy as np
import torch


def norm_to_xyxy_px(boxes_norm, height: int, width: int):
    """[N, 4] normalized (xmin, ymin, xmax, ymax) -> [N, 4] pixel xyxy (numpy or torch in, same
    out)."""
    scale = [width, height, width, height]
    if isinstance(boxes_norm, torch.Tensor):
        return boxes_norm.to(torch.float32) * torch.tensor(scale, dtype=torch.float32,
                                                           device=boxes_norm.device)
    return np.asarray(boxes_norm, dtype=np.float32) * np.asarray(scale, dtype=np.float32)


def xyxy_px_to_norm(boxes_xyxy_px, height: int, width: int, clip: bool = True):
    """[N, 4] pixel xyxy -> [N, 4] normalized (xmin, ymin, xmax, ymax), clipped to [0, 1]."""
    scale = [width, height, width, height]
    if isinstance(boxes_xyxy_px, torch.Tensor):
        out = boxes_xyxy_px.to(torch.float32) / torch.tensor(scale, dtype=torch.float32,
                                                             device=boxes_xyxy_px.device)
        return out.clamp(0.0, 1.0) if clip else out
    out = np.asarray(boxes_xyxy_px, dtype=np.float32) / np.asarray(scale, dtype=np.float32)
    return np.clip(out, 0.0, 1.0) if clip else out


def norm_to_xywh_px(boxes_norm, width, height) -> np.ndarray:
    """[N, 4] normalized (xmin, ymin, xmax, ymax) -> [N, 4] float64 COCO ``[x, y, w, h]`` px.

    ``width``/``height``: scalars or [N] per-row image sizes in px. Float64 and no rounding, so
    ``xywh_px_to_norm`` returns every coordinate to within 1e-12:
    ``x = xmin·W, y = ymin·H, w = (xmax − xmin)·W, h = (ymax − ymin)·H``.
    """
    b = np.asarray(boxes_norm, dtype=np.float64).reshape(-1, 4)
    w_img = np.asarray(width, dtype=np.float64)
    h_img = np.asarray(height, dtype=np.float64)
    out = np.empty_like(b)
    out[:, 0] = b[:, 0] * w_img
    out[:, 1] = b[:, 1] * h_img
    out[:, 2] = (b[:, 2] - b[:, 0]) * w_img
    out[:, 3] = (b[:, 3] - b[:, 1]) * h_img
    return out


def xywh_px_to_norm(boxes_xywh_px, width, height, clip: bool = False) -> np.ndarray:
    """[N, 4] COCO ``[x, y, w, h]`` px -> [N, 4] float64 normalized (xmin, ymin, xmax, ymax):
    ``xmin = x/W, ymin = y/H, xmax = (x + w)/W, ymax = (y + h)/H`` (``clip``: into [0, 1])."""
    b = np.asarray(boxes_xywh_px, dtype=np.float64).reshape(-1, 4)
    w_img = np.asarray(width, dtype=np.float64)
    h_img = np.asarray(height, dtype=np.float64)
    out = np.empty_like(b)
    out[:, 0] = b[:, 0] / w_img
    out[:, 1] = b[:, 1] / h_img
    out[:, 2] = (b[:, 0] + b[:, 2]) / w_img
    out[:, 3] = (b[:, 1] + b[:, 3]) / h_img
    return np.clip(out, 0.0, 1.0) if clip else out
