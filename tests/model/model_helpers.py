"""Helpers of the model tests (not tests): a tiny detector built from a ``[model]`` config,
and a batch of synthetic images on which its losses can be trained."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from wilddet.config import EQLConfig, FederatedConfig, ModelConfig
from wilddet.data.class_index import ClassImageIndex
from wilddet.data.records import ClassList
from wilddet.engine.builders import DatasetMeta, TrainingContext, build_detector

SIZE = 80
NUM_CLASSES = 3
RATE_KK = np.array([[0, 0.5, 0], [0.5, 0, 0.25], [0, 0.75, 0]], dtype=np.float32)

# the tiny detector of every model test: 80 px images, few proposals and RoIs
TINY = ModelConfig(backbone="tiny", classifier_loss="softmax", test_scores="softmax",
                   min_size_px=SIZE, max_size_px=SIZE, rpn_pre_nms_top_n_train=300,
                   rpn_post_nms_top_n_train=150, rpn_pre_nms_top_n_test=150,
                   rpn_post_nms_top_n_test=100, box_batch_size_per_image=64,
                   csm_test_hierarchy_pairs=False,
                   # parameters at which these losses differ from BCE on 3-5 classes
                   eql=EQLConfig(lam=0.3), federated=FederatedConfig(num_sampled_classes=4))


def tiny_meta(num_classes=NUM_CLASSES, rate=None, hierarchy=None) -> DatasetMeta:
    labels = np.array([f"/m/{k}" for k in range(num_classes)], dtype=object)
    return DatasetMeta(ClassList(labels, labels.copy()), hierarchy, rate)


def tiny_training(num_classes=NUM_CLASSES, seed=0) -> TrainingContext:
    """10 training images: class code k in max(8 - 3 k, 1) of them (a small long tail)."""
    image_codes, label_codes = [], []
    for k in range(num_classes):
        count = max(8 - 3 * k, 1)
        image_codes += list(range(count))
        label_codes += [k] * count
    index = ClassImageIndex.from_codes(np.array(image_codes), np.array(label_codes), 10,
                                       num_classes)
    return TrainingContext(index, seed=seed)


def tiny_model(loss="softmax", *, rate=None, hierarchy=None, training="default",
               num_classes=NUM_CLASSES, **model_fields):
    """The tiny detector with ``model.classifier_loss = loss`` (test scores: the same unless
    given) and ``model_fields`` on top of ``TINY``."""
    cfg = dataclasses.replace(TINY, classifier_loss=loss,
                              test_scores=model_fields.pop("test_scores", loss), **model_fields)
    if training == "default":
        training = tiny_training(num_classes)
    return build_detector(cfg, tiny_meta(num_classes, rate, hierarchy), training)


def synthetic_batch(seed=0, num_images=2):
    """Coloured rectangles on dark noise; class c paints channel c - 1. Each image also has a
    class-2 box on exactly the same spot as a class-1 box (one object, two labels)."""
    gen = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(num_images):
        image = torch.rand(3, SIZE, SIZE, generator=gen) * 0.2
        boxes, labels = [], []
        for label in (1, 3):
            x0, y0 = torch.randint(0, SIZE - 36, (2,), generator=gen).tolist()
            w, h = torch.randint(20, 34, (2,), generator=gen).tolist()
            image[label - 1, y0:y0 + h, x0:x0 + w] = 1.0
            boxes.append([x0, y0, x0 + w, y0 + h])
            labels.append(label)
        boxes.append(boxes[0])
        labels.append(2)
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.tensor(labels)})
    return images, targets


def sampled_logits(model, images, targets, seed=1):
    """(loss dict of the RoI heads, logits [R, C], labels [R], class targets [R, C]) of one
    training forward, the RoIs drawn with ``seed`` both times."""
    heads = model.roi_heads
    model.train()
    image_list, targets_t = model.transform(images, targets)
    features = model.backbone(image_list.tensors)
    proposals, _ = model.rpn(image_list, features, targets_t)
    torch.manual_seed(seed)  # the RoI sampler draws from the global generator
    _, losses = heads(features, proposals, image_list.image_sizes, targets_t)
    torch.manual_seed(seed)
    rois, _, labels, _, class_targets = heads.select_training_samples(proposals, targets_t)
    logits, _ = heads.box_predictor(heads.box_head(
        heads.box_roi_pool(features, rois, image_list.image_sizes)))
    return losses, logits, torch.cat(labels), torch.cat(class_targets)
