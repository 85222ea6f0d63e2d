"""Concurrent softmax loss and scores against hand-worked numbers, brute-force loops,
F.cross_entropy and gradcheck (method spec §2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wilddet.losses import concurrent_softmax_loss, concurrent_softmax_scores, pad_rate_matrix

# ---------------------------------------------------------------- independent references


def brute_log_sigma(z, y, rate, tau=1.0):
    """log σ*_ri for every (r, i) by the spec's formula, a python loop in log space (float64).
    y None = test time (no positives). Returns a [R, C] list of lists (nan where y_ri = 0 in
    training mode, to make accidental use visible)."""
    z = np.asarray(z, dtype=np.float64)
    rate = np.asarray(rate, dtype=np.float64)
    num_rows, num_cols = z.shape
    out = [[math.nan] * num_cols for _ in range(num_rows)]
    for r in range(num_rows):
        for i in range(num_cols):
            if y is not None and not y[r][i]:
                continue
            terms = [z[r, i]]
            for j in range(num_cols):
                if j == i:
                    continue
                w = (1.0 if y is None else 1.0 - float(y[r][j])) * (1.0 - rate[i, j]) ** tau
                if w > 0:
                    terms.append(z[r, j] + math.log(w))
            top = max(terms)
            lse = top + math.log(sum(math.exp(t - top) for t in terms))
            out[r][i] = z[r, i] - lse
    return out


def brute_loss(z, y, rate, tau=1.0):
    logs = brute_log_sigma(z, y, rate, tau)
    return torch.tensor([-sum(logs[r][i] for i in range(len(logs[r])) if y[r][i])
                         for r in range(len(logs))], dtype=torch.float64)


def random_case(num_rows, num_cols, seed, scale=3.0, density=1.0, with_ones=False):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num_rows, num_cols, generator=gen, dtype=torch.float64) * scale
    y = torch.rand(num_rows, num_cols, generator=gen) < 0.3
    y[:, 0] = False
    y[y.sum(1) == 0, 0] = True  # a RoI without foreground label is background
    rate = torch.rand(num_cols, num_cols, generator=gen, dtype=torch.float64)
    rate[torch.rand(num_cols, num_cols, generator=gen) >= density] = 0
    if with_ones:
        rate[rate > 0.7] = 1.0
    rate.fill_diagonal_(0)
    rate[0] = 0
    rate[:, 0] = 0
    return z, y, rate


# ---------------------------------------------------------------- reduces to cross-entropy


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("zero_rate", [True, False])
def test_one_hot_zero_rate_equals_cross_entropy(dtype, zero_rate):
    gen = torch.Generator().manual_seed(0)
    z = (torch.randn(64, 11, generator=gen) * 4).to(dtype)
    labels = torch.randint(0, 11, (64,), generator=gen)
    targets = F.one_hot(labels, 11).bool()
    rate = torch.zeros(11, 11, dtype=dtype) if zero_rate else None
    for reduction in ("mean", "sum", "none"):
        got = concurrent_softmax_loss(z, targets, rate, reduction=reduction)
        torch.testing.assert_close(got, F.cross_entropy(z, labels, reduction=reduction))
    # gradients too
    a = z.clone().requires_grad_()
    b = z.clone().requires_grad_()
    concurrent_softmax_loss(a, targets.float(), rate).backward()
    F.cross_entropy(b, labels).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_one_hot_with_rate_equals_cross_entropy_when_partners_are_absent():
    # rate only between classes 3 and 4; RoIs labelled 1 or 2 see plain softmax
    z = torch.randn(20, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 2, 0, 0] * 5)
    rate = torch.zeros(5, 5, dtype=torch.float64)
    rate[3, 4] = rate[4, 3] = 0.8
    got = concurrent_softmax_loss(z, F.one_hot(labels, 5), rate, reduction="none")
    torch.testing.assert_close(got, F.cross_entropy(z, labels, reduction="none"))


# ---------------------------------------------------------------- hand-worked example


def test_hand_worked_three_classes():
    # e^z = (1, 2, 3) for (background, class 1, class 2); r_12 = r_21 = 0.5
    z = torch.log(torch.tensor([[1.0, 2.0, 3.0]] * 3, dtype=torch.float64))
    rate = torch.tensor([[0, 0, 0], [0, 0, 0.5], [0, 0.5, 0]], dtype=torch.float64)
    y = torch.tensor([[0, 1, 0],   # class 1:    σ*_1 = 2 / (2 + 1 + 0.5*3) = 4/9
                      [0, 1, 1],   # classes 1+2: σ*_1 = 2 / (2 + 1) = 2/3, σ*_2 = 3 / (3 + 1)
                      [1, 0, 0]])  # background: σ*_0 = 1 / (1 + 2 + 3) = 1/6
    expected = torch.tensor([math.log(9 / 4), -math.log(2 / 3) - math.log(3 / 4), math.log(6)],
                            dtype=torch.float64)
    x = z.clone().requires_grad_()
    loss = concurrent_softmax_loss(x, y, rate, reduction="none")
    torch.testing.assert_close(loss, expected)
    loss.sum().backward()
    # row 0: dL/dz_1 = σ* - 1 = -5/9, dL/dz_0 = 1/4.5, dL/dz_2 = 0.5*3/4.5
    # row 1: dL/dz_1 = 2/3 - 1, dL/dz_2 = 3/4 - 1, dL/dz_0 = 1/3 + 1/4
    # row 2: softmax - e_0 = (1/6 - 1, 2/6, 3/6)
    expected_grad = torch.tensor([[2 / 9, -5 / 9, 1 / 3],
                                  [7 / 12, -1 / 3, -1 / 4],
                                  [-5 / 6, 1 / 3, 1 / 2]], dtype=torch.float64)
    torch.testing.assert_close(x.grad, expected_grad)
    # test-time scores: s_0 = 1/6, s_1 = 2 / (2 + 1 + 1.5) = 4/9, s_2 = 3 / (3 + 1 + 1) = 3/5
    scores = concurrent_softmax_scores(z[:1], rate)
    torch.testing.assert_close(scores, torch.tensor([[1 / 6, 4 / 9, 3 / 5]], dtype=torch.float64))
    # tau = 2: (1 - 0.5)^2 = 0.25 -> s_1 = 2 / 3.75 = 8/15, s_2 = 3 / 4.5 = 2/3
    scores = concurrent_softmax_scores(z[:1], rate, tau=2.0)
    torch.testing.assert_close(scores, torch.tensor([[1 / 6, 8 / 15, 2 / 3]], dtype=torch.float64))
    loss_tau = concurrent_softmax_loss(z[:1], y[:1], rate, tau=2.0)
    torch.testing.assert_close(loss_tau, torch.tensor(math.log(3.75 / 2), dtype=torch.float64))


# ---------------------------------------------------------------- brute force


@pytest.mark.parametrize("density,with_ones,tau", [
    (1.0, False, 1.0),   # dense path
    (0.15, False, 1.0),  # sparse path
    (0.15, True, 1.0),   # sparse path with r = 1 entries (cancellation guard)
    (1.0, True, 2.5),    # dense path, tau
    (0.15, False, 0.5),
])
def test_loss_matches_brute_force(density, with_ones, tau):
    z, y, rate = random_case(40, 12, seed=3, density=density, with_ones=with_ones)
    got = concurrent_softmax_loss(z, y, rate, reduction="none", tau=tau)
    torch.testing.assert_close(got, brute_loss(z, y, rate, tau), rtol=1e-12, atol=1e-12)
    got32 = concurrent_softmax_loss(z.float(), y, rate.float(), reduction="none", tau=tau)
    torch.testing.assert_close(got32, brute_loss(z, y, rate, tau).float())


def test_sparse_path_cancellation_is_recomputed_exactly():
    # class 1's only partner is class 2 with r = 1 - 2^-20 (exact in float32), and z_2 dominates:
    # the sparse formula A = S - (1 - w) u_2 would lose ~5 digits to cancellation (S ~ 1,
    # A ~ 1.7e-3); the pair must be recomputed on the dense path.
    num_cols = 40
    z = torch.zeros(2, num_cols, dtype=torch.float64)
    z[:, 2] = 10.0
    y = torch.zeros(2, num_cols, dtype=torch.bool)
    y[:, 1] = True
    rate = torch.zeros(num_cols, num_cols, dtype=torch.float64)
    rate[1, 2] = 1 - 2.0**-20
    for dtype in (torch.float64, torch.float32):
        got = concurrent_softmax_loss(z.to(dtype), y, rate.to(dtype), reduction="none")
        torch.testing.assert_close(got, brute_loss(z, y, rate).to(dtype), rtol=2e-7, atol=0)


def test_scores_match_brute_force():
    z, _, rate = random_case(30, 9, seed=4, with_ones=True)
    expected = torch.tensor(brute_log_sigma(z, None, rate), dtype=torch.float64).exp()
    torch.testing.assert_close(concurrent_softmax_scores(z, rate), expected)
    expected_tau = torch.tensor(brute_log_sigma(z, None, rate, tau=3.0), dtype=torch.float64).exp()
    torch.testing.assert_close(concurrent_softmax_scores(z, rate, tau=3.0), expected_tau)
    # rate 0 -> softmax
    torch.testing.assert_close(concurrent_softmax_scores(z, torch.zeros_like(rate)),
                               torch.softmax(z, 1))
    torch.testing.assert_close(concurrent_softmax_scores(z, None), torch.softmax(z, 1))


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("density,with_ones", [(1.0, False), (0.2, True), (1.0, True)])
def test_gradcheck_loss(density, with_ones):
    z, y, rate = random_case(12, 7, seed=5, density=density, with_ones=with_ones)
    x = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: concurrent_softmax_loss(t, y, rate, reduction="none", tau=1.3), (x,))
    assert torch.autograd.gradcheck(lambda t: concurrent_softmax_loss(t, y, rate), (x,))


def test_gradcheck_scores():
    z, _, rate = random_case(6, 5, seed=6, with_ones=True)
    x = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: concurrent_softmax_scores(t, rate, tau=0.7), (x,))


def test_gradient_facts():
    """dL/dz_i = σ*_i - 1 for every positive i (the other positive terms give it nothing);
    dL/dz_j = sum over positives i of w_ij e^{z_j} / D_i for a negative j."""
    z, y, rate = random_case(25, 8, seed=7, density=0.5)
    x = z.clone().requires_grad_()
    concurrent_softmax_loss(x, y, rate, reduction="sum").backward()
    log_sigma = brute_log_sigma(z, y, rate)
    for r in range(z.shape[0]):
        positives = [i for i in range(8) if y[r, i]]
        for j in range(8):
            if y[r, j]:
                expected = math.exp(log_sigma[r][j]) - 1.0
            else:  # w_ij e^{z_j} / D_i = (1 - r_ij) e^{z_j - z_i} σ*_i
                expected = sum((1 - float(rate[i, j])) * math.exp(z[r, j] - z[r, i]
                                                                  + log_sigma[r][i])
                               for i in positives)
            assert x.grad[r, j].item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_second_backward_is_correct():
    # the first backward reuses a buffer; retain_graph must still give the same gradient twice
    z, y, rate = random_case(10, 6, seed=8)
    x = z.clone().requires_grad_()
    loss = concurrent_softmax_loss(x, y, rate)
    (g1,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)


# ---------------------------------------------------------------- stability


def test_extreme_logits_large_k():
    gen = torch.Generator().manual_seed(9)
    num_cols = 601
    z = (torch.randint(0, 3, (32, num_cols), generator=gen) - 1).double() * 1e4  # -1e4, 0, 1e4
    y = torch.rand(32, num_cols, generator=gen) < 0.01
    y[:, 0] = y.sum(1) == 0
    rate = torch.rand(num_cols, num_cols, generator=gen, dtype=torch.float64)
    rate[rate > 0.6] = 1.0  # many w = 0: the largest negative is often excluded
    rate[torch.rand(num_cols, num_cols, generator=gen) < 0.5] = 0
    rate.fill_diagonal_(0)
    rate[0] = rate[:, 0] = 0
    rows, cols = y.nonzero(as_tuple=True)

    def reference(z, rate):  # per positive pair, logsumexp over the masked row in float64
        logw = torch.log1p(-rate).masked_fill(torch.eye(num_cols, dtype=torch.bool), -math.inf)
        t = z[rows] + logw[cols] + torch.where(y[rows], -math.inf, 0.0)
        t[torch.arange(len(rows)), cols] = z[rows, cols]
        ref_pair = torch.logsumexp(t, 1) - z[rows, cols]
        return torch.zeros(32, dtype=torch.float64).index_add(0, rows, ref_pair)

    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        x = z.to(dtype).clone().requires_grad_()
        loss = concurrent_softmax_loss(x, y, rate.to(dtype), reduction="none")
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(x.grad).all(), dtype
        expected = reference(x.detach().double(), rate.to(dtype).double())
        torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-6)
        scores = concurrent_softmax_scores(x.detach(), rate.to(dtype))
        assert torch.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    # scores: reference by logsumexp over the full row per entry
    s = concurrent_softmax_scores(z[:4], rate)
    logw = torch.log1p(-rate).masked_fill(torch.eye(num_cols, dtype=torch.bool), -math.inf)
    t = z[:4, None, :] + logw[None]  # [4, C, C]
    t[:, torch.arange(num_cols), torch.arange(num_cols)] = z[:4]
    expected = torch.exp(z[:4] - torch.logsumexp(t, 2))
    torch.testing.assert_close(s, expected, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_excluded_dominant_partner_underflow_path(dtype):
    # z = (0, 0, 1e4, 0, 0), r_12 = 1: class 1 ignores class 2, so σ*_1 = s_1 = 1 / (1 + 3) even
    # though every e^{z_j - max} except class 2's underflows (the exact recomputation path)
    z = torch.tensor([[0.0, 0.0, 1e4, 0.0, 0.0]], dtype=dtype)
    rate = torch.zeros(5, 5, dtype=dtype)
    rate[1, 2] = 1.0
    y = torch.tensor([[False, True, False, False, False]])
    x = z.clone().requires_grad_()
    loss = concurrent_softmax_loss(x, y, rate)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(4.0), rel=1e-6)
    assert x.grad[0].tolist() == pytest.approx([0.25, -0.75, 0.0, 0.25, 0.25], rel=1e-6)
    scores = concurrent_softmax_scores(z, rate)
    assert scores[0, 1].item() == pytest.approx(0.25, rel=1e-6)
    assert scores[0, 2].item() == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_cpu(dtype):
    gen = torch.Generator().manual_seed(10)
    layer = torch.nn.Linear(32, 601)
    feats = torch.randn(64, 32, generator=gen) * 300  # logits in the thousands
    y = F.one_hot(torch.randint(0, 601, (64,), generator=gen), 601).bool()
    y[:8, 1:4] = True
    rate = torch.rand(601, 601, generator=gen) * (torch.rand(601, 601, generator=gen) < 0.05)
    rate.fill_diagonal_(0)
    rate[0] = rate[:, 0] = 0
    with torch.autocast("cpu", dtype=dtype):
        logits = layer(feats)
        assert logits.dtype == dtype
        loss = concurrent_softmax_loss(logits, y, rate)
        scores = concurrent_softmax_scores(logits, rate)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all()
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()
    expected = concurrent_softmax_loss(logits.detach().double(), y, rate.double())
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-4)


def test_row_with_only_positives_and_empty_input():
    z = torch.randn(3, 4, dtype=torch.float64)
    y = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    x = z.clone().requires_grad_()
    loss = concurrent_softmax_loss(x, y, torch.zeros(4, 4, dtype=torch.float64), reduction="none")
    loss.sum().backward()
    assert loss[0] == 0 and loss[2] == 0  # σ* = 1 with no negative; no positive: no term
    assert torch.isfinite(x.grad).all() and (x.grad[0] == 0).all() and (x.grad[2] == 0).all()
    empty = concurrent_softmax_loss(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.bool), None)
    assert empty.item() == 0


# ---------------------------------------------------------------- reductions and validation


def test_reductions():
    z, y, rate = random_case(15, 6, seed=11)
    per_roi = concurrent_softmax_loss(z, y, rate, reduction="none")
    assert per_roi.shape == (15,)
    torch.testing.assert_close(concurrent_softmax_loss(z, y, rate, reduction="sum"), per_roi.sum())
    torch.testing.assert_close(concurrent_softmax_loss(z, y, rate), per_roi.mean())
    by_pos = concurrent_softmax_loss(z, y, rate, normalize_by_positives=True)
    torch.testing.assert_close(by_pos, per_roi.sum() / y.sum())
    torch.testing.assert_close(concurrent_softmax_loss(z, y.double(), rate), per_roi.mean())


def test_bad_arguments():
    z = torch.zeros(2, 3)
    y = torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="reduction"):
        concurrent_softmax_loss(z, y, None, reduction="avg")
    with pytest.raises(ValueError, match=r"\[C, C\]"):
        concurrent_softmax_loss(z, y, torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\[R, C\]"):
        concurrent_softmax_loss(z, y[:, :2], None)
    with pytest.raises(ValueError, match="tau"):
        concurrent_softmax_scores(z, None, tau=-1.0)


def test_pad_rate_matrix():
    rate_kk = np.array([[0, 0.25], [0.5, 0]])
    padded = pad_rate_matrix(rate_kk)
    assert padded.dtype == torch.float32 and padded.shape == (3, 3)
    torch.testing.assert_close(padded, torch.tensor([[0, 0, 0], [0, 0, 0.25], [0, 0.5, 0]]))
    t = pad_rate_matrix(torch.tensor(rate_kk))
    assert t.dtype == torch.float64
    for bad in (np.zeros((2, 3)), np.array([[0.5, 0], [0, 0]]), np.array([[0, 1.5], [0, 0]]),
                np.array([[0, np.nan], [0, 0]])):
        with pytest.raises(ValueError):
            pad_rate_matrix(bad)


def test_plan_cache_follows_in_place_changes():
    z, y, rate = random_case(10, 6, seed=12)
    rate = rate.clone()
    before = concurrent_softmax_loss(z, y, rate, reduction="none")
    rate.mul_(0.5)  # same tensor object, new version: the cached plan must not be reused
    after = concurrent_softmax_loss(z, y, rate, reduction="none")
    torch.testing.assert_close(after, brute_loss(z, y, rate))
    assert not torch.allclose(before, after)


def test_rows_whose_softmax_underflows_match_brute_force():
    # float32: row 0 has a positive 120 above the rest (its negatives' σ underflow), row 1 a
    # positive 120 below the row's max (its own σ underflows), row 2 is ordinary
    z = torch.tensor([[0.0, 120.0, 1.0, 0.5, 2.0, -1.0],
                      [3.0, -118.0, 2.0, 1.0, 0.0, 1.5],
                      [0.5, 1.0, 2.0, -1.0, 0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([[0, 1, 0, 0, 1, 0], [0, 1, 1, 0, 0, 0], [0, 0, 1, 0, 0, 1]], dtype=torch.bool)
    rate = torch.zeros(6, 6, dtype=torch.float64)
    for r in (None, rate):
        x = z.float().requires_grad_()
        loss = concurrent_softmax_loss(x, y, r, reduction="none")
        loss.sum().backward()
        torch.testing.assert_close(loss.double(), brute_loss(z, y, rate), rtol=1e-5, atol=1e-5)
        x64 = z.clone().requires_grad_()
        concurrent_softmax_loss(x64, y, r, reduction="none").sum().backward()
        torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-6)
