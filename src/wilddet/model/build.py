"""Build a torchvision Faster R-CNN + FPN around a classifier head (method spec §2).

Shapes: ``K`` foreground classes; the model has ``C = K + 1`` outputs, label 0 = background and
label c + 1 = class code c of the ``ClassList``.

``build_model(classifier, settings, hierarchy=)`` in named steps: backbone (``backbones``), box
head and predictor, torchvision's ``FasterRCNN``, then ``MultiLabelRoIHeads`` calling the
classifier (``classifiers``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

from wilddet.data.hierarchy import Hierarchy
from wilddet.model.backbones import build_backbone
from wilddet.model.classifiers import ClassifierHead
from wilddet.model.roi_heads import MultiLabelRoIHeads
from wilddet.model.targets import ancestor_matrix


@dataclass(frozen=True)
class DetectorSettings:
    """torchvision Faster R-CNN + FPN sizes and thresholds, named as the ``[model]`` config
    fields (sizes in pixels; the box_* and rpn_* fields are torchvision's parameters).

    Open Images defaults for inference: score threshold 1e-4, up to 300 detections per image.
    pretrained_backbone: "" (random init), "DEFAULT" or a path (``build_backbone``).
    box_pre_nms_top_n: 0 = no cap, else the top-scoring (box, class) candidates of an image kept
    before NMS. multi_hot / multi_hot_iou: RoI targets from every GT box with IoU above it to the
    matched one (``targets``; False: the matched label only).
    """

    backbone: str = "resnet18"
    pretrained_backbone: str = ""
    trainable_backbone_layers: int = 3
    backbone_norm: str = "auto"   # model.backbones.NORMS
    min_size_px: int = 800
    max_size_px: int = 1333
    image_mean: tuple[float, ...] | None = None   # None: torchvision's ImageNet values
    image_std: tuple[float, ...] | None = None
    class_agnostic_regression: bool = True
    multi_hot: bool = True
    multi_hot_iou: float = 0.9
    box_score_thresh: float = 1e-4
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 300
    box_pre_nms_top_n: int = 0
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7


def build_model(classifier: ClassifierHead, settings: DetectorSettings = DetectorSettings(),
                *, hierarchy: Hierarchy | None = None) -> FasterRCNN:
    """Faster R-CNN + FPN whose RoI heads (``MultiLabelRoIHeads``) call ``classifier``.

    The model has ``classifier.num_classes`` = K foreground classes (labels 1..K).
    hierarchy: class codes 0..K-1; when given (and ``settings.multi_hot``), multi-hot targets
    include ancestors. Initialisation draws from torch's global generator.
    """
    parts = build_backbone(settings.backbone, pretrained=settings.pretrained_backbone or None,
                           trainable_layers=settings.trainable_backbone_layers,
                           norm=settings.backbone_norm)
    box_head, predictor = _box_head_and_predictor(parts, classifier.num_classes, settings)
    model = _faster_rcnn(parts, box_head, predictor, settings)
    model.roi_heads = _roi_heads(parts, box_head, predictor, classifier, settings, hierarchy)
    return model


def _box_head_and_predictor(parts, num_classes: int, s: DetectorSettings):
    """torchvision's two-layer box head and predictor (C = K + 1 scores; 4 box deltas per RoI
    with class-agnostic regression, else 4 C)."""
    resolution = parts.roi_pool.output_size[0]
    box_head = TwoMLPHead(parts.body.out_channels * resolution ** 2, parts.representation_size)
    predictor = FastRCNNPredictor(parts.representation_size, num_classes + 1)
    if s.class_agnostic_regression:
        predictor.bbox_pred = torch.nn.Linear(parts.representation_size, 4)
    return box_head, predictor


def _faster_rcnn(parts, box_head, predictor, s: DetectorSettings) -> FasterRCNN:
    """torchvision's FasterRCNN around the backbone (its RoI heads are replaced next)."""
    return FasterRCNN(
        parts.body, num_classes=None, min_size=s.min_size_px, max_size=s.max_size_px,
        image_mean=None if s.image_mean is None else list(s.image_mean),
        image_std=None if s.image_std is None else list(s.image_std),
        rpn_anchor_generator=parts.anchor_generator,
        rpn_pre_nms_top_n_train=s.rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=s.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=s.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=s.rpn_post_nms_top_n_test, rpn_nms_thresh=s.rpn_nms_thresh,
        rpn_fg_iou_thresh=s.rpn_fg_iou_thresh, rpn_bg_iou_thresh=s.rpn_bg_iou_thresh,
        rpn_batch_size_per_image=s.rpn_batch_size_per_image,
        rpn_positive_fraction=s.rpn_positive_fraction, box_roi_pool=parts.roi_pool,
        box_head=box_head, box_predictor=predictor)


def _roi_heads(parts, box_head, predictor, classifier: ClassifierHead, s: DetectorSettings,
               hierarchy: Hierarchy | None) -> MultiLabelRoIHeads:
    """``MultiLabelRoIHeads`` with torchvision's box sampling and inference parameters."""
    num_classes = classifier.num_classes
    use_ancestors = hierarchy is not None and s.multi_hot
    return MultiLabelRoIHeads(
        parts.roi_pool, box_head, predictor, s.box_fg_iou_thresh, s.box_bg_iou_thresh,
        s.box_batch_size_per_image, s.box_positive_fraction, None, s.box_score_thresh,
        s.box_nms_thresh, s.box_detections_per_img, classifier=classifier,
        ancestors=ancestor_matrix(hierarchy, num_classes) if use_ancestors else None,
        multi_hot=s.multi_hot, multi_hot_iou=s.multi_hot_iou,
        class_agnostic=s.class_agnostic_regression,
        pre_nms_top_n=s.box_pre_nms_top_n or None)


def classifier_of(model: FasterRCNN) -> ClassifierHead:
    """The classifier head of a model built by ``build_model``."""
    heads = getattr(model, "roi_heads", None)
    if not isinstance(heads, MultiLabelRoIHeads):
        raise TypeError("model was not built by wilddet.model.build.build_model")
    return heads.classifier


def set_test_scores(model: FasterRCNN, mode: str, *, rate=None, tau: float | None = None) -> None:
    """Switch the test-time scores of a built model to ``mode`` (a name of
    ``wilddet.model.choices.CLASSIFIERS``: that loss's natural scores); optionally replace the
    [K, K] rate of the test-time CSM scores (the training loss keeps its own) and tau."""
    classifier_of(model).set_test_scores(mode, rate=rate, tau=tau)
