"""Sigmoid binary cross-entropy on the foreground columns (long-tail spec §1), and the weighted
form that EQL, EQLv2 and the federated loss build on.

Shapes: ``R`` RoIs, ``K`` foreground classes, ``C = K + 1`` logit columns with column 0 the
background (unused by the sigmoid family: a background RoI has all-zero foreground targets).

    BCE(z, y) = max(z, 0) - z y + log(1 + e^{-|z|})      (F.binary_cross_entropy_with_logits)
    L         = (1/R) Σ_r Σ_{j=1..K} w_rj BCE(z_rj, y_rj)  (w = 1: plain sigmoid BCE)

``weighted_bce`` computes L for per-class weights on the positives, the negatives, and the
negatives of foreground RoIs; EQL (``eql``), EQLv2 (``eqlv2``) and the federated loss
(``federated``) are choices of those weights.

Test-time scores of this family are σ(z_rj).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wilddet.losses._common import (
    check_logits_targets,
    compute_dtype,
    positive_mask,
    positive_pairs,
    sel,
)

__all__ = ["sigmoid_bce_loss"]


class _WeightedBCE(torch.autograd.Function):
    """Σ_{r, j >= 1} w_rj BCE(z_rj, y_rj) for z [R, C] (column 0 unused) as a scalar, with

        w_rj = neg_w_j on the negatives (fg_neg_w_j instead on the rows ``fg_rows``, the rows
               of the positives ``flat_pos``, which requires neg_w = 1),
        w_p  = pos_w_p on the positive pairs p (flat indices ``flat_pos`` into [R, C], j >= 1),

    and, when ``stats``, the detached sums (Σ_r y_rj (1 - σ_rj), Σ_r (1 - y_rj) σ_rj) [K] each
    (EQLv2's statistics before weighting; else two empty tensors).

    Written by hand because ``F.binary_cross_entropy_with_logits`` is a chain of ~8 elementwise
    kernels on CPU: with BCE = softplus(z) - z y the forward is one sigmoid pass, a column sum of
    softplus from it (``_column_softplus``) and a sparse correction at the positives, and the
    backward, dL/dz = w (σ(z) - y), the saved σ times the column weights. neg_w, fg_neg_w [C]
    with column 0 = 0 (None: 1, no row override), fg_rows [G], pos_w [P] (None: 1).
    """

    @staticmethod
    def forward(ctx, z, flat_pos, pos_w, neg_w, fg_rows, fg_neg_w, stats):
        prob = torch.sigmoid(z)  # [R, C]
        columns, fg_columns = _column_softplus(z, prob, fg_rows)  # [C] each (or None)
        total = columns[1:].sum() if neg_w is None else columns[1:] @ neg_w[1:]
        if fg_rows is not None:  # those rows got weight 1 above: swap in fg_neg_w
            assert neg_w is None, "a row override goes with neg_w = 1"
            total = total + fg_columns[1:] @ (fg_neg_w[1:] - 1.0)
        # the positives got their negative weight above: w_p BCE(z, 1) = w_p (softplus(z) - z)
        given = _negative_weight(flat_pos, z.shape, neg_w, fg_rows, fg_neg_w)
        pos = 1.0 if pos_w is None else pos_w
        z_pos = sel(z.view(-1), flat_pos)
        sp_pos = torch.logaddexp(z_pos, z_pos.new_zeros(()))
        total = total + ((pos - given) * sp_pos - pos * z_pos).sum()
        prob_pos = sel(prob.view(-1), flat_pos)
        # the positives' gradient is written apart: keep σ of the negatives only
        prob.view(-1).index_fill_(0, flat_pos, 0.0)
        positives = negatives = z.new_zeros(0)
        if stats:
            negatives = prob.sum(dim=0)[1:]  # a contiguous reduction, then drop column 0
            positives = torch.zeros_like(prob[0]).index_add_(0, flat_pos % z.shape[1],
                                                              1.0 - prob_pos)[1:]
        ctx.save_for_backward(z, flat_pos, pos_w, neg_w, fg_rows, fg_neg_w, prob_pos)
        # outside save_for_backward: the first backward writes the gradient into its memory (no
        # fresh [R, C] buffer); a second backward (retain_graph, gradcheck) recomputes it from z
        ctx.prob = prob
        ctx.mark_non_differentiable(positives, negatives)
        return total, positives, negatives

    @staticmethod
    def backward(ctx, grad_total, _grad_positives, _grad_negatives):
        z, flat_pos, pos_w, neg_w, fg_rows, fg_neg_w, prob_pos = ctx.saved_tensors
        prob, ctx.prob = ctx.prob, None
        if prob is None:
            prob = torch.sigmoid(z)
            prob.view(-1).index_fill_(0, flat_pos, 0.0)
        if neg_w is None:
            grad = prob.mul_(grad_total)
            grad[:, 0] = 0.0
        else:
            grad = prob.mul_(neg_w * grad_total)  # [R, C], column 0 -> 0
        if fg_rows is not None:  # (neg_w is then 1) their rows: σ g fg_neg_w
            grad.index_copy_(0, fg_rows, sel(grad, fg_rows).mul_(fg_neg_w))
        pos = grad_total if pos_w is None else pos_w * grad_total
        grad.view(-1).index_copy_(0, flat_pos, (prob_pos - 1.0) * pos)
        return grad, None, None, None, None, None, None


def _column_softplus(z: torch.Tensor, prob: torch.Tensor,
                     rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(Σ_r softplus(z_rj) per column [C], the same sum over the rows ``rows`` [G] only [C] or
    None without ``rows``); prob = σ(z).

    float64 (tests): logaddexp(z, 0), exact. Otherwise softplus(z) = max(z, 0) - log σ(|z|) with
    σ(|z|) = max(σ(z), 1 - σ(z)) in [1/2, 1) and the log taken once per product of 64 rows, not
    per entry: a log or softplus pass costs about three sigmoid passes on CPU. The error is
    float32 rounding (σ(|z|) rounds to 1 for |z| > 17, dropping terms < 6e-8). The row subset
    gathers the two [R, C] intermediates instead of recomputing them.
    """
    if z.dtype == torch.float64:
        terms = torch.logaddexp(z, z.new_zeros(()))
        return terms.sum(dim=0), None if rows is None else sel(terms, rows).sum(dim=0)
    # one fresh [R, C] buffer for both intermediates (fresh large buffers cost page faults)
    buffer = torch.rsub(prob, 1.0)
    s = torch.maximum(buffer, prob, out=buffer)  # [R, C] σ(|z|)
    logs = _column_log_product(s)
    logs_rows = None if rows is None else _column_log_product(sel(s, rows))
    positive_part = torch.clamp(z, min=0.0, out=buffer)  # [R, C] max(z, 0), over s
    total = positive_part.sum(dim=0) - logs
    if rows is None:
        return total, None
    return total, sel(positive_part, rows).sum(dim=0) - logs_rows


_ROW_BLOCK = 64  # σ(|z|) >= 1/2: a product of 64 of them stays >= 2^-64 (no underflow)


def _column_log_product(s: torch.Tensor) -> torch.Tensor:
    """Σ_r log s_rj per column [C] for s in [1/2, 1], one log per block of 64 rows."""
    num_rows, num_cols = s.shape
    full = num_rows - num_rows % _ROW_BLOCK
    logs = torch.log(s[:full].view(-1, _ROW_BLOCK, num_cols).prod(dim=1)).sum(dim=0)
    if full < num_rows:
        logs = logs + torch.log(s[full:].prod(dim=0))
    return logs


def _negative_weight(flat, shape, neg_w, fg_rows, fg_neg_w):
    """The negatives' weight w of the entries ``flat`` (flat indices into ``shape``): [n] or 1.
    With ``fg_rows`` (the rows of the positives ``flat``: every entry lies on one) that is
    fg_neg_w."""
    cls = flat % shape[1]
    if fg_rows is not None:
        return sel(fg_neg_w, cls)
    return 1.0 if neg_w is None else sel(neg_w, cls)


def _with_background(weight: torch.Tensor | None) -> torch.Tensor | None:
    """[K] per-class weights -> [C] with w_0 = 0 (the background column is unused)."""
    return None if weight is None else F.pad(weight, (1, 0))


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, pos_w=None, neg_w=None,
                 fg_neg_w=None, with_stats: bool = False):
    """(1/R) Σ_r Σ_{j>=1} w_rj BCE(z_rj, y_rj), the shared core of the sigmoid family.

    logits, targets [R, C] (checked); weights per foreground class, [K] tensors already in the
    compute dtype on the logits' device (``side_input``), None = 1: pos_w on the positive
    entries, neg_w on the negatives, fg_neg_w on the negatives of foreground RoIs (rows with a
    positive j >= 1) instead of 1 (only with neg_w None). Computed in float32 (float64 stays
    float64), autocast off. Returns the scalar loss; with ``with_stats`` (loss, Σ_r y (1 - σ)
    [K], Σ_r (1 - y) σ [K]), the two sums detached (EQLv2's statistics before weighting).
    """
    check_logits_targets(logits, targets)
    if fg_neg_w is not None and neg_w is not None:
        raise ValueError("fg_neg_w replaces a negative weight of 1: pass neg_w=None with it")
    dtype = compute_dtype(logits)
    num_cols = logits.shape[1]
    with torch.autocast(device_type=logits.device.type, enabled=False):
        z = logits.to(dtype).contiguous()
        flat_pos = positive_pairs(positive_mask(targets)).to(z.device)
        flat_pos = flat_pos[flat_pos % num_cols != 0]  # [P] foreground positives
        fg_rows = None
        if fg_neg_w is not None:
            # flat_pos is row-major, so its rows are sorted: no sort needed for uniqueness
            fg_rows = torch.unique_consecutive(torch.div(flat_pos, num_cols,
                                                         rounding_mode="floor"))
        pos_pair_w = None if pos_w is None else sel(_with_background(pos_w), flat_pos % num_cols)
        total, positives, negatives = _WeightedBCE.apply(
            z, flat_pos, pos_pair_w, _with_background(neg_w), fg_rows,
            _with_background(fg_neg_w), with_stats)
        loss = total / max(z.shape[0], 1)  # mean over the R RoIs
        return (loss, positives, negatives) if with_stats else loss


def sigmoid_bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sigmoid BCE L = (1/R) Σ_r Σ_{j=1..K} BCE(z_rj, y_rj) (long-tail spec §1).

    logits [R, C] float (C = K + 1, column 0 background, unused); targets [R, C] multi-hot (bool
    or 0/1; a background RoI is e_0, i.e. all foreground targets 0). Returns a scalar in the
    logits' dtype (float32 for half logits); 0 for R = 0.
    """
    return weighted_bce(logits, targets)
