"""Federated loss (Zhou, Koltun, Krähenbühl, "Probabilistic two-stage detection", 2021; as
detectron2's ``use_fed_loss``), long-tail spec §5.

Shapes: ``R`` RoIs, ``K`` foreground classes, ``C = K + 1`` logit columns (0 = background,
unused: sigmoid family, see ``sigmoid_bce``), ``F`` the classes of one iteration's subset.

Per iteration a class subset F is drawn:

    1. every class with a positive label in the batch (all images of the rank);
    2. until |F| = num_classes (default 50), negatives drawn without replacement with
       P(j) ∝ w_j = (image count of class j)^0.5 among the other foreground classes with w_j > 0
       (F is just the positives when there are already that many; the positives plus every
       class with w_j > 0 when fewer remain).

    L = (1/R) Σ_r Σ_{j ∈ F} BCE(z_rj, y_rj)

Classes outside F get no gradient this iteration, so a class that is simply not annotated in
the batch's images is not pushed down everywhere. The draw uses a generator seeded from
(run seed, iteration, rank) (``federated_generator``), so a resumed run draws the same subsets.
Test scores: σ(z).
"""

from __future__ import annotations

import numpy as np
import torch

from wilddet.losses._common import check_logits_targets, compute_dtype
from wilddet.losses.sigmoid_bce import weighted_bce

__all__ = ["federated_classes", "federated_freq_weight", "federated_generator", "federated_loss"]


def federated_generator(seed: int, iteration: int, rank: int) -> torch.Generator:
    """A CPU ``torch.Generator`` that is a pure function of (seed, iteration, rank).

    Formula: ``manual_seed(int(numpy.random.SeedSequence([seed, iteration, rank])
    .generate_state(1, dtype=numpy.uint64)[0]))``: SeedSequence hashes the three words so that
    neighbouring (seed, iteration, rank) give unrelated streams. All three must be ints >= 0.
    """
    words = (seed, iteration, rank)
    if any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 0 for w in words):
        raise ValueError(f"seed, iteration and rank must be ints >= 0, got {words}")
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(1, dtype=np.uint64)
    return torch.Generator(device="cpu").manual_seed(int(state[0]))


def federated_freq_weight(image_counts, power: float = 0.5) -> torch.Tensor:
    """w_j = (image count of class j)^power as float64 [C], w_0 = 0 (the background is never
    drawn); image_counts [C] nonnegative (column 0 ignored)."""
    counts = torch.as_tensor(image_counts).detach().to(torch.float64)
    if counts.dim() != 1 or not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
        raise ValueError("image_counts must be a finite, nonnegative [C] vector")
    weight = counts.pow(float(power)).masked_fill(counts == 0, 0.0)  # 0^0 would be 1
    weight[:1] = 0.0
    return weight


def federated_classes(positive_classes: torch.Tensor, freq_weight, num_classes: int = 50,
                      generator: torch.Generator | None = None) -> torch.LongTensor:
    """The class subset F of one iteration (Zhou et al. 2021; spec §5) as a sorted, unique
    LongTensor [F] of values in 1..K (never 0), on the device of ``positive_classes``.

    positive_classes [n] long: the classes with a positive label in the batch (duplicates
    allowed, 0 ignored); freq_weight [C] the weights w_j themselves (e.g.
    ``federated_freq_weight``; column 0 ignored; >= 0); num_classes the target size |F|;
    generator a CPU ``torch.Generator`` (``federated_generator``; None = torch's global one).
    The draw runs on the CPU, so it does not depend on the device.
    """
    weight = torch.as_tensor(freq_weight).detach().to("cpu", torch.float64)
    if weight.dim() != 1 or weight.shape[0] < 1:
        raise ValueError(f"freq_weight must be a [C] vector, got shape {list(weight.shape)}")
    if not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
        raise ValueError("freq_weight must be finite and >= 0")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    positives = torch.as_tensor(positive_classes).detach()
    if positives.dim() != 1 or positives.is_floating_point():
        raise ValueError("positive_classes must be a 1-D integer tensor")
    device = positives.device
    positives = positives.to("cpu", torch.int64)
    if bool((positives < 0).any()) or bool((positives >= weight.shape[0]).any()):
        raise ValueError(f"positive_classes must be in 0..{weight.shape[0] - 1}")
    positives = torch.unique(positives[positives > 0])  # sorted
    weight = weight.clone()
    weight[0] = 0.0
    weight[positives] = 0.0  # the others: candidates for the negatives
    need = num_classes - positives.numel()
    if need <= 0:
        chosen = positives
    else:
        candidates = int((weight > 0).sum())
        if candidates <= need:
            drawn = weight.nonzero().squeeze(1)
        else:
            drawn = torch.multinomial(weight, need, replacement=False, generator=generator)
        chosen = torch.unique(torch.cat([positives, drawn]))
    return chosen.to(device)


def federated_loss(logits: torch.Tensor, targets: torch.Tensor,
                   classes: torch.Tensor) -> torch.Tensor:
    """Federated loss L = (1/R) Σ_r Σ_{j ∈ F} BCE(z_rj, y_rj) (Zhou et al. 2021; spec §5).

    logits [R, C] float (C = K + 1, column 0 unused); targets [R, C] multi-hot (bool or 0/1);
    classes [F] long, unique values in 1..K (``federated_classes``). With F = 1..K this is
    ``sigmoid_bce_loss``. Returns a scalar in the logits' dtype (float32 for half logits).
    """
    check_logits_targets(logits, targets)
    classes = torch.as_tensor(classes).detach()
    if classes.dim() != 1 or classes.is_floating_point():
        raise ValueError("classes must be a 1-D integer tensor")
    classes = classes.to(logits.device, torch.int64)
    num_cols = logits.shape[1]
    distinct = torch.unique(classes)  # sorted: its ends are the min and the max (one sync)
    if classes.numel():
        low, high = distinct[[0, -1]].tolist()
        if low < 1 or high >= num_cols:
            raise ValueError(f"classes must be foreground classes in 1..{num_cols - 1}")
    if distinct.numel() != classes.numel():
        raise ValueError("classes must be unique")
    # columns outside F weigh 0: one dense pass costs less than gathering columns on CPU
    in_subset = torch.zeros(num_cols - 1, dtype=compute_dtype(logits), device=logits.device)
    in_subset[classes - 1] = 1.0  # [K]
    return weighted_bce(logits, targets, pos_w=in_subset, neg_w=in_subset)
