"""Equalization loss (EQL; Tan et al., "Equalization Loss for Long-Tailed Object Recognition",
CVPR 2020, arXiv 2003.05176), long-tail spec §2.

Shapes: ``R`` RoIs, ``K`` foreground classes, ``C = K + 1`` logit columns (0 = background,
unused: sigmoid family, see ``sigmoid_bce``).

    f_j    fraction of training images that contain class j
    T(f_j) = 1 if f_j < λ else 0                     (a rare class)
    E_r    = 1 if RoI r is foreground (any y_rj = 1, j >= 1) else 0
    w_rj   = 1 - E_r T(f_j) (1 - y_rj)
    L      = (1/R) Σ_r Σ_{j=1..K} w_rj BCE(z_rj, y_rj)

A foreground RoI does not push the rare classes it is not labelled with down (their negative
gradient would swamp the few positive ones); background RoIs still do. Test scores: σ(z).
"""

from __future__ import annotations

import torch

from wilddet.losses._common import check_logits_targets, compute_dtype, side_input
from wilddet.losses.sigmoid_bce import weighted_bce

__all__ = ["eql_loss"]


def eql_loss(logits: torch.Tensor, targets: torch.Tensor, image_freq, lam: float) -> torch.Tensor:
    """EQL (Tan et al., CVPR 2020; long-tail spec §2): sigmoid BCE whose negative terms for rare
    classes (f_j < lam) are dropped on foreground RoIs.

    logits [R, C] float (C = K + 1, column 0 background, unused); targets [R, C] multi-hot
    (bool or 0/1); image_freq [C] f_j, the fraction of training images containing class j (after
    hierarchy expansion when the run expands targets; column 0 ignored), any float dtype; lam
    the threshold λ (paper: 1.76e-3 on LVIS). lam = 0 gives plain sigmoid BCE. Returns a scalar
    in the logits' dtype (float32 for half logits).
    """
    check_logits_targets(logits, targets)
    dtype = compute_dtype(logits)
    freq = side_input(image_freq, "image_freq", (logits.shape[1],), dtype, logits.device)
    frequent = (freq[1:] >= float(lam)).to(dtype)  # [K] 1 - T(f_j)
    return weighted_bce(logits, targets, fg_neg_w=frequent)
