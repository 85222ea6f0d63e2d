"""The paper's ablation studies as functions (``wilddet experiment``), built from train, predict,
the analyzer and the challenge metric.

Shapes: ``C`` classes, ``I`` val images.

- ``run_csm_grid``: train with softmax ("bsl") and with concurrent softmax ("cs"), test each with
  softmax ("sm") and with concurrent softmax ("csmconf"): the supplementary's four per-class logs
  ``balance_{bsl,cs}_{sm,csmconf}.csv``, a Table 1-style gain table on the co-occurring classes
  (the analyzer's confusion pairs) and ``figure1.png``.
- ``run_sampler_study``: train with non-balance, class-aware, soft-balance (each λ) and the hybrid
  schedule; per-class logs, mAP by head / middle / tail thirds of the classes, ``figure2.png``.

Every step is resumable: a finished training run (final checkpoint at ``max_iters``), a written
detections file and a written per-class log are reused, so an interrupted study re-runs only what
is missing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from wilddet.config import Config, dump_toml, with_overrides
from wilddet.data import oid_csv
from wilddet.data.hierarchy import expand_boxes
from wilddet.fileio import write_text_atomic
from wilddet.reports.csv_logs import PerClassAP, read_per_class_ap, write_per_class_ap

log = logging.getLogger(__name__)

GRID_LOGS = {  # file stem -> (trained with, tested with)
    "balance_bsl_sm": ("softmax", "softmax"),
    "balance_bsl_csmconf": ("softmax", "concurrent_softmax"),
    "balance_cs_sm": ("concurrent_softmax", "softmax"),
    "balance_cs_csmconf": ("concurrent_softmax", "concurrent_softmax"),
}
FIGURE_SCORE_THRESH = 0.5  # as in the seed's Figures 1 and 2

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------------------------
# shared steps


def ensure_rate_file(config: Config, out_dir: Path, say: Say = _quiet) -> tuple[Config, Path]:
    """Run the analyzer on the train boxes into ``out_dir/analysis`` (once) and point
    ``model.rate_file`` at its ``concurrent_rate.npz`` unless the config names one. Returns the
    config and the confusion-pairs CSV (the co-occurring classes of Table 1)."""
    from wilddet.commands.analyze import analyze_dataset
    from wilddet.engine.builders import require_file

    analysis_dir = out_dir / "analysis"
    pairs_csv = analysis_dir / "confusion_pairs.csv"
    if not pairs_csv.is_file():
        analyze_dataset(require_file(config, "train_boxes"), require_file(config, "classes"),
                        require_file(config, "hierarchy") if config.data.hierarchy else None,
                        analysis_dir)
        say(f"analysis: wrote {analysis_dir}")
    if not config.model.rate_file:
        config = dataclasses.replace(config, model=dataclasses.replace(
            config.model, rate_file=str(analysis_dir / "concurrent_rate.npz")))
    return config, pairs_csv


def train_once(config: Config, run_dir: Path, say: Say = _quiet) -> Path:
    """Train ``config`` into ``run_dir`` unless a finished run is there; returns the final
    checkpoint. An unfinished run is resumed from its newest checkpoint."""
    from wilddet.engine.checkpoint import latest_valid_checkpoint
    from wilddet.engine.train import train

    found = latest_valid_checkpoint(run_dir) if run_dir.exists() else None
    if found is not None and int(found[1]["iteration"]) >= config.train.max_iters:
        say(f"{run_dir.name}: finished run found, not retrained")
        return found[0]
    say(f"{run_dir.name}: training {config.train.max_iters} iterations "
        f"({config.model.classifier_loss} loss, {config.sampling.kind} sampling)")
    result = train(config, run_dir, resume=True)
    say(f"{run_dir.name}: done in {result.seconds / 60:.1f} min")
    return result.checkpoint


def predict_and_score(config: Config, checkpoint: Path, test_scores: str, detections_csv: Path,
                      per_class_csv: Path, image_ids: list[str]) -> PerClassAP:
    """Detections of the val images with ``test_scores`` (cached in ``detections_csv``), scored
    with the challenge metric into ``per_class_csv`` (cached)."""
    from wilddet.engine.builders import load_meta, require_file
    from wilddet.engine.evaluate import evaluate_detections
    from wilddet.engine.inference import predict

    if per_class_csv.is_file():
        return read_per_class_ap(per_class_csv)
    meta = load_meta(config)
    if detections_csv.is_file():
        detections = oid_csv.read_detections(detections_csv, meta.classes)
    else:
        detections = predict(checkpoint, require_file(config, "val_images"), detections_csv,
                             image_ids=image_ids, test_scores=test_scores,
                             batch_size=config.eval.batch_size, device=config.train.device,
                             num_workers=0, progress=False)
    evaluation = evaluate_detections(detections, config, meta, image_ids)
    table = PerClassAP.from_result(meta.classes, evaluation.result)
    write_per_class_ap(per_class_csv, table)
    return table


def val_image_ids(config: Config) -> list[str]:
    from wilddet.engine.evaluate import split_image_ids

    return split_image_ids(config, config.eval.max_images)


@dataclass(frozen=True)
class FigureImages:
    """Val images chosen for a figure: ImageIDs, pixels [H, W, 3] uint8 and a ground-truth
    ``reports.draw.Panel`` (raw, unexpanded boxes) each."""

    image_ids: list[str]
    pixels: list[np.ndarray]
    truth: list


def pick_figure_images(config: Config, prefer_labels: set[str], count: int = 3,
                       max_boxes: int = 12) -> FigureImages:
    """``count`` val images with at most ``max_boxes`` boxes, those holding most boxes of
    ``prefer_labels`` first (ties by ImageID), with their raw ground truth."""
    from PIL import Image

    from wilddet.engine.builders import require_file
    from wilddet.reports.draw import table_panel

    classes = oid_csv.read_classes(require_file(config, "classes"))
    gt = oid_csv.read_boxes(require_file(config, "val_boxes"), classes)
    allowed = set(val_image_ids(config))
    preferred = np.isin(classes.labels.astype(str)[gt.label_codes],
                        np.asarray(sorted(prefer_labels), dtype=str))
    score = np.bincount(gt.image_codes, weights=preferred.astype(float),
                        minlength=gt.num_images)
    boxes_per_image = np.bincount(gt.image_codes, minlength=gt.num_images)
    readable = boxes_per_image <= max_boxes  # crowded images make unreadable pictures
    candidates = [i for i in np.argsort(-score, kind="stable")
                  if gt.image_ids[i] in allowed and readable[i]]
    chosen = sorted(candidates[:count], key=lambda i: (-score[i], gt.image_ids[i]))
    folder = require_file(config, "val_images")
    out = FigureImages([], [], [])
    for code in chosen:
        image_id = str(gt.image_ids[code])
        pixels = np.asarray(Image.open(folder / f"{image_id}.jpg").convert("RGB"))
        out.image_ids.append(image_id)
        out.pixels.append(pixels)
        out.truth.append(table_panel("ground truth", gt, classes.names, image_id,
                                     *pixels.shape[:2], mark_group_of=True))
    return out


def detection_panel(title: str, detections_csv: Path, config: Config, image_id: str,
                    height: int, width: int):
    """A ``reports.draw.Panel`` of one image's detections read back from a detections CSV."""
    from wilddet.engine.builders import require_file
    from wilddet.reports.draw import table_panel

    classes = oid_csv.read_classes(require_file(config, "classes"))
    dets = _read_detections_cached(detections_csv, classes)
    return table_panel(title, dets, classes.names, image_id, height, width)


_DET_CACHE: dict[tuple[str, float], object] = {}


def _read_detections_cached(path: Path, classes):
    key = (str(path), path.stat().st_mtime)
    if key not in _DET_CACHE:
        if len(_DET_CACHE) > 8:  # figures read a handful of files; keep memory bounded
            _DET_CACHE.clear()
        _DET_CACHE[key] = oid_csv.read_detections(path, classes)
    return _DET_CACHE[key]


def _figure(path: Path, images: FigureImages, columns: list[tuple[str, Path | None]],
            config: Config) -> Path:
    """Rows = images; columns = (title, detections CSV) or (title, None) for ground truth."""
    from wilddet.reports.draw import draw_grid

    rows = []
    for k, image_id in enumerate(images.image_ids):
        h, w = images.pixels[k].shape[:2]
        panels = []
        for title, csv_path in columns:
            if csv_path is None:
                panels.append(dataclasses.replace(images.truth[k], title=title))
            else:
                panels.append(detection_panel(title, csv_path, config, image_id, h, w))
        rows.append((images.pixels[k], panels))
    return draw_grid(path, rows, score_thresh=FIGURE_SCORE_THRESH)


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _config_block(config: Config) -> str:
    return "```toml\n" + dump_toml(config).strip() + "\n```\n"


# ----------------------------------------------------------------------------------------------
# 2×2 concurrent-softmax grid


@dataclass(frozen=True)
class CsmGridResult:
    out_dir: Path
    logs: dict[str, PerClassAP]     # GRID_LOGS stem -> per-class AP
    cooccurring: set[str]           # labels of the confusion-pair classes
    summary: Path
    figure: Path


def run_csm_grid(config: Config, out_dir: str | os.PathLike, *, say: Say = _quiet,
                 figure_images: int = 3) -> CsmGridResult:
    """Train softmax and CSM models from ``config`` (only ``model.classifier_loss`` differs) and
    test each both ways."""
    from wilddet.commands.compare import read_class_filter
    from wilddet.reports.plots_compare import plot_top_gains
    from wilddet.reports.tables import compare_runs, to_markdown, write_comparison_csv

    out = Path(out_dir)
    config, pairs_csv = ensure_rate_file(config, out, say)
    cooccurring = read_class_filter(pairs_csv)
    image_ids = val_image_ids(config)
    checkpoints = {}
    for tag, loss in (("bsl", "softmax"), ("cs", "concurrent_softmax")):
        cfg = with_overrides(config, [f"model.classifier_loss={loss}"])
        checkpoints[loss] = train_once(cfg, out / "runs" / tag, say)
    logs: dict[str, PerClassAP] = {}
    for stem, (trained, tested) in GRID_LOGS.items():
        cfg = with_overrides(config, [f"model.classifier_loss={trained}"])
        logs[stem] = predict_and_score(cfg, checkpoints[trained], tested,
                                       out / "detections" / f"{stem}.csv", out / f"{stem}.csv",
                                       image_ids)
        say(f"{stem}: mAP {logs[stem].mean_ap:.4f}")
    names = list(GRID_LOGS)
    table1 = compare_runs([logs["balance_bsl_sm"], logs["balance_cs_csmconf"]],
                          ["w/o CSM", "w/ CSM"], restrict_to=cooccurring)
    write_comparison_csv(out / "table1_cooccurring_gain.csv", table1)
    plot_top_gains(out / "table1_cooccurring_gain.png", table1.names[:20], table1.gain[-1][:20],
                   title="AP gain of CSM (train + test) on co-occurring classes")
    grid = compare_runs([logs[n] for n in names], names)
    co_grid = compare_runs([logs[n] for n in names], names, restrict_to=cooccurring)
    images = pick_figure_images(config, cooccurring, figure_images)
    figure = _figure(out / "figure1.png", images, [
        ("sm-train + sm-test", out / "detections" / "balance_bsl_sm.csv"),
        ("sm-train + csm-test", out / "detections" / "balance_bsl_csmconf.csv"),
        ("csm-train + sm-test", out / "detections" / "balance_cs_sm.csv"),
        ("csm-train + csm-test", out / "detections" / "balance_cs_csmconf.csv")], config)
    lines = ["# Concurrent softmax: the 2×2 grid", "",
             "Rows of the seed's four logs: trained with softmax (bsl) or concurrent softmax (cs),"
             " tested with softmax (sm) or concurrent softmax (csmconf). Challenge metric on "
             f"{len(image_ids)} val images; co-occurring classes = the {len(cooccurring)} classes"
             " of the analyzer's confusion pairs.", "",
             "| log | train | test | mAP (all classes) | mAP (co-occurring) |",
             "|---|---|---|---:|---:|"]
    co_means = co_grid.mean_ap()
    for k, stem in enumerate(names):
        trained, tested = GRID_LOGS[stem]
        lines.append(f"| `{stem}.csv` | {trained} | {tested} | {_fmt(logs[stem].mean_ap)} | "
                     f"{_fmt(float(co_means[k]))} |")
    lines += ["", "## Table 1: gain on co-occurring classes (w/o CSM = bsl_sm, w/ CSM = "
              "cs_csmconf)", "", to_markdown(table1, top=25), "",
              "## All classes, four logs side by side (sorted by the last gain)", "",
              to_markdown(grid, top=0), "", "## Figure 1", "",
              f"`figure1.png`: val images {', '.join(images.image_ids)}; from left to right "
              "sm-train+sm-test, sm-train+csm-test, csm-train+sm-test, csm-train+csm-test; "
              f"score ≥ {FIGURE_SCORE_THRESH}.", "", "## Config (softmax run; the CSM run "
              "differs only in model.classifier_loss)", "", _config_block(
                  with_overrides(config, ["model.classifier_loss=softmax"]))]
    summary = out / "summary.md"
    write_text_atomic(summary, "\n".join(lines))
    return CsmGridResult(out, logs, cooccurring, summary, figure)


# ----------------------------------------------------------------------------------------------
# samplers


def frequency_groups(train_counts: np.ndarray, has_gt: np.ndarray) -> dict[str, np.ndarray]:
    """Split the classes with val ground truth into head / middle / tail thirds by their number of
    training boxes (hierarchy-expanded), most frequent first. Returns name -> [C] bool mask."""
    codes = np.flatnonzero(has_gt)
    order = codes[np.lexsort((codes, -train_counts[codes]))]
    thirds = np.array_split(order, 3)
    out = {}
    for name, members in zip(("head", "middle", "tail"), thirds):
        mask = np.zeros(len(train_counts), dtype=bool)
        mask[members] = True
        out[name] = mask
    return out


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else math.nan


@dataclass(frozen=True)
class SamplerStudyResult:
    out_dir: Path
    logs: dict[str, PerClassAP]
    groups: dict[str, dict[str, float]]   # run -> {"all", "head", "middle", "tail"} mAP
    summary: Path
    figure: Path


def sampler_variants(lams: list[float]) -> list[tuple[str, list[str]]]:
    """(run name, --set overrides) of the sampler study. λ = 0 is class-aware exactly (same draws
    for the same seed), so it is not trained twice."""
    runs = [("non_balance", ["sampling.kind=non-balance"]),
            ("class_aware", ["sampling.kind=class-aware"])]
    for lam in lams:
        if lam == 0:
            continue
        runs.append((f"soft_balance_{lam:g}", ["sampling.kind=soft-balance",
                                                f"sampling.lam={lam}"]))
    runs.append(("hybrid", ["sampling.kind=hybrid"]))
    return runs


def run_sampler_study(config: Config, out_dir: str | os.PathLike, lams: list[float], *,
                      say: Say = _quiet, figure_images: int = 3) -> SamplerStudyResult:
    from wilddet.data.hierarchy import read_hierarchy
    from wilddet.engine.builders import require_file
    from wilddet.reports.tables import compare_runs, to_markdown

    out = Path(out_dir)
    if config.model.classifier_loss == "concurrent_softmax" or \
            config.model.test_scores == "concurrent_softmax":
        config, _ = ensure_rate_file(config, out, say)
    image_ids = val_image_ids(config)
    variants = sampler_variants(lams)
    logs: dict[str, PerClassAP] = {}
    for name, overrides in variants:
        cfg = with_overrides(config, overrides)
        ckpt = train_once(cfg, out / "runs" / name, say)
        logs[name] = predict_and_score(cfg, ckpt, cfg.model.test_scores,
                                       out / "detections" / f"{name}.csv",
                                       out / f"balance_{name}.csv", image_ids)
        say(f"{name}: mAP {logs[name].mean_ap:.4f}")
    # head / middle / tail by hierarchy-expanded training boxes
    classes = oid_csv.read_classes(require_file(config, "classes"))
    boxes = oid_csv.read_boxes(require_file(config, "train_boxes"), classes)
    if config.data.hierarchy:
        boxes = expand_boxes(boxes, read_hierarchy(require_file(config, "hierarchy"), classes))
    counts = np.bincount(boxes.label_codes, minlength=len(classes)).astype(float)
    first = next(iter(logs.values()))
    groups_mask = frequency_groups(counts, ~np.isnan(first.ap))
    groups = {name: {"all": table.mean_ap,
                     **{g: _nanmean(table.ap[m]) for g, m in groups_mask.items()}}
              for name, table in logs.items()}
    soft = [n for n, _ in variants if n.startswith("soft_balance")]
    soft_pick = "soft_balance_0.5" if "soft_balance_0.5" in soft else (soft[0] if soft else
                                                                         "hybrid")
    tail_labels = set(classes.labels[groups_mask["tail"]].astype(str))
    images = pick_figure_images(config, tail_labels, figure_images)  # show the tail
    figure = _figure(out / "figure2.png", images, [
        ("ground truth", None), ("non-balance", out / "detections" / "non_balance.csv"),
        ("class-aware balance", out / "detections" / "class_aware.csv"),
        (soft_pick.replace("_", "-"), out / "detections" / f"{soft_pick}.csv")], config)
    lines = ["# Samplers: non-balance, class-aware, soft-balance, hybrid", "",
             f"Challenge metric on {len(image_ids)} val images. Head / middle / tail: the classes "
             "with val ground truth split into thirds by their number of (hierarchy-expanded) "
             f"training boxes ({', '.join(f'{g}: {int(m.sum())}' for g, m in groups_mask.items())}"
             " classes).", "",
             "| run | sampling | mAP | head | middle | tail | log |",
             "|---|---|---:|---:|---:|---:|---|"]
    for name, overrides in variants:
        g = groups[name]
        lines.append(f"| {name} | {' '.join(overrides)} | {_fmt(g['all'])} | {_fmt(g['head'])} |"
                     f" {_fmt(g['middle'])} | {_fmt(g['tail'])} | `balance_{name}.csv` |")
    if 0 in lams:
        lines += ["", "λ = 0 is class-aware balance exactly (the same draws for the same seed): "
                  "the class_aware run stands for soft-balance λ = 0."]
    names = [n for n, _ in variants]
    lines += ["", "## Per class (sorted by the gain of the last run over non-balance)", "",
              to_markdown(compare_runs([logs[n] for n in names], names), top=0), "",
              "## Figure 2", "", f"`figure2.png`: val images {', '.join(images.image_ids)} (those "
              "with most tail-class boxes); "
              f"ground truth, non-balance, class-aware, {soft_pick}; score ≥ "
              f"{FIGURE_SCORE_THRESH}.", "", "## Base config", "", _config_block(config)]
    summary = out / "summary.md"
    write_text_atomic(summary, "\n".join(lines))
    return SamplerStudyResult(out, logs, groups, summary, figure)
