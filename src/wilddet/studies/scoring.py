"""Detections of one study arm and their scores on a set of images: the challenge metric's
per-class AP, the ranked outcomes the bootstrap resamples, and the confident detections.

Shapes: ``I`` scored images, ``C`` classes, ``E`` ranked entries, ``M`` expanded GT boxes.

``predict_arm`` writes an arm's detections once (cached by file); ``score_images`` matches them
against the ground truth of an image subset (hierarchy-expanded, verified image labels) with
the arm's metric settings and returns a ``Scored``: the per-class result, the
``stats.bootstrap.RankedOutcomes`` (image codes = positions in the given image list) and the
count / precision of detections with score >= ``HIGH_SCORE`` (the seed's Figure 2 claim).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilddet.data import oid_csv
from wilddet.data.records import BoxTable, ImageLabelTable
from wilddet.stats.bootstrap import RankedOutcomes
from wilddet.studies.arms import Arm

HIGH_SCORE = 0.5  # "confident" detections (the score threshold of the seed's figures)


@dataclass(frozen=True)
class GroundTruth:
    """Raw boxes and verified image labels of one image split, and its hierarchy."""

    boxes: BoxTable
    labels: ImageLabelTable | None
    hierarchy: object


@dataclass(frozen=True)
class Scored:
    """result: the metric's ``ChallengeResult`` (ap [C], NaN: no GT); outcomes for the
    bootstrap; confident detections: high_total (score >= HIGH_SCORE, scored or not),
    high_scored (on verified classes), high_tp_per_class [C] / high_scored_per_class [C]."""

    result: object
    outcomes: RankedOutcomes
    high_total: int
    high_scored: int
    high_tp_per_class: np.ndarray
    high_scored_per_class: np.ndarray


def predict_arm(checkpoint: Path, arm: Arm, images_dir: Path, image_ids: list[str],
                out_csv: Path, classes, *, batch_size: int, device: str) -> BoxTable:
    """Detections of ``image_ids`` by the model of ``checkpoint`` with the arm's test-time
    scores (and, for ``csm_test_hierarchy_pairs``, the test-time CSM rate it implies); read back
    when ``out_csv`` exists."""
    if out_csv.is_file():
        return oid_csv.read_detections(out_csv, classes)
    from wilddet.data.dataset import ImageFolderDataset
    from wilddet.engine.builders import csm_test_rate
    from wilddet.engine.distributed import resolve_device
    from wilddet.engine.inference import load_model, predict_dataset
    from wilddet.model.build import set_test_scores

    dev = resolve_device(device)
    loaded = load_model(checkpoint, device=dev, test_scores=arm.test_scores)
    if arm.csm_test_hierarchy_pairs is not None:
        model_cfg = dataclasses.replace(loaded.config.model,
                                        csm_test_hierarchy_pairs=arm.csm_test_hierarchy_pairs)
        rate = csm_test_rate(model_cfg, loaded.meta)
        if rate is None:  # r ≡ 0 replaces a hierarchy-pair rate too
            rate = np.zeros((len(loaded.meta.classes),) * 2, np.float32)
        set_test_scores(loaded.model, arm.test_scores or loaded.config.model.test_scores,
                        rate=rate)
    dataset = ImageFolderDataset(images_dir, image_ids, uint8=True)
    detections = predict_dataset(loaded.model, dataset, device=dev, batch_size=batch_size,
                                 amp=loaded.config.train.amp)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    oid_csv.write_detections(out_csv, detections, loaded.meta.classes)  # atomic
    return detections


def _subset(table, image_ids: set[str]):
    if table is None or len(table) == 0:
        return table
    return table.take(np.isin(table.image_ids[table.image_codes], sorted(image_ids)))


def score_images(detections: BoxTable, truth: GroundTruth, image_ids: list[str],
                 num_classes: int, *, expand_detections: bool = False) -> Scored:
    """Challenge metric on ``image_ids`` (a subset of the split) with the match kept."""
    from wilddet.evaluation.oid_challenge import (
        IN_GROUP_OF,
        NOT_SCORED,
        TRUE_POSITIVE,
        ChallengeSettings,
        match_detections,
        ranked_entries,
        result_from_match,
    )

    wanted = set(image_ids)
    gt, labels, dets = oid_csv.align_images(_subset(truth.boxes, wanted),
                                            _subset(truth.labels, wanted),
                                            _subset(detections, wanted))
    settings = ChallengeSettings(expand_detections=expand_detections)
    match = match_detections(gt, labels, dets, num_classes, settings, hierarchy=truth.hierarchy)
    entries = ranked_entries(match)
    result = result_from_match(match, entries)
    position = {image_id: k for k, image_id in enumerate(image_ids)}
    # aligned vocabulary code -> position in ``image_ids`` (-1: a split image left out; none of
    # its rows survive the subset)
    to_list = np.asarray([position.get(i, -1) for i in gt.image_ids], dtype=np.int64)
    c = np.int64(num_classes)
    is_det = entries.det_index >= 0
    entry_keys = np.empty(len(entries), dtype=np.int64)
    entry_keys[is_det] = match.det_keys[entries.det_index[is_det]]
    entry_keys[~is_det] = match.gt_keys[match.gt_hit]  # group-of entries keep the GT order
    gt_weights = np.where(match.gt_group_of, match.settings.group_of_weight, 1.0)
    outcomes = RankedOutcomes(len(image_ids), entries.classes, to_list[entry_keys // c],
                              entries.scores, entries.weights, match.gt_keys % c,
                              to_list[match.gt_keys // c], gt_weights)
    confident = match.det_scores >= HIGH_SCORE
    scored = confident & (match.det_state != NOT_SCORED)
    correct = confident & np.isin(match.det_state, (TRUE_POSITIVE, IN_GROUP_OF))
    classes = match.det_classes
    return Scored(result, outcomes,
                  int(np.count_nonzero(dets.scores >= HIGH_SCORE)) if len(dets) else 0,
                  int(scored.sum()),
                  np.bincount(classes[correct], minlength=num_classes),
                  np.bincount(classes[scored], minlength=num_classes))


def read_ground_truth(boxes_csv: Path, labels_csv: Path | None, classes, hierarchy
                      ) -> GroundTruth:
    boxes = oid_csv.read_boxes(boxes_csv, classes)
    labels = (oid_csv.read_image_labels(labels_csv, classes)
              if labels_csv is not None and labels_csv.is_file() else None)
    return GroundTruth(boxes, labels, hierarchy)


def split_tune_test(image_ids: list[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """The val images cut in two halves by a seeded permutation of the sorted IDs: (tuning,
    test), each sorted. Post-hoc choices are made on tuning and reported on test."""
    ids = sorted(image_ids)
    order = np.random.default_rng([seed, 0x7E57]).permutation(len(ids))
    half = len(ids) // 2
    return sorted(ids[i] for i in order[:half]), sorted(ids[i] for i in order[half:])
