"""reports/analysis_files.py: the analyzer's six files written all-or-nothing and read back by
the one confusion-pairs reader (hand-worked pairs; bad files name file, line and field)."""

import os

import numpy as np
import pytest

from wilddet.data.rate_file import read_rate_file
from wilddet.data.records import BoxTable, ClassList
from wilddet.errors import InputError
from wilddet.reports.analysis_files import (
    OUTPUT_FILES,
    PAIRS_COLUMNS,
    read_class_filter,
    read_confusion_pairs,
    read_pairs_rows,
    write_analysis,
)
from wilddet.stats.analysis import analyze_tables

CLASSES = ClassList(np.array(["/m/a", "/m/b", "/m/c"], dtype=object),
                    np.array(["Apple", "Banana", "Cherry"], dtype=object))


def hand_analysis():
    """Image 0: an Apple box and a Banana box on the same spot (IoU 1 > 0.9), plus a Cherry
    elsewhere; image 1: a second Apple. Apple -> Banana: 1 of 2 Apple boxes (ratio 0.5);
    Banana -> Apple: 1 of 1 (ratio 1)."""
    same, other = [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]
    boxes = BoxTable(np.array([0, 0, 0, 1], np.int32), np.array([0, 1, 2, 0], np.int32),
                     np.array([same, same, other, same], np.float32), np.zeros(4, bool),
                     np.array(["i0", "i1"], dtype=object))
    return analyze_tables(boxes, CLASSES)


def test_written_pairs_read_back(tmp_path):
    a = hand_analysis()
    paths = write_analysis(a, tmp_path / "out", {"iou threshold": 0.9})
    assert sorted(p.name for p in paths) == sorted(OUTPUT_FILES)
    assert sorted(os.listdir(tmp_path / "out")) == sorted(OUTPUT_FILES)  # no temporaries
    pairs_csv = tmp_path / "out" / "confusion_pairs.csv"
    rows = read_pairs_rows(pairs_csv)
    assert [(r["source"], r["confusion"], r["ratio"]) for r in rows] == [
        ("/m/b", "/m/a", "1.0"), ("/m/a", "/m/b", "0.5")]
    assert set(rows[0]) == set(PAIRS_COLUMNS)
    np.testing.assert_array_equal(read_confusion_pairs(pairs_csv, CLASSES), [[1, 0], [0, 1]])
    assert read_class_filter(pairs_csv) == {"/m/a", "/m/b"}
    rate = read_rate_file(tmp_path / "out" / "concurrent_rate.npz", CLASSES.labels)
    np.testing.assert_allclose(rate, a.rate)
    assert rate[1, 0] == 1.0 and rate[0, 1] == 0.5 and rate[2].sum() == 0
    assert "| iou threshold | 0.9 |" in (tmp_path / "out" / "report.md").read_text()


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    import wilddet.reports.plots_analysis as plots

    monkeypatch.setattr(plots, "plot_confusion", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_analysis(hand_analysis(), tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []  # the five files written before it are gone too


@pytest.mark.parametrize("text,line,field,words", [
    ("source,confusion\n/m/a,/m/x\n", 2, "confusion", "not a class"),
    ("source,confusion\n/m/a,\n", 2, "confusion", "missing value"),
    ("source,ratio\n/m/a,0.5\n", 1, "confusion", "needs columns"),
    ("", 1, None, "empty file"),
])
def test_bad_pairs_files_name_line_and_field(tmp_path, text, line, field, words):
    path = tmp_path / "pairs.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=words) as err:
        read_confusion_pairs(path, CLASSES)
    assert err.value.line == line and err.value.field == field
    assert str(err.value).startswith(str(path))
