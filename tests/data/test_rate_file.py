"""concurrent_rate.npz: writer -> reader round trip, label re-ordering and capping, and bad
files naming the file and the field."""

import re

import numpy as np
import pytest

from wilddet.data.rate_file import read_rate_file, write_rate_file
from wilddet.errors import InputError


def test_write_then_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rate = rng.uniform(0, 1, (4, 4)).astype(np.float32)
    np.fill_diagonal(rate, 0)
    labels = ["/m/a", "/m/b", "/m/c", "/m/d"]
    confusion = rng.integers(0, 9, (4, 4))
    source = rng.integers(1, 9, 4)
    path = tmp_path / "sub" / "concurrent_rate.npz"
    write_rate_file(path, labels, rate, confusion, source)
    assert sorted(p.name for p in path.parent.iterdir()) == ["concurrent_rate.npz"]  # no temp
    np.testing.assert_array_equal(read_rate_file(path, labels), rate)
    np.testing.assert_array_equal(read_rate_file(path, labels[::-1]), rate[::-1, ::-1])
    with np.load(path) as data:
        assert data["labels"].tolist() == labels
        np.testing.assert_array_equal(data["confusion_boxes"], confusion)
        np.testing.assert_array_equal(data["source_boxes"], source)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 half")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_rate_file(tmp_path / "concurrent_rate.npz", ["/m/a"], np.zeros((1, 1)),
                        np.zeros((1, 1)), np.zeros(1))
    assert list(tmp_path.iterdir()) == []


def write_rate(path, labels, rate):
    np.savez(path, labels=np.array(labels), rate=np.asarray(rate, dtype=np.float32))


def test_read_rate_file_reorders_and_caps(tmp_path):
    path = tmp_path / "concurrent_rate.npz"
    # file order b, a, x (x unknown to the model); model order a, b
    write_rate(path, ["/m/b", "/m/a", "/m/x"], [[0, 0.25, 0.1], [1.5, 0, 0.2], [0.3, 0.4, 0]])
    rate = read_rate_file(path, ["/m/a", "/m/b"])
    assert rate.dtype == np.float32
    np.testing.assert_array_equal(rate, np.array([[0, 1.0], [0.25, 0]], np.float32))


@pytest.mark.parametrize("labels,rate,message", [
    (["/m/a", "/m/c"], [[0, 0.5], [0.5, 0]], "not in the file"),
    (["/m/a", "/m/b"], [[0, -0.5], [0.5, 0]], r"finite and in \[0, 1\]"),
    (["/m/a", "/m/b"], [[0.1, 0.5], [0.5, 0]], "zero diagonal"),
    (["/m/a", "/m/b"], [[0, 0.5, 0], [0.5, 0, 0]], r"\[C, C\]"),
    (["/m/a", "/m/a"], [[0, 0.5], [0.5, 0]], "duplicate"),
])
def test_read_rate_file_errors_name_the_file(tmp_path, labels, rate, message):
    path = tmp_path / "concurrent_rate.npz"
    write_rate(path, labels, rate)
    with pytest.raises(InputError, match=message) as err:
        read_rate_file(path, ["/m/a", "/m/b"])
    assert str(err.value).startswith(str(path))


def test_read_rate_file_missing_array_and_file(tmp_path):
    path = tmp_path / "r.npz"
    np.savez(path, labels=np.array(["/m/a"]))
    with pytest.raises(InputError, match="missing array") as err:
        read_rate_file(path, ["/m/a"])
    assert err.value.field == "rate"
    with pytest.raises(InputError, match="file not found"):
        read_rate_file(tmp_path / "nope.npz", ["/m/a"])
    bad = tmp_path / "bad.npz"
    bad.write_text("xx")
    with pytest.raises(InputError, match="npz"):
        read_rate_file(bad, ["/m/a"])


@pytest.mark.parametrize("rate,problem", [
    ([[0, 0.5], [1.0, 0]], None),
    ([[0, 0.5, 0], [0.5, 0, 0]], "square"),
    ([[0, np.nan], [0.5, 0]], "finite"),
    ([[0, 1.5], [0.5, 0]], r"\[0, 1\]"),
    ([[0, -0.1], [0.5, 0]], r"\[0, 1\]"),
    ([[0.2, 0.5], [0.5, 0]], "zero diagonal"),
])
def test_one_rate_validation_for_file_and_loss(rate, problem):
    """The reader and the loss's padding share rate_matrix_problem: same verdict, same words."""
    import torch

    from wilddet.data.records import rate_matrix_problem
    from wilddet.losses import pad_rate_matrix

    found = rate_matrix_problem(np.array(rate, dtype=np.float64))
    if problem is None:
        assert found is None
        assert pad_rate_matrix(torch.tensor(rate)).shape == (3, 3)
    else:
        assert found is not None and re.search(problem, found)
        with pytest.raises(ValueError, match=problem):
            pad_rate_matrix(torch.tensor(rate, dtype=torch.float64))
