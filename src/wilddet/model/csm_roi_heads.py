"""torchvision's RoIHeads with a switchable classifier loss and score activation (spec §2).

Shapes: ``B`` images, ``R`` sampled RoIs (all images), ``M`` GT boxes of one image, ``K``
foreground classes, ``C = K + 1`` logit columns (0 = background).

Changes from ``torchvision.models.detection.roi_heads.RoIHeads``, and nothing else:

- ``select_training_samples`` runs the parent's matching and sampling, then adds multi-hot
  targets (``wilddet.model.targets``): the labels of every GT box with IoU > 0.9 to the matched
  box, plus hierarchy ancestors.
- The training losses: ``classifier_loss`` is "softmax" (cross-entropy on the matched box's
  label, torchvision's), "concurrent_softmax" (``concurrent_softmax_loss`` on the multi-hot
  targets) or "sigmoid" (binary cross-entropy on the K foreground columns of the multi-hot
  targets, summed over classes, averaged over RoIs). Box regression is class-agnostic by default
  (4 deltas per RoI); class-specific regression regresses every positive class to the matched box.
  Smooth-L1 with beta 1/9 summed and divided by R, as torchvision.
- ``postprocess_detections``: ``test_scores`` ("softmax", "concurrent_softmax", "sigmoid") turn
  logits into per-class scores; then torchvision's steps: clip, drop background, score
  threshold, remove tiny boxes, per-class NMS, top ``detections_per_img``. Class-agnostic boxes
  are shared by all classes of a RoI.

The rate matrix and the ancestor matrix are non-persistent buffers: they come from the build
arguments (the run's config), never from a checkpoint, so that test-time CSM can use a rate
matrix with a model trained with softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

from wilddet.losses import concurrent_softmax_loss, concurrent_softmax_scores
from wilddet.model.targets import gt_label_sets, roi_multi_hot

CLASSIFIER_LOSSES = ("softmax", "concurrent_softmax", "sigmoid")
TEST_SCORES = ("softmax", "concurrent_softmax", "sigmoid")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


class CSMRoIHeads(RoIHeads):
    """RoIHeads with multi-hot targets, a switchable classifier loss and score activation.

    Positional arguments as ``RoIHeads`` (box part only: no mask or keypoint heads). Keywords:
    num_classes K; classifier_loss / test_scores (see module docstring); rate [C, C] float
    (padded, see ``wilddet.losses.pad_rate_matrix``) or None = 0; test_rate [C, C] the matrix of
    test-time CSM scores (None = rate); tau exponent on (1 - r);
    ancestors [C, C] bool (``targets.ancestor_matrix``) or None; multi_hot (False: one-hot of the
    matched label); multi_hot_iou (IoU above which GT boxes are one object); class_agnostic
    (predictor outputs 4 deltas); normalize_by_positives (CSM mean over positive labels instead
    of RoIs); pre_nms_top_n (None, or keep only this many top-scoring (box, class) candidates
    per image before NMS).
    """

    def __init__(self, box_roi_pool, box_head, box_predictor, fg_iou_thresh, bg_iou_thresh,
                 batch_size_per_image, positive_fraction, bbox_reg_weights, score_thresh,
                 nms_thresh, detections_per_img, *, num_classes: int,
                 classifier_loss: str = "softmax", test_scores: str = "softmax",
                 rate: torch.Tensor | None = None, tau: float = 1.0,
                 ancestors: torch.Tensor | None = None, multi_hot: bool = True,
                 multi_hot_iou: float = 0.9, class_agnostic: bool = True,
                 normalize_by_positives: bool = False, pre_nms_top_n: int | None = None,
                 test_rate: torch.Tensor | None = None):
        super().__init__(box_roi_pool, box_head, box_predictor, fg_iou_thresh, bg_iou_thresh,
                         batch_size_per_image, positive_fraction, bbox_reg_weights, score_thresh,
                         nms_thresh, detections_per_img)
        num_labels = num_classes + 1
        self.num_classes = num_classes
        self.classifier_loss = check_choice("classifier_loss", classifier_loss, CLASSIFIER_LOSSES)
        self.test_scores = check_choice("test_scores", test_scores, TEST_SCORES)
        if tau < 0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        self.tau = float(tau)
        self.multi_hot = multi_hot
        self.multi_hot_iou = multi_hot_iou
        self.class_agnostic = class_agnostic
        self.normalize_by_positives = normalize_by_positives
        self.pre_nms_top_n = pre_nms_top_n
        if rate is None:
            rate = torch.zeros(num_labels, num_labels)
        if tuple(rate.shape) != (num_labels, num_labels):
            raise ValueError(f"rate must be [K+1, K+1] = [{num_labels}, {num_labels}], "
                             f"got {tuple(rate.shape)}")
        self.register_buffer("rate", rate.detach().float().clone(), persistent=False)
        # Test-time CSM may use its own matrix (e.g. with child<->ancestor pairs at 1, so a box
        # keeps high scores for a class and its parents); None = the training rate.
        if test_rate is None:
            test_rate = rate
        if tuple(test_rate.shape) != (num_labels, num_labels):
            raise ValueError(f"test_rate must be [K+1, K+1], got {tuple(test_rate.shape)}")
        self.register_buffer("test_rate", test_rate.detach().float().clone(), persistent=False)
        self.use_ancestors = ancestors is not None
        if ancestors is None:
            ancestors = torch.zeros(num_labels, num_labels, dtype=torch.bool)
        if tuple(ancestors.shape) != (num_labels, num_labels):
            raise ValueError(f"ancestors must be [K+1, K+1], got {tuple(ancestors.shape)}")
        self.register_buffer("ancestors", ancestors.bool().clone(), persistent=False)

    # ------------------------------------------------------------------ training

    def select_training_samples(self, proposals, targets):
        """The parent's matching and sampling, plus multi-hot targets.

        Returns (proposals, matched_idxs, labels, regression_targets, multi_hot): the parent's
        four lists (per image) and ``multi_hot``, a list of [R_b, C] bool.
        """
        proposals, matched_idxs, labels, regression_targets = super().select_training_samples(
            proposals, targets)
        num_labels = self.num_classes + 1
        multi_hot = []
        for target, labels_img, matched_img in zip(targets, labels, matched_idxs):
            if self.multi_hot:
                sets = gt_label_sets(target["boxes"], target["labels"], num_labels,
                                     self.multi_hot_iou,
                                     self.ancestors if self.use_ancestors else None)
                multi_hot.append(roi_multi_hot(labels_img, matched_img, sets))
            else:
                multi_hot.append(F.one_hot(labels_img, num_labels).bool())
        return proposals, matched_idxs, labels, regression_targets, multi_hot

    def classification_loss(self, class_logits: torch.Tensor, labels: torch.Tensor,
                            multi_hot: torch.Tensor) -> torch.Tensor:
        """Scalar classifier loss of [R, C] logits; labels [R] matched label, multi_hot [R, C]."""
        if self.classifier_loss == "softmax":
            return F.cross_entropy(class_logits, labels)
        if self.classifier_loss == "concurrent_softmax":
            return concurrent_softmax_loss(class_logits, multi_hot, self.rate, tau=self.tau,
                                           normalize_by_positives=self.normalize_by_positives)
        foreground = class_logits[:, 1:].float()  # [R, K]; background = all zeros
        bce = F.binary_cross_entropy_with_logits(
            foreground, multi_hot[:, 1:].to(foreground.dtype), reduction="sum")
        return bce / max(class_logits.shape[0], 1)

    def box_regression_loss(self, box_regression: torch.Tensor, labels: torch.Tensor,
                            multi_hot: torch.Tensor,
                            regression_targets: torch.Tensor) -> torch.Tensor:
        """Smooth-L1 (beta 1/9) over positive RoIs, summed, divided by R.

        box_regression [R, 4] (class-agnostic) or [R, 4 C]; regression_targets [R, 4].
        """
        num_rois = max(labels.shape[0], 1)
        if self.class_agnostic:
            rows = (labels > 0).nonzero().squeeze(1)
            pred = box_regression[rows]
        else:
            rows, cols = multi_hot[:, 1:].nonzero(as_tuple=True)  # every positive class
            pred = box_regression.reshape(box_regression.shape[0], -1, 4)[rows, cols + 1]
        loss = F.smooth_l1_loss(pred, regression_targets[rows], beta=1 / 9, reduction="sum")
        return loss / num_rois

    def forward(self, features, proposals, image_shapes, targets=None):
        """Training: {"loss_classifier", "loss_box_reg"}; inference: the parent's forward (which
        calls this class's ``postprocess_detections``)."""
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets are required in training mode")
        for target in targets:
            if not target["boxes"].is_floating_point():
                raise TypeError(f"target boxes must be float, got {target['boxes'].dtype}")
            if target["labels"].dtype != torch.int64:
                raise TypeError(f"target labels must be int64, got {target['labels'].dtype}")
        proposals, _, labels, regression_targets, multi_hot = self.select_training_samples(
            proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)  # [R, C], [R, 4 or 4C]
        labels, multi_hot = torch.cat(labels), torch.cat(multi_hot)
        losses = {
            "loss_classifier": self.classification_loss(class_logits, labels, multi_hot),
            "loss_box_reg": self.box_regression_loss(box_regression, labels, multi_hot,
                                                     torch.cat(regression_targets)),
        }
        return [], losses

    # ------------------------------------------------------------------ inference

    def score_activation(self, class_logits: torch.Tensor) -> torch.Tensor:
        """[R, C] logits -> [R, C] per-class scores (column 0 is dropped later)."""
        if self.test_scores == "softmax":
            return F.softmax(class_logits, -1)
        if self.test_scores == "concurrent_softmax":
            return concurrent_softmax_scores(class_logits, self.test_rate, tau=self.tau)
        return torch.sigmoid(class_logits)

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        """Per image: boxes [D, 4] (xyxy px of the resized image), scores [D], labels [D] in
        1..K, D <= detections_per_img, sorted by decreasing score."""
        per_image = [len(p) for p in proposals]
        scores = self.score_activation(class_logits)[:, 1:]  # [R, K], background dropped
        pred_boxes = self.box_coder.decode(box_regression, proposals)  # [R, 1 or C, 4]
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores_img, image_shape in zip(pred_boxes.split(per_image),
                                                  scores.split(per_image), image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            roi, cls = (scores_img > self.score_thresh).nonzero(as_tuple=True)
            cand_scores = scores_img[roi, cls]
            if self.pre_nms_top_n is not None and len(cand_scores) > self.pre_nms_top_n:
                top = cand_scores.topk(self.pre_nms_top_n).indices
                roi, cls, cand_scores = roi[top], cls[top], cand_scores[top]
            labels = cls + 1
            # class-agnostic: one box per RoI shared by its classes; else the class's own box
            cand_boxes = boxes[roi, 0] if boxes.shape[1] == 1 else boxes[roi, labels]
            keep = box_ops.remove_small_boxes(cand_boxes, min_size=1e-2)
            cand_boxes, cand_scores, labels = cand_boxes[keep], cand_scores[keep], labels[keep]
            keep = box_ops.batched_nms(cand_boxes, cand_scores, labels, self.nms_thresh)
            keep = keep[: self.detections_per_img]
            all_boxes.append(cand_boxes[keep])
            all_scores.append(cand_scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels
