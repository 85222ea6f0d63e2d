"""Helper of test_train_ddp (not a test): ``train(config)`` with anchor/RoI subsampling made
deterministic (the first k positives and negatives instead of a random k).

Why: torchvision draws the subsample from each process's own torch generator, so one process
with G images and W processes with G / W images draw different subsets however they are seeded;
with the draw fixed, the two set-ups must compute the same gradients.

    python ddp_deterministic_train.py CONFIG.toml OUT_DIR    (directly or under torchrun)
"""

from __future__ import annotations

import sys

import torch
from torchvision.models.detection import _utils as det_utils


def first_k_sampler(self, matched_idxs):
    pos_idx, neg_idx = [], []
    for matched in matched_idxs:
        positive = torch.where(matched >= 1)[0]
        negative = torch.where(matched == 0)[0]
        num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
        num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
        pos_mask = torch.zeros_like(matched, dtype=torch.uint8)
        neg_mask = torch.zeros_like(matched, dtype=torch.uint8)
        pos_mask[positive[:num_pos]] = 1
        neg_mask[negative[:num_neg]] = 1
        pos_idx.append(pos_mask)
        neg_idx.append(neg_mask)
    return pos_idx, neg_idx


def patch() -> None:
    det_utils.BalancedPositiveNegativeSampler.__call__ = first_k_sampler


if __name__ == "__main__":
    patch()
    from wilddet.config import load_config
    from wilddet.engine.train import train

    train(load_config(sys.argv[1]), sys.argv[2], progress=False)
