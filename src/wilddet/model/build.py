"""Build a torchvision Faster R-CNN + FPN with the CSM RoI head (method spec §2).

Shapes: ``K`` foreground classes; the model has ``C = K + 1`` outputs, label 0 = background and
label c + 1 = class code c of the ``ClassList``.
"""

from __future__ import annotations

import logging
import os
import zipfile

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

from wilddet.data.hierarchy import Hierarchy
from wilddet.errors import InputError
from wilddet.losses import pad_rate_matrix
from wilddet.model.backbones import build_backbone
from wilddet.model.csm_roi_heads import TEST_SCORES, CSMRoIHeads, check_choice
from wilddet.model.targets import ancestor_matrix

logger = logging.getLogger(__name__)


def load_rate_matrix(path_npz: str | os.PathLike, class_labels) -> np.ndarray:
    """The analyzer's ``concurrent_rate.npz`` as a [K, K] float32 rate in ``class_labels`` order.

    The file holds ``labels`` [C'] (MIDs) and ``rate`` [C', C']; every model label must be among
    them (extra labels are dropped: a rate between two classes does not depend on the others).
    Values above 1 (a box can overlap several boxes of a class) are capped at 1 (spec §1). Raises
    InputError naming the file for a missing array, wrong shapes, unknown labels, negative or
    non-finite values.
    """
    labels = [str(x) for x in class_labels]
    try:
        with np.load(path_npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError(path_npz, "file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(path_npz, f"not a readable .npz file ({e})") from None
    for field in ("labels", "rate"):
        if field not in arrays:
            raise InputError(path_npz, f"missing array (has {sorted(arrays)})", field=field)
    file_labels = [str(x) for x in arrays["labels"].tolist()]
    rate = arrays["rate"]
    n = len(file_labels)
    if arrays["labels"].ndim != 1 or rate.shape != (n, n):
        raise InputError(path_npz, f"expected labels [C] and rate [C, C], got "
                                   f"{arrays['labels'].shape} and {rate.shape}", field="rate")
    index = {lab: i for i, lab in enumerate(file_labels)}
    if len(index) != n:
        raise InputError(path_npz, "duplicate labels", field="labels")
    unknown = [lab for lab in labels if lab not in index]
    if unknown:
        raise InputError(path_npz, f"{len(unknown)} class label(s) of the model are not in the "
                                   f"file, e.g. {unknown[:3]}: was it made for another class "
                                   f"list?", field="labels")
    order = np.array([index[lab] for lab in labels], dtype=np.int64)
    rate = np.asarray(rate, dtype=np.float64)[np.ix_(order, order)]
    if not np.isfinite(rate).all() or (rate < 0).any():
        raise InputError(path_npz, "rate values must be finite and >= 0", field="rate")
    if (np.diagonal(rate) != 0).any():
        raise InputError(path_npz, "rate must have a zero diagonal", field="rate")
    if (rate > 1).any():
        logger.info("%s: %d rate values above 1 capped at 1", path_npz, int((rate > 1).sum()))
    return np.minimum(rate, 1.0).astype(np.float32)


def _padded(rate, num_classes: int, name: str) -> torch.Tensor | None:
    """The analyzer's [K, K] matrix (numpy or tensor) -> padded [K+1, K+1] float32, or None."""
    if rate is None:
        return None
    rate = torch.as_tensor(np.asarray(rate) if not isinstance(rate, torch.Tensor) else rate)
    if tuple(rate.shape) != (num_classes, num_classes):
        raise ValueError(f"{name} must be the analyzer's [K, K] = [{num_classes}, "
                         f"{num_classes}] matrix, got {tuple(rate.shape)}")
    return pad_rate_matrix(rate.float())


def build_model(num_classes: int, *, backbone: str = "resnet18",
                classifier_loss: str = "softmax", test_scores: str = "softmax",
                rate=None, tau: float = 1.0, hierarchy: Hierarchy | None = None,
                test_rate=None, multi_hot: bool = True, multi_hot_iou: float = 0.9,
                class_agnostic_regression: bool = True, normalize_by_positives: bool = False,
                trainable_backbone_layers: int = 3,
                pretrained_backbone: str | os.PathLike | None = None,
                min_size: int = 800, max_size: int = 1333,
                image_mean: list[float] | None = None, image_std: list[float] | None = None,
                box_score_thresh: float = 1e-4, box_nms_thresh: float = 0.5,
                box_detections_per_img: int = 300, box_pre_nms_top_n: int | None = None,
                box_fg_iou_thresh: float = 0.5, box_bg_iou_thresh: float = 0.5,
                box_batch_size_per_image: int = 512, box_positive_fraction: float = 0.25,
                rpn_fg_iou_thresh: float = 0.7, rpn_bg_iou_thresh: float = 0.3,
                rpn_batch_size_per_image: int = 256, rpn_positive_fraction: float = 0.5,
                rpn_pre_nms_top_n_train: int = 2000, rpn_post_nms_top_n_train: int = 2000,
                rpn_pre_nms_top_n_test: int = 1000, rpn_post_nms_top_n_test: int = 1000,
                rpn_nms_thresh: float = 0.7) -> FasterRCNN:
    """Faster R-CNN + FPN with ``CSMRoIHeads``.

    num_classes: K foreground classes (model labels 1..K). classifier_loss and test_scores:
    "softmax", "concurrent_softmax" or "sigmoid" (independent switches, spec §2.2). rate: the
    analyzer's [K, K] matrix (numpy or tensor, ``load_rate_matrix``) or None (zeros); tau the
    exponent on (1 - r). test_rate: a [K, K] matrix for the test-time CSM scores only (None: the
    training rate). hierarchy: class codes 0..K-1; when given, multi-hot targets include
    ancestors. multi_hot: targets from every GT box with IoU > multi_hot_iou to the matched one
    (False: the matched label only). Backbone names and pretrained weights: ``build_backbone``.
    Sizes in pixels; the box_* and rpn_* arguments are torchvision's, with Open Images defaults
    for inference (score threshold 1e-4, up to 300 detections per image).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    padded_rate = _padded(rate, num_classes, "rate")
    padded_test_rate = _padded(test_rate, num_classes, "test_rate")
    ancestors = None if hierarchy is None else ancestor_matrix(hierarchy, num_classes)

    parts = build_backbone(backbone, pretrained=pretrained_backbone,
                           trainable_layers=trainable_backbone_layers)
    num_labels = num_classes + 1
    resolution = parts.roi_pool.output_size[0]
    box_head = TwoMLPHead(parts.body.out_channels * resolution ** 2, parts.representation_size)
    predictor = FastRCNNPredictor(parts.representation_size, num_labels)
    if class_agnostic_regression:  # one box per RoI: 4 deltas instead of 4 (K + 1)
        predictor.bbox_pred = torch.nn.Linear(parts.representation_size, 4)
    model = FasterRCNN(
        parts.body, num_classes=None, min_size=min_size, max_size=max_size,
        image_mean=image_mean, image_std=image_std, rpn_anchor_generator=parts.anchor_generator,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n_test, rpn_nms_thresh=rpn_nms_thresh,
        rpn_fg_iou_thresh=rpn_fg_iou_thresh, rpn_bg_iou_thresh=rpn_bg_iou_thresh,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        rpn_positive_fraction=rpn_positive_fraction, box_roi_pool=parts.roi_pool,
        box_head=box_head, box_predictor=predictor)
    model.roi_heads = CSMRoIHeads(
        parts.roi_pool, box_head, predictor, box_fg_iou_thresh, box_bg_iou_thresh,
        box_batch_size_per_image, box_positive_fraction, None, box_score_thresh,
        box_nms_thresh, box_detections_per_img, num_classes=num_classes,
        classifier_loss=classifier_loss, test_scores=test_scores, rate=padded_rate, tau=tau,
        test_rate=padded_test_rate,
        ancestors=ancestors, multi_hot=multi_hot, multi_hot_iou=multi_hot_iou,
        class_agnostic=class_agnostic_regression, normalize_by_positives=normalize_by_positives,
        pre_nms_top_n=box_pre_nms_top_n)
    return model


def set_test_scores(model: FasterRCNN, mode: str, *, rate=None, tau: float | None = None) -> None:
    """Switch the test-time score activation of a built model ("softmax",
    "concurrent_softmax", "sigmoid"); optionally replace the [K, K] rate matrix of the test-time
    scores (the training loss keeps its own) and tau."""
    heads = model.roi_heads
    if not isinstance(heads, CSMRoIHeads):
        raise TypeError("model was not built by wilddet.model.build_model")
    heads.test_scores = check_choice("test_scores", mode, TEST_SCORES)
    if rate is not None:
        rate = torch.as_tensor(np.asarray(rate) if not isinstance(rate, torch.Tensor) else rate)
        if tuple(rate.shape) != (heads.num_classes, heads.num_classes):
            raise ValueError(f"rate must be [K, K] = [{heads.num_classes}, "
                             f"{heads.num_classes}], got {tuple(rate.shape)}")
        heads.test_rate = pad_rate_matrix(rate.float()).to(heads.rate.device)
    if tau is not None:
        if tau < 0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        heads.tau = float(tau)
