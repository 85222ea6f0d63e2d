"""reports/markdown.py and reports/figures.py: the shared table and figure conventions."""

import os

import numpy as np
import pytest

from wilddet.reports.figures import new_figure, save_png
from wilddet.reports.markdown import cell, markdown_table


def test_markdown_table_hand_worked():
    text = markdown_table(["class", "AP"], [["Cat | Dog", 0.5], ["two\nlines", "–"]], "lr")
    assert text.splitlines() == ["| class | AP |", "| --- | ---: |",
                                 "| Cat \\| Dog | 0.5 |", "| two lines | – |"]
    assert cell(3) == "3" and markdown_table(["a", "b"], [], "").splitlines()[1] == "| --- | --- |"


def test_save_png_writes_a_png_atomically(tmp_path):
    fig, ax = new_figure(2, 1.5)
    ax.plot(np.arange(3), np.arange(3))
    path = save_png(fig, tmp_path / "plot.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["plot.png"]
    fig, axes = new_figure(4, 2, rows=1, cols=2, squeeze=False)
    assert axes.shape == (1, 2)


def test_failed_figure_leaves_no_file(tmp_path, monkeypatch):
    fig, _ = new_figure(2, 2)

    def broken(*args, **kwargs):
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="renderer"):
        save_png(fig, tmp_path / "x.png")
    assert os.listdir(tmp_path) == []
