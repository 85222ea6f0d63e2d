"""Sigmoid BCE and EQL against brute-force loops of the spec's formulas (§1, §2), their special
cases, gradcheck and extreme logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wilddet.losses import eql_loss, sigmoid_bce_loss


def brute_eql(z, y, freq, lam, bce):
    """L = (1/R) Σ_r Σ_{j>=1} w_rj BCE, w_rj = 1 - E_r T(f_j) (1 - y_rj); a python loop."""
    total = 0.0
    for r in range(len(z)):
        foreground = any(bool(y[r][j]) for j in range(1, len(z[r])))
        for j in range(1, len(z[r])):
            rare = float(freq[j]) < lam
            w = 1.0 - float(foreground) * float(rare) * (1.0 - float(y[r][j]))
            total += w * bce(float(z[r][j]), float(y[r][j]))
    return torch.tensor(total / len(z), dtype=torch.float64)


def test_sigmoid_bce_matches_brute_force_and_torch(multi_hot_case, bce):
    z, y = multi_hot_case(20, 7, seed=0)
    expected = brute_eql(z, y, torch.ones(7), 0.0, bce)  # no rare class: plain BCE
    torch.testing.assert_close(sigmoid_bce_loss(z, y), expected, rtol=1e-12, atol=1e-12)
    by_torch = F.binary_cross_entropy_with_logits(z[:, 1:], y[:, 1:].double(), reduction="sum")
    torch.testing.assert_close(sigmoid_bce_loss(z, y.double()), by_torch / 20)
    got32 = sigmoid_bce_loss(z.float(), y)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32, expected.float())
    # the background column is unused
    z2 = z.clone()
    z2[:, 0] = 1e3
    torch.testing.assert_close(sigmoid_bce_loss(z2, y), sigmoid_bce_loss(z, y))


def test_eql_matches_brute_force_on_every_branch(multi_hot_case, bce):
    z, y = multi_hot_case(24, 8, seed=1)
    freq = torch.tensor([0.9, 1e-4, 0.3, 1e-3, 0.05, 2e-3, 0.2, 5e-4], dtype=torch.float32)
    lam = 1.76e-3  # rare: classes 1, 3, 7; frequent: 2, 4, 5, 6
    assert y[:, 0].any() and (y[:, 1:].sum(1) >= 2).any()  # background and multi-label RoIs
    assert (y[:, [1, 3, 7]] & ~y[:, :1]).any()  # rare classes also as positives
    expected = brute_eql(z, y, freq, lam, bce)
    got = eql_loss(z, y, freq, lam)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert got < sigmoid_bce_loss(z, y)  # the exemption removed some terms
    torch.testing.assert_close(eql_loss(z.float(), y, freq.double(), lam), expected.float())


def test_eql_lam_zero_is_sigmoid_bce(multi_hot_case):
    z, y = multi_hot_case(16, 6, seed=2)
    freq = torch.rand(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(eql_loss(z, y, freq, 0.0), sigmoid_bce_loss(z, y), rtol=0, atol=0)


def test_eql_background_rois_still_push_rare_classes_down():
    # one background RoI: every class gets its negative term, rare or not
    z = torch.tensor([[0.0, 2.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([[True, False, False]])
    freq = torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(eql_loss(z, y, freq, 0.5), sigmoid_bce_loss(z, y))
    # the same logits on a foreground RoI of class 2: class 1 (rare) is exempt
    y_fg = torch.tensor([[False, False, True]])
    expected = F.binary_cross_entropy_with_logits(z[0, 2], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(eql_loss(z, y_fg, freq, 0.5), expected)


def test_gradcheck(multi_hot_case):
    z, y = multi_hot_case(8, 5, seed=3)
    freq = torch.tensor([0.0, 1e-4, 0.5, 1e-4, 0.5], dtype=torch.float64)
    x = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: sigmoid_bce_loss(t, y), (x,))
    assert torch.autograd.gradcheck(lambda t: eql_loss(t, y, freq, 1e-3), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_logits(dtype):
    gen = torch.Generator().manual_seed(4)
    z = ((torch.randint(0, 3, (16, 30), generator=gen) - 1) * 1e4).to(dtype)
    y = torch.rand(16, 30, generator=gen) < 0.2
    freq = torch.rand(30, generator=gen) * 1e-2
    for fn in (lambda t: sigmoid_bce_loss(t, y), lambda t: eql_loss(t, y, freq, 5e-3)):
        x = z.clone().requires_grad_()
        loss = fn(x)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_empty_batch_and_bad_arguments():
    assert sigmoid_bce_loss(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.bool)).item() == 0
    with pytest.raises(ValueError, match=r"\[R, C\]"):
        sigmoid_bce_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="image_freq"):
        eql_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), 0.1)
    with pytest.raises(ValueError, match="finite"):
        eql_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, float("nan"), 0]), 0.1)


def test_half_logits_are_computed_in_float32(multi_hot_case):
    # bfloat16 logits (autocast) give a float32 loss equal to the float32 computation
    z, y = multi_hot_case(12, 6, seed=5)
    z16 = z.to(torch.bfloat16)
    freq = torch.tensor([0.0, 1e-4, 0.5, 1e-4, 0.5, 0.2])
    for fn in (lambda t: sigmoid_bce_loss(t, y), lambda t: eql_loss(t, y, freq, 1e-3)):
        x = z16.clone().requires_grad_()
        loss = fn(x)
        loss.backward()
        assert loss.dtype == torch.float32 and x.grad.dtype == torch.bfloat16
        torch.testing.assert_close(loss, fn(z16.float()))


def test_float32_block_sums_match_float64():
    # float32 sums softplus through products of 64-row blocks (_column_softplus): more rows than
    # a block, logits up to ±40, against float64
    gen = torch.Generator().manual_seed(6)
    z = torch.randn(150, 9, generator=gen, dtype=torch.float64) * 12
    y = torch.rand(150, 9, generator=gen) < 0.1
    expected = sigmoid_bce_loss(z, y)
    torch.testing.assert_close(sigmoid_bce_loss(z.float(), y).double(), expected, rtol=1e-6,
                               atol=0)
    freq = torch.rand(9, generator=gen) * 1e-2
    torch.testing.assert_close(eql_loss(z.float(), y, freq, 5e-3).double(),
                               eql_loss(z, y, freq, 5e-3), rtol=1e-6, atol=0)
