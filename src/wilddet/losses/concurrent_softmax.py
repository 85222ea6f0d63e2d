"""Concurrent softmax (CSM): training loss and test-time scores (method spec §2).

Shapes: ``R`` RoIs, ``K`` foreground classes, ``C = K + 1`` logit columns with column 0 the
background, ``P`` positive (RoI, class) pairs of a multi-hot target.

For one RoI with logits z [C], multi-hot target y [C] and concurrent rate r [C, C]
(zero diagonal, zero background row and column):

    w_ij   = (1 - y_j) (1 - r_ij)^tau  for j != i,   w_ii = 0
    D_i    = e^{z_i} + sum_j w_ij e^{z_j}
    σ*_i   = e^{z_i} / D_i
    L      = - sum_i y_i log σ*_i                       (training, §2.1)
    s_i    = σ*_i with y = 0                            (test time, §2.2)

How it is computed (log space, never exp() of a raw logit):

- Loss. Only the P positive pairs need σ*. With u_rj = (1 - y_rj) e^{z_rj - o_r} in [0, 1]
  (o_r = logsumexp_j z_rj: the row's softmax with its positives zeroed, one fused kernel, no
  max pass; rows where that scale underflows use o_r = log sum over the negatives of e^{z_rj}),
  S_r = sum_j u_rj, A_p = sum_j W_ij u_rj for pair p = (r, i), W = (1 - r)^tau with zero
  diagonal, and

      -log σ*_p = softplus(log A_p - (z_ri - o_r))   (z_ri - o_r = log σ_ri, off the softmax).

  Three kinds of pairs, by the row i of W:
  * plain (row i of r is zero: background, classes without partner): A_p = S_r = sum_j u_rj,
    no gather; for a one-hot target this is exactly softmax cross-entropy;
  * sparse (few entries W_ij != 1, the real-data case): A_p = S_r + sum_{j in N(i)} (W_ij - 1)
    u_rj over a CSR of those entries, O(|N(i)|) per pair. The subtraction could cancel when the
    partners hold most of the mass; pairs with A_p < S_r / 16 move to the dense path;
  * dense: gather row i of W and take one dot product, sum_j W_ij u_rj of nonnegative numbers,
    O(C) per pair, no cancellation. If A_p is so small that its terms may have underflowed (the
    largest negative has w = 0 and the rest are far below it; A_p <= S_r tiny^(1/2)), the pair
    is recomputed exactly with a logsumexp over z_rj + log w_ij.
  No (R, C, C) tensor is ever built. A custom autograd.Function gives the backward in one pass
  (dL_p/dz_ri = σ*_p - 1, dL_p/dz_rj = w_ij e^{z_rj} / D_p, nothing for the other positives),
  written into the memory of u. The rate-derived data (W, its CSR) is cached for the last rate
  tensor used, keyed on its identity and version counter.
- Scores. All i are needed: D = e + e W^T after subtracting the row max, one (R, C) x (C, C)
  matmul of nonnegative numbers; entries whose denominator may have underflowed are recomputed
  exactly the same way as above.

Everything runs in float32 (float64 stays float64) with autocast disabled, so float16/bfloat16
logits of ±1e4 and K = 600 give no inf/nan. The loss and the scores are returned in float32
(float64 for float64 logits), like ``F.cross_entropy`` under autocast.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from wilddet.data.records import rate_matrix_problem
from wilddet.losses._common import compute_dtype as _compute_dtype
from wilddet.losses._common import positive_pairs as _positive_pairs
from wilddet.losses._common import sel as _sel
from wilddet.losses._common import where as _where

__all__ = ["concurrent_softmax_loss", "concurrent_softmax_scores", "pad_rate_matrix"]

_REDUCTIONS = ("mean", "sum", "none")
_FALLBACK_CHUNK = 4096  # entries recomputed exactly at a time (bounds memory to CHUNK x C)


def pad_rate_matrix(rate_kk) -> torch.Tensor:
    """The analyzer's [K, K] rate (class codes 0..K-1) -> [K+1, K+1] model rate (0 = background).

    The one place that adds the zero background row and column. Accepts a numpy array (returns
    float32) or a tensor (keeps its float dtype and device). Raises ValueError unless the input is
    square, finite, in [0, 1] and has a zero diagonal.
    """
    if isinstance(rate_kk, np.ndarray):
        rate = torch.from_numpy(np.asarray(rate_kk, dtype=np.float32))
    elif isinstance(rate_kk, torch.Tensor):
        rate = rate_kk if rate_kk.is_floating_point() else rate_kk.float()
    else:
        raise TypeError(f"rate must be a numpy array or a tensor, got {type(rate_kk).__name__}")
    problem = rate_matrix_problem(rate.detach().cpu().double().numpy())
    if problem:
        raise ValueError(problem)
    return F.pad(rate, (1, 0, 1, 0))  # [K+1, K+1]


def _check_rate(rate: torch.Tensor | None, num_cols: int) -> None:
    if rate is not None and tuple(rate.shape) != (num_cols, num_cols):
        raise ValueError(f"rate must be [C, C] = [{num_cols}, {num_cols}] (C = K + 1, background "
                         f"row/column included; see pad_rate_matrix), got {tuple(rate.shape)}")


class _RatePlan:
    """What the loss and the scores need from one rate matrix and tau, derived once.

    weights [C, C]: W = (1 - r)^tau with zero diagonal. has_partner [C]: rows of W that are not
    all ones off the diagonal. CSR of those off-diagonal entries (offsets [C+1], cols [E],
    w_minus_one [E] = W_ij - 1 <= 0) for the sparse path.
    """

    def __init__(self, rate: torch.Tensor, tau: float):
        num_cols = rate.shape[0]
        eye = torch.eye(num_cols, dtype=torch.bool, device=rate.device)
        w = (1.0 - rate).clamp(min=0.0)
        if tau != 1.0:
            w = w.pow(tau)
        self.weights = w.masked_fill(eye, 0.0)  # [C, C]
        differs = (w != 1.0) & ~eye  # (1 - r)^0 = 1: with tau = 0 nothing differs
        rows, cols = differs.nonzero(as_tuple=True)  # row-major: CSR order
        self.degree = torch.bincount(rows, minlength=num_cols)  # [C]
        self.has_partner = self.degree > 0
        self.offsets = torch.zeros(num_cols + 1, dtype=torch.int64, device=rate.device)
        torch.cumsum(self.degree, 0, out=self.offsets[1:])
        self.cols = cols
        self.w_minus_one = w[rows, cols] - 1.0

    def entries(self, classes: torch.Tensor):
        """Off-diagonal entries != 1 of W rows ``classes`` [n]: (owner [E] in 0..n-1, col [E],
        W - 1 [E])."""
        degree = _sel(self.degree, classes)
        owner = torch.repeat_interleave(torch.arange(len(classes), device=classes.device), degree)
        # position in the CSR arrays: start of the class's run + rank inside the output run
        shift = _sel(self.offsets, classes) - (torch.cumsum(degree, 0) - degree)
        pos = _sel(shift, owner) + torch.arange(len(owner), device=classes.device)
        return owner, _sel(self.cols, pos), _sel(self.w_minus_one, pos)


_plan_cache: list = [None]  # one slot: (weakref to rate, its version, tau, dtype, device, plan)


def _rate_plan(rate: torch.Tensor, tau: float, dtype: torch.dtype,
               device: torch.device) -> _RatePlan:
    """``_RatePlan`` of ``rate``, reused while the same tensor is unchanged (training calls the
    loss with one rate buffer every step; deriving the plan costs a few [C, C] passes)."""
    try:
        version = rate._version
    except RuntimeError:  # inference tensors have no version counter: do not cache
        return _RatePlan(rate.to(device=device, dtype=dtype), tau)
    key = (version, tau, dtype, device)
    hit = _plan_cache[0]
    if hit is not None and hit[0]() is rate and hit[1:5] == key:
        return hit[5]
    plan = _RatePlan(rate.to(device=device, dtype=dtype), tau)
    _plan_cache[0] = (weakref.ref(rate), *key, plan)
    return plan


def _exact_log_sums(z_rows: torch.Tensor, w_rows: torch.Tensor) -> torch.Tensor:
    """log sum_j w_j e^{z_j} per row, by logsumexp over z_j + log w_j (log 0 = -inf). [N]."""
    out = torch.empty(z_rows.shape[0], dtype=z_rows.dtype, device=z_rows.device)
    for start in range(0, z_rows.shape[0], _FALLBACK_CHUNK):
        sl = slice(start, start + _FALLBACK_CHUNK)
        out[sl] = torch.logsumexp(z_rows[sl] + torch.log(w_rows[sl]), dim=1)
    return out


def _underflow_limit(dtype: torch.dtype) -> float:
    # Below this a sum of C terms in [0, 1] may have lost terms to underflow: recompute exactly.
    return float(torch.finfo(dtype).tiny) ** 0.5


# Sparse path: A_p = S_r + sum_{j in N(i)} (W_ij - 1) u_rj subtracts; when the result is below
# this fraction of S_r, rounding in S_r could matter and the pair takes the dense path instead.
_CANCELLATION_GUARD = 1.0 / 16
# Rows of W with more than this fraction of entries != 1 take the dense path.
_SPARSE_MAX_FILL = 1.0 / 8


class _NegativeExponentials(NamedTuple):
    """``_negative_exponentials``'s result; o_r is a per-row offset (see there)."""

    u: torch.Tensor  # [R, C] (1 - y_rj) e^{z_rj - o_r}
    total: torch.Tensor  # [R] S_r = sum_j u_rj
    log_pos: torch.Tensor  # [P] z_ri - o_r of the positive pairs
    gap: torch.Tensor  # [P] L_r - o_r (L_r = logsumexp_j z_rj over all j): 0 except fallback rows


def _negative_exponentials(z: torch.Tensor, positive: torch.Tensor, flat_pos: torch.Tensor,
                           pair_row: torch.Tensor) -> _NegativeExponentials:
    """u_rj = (1 - y_rj) e^{z_rj - o_r} [R, C] with o_r = L_r = logsumexp_j z_rj: the softmax of
    the whole row with its positives zeroed, one fused kernel (several times faster than exp()
    on CPU; no masked copy of z, no max pass: log σ_ri is read off u itself).

    Rows where that scale underflows (the negatives' mass S_r or a positive's σ_ri below the
    underflow limit, e.g. logits of ±1e4) are recomputed with o_r = m_r = log sum over the
    negatives of e^{z_rj} (u a softmax over the negatives; u = 0, m = 0 without negatives). Every
    use is invariant to o_r: -log σ*_p = softplus(log A_p - log_pos_p). A second call gives the
    same bits (the backward's recomputation relies on it)."""
    u = torch.softmax(z, dim=1)
    flat_u = u.view(-1)
    pos_u = _sel(flat_u, flat_pos)  # [P] σ_ri
    flat_u.index_fill_(0, flat_pos, 0.0)  # negatives only
    total = u.sum(dim=1)  # [R]
    limit = _underflow_limit(z.dtype)
    log_pos = torch.log(pos_u)
    gap = torch.zeros_like(log_pos)
    bad = total < limit
    bad.index_fill_(0, _sel(pair_row, _where(pos_u < limit)), True)
    rows = _where(bad)
    if rows.numel():  # rare: o_r = m_r on these rows
        z_rows = _sel(z, rows)
        masked = z_rows.masked_fill(_sel(positive, rows), float("-inf"))  # negatives
        top = masked.amax(dim=1)
        empty = ~torch.isfinite(top)
        masked[empty] = 0.0
        top = torch.where(empty, torch.zeros_like(top), top)
        u_rows = torch.softmax(masked, dim=1)
        m = top - torch.log(u_rows.amax(dim=1))
        u_rows[empty] = 0.0
        m = torch.where(empty, torch.zeros_like(m), m)
        u[rows] = u_rows
        total[rows] = u_rows.sum(dim=1)
        row_m = torch.zeros_like(total).index_copy_(0, rows, m)
        row_gap = torch.zeros_like(total).index_copy_(0, rows,
                                                      torch.logsumexp(z_rows, dim=1) - m)
        pairs = _where(_sel(bad, pair_row))
        pr = _sel(pair_row, pairs)
        log_pos[pairs] = _sel(z.view(-1), _sel(flat_pos, pairs)) - _sel(row_m, pr)
        gap[pairs] = _sel(row_gap, pr)
    return _NegativeExponentials(u, total, log_pos, gap)


class _PairLoss(torch.autograd.Function):
    """-log σ*_p for the positive pairs p = (pair_row[p], pair_cls[p]); [P].

    ``positive`` [R, C] bool targets; ``flat_pos`` [P] the same pairs as flat indices into
    [R, C]; ``plan`` a ``_RatePlan`` or None (r = 0). Differentiable with respect to ``z`` only.
    Three kinds of pairs: plain (W row all ones: A_p = S_r), sparse (few W_ij != 1: A_p = S_r +
    sum (W_ij - 1) u_rj, guarded against cancellation), dense (A_p = sum_j W_ij u_rj gathered).
    """

    @staticmethod
    def forward(ctx, z, positive, flat_pos, pair_row, pair_cls, plan):
        num_cols = z.shape[1]
        tiny = torch.finfo(z.dtype).tiny
        u, total, log_pos, _ = _negative_exponentials(z, positive, flat_pos, pair_row)
        log_a = _sel(torch.log(total), pair_row)  # [P] log A_p (plain pairs: A_p = S_r)
        inv_a = _sel(1.0 / total.clamp(min=tiny), pair_row)  # [P] 1 / A_p, 0 for dense pairs
        empty = pair_row.new_zeros(0)
        ent_flat, ent_val, ent_pair, dense, q = empty, z.new_zeros(0), empty, empty, None
        exact = None
        special = empty if plan is None else _where(_sel(plan.has_partner, pair_cls))
        if special.numel():
            dense = special
            sp_cls, sp_row = _sel(pair_cls, special), _sel(pair_row, special)
            if float(_sel(plan.degree, sp_cls).sum()) <= _SPARSE_MAX_FILL * len(special) * num_cols:
                owner, cols, w_minus_one = plan.entries(sp_cls)
                flat = _sel(sp_row, owner) * num_cols + cols
                val = w_minus_one * _sel(u.view(-1), flat)  # (W_ij - 1) u_rj <= 0
                s_rows = _sel(total, sp_row)
                a_sparse = s_rows + torch.zeros_like(s_rows).index_add_(0, owner, val)
                bad = a_sparse < _CANCELLATION_GUARD * s_rows
                ok = _where(~bad)
                log_a[_sel(special, ok)] = torch.log(_sel(a_sparse, ok))
                inv_a[_sel(special, ok)] = 1.0 / _sel(a_sparse, ok)
                ent_flat, ent_val, ent_pair = flat, val, _sel(special, owner)
                dense = _sel(special, _where(bad))
                if dense.numel():  # those pairs leave the sparse path
                    keep = _where(~_sel(bad, owner))
                    ent_flat, ent_val, ent_pair = (_sel(x, keep) for x in (flat, val, ent_pair))
            if dense.numel():
                rows, cls = _sel(pair_row, dense), _sel(pair_cls, dense)
                q = _sel(plan.weights, cls).mul_(_sel(u, rows))  # [P_d, C] = W_ij u_rj
                a_dense = q.sum(dim=1)
                q /= a_dense.clamp(min=tiny)[:, None]  # dL/dz_rj / (1 - σ*)
                log_a[dense] = torch.log(a_dense)
                inv_a[dense] = 0.0
                # <=: a row without negatives (A = S = 0) takes the exact path too
                low = _where(a_dense <= _underflow_limit(z.dtype) * _sel(total, rows))
                if low.numel():  # exact recomputation (rare: see the module docstring)
                    rows_low = _sel(rows, low)
                    t = _sel(z, rows_low).masked_fill_(_sel(positive, rows_low), float("-inf"))
                    t += torch.log(_sel(plan.weights, _sel(cls, low)))  # [P_f, C]
                    lse = torch.logsumexp(t, dim=1)
                    exact = (_sel(dense, low), lse)  # a = lse - z_ri (no round trip through m)
                    q_low = torch.exp(t - lse[:, None])
                    q[low] = torch.where(torch.isfinite(lse)[:, None], q_low,
                                         torch.zeros_like(q_low))
        a = log_a.sub_(log_pos)  # log(D_p / e^{z_ri} - 1)
        if exact is not None:
            a[exact[0]] = exact[1] - _sel(_sel(z.view(-1), flat_pos), exact[0])
        ctx.save_for_backward(z, positive, flat_pos, pair_row, a, inv_a, ent_flat, ent_val,
                              ent_pair, dense, q)
        # Kept outside save_for_backward so that the first backward can reuse its memory for the
        # gradient (one [R, C] buffer per step instead of two: large fresh allocations cost page
        # faults on CPU); a second backward (retain_graph, gradcheck) recomputes it from z.
        ctx.u = u
        return torch.logaddexp(a, torch.zeros_like(a))  # softplus without its x > 20 cutoff

    @staticmethod
    def backward(ctx, grad_loss):
        (z, positive, flat_pos, pair_row, a, inv_a, ent_flat, ent_val, ent_pair, dense,
         q) = ctx.saved_tensors
        u, ctx.u = ctx.u, None
        if u is None:
            u = _negative_exponentials(z, positive, flat_pos, pair_row).u
        coef = grad_loss * torch.sigmoid(a)  # g_p (1 - σ*_p)
        scaled = coef * inv_a
        # plain and sparse pairs: coef_p u_rj / A_p on every negative j of the row ...
        row_coef = torch.zeros(u.shape[0], dtype=u.dtype, device=u.device)
        row_coef.index_add_(0, pair_row, scaled)
        grad = u.mul_(row_coef[:, None])  # [R, C], in u's memory
        if ent_flat.numel():  # ... times W_ij on the sparse entries
            grad.view(-1).index_add_(0, ent_flat, ent_val * _sel(scaled, ent_pair))
        if dense.numel():
            grad.index_add_(0, _sel(pair_row, dense), q * _sel(coef, dense)[:, None])
        grad.view(-1).index_add_(0, flat_pos, -coef)  # σ*_p - 1 on z_ri
        return grad, None, None, None, None, None


def concurrent_softmax_loss(logits: torch.Tensor, targets: torch.Tensor, rate: torch.Tensor | None,
                            reduction: str = "mean", tau: float = 1.0,
                            normalize_by_positives: bool = False) -> torch.Tensor:
    """CSM loss L_r = -sum_i y_ri log σ*_ri (spec §2.1).

    logits [R, C] float (C = K + 1, column 0 background); targets [R, C] multi-hot (bool or 0/1;
    nonzero = positive; a background RoI is e_0; a RoI with no positive contributes 0);
    rate [C, C] in [0, 1] with zero diagonal and zero background row/column (``pad_rate_matrix``),
    None = all zeros; tau >= 0 the exponent on (1 - r).
    reduction: "mean" averages L_r over the R RoIs (over the positives instead when
    ``normalize_by_positives``), "sum" sums, "none" returns [R].
    With one-hot targets and r = 0 this equals ``F.cross_entropy``. Returns float32 (float64 for
    float64 logits), autocast disabled inside.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if logits.dim() != 2 or tuple(targets.shape) != tuple(logits.shape):
        raise ValueError(f"logits and targets must both be [R, C], got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    _check_rate(rate, logits.shape[1])
    dtype = _compute_dtype(logits)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        z = logits.to(dtype).contiguous()
        positive = targets if targets.dtype == torch.bool else targets != 0
        flat_pos = _positive_pairs(positive.detach())  # [P], row-major
        pair_row = torch.div(flat_pos, z.shape[1], rounding_mode="floor")
        pair_cls = flat_pos - pair_row * z.shape[1]
        plan = None if rate is None else _rate_plan(rate, tau, dtype, z.device)
        pair_loss = _PairLoss.apply(z, positive, flat_pos, pair_row, pair_cls, plan)
        if reduction == "none" or not normalize_by_positives:
            per_roi = z.new_zeros(z.shape[0]).index_add(0, pair_row, pair_loss)  # [R]
        if reduction == "none":
            return per_roi
        if normalize_by_positives:
            total = pair_loss.sum()
            return total if reduction == "sum" else total / max(pair_row.numel(), 1)
        total = per_roi.sum()
        return total if reduction == "sum" else total / max(z.shape[0], 1)


def concurrent_softmax_scores(logits: torch.Tensor, rate: torch.Tensor | None,
                              tau: float = 1.0) -> torch.Tensor:
    """Test-time CSM scores s_ri = e^{z_ri} / (e^{z_ri} + sum_{j != i} (1 - r_ij)^tau e^{z_rj})
    (spec §2.2; the sum includes the background). logits [R, C]; rate [C, C] or None (= 0, which
    gives softmax). Returns [R, C] (background column included) in float32 (float64 for float64
    logits); differentiable. Scores do not sum to 1.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [R, C], got {tuple(logits.shape)}")
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    _check_rate(rate, logits.shape[1])
    dtype = _compute_dtype(logits)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        z = logits.to(dtype)
        if rate is None or tau == 0:
            return torch.softmax(z, dim=1)
        w = _rate_plan(rate, tau, dtype, z.device).weights  # [C, C]
        m = z.detach().amax(dim=1, keepdim=True)
        shifted = z - m  # [R, C] <= 0
        e = torch.exp(shifted)
        denom = e + e @ w.T  # [R, C], D_ri e^{-m_r}: a matmul of nonnegatives, no cancellation
        low = denom < _underflow_limit(dtype)
        log_s = shifted - torch.log(torch.where(low, torch.ones_like(denom), denom))
        if bool(low.any()):  # exact recomputation where terms of D may have underflowed
            rows, cols = low.nonzero(as_tuple=True)
            w_low = w[cols].index_put_((torch.arange(len(cols), device=z.device), cols),
                                       z.new_ones(()))  # w_ii = 1: the e^{z_i} term
            log_d = _exact_log_sums(z[rows], w_low)
            log_s = log_s.index_put((rows, cols), z[rows, cols] - log_d)
        return torch.exp(log_s)
