"""Seesaw loss against a hand-worked example, a brute-force loop of the spec's formula (§4),
F.cross_entropy, gradcheck, extreme logits, and the counts' update, DDP sum and resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from wilddet.losses import Seesaw, pad_rate_matrix, seesaw_loss


def brute_seesaw(z, y, counts, p=0.8, q=2.0, eps=1e-2, rate=None, tau=1.0):
    """[R] L_r by a loop over r, i, j of the spec's formula, in float64 python floats."""
    z = z.double().tolist()
    n = [max(float(c), 1.0) for c in counts]
    out = []
    for r, row in enumerate(z):
        top = max(row)
        lse = top + math.log(sum(math.exp(v - top) for v in row))
        sigma = [math.exp(v - lse) for v in row]
        loss = 0.0
        for i in range(len(row)):
            if not y[r][i]:
                continue
            terms = [row[i]]
            for j in range(len(row)):
                if j == i or y[r][j]:
                    continue
                s = 1.0
                if i > 0 and j > 0:
                    mitigation = (n[j] / n[i]) ** p if n[j] < n[i] else 1.0
                    compensation = max(1.0, sigma[j] / max(sigma[i], eps)) ** q
                    s = mitigation * compensation
                    if rate is not None:
                        s *= (1.0 - float(rate[i][j])) ** tau
                if s > 0:
                    terms.append(row[j] + math.log(s))
            t = max(terms)
            loss += t + math.log(sum(math.exp(v - t) for v in terms)) - row[i]
        out.append(loss)
    return torch.tensor(out, dtype=torch.float64)


def per_row(z, y, counts, **kw):
    return torch.stack([seesaw_loss(z[r:r + 1], y[r:r + 1], counts, **kw) for r in range(len(z))])


def test_hand_worked_three_classes():
    # e^z = (1, 2, 4): σ = (1, 2, 4) / 7; n = (-, 100, 25), p = 0.5: M_12 = 0.5, M_21 = 1
    z = torch.log(torch.tensor([[1.0, 2.0, 4.0]] * 4, dtype=torch.float64))
    y = torch.tensor([[0, 1, 0],   # class 1: C_12 = (σ_2/σ_1)^2 = 4, S_12 = 2 -> D = 2 + 1 + 8
                      [0, 0, 1],   # class 2: S_21 = 1 · max(1, 1/2)^2 = 1 -> D = 4 + 1 + 2
                      [0, 1, 1],   # both: the other positive leaves: D_1 = 3, D_2 = 5
                      [1, 0, 0]])  # background: plain softmax, D = 7
    counts = torch.tensor([0.0, 100.0, 25.0])
    expected = [math.log(11 / 2), math.log(7 / 4), math.log(3 / 2) + math.log(5 / 4),
                math.log(7)]
    got = per_row(z, y, counts, p=0.5, q=2.0)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    x = z[:1].clone().requires_grad_()
    seesaw_loss(x, y[:1], counts, p=0.5, q=2.0).backward()
    # dL/dz_1 = 2/11 - 1, dL/dz_0 = 1/11, dL/dz_2 = S_12 e^{z_2} / D = 8/11 (S held fixed)
    torch.testing.assert_close(x.grad, torch.tensor([[1 / 11, -9 / 11, 8 / 11]],
                                                    dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_hot_p_q_zero_equals_cross_entropy(dtype):
    gen = torch.Generator().manual_seed(0)
    z = (torch.randn(64, 11, generator=gen) * 4).to(dtype)
    labels = torch.randint(0, 11, (64,), generator=gen)
    counts = torch.randint(0, 50, (11,), generator=gen)
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    loss = seesaw_loss(a, F.one_hot(labels, 11), counts, p=0.0, q=0.0)
    expected = F.cross_entropy(b, labels)
    assert loss.dtype == dtype
    torch.testing.assert_close(loss, expected)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(a.grad, b.grad)


def branch_case():
    """Hand-made RoIs and counts that hit every branch: n_j < n_i and >=, counts below 1,
    σ_j > max(σ_i, eps), σ_j <= σ_i, σ_i < eps, background RoIs, multi-label RoIs, a RoI with
    both background and foreground labels and one without positives."""
    z = torch.tensor([[0.0, 1.0, 3.0, -1.0, 2.0, 0.5],    # class 1 under 2 and 4
                      [0.0, 5.0, 1.0, 0.0, -2.0, 0.0],     # class 1 dominant
                      [2.0, -6.0, 0.0, 4.0, 1.0, -1.0],    # class 1 with σ_1 < eps
                      [1.0, 2.0, 2.0, 0.0, 3.0, -3.0],     # classes 1 + 4
                      [3.0, 0.0, 1.0, 2.0, -1.0, 0.5],     # background
                      [0.5, 1.0, -1.0, 2.5, 0.0, 1.5],     # classes 3 + 5 + 2
                      [1.0, 0.0, 2.0, 0.0, 0.0, 0.0],      # background + class 2
                      [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]],     # no positive at all
                     dtype=torch.float64)
    y = torch.zeros_like(z, dtype=torch.bool)
    for r, labels in enumerate([[1], [1], [1], [1, 4], [0], [3, 5, 2], [0, 2], []]):
        y[r, labels] = True
    counts = torch.tensor([7.0, 40.0, 900.0, 3.0, 0.0, 40.0])  # n_4 = 0 is clamped to 1
    return z, y, counts


@pytest.mark.parametrize("p,q,eps", [(0.8, 2.0, 1e-2), (1.5, 0.7, 0.2), (0.0, 2.0, 1e-2),
                                     (0.8, 0.0, 1e-2)])
def test_matches_brute_force_on_every_branch(p, q, eps):
    z, y, counts = branch_case()
    expected = brute_seesaw(z, y, counts, p, q, eps)
    got = per_row(z, y, counts, p=p, q=q, eps=eps)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(seesaw_loss(z, y, counts, p, q, eps), expected.mean())
    got32 = seesaw_loss(z.float(), y, counts, p, q, eps)
    torch.testing.assert_close(got32, expected.mean().float())


def test_branches_matter():
    # the case really exercises mitigation and compensation (else the brute force proves little)
    z, y, counts = branch_case()
    base = seesaw_loss(z, y, counts, p=0.0, q=0.0)
    assert seesaw_loss(z, y, counts, p=0.8, q=0.0) < base  # mitigation lowers penalties
    assert seesaw_loss(z, y, counts, p=0.0, q=2.0) > base  # compensation raises them


def test_random_multi_label_with_rate_matches_brute_force(multi_hot_case):
    z, y = multi_hot_case(30, 9, seed=1)
    gen = torch.Generator().manual_seed(2)
    counts = torch.randint(0, 200, (9,), generator=gen).double()
    rate_kk = torch.rand(8, 8, generator=gen, dtype=torch.float64)
    rate_kk[rate_kk > 0.8] = 1.0  # some pairs fully excluded
    rate_kk[torch.rand(8, 8, generator=gen) < 0.5] = 0.0
    rate_kk.fill_diagonal_(0)
    rate = pad_rate_matrix(rate_kk)
    for tau in (1.0, 2.5):
        expected = brute_seesaw(z, y, counts, rate=rate, tau=tau)
        got = per_row(z, y, counts, rate=rate, tau=tau)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # no rate: the default
    torch.testing.assert_close(per_row(z, y, counts), brute_seesaw(z, y, counts), rtol=1e-12,
                               atol=1e-12)


def test_gradcheck(multi_hot_case):
    z, y = multi_hot_case(10, 6, seed=3)
    counts = torch.tensor([0.0, 5.0, 80.0, 1.0, 20.0, 300.0], dtype=torch.float64)
    rate = torch.zeros(6, 6, dtype=torch.float64)
    rate[1, 2] = rate[2, 1] = 0.6
    rate[3, 4] = 1.0
    # without compensation nothing is detached: a plain gradcheck
    x = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: seesaw_loss(t, y, counts, q=0.0, rate=rate), (x,))
    # with compensation σ is detached (C held fixed): compare with the closed form at fixed S
    x.grad = None
    seesaw_loss(x, y, counts, rate=rate).backward()
    torch.testing.assert_close(x.grad, analytic_grad(z, y, counts, rate), rtol=1e-10, atol=1e-12)


def analytic_grad(z, y, counts, rate, p=0.8, q=2.0, eps=1e-2):
    """dL/dz with S held fixed: (σ*_i - 1) on positives, S_ij e^{z_j} / D_i on negatives, / R."""
    grad = torch.zeros_like(z)
    n = counts.clamp(min=1)
    for r in range(len(z)):
        sigma = torch.softmax(z[r], 0)
        for i in torch.nonzero(y[r]).flatten().tolist():
            s = torch.ones(len(z[r]), dtype=torch.float64)
            if i > 0:
                for j in range(1, len(z[r])):
                    m = (n[j] / n[i]) ** p if n[j] < n[i] else 1.0
                    c = max(1.0, float(sigma[j] / max(float(sigma[i]), eps))) ** q
                    s[j] = m * c * (1 - rate[i, j])
            w = s * (~y[r]).double()
            d = math.exp(z[r, i]) + float((w * torch.exp(z[r])).sum())
            grad[r] += w * torch.exp(z[r]) / d
            grad[r, i] += math.exp(z[r, i]) / d - 1
    return grad / len(z)


def test_extreme_logits_are_finite():
    gen = torch.Generator().manual_seed(4)
    num_cols = 41
    z = (torch.randint(0, 3, (24, num_cols), generator=gen) - 1).double() * 1e4
    y = torch.rand(24, num_cols, generator=gen) < 0.05
    y[:, 0] = y.sum(1) == 0
    counts = torch.randint(0, 1000, (num_cols,), generator=gen)
    rate = torch.zeros(num_cols, num_cols, dtype=torch.float64)
    rate[1:, 1:] = (torch.rand(num_cols - 1, num_cols - 1, generator=gen) > 0.7).double()
    rate.fill_diagonal_(0)
    for dtype in (torch.float64, torch.float32):
        for r in (None, rate):
            x = z.to(dtype).clone().requires_grad_()
            loss = seesaw_loss(x, y, counts, rate=None if r is None else r.to(dtype))
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(x.grad).all(), (dtype, r is None)


def test_excluded_dominant_negative_is_recomputed_exactly():
    # class 1's only rival with logit 1e4 is class 2 at rate 1: every other e^{z - max} underflows,
    # yet D = e^0 (class 1) + e^0 (bg) + 2 e^0 (classes 3, 4, mitigation 1): L = log 4
    z = torch.tensor([[0.0, 0.0, 1e4, 0.0, 0.0]])
    y = torch.tensor([[False, True, False, False, False]])
    rate = torch.zeros(5, 5)
    rate[1, 2] = 1.0
    counts = torch.tensor([0.0, 10.0, 10.0, 50.0, 50.0])
    x = z.clone().requires_grad_()
    loss = seesaw_loss(x, y, counts, rate=rate)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(4.0), rel=1e-6)
    assert x.grad[0].tolist() == pytest.approx([0.25, -0.75, 0.0, 0.25, 0.25], rel=1e-6)


def test_counts_update_two_ranks_and_resume(multi_hot_case):
    z_a, y_a = multi_hot_case(12, 7, seed=5)
    z_b, y_b = multi_hot_case(9, 7, seed=6)
    single = Seesaw(6)
    single.update_counts(torch.cat([y_a, y_b]))
    other = Seesaw(6)  # rank b's own batch, added to rank a's by a simulated all_reduce
    rank_a = Seesaw(6, reduce_sum=lambda t: t + y_b.sum(0).to(t).index_fill(0, torch.tensor([0]),
                                                                              0.0))
    rank_a.update_counts(y_a)
    other.update_counts(y_b)
    assert torch.equal(rank_a.class_counts, single.class_counts)
    assert rank_a.class_counts[0] == 0 and rank_a.class_counts[1:].sum() == y_a[:, 1:].sum() + \
        y_b[:, 1:].sum()
    # loss_and_update: counts include the current batch before the loss
    fresh = Seesaw(6)
    loss = fresh.loss_and_update(z_a, y_a)
    torch.testing.assert_close(loss, seesaw_loss(z_a, y_a, fresh.class_counts))
    assert fresh.class_counts[1:].sum() == y_a[:, 1:].sum()
    # resume: state_dict round trip reproduces the next steps bit for bit
    restored = Seesaw(6)
    restored.load_state_dict(fresh.state_dict())
    for z, y in ((z_b, y_b), (z_a, y_a)):
        l1, l2 = fresh.loss_and_update(z, y), restored.loss_and_update(z, y)
        assert torch.equal(l1, l2)
    assert torch.equal(fresh.class_counts, restored.class_counts)
    assert list(fresh.state_dict()) == ["class_counts"]


def test_bad_arguments():
    z = torch.zeros(2, 3)
    y = torch.zeros(2, 3, dtype=torch.bool)
    counts = torch.ones(3)
    with pytest.raises(ValueError, match="class_counts"):
        seesaw_loss(z, y, torch.ones(4))
    with pytest.raises(ValueError, match="class_counts"):
        seesaw_loss(z, y, torch.tensor([1.0, -1.0, 2.0]))
    with pytest.raises(ValueError, match="eps"):
        seesaw_loss(z, y, counts, eps=0.0)
    with pytest.raises(ValueError, match="p, q"):
        seesaw_loss(z, y, counts, q=-1.0)
    with pytest.raises(ValueError, match="overflows"):
        seesaw_loss(z, y, counts, q=40.0)
    with pytest.raises(ValueError, match=r"\[C, C\]"):
        seesaw_loss(z, y, counts, rate=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\[R, C\]"):
        seesaw_loss(z, y[:, :2], counts)
    with pytest.raises(ValueError, match="targets"):
        Seesaw(2).update_counts(torch.zeros(2, 4))


def test_half_logits_are_computed_in_float32(multi_hot_case):
    z, y = multi_hot_case(12, 6, seed=7)
    counts = torch.tensor([0.0, 5.0, 80.0, 1.0, 20.0, 300.0])
    x = z.to(torch.bfloat16).requires_grad_()
    loss = seesaw_loss(x, y, counts)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(x.grad.float()).all()
    torch.testing.assert_close(loss, seesaw_loss(x.detach().float(), y, counts))


@pytest.mark.parametrize("with_rate", [False, True])
def test_rows_whose_softmax_underflows_match_brute_force(with_rate):
    # float32: row 0 has a positive 120 above everything (its negatives' σ underflow), row 1 a
    # positive 120 below the row's max (its own σ underflows), row 2 is ordinary; the loss and
    # its gradient must still follow the formula (rows taken with the negatives' own scale)
    z = torch.tensor([[0.0, 120.0, 1.0, 0.5, 2.0, -1.0],
                      [3.0, -118.0, 2.0, 1.0, 0.0, 1.5],
                      [0.5, 1.0, 2.0, -1.0, 0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([[0, 1, 0, 0, 1, 0], [0, 1, 1, 0, 0, 0], [0, 0, 1, 0, 0, 1]], dtype=torch.bool)
    counts = torch.tensor([0.0, 500.0, 10.0, 80.0, 40.0, 5.0])
    rate = None
    if with_rate:
        rate = torch.zeros(6, 6, dtype=torch.float64)
        rate[1, 3] = rate[2, 4] = rate[4, 2] = 0.7
    expected = brute_seesaw(z, y, counts, rate=rate).sum() / 3
    x = z.float().requires_grad_()
    loss = seesaw_loss(x, y, counts, rate=None if rate is None else rate.float())
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    x64 = z.clone().requires_grad_()
    seesaw_loss(x64, y, counts, rate=rate).backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-6)
