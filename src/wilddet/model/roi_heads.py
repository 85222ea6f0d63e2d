"""torchvision's RoIHeads with multi-hot targets and a classifier head passed in (spec §2).

Shapes: ``B`` images, ``R`` sampled RoIs (all images), ``M`` GT boxes of one image, ``K``
foreground classes, ``C = K + 1`` logit columns (0 = background).

Changes from ``torchvision.models.detection.roi_heads.RoIHeads``, and nothing else:

- ``select_training_samples`` runs the parent's matching and sampling, then adds the targets of
  the classifier: multi-hot (``wilddet.model.targets``: the labels of every GT box with IoU >
  ``multi_hot_iou`` to the matched box, plus hierarchy ancestors) for a multi-label classifier,
  one-hot of the matched label otherwise.
- The training losses (torchvision's ``fastrcnn_loss`` cannot be swapped, so ``forward`` calls
  them itself in training): ``classifier.loss`` (a ``wilddet.model.classifiers.ClassifierHead``)
  and box regression, class-agnostic by default (4 deltas per RoI; class-specific regression
  regresses every positive class to the matched box), Smooth-L1 with beta 1/9 summed and
  divided by R, as torchvision.
- ``postprocess_detections``: ``classifier.scores`` turns logits into per-class scores; then
  torchvision's steps: clip, drop background, score threshold, optionally keep the top
  ``pre_nms_top_n`` (box, class) candidates of an image, remove tiny boxes, per-class NMS, top
  ``detections_per_img``. Class-agnostic boxes are shared by all classes of a RoI.

The ancestor matrix is a non-persistent buffer: it comes from the run's hierarchy, never from a
checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

from wilddet.model.classifiers import ClassifierHead
from wilddet.model.targets import gt_label_sets, roi_multi_hot


class MultiLabelRoIHeads(RoIHeads):
    """RoIHeads with multi-hot targets and a swappable classifier.

    Positional arguments as ``RoIHeads`` (box part only: no mask or keypoint heads). Keywords:
    classifier (its ``num_classes`` is K); ancestors [C, C] bool (``targets.ancestor_matrix``)
    or None; multi_hot (False: one-hot of the matched label); multi_hot_iou (IoU above which GT
    boxes are one object); class_agnostic (the predictor outputs 4 deltas); pre_nms_top_n (None,
    or keep only this many top-scoring (box, class) candidates per image before NMS).
    """

    def __init__(self, box_roi_pool, box_head, box_predictor, fg_iou_thresh, bg_iou_thresh,
                 batch_size_per_image, positive_fraction, bbox_reg_weights, score_thresh,
                 nms_thresh, detections_per_img, *, classifier: ClassifierHead,
                 ancestors: torch.Tensor | None = None, multi_hot: bool = True,
                 multi_hot_iou: float = 0.9, class_agnostic: bool = True,
                 pre_nms_top_n: int | None = None):
        super().__init__(box_roi_pool, box_head, box_predictor, fg_iou_thresh, bg_iou_thresh,
                         batch_size_per_image, positive_fraction, bbox_reg_weights, score_thresh,
                         nms_thresh, detections_per_img)
        self.classifier = classifier
        self.num_classes = classifier.num_classes
        num_labels = self.num_classes + 1
        self.multi_hot = multi_hot
        self.multi_hot_iou = multi_hot_iou
        self.class_agnostic = class_agnostic
        if pre_nms_top_n is not None and pre_nms_top_n < 1:
            raise ValueError(f"pre_nms_top_n must be None or >= 1, got {pre_nms_top_n}")
        self.pre_nms_top_n = pre_nms_top_n
        if ancestors is not None and tuple(ancestors.shape) != (num_labels, num_labels):
            raise ValueError(f"ancestors must be [K+1, K+1], got {tuple(ancestors.shape)}")
        self.register_buffer("ancestors", None if ancestors is None else ancestors.bool().clone(),
                             persistent=False)

    # ------------------------------------------------------------------ training

    def select_training_samples(self, proposals, targets):
        """The parent's matching and sampling, plus the classifier's targets.

        Returns (proposals, matched_idxs, labels, regression_targets, class_targets): the
        parent's four lists (per image) and ``class_targets``, a list of [R_b, C] bool
        (multi-hot, or one-hot of ``labels`` when neither the classifier nor class-specific
        regression uses multi-hot targets).
        """
        proposals, matched_idxs, labels, regression_targets = super().select_training_samples(
            proposals, targets)
        num_labels = self.num_classes + 1
        use_multi_hot = self.multi_hot and (self.classifier.multi_label or not self.class_agnostic)
        class_targets = []
        for target, labels_img, matched_img in zip(targets, labels, matched_idxs):
            if use_multi_hot:
                sets = gt_label_sets(target["boxes"], target["labels"], num_labels,
                                     self.multi_hot_iou, self.ancestors)
                class_targets.append(roi_multi_hot(labels_img, matched_img, sets))
            else:
                class_targets.append(F.one_hot(labels_img, num_labels).bool())
        return proposals, matched_idxs, labels, regression_targets, class_targets

    def classifier_targets(self, labels: torch.Tensor, class_targets: torch.Tensor
                           ) -> torch.Tensor:
        """What ``classifier.loss`` gets: [R, C] bool, one-hot of labels [R] for a single-label
        classifier."""
        if self.classifier.multi_label:
            return class_targets
        return F.one_hot(labels, self.num_classes + 1).bool()

    def box_regression_loss(self, box_regression: torch.Tensor, labels: torch.Tensor,
                            class_targets: torch.Tensor,
                            regression_targets: torch.Tensor) -> torch.Tensor:
        """Smooth-L1 (beta 1/9) over positive RoIs, summed, divided by R.

        box_regression [R, 4] (class-agnostic) or [R, 4 C]; regression_targets [R, 4].
        """
        num_rois = max(labels.shape[0], 1)
        if self.class_agnostic:
            rows = (labels > 0).nonzero().squeeze(1)
            pred = box_regression[rows]
        else:
            rows, cols = class_targets[:, 1:].nonzero(as_tuple=True)  # every positive class
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
        proposals, _, labels, regression_targets, class_targets = self.select_training_samples(
            proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)  # [R, C], [R, 4 or 4C]
        labels, class_targets = torch.cat(labels), torch.cat(class_targets)
        losses = {
            "loss_classifier": self.classifier.loss(
                class_logits, self.classifier_targets(labels, class_targets)),
            "loss_box_reg": self.box_regression_loss(box_regression, labels, class_targets,
                                                     torch.cat(regression_targets)),
        }
        return [], losses

    # ------------------------------------------------------------------ inference

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        """Per image: boxes [D, 4] (xyxy px of the resized image), scores [D], labels [D] in
        1..K, D <= detections_per_img, sorted by decreasing score."""
        per_image = [len(p) for p in proposals]
        scores = self.classifier.scores(class_logits)[:, 1:]  # [R, K], background dropped
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
