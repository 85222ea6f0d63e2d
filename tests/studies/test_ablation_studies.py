"""`wilddet experiment losses|samplers-overfit` end to end on a tiny config (2 iterations per
model, 64 px, 2 arms, 2 seeds): every output and its columns, and a rerun retrains and
re-predicts nothing."""

import pandas as pd
import pytest
from engine_helpers import write_tiny_study
from typer.testing import CliRunner

from wilddet.cli import app
from wilddet.data.synthetic import SynthConfig
from wilddet.reports.csv_logs import PER_CLASS_COLUMNS
from wilddet.studies.ablation_report import (
    CLASS_DIFF_COLUMNS,
    CONFIDENT_COLUMNS,
    DIFF_COLUMNS,
    GROUP_AP_COLUMNS,
    POST_HOC_COLUMNS,
)

TINY = ["train.max_iters=2", "train.batch_size=2", "train.checkpoint_period_iters=2",
        "train.tensorboard=false", "eval.period_iters=-1", "model.min_size_px=64",
        "model.max_size_px=64", "optim.lr_schedule=step"]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    return write_tiny_study(tmp_path_factory.mktemp("study"),
                            SynthConfig(train_images=16, val_images=8, classes=12, image_size=64,
                                        objects_per_image=2, seed=1, val_class_balance=1), TINY)


def _run(args):
    result = CliRunner().invoke(app, ["experiment", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()
            and p.suffix in (".pt", ".csv") and p.parent.name != folder.name}


def _check_tables(out, arms, reference):
    assert list(pd.read_csv(out / "group_ap.csv").columns) == GROUP_AP_COLUMNS
    group_ap = pd.read_csv(out / "group_ap.csv")
    assert set(group_ap.arm) == set(arms) and set(group_ap.seed.astype(str)) == {"0", "1", "mean"}
    assert {"all", "leaves", "parents", "d_synonym", "control", "leaves_Nc_1-10"} <= \
        set(group_ap.group)
    test_all = group_ap[(group_ap.seed == "mean") & (group_ap.split == "test")
                        & (group_ap.group == "all")]
    # percentile intervals (they need not hold the point estimate on 4 test images)
    assert len(test_all) == len(arms) and (0 <= test_all.low).all()
    assert (test_all.low <= test_all.high).all() and (test_all.high <= 1).all()
    diffs = pd.read_csv(out / "group_differences.csv")
    assert list(diffs.columns) == DIFF_COLUMNS and set(diffs.reference) == {reference}
    _check_seed_spread(diffs, group_ap)
    assert list(pd.read_csv(out / "class_differences.csv").columns) == CLASS_DIFF_COLUMNS
    assert list(pd.read_csv(out / "confident_detections.csv").columns) == CONFIDENT_COLUMNS
    assert list(pd.read_csv(out / "post_hoc.csv").columns) == POST_HOC_COLUMNS
    for arm in arms:
        for seed in (0, 1):
            per_class = pd.read_csv(out / "per_class" / f"{arm}_s{seed}.csv")
            assert tuple(per_class.columns) == PER_CLASS_COLUMNS
            assert (out / "detections" / f"{arm}_s{seed}.csv").is_file()
    assert (out / "figure.png").stat().st_size > 1000
    return (out / "summary.md").read_text()


def _check_seed_spread(diffs, group_ap):
    """Per-seed columns recomputed from group_ap.csv's per-seed test rows: the mean of the
    seeds' differences is ``diff`` (same classes in every seed), min/max/SD/sign count match."""
    test = group_ap[(group_ap.split == "test") & (group_ap.seed != "mean")]
    value = {(r.arm, str(r.seed), r.group): r.map for r in test.itertuples()}
    checked = 0
    for r in diffs.itertuples():
        per_seed = [value[r.arm, s, r.group] - value[r.reference, s, r.group] for s in ("0", "1")]
        if any(pd.isna(per_seed)):
            continue
        mean = sum(per_seed) / 2
        assert r.diff == pytest.approx(mean, abs=1e-5)
        assert r.seed_min == pytest.approx(min(per_seed), abs=1e-5)
        assert r.seed_max == pytest.approx(max(per_seed), abs=1e-5)
        assert r.seed_sd == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5, abs=1e-5)
        same = sum((d > 0) == (r.diff > 0) and d != 0 for d in per_seed) if r.diff != 0 else 0
        assert r.seeds_same_sign == same
        checked += 1
    assert checked > 0


def test_loss_study_end_to_end_and_resumed(tiny_config, tmp_path):
    out = tmp_path / "losses"
    args = ["losses", str(tiny_config), "--out", str(out), "--arms", "softmax_expand,csm",
            "--seeds", "0,1", "--replicates", "20"]
    _run(args)
    summary = _check_tables(out, ["softmax_expand", "csm"], "softmax_expand")
    assert "## Paired difference to `softmax_expand`" in summary and "csm" in summary
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["csm_s0", "csm_s1",
                                                                "softmax_expand_s0",
                                                                "softmax_expand_s1"]
    before = _mtimes(out)
    second = _run(args)
    assert second.count("not retrained") == 4 and "training" not in second.replace(
        "not retrained", "")
    assert _mtimes(out) == before  # no checkpoint, detection or per-class log rewritten


def test_sampler_study_scores_training_images(tiny_config, tmp_path):
    out = tmp_path / "samplers"
    _run(["samplers-overfit", str(tiny_config), "--out", str(out), "--arms",
          "class_aware,hybrid_sb_first", "--seeds", "0,1", "--replicates", "20"])
    summary = _check_tables(out, ["class_aware", "hybrid_sb_first"], "class_aware")
    assert "tail AP train" in summary
    group_ap = pd.read_csv(out / "group_ap.csv")
    assert "train" in set(group_ap.split)
    confident = pd.read_csv(out / "confident_detections.csv")
    assert set(confident.split) == {"val", "train"}
    assert (out / "train_per_class" / "class_aware_s0.csv").is_file()


def test_bad_arm_and_seeds_are_input_errors(tiny_config, tmp_path):
    for extra, field in ((["--arms", "softmax,bogus"], "--arms"), (["--seeds", "0,0"], "--seeds")):
        result = CliRunner().invoke(app, ["experiment", "losses", str(tiny_config), "--out",
                                          str(tmp_path / "x"), *extra])
        assert result.exit_code != 0 and field in str(result.exception)
        assert not (tmp_path / "x").exists()
