"""``wilddet sampling-stats``: CSV contract, hand-worked expected shares, plot, bad input."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from wilddet.cli import app
from wilddet.errors import InputError

CLASSES = "/m/a,Apple\n/m/b,Bus\n/m/c,\"Car, toy\"\n/m/d,Dog\n"
HEADER = "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
# images: i0 {a, b} (two a boxes), i1 {b}, i2 {a, c};  N = (2, 2, 1, 0), I = 3
ROWS = ["i0,/m/a,0.1,0.5,0.1,0.5,0", "i0,/m/a,0.2,0.6,0.2,0.6,1", "i0,/m/b,0,1,0,1,0",
        "i1,/m/b,0.3,0.4,0.3,0.4,0", "i2,/m/a,0.1,0.2,0.1,0.2,0", "i2,/m/c,0.5,0.9,0.5,0.9,0"]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "classes.csv").write_text(CLASSES)
    (tmp_path / "boxes.csv").write_text(HEADER + "\n".join(ROWS) + "\n")
    return tmp_path


def run(files, *extra, boxes="boxes.csv"):
    args = ["sampling-stats", "--boxes", str(files / boxes), "--classes",
            str(files / "classes.csv"), "--out", str(files / "stats.csv"), *extra]
    return CliRunner().invoke(app, args)


def read_stats(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_class_aware_hand_worked(files):
    result = run(files, "--sampler", "class-aware", "--num-samples", "20000", "--seed", "3",
                 "--plot", str(files / "stats.png"))
    assert result.exit_code == 0, result.output
    header, rows = read_stats(files / "stats.csv")
    assert header == ["label", "name", "images", "expected_share", "realized_share"]
    assert [r[:3] for r in rows] == [["/m/a", "Apple", "2"], ["/m/b", "Bus", "2"],
                                     ["/m/c", "Car, toy", "1"], ["/m/d", "Dog", "0"]]
    # P(c) = 1/3 -> P(i0) = 1/3, P(i1) = 1/6, P(i2) = 1/2; share_a = P(i0) + P(i2), ...
    expected = np.array([float(r[3]) for r in rows])
    np.testing.assert_allclose(expected, [5 / 6, 1 / 2, 1 / 2, 0], rtol=1e-7)
    realized = np.array([float(r[4]) for r in rows])
    tol = 5 * np.sqrt(expected * (1 - expected) / 20000) + 1e-12
    assert np.all(np.abs(realized - expected) <= tol)
    assert (files / "stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("sampler,extra,want", [
    ("non-balance", [], [2 / 3, 2 / 3, 1 / 3, 0]),
    # λ = 1: P(c) = N_c / 5, P(k) = labels(k) / 5 -> (2, 1, 2) / 5
    ("soft-balance", ["--lam", "1"], [4 / 5, 3 / 5, 2 / 5, 0]),
    # t = 0.5: f = (2/3, 2/3, 1/3) -> r = (1, 1, sqrt(1.5)) -> P(k) = (1, 1, 1.2247) / 3.2247
    ("repeat-factor", ["--repeat-threshold", "0.5"],
     [(1 + 1.5 ** 0.5) / (2 + 1.5 ** 0.5), 2 / (2 + 1.5 ** 0.5),
      1.5 ** 0.5 / (2 + 1.5 ** 0.5), 0]),
])
def test_expected_shares_per_sampler(files, sampler, extra, want):
    result = run(files, "--sampler", sampler, "--num-samples", "3000", *extra)
    assert result.exit_code == 0, result.output
    _, rows = read_stats(files / "stats.csv")
    np.testing.assert_allclose([float(r[3]) for r in rows], want, rtol=1e-7)


def test_hierarchy_expanded_counts(files):
    # /m/d (Dog) is the parent of /m/a and /m/c: expanded, every image with a or c has d
    tree = {"LabelName": "/m/0bl9f", "Subcategory": [
        {"LabelName": "/m/d", "Subcategory": [{"LabelName": "/m/a"}, {"LabelName": "/m/c"}]},
        {"LabelName": "/m/b"}]}
    (files / "h.json").write_text(json.dumps(tree))
    result = run(files, "--sampler", "non-balance", "--hierarchy", str(files / "h.json"),
                 "--num-samples", "3000")
    assert result.exit_code == 0, result.output
    _, rows = read_stats(files / "stats.csv")
    assert [r[2] for r in rows] == ["2", "2", "1", "2"]


def test_bad_box_file_names_line_and_field_and_writes_nothing(files):
    (files / "bad.csv").write_text(HEADER + ROWS[0] + "\ni1,/m/b,0.3,1.7,0.3,0.4,0\n")
    result = run(files, "--sampler", "soft-balance", "--plot", str(files / "stats.png"),
                 boxes="bad.csv")
    assert isinstance(result.exception, InputError)
    assert str(result.exception).startswith(f"{files / 'bad.csv'}:3: XMax:")
    assert not (files / "stats.csv").exists() and not (files / "stats.png").exists()


def test_box_file_without_boxes_is_an_input_error(files):
    (files / "empty.csv").write_text(HEADER)
    result = run(files, "--sampler", "class-aware", boxes="empty.csv")
    assert isinstance(result.exception, InputError)
    assert "empty.csv" in str(result.exception)
    assert not (files / "stats.csv").exists()


def test_unknown_sampler_is_a_usage_error(files):
    result = run(files, "--sampler", "balanced")
    assert result.exit_code == 2
    assert not (files / "stats.csv").exists()
