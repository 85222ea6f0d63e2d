"""``wilddet report``: the folder it writes (local files only, linked or copied images) and the
page as headless Chromium renders it from file:// after its scripts ran.

Clicks are driven through the address hash the page honours on load (report.js header):
``#sort=KEY&dir=asc|desc&filter=TEXT`` for the per-class AP table and
``#grun=R&gclass=NAME&gerror=TYPE&gscore=S`` for the gallery; ``--dump-dom`` gives the DOM after
``--virtual-time-budget`` ms of page time."""

import csv
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from wilddet.cli import app
from wilddet.data import oid_csv
from wilddet.data.records import BoxTable
from wilddet.reports.diagnose_run import DiagnoseInputs, diagnose_files

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def _jittered_detections(gt: BoxTable, seed: int, spread: float) -> BoxTable:
    """Detections near every GT box (some relabelled, some duplicated) plus random boxes."""
    rng = np.random.default_rng(seed)
    n = len(gt)
    rows = np.concatenate([np.arange(n), rng.integers(0, n, n // 2)])
    boxes = gt.boxes_norm[rows] + rng.normal(0, spread, (len(rows), 4)).astype(np.float32)
    labels = gt.label_codes[rows].copy()
    flip = rng.random(len(rows)) < 0.2
    labels[flip] = rng.integers(0, labels.max() + 1, int(flip.sum()))
    boxes = np.clip(boxes, 0, 1)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.02)
    return BoxTable(gt.image_codes[rows], labels.astype(np.int32), np.clip(boxes, 0, 1),
                    np.zeros(len(rows), bool), gt.image_ids,
                    rng.random(len(rows)).astype(np.float32))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A tiny synthetic set with images, two diagnosed detection files and a run folder."""
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    res = CliRunner().invoke(app, ["synth", str(data), "--train-images", "20", "--val-images",
                                   "16", "--classes", "8", "--image-size", "64", "--seed", "2"])
    assert res.exit_code == 0, res.output
    classes = oid_csv.read_classes(data / "class-descriptions.csv")
    gt = oid_csv.read_boxes(data / "val-annotations-bbox.csv", classes)
    for name, spread in (("weak", 0.08), ("strong", 0.01)):
        oid_csv.write_detections(root / f"{name}.csv", _jittered_detections(gt, 1, spread),
                                 classes)
        diagnose_files(DiagnoseInputs(data / "val-annotations-bbox.csv",
                                      data / "val-annotations-human-imagelabels.csv",
                                      data / "class-descriptions.csv", root / f"{name}.csv",
                                      data / "hierarchy.json", None, data / "val"),
                       root / "diag" / name)
    run = root / "run"
    run.mkdir()
    (run / "config.toml").write_text("[train]\nmax_iters = 3\n")
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"iteration": i, "loss": 2.0 / i, "lr": 0.01 * i}) + "\n" for i in (1, 2, 3)))
    return root


def _build(case, out, *extra):
    res = CliRunner().invoke(app, ["report", str(case / "diag" / "weak"),
                                   str(case / "diag" / "strong"), str(case / "run"),
                                   "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return out / "index.html"


def test_report_folder_is_local_and_links_images(case, tmp_path):
    index = _build(case, tmp_path / "rep")
    page = index.read_text()
    for path in [index, *(tmp_path / "rep").rglob("*.js"), *(tmp_path / "rep").rglob("*.css")]:
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", path.read_text()), path
        assert "http://" not in path.read_text().replace("http://www.w3.org/2000/svg", "")
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', page):
        assert (tmp_path / "rep" / ref).is_file(), ref
    gallery = (tmp_path / "rep" / "data" / "g1-c0.js").read_text()
    linked = re.findall(r'"(\.\./[^"]+\.jpg)"', gallery)
    assert linked and all((tmp_path / "rep" / p).resolve().is_file() for p in linked)
    assert not (tmp_path / "rep" / "images").exists()

    copied = _build(case, tmp_path / "copy", "--copy-images").parent
    assert len(list((copied / "images").glob("*.jpg"))) == 16
    assert '"images/' in (copied / "data" / "g1-c0.js").read_text()


def test_report_without_anything_reportable_is_an_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "empty"), "--out",
                                   str(tmp_path / "rep")])
    assert res.exit_code != 0 and not (tmp_path / "rep").exists()


class _Dom(HTMLParser):
    """Rows of #ap-table's body and the figures of #g-grid in a dumped DOM."""

    def __init__(self):
        super().__init__()
        self.rows, self.figures, self.status, self._in_status = [], [], "", False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-label" in a:
            self.rows.append((a["data-label"], "hidden" in a))
        if tag == "figure" and "data-image" in a:
            self.figures.append(a["data-image"])
        self._in_status = a.get("id") == "g-status"

    def handle_data(self, data):
        if self._in_status:
            self.status += data


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package)")
    return exe


def _render(exe, index: Path, fragment: str, tmp_path: Path, *extra) -> str:
    proc = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=5000", *(extra or ["--dump-dom"]),
                           f"{index.resolve().as_uri()}#{fragment}"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _summary(case, name):
    return json.loads((case / "diag" / name / "summary.json").read_text())


def _errors(case, name):
    with open(case / "diag" / name / "errors.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_report_in_headless_chromium(case, tmp_path):
    exe = _chromium()
    index = _build(case, tmp_path / "rep")
    strong = _summary(case, "strong")
    aps = {lab: e["ap"] for lab, e in strong["per_class"].items()}

    # sorting: AP of the second run (ap1), ascending; missing APs last
    dom = _Dom()
    dom.feed(_render(exe, index, "sort=ap1&dir=asc", tmp_path))
    order = [lab for lab, _ in dom.rows]
    with_ap = sorted((lab for lab in aps if aps[lab] is not None), key=lambda lab: aps[lab])
    assert [aps[lab] for lab in order[:len(with_ap)]] == [aps[lab] for lab in with_ap]
    assert all(aps[lab] is None for lab in order[len(with_ap):])
    dom_desc = _Dom()
    dom_desc.feed(_render(exe, index, "sort=ap1&dir=desc", tmp_path))
    assert [aps[lab] for lab, _ in dom_desc.rows[:len(with_ap)]] == \
        sorted((aps[lab] for lab in with_ap), reverse=True)

    # class filter: only the rows whose name or LabelName contains the text stay visible
    target = with_ap[-1]
    name = strong["names"][target]
    dom = _Dom()
    dom.feed(_render(exe, index, f"filter={name}", tmp_path))
    visible = [lab for lab, hidden in dom.rows if not hidden]
    assert target in visible
    assert all(name.lower() in strong["names"][lab].lower() or name.lower() in lab.lower()
               for lab in visible)
    assert len(dom.rows) == len(aps) and len(visible) < len(aps)

    # gallery: the strong run's images that have a false positive of class `name`
    fps = [r for r in _errors(case, "strong") if r["LabelName"] == target]
    expected = {r["ImageID"] for r in fps}
    dom = _Dom()
    dom.feed(_render(exe, index, f"grun=1&gclass={name}&gerror=fp&gscore=0", tmp_path))
    assert dom.status.startswith(f"{len(expected)} images")
    assert set(dom.figures) <= expected and len(dom.figures) == min(12, len(expected))
    # and an error type above a score threshold (the page keeps scores in thousandths)
    dups = {r["ImageID"] for r in _errors(case, "strong")
            if r["error"] == "localization" and round(float(r["Score"]) * 1000) >= 500}
    dom = _Dom()
    dom.feed(_render(exe, index, "grun=1&gerror=localization&gscore=0.5", tmp_path))
    assert dom.status.startswith(f"{len(dups)} images")
    assert set(dom.figures) <= dups and len(dom.figures) == min(12, len(dups))

    shot = tmp_path / "report.png"
    _render(exe, index, "sort=ap1&dir=desc", tmp_path, f"--screenshot={shot}",
            "--window-size=1280,2000")
    assert shot.stat().st_size > 10_000


def test_report_of_per_class_logs_only_and_of_a_moved_diagnosis(case, tmp_path):
    # per-class AP logs only: the AP table has every class of both logs, no error section
    logs = tmp_path / "logs"
    summary = _summary(case, "strong")
    for name in ("weak", "strong"):
        doc = _summary(case, name)
        rows = ["label,name,ap,num_gt,num_detections,num_tp"] + [
            f"{lab},{doc['names'][lab]},{'' if e['ap'] is None else e['ap']},"
            f"{doc['num_gt'][lab]:g},0,0" for lab, e in doc["per_class"].items()]
        (logs / f"{name}.csv").parent.mkdir(exist_ok=True)
        (logs / f"{name}.csv").write_text("\n".join(rows) + "\n")
    index = _build_from([logs], tmp_path / "rep")
    payload = json.loads(re.search(r"WD\.chunk\(\"ap\",(.*)\);",
                                   (index.parent / "data" / "ap.js").read_text()).group(1))
    assert payload["runs"] == ["strong", "weak"]
    assert [r[1] for r in payload["rows"]] == list(summary["per_class"])
    assert 'id="errors"' not in index.read_text() and 'id="gallery"' not in index.read_text()

    # a diagnosis whose input files are gone: everything but the gallery, which says so
    moved = tmp_path / "moved"
    shutil.copytree(case / "diag" / "strong", moved)
    doc = json.loads((moved / "summary.json").read_text())
    doc["inputs"]["detections"] = str(tmp_path / "gone.csv")
    (moved / "summary.json").write_text(json.dumps(doc))
    page = _build_from([moved], tmp_path / "rep2").read_text()
    assert 'id="errors"' in page and "Missing: the input files" in page


def _build_from(paths, out):
    res = CliRunner().invoke(app, ["report", *map(str, paths), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out / "index.html"
