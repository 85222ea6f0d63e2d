"""``wilddet compare``: terminal table, Markdown + CSV + PNG outputs, --classes-from, bad input."""

import pytest
from typer.testing import CliRunner

from wilddet.cli import app
from wilddet.errors import InputError
from wilddet.resources import SEED_TABLE2_CSV

HEAD = "label,name,ap,num_gt,num_detections,num_tp\n"
A = HEAD + ("/m/01kb5b,Flashlight,0.1,4,10,1\n/m/07dd4,Torch,0.3,5,10,2\n"
            "/m/0120dh,Sea turtle,0.5,6,10,3\n/m/zzz,Other,0.2,2,3,1\n/m/none,Nothing,,0,0,0\n")
B = HEAD + ("/m/01kb5b,Flashlight,0.4,4,10,2\n/m/07dd4,Torch,0.2,5,10,1\n"
            "/m/0120dh,Sea turtle,0.55,6,10,3\n/m/zzz,Other,0.9,2,3,2\n/m/none,Nothing,,0,0,0\n")


@pytest.fixture
def files(tmp_path):
    (tmp_path / "base.csv").write_text(A)
    (tmp_path / "csm.csv").write_text(B)
    return tmp_path


def test_compare_writes_markdown_csv_and_plot(files):
    out = files / "cmp" / "table.md"
    result = CliRunner().invoke(app, ["compare", str(files / "base.csv"), str(files / "csm.csv"),
                                      "--out", str(out), "--top", "3"])
    assert result.exit_code == 0, result.output
    assert "Flashlight" in result.output and "+0.7000" in result.output  # rich table
    md = out.read_text().splitlines()
    assert md[0].startswith("| # | class | label | num_gt | AP base | AP csm | gain csm − base |")
    assert md[2].startswith("| 1 | Other | /m/zzz | 2 | 0.2000 | 0.9000 | +0.7000 |")
    assert md[3].startswith("| 2 | Flashlight |") and md[4].startswith("| 3 | Sea turtle |")
    assert "Torch" not in out.read_text()  # beyond --top 3
    csv_rows = (files / "cmp" / "table.csv").read_text().splitlines()
    assert csv_rows[0] == "label,name,num_gt,ap_base,ap_csm,gain_csm"
    assert len(csv_rows) == 1 + 4  # every class with an AP (the one without GT is left out)
    assert (files / "cmp" / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_classes_from_confusion_pairs(files):
    # the seed's Table 2 pairs name Flashlight/Torch and Sea turtle, not /m/zzz
    result = CliRunner().invoke(app, ["compare", str(files / "base.csv"), str(files / "csm.csv"),
                                      "--classes-from", str(SEED_TABLE2_CSV),
                                      "--out", str(files / "t.md"), "--top", "0"])
    assert result.exit_code == 0, result.output
    text = (files / "t.md").read_text()
    assert "Flashlight" in text and "Torch" in text and "Other" not in text
    assert "mean over 3 classes" in text


def test_bad_log_names_line_and_writes_nothing(files):
    (files / "bad.csv").write_text(A.replace("0.3,5,10,2", "0.3,5,ten,2"))
    out = files / "t.md"
    result = CliRunner().invoke(app, ["compare", str(files / "bad.csv"), str(files / "csm.csv"),
                                      "--out", str(out)])
    assert isinstance(result.exception, InputError)
    assert str(result.exception).startswith(f"{files / 'bad.csv'}:3: num_detections:")
    assert not out.exists() and not (files / "t.csv").exists() and not (files / "t.png").exists()


def test_one_run_is_a_usage_error(files):
    result = CliRunner().invoke(app, ["compare", str(files / "base.csv")])
    assert result.exit_code == 2
