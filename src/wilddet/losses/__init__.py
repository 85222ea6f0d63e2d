"""wilddet.losses: pure-torch classifier losses (method spec §2, long-tail spec §1-5).

Concurrent softmax (CSM), sigmoid BCE, EQL, EQLv2, Seesaw (optionally × CSM rate) and the
federated loss, all on logits [R, K+1] (column 0 background) and multi-hot targets.
"""

from wilddet.losses.concurrent_softmax import (
    concurrent_softmax_loss,
    concurrent_softmax_scores,
    pad_rate_matrix,
)
from wilddet.losses.eql import eql_loss
from wilddet.losses.eqlv2 import EQLv2, eqlv2_gradient_stats, eqlv2_loss, eqlv2_weights
from wilddet.losses.federated import (
    federated_classes,
    federated_freq_weight,
    federated_generator,
    federated_loss,
)
from wilddet.losses.seesaw import Seesaw, seesaw_loss
from wilddet.losses.sigmoid_bce import sigmoid_bce_loss

__all__ = [
    "EQLv2",
    "Seesaw",
    "concurrent_softmax_loss",
    "concurrent_softmax_scores",
    "eql_loss",
    "eqlv2_gradient_stats",
    "eqlv2_loss",
    "eqlv2_weights",
    "federated_classes",
    "federated_freq_weight",
    "federated_generator",
    "federated_loss",
    "pad_rate_matrix",
    "seesaw_loss",
    "sigmoid_bce_loss",
]
