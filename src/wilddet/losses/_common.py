"""Helpers shared by the classifier losses: argument checks, dtypes, sparse index tricks.

Shapes: ``R`` RoIs, ``K`` foreground classes, ``C = K + 1`` logit columns (0 = background),
``P`` positive (RoI, class) pairs of a multi-hot target.
"""

from __future__ import annotations

import numpy as np
import torch


def compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """float64 logits are computed in float64, everything else (float32, half) in float32."""
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def check_logits_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    """Raise ValueError unless logits and targets are both [R, C] with C >= 1."""
    if logits.dim() != 2 or tuple(targets.shape) != tuple(logits.shape) or logits.shape[1] < 1:
        raise ValueError(f"logits and targets must both be [R, C], got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")


def side_input(value, name: str, shape: tuple[int, ...], dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """A per-class side input (frequencies, weights, counts) as a detached tensor of ``dtype``
    on ``device``; raises ValueError unless it has ``shape`` and finite values."""
    tensor = torch.as_tensor(value)
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(tensor.shape)}")
    tensor = tensor.detach().to(device=device, dtype=dtype)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be finite")
    return tensor


def positive_mask(targets: torch.Tensor) -> torch.Tensor:
    """[R, C] bool: nonzero entries of a bool or 0/1 target."""
    targets = targets.detach()
    return targets if targets.dtype == torch.bool else targets != 0


def sel(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index] along dim 0 (index_select: several times faster than advanced indexing)."""
    return values.index_select(0, index)


def where(mask: torch.Tensor) -> torch.Tensor:
    """Indices [n] of the True entries of a 1-D mask."""
    return mask.nonzero().squeeze(1)


def positive_pairs(positive: torch.Tensor) -> torch.Tensor:
    """Flat indices [P] (row-major) of the nonzero entries of [R, C] ``positive``."""
    if positive.device.type == "cpu":
        # numpy's flatnonzero is ~7x faster than torch.nonzero on CPU bool tensors
        return torch.from_numpy(np.flatnonzero(positive.contiguous().numpy()))
    return positive.reshape(-1).nonzero().squeeze(1)

