"""EQLv2: gradient-guided reweighting of sigmoid BCE (Tan et al., "Equalization Loss v2",
CVPR 2021, arXiv 2012.08548), long-tail spec §3.

Shapes: ``R`` RoIs, ``K`` foreground classes, ``C = K + 1`` logit columns (0 = background,
unused: sigmoid family, see ``sigmoid_bce``).

Per class j the running sums P_j, N_j of positive and negative gradient magnitudes give

    g_j      = P_j / (N_j + 1e-10)
    φ(x)     = 1 / (1 + exp(-γ (x - μ)))                 (defaults γ = 12, μ = 0.8, α = 4)
    neg_w_j  = φ(g_j),   pos_w_j = 1 + α (1 - neg_w_j)    (both 1 before the first update)
    L        = (1/R) Σ_r Σ_{j=1..K} [y_rj pos_w_j + (1 - y_rj) neg_w_j] BCE(z_rj, y_rj)

and after each step, with p = σ(z) detached and a_rj = |p_rj - y_rj| (the BCE gradient size):

    P_j += Σ_r y_rj a_rj pos_w_j,   N_j += Σ_r (1 - y_rj) a_rj neg_w_j    (summed over ranks)

Classes whose positives are outweighed by negatives (g_j small, the tail) get small negative and
large positive weights. The weights of step t use the statistics of steps < t. Test scores: σ(z).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from wilddet.losses._common import (
    check_logits_targets,
    compute_dtype,
    positive_mask,
    positive_pairs,
    side_input,
)
from wilddet.losses.sigmoid_bce import weighted_bce

__all__ = ["EQLv2", "eqlv2_gradient_stats", "eqlv2_loss", "eqlv2_weights"]

RATIO_EPS = 1e-10  # g_j = P_j / (N_j + 1e-10), as the paper's code


def eqlv2_weights(pos_neg_ratio: torch.Tensor, gamma: float = 12.0, mu: float = 0.8,
                  alpha: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """EQLv2 weights (Tan et al., CVPR 2021; spec §3): (pos_w [K], neg_w [K]) from g [K]:
    neg_w = φ(g) = 1 / (1 + exp(-γ (g - μ))), pos_w = 1 + α (1 - neg_w). Float g keeps its
    dtype (others become float32); detached."""
    ratio = torch.as_tensor(pos_neg_ratio).detach()
    if not ratio.is_floating_point():
        ratio = ratio.float()
    neg_w = torch.sigmoid(float(gamma) * (ratio - float(mu)))
    return 1.0 + float(alpha) * (1.0 - neg_w), neg_w


def _class_weights(pos_w, neg_w, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pos_w, neg_w as [K] tensors in the compute dtype on the logits' device (checked)."""
    shape, dtype = (logits.shape[1] - 1,), compute_dtype(logits)
    return (side_input(pos_w, "pos_w", shape, dtype, logits.device),
            side_input(neg_w, "neg_w", shape, dtype, logits.device))


def eqlv2_loss(logits: torch.Tensor, targets: torch.Tensor, pos_w, neg_w) -> torch.Tensor:
    """EQLv2 loss L = (1/R) Σ_r Σ_{j=1..K} [y_rj pos_w_j + (1 - y_rj) neg_w_j] BCE(z_rj, y_rj)
    (Tan et al., CVPR 2021; spec §3).

    logits [R, C] float (C = K + 1, column 0 unused); targets [R, C] multi-hot (bool or 0/1);
    pos_w, neg_w [K] per foreground class (``eqlv2_weights``), any float dtype, treated as
    constants. Returns a scalar in the logits' dtype (float32 for half logits).
    """
    check_logits_targets(logits, targets)
    pos_w, neg_w = _class_weights(pos_w, neg_w, logits)
    return weighted_bce(logits, targets, pos_w=pos_w, neg_w=neg_w)


def eqlv2_gradient_stats(logits: torch.Tensor, targets: torch.Tensor, pos_w,
                         neg_w) -> tuple[torch.Tensor, torch.Tensor]:
    """EQLv2 statistics of one batch (spec §3), two detached [K] in the compute dtype:
    (Σ_r y_rj a_rj pos_w_j, Σ_r (1 - y_rj) a_rj neg_w_j) with a = |σ(z) - y|; arguments as
    ``eqlv2_loss``. For 0/1 targets y a = y (1 - σ) and (1 - y) a = (1 - y) σ, so only the
    positive pairs are gathered."""
    check_logits_targets(logits, targets)
    pos_w, neg_w = _class_weights(pos_w, neg_w, logits)
    num_cols = logits.shape[1]
    with torch.no_grad():
        prob = torch.sigmoid(logits.detach().to(pos_w.dtype))  # [R, C], a fresh tensor
        flat = positive_pairs(positive_mask(targets)).to(prob.device)  # [P] row-major
        cls = flat % num_cols
        pos = torch.zeros(num_cols, dtype=prob.dtype, device=prob.device)
        pos.index_add_(0, cls, 1.0 - prob.view(-1)[flat])  # column 0 dropped below
        prob.view(-1).index_fill_(0, flat, 0.0)  # negatives only
        return pos[1:] * pos_w, prob[:, 1:].sum(dim=0) * neg_w


class EQLv2(nn.Module):
    """EQLv2 with its running statistics (spec §3).

    num_classes K; gamma, mu, alpha the mapping's parameters; reduce_sum sums a tensor over the
    DDP ranks (None = one process), e.g. an all_reduce supplied by the engine; it may be set after
    construction. Buffers (saved in checkpoints, exact resume): ``pos_grad`` P [K] and
    ``neg_grad`` N [K] in float64 (long runs add small numbers to large sums), ``num_updates``
    (int64 scalar; 0 = no statistics yet, weights 1). There is no ``forward``: the update is an
    explicit step, ``loss_and_update``.
    """

    def __init__(self, num_classes: int, gamma: float = 12.0, mu: float = 0.8, alpha: float = 4.0,
                 reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.gamma, self.mu, self.alpha = float(gamma), float(mu), float(alpha)
        self.reduce_sum = reduce_sum
        self.register_buffer("pos_grad", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("neg_grad", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(pos_w [K], neg_w [K]) from the statistics so far; ones before the first update (a
        special case: φ(0) is not 1). No host synchronisation."""
        pos_w, neg_w = eqlv2_weights(self.pos_grad / (self.neg_grad + RATIO_EPS), self.gamma,
                                     self.mu, self.alpha)
        started = self.num_updates > 0
        return (torch.where(started, pos_w, torch.ones_like(pos_w)),
                torch.where(started, neg_w, torch.ones_like(neg_w)))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``eqlv2_loss`` with the current weights; the statistics are left unchanged."""
        return eqlv2_loss(logits, targets, *self.weights())

    def loss_and_update(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of this batch with the weights of the previous steps, then P and N grow by
        this batch's statistics summed over the ranks (``reduce_sum`` is called exactly once, on
        every rank: it is a collective)."""
        # the weights come from finite [K] buffers: only the logits' width needs a check
        check_logits_targets(logits, targets)
        if logits.shape[1] != self.num_classes + 1:
            raise ValueError(f"logits must be [R, {self.num_classes + 1}], "
                             f"got {tuple(logits.shape)}")
        dtype = compute_dtype(logits)
        pos_w, neg_w = (w.to(device=logits.device, dtype=dtype) for w in self.weights())
        # the loss's own σ gives the sums of eqlv2_gradient_stats (one pass fewer)
        loss, pos, neg = weighted_bce(logits, targets, pos_w=pos_w, neg_w=neg_w, with_stats=True)
        with torch.no_grad():
            stats = torch.cat([pos * pos_w, neg * neg_w]).to(self.pos_grad)  # [2K], one message
            if self.reduce_sum is not None:
                stats = self.reduce_sum(stats)
            self.pos_grad += stats[: self.num_classes]
            self.neg_grad += stats[self.num_classes:]
            self.num_updates += 1
        return loss
