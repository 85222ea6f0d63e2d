"""Tables and ``summary.md`` of an ablation study (``studies.ablation``).

Shapes: ``C`` classes, ``S`` seeds, ``B`` bootstrap replicates, ``I`` test images.

Intervals: the test half of val is resampled B times (``stats.bootstrap.resample_counts``); an
arm's AP in a replicate is the mean over seeds of each seed model's AP there, so every arm and
every difference is paired on the same images (seed noise is shown apart, ``seed_sd``); the
intervals are ``stats.bootstrap``'s bias-corrected percentile intervals.

Files (one row per item, columns fixed):

- ``group_ap.csv``: arm, seed ("mean" = over seeds), split (val / tune / test / train), group,
  classes (with ground truth), map, low, high (intervals on seed "mean" / split test), seed_sd.
- ``group_differences.csv``: arm, reference, group, classes, diff, low, high (test split),
  then the same difference per seed (each seed's arm model against the reference model of that
  seed): seed_sd (sample SD over seeds), seed_min, seed_max, seeds_same_sign (how many seeds'
  differences have the sign of ``diff``; 0 when ``diff`` is 0).
- ``class_differences.csv``: arm, reference, label, name, groups, train_images (N_c),
  ap_reference, ap_arm, diff, low, high (test split).
- ``confident_detections.csv``: arm, seed, split, detections (score >= 0.5), scored,
  true_positives, precision, tail_scored, tail_precision (tail = leaves with N_c <= 10).
- ``post_hoc.csv``: default, alternative, chosen, tune_default, tune_alternative, test_chosen,
  low, high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from wilddet.evaluation.ap import mean_ap
from wilddet.fileio import atomic_path, write_text_atomic
from wilddet.stats.bootstrap import (
    bootstrap_ap,
    group_mean_differences,
    mean_intervals,
    paired_class_differences,
    resample_counts,
)
from wilddet.studies.class_groups import class_groups, frequency_bin_name, group_names_of

TAIL_GROUP = frequency_bin_name(1, 10)
GROUP_AP_COLUMNS = ["arm", "seed", "split", "group", "classes", "map", "low", "high", "seed_sd"]
DIFF_COLUMNS = ["arm", "reference", "group", "classes", "diff", "low", "high", "seed_sd",
                "seed_min", "seed_max", "seeds_same_sign"]
CLASS_DIFF_COLUMNS = ["arm", "reference", "label", "name", "groups", "train_images",
                      "ap_reference", "ap_arm", "diff", "low", "high"]
CONFIDENT_COLUMNS = ["arm", "seed", "split", "detections", "scored", "true_positives",
                     "precision", "tail_scored", "tail_precision"]
POST_HOC_COLUMNS = ["default", "alternative", "chosen", "tune_default", "tune_alternative",
                    "test_chosen", "low", "high"]


@dataclass(frozen=True)
class StudyReport:
    out_dir: Path
    group_ap: pd.DataFrame
    differences: pd.DataFrame
    class_differences: pd.DataFrame
    confident: pd.DataFrame
    post_hoc: pd.DataFrame
    summary: Path


def _seed_mean_ap(data, arm: str, seeds, split: str) -> np.ndarray:
    """[C] mean over seeds of the per-class AP (NaN where no GT)."""
    return np.mean([np.asarray(data.scored[arm, s, split].result.ap) for s in seeds], axis=0)


def _replicates(data, plan, counts) -> dict[str, np.ndarray]:
    """arm -> [B, C] seed-mean AP of every bootstrap replicate of the test half."""
    num = len(data.classes)
    return {a.name: np.mean([bootstrap_ap(data.scored[a.name, s, "test"].outcomes, counts, num)
                             for s in plan.seeds], axis=0) for a in plan.arms}


def _group_ap_rows(data, plan, groups, reps) -> list[list]:
    rows = []
    splits = [s for s in ("val", "tune", "test", "train") if s in data.splits]
    for arm in plan.arms:
        for split in splits:
            per_seed = {s: np.asarray(data.scored[arm.name, s, split].result.ap)
                        for s in plan.seeds}
            seed_mean = _seed_mean_ap(data, arm.name, plan.seeds, split)
            ci = (mean_intervals(reps[arm.name], seed_mean, groups, plan.level)
                  if split == "test" else {})
            for name, mask in groups.items():
                n = int((mask & ~np.isnan(seed_mean)).sum())
                seed_means = [mean_ap(ap[mask]) for ap in per_seed.values()]
                for s, m in zip(plan.seeds, seed_means):
                    rows.append([arm.name, s, split, name, n, m, math.nan, math.nan, math.nan])
                low = ci[name].low[0] if name in ci else math.nan
                high = ci[name].high[0] if name in ci else math.nan
                sd = float(np.std(seed_means, ddof=1)) if len(seed_means) > 1 else math.nan
                rows.append([arm.name, "mean", split, name, n, mean_ap(seed_mean[mask]), low,
                             high, sd])
    return rows


def _difference_rows(data, plan, groups, reps, points) -> tuple[list[list], list[list]]:
    group_rows, class_rows = [], []
    ref = plan.reference
    for arm in plan.arms:
        if arm.name == ref:
            continue
        diffs = group_mean_differences(reps[ref], reps[arm.name], points[ref], points[arm.name],
                                       groups, plan.level)
        for name, d in diffs.items():
            n = int((groups[name] & ~np.isnan(points[ref])).sum())
            group_rows.append([arm.name, ref, name, n, d.point[0], d.low[0], d.high[0],
                               *_seed_spread(data, plan, arm.name, groups[name], d.point[0])])
        per_class = paired_class_differences(reps[ref], reps[arm.name], points[ref],
                                             points[arm.name], plan.level)
        for c in np.flatnonzero(~np.isnan(points[ref])):
            class_rows.append([arm.name, ref, data.classes.labels[c], data.classes.names[c],
                               " ".join(group_names_of(groups, c)),
                               int(data.images_per_class[c]), points[ref][c], points[arm.name][c],
                               per_class.point[c], per_class.low[c], per_class.high[c]])
    return group_rows, class_rows


def _seed_spread(data, plan, arm: str, mask: np.ndarray, diff: float) -> list:
    """[seed_sd, seed_min, seed_max, seeds_same_sign] of the group's per-seed paired
    difference (test split): mean AP of ``arm``'s seed-s model minus the reference's seed-s
    model, over the group's classes."""
    per_seed = np.asarray([
        mean_ap(np.asarray(data.scored[arm, s, "test"].result.ap)[mask])
        - mean_ap(np.asarray(data.scored[plan.reference, s, "test"].result.ap)[mask])
        for s in plan.seeds])
    sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else math.nan
    same = int((np.sign(per_seed) == np.sign(diff)).sum()) if diff != 0 else 0
    return [sd, float(per_seed.min()), float(per_seed.max()), same]


def _confident_rows(data, plan, groups) -> list[list]:
    rows = []
    tail = groups[TAIL_GROUP]
    for arm in plan.arms:
        for split in [s for s in ("val", "train") if s in data.splits]:
            for s in plan.seeds:
                sc = data.scored[arm.name, s, split]
                tp, scored = int(sc.high_tp_per_class.sum()), sc.high_scored
                tail_tp = int(sc.high_tp_per_class[tail].sum())
                tail_n = int(sc.high_scored_per_class[tail].sum())
                rows.append([arm.name, s, split, sc.high_total, scored, tp,
                             tp / scored if scored else math.nan, tail_n,
                             tail_tp / tail_n if tail_n else math.nan])
    return rows


def _post_hoc_rows(data, plan, reps, points) -> list[list]:
    rows = []
    names = {a.name for a in plan.arms}
    for default, alternative in plan.post_hoc:
        if default not in names or alternative not in names:
            continue
        tune = {a: mean_ap(_seed_mean_ap(data, a, plan.seeds, "tune"))
                for a in (default, alternative)}
        chosen = default if tune[default] >= tune[alternative] else alternative
        ci = mean_intervals(reps[chosen], points[chosen],
                            {"all": np.ones(len(data.classes), bool)}, plan.level)["all"]
        rows.append([default, alternative, chosen, tune[default], tune[alternative],
                     ci.point[0], ci.low[0], ci.high[0]])
    return rows


def _write_csv(path: Path, rows, columns) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    return frame


def write_report(out: Path, plan, data) -> StudyReport:
    """Compute every table of the module docstring from ``data`` and write them."""
    groups = class_groups(data.classes, data.hierarchy, data.images_per_class, data.planted)
    counts = resample_counts(len(data.splits["test"]), plan.replicates, plan.split_seed)
    reps = _replicates(data, plan, counts)
    points = {a.name: _seed_mean_ap(data, a.name, plan.seeds, "test") for a in plan.arms}
    group_ap = _write_csv(out / "group_ap.csv", _group_ap_rows(data, plan, groups, reps),
                          GROUP_AP_COLUMNS)
    group_rows, class_rows = _difference_rows(data, plan, groups, reps, points)
    diffs = _write_csv(out / "group_differences.csv", group_rows, DIFF_COLUMNS)
    class_diffs = _write_csv(out / "class_differences.csv", class_rows, CLASS_DIFF_COLUMNS)
    confident = _write_csv(out / "confident_detections.csv",
                           _confident_rows(data, plan, groups), CONFIDENT_COLUMNS)
    post_hoc = _write_csv(out / "post_hoc.csv", _post_hoc_rows(data, plan, reps, points),
                          POST_HOC_COLUMNS)
    summary = out / "summary.md"
    write_text_atomic(summary, _summary_md(plan, data, groups, group_ap, diffs, confident,
                                           post_hoc))
    return StudyReport(out, group_ap, diffs, class_diffs, confident, post_hoc, summary)


def _with_ci(m: float, low: float, high: float) -> str:
    if math.isnan(m):
        return "–"
    return f"{m:.3f}" if math.isnan(low) else f"{m:.3f} [{low:.3f}, {high:.3f}]"


def _summary_md(plan, data, groups, group_ap, diffs, confident, post_hoc) -> str:
    from wilddet.reports.markdown import markdown_table

    shown = [g for g in groups if (groups[g] & ~np.isnan(
        _seed_mean_ap(data, plan.arms[0].name, plan.seeds, "test"))).any()]
    test = group_ap[(group_ap.seed == "mean") & (group_ap.split == "test")]
    table = [[a.name, *(_with_ci(*test[(test.arm == a.name) & (test.group == g)]
                                 [["map", "low", "high"]].iloc[0]) for g in shown)]
             for a in plan.arms]
    lines = [f"# Study `{plan.study}`", "",
             (f"Seeds {', '.join(map(str, plan.seeds))}; val split into a tuning half "
              f"({len(data.splits['tune'])} images) and a test half "
              f"({len(data.splits['test'])} images); numbers are on the test half, mean over "
              f"seeds, with {plan.level:.0%} paired bootstrap intervals over test images "
              f"({plan.replicates} replicates)."), "",
             *plan.notes, "", "## Arms", "",
             markdown_table(["arm", "what", "model overrides", "test-time"],
                            [[a.name, a.note, " ".join(a.train) or "–", _test_time(a)]
                             for a in plan.arms]),
             "", "## Mean AP by class group (test half)", "",
             "Groups: " + ", ".join(f"{g} ({int(groups[g].sum())} classes)" for g in shown), "",
             markdown_table(["arm", *shown], table, "l" + "r" * len(shown))]
    if len(diffs):
        rows = [[a, *(_diff_cell(diffs[(diffs.arm == a) & (diffs.group == g)].iloc[0],
                                 len(plan.seeds)) for g in shown)]
                for a in diffs.arm.unique()]
        lines += ["", f"## Paired difference to `{plan.reference}` (test half)", "",
                  (f"Each cell: difference of the seed means [{plan.level:.0%} interval over "
                   "test images]"
                   + (f", then how many of the {len(plan.seeds)} seeds' own differences share "
                      "its sign; **bold** when the interval excludes 0 and every seed agrees."
                      if len(plan.seeds) > 1 else ".")), "",
                  markdown_table(["arm", *shown], rows, "l" + "r" * len(shown))]
    if len(post_hoc):
        lines += ["", ("## Post-hoc choices (tuned on the tuning half, reported on the test "
                       "half)"), "", markdown_table(
                      ["default", "alternative", "tune mAP default", "tune mAP alternative",
                       "chosen", "test mAP (chosen)"],
                      [[r.default, r.alternative, f"{r.tune_default:.4f}",
                        f"{r.tune_alternative:.4f}", r.chosen,
                        _with_ci(r.test_chosen, r.low, r.high)] for r in post_hoc.itertuples()])]
    lines += ["", "## Confident detections (score ≥ 0.5)", "", markdown_table(
        ["arm", "split", "detections / image", "precision", "tail precision"],
        [[arm, split, f"{g.detections.mean() / len(data.splits[split]):.2f}",
          f"{g.precision.mean():.3f}", f"{g.tail_precision.mean():.3f}"]
         for (arm, split), g in confident.groupby(["arm", "split"], sort=False)], "llrrr")]
    if "train" in data.splits:
        lines += ["", "## Over-fitting: tail leaves (N_c ≤ 10) on training vs val images", "",
                  _train_val_table(plan, group_ap)]
    lines += ["", ("Files: group_ap.csv, group_differences.csv, class_differences.csv, "
                   "confident_detections.csv, post_hoc.csv, figure.png, per_class/, "
                   "detections/, runs/, study.json (arms, seeds, base config).")]
    return "\n".join(lines) + "\n"


def _diff_cell(row, num_seeds: int) -> str:
    """``+0.024 [0.005, 0.045] 3/3``; bold when the interval excludes 0 and all seeds agree."""
    text = _with_ci(row["diff"], row["low"], row["high"])
    if num_seeds < 2 or math.isnan(row["diff"]):
        return text
    text += f" {int(row['seeds_same_sign'])}/{num_seeds}"
    holds = (row["low"] > 0 or row["high"] < 0) and row["seeds_same_sign"] == num_seeds
    return f"**{text}**" if holds else text


def _test_time(arm) -> str:
    parts = []
    if arm.test_scores:
        parts.append(f"scores {arm.test_scores}")
    if arm.csm_test_hierarchy_pairs is not None:
        parts.append(f"csm_test_hierarchy_pairs={str(arm.csm_test_hierarchy_pairs).lower()}")
    if arm.expand_detections:
        parts.append("expand_detections")
    return ", ".join(parts) or "–"


def _train_val_table(plan, group_ap) -> str:
    from wilddet.reports.markdown import markdown_table

    mean = group_ap[(group_ap.seed == "mean") & (group_ap.group == TAIL_GROUP)]
    rows = []
    for a in plan.arms:
        get = {s: float(mean[(mean.arm == a.name) & (mean.split == s)]["map"].iloc[0])
               for s in ("train", "val")}
        rows.append([a.name, f"{get['train']:.3f}", f"{get['val']:.3f}",
                     f"{get['train'] - get['val']:+.3f}"])
    return markdown_table(["arm", "tail AP train", "tail AP val", "gap"], rows, "lrrr")
