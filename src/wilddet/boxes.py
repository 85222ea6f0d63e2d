"""Box formats. The ONLY place that converts Open Images normalized boxes to pixel boxes and back.

Formats:
- ``boxes_norm``: float32 [N, 4] as ``(xmin, ymin, xmax, ymax)`` in [0, 1] (the files store the
  columns in the order XMin, XMax, YMin, YMax; readers reorder on load).
- ``boxes_xyxy_px``: float32 [N, 4] as ``(x1, y1, x2, y2)`` in pixels of an image of size
  (height, width); continuous coordinates, no +1.
"""

from __future__ import annotations

import numpy as np
import torch


def norm_to_xyxy_px(boxes_norm, height: int, width: int):
    """[N, 4] normalized (xmin, ymin, xmax, ymax) -> [N, 4] pixel xyxy (numpy or torch in, same out)."""
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
