"""Per-class AP logs (write/read round trip, bad input) and the comparison table logic."""

import math

import numpy as np
import pytest

from wilddet.errors import InputError
from wilddet.reports.csv_logs import PerClassAP, read_per_class_ap, write_per_class_ap
from wilddet.reports.tables import compare_runs, rows, to_markdown, write_comparison_csv


def log(labels, ap, num_gt=None):
    n = len(labels)
    return PerClassAP(np.array(labels, dtype=object), np.array([f"name {x}" for x in labels],
                                                               dtype=object),
                      np.array(ap, np.float64),
                      np.array(num_gt if num_gt is not None else [1.0] * n, np.float64),
                      np.arange(n, dtype=np.int64), np.zeros(n))


def test_per_class_log_round_trip_is_exact(tmp_path):
    t = PerClassAP(np.array(["/m/a", "/m/b", "/m/c"], dtype=object),
                   np.array(["Apple", 'Bus, "red"', "Car"], dtype=object),
                   np.array([1 / 7, math.nan, 0.0]), np.array([3.5, 0.0, 2.0]),
                   np.array([4, 0, 1]), np.array([1.5, 0.0, 0.0]))
    write_per_class_ap(tmp_path / "ap.csv", t)
    lines = (tmp_path / "ap.csv").read_text().splitlines()
    assert lines[0] == "label,name,ap,num_gt,num_detections,num_tp"
    assert lines[2] == '/m/b,"Bus, ""red""",,0,0,0'
    back = read_per_class_ap(tmp_path / "ap.csv")
    assert back.ap[0] == 1 / 7 and math.isnan(back.ap[1])  # bit-exact through repr
    assert back.names.tolist() == t.names.tolist()
    np.testing.assert_array_equal(back.num_gt, t.num_gt)
    np.testing.assert_array_equal(back.num_detections, t.num_detections)
    assert back.mean_ap == pytest.approx((1 / 7 + 0.0) / 2)


@pytest.mark.parametrize("text,line,field", [
    ("label,name,ap,num_gt,num_detections,num_tp\n/m/a,A,x,1,1,1\n", 2, "ap"),
    ("label,name,ap,num_gt,num_detections,num_tp\n/m/a,A,0.5,1,1,1\n/m/b,B,1.5,1,1,1\n", 3, "ap"),
    ("label,name,ap,num_gt,num_detections,num_tp\n/m/a,A,0.5,1,1.5,1\n", 2, "num_detections"),
    ("label,name,ap,num_gt,num_detections,num_tp\n/m/a,A,0.5,1,1,1\n/m/a,A,0.5,1,1,1\n", 3,
     "label"),
    ("label,name,ap,num_gt,num_detections\n/m/a,A,0.5,1,1\n", 1, "num_tp"),
])
def test_bad_per_class_log_names_line_and_field(tmp_path, text, line, field):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(InputError) as e:
        read_per_class_ap(tmp_path / "bad.csv")
    assert str(e.value).startswith(f"{tmp_path / 'bad.csv'}:{line}: {field}:")


def test_compare_sorts_by_gain_and_joins_on_labels():
    a = log(["/m/a", "/m/b", "/m/c", "/m/d", "/m/e"], [0.5, 0.2, math.nan, 0.4, 0.1])
    # B lists the classes in another order and lacks /m/e
    b = log(["/m/d", "/m/c", "/m/b", "/m/a"], [0.3, math.nan, 0.6, 0.55])
    t = compare_runs([a, b], ["A", "B"])
    assert t.labels.tolist() == ["/m/b", "/m/a", "/m/d", "/m/e"]  # /m/c: no AP in any run
    np.testing.assert_allclose(t.gain[0, :3], [0.4, 0.05, -0.1])
    assert math.isnan(t.gain[0, 3])  # missing in B: sorted last
    np.testing.assert_allclose(t.mean_ap(), [(0.5 + 0.2 + 0.4) / 3, (0.55 + 0.6 + 0.3) / 3])


def test_compare_restricts_to_given_classes_and_handles_three_runs():
    a = log(["/m/a", "/m/b", "/m/c"], [0.1, 0.2, 0.3])
    b = log(["/m/a", "/m/b", "/m/c"], [0.2, 0.2, 0.3])
    c = log(["/m/a", "/m/b", "/m/c"], [0.1, 0.5, 0.0])
    t = compare_runs([a, b, c], ["A", "B", "C"], restrict_to={"/m/a", "/m/b", "/m/zzz"})
    assert t.labels.tolist() == ["/m/b", "/m/a"]  # sorted by the last run's gain (C - A)
    np.testing.assert_allclose(t.gain, [[0.0, 0.1], [0.3, 0.0]])
    md = to_markdown(t, top=1)
    assert "| AP A | AP B | AP C | gain B − A | gain C − A |" in md
    assert "| 1 | name /m/b | /m/b | 1 | 0.2000 | 0.2000 | 0.5000 | +0.0000 | +0.3000 |" in md
    assert "/m/a |" not in md and "1 of 2 classes shown" in md
    assert rows(t)[-1][1] == "mean over 2 classes"


def test_comparison_csv_has_every_row(tmp_path):
    a = log(["/m/a", "/m/b"], [0.25, 0.5])
    b = log(["/m/a", "/m/b"], [0.75, 0.5])
    write_comparison_csv(tmp_path / "t.csv", compare_runs([a, b], ["A", "B"]))
    assert (tmp_path / "t.csv").read_text().splitlines() == [
        "label,name,num_gt,ap_A,ap_B,gain_B", "/m/a,name /m/a,1,0.25,0.75,0.5",
        "/m/b,name /m/b,1,0.5,0.5,0.0"]
