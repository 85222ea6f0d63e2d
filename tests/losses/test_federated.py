"""Federated loss (spec §5): the class draw's rules and determinism, the loss against a
brute-force loop, F = all classes equals sigmoid BCE, gradcheck and extreme logits."""

from __future__ import annotations

import pytest
import torch

from wilddet.losses import (
    federated_classes,
    federated_freq_weight,
    federated_generator,
    federated_loss,
    sigmoid_bce_loss,
)


def test_generator_is_a_pure_function_of_seed_iteration_rank():
    def draw(*key):
        return torch.rand(4, generator=federated_generator(*key))

    assert torch.equal(draw(3, 100, 1), draw(3, 100, 1))
    others = [draw(4, 100, 1), draw(3, 101, 1), draw(3, 100, 0), draw(1, 3, 100)]
    assert all(not torch.equal(draw(3, 100, 1), o) for o in others)
    big = federated_generator(2**40, 10**9, 7)  # any nonnegative ints
    assert torch.rand(1, generator=big).item() >= 0
    for bad in ((-1, 0, 0), (0, 1.5, 0), (0, 0, True)):
        with pytest.raises(ValueError, match="ints >= 0"):
            federated_generator(*bad)


def test_freq_weight():
    w = federated_freq_weight(torch.tensor([9, 4, 0, 16]))
    assert w.tolist() == [0.0, 2.0, 0.0, 4.0]
    with pytest.raises(ValueError):
        federated_freq_weight(torch.tensor([1, -1]))


def test_draw_rules_and_determinism():
    num_cols = 101
    weight = federated_freq_weight(torch.arange(num_cols) % 7)  # classes 7k have weight 0
    positives = torch.tensor([0, 5, 5, 42, 0, 99])
    classes = federated_classes(positives, weight, 20, federated_generator(0, 3, 0))
    assert classes.dtype == torch.int64 and len(classes) == 20
    assert torch.equal(classes, torch.unique(classes))  # sorted, unique
    assert 0 not in classes and {5, 42, 99} <= set(classes.tolist())
    assert all(weight[c] > 0 for c in set(classes.tolist()) - {5, 42, 99})  # w = 0 never drawn
    again = federated_classes(positives, weight, 20, federated_generator(0, 3, 0))
    assert torch.equal(classes, again)
    other = federated_classes(positives, weight, 20, federated_generator(0, 4, 0))
    assert not torch.equal(classes, other)
    # already enough positives: F is just those
    many = torch.arange(1, 31)
    assert torch.equal(federated_classes(many, weight, 20), many)
    # fewer candidates with weight > 0 than needed: positives plus all of them
    sparse = torch.zeros(num_cols, dtype=torch.float64)
    sparse[[10, 20, 30]] = 1.0
    got = federated_classes(torch.tensor([5]), sparse, 50, federated_generator(1, 1, 1))
    assert got.tolist() == [5, 10, 20, 30]
    # no positives at all, and weights of any float dtype
    got = federated_classes(torch.zeros(0, dtype=torch.long), weight.float(), 10,
                            federated_generator(1, 2, 3))
    assert len(got) == 10 and 0 not in got


def test_draw_follows_the_weights():
    # w ∝ (image count)^0.5: class 2 (count 400) is drawn ~20x as often as class 1 (count 1)
    weight = federated_freq_weight(torch.tensor([0, 1, 400, 0, 0]))
    hits = torch.zeros(5)
    for it in range(400):
        hits[federated_classes(torch.tensor([3]), weight, 2, federated_generator(0, it, 0))] += 1
    assert hits[3] == 400 and hits[0] == 0 and hits[4] == 0
    assert hits[1] + hits[2] == 400
    assert 380 * 20 / 21 - 40 < hits[2] < 400  # 20/21 expected


def test_bad_draw_arguments():
    weight = torch.ones(5)
    with pytest.raises(ValueError, match="positive_classes"):
        federated_classes(torch.tensor([7]), weight)
    with pytest.raises(ValueError, match="positive_classes"):
        federated_classes(torch.tensor([1.0]), weight)
    with pytest.raises(ValueError, match="freq_weight"):
        federated_classes(torch.tensor([1]), torch.tensor([1.0, -2.0]))


def brute_federated(z, y, classes, bce):
    total = sum(bce(float(z[r][j]), float(y[r][j])) for r in range(len(z)) for j in classes)
    return torch.tensor(total / len(z), dtype=torch.float64)


def test_loss_matches_brute_force(multi_hot_case, bce):
    z, y = multi_hot_case(20, 10, seed=0)
    classes = torch.tensor([2, 3, 7])  # classes 1, 4-6, 8, 9 are outside F, even positives
    assert y[:, [1, 4, 5, 6, 8, 9]].any()
    expected = brute_federated(z, y, classes.tolist(), bce)
    torch.testing.assert_close(federated_loss(z, y, classes), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(federated_loss(z.float(), y.float(), classes), expected.float())
    x = z.clone().requires_grad_()
    federated_loss(x, y, classes).backward()
    outside = torch.ones(10, dtype=torch.bool)
    outside[classes] = False
    assert (x.grad[:, outside] == 0).all() and (x.grad[:, classes] != 0).all()


def test_all_classes_is_sigmoid_bce(multi_hot_case):
    z, y = multi_hot_case(16, 8, seed=1)
    torch.testing.assert_close(federated_loss(z, y, torch.arange(1, 8)), sigmoid_bce_loss(z, y))


def test_gradcheck_and_extreme_logits(multi_hot_case):
    z, y = multi_hot_case(8, 6, seed=2)
    x = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: federated_loss(t, y, torch.tensor([1, 4, 5])), (x,))
    big = ((torch.randint(0, 3, (8, 6), generator=torch.Generator().manual_seed(0)) - 1) * 1e4)
    for dtype in (torch.float32, torch.float64):
        x = big.to(dtype).clone().requires_grad_()
        loss = federated_loss(x, y, torch.arange(1, 6))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_bad_loss_arguments():
    z, y = torch.zeros(2, 4), torch.zeros(2, 4)
    for bad in (torch.tensor([0, 1]), torch.tensor([4]), torch.tensor([1, 1])):
        with pytest.raises(ValueError, match="classes"):
            federated_loss(z, y, bad)
