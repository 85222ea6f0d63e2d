"""Multi-hot classification targets of sampled RoIs (method spec §2.3, an interpretation).

Shapes: ``R`` RoIs, ``M`` ground-truth boxes of one image, ``K`` foreground classes,
``C = K + 1`` model labels with 0 = background (model label = class code + 1).

A proposal matched to GT box g (torchvision's Matcher, IoU >= 0.5) is labelled with the label
set of g's *object*: the labels of every GT box of the image whose IoU with g is > 0.9 (g itself
included: its explicit and implicit duplicates), plus all hierarchy ancestors of those labels
when an ancestor matrix is given. A background proposal gets e_0.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from wilddet.data.hierarchy import Hierarchy


def ancestor_matrix(hierarchy: Hierarchy, num_classes: int) -> torch.Tensor:
    """[C, C] bool over model labels: ``m[c, a]`` is True when a is an ancestor of c.

    hierarchy: class codes 0..K-1 (model labels 1..K); num_classes: K. Row/column 0 (background)
    stay False.
    """
    if hierarchy.num_classes != num_classes:
        raise ValueError(f"hierarchy has {hierarchy.num_classes} classes, the model {num_classes}")
    out = np.zeros((num_classes + 1, num_classes + 1), dtype=bool)
    out[1:, 1:] = hierarchy.ancestor_matrix()
    return torch.from_numpy(out)


def gt_label_sets(boxes_xyxy: torch.Tensor, labels: torch.Tensor, num_labels: int,
                  iou_thresh: float = 0.9, ancestors: torch.Tensor | None = None) -> torch.Tensor:
    """Label set of each GT box's object. [M, C] bool.

    boxes_xyxy [M, 4] float (any consistent unit); labels [M] int64 model labels in 1..K;
    num_labels: C = K + 1. Row g has the labels of every box h with IoU(g, h) > iou_thresh
    (g included, even for a degenerate box), then (if ``ancestors`` [C, C] bool is given) every
    ancestor of those labels.
    """
    num_boxes = boxes_xyxy.shape[0]
    sets = torch.zeros(num_boxes, num_labels, dtype=torch.bool, device=labels.device)
    if num_boxes == 0:
        return sets
    same_object = box_iou(boxes_xyxy, boxes_xyxy) > iou_thresh  # [M, M]
    same_object |= torch.eye(num_boxes, dtype=torch.bool, device=same_object.device)
    g, h = same_object.nonzero(as_tuple=True)
    sets[g, labels[h]] = True
    if ancestors is not None:
        sets |= (sets.to(torch.float32) @ ancestors.to(sets.device, torch.float32)) > 0
    return sets


def roi_multi_hot(labels: torch.Tensor, matched_idxs: torch.Tensor,
                  gt_sets: torch.Tensor) -> torch.Tensor:
    """Multi-hot targets of sampled RoIs. [R, C] bool.

    labels [R] int64: the matched box's label, 0 for background (torchvision's RoIHeads output
    after sampling; no -1 left); matched_idxs [R] int64 index of the matched GT box (ignored for
    background); gt_sets [M, C] from ``gt_label_sets``.
    """
    num_rois = labels.shape[0]
    out = torch.zeros(num_rois, gt_sets.shape[1], dtype=torch.bool, device=labels.device)
    fg = (labels > 0).nonzero().squeeze(1)
    out[fg] = gt_sets[matched_idxs[fg]]
    out[labels == 0, 0] = True
    return out
