"""Classifier heads of the RoI box head: one object per loss, with its test-time scores.

Shapes: ``R`` sampled RoIs, ``K`` foreground classes, ``C = K + 1`` logit columns (0 =
background).

A ``ClassifierHead`` is what the RoI heads call: ``loss(logits [R, C], targets [R, C])`` (targets
multi-hot bool, a background RoI is e_0) gives the scalar classifier loss, ``scores(logits)``
the [R, C] test-time scores (column 0 is dropped by the RoI heads). The math is in
``wilddet.losses``; a head only holds its parameters and state. Heads (``name``, the config's
``model.classifier_loss``): ``SoftmaxCE`` (softmax), ``ConcurrentSoftmax``, ``SigmoidBCE``
(sigmoid), ``EQL``, ``EQLv2Head``, ``SeesawHead``, ``Federated``; ``engine.builders`` builds
them from the config. State:

- state that training accumulates or that comes from the training data (class frequencies)
  lives in persistent buffers, so it is saved in checkpoints and restored by ``--resume``;
- rate matrices are non-persistent buffers: they come from the run's config (``rate_file``),
  never from a checkpoint, so a softmax-trained model can be scored with CSM.

Test-time scores are a switch of their own (``test_scores``, method spec §2.2: training and
test activations are independent): a name of ``wilddet.model.choices.CLASSIFIERS`` standing for
that loss's natural scores (softmax, concurrent softmax with ``test_rate`` and ``tau``, or
sigmoid); the default is the head's own.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wilddet.losses import (
    EQLv2,
    Seesaw,
    concurrent_softmax_loss,
    concurrent_softmax_scores,
    eql_loss,
    federated_classes,
    federated_freq_weight,
    federated_generator,
    federated_loss,
    pad_rate_matrix,
    sigmoid_bce_loss,
)
from wilddet.model.choices import SCORE_ACTIVATION, check_classifier_name


def model_rate(rate_kk, num_classes: int, name: str = "rate") -> torch.Tensor | None:
    """The analyzer's [K, K] rate (numpy or tensor; class codes 0..K-1) as the model's
    [C, C] float32 rate with a zero background row and column, or None for None.

    The model's one entry point for rate matrices: ``pad_rate_matrix`` checks that the matrix
    is finite, in [0, 1] and has a zero diagonal; this adds that it is [K, K] for this model.
    """
    if rate_kk is None:
        return None
    rate = rate_kk if isinstance(rate_kk, torch.Tensor) else np.asarray(rate_kk)
    if tuple(rate.shape) != (num_classes, num_classes):
        raise ValueError(f"{name} must be the analyzer's [K, K] = [{num_classes}, "
                         f"{num_classes}] matrix, got {tuple(rate.shape)}")
    return pad_rate_matrix(rate).float()


def _check_tau(tau: float) -> float:
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    return float(tau)


class ClassifierHead(nn.Module, abc.ABC):
    """A classifier loss with its test-time scores (see the module docstring).

    num_classes: K. test_scores: a name of ``CLASSIFIERS`` (None = this head's ``name``);
    test_rate: the [K, K] rate of test-time CSM scores (None = r ≡ 0) and tau its exponent on
    (1 - r). Subclasses set ``name`` and implement ``loss``; ``multi_label = False`` tells the
    RoI heads to pass one-hot targets of the matched box's label instead of multi-hot ones.
    """

    name: str
    multi_label: bool = True

    def __init__(self, num_classes: int, *, test_scores: str | None = None,
                 test_rate=None, tau: float = 1.0):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.test_scores = check_classifier_name("test_scores", test_scores or self.name)
        self.tau = _check_tau(tau)
        self.register_buffer("test_rate", model_rate(test_rate, num_classes, "test_rate"),
                             persistent=False)

    @abc.abstractmethod
    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scalar loss of logits [R, C] and targets [R, C] bool (one positive per row at least;
        a background RoI is e_0)."""

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """[R, C] test-time scores of ``test_scores``'s activation."""
        match SCORE_ACTIVATION[self.test_scores]:
            case "softmax":
                return F.softmax(logits, dim=-1)
            case "sigmoid":
                return torch.sigmoid(logits)
            case "concurrent_softmax":
                return concurrent_softmax_scores(logits, self.test_rate, tau=self.tau)
            case other:  # pragma: no cover - SCORE_ACTIVATION has no other value
                raise AssertionError(other)

    def set_test_scores(self, mode: str, *, rate=None, tau: float | None = None) -> None:
        """Switch the test-time scores to ``mode``; optionally replace the [K, K] rate of the
        test-time CSM scores (the training loss keeps its own) and tau."""
        self.test_scores = check_classifier_name("test_scores", mode)
        if rate is not None:  # moved to the logits' device when used
            self.test_rate = model_rate(rate, self.num_classes, "test rate")
        if tau is not None:
            self.tau = _check_tau(tau)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, test_scores={self.test_scores!r}"


class SoftmaxCE(ClassifierHead):
    """Softmax cross-entropy on the matched box's label (torchvision's Fast R-CNN loss).

    Takes one-hot targets (``multi_label = False``); natural scores: softmax.
    """

    name = "softmax"
    multi_label = False

    def loss(self, logits, targets):
        if bool((targets.sum(dim=1) != 1).any()):
            raise ValueError("softmax cross-entropy needs exactly one positive per RoI")
        return F.cross_entropy(logits, targets.to(torch.int64).argmax(dim=1))


class ConcurrentSoftmax(ClassifierHead):
    """Concurrent softmax (method spec §2.1): ``concurrent_softmax_loss`` with the training
    rate [K, K] (None = r ≡ 0) and exponent tau; normalize_by_positives divides by the number of
    positive labels instead of RoIs. test_rate None = the training rate. Natural scores: CSM.
    """

    name = "concurrent_softmax"

    def __init__(self, num_classes: int, rate=None, *, tau: float = 1.0,
                 normalize_by_positives: bool = False, test_scores: str | None = None,
                 test_rate=None):
        super().__init__(num_classes, test_scores=test_scores,
                         test_rate=rate if test_rate is None else test_rate, tau=tau)
        self.normalize_by_positives = normalize_by_positives
        self.register_buffer("rate", model_rate(rate, num_classes), persistent=False)

    def loss(self, logits, targets):
        return concurrent_softmax_loss(logits, targets, self.rate, tau=self.tau,
                                       normalize_by_positives=self.normalize_by_positives)


class SigmoidBCE(ClassifierHead):
    """Binary cross-entropy on the K foreground columns of the multi-hot targets, summed over
    classes, averaged over RoIs (long-tail-losses spec §1). Natural scores: sigmoid."""

    name = "sigmoid"

    def loss(self, logits, targets):
        return sigmoid_bce_loss(logits, targets)


ReduceSum = Callable[[torch.Tensor], torch.Tensor]


def _class_image_counts(image_counts, num_classes: int) -> torch.Tensor:
    """Images per class code [K] (the training index's N_c) -> [C] float64 with a 0 for the
    background; NaN when not given (to be loaded from a checkpoint)."""
    if image_counts is None:
        return torch.full((num_classes + 1,), float("nan"), dtype=torch.float64)
    counts = torch.as_tensor(np.asarray(image_counts), dtype=torch.float64)
    if tuple(counts.shape) != (num_classes,) or bool((counts < 0).any()):
        raise ValueError(f"image_counts must be [K] = [{num_classes}] counts >= 0, "
                         f"got shape {tuple(counts.shape)}")
    return F.pad(counts, (1, 0))


class _NeedsTrainingStatistics(ClassifierHead):
    """A head with a persistent [C] buffer derived from the training index (class frequencies),
    NaN when the head was built without it: then it must come from ``load_state_dict`` (a
    checkpoint) before ``loss`` is called; predicting does not need it."""

    statistic: str  # the buffer's name

    def _set_statistic(self, value: torch.Tensor, known: bool) -> None:
        self.register_buffer(self.statistic, value)
        # a Python flag, not an isnan() test per step (no host synchronisation)
        self._statistic_known = known
        self.register_load_state_dict_post_hook(_mark_statistic_known)

    def _check_statistic(self) -> None:
        if not self._statistic_known:
            raise RuntimeError(f"{type(self).__name__} was built without the training set's "
                               f"class image counts ({self.statistic}): build it with the "
                               f"training index, or load a checkpoint first")


def _mark_statistic_known(module: _NeedsTrainingStatistics, incompatible_keys) -> None:
    module._statistic_known = bool(torch.isfinite(getattr(module, module.statistic)).all())


class EQL(_NeedsTrainingStatistics):
    """Equalization loss (Tan et al., CVPR 2020; long-tail-losses spec §2): ``eql_loss`` with
    f_j = image_counts_j / num_images (the fraction of training images that contain class j)
    and threshold lam. image_counts [K] per class code (None: from a checkpoint). Natural
    scores: sigmoid. Buffer ``image_freq`` [C] (persistent)."""

    name = "eql"
    statistic = "image_freq"

    def __init__(self, num_classes: int, image_counts=None, num_images: int = 1, *,
                 lam: float = 1.76e-3, test_scores: str | None = None, test_rate=None,
                 tau: float = 1.0):
        super().__init__(num_classes, test_scores=test_scores, test_rate=test_rate, tau=tau)
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        self.lam = float(lam)
        freq = _class_image_counts(image_counts, num_classes) / num_images
        self._set_statistic(freq, image_counts is not None)

    def loss(self, logits, targets):
        self._check_statistic()
        return eql_loss(logits, targets, self.image_freq, self.lam)


class EQLv2Head(ClassifierHead):
    """EQLv2 (Tan et al., CVPR 2021; spec §3): ``wilddet.losses.EQLv2`` (submodule ``eqlv2``,
    its gradient statistics in buffers), updated after every loss; ``reduce_sum`` sums the
    statistics over DDP ranks (None = one process). Natural scores: sigmoid."""

    name = "eqlv2"

    def __init__(self, num_classes: int, *, gamma: float = 12.0, mu: float = 0.8,
                 alpha: float = 4.0, reduce_sum: ReduceSum | None = None,
                 test_scores: str | None = None, test_rate=None, tau: float = 1.0):
        super().__init__(num_classes, test_scores=test_scores, test_rate=test_rate, tau=tau)
        self.eqlv2 = EQLv2(num_classes, gamma, mu, alpha, reduce_sum=reduce_sum)

    def loss(self, logits, targets):
        return self.eqlv2.loss_and_update(logits, targets)


class SeesawHead(ClassifierHead):
    """Seesaw loss (Wang et al., CVPR 2021; spec §4): ``wilddet.losses.Seesaw`` (submodule
    ``seesaw``, its running class counts in a buffer, including the current batch). rate: the
    [K, K] rate of seesaw × CSM (None = plain seesaw) with exponent tau. The paper's separate
    objectness branch is not reproduced: the background is column 0 of one softmax. Natural
    scores: softmax."""

    name = "seesaw"

    def __init__(self, num_classes: int, rate=None, *, p: float = 0.8, q: float = 2.0,
                 eps: float = 1e-2, tau: float = 1.0, reduce_sum: ReduceSum | None = None,
                 test_scores: str | None = None, test_rate=None):
        super().__init__(num_classes, test_scores=test_scores, test_rate=test_rate, tau=tau)
        self.seesaw = Seesaw(num_classes, p, q, eps, tau, reduce_sum=reduce_sum)
        self.register_buffer("rate", model_rate(rate, num_classes), persistent=False)

    def loss(self, logits, targets):
        return self.seesaw.loss_and_update(logits, targets, self.rate)


class Federated(_NeedsTrainingStatistics):
    """Federated loss (Zhou et al. 2021; spec §5): BCE over F = the batch's positive classes
    (those of the rank's sampled RoIs, as detectron2's ``get_fed_loss_classes``) plus classes
    drawn ∝ w_j = image_counts_j^freq_power, ``num_sampled_classes`` in all.

    The draw of step t uses ``federated_generator(seed, t, rank)``; t counts the calls of
    ``loss`` in the persistent buffer ``iteration``, so a resumed run draws the same subsets.
    image_counts [K] per class code (None: from a checkpoint). Buffer ``freq_weight`` [C].
    Natural scores: sigmoid.
    """

    name = "federated"
    statistic = "freq_weight"

    def __init__(self, num_classes: int, image_counts=None, *, num_sampled_classes: int = 50,
                 freq_power: float = 0.5, seed: int = 0, rank: int = 0,
                 test_scores: str | None = None, test_rate=None, tau: float = 1.0):
        super().__init__(num_classes, test_scores=test_scores, test_rate=test_rate, tau=tau)
        if num_sampled_classes < 1:
            raise ValueError(f"num_sampled_classes must be >= 1, got {num_sampled_classes}")
        self.num_sampled_classes = int(num_sampled_classes)
        self.seed, self.rank = int(seed), int(rank)
        counts = _class_image_counts(image_counts, num_classes)
        weight = counts if image_counts is None else federated_freq_weight(counts, freq_power)
        self._set_statistic(weight, image_counts is not None)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.int64))

    def sampled_classes(self, targets: torch.Tensor) -> torch.Tensor:
        """F of the current step [F] (sorted class indices in 1..K); does not advance it."""
        positives = targets[:, 1:].any(dim=0).nonzero().squeeze(1) + 1
        generator = federated_generator(self.seed, int(self.iteration), self.rank)
        return federated_classes(positives, self.freq_weight, self.num_sampled_classes,
                                 generator)

    def loss(self, logits, targets):
        self._check_statistic()
        classes = self.sampled_classes(targets)
        self.iteration += 1
        return federated_loss(logits, targets, classes)
