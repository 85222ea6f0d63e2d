"""wilddet.model: torchvision Faster R-CNN + FPN with the concurrent-softmax RoI head."""

from wilddet.model.build import build_model, load_rate_matrix, set_test_scores
from wilddet.model.csm_roi_heads import CSMRoIHeads

__all__ = ["CSMRoIHeads", "build_model", "load_rate_matrix", "set_test_scores"]
