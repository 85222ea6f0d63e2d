"""wilddet.losses: pure-torch losses (concurrent softmax, method spec §2)."""

from wilddet.losses.concurrent_softmax import (
    concurrent_softmax_loss,
    concurrent_softmax_scores,
    pad_rate_matrix,
)

__all__ = ["concurrent_softmax_loss", "concurrent_softmax_scores", "pad_rate_matrix"]
