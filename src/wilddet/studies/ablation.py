"""The seeded, resumable ablation runner behind ``wilddet experiment losses`` and
``wilddet experiment samplers-overfit`` (issue 13 §2).

Shapes: ``C`` classes, ``S`` seeds, ``B`` bootstrap replicates.

Steps (``run_ablation``): the analyzer's rate file once (``studies.common.ensure_rate_file``);
for each seed, one training run per distinct model of the selected arms
(``runs/<model>_s<seed>/``, ``train.seed`` = the seed; a finished run is reused, an unfinished
one resumed); each arm's val detections (``detections/<arm>_s<seed>.csv``) and per-class log
(``per_class/<arm>_s<seed>.csv``, the challenge metric on all val images); with
``train_eval_images`` > 0 the same on a fixed subset of training images
(``train_detections/``, ``train_per_class/``: the over-fitting signal). Every file is written
once and reused, so a rerun only fills in what is missing. ``figure.png`` shows ground truth
and three arms on the val images richest in the study's classes. ``studies.ablation_report`` then
writes the tables (group means with bootstrap intervals, paired differences, post-hoc choices
tuned on one half of val and reported on the other, confident detections) and ``summary.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wilddet.config import Config, with_overrides
from wilddet.data import oid_csv
from wilddet.errors import InputError
from wilddet.evaluation.ap import mean_ap
from wilddet.reports.csv_logs import PerClassAP, write_per_class_ap
from wilddet.studies.arms import (
    LOSS_ARMS,
    LOSS_POST_HOC,
    SAMPLER_ARMS,
    Arm,
    models_of,
    run_name,
    select_arms,
)
from wilddet.studies.common import Say, ensure_rate_file, quiet, train_once, val_image_ids
from wilddet.studies.scoring import (
    Scored,
    predict_arm,
    read_ground_truth,
    score_images,
    split_tune_test,
)


@dataclass(frozen=True)
class StudyPlan:
    """What to run: ``arms`` (``studies.arms``), ``seeds``, the ``reference`` arm of the paired
    differences, ``post_hoc`` pairs (default arm, alternative) chosen on the tuning half,
    bootstrap ``replicates`` and ``level``, and ``train_eval_images`` training images scored
    beside val (0 = none)."""

    study: str
    arms: list[Arm]
    seeds: list[int]
    reference: str
    post_hoc: tuple[tuple[str, str], ...] = ()
    replicates: int = 1000
    level: float = 0.95
    train_eval_images: int = 0
    split_seed: int = 0
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class StudyData:
    """Everything the report needs: classes, hierarchy, planted cases (or None), N_c [C] of the
    training set, the val image splits and every (arm, seed, split) score."""

    classes: object
    hierarchy: object
    planted: dict | None
    images_per_class: np.ndarray
    splits: dict[str, list[str]]
    scored: dict[tuple[str, int, str], Scored]


def run_ablation(config: Config, out_dir: str | os.PathLike, plan: StudyPlan, *,
                 say: Say = quiet):
    """Train, predict and score every (arm, seed) of ``plan`` (module docstring), then write
    the report. Returns ``studies.ablation_report.StudyReport``."""
    from wilddet.studies.ablation_report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config, _ = ensure_rate_file(config, out, say)
    data = _study_data(config, plan)
    truth_val, truth_train = _ground_truths(config, data)
    for seed in plan.seeds:
        checkpoints = {name: train_once(with_overrides(config, [*train, f"train.seed={seed}"]),
                                        out / "runs" / f"{name}_s{seed}", say)
                       for name, train in models_of(plan.arms).items()}
        for arm in plan.arms:
            ckpt = checkpoints[run_name(arm, plan.arms)]
            _score_arm(config, out, arm, seed, ckpt, data, truth_val, "val", "")
            if truth_train is not None:
                _score_arm(config, out, arm, seed, ckpt, data, truth_train, "train", "train_")
            say(f"{arm.name} s{seed}: val mAP "
                f"{mean_ap(data.scored[arm.name, seed, 'val'].result.ap):.4f}")
    _write_plan(out / "study.json", config, plan, data)
    _figure(config, out, plan, data)
    return write_report(out, plan, data)


def _figure(config: Config, out: Path, plan: StudyPlan, data: StudyData,
            count: int = 3) -> Path:
    """``figure.png``: val images richest in the study's classes of interest (the planted cases
    for losses, tail leaves for samplers), ground truth then the seed's figure layout of the
    first seed (``STUDY_DEFAULTS[...].figure_arms``: Figure 1 = sm-train+sm-test,
    sm-train+csm-test, csm-train+sm-test, csm-train+csm-test; Figure 2 = non-balance,
    class-aware, soft-balance), arms not selected replaced by others; score >= 0.5."""
    from wilddet.studies.common import figure_grid, pick_figure_images

    chosen = {a.name for a in plan.arms}
    layout = STUDY_DEFAULTS[plan.study].figure_arms
    shown = [a for a in layout if a in chosen]
    shown += [a.name for a in plan.arms if a.name not in shown]
    if plan.study == "losses" and data.planted is not None:
        prefer = {label for labels in data.planted.values() for label in labels}
    else:
        tail = (data.images_per_class > 0) & (data.images_per_class <= 10)
        prefer = set(data.classes.labels[tail].astype(str))
    images = pick_figure_images(config, prefer, count)
    columns = [("ground truth", None)] + [
        (name.replace("_", " "), out / "detections" / f"{name}_s{plan.seeds[0]}.csv")
        for name in shown[:len(layout)]]
    return figure_grid(out / "figure.png", images, columns, config)


def _study_data(config: Config, plan: StudyPlan) -> StudyData:
    from wilddet.data.hierarchy import read_hierarchy
    from wilddet.data.synthetic import read_planted_cases
    from wilddet.engine.builders import require_file
    from wilddet.sampling import ClassImageIndex

    classes = oid_csv.read_classes(require_file(config, "classes"))
    hierarchy = (read_hierarchy(require_file(config, "hierarchy"), classes)
                 if config.data.hierarchy else None)
    train = oid_csv.read_boxes(require_file(config, "train_boxes"), classes)
    index = ClassImageIndex.from_codes(train.image_codes, train.label_codes, train.num_images,
                                       len(classes))
    manifest = Path(config.data.root or ".") / "synth.json"
    planted = read_planted_cases(manifest) if manifest.is_file() else None
    val_ids = val_image_ids(config)
    tune, test = split_tune_test(val_ids, plan.split_seed)
    splits = {"val": val_ids, "tune": tune, "test": test}
    if plan.train_eval_images > 0:
        splits["train"] = _train_eval_ids(train, index, plan.train_eval_images, plan.split_seed)
    return StudyData(classes, hierarchy, planted, index.images_per_class, splits, {})


def _train_eval_ids(train, index, count: int, seed: int) -> list[str]:
    """Training images scored beside val: every image holding a leaf of <= 10 training images
    (the tail that balanced samplers repeat), then seeded random others up to ``count``."""
    tail_classes = np.flatnonzero((index.images_per_class > 0) & (index.images_per_class <= 10))
    tail = np.unique(train.image_codes[np.isin(train.label_codes, tail_classes)])
    rest = np.setdiff1d(np.arange(train.num_images), tail)
    rng = np.random.default_rng([seed, 0x7A11])
    extra = rng.permutation(rest)[:max(0, count - len(tail))]
    return sorted(str(train.image_ids[i]) for i in np.concatenate([tail, extra]))


def _labels_beside(boxes_csv: Path) -> Path:
    """The image-level labels file written beside a boxes file (``*-bbox.csv`` ->
    ``*-human-imagelabels.csv``, the Open Images names)."""
    return boxes_csv.with_name(boxes_csv.name.replace("annotations-bbox",
                                                      "annotations-human-imagelabels"))


def _ground_truths(config: Config, data: StudyData):
    from wilddet.engine.builders import require_file

    val_labels = (require_file(config, "val_image_labels")
                  if config.data.val_image_labels else None)
    truth_val = read_ground_truth(require_file(config, "val_boxes"), val_labels, data.classes,
                                  data.hierarchy)
    if "train" not in data.splits:
        return truth_val, None
    boxes = require_file(config, "train_boxes")
    return truth_val, read_ground_truth(boxes, _labels_beside(boxes), data.classes,
                                        data.hierarchy)


def _score_arm(config: Config, out: Path, arm: Arm, seed: int, checkpoint: Path,
               data: StudyData, truth, split: str, prefix: str) -> None:
    """Predict (cached) and score one arm on ``split`` ("val": also its tuning and test
    halves); writes the per-class log of the whole split once."""
    from wilddet.engine.builders import require_file

    images = require_file(config, "val_images" if split == "val" else "train_images")
    ids = data.splits[split]
    dets = predict_arm(checkpoint, arm, images, ids,
                       out / f"{prefix}detections" / f"{arm.name}_s{seed}.csv", data.classes,
                       batch_size=config.eval.batch_size, device=config.train.device)
    for name in (("val", "tune", "test") if split == "val" else (split,)):
        data.scored[arm.name, seed, name] = score_images(
            dets, truth, data.splits[name], len(data.classes),
            expand_detections=arm.expand_detections)
    log_csv = out / f"{prefix}per_class" / f"{arm.name}_s{seed}.csv"
    if not log_csv.is_file():
        log_csv.parent.mkdir(parents=True, exist_ok=True)
        write_per_class_ap(log_csv, PerClassAP.from_result(data.classes,
                                                           data.scored[arm.name, seed, split]
                                                           .result))


def _write_plan(path: Path, config: Config, plan: StudyPlan, data: StudyData) -> None:
    from wilddet.config import dump_toml
    from wilddet.fileio import write_text_atomic

    record = {"study": plan.study, "arms": [{"name": a.name, "train": list(a.train),
                                             "test_scores": a.test_scores,
                                             "csm_test_hierarchy_pairs": a.csm_test_hierarchy_pairs,
                                             "expand_detections": a.expand_detections,
                                             "note": a.note} for a in plan.arms],
              "seeds": plan.seeds, "reference": plan.reference,
              "post_hoc": [list(p) for p in plan.post_hoc], "replicates": plan.replicates,
              "level": plan.level, "split_seed": plan.split_seed,
              "images": {k: len(v) for k, v in data.splits.items()},
              "base_config": dump_toml(config)}
    write_text_atomic(path, json.dumps(record, indent=1))


@dataclass(frozen=True)
class StudyDefaults:
    """A study's arms, default reference arm, post-hoc pairs, training images scored and the
    arms shown in ``figure.png`` (the seed's Figure 1 / Figure 2 columns)."""

    arms: tuple[Arm, ...]
    reference: str
    post_hoc: tuple[tuple[str, str], ...]
    train_eval_images: int
    figure_arms: tuple[str, ...]


STUDY_DEFAULTS = {
    "losses": StudyDefaults(LOSS_ARMS, "softmax_expand", LOSS_POST_HOC, 0,
                            ("softmax", "softmax_csm", "csm_softmax", "csm")),
    "samplers-overfit": StudyDefaults(SAMPLER_ARMS, "class_aware", (), 300,
                                      ("non_balance", "class_aware", "soft_balance_0.5")),
}


def study_plan(study: str, arm_names: str | None, seeds: list[int], *,
               reference: str | None = None, replicates: int = 1000,
               train_eval_images: int | None = None) -> StudyPlan:
    """The ``StudyPlan`` of ``wilddet experiment losses|samplers-overfit``: the selected arms
    (``--arms``, all by default) and the study's ``STUDY_DEFAULTS``. The reference arm is
    always run (added when ``--arms`` leaves it out)."""
    defaults = STUDY_DEFAULTS[study]
    reference = reference or defaults.reference
    chosen = select_arms(defaults.arms, arm_names)
    if reference not in {a.name for a in defaults.arms}:
        raise InputError(None, f"unknown reference arm {reference!r}", field="--reference")
    if reference not in {a.name for a in chosen}:
        chosen = [a for a in defaults.arms if a.name == reference or a in chosen]
    if replicates < 10:
        raise InputError(None, f"need >= 10 bootstrap replicates, got {replicates}",
                         field="--replicates")
    return StudyPlan(study, chosen, list(seeds), reference, defaults.post_hoc, replicates,
                     train_eval_images=defaults.train_eval_images if train_eval_images is None
                     else train_eval_images, notes=STUDY_NOTES[study])


STUDY_NOTES = {
    "losses": ((
        "Defaults of method.md kept: multi-hot RoI targets = IoU > 0.9 duplicates + ancestors "
        "(model.multi_hot, model.hierarchy_targets); r from the analyzer (IoU > 0.9, ratio "
        "cut 0.1, box-pair counts, capped at 1); test-time CSM adds r = 1 between a class and "
        "its ancestors (model.csm_test_hierarchy_pairs = true, a post-hoc choice: confirmed "
        "on the tuning half against csm_no_hier, see below)."),),
    "samplers-overfit": ((
        "Every arm uses the base config's loss; hybrid arms switch phase at "
        "sampling.non_balance_fraction and the LR steps of a step schedule (2/3 and 8/9 of "
        "the run) fall inside the last phase. Tail AP on training images beside val is the "
        "over-fitting signal."),),
}
