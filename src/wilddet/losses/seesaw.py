"""Seesaw loss (Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021,
arXiv 2008.10032) on multi-hot targets, optionally with a concurrent rate (seesaw × CSM);
long-tail spec §4.

Shapes: ``R`` RoIs, ``K`` foreground classes, ``C = K + 1`` logit columns with column 0 the
background, ``P`` positive (RoI, class) pairs, ``S`` the pairs with a foreground class.

n_j is the cumulative number of positive foreground labels of class j seen so far, including
the current batch (all ranks), clamped below at 1; σ = softmax(z) detached. For a positive
label i >= 1 of RoI r and a class j >= 1, j != i:

    M_ij   = (n_j / n_i)^p if n_j < n_i else 1              (mitigation)
    C_rij  = max(1, σ_rj / max(σ_ri, eps))^q                 (compensation)
    S_rij  = M_ij C_rij (1 - r_ij)^tau,   S_ri0 = 1          (rate r optional, default 0)
    L_r    = Σ_{i: y_ri = 1} -log [ e^{z_ri} / (e^{z_ri} + Σ_{j != i} (1 - y_rj) S_rij e^{z_rj}) ]
    L      = (1/R) Σ_r L_r

A background label (i = 0) gets plain cross-entropy (S = 1). Defaults p = 0.8, q = 2, eps =
1e-2. With one-hot targets this is the paper's seesaw cross-entropy over K + 1 classes with the
background outside mitigation and compensation; the paper's separate objectness branch is not
reproduced. Test scores: softmax (or CSM scores).

How it is computed (log space: never exp() of a raw logit). As in ``concurrent_softmax``, with
m_r = log Σ_{j negative} e^{z_rj} and u_rj = (1 - y_rj) e^{z_rj - m_r} in [0, 1], a pair
p = (r, i) has -log σ*_p = softplus(log A_p + m_r - z_ri), A_p = Σ_j S_rij u_rj.

- Background pairs: A_p = Σ_j u_rj, no gather (the bulk of the RoIs).
- Foreground pairs: mitigation is a ratio of a_j = (n_j / n_max)^p, M_ij = min(a_j, a_i) / a_i,
  and compensation is C_rij = max(1, u_rj / v_p)^q with θ_p = max(z_ri, logsumexp_j z_rj + log
  eps) and v_p = e^{θ_p - m_r} (u_rj > v_p <=> σ_rj > max(σ_ri, eps); C_rij <= eps^{-q}), so
  A_p is one gathered [S, C] product of nonnegative numbers. No [R, C, C] tensor is built.
- Pairs whose A_p may have underflowed (the largest negative has a rate of 1) are recomputed
  exactly by a logsumexp over z_rj + log S_rij. If a_j spans too many decades for the dtype,
  M_ij = exp(p min(0, log n_j - log n_i)) is used instead of the ratio.
- A custom autograd.Function gives the backward in one pass: dL_p/dz_ri = σ*_p - 1,
  dL_p/dz_rj = S_rij e^{z_rj} / D_p (S held fixed: σ is detached).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from wilddet.losses._common import (
    check_logits_targets,
    compute_dtype,
    positive_mask,
    positive_pairs,
    sel,
    side_input,
    where,
)
from wilddet.losses.concurrent_softmax import (
    _check_rate,
    _negative_exponentials,
    _rate_plan,
    _underflow_limit,
)

__all__ = ["Seesaw", "seesaw_loss"]


class _Mitigation:
    """M_ij = min(1, n_j / n_i)^p for the rows i of the foreground pairs, as rows / scale.

    Product form: rows_pj = min(a_j, a_i), scale_p = a_i with a_j = (n_j / n_max)^p (a_0 = 1:
    the background column has M = 1). Log form, when a would underflow in the compute dtype:
    rows_pj = exp(p min(0, log n_j - log n_i)), scale = 1 (log n_0 = +inf).
    """

    def __init__(self, class_counts: torch.Tensor, p: float, dtype: torch.dtype):
        log_n = torch.log(class_counts.to(torch.float64).clamp(min=1.0))  # [C]
        log_n[0] = math.inf
        log_a = (log_n - log_n[1:].max()).mul_(p) if len(log_n) > 1 else torch.zeros_like(log_n)
        log_a[0] = 0.0  # [C] log a_j <= 0
        self.product = float(log_a.min()) > 0.25 * math.log(torch.finfo(dtype).tiny)
        self.p = p
        self.a = torch.exp(log_a).to(dtype)  # [C] in (0, 1]
        self.log_n = log_n.to(dtype)

    def rows(self, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows [S, C], scale [S]) with M_ij = rows / scale for the classes ``cls`` [S]."""
        if self.product:
            a_i = sel(self.a, cls)
            return torch.minimum(self.a[None, :], a_i[:, None]), a_i
        diff = (self.log_n[None, :] - sel(self.log_n, cls)[:, None]).clamp_(max=0.0)
        return diff.mul_(self.p).exp_(), torch.ones(len(cls), dtype=self.a.dtype,
                                                    device=cls.device)


def _exact_pairs(z, positive, rows, cls, theta, mitigation, weights, q):
    """For pairs (rows, cls) [L]: (log Σ_j S_rij (1 - y_rj) e^{z_rj} [L], normalized weights
    [L, C] = S_rij (1 - y_rj) e^{z_rj} / that sum), by a logsumexp (the underflow fallback)."""
    z_rows = sel(z, rows)
    mit, scale = mitigation.rows(cls)
    t = z_rows.masked_fill(sel(positive, rows), -math.inf)  # negatives only
    t += torch.log(mit) - torch.log(scale)[:, None]
    if weights is not None:
        t += torch.log(sel(weights, cls))
    comp = (z_rows - theta[:, None]).clamp_(min=0.0)
    comp[:, 0] = 0.0  # the background column has no compensation
    t += q * comp
    lse = torch.logsumexp(t, dim=1)
    norm = torch.exp(t - lse[:, None])
    norm = torch.where(torch.isfinite(lse)[:, None], norm, torch.zeros_like(norm))
    return lse, norm


def _foreground_terms(z, u, log_pos, gap, flat_pos, pair_row, fg, pair_cls, mitigation, plan,
                      q, log_eps):
    """The terms of A_p for the foreground pairs ``fg`` [S]: (terms [S, C] = S_rij u_rj scale_p,
    scale [S], θ [S]). Compensation C_rij = max(1, u_rj / v_p)^q with v_p = e^{θ_p - o_r} =
    e^{max(log_pos_p, log eps + gap_p)} (u_rj > v_p <=> σ_rj > max(σ_ri, eps); o_r, log_pos, gap
    as ``_negative_exponentials``); 1 on the background column. Dense over [S, C]
    (finding the few entries with C_rij != 1 costs more than one pass); ``plan`` the rate's
    ``_RatePlan`` or None."""
    rows, cls = sel(pair_row, fg), sel(pair_cls, fg)
    log_pos_fg = sel(log_pos, fg)
    log_v = torch.maximum(log_pos_fg, sel(gap, fg) + log_eps)  # [S] θ_p - o_r
    theta = sel(sel(z.view(-1), flat_pos), fg) - log_pos_fg + log_v
    u_rows = sel(u, rows)  # [S, C]
    terms, scale = mitigation.rows(cls)  # [S, C] M_ij scale_p
    terms.mul_(u_rows)
    if plan is not None:
        terms.mul_(sel(plan.weights, cls))  # (1 - r_ij)^tau
    if q > 0:
        v = torch.exp(log_v)  # [S]
        comp = u_rows.div_(v[:, None]).clamp_(min=1.0)  # in u_rows' memory (used above)
        if q != 1:
            comp.pow_(q)
        comp[:, 0] = 1.0
        terms.mul_(comp)
    return terms, scale, theta


class _SeesawPairLoss(torch.autograd.Function):
    """-log σ*_p for the positive pairs p (flat indices ``flat_pos`` into [R, C], row-major,
    split into ``pair_row``, ``pair_cls``); [P]. Differentiable with respect to ``z`` only.
    ``mitigation`` a ``_Mitigation``, ``plan`` the rate's ``_RatePlan`` (its weights [C, C] =
    (1 - r)^tau) or None, ``q``, ``log_eps``.
    """

    @staticmethod
    def forward(ctx, z, positive, flat_pos, pair_row, pair_cls, mitigation, plan, q, log_eps):
        u, total, log_pos, gap = _negative_exponentials(z, positive, flat_pos, pair_row)
        log_a = sel(torch.log(total), pair_row)  # [P]; background pairs: A_p = Σ_j u_rj
        inv_a = sel(1.0 / total.clamp(min=torch.finfo(z.dtype).tiny), pair_row)
        z_pos = sel(z.view(-1), flat_pos)  # [P] z_ri
        fg = where(pair_cls > 0)  # [S] the seesaw pairs
        saved = ()
        exact = None
        if fg.numel():
            inv_a[fg] = 0.0
            terms, scale, theta = _foreground_terms(z, u, log_pos, gap, flat_pos, pair_row, fg,
                                                    pair_cls, mitigation, plan, q, log_eps)
            a_scaled = terms.sum(dim=1)  # [S] A_p scale_p
            log_a[fg] = torch.log(a_scaled) - torch.log(scale)
            inv_scaled = 1.0 / a_scaled
            # relative to the row's negatives' mass; <=: a row without negatives (0) goes too
            low = where(a_scaled <= _underflow_limit(z.dtype) * sel(total, sel(pair_row, fg)))
            if low.numel():  # exact recomputation (rare: the largest negative has rate 1)
                rows, cls = sel(sel(pair_row, fg), low), sel(sel(pair_cls, fg), low)
                lse_low, norm = _exact_pairs(z, positive, rows, cls, sel(theta, low), mitigation,
                                             None if plan is None else plan.weights, q)
                terms[low] = norm
                inv_scaled[low] = 1.0
                exact = (sel(fg, low), lse_low)
            saved = (terms, inv_scaled)
        a = log_a.sub_(log_pos)  # log(D_p / e^{z_ri} - 1)
        if exact is not None:
            a[exact[0]] = exact[1] - sel(z_pos, exact[0])
        ctx.save_for_backward(z, positive, flat_pos, pair_row, a, inv_a, fg, *saved)
        ctx.u = u  # reused for the gradient by the first backward (see concurrent_softmax)
        return torch.logaddexp(a, torch.zeros_like(a))  # softplus without its x > 20 cutoff

    @staticmethod
    def backward(ctx, grad_loss):
        z, positive, flat_pos, pair_row, a, inv_a, fg, *saved = ctx.saved_tensors
        u, ctx.u = ctx.u, None
        if u is None:
            u = _negative_exponentials(z, positive, flat_pos, pair_row).u
        coef = grad_loss * torch.sigmoid(a)  # g_p (1 - σ*_p)
        row_coef = torch.zeros(u.shape[0], dtype=u.dtype, device=u.device)
        row_coef.index_add_(0, pair_row, coef * inv_a)  # background pairs: u_rj / A_p
        grad = u.mul_(row_coef[:, None])  # [R, C], in u's memory
        if saved:  # foreground pairs: S_rij u_rj / A_p
            terms, inv_scaled = saved
            grad.index_add_(0, sel(pair_row, fg), terms * (sel(coef, fg) * inv_scaled)[:, None])
        grad.view(-1).index_add_(0, flat_pos, -coef)  # σ*_p - 1 on z_ri
        return grad, None, None, None, None, None, None, None, None


def _check_parameters(p: float, q: float, eps: float, tau: float, dtype: torch.dtype,
                      num_cols: int) -> None:
    if p < 0 or q < 0 or tau < 0:
        raise ValueError(f"p, q and tau must be >= 0, got p={p}, q={q}, tau={tau}")
    if not 0 < eps <= 1:
        raise ValueError(f"eps must be in (0, 1], got {eps}")
    # C_rij <= eps^-q: the compensated terms must stay finite in the compute dtype
    if q * -math.log(eps) > math.log(torch.finfo(dtype).max) - math.log(num_cols) - 1:
        raise ValueError(f"eps^-q = {eps}^-{q} overflows {dtype}")


def seesaw_loss(logits: torch.Tensor, targets: torch.Tensor, class_counts, p: float = 0.8,
                q: float = 2.0, eps: float = 1e-2, rate: torch.Tensor | None = None,
                tau: float = 1.0) -> torch.Tensor:
    """Seesaw loss L = (1/R) Σ_r L_r on multi-hot targets (Wang et al., CVPR 2021; spec §4;
    formulas in the module docstring).

    logits [R, C] float (C = K + 1, column 0 background); targets [R, C] multi-hot (bool or
    0/1; a background RoI is e_0; a RoI without positives contributes 0); class_counts [C] n_j,
    already including the current batch (column 0 ignored; clamped below at 1), any float
    dtype; p, q >= 0 the mitigation and compensation exponents, eps in (0, 1]; rate [C, C]
    (``pad_rate_matrix``: zero diagonal, zero background row and column) or None, with tau >= 0
    the exponent on (1 - r_ij) (seesaw × CSM). With p = q = 0, no rate and one-hot targets this
    is ``F.cross_entropy``. Returns a scalar in the logits' dtype (float32 for half logits).
    """
    check_logits_targets(logits, targets)
    num_cols = logits.shape[1]
    dtype = compute_dtype(logits)
    _check_parameters(p, q, eps, tau, dtype, num_cols)
    _check_rate(rate, num_cols)
    counts = side_input(class_counts, "class_counts", (num_cols,), torch.float64, logits.device)
    if bool((counts < 0).any()):
        raise ValueError("class_counts must be >= 0")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        z = logits.to(dtype).contiguous()
        positive = positive_mask(targets)
        flat_pos = positive_pairs(positive).to(z.device)  # [P], row-major
        pair_row = torch.div(flat_pos, num_cols, rounding_mode="floor")
        pair_cls = flat_pos - pair_row * num_cols
        plan = None if rate is None else _rate_plan(rate, tau, dtype, z.device)
        pair_loss = _SeesawPairLoss.apply(z, positive, flat_pos, pair_row, pair_cls,
                                          _Mitigation(counts, float(p), dtype), plan,
                                          float(q), math.log(eps))
        return pair_loss.sum() / max(z.shape[0], 1)  # mean over the R RoIs


class Seesaw(nn.Module):
    """Seesaw loss with its running class counts (spec §4).

    num_classes K; p, q, eps, tau as ``seesaw_loss``; reduce_sum sums a tensor over the DDP
    ranks (None = one process), supplied by the engine, may be set after construction. Buffer
    ``class_counts`` [C] float64 (exact integers; column 0 stays 0): saved in checkpoints for an
    exact resume. There is no ``forward``: the update is an explicit step, ``loss_and_update``.
    """

    def __init__(self, num_classes: int, p: float = 0.8, q: float = 2.0, eps: float = 1e-2,
                 tau: float = 1.0,
                 reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        _check_parameters(p, q, eps, tau, torch.float32, num_classes + 1)
        self.num_classes = int(num_classes)
        self.p, self.q, self.eps, self.tau = float(p), float(q), float(eps), float(tau)
        self.reduce_sum = reduce_sum
        self.register_buffer("class_counts", torch.zeros(num_classes + 1, dtype=torch.float64))

    def update_counts(self, targets: torch.Tensor) -> None:
        """n_j += number of RoIs of this batch with a positive label j >= 1, summed over the
        ranks (``reduce_sum`` is called exactly once, on every rank: it is a collective)."""
        if targets.dim() != 2 or targets.shape[1] != self.num_classes + 1:
            raise ValueError(f"targets must be [R, {self.num_classes + 1}], "
                             f"got {tuple(targets.shape)}")
        num_cols = self.num_classes + 1
        with torch.no_grad():
            flat = positive_pairs(positive_mask(targets)).to(targets.device)  # [P]
            batch = torch.bincount(flat % num_cols, minlength=num_cols).to(self.class_counts)
            batch[0] = 0.0  # [C]
            if self.reduce_sum is not None:
                batch = self.reduce_sum(batch)
            self.class_counts += batch

    def loss(self, logits: torch.Tensor, targets: torch.Tensor,
             rate: torch.Tensor | None = None) -> torch.Tensor:
        """``seesaw_loss`` with the current counts; the counts are left unchanged."""
        return seesaw_loss(logits, targets, self.class_counts, self.p, self.q, self.eps, rate,
                           self.tau)

    def loss_and_update(self, logits: torch.Tensor, targets: torch.Tensor,
                        rate: torch.Tensor | None = None) -> torch.Tensor:
        """Add this batch's labels to the counts (all ranks), then the loss with those counts."""
        self.update_counts(targets)
        return self.loss(logits, targets, rate)
