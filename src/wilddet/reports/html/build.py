"""``wilddet report``: one static HTML report (``REPORT_DIR/index.html``) that opens from disk.

Shapes: ``R`` AP sources (runs), ``C`` classes, ``I`` gallery images.

No server and no network: the page, ``assets/report.{css,js}`` (hand-written, shipped as package
data) and the pictures are local files. Data goes into ``data/*.js`` files that call
``WD.chunk(name, payload)``, because a page opened from ``file://`` may load scripts but not
fetch JSON. The gallery is split into chunks of ``CHUNK`` images that are loaded only when a
page needs them; images are linked by relative path (``loading="lazy"``), or copied into
``images/`` with ``copy_images``.

Sections: training runs (config, curves), label analysis (imbalance and confusion plots, the
Table-2-style pairs), per-class AP (sortable, filterable, runs side by side with gains), error
breakdown with ΔmAP, PR curves, gallery (filter by class, error type, score).
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
from importlib import resources
from pathlib import Path

import numpy as np

from wilddet.errors import InputError
from wilddet.evaluation.diagnose import ERROR_TYPES
from wilddet.fileio import write_text_atomic
from wilddet.reports.analysis_files import PAIRS_FILE, read_pairs_rows
from wilddet.reports.error_styles import CODES, COLOURS, DASHES, TRUE_POSITIVE_COLOUR
from wilddet.reports.html.sources import Found, find_sources, source_names

log = logging.getLogger(__name__)
CHUNK = 50
PR_POINTS = 150
TABLE2_ROWS = 30


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _js(name: str, payload: object) -> str:
    # "</" cannot end the script early: data files are loaded by <script src>, but keep it safe
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f"WD.chunk({json.dumps(name)},{text});\n"


class _Writer:
    """Files of one report folder; every file written atomically."""

    def __init__(self, out: Path):
        self.out = out
        for sub in ("assets", "data", "img"):
            (out / sub).mkdir(parents=True, exist_ok=True)

    def data(self, name: str, payload: object) -> str:
        write_text_atomic(self.out / "data" / f"{name}.js", _js(name, payload))
        return f"data/{name}.js"

    def copy(self, src: Path, name: str) -> str:
        shutil.copyfile(src, self.out / "img" / name)
        return f"img/{name}"


# ----------------------------------------------------------------------------------------------
# sections


def _runs_section(w: _Writer, found: Found) -> str:
    from wilddet.reports.plots_training import plot_training_curves, read_metrics

    if not found.runs:
        return ""
    parts = ['<section id="runs"><h2>Training runs</h2>']
    for k, (run, name) in enumerate(zip(found.runs, source_names(found.runs))):
        series = read_metrics(run / "metrics.jsonl")
        png = plot_training_curves(w.out / "img" / f"train-{k}.png", series, f"{name}")
        parts.append(f"<h3>{_esc(name)}</h3><p class=path>{_esc(run)}</p>")
        if png is not None:
            keys = ", ".join(sorted(series))
            parts.append(f'<img class=plot src="img/train-{k}.png" alt="training curves of '
                         f'{_esc(name)}: {_esc(keys)} against iteration">')
        else:
            parts.append("<p>metrics.jsonl holds no numbers yet.</p>")
        config = (run / "config.toml").read_text(encoding="utf-8")
        parts.append(f"<details><summary>config.toml</summary><pre>{_esc(config)}</pre>"
                     "</details>")
    return "\n".join(parts) + "</section>"


def _table2_rows(pairs_csv: Path) -> list[list[str]]:
    rows = read_pairs_rows(pairs_csv)
    rows.sort(key=lambda r: -float(r.get("ratio") or 0))
    return [[r.get("source_name") or r["source"], r.get("confusion_name") or r["confusion"],
             r.get("source_boxes", ""), r.get("confusion_boxes", ""),
             f"{float(r.get('ratio') or 0):.4f}"] for r in rows[:TABLE2_ROWS]]


def _analysis_section(w: _Writer, found: Found) -> str:
    if not found.analyses:
        return ""
    parts = ['<section id="analysis"><h2>Label analysis</h2>']
    for k, (folder, name) in enumerate(zip(found.analyses, source_names(found.analyses))):
        parts.append(f"<h3>{_esc(name)}</h3><p class=path>{_esc(folder)}</p><div class=row>")
        pictures = (("imbalance.png", "boxes and images per class, sorted (class imbalance)"),
                    ("confusion.png", ("confusion pairs: boxes of two classes with IoU "
                                       "above 0.9 in one image")))
        for png, alt in pictures:
            if (folder / png).is_file():
                src = w.copy(folder / png, f"analysis-{k}-{png}")
                parts.append(f'<img class=plot src="{src}" alt="{_esc(alt)}">')
        parts.append("</div>")
        rows = _table2_rows(folder / PAIRS_FILE)
        parts.append(f"<h4>Confusion pairs (Table 2 style, top {len(rows)} by ratio)</h4>"
                     "<table class=static><thead><tr><th scope=col>source</th><th scope=col>"
                     "confusion</th><th scope=col>#source</th><th scope=col>#confusion</th>"
                     "<th scope=col>ratio</th></tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</tbody></table>")
    return "\n".join(parts) + "</section>"


def _ap_columns(found: Found, names: list[str]) -> tuple[list[str], dict, list[dict]]:
    """(labels in order, {label: display name}, per source {label: (ap, num_gt)})."""
    from wilddet.reports.csv_logs import read_per_class_ap
    from wilddet.reports.diagnosis_files import read_summary_json

    order: list[str] = []
    display: dict[str, str] = {}
    columns = []
    for src in found.ap_sources:
        col = {}
        if src.suffix == ".csv":
            log_ = read_per_class_ap(src)
            for lab, nm, ap, n in zip(log_.labels, log_.names, log_.ap, log_.num_gt):
                col[str(lab)] = (None if np.isnan(ap) else float(ap), float(n))
                display.setdefault(str(lab), str(nm))
        else:
            doc = read_summary_json(src / "summary.json")
            for lab, entry in doc["per_class"].items():
                col[lab] = (entry["ap"], doc.get("num_gt", {}).get(lab, 0.0))
                display.setdefault(lab, doc.get("names", {}).get(lab, lab))
        order += list(col)
        columns.append(col)
    seen = set()
    labels = [lab for lab in order if not (lab in seen or seen.add(lab))]
    return labels, display, columns


def _ap_section(w: _Writer, found: Found) -> str:
    from wilddet.reports.diagnosis_files import read_summary_json

    if not found.ap_sources:
        return ""
    names = source_names(found.ap_sources)
    labels, display, columns = _ap_columns(found, names)
    fps = {}
    for src, name in zip(found.ap_sources, names):
        if src.suffix != ".csv":
            doc = read_summary_json(src / "summary.json")
            fps[name] = {lab: sum(e["false_positives"].values())
                         for lab, e in doc["per_class"].items()}
    rows = []
    for lab in labels:
        num_gt = next((c[lab][1] for c in columns if lab in c), 0.0)
        aps = [c.get(lab, (None, 0))[0] for c in columns]
        rows.append([display.get(lab, lab), lab, num_gt, aps,
                     [fps[n].get(lab, 0) for n in fps]])
    src = w.data("ap", {"runs": names, "fp_runs": list(fps), "rows": rows})
    return ('<section id="ap"><h2>Per-class AP</h2>'
            '<p>Click a column header (or focus it and press Enter) to sort; gains are against '
            'the first run. The page also reads <code>#sort=KEY&amp;dir=asc|desc&amp;'
            'filter=TEXT</code> from its address.</p>'
            '<label>Filter classes <input id=ap-filter type=search '
            'placeholder="name or LabelName"></label> <span id=ap-count aria-live=polite>'
            '</span><div class=scroll><table id=ap-table class=sortable></table></div>'
            f'<script src="{src}"></script></section>')


def _legend() -> str:
    items = []
    for t in ERROR_TYPES:
        items.append(f'<li><svg width=34 height=14 aria-hidden=true><rect x=1 y=1 width=32 '
                     f'height=12 fill=none stroke="{COLOURS[t]}" stroke-width=3 '
                     f'stroke-dasharray="{DASHES[t]}"/></svg> <b>{CODES[t]}</b> {t}</li>')
    items.append(f'<li><svg width=34 height=14 aria-hidden=true><rect x=1 y=1 width=32 '
                 f'height=12 fill=none stroke="{TRUE_POSITIVE_COLOUR}" stroke-width=3/></svg> '
                 f'<b>T</b> true positive</li><li><b>G</b> group-of absorbed</li>')
    return '<ul class=legend aria-label="error types">' + "".join(items) + "</ul>"


def _errors_section(w: _Writer, found: Found) -> str:
    from wilddet.reports.diagnosis_files import read_summary_json

    if not found.diagnoses:
        return ""
    names = source_names(found.ap_sources)[:len(found.diagnoses)]
    docs = [read_summary_json(d / "summary.json") for d in found.diagnoses]
    head = "".join(f"<th scope=col>{_esc(n)} FPs</th><th scope=col>{_esc(n)} ΔmAP</th>"
                   for n in names)
    body = []
    for t in ERROR_TYPES:
        cells = "".join(
            f"<td>{doc['false_positives'][t]:,}</td><td>"
            f"{'n/a' if doc['delta_mAP'] is None else format(doc['delta_mAP'][t], '+.4f')}</td>"
            for doc in docs)
        body.append(f'<tr><th scope=row><span class=swatch style="border-color:{COLOURS[t]};'
                    f'border-style:{"solid" if t == "duplicate" else "dashed"}"></span> '
                    f'<b>{CODES[t]}</b> {t}</th>{cells}</tr>')
    for key in ("missed_gt", "missed_group_of"):
        body.append(f"<tr><th scope=row>{key}</th>" + "".join(
            f"<td>{doc[key]:,}</td><td></td>" for doc in docs) + "</tr>")
    maps = ", ".join(f"{_esc(n)} {doc['mAP']:.4f}" if doc["mAP"] is not None else
                     f"{_esc(n)} n/a" for n, doc in zip(names, docs))
    pics = []
    for k, (folder, name) in enumerate(zip(found.diagnoses, names)):
        if (folder / "error_types.png").is_file():
            src = w.copy(folder / "error_types.png", f"error-types-{k}.png")
            pics.append(f'<img class=plot src="{src}" alt="stacked bars of the error types of '
                        f'the classes with the most false positives, {_esc(name)}">')
    return ('<section id="errors"><h2>Error breakdown</h2>'
            f'<p>mAP: {maps}. ΔmAP of a type: the challenge mAP with that type\'s false '
            'positives removed minus the mAP of all detections.</p>' + _legend() +
            f'<table class=static><thead><tr><th scope=col>error</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table><div class=row>{"".join(pics)}</div>'
            '</section>')


def _downsample(recall: np.ndarray, precision: np.ndarray) -> list[list[float]]:
    n = len(recall)
    keep = np.unique(np.linspace(0, n - 1, min(n, PR_POINTS)).astype(np.int64)) if n else []
    return [np.round(recall[keep], 4).tolist(), np.round(precision[keep], 4).tolist()]


def _pr_section(w: _Writer, found: Found) -> str:
    from wilddet.reports.diagnosis_files import read_pr_curves_csv, read_summary_json

    if not found.diagnoses:
        return ""
    names = source_names(found.ap_sources)[:len(found.diagnoses)]
    curves: dict[str, list] = {}
    display: dict[str, str] = {}
    for r, folder in enumerate(found.diagnoses):
        display.update(read_summary_json(folder / "summary.json").get("names", {}))
        for lab, (rec, prec) in read_pr_curves_csv(folder / "pr_curves.csv").items():
            curves.setdefault(lab, [None] * len(found.diagnoses))[r] = _downsample(rec, prec)
    src = w.data("pr", {"runs": names, "names": {lab: display.get(lab, lab) for lab in curves},
                        "curves": curves})
    return ('<section id="pr"><h2>Precision–recall curves</h2>'
            '<p>One point per evaluated detection in the metric\'s order (before the monotone '
            f'envelope), at most {PR_POINTS} drawn per curve. <code>#pr=LabelName</code> '
            'picks a class.</p><label>Class <select id=pr-class></select></label>'
            '<div id=pr-plot role=img aria-label="precision-recall curve"></div>'
            f'<script src="{src}"></script></section>')


def _image_src(w: _Writer, image_dir: Path | None, image_id: str, copy: bool) -> str:
    from wilddet.data.image_files import find_image

    path = None if image_dir is None else find_image(image_dir, image_id)
    if path is None:
        return ""
    if copy:
        (w.out / "images").mkdir(exist_ok=True)
        shutil.copyfile(path, w.out / "images" / path.name)
        return f"images/{path.name}"
    return Path(os.path.relpath(path.resolve(), w.out.resolve())).as_posix()


def _gallery_run(w: _Writer, k: int, folder: Path, images: Path | None, copy: bool,
                 max_dets: int) -> dict | None:
    from wilddet.reports.diagnose_run import DiagnoseInputs, compute_diagnosis
    from wilddet.reports.diagnosis_files import read_summary_json
    from wilddet.reports.html.gallery import gallery_data

    doc = read_summary_json(folder / "summary.json")
    inputs = doc.get("inputs") or {}
    needed = ("boxes", "image_labels", "classes", "detections")
    if not all(inputs.get(key) and Path(inputs[key]).is_file() for key in needed):
        log.warning("%s: the diagnosis' input files are gone; no gallery for it", folder)
        return None
    di = DiagnoseInputs(*(Path(inputs[key]) for key in needed),
                        *(Path(inputs[key]) if inputs.get(key) else None
                          for key in ("hierarchy", "pairs", "images")))
    classes, annotated, d = compute_diagnosis(di)
    g = gallery_data(d, annotated, max_dets)
    image_dir = images or di.images
    chunks = []
    for lo in range(0, len(g.image_ids), CHUNK):
        hi = min(lo + CHUNK, len(g.image_ids))
        payload = [[g.image_ids[i], _image_src(w, image_dir, g.image_ids[i], copy), g.gt[i],
                    g.dets[i]] for i in range(lo, hi)]
        chunks.append(w.data(f"g{k}-c{lo // CHUNK}", payload)[len("data/"):-len(".js")])
    return {"classes": [str(n) for n in classes.names], "index": g.index,
            "ids": g.image_ids, "chunks": chunks, "chunk": CHUNK,
            "has_images": image_dir is not None}


def _gallery_section(w: _Writer, found: Found, images: Path | None, copy: bool,
                     max_dets: int) -> str:
    if not found.diagnoses:
        return ""
    names = source_names(found.ap_sources)[:len(found.diagnoses)]
    runs = []
    for k, folder in enumerate(found.diagnoses):
        run = _gallery_run(w, k, folder, images, copy, max_dets)
        if run is not None:
            runs.append({"name": names[k], **run})
    if not runs:
        return ('<section id="gallery"><h2>Gallery</h2><p>Missing: the input files of the '
                'diagnoses could not be found.</p></section>')
    styles = {t: {"colour": COLOURS[t], "dash": DASHES[t], "code": CODES[t]}
              for t in ERROR_TYPES}
    src = w.data("gallery", {"runs": runs, "types": list(ERROR_TYPES), "styles": styles,
                             "tp_colour": TRUE_POSITIVE_COLOUR})
    return ('<section id="gallery"><h2>Gallery: ground truth next to detections</h2>'
            '<p>Left: the boxes as annotated (dashed: group-of). Right: the evaluated '
            'detections that pass the filters (class, error type, score), each with its letter. '
            'Images are ordered by their highest-scored false positive. <code>#gclass=NAME&amp;'
            'gerror=TYPE&amp;gscore=0.5&amp;gpage=1</code> set the filters.</p>'
            '<div class=controls><label>Run <select id=g-run></select></label> '
            '<label>Class <select id=g-class></select></label> '
            '<label>Error type <select id=g-error></select></label> '
            '<label>Score ≥ <input id=g-score type=number min=0 max=1 step=0.05 '
            'value=0.3></label> <button id=g-prev type=button>◀ previous</button> '
            '<span id=g-status aria-live=polite></span> '
            '<button id=g-next type=button>next ▶</button></div>' + _legend() +
            f'<div id=g-grid class=grid></div><script src="{src}"></script></section>')


# ----------------------------------------------------------------------------------------------
# the page


def _copy_assets(w: _Writer) -> None:
    assets = resources.files("wilddet.reports.html") / "assets"
    for name in ("report.css", "report.js"):
        write_text_atomic(w.out / "assets" / name, (assets / name).read_text(encoding="utf-8"))


def _page(title: str, sources: list[Path], sections: list[str]) -> str:
    nav = "".join(f'<a href="#{sid}">{label}</a>' for sid, label in (
        ("runs", "Training"), ("analysis", "Labels"), ("ap", "Per-class AP"),
        ("errors", "Errors"), ("pr", "PR curves"), ("gallery", "Gallery"))
        if any(f'id="{sid}"' in s for s in sections))
    listed = "".join(f"<li><code>{_esc(p)}</code></li>" for p in sources)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<link rel="stylesheet" href="assets/report.css">
<script src="assets/report.js"></script>
</head><body>
<header><h1>{_esc(title)}</h1><nav aria-label="sections">{nav}</nav></header>
<main>
<details class=sources><summary>Made from</summary><ul>{listed}</ul></details>
{''.join(sections)}
</main>
<script>WD.start();</script>
</body></html>
"""


def build_report(paths: list[Path], out: Path, *, images: Path | None = None,
                 copy_images: bool = False, title: str = "wilddet report",
                 max_dets_per_image: int = 25) -> Path:
    """Write the report of everything found under ``paths`` into ``out``; returns index.html.
    InputError when a path is missing or nothing reportable is found."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise InputError(p, "not found")
    found = find_sources(paths)
    if not (found.runs or found.analyses or found.ap_sources):
        raise InputError(paths[0] if paths else Path("."), "no training run, label analysis, "
                         "diagnosis or per-class AP log found")
    out = Path(out)
    w = _Writer(out)
    _copy_assets(w)
    sections = [_runs_section(w, found), _analysis_section(w, found), _ap_section(w, found),
                _errors_section(w, found), _pr_section(w, found),
                _gallery_section(w, found, images, copy_images, max_dets_per_image)]
    index = out / "index.html"
    write_text_atomic(index, _page(title, paths, [s for s in sections if s]))
    return index


__all__ = ["CHUNK", "build_report"]
