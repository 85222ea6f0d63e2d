"""EQLv2 against brute-force loops of the spec's formulas (§3): weights, loss, gradient
statistics, the module's update order, the DDP sum and a bit-exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from wilddet.losses import EQLv2, eqlv2_gradient_stats, eqlv2_loss, eqlv2_weights, sigmoid_bce_loss


def brute_weights(ratio, gamma=12.0, mu=0.8, alpha=4.0):
    neg = [1.0 / (1.0 + math.exp(-gamma * (float(g) - mu))) for g in ratio]
    return [1.0 + alpha * (1.0 - w) for w in neg], neg


def brute_loss_and_stats(z, y, pos_w, neg_w, bce):
    """(L, P-increment [K], N-increment [K]) by a loop over r and j >= 1."""
    num_classes = len(z[0]) - 1
    total, pos, neg = 0.0, [0.0] * num_classes, [0.0] * num_classes
    for r in range(len(z)):
        for j in range(1, num_classes + 1):
            zz, yy = float(z[r][j]), float(y[r][j])
            k = j - 1
            total += (yy * pos_w[k] + (1 - yy) * neg_w[k]) * bce(zz, yy)
            a = abs(1.0 / (1.0 + math.exp(-zz)) - yy)
            pos[k] += yy * a * pos_w[k]
            neg[k] += (1 - yy) * a * neg_w[k]
    as_t = lambda v: torch.tensor(v, dtype=torch.float64)
    return as_t(total / len(z)), as_t(pos), as_t(neg)


def test_weights_match_formula():
    ratio = torch.tensor([0.0, 0.5, 0.8, 1.0, 3.0], dtype=torch.float64)
    pos_w, neg_w = eqlv2_weights(ratio)
    exp_pos, exp_neg = brute_weights(ratio)
    torch.testing.assert_close(pos_w, torch.tensor(exp_pos, dtype=torch.float64))
    torch.testing.assert_close(neg_w, torch.tensor(exp_neg, dtype=torch.float64))
    assert neg_w[2] == 0.5 and pos_w[2] == 3.0  # φ(μ) = 1/2, 1 + α/2
    pos_w, neg_w = eqlv2_weights(ratio, gamma=2.0, mu=0.1, alpha=1.0)
    exp_pos, exp_neg = brute_weights(ratio, 2.0, 0.1, 1.0)
    torch.testing.assert_close(neg_w, torch.tensor(exp_neg, dtype=torch.float64))
    torch.testing.assert_close(pos_w, torch.tensor(exp_pos, dtype=torch.float64))


def test_loss_and_stats_match_brute_force(multi_hot_case, bce):
    z, y = multi_hot_case(20, 6, seed=0)
    pos_w = torch.tensor([1.0, 4.9, 2.0, 1.1, 3.0])  # float32 side inputs are cast
    neg_w = torch.tensor([1.0, 0.02, 0.7, 0.98, 0.3])
    loss, pos, neg = brute_loss_and_stats(z, y, pos_w.tolist(), neg_w.tolist(), bce)
    torch.testing.assert_close(eqlv2_loss(z, y, pos_w, neg_w), loss, rtol=1e-12, atol=1e-12)
    got_pos, got_neg = eqlv2_gradient_stats(z, y, pos_w, neg_w)
    torch.testing.assert_close(got_pos, pos, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_neg, neg, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(eqlv2_loss(z.float(), y.float(), pos_w, neg_w), loss.float())
    # unit weights: sigmoid BCE
    ones = torch.ones(5)
    torch.testing.assert_close(eqlv2_loss(z, y, ones, ones), sigmoid_bce_loss(z, y))


def test_stats_are_detached(multi_hot_case):
    z, y = multi_hot_case(5, 4, seed=1)
    pos, neg = eqlv2_gradient_stats(z.clone().requires_grad_(), y, torch.ones(3), torch.ones(3))
    assert not pos.requires_grad and not neg.requires_grad


def test_gradcheck(multi_hot_case):
    z, y = multi_hot_case(8, 5, seed=2)
    pos_w = torch.tensor([1.0, 3.0, 2.0, 4.5], dtype=torch.float64)
    neg_w = torch.tensor([1.0, 0.1, 0.5, 0.02], dtype=torch.float64)
    x = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: eqlv2_loss(t, y, pos_w, neg_w), (x,))


def test_extreme_logits():
    gen = torch.Generator().manual_seed(3)
    z = (torch.randint(0, 3, (16, 30), generator=gen) - 1) * 1e4
    y = torch.rand(16, 30, generator=gen) < 0.2
    module = EQLv2(29)
    for dtype in (torch.float32, torch.float64):
        for _ in range(2):  # before and after the first update
            x = z.to(dtype).clone().requires_grad_()
            loss = module.loss_and_update(x, y)
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert torch.isfinite(module.pos_grad).all() and torch.isfinite(module.neg_grad).all()


def test_module_update_order(multi_hot_case, bce):
    z1, y1 = multi_hot_case(12, 6, seed=4)
    z2, y2 = multi_hot_case(10, 6, seed=5)
    module = EQLv2(5)
    # before the first update: weights 1 (not φ(0)), loss = sigmoid BCE
    assert module.num_updates == 0
    torch.testing.assert_close(module.loss_and_update(z1, y1), sigmoid_bce_loss(z1, y1))
    _, pos1, neg1 = brute_loss_and_stats(z1, y1, [1.0] * 5, [1.0] * 5, bce)
    torch.testing.assert_close(module.pos_grad, pos1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(module.neg_grad, neg1, rtol=1e-12, atol=1e-12)
    assert module.num_updates == 1
    # step 2 uses the weights of step 1's statistics
    pos_w, neg_w = brute_weights((pos1 / (neg1 + 1e-10)).tolist())
    loss2, pos2, neg2 = brute_loss_and_stats(z2, y2, pos_w, neg_w, bce)
    torch.testing.assert_close(module.loss(z2, y2), loss2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(module.pos_grad, pos1)  # loss() does not update
    torch.testing.assert_close(module.loss_and_update(z2, y2), loss2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(module.pos_grad, pos1 + pos2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(module.neg_grad, neg1 + neg2, rtol=1e-12, atol=1e-12)


def test_two_ranks_equal_one_process_on_the_concatenated_batch(multi_hot_case):
    z_a, y_a = multi_hot_case(12, 6, seed=6)
    z_b, y_b = multi_hot_case(9, 6, seed=7)
    single, rank_a, rank_b = EQLv2(5), EQLv2(5), EQLv2(5)
    for step in range(3):  # a different batch split each step, weights evolving
        za, ya, zb, yb = (z_a, y_a, z_b, y_b) if step % 2 == 0 else (z_b, y_b, z_a, y_a)
        pos_b, neg_b = eqlv2_gradient_stats(zb, yb, *rank_b.weights())
        message_b = torch.cat([pos_b, neg_b]).double()
        pos_a, neg_a = eqlv2_gradient_stats(za, ya, *rank_a.weights())
        message_a = torch.cat([pos_a, neg_a]).double()
        rank_a.reduce_sum = lambda t, other=message_b: t + other  # a simulated all_reduce
        rank_b.reduce_sum = lambda t, other=message_a: t + other
        rank_a.loss_and_update(za, ya)
        rank_b.loss_and_update(zb, yb)
        single.loss_and_update(torch.cat([za, zb]), torch.cat([ya, yb]))
        torch.testing.assert_close(rank_a.pos_grad, single.pos_grad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rank_a.neg_grad, single.neg_grad, rtol=1e-12, atol=1e-12)
        # both ranks add the same sum (a + b == b + a exactly): their weights stay in sync
        assert torch.equal(rank_a.pos_grad, rank_b.pos_grad)
        assert torch.equal(rank_a.neg_grad, rank_b.neg_grad)
    assert single.num_updates == rank_a.num_updates == 3


def test_state_dict_round_trip_is_bit_exact(multi_hot_case):
    batches = [multi_hot_case(8, 6, seed=s) for s in range(8, 13)]
    module = EQLv2(5, gamma=10.0, mu=0.5, alpha=3.0)
    for z, y in batches[:2]:
        module.loss_and_update(z.float(), y)
    state = module.state_dict()
    assert set(state) == {"pos_grad", "neg_grad", "num_updates"}
    restored = EQLv2(5, gamma=10.0, mu=0.5, alpha=3.0)
    restored.load_state_dict(state)
    for z, y in batches[2:]:
        x1, x2 = z.float().requires_grad_(), z.float().requires_grad_()
        l1, l2 = module.loss_and_update(x1, y), restored.loss_and_update(x2, y)
        l1.backward()
        l2.backward()
        assert torch.equal(l1, l2) and torch.equal(x1.grad, x2.grad)
    for name in state:
        assert torch.equal(getattr(module, name), getattr(restored, name))


def test_bad_arguments():
    z = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="pos_w"):
        eqlv2_loss(z, torch.zeros(2, 4), torch.ones(4), torch.ones(3))
    with pytest.raises(ValueError, match="num_classes"):
        EQLv2(0)
