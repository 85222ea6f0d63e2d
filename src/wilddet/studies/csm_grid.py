"""The concurrent-softmax 2×2 grid (``wilddet experiment csm-grid``).

Shapes: ``C`` classes, ``I`` val images.

Train with softmax ("bsl") and with concurrent softmax ("cs"), test each with softmax ("sm") and
with concurrent softmax ("csmconf"): the supplementary's four per-class logs
``balance_{bsl,cs}_{sm,csmconf}.csv``, a Table 1-style gain table on the co-occurring classes (the
analyzer's confusion pairs) and ``figure1.png``. Resumable (``studies.common``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wilddet.config import Config, with_overrides
from wilddet.fileio import write_text_atomic
from wilddet.reports.csv_logs import PerClassAP
from wilddet.studies import common

GRID_LOGS = {  # file stem -> (trained with, tested with)
    "balance_bsl_sm": ("softmax", "softmax"),
    "balance_bsl_csmconf": ("softmax", "concurrent_softmax"),
    "balance_cs_sm": ("concurrent_softmax", "softmax"),
    "balance_cs_csmconf": ("concurrent_softmax", "concurrent_softmax"),
}


@dataclass(frozen=True)
class CsmGridResult:
    out_dir: Path
    logs: dict[str, PerClassAP]     # GRID_LOGS stem -> per-class AP
    cooccurring: set[str]           # labels of the confusion-pair classes
    summary: Path
    figure: Path


def run_csm_grid(config: Config, out_dir: str | os.PathLike, *, say: common.Say = common.quiet,
                 figure_images: int = 3) -> CsmGridResult:
    """Train softmax and CSM models from ``config`` (only ``model.classifier_loss`` differs) and
    test each both ways."""
    from wilddet.reports.analysis_files import read_class_filter

    out = Path(out_dir)
    config, pairs_csv = common.ensure_rate_file(config, out, say)
    cooccurring = read_class_filter(pairs_csv)
    image_ids = common.val_image_ids(config)
    logs = _train_and_score_grid(config, out, image_ids, say)
    table1 = _write_table1(logs, cooccurring, out)
    images = common.pick_figure_images(config, cooccurring, figure_images)
    figure = common.figure_grid(out / "figure1.png", images, [
        (title, out / "detections" / f"{stem}.csv") for stem, title in FIGURE1_COLUMNS], config)
    summary = out / "summary.md"
    write_text_atomic(summary, _summary_md(config, logs, table1, cooccurring, image_ids,
                                           images.image_ids))
    from wilddet.reports.html.build import build_report  # the study's HTML report

    build_report([out], out / "report", title=f"wilddet experiment: {out.name}")
    return CsmGridResult(out, logs, cooccurring, summary, figure)


FIGURE1_COLUMNS = (("balance_bsl_sm", "sm-train + sm-test"),
                   ("balance_bsl_csmconf", "sm-train + csm-test"),
                   ("balance_cs_sm", "csm-train + sm-test"),
                   ("balance_cs_csmconf", "csm-train + csm-test"))


def _train_and_score_grid(config: Config, out: Path, image_ids: list[str], say: common.Say
                          ) -> dict[str, PerClassAP]:
    """Train the two models (runs/bsl, runs/cs), then score each of the four logs."""
    checkpoints = {}
    for tag, loss in (("bsl", "softmax"), ("cs", "concurrent_softmax")):
        cfg = with_overrides(config, [f"model.classifier_loss={loss}"])
        checkpoints[loss] = common.train_once(cfg, out / "runs" / tag, say)
    logs: dict[str, PerClassAP] = {}
    for stem, (trained, tested) in GRID_LOGS.items():
        cfg = with_overrides(config, [f"model.classifier_loss={trained}"])
        logs[stem] = common.predict_and_score(cfg, checkpoints[trained], tested,
                                       out / "detections" / f"{stem}.csv", out / f"{stem}.csv",
                                       image_ids)
        say(f"{stem}: mAP {logs[stem].mean_ap:.4f}")
    return logs


def _write_table1(logs: dict[str, PerClassAP], cooccurring: set[str], out: Path):
    """Table 1: the gain of CSM (train + test) over softmax on the co-occurring classes, as CSV
    and bar plot."""
    from wilddet.reports.plots_compare import plot_top_gains
    from wilddet.reports.tables import compare_runs, write_comparison_csv

    table1 = compare_runs([logs["balance_bsl_sm"], logs["balance_cs_csmconf"]],
                          ["w/o CSM", "w/ CSM"], restrict_to=cooccurring)
    write_comparison_csv(out / "table1_cooccurring_gain.csv", table1)
    plot_top_gains(out / "table1_cooccurring_gain.png", table1.names[:20], table1.gain[-1][:20],
                   title="AP gain of CSM (train + test) on co-occurring classes")
    return table1


def _summary_md(config: Config, logs: dict[str, PerClassAP], table1, cooccurring: set[str],
                image_ids: list[str], figure_ids: list[str]) -> str:
    from wilddet.reports.markdown import markdown_table
    from wilddet.reports.tables import compare_runs, to_markdown

    names = list(GRID_LOGS)
    grid = compare_runs([logs[n] for n in names], names)
    co_means = compare_runs([logs[n] for n in names], names, restrict_to=cooccurring).mean_ap()
    rows = [[f"`{stem}.csv`", *GRID_LOGS[stem], common.fmt_ap(logs[stem].mean_ap),
             common.fmt_ap(float(co_means[k]))] for k, stem in enumerate(names)]
    lines = ["# Concurrent softmax: the 2×2 grid", "",
             ("Rows of the seed's four logs: trained with softmax (bsl) or concurrent softmax (cs),"
             " tested with softmax (sm) or concurrent softmax (csmconf). Challenge metric on "
             f"{len(image_ids)} val images; co-occurring classes = the {len(cooccurring)} classes"
             " of the analyzer's confusion pairs."), "",
             markdown_table(["log", "train", "test", "mAP (all classes)", "mAP (co-occurring)"],
                            rows, "lllrr")]
    lines += ["", ("## Table 1: gain on co-occurring classes (w/o CSM = bsl_sm, w/ CSM = "
              "cs_csmconf)"), "", to_markdown(table1, top=25), "",
              "## All classes, four logs side by side (sorted by the last gain)", "",
              to_markdown(grid, top=0), "", "## Figure 1", "",
              (f"`figure1.png`: val images {', '.join(figure_ids)}; from left to right "
              "sm-train+sm-test, sm-train+csm-test, csm-train+sm-test, csm-train+csm-test; "
              f"score ≥ {common.FIGURE_SCORE_THRESH}."), "", ("## Config (softmax run; the CSM run "
              "differs only in model.classifier_loss)"), "", common.config_block(
                  with_overrides(config, ["model.classifier_loss=softmax"]))]
    return "\n".join(lines)
