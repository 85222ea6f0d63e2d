"""The sampler study (``wilddet experiment samplers``).

Shapes: ``C`` classes, ``I`` val images.

Train with non-balance, class-aware, soft-balance (each λ) and the hybrid schedule; per-class
logs, mAP by head / middle / tail thirds of the classes, ``figure2.png``. Resumable
(``studies.common``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilddet.config import Config, with_overrides
from wilddet.data import oid_csv
from wilddet.data.hierarchy import expand_boxes
from wilddet.evaluation.ap import mean_ap
from wilddet.fileio import write_text_atomic
from wilddet.reports.csv_logs import PerClassAP
from wilddet.studies import common


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
                      say: common.Say = common.quiet, figure_images: int = 3) -> SamplerStudyResult:
    """Train one model per sampler of ``sampler_variants(lams)`` and score each; mAP by head /
    middle / tail thirds of the classes."""
    out = Path(out_dir)
    if config.model.classifier_loss == "concurrent_softmax" or \
            config.model.test_scores == "concurrent_softmax":
        config, _ = common.ensure_rate_file(config, out, say)
    image_ids = common.val_image_ids(config)
    variants = sampler_variants(lams)
    logs: dict[str, PerClassAP] = {}
    for name, overrides in variants:
        cfg = with_overrides(config, overrides)
        ckpt = common.train_once(cfg, out / "runs" / name, say)
        logs[name] = common.predict_and_score(cfg, ckpt, cfg.model.test_scores,
                                       out / "detections" / f"{name}.csv",
                                       out / f"balance_{name}.csv", image_ids)
        say(f"{name}: mAP {logs[name].mean_ap:.4f}")
    classes, groups_mask = _frequency_groups_of(config, next(iter(logs.values())))
    groups = {name: {"all": table.mean_ap,
                     **{g: mean_ap(table.ap[m]) for g, m in groups_mask.items()}}
              for name, table in logs.items()}
    soft = [n for n, _ in variants if n.startswith("soft_balance")]
    soft_pick = "soft_balance_0.5" if "soft_balance_0.5" in soft else (soft[0] if soft else
                                                                         "hybrid")
    tail_labels = set(classes.labels[groups_mask["tail"]].astype(str))
    images = common.pick_figure_images(config, tail_labels, figure_images)  # show the tail
    figure = common.figure_grid(out / "figure2.png", images, [
        ("ground truth", None), ("non-balance", out / "detections" / "non_balance.csv"),
        ("class-aware balance", out / "detections" / "class_aware.csv"),
        (soft_pick.replace("_", "-"), out / "detections" / f"{soft_pick}.csv")], config)
    summary = out / "summary.md"
    write_text_atomic(summary, _summary_md(config, variants, logs, groups, groups_mask, lams,
                                           soft_pick, image_ids, images.image_ids))
    from wilddet.reports.html.build import build_report  # the study's HTML report

    build_report([out], out / "report", title=f"wilddet experiment: {out.name}")
    return SamplerStudyResult(out, logs, groups, summary, figure)


def _frequency_groups_of(config: Config, scored: PerClassAP):
    """(classes, head / middle / tail masks) by hierarchy-expanded training boxes over the
    classes with val ground truth in ``scored``."""
    from wilddet.data.hierarchy import read_hierarchy
    from wilddet.engine.builders import require_file

    classes = oid_csv.read_classes(require_file(config, "classes"))
    boxes = oid_csv.read_boxes(require_file(config, "train_boxes"), classes)
    if config.data.hierarchy:
        boxes = expand_boxes(boxes, read_hierarchy(require_file(config, "hierarchy"), classes))
    counts = np.bincount(boxes.label_codes, minlength=len(classes)).astype(float)
    return classes, frequency_groups(counts, ~np.isnan(scored.ap))


def _summary_md(config: Config, variants, logs: dict[str, PerClassAP], groups, groups_mask,
                lams: list[float], soft_pick: str, image_ids: list[str],
                figure_ids: list[str]) -> str:
    from wilddet.reports.markdown import markdown_table
    from wilddet.reports.tables import compare_runs, to_markdown

    rows = [[name, " ".join(overrides), *(common.fmt_ap(groups[name][g]) for g in
                                         ("all", "head", "middle", "tail")),
             f"`balance_{name}.csv`"] for name, overrides in variants]
    lines = ["# Samplers: non-balance, class-aware, soft-balance, hybrid", "",
             (f"Challenge metric on {len(image_ids)} val images. Head / middle / tail: the classes "
             "with val ground truth split into thirds by their number of (hierarchy-expanded) "
             f"training boxes ({', '.join(f'{g}: {int(m.sum())}' for g, m in groups_mask.items())}"
             " classes)."), "",
             markdown_table(["run", "sampling", "mAP", "head", "middle", "tail", "log"], rows,
                            "llrrrrl")]
    if 0 in lams:
        lines += ["", ("λ = 0 is class-aware balance exactly (the same draws for the same seed): "
                  "the class_aware run stands for soft-balance λ = 0.")]
    names = [n for n, _ in variants]
    lines += ["", "## Per class (sorted by the gain of the last run over non-balance)", "",
              to_markdown(compare_runs([logs[n] for n in names], names), top=0), "",
              "## Figure 2", "", (f"`figure2.png`: val images {', '.join(figure_ids)} (those "
              "with most tail-class boxes); "
              f"ground truth, non-balance, class-aware, {soft_pick}; score ≥ "
              f"{common.FIGURE_SCORE_THRESH}."), "", "## Base config", "",
              common.config_block(config)]
    return "\n".join(lines)
