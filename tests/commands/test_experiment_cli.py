"""Smoke test of `wilddet experiment csm-grid|samplers` on a tiny config: every output file and
its columns, and that a finished study is not retrained."""

import csv

import pytest
from engine_helpers import write_tiny_study
from typer.testing import CliRunner

from wilddet.cli import app
from wilddet.data.synthetic import SynthConfig
from wilddet.reports.csv_logs import PER_CLASS_COLUMNS

TINY = ["train.max_iters=2", "train.batch_size=2", "train.checkpoint_period_iters=2",
        "train.tensorboard=false", "eval.period_iters=-1", "eval.max_images=6",
        "model.min_size_px=64", "model.max_size_px=64"]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    return write_tiny_study(tmp_path_factory.mktemp("exp"),
                            SynthConfig(train_images=16, val_images=6, classes=8, image_size=64,
                                        objects_per_image=2, seed=1), TINY)


def _header(path):
    with open(path, newline="") as f:
        return next(csv.reader(f))


def test_csm_grid_writes_every_output(tiny_config, tmp_path):
    out = tmp_path / "grid"
    result = CliRunner().invoke(app, ["experiment", "csm-grid", str(tiny_config), "--out",
                                      str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    for stem in ("balance_bsl_sm", "balance_bsl_csmconf", "balance_cs_sm", "balance_cs_csmconf"):
        assert tuple(_header(out / f"{stem}.csv")) == PER_CLASS_COLUMNS
    assert _header(out / "table1_cooccurring_gain.csv")[:3] == ["label", "name", "num_gt"]
    assert (out / "figure1.png").stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    assert "balance_cs_csmconf.csv" in summary and "Table 1" in summary
    assert (out / "analysis" / "concurrent_rate.npz").is_file()
    # resume: nothing is retrained, outputs stay as they were
    before = (out / "balance_cs_sm.csv").read_bytes()
    again = CliRunner().invoke(app, ["experiment", "csm-grid", str(tiny_config), "--out",
                                     str(out)])
    assert again.exit_code == 0
    assert "not retrained" in again.output
    assert (out / "balance_cs_sm.csv").read_bytes() == before


def test_samplers_writes_every_output(tiny_config, tmp_path):
    out = tmp_path / "samplers"
    result = CliRunner().invoke(app, ["experiment", "samplers", str(tiny_config), "--out",
                                      str(out), "--lams", "0,0.5"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    for name in ("non_balance", "class_aware", "soft_balance_0.5", "hybrid"):
        assert tuple(_header(out / f"balance_{name}.csv")) == PER_CLASS_COLUMNS
    assert not (out / "balance_soft_balance_0.csv").exists()  # λ = 0 is class-aware
    assert (out / "figure2.png").stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    for word in ("head", "middle", "tail", "hybrid"):
        assert word in summary


def test_bad_lams_is_one_clear_error(tiny_config, tmp_path):
    result = CliRunner().invoke(app, ["experiment", "samplers", str(tiny_config), "--out",
                                      str(tmp_path / "x"), "--lams", "0,2"])
    assert result.exit_code != 0
    assert "--lams" in str(result.exception)
    assert not (tmp_path / "x").exists()
