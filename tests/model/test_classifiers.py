"""The classifier heads on their own: what they save in a checkpoint, their natural test scores,
heads built without training statistics, the federated draw as a function of (seed, iteration,
rank), and the rate matrix entry point."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wilddet.model import classifiers as heads
from wilddet.model.choices import CLASSIFIERS, SCORE_ACTIVATION

K = 4
COUNTS = np.array([9, 4, 1, 0])  # images per class code
RATE = np.array([[0, 0.5, 0, 0], [0.5, 0, 0, 0], [0, 0, 0, 0.9], [0, 0, 0.9, 0]], np.float32)


def make(name, **kwargs):
    match name:
        case "softmax":
            return heads.SoftmaxCE(K, **kwargs)
        case "concurrent_softmax":
            return heads.ConcurrentSoftmax(K, RATE, **kwargs)
        case "sigmoid":
            return heads.SigmoidBCE(K, **kwargs)
        case "eql":
            return heads.EQL(K, COUNTS, 10, lam=0.2, **kwargs)
        case "eqlv2":
            return heads.EQLv2Head(K, **kwargs)
        case "seesaw":
            return heads.SeesawHead(K, RATE, **kwargs)
        case "federated":
            return heads.Federated(K, COUNTS, num_sampled_classes=2, **kwargs)
    raise AssertionError(name)


def batch(seed=0, rois=16):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rois, K + 1, generator=gen)
    labels = torch.randint(0, 3, (rois,), generator=gen)  # classes 3, 4 never positive
    return logits, torch.nn.functional.one_hot(labels, K + 1).bool()


PERSISTENT = {"softmax": set(), "concurrent_softmax": set(), "sigmoid": set(),
              "eql": {"image_freq"}, "eqlv2": {"eqlv2.pos_grad", "eqlv2.neg_grad",
                                                "eqlv2.num_updates"},
              "seesaw": {"seesaw.class_counts"}, "federated": {"freq_weight", "iteration"}}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_state_in_the_checkpoint_and_natural_scores(name):
    head = make(name, test_rate=RATE)
    assert head.name == name and head.test_scores == name
    assert set(head.state_dict()) == PERSISTENT[name]  # rates come from the config, never saved
    logits, targets = batch()
    loss = head.loss(logits.requires_grad_(), targets)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with torch.no_grad():
        scores = head.scores(logits)
    expected = {"softmax": torch.softmax(logits, 1), "sigmoid": torch.sigmoid(logits)}
    activation = SCORE_ACTIVATION[name]
    if activation in expected:
        torch.testing.assert_close(scores, expected[activation])
    else:  # CSM: partners 1 <-> 2 both keep a score above their softmax
        assert (scores[:, 1:] >= torch.softmax(logits, 1)[:, 1:] - 1e-6).all()


def test_eql_frequencies_and_federated_weights_come_from_the_image_counts():
    eql = make("eql")
    torch.testing.assert_close(eql.image_freq, torch.tensor([0, 0.9, 0.4, 0.1, 0.0],
                                                            dtype=torch.float64))
    federated = make("federated")
    torch.testing.assert_close(federated.freq_weight,
                               torch.tensor([0, 3, 2, 1, 0], dtype=torch.float64))


@pytest.mark.parametrize("name", ["eql", "federated"])
def test_a_head_built_without_statistics_needs_a_checkpoint(name):
    trained = make(name)
    blank = (heads.EQL(K, lam=0.2) if name == "eql"
             else heads.Federated(K, num_sampled_classes=2))
    logits, targets = batch()
    with pytest.raises(RuntimeError, match="class image counts"):
        blank.loss(logits, targets)
    trained.loss(logits, targets)
    blank.load_state_dict(trained.state_dict())
    torch.testing.assert_close(blank.loss(logits, targets), trained.loss(logits, targets))


def test_federated_draw_is_a_function_of_seed_iteration_and_rank():
    logits, targets = batch()
    targets = targets.clone()
    targets[:, 2:] = False  # positives: background and class 1 only, so 1 class is drawn
    targets[targets.sum(1) == 0, 0] = True

    def draws(head, steps):
        out = []
        for _ in range(steps):
            out.append(head.sampled_classes(targets).tolist())
            head.loss(logits, targets)
        return out

    straight = draws(make("federated", seed=3, rank=1), 6)
    assert all(d[0] == 1 and len(d) == 2 for d in straight)
    first = make("federated", seed=3, rank=1)
    draws(first, 2)
    resumed = make("federated", seed=3, rank=1)
    resumed.load_state_dict(first.state_dict())  # the iteration counter comes back
    assert draws(resumed, 4) == straight[2:]
    others = [draws(make("federated", seed=3, rank=0), 6), draws(make("federated", seed=4,
                                                                      rank=1), 6)]
    assert all(other != straight for other in others)


def test_seesaw_rate_is_used_by_the_loss_and_not_saved():
    logits, targets = batch()
    with_rate, plain = make("seesaw"), heads.SeesawHead(K)
    assert not torch.allclose(with_rate.loss(logits, targets), plain.loss(logits, targets))
    assert "rate" not in with_rate.state_dict()


def test_rate_entry_point_checks_the_matrix():
    torch.testing.assert_close(heads.model_rate(RATE, K)[1:, 1:], torch.from_numpy(RATE))
    assert heads.model_rate(None, K) is None
    with pytest.raises(ValueError, match=r"\[K, K\] = \[4, 4\]"):
        heads.model_rate(np.zeros((3, 3)), K)
    bad = RATE.copy()
    bad[0, 0] = 0.5
    with pytest.raises(ValueError, match="diagonal"):
        heads.model_rate(bad, K)
    with pytest.raises(ValueError, match="test_scores"):
        heads.SigmoidBCE(K, test_scores="focal")
    with pytest.raises(ValueError, match="image_counts"):
        heads.EQL(K, COUNTS[:2], 10)
