"""``wilddet diagnose`` without the terminal: read the inputs, diagnose, write every output of
the error-analysis spec into one folder (used by the command, the demo and the studies).

Shapes: ``C`` classes, ``T`` = 7 error types.

Outputs (``DIR``, created): ``errors.csv``, ``summary.json``, ``pr_curves.csv``
(``diagnosis_files``), ``error_types.png``, ``pr_curves.png`` and, with ``images``,
``gallery.png``. Every file goes through a temporary file and all are renamed only once all are
written, so a failure leaves no new file in DIR.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilddet.data import oid_csv
from wilddet.data.hierarchy import read_hierarchy
from wilddet.data.image_files import find_image
from wilddet.data.records import BoxTable, ClassList, rows_by_image
from wilddet.evaluation.diagnose import ERROR_TYPES, Diagnosis, diagnose
from wilddet.fileio import atomic_path
from wilddet.reports.analysis_files import read_confusion_pairs
from wilddet.reports.diagnosis_files import (
    errors_order,
    summary_json,
    write_errors_csv,
    write_pr_curves_csv,
    write_summary_json,
)

log = logging.getLogger(__name__)
GALLERY_PER_TYPE = 4


@dataclass(frozen=True)
class DiagnoseInputs:
    """Paths of one diagnosis (``hierarchy``, ``pairs``, ``images`` optional)."""

    boxes: Path
    image_labels: Path
    classes: Path
    detections: Path
    hierarchy: Path | None = None
    pairs: Path | None = None
    images: Path | None = None

    def as_json(self) -> dict[str, str | None]:
        return {k: None if v is None else str(Path(v).resolve())
                for k, v in self.__dict__.items()}


def _gallery_rows(d: Diagnosis, annotated: BoxTable, classes: ClassList, image_dir: Path):
    """The highest-scored false positives of each type (up to GALLERY_PER_TYPE with an image)."""
    from PIL import Image

    from wilddet.reports.plots_diagnose import GalleryItem

    det = d.match.detections
    order = errors_order(d)
    ann_order, ann_offsets = rows_by_image(annotated.image_codes, annotated.num_images)
    rows = []
    for t, name in enumerate(ERROR_TYPES):
        items = []
        for f in order[d.error[order] == t]:
            row = d.fp_rows[f]
            image_id = str(det.image_ids[det.image_codes[row]])
            path = find_image(image_dir, image_id)
            if path is None:
                continue
            m = det.image_codes[row]
            gt = ann_order[ann_offsets[m]:ann_offsets[m + 1]]
            with Image.open(path) as im:
                pixels = np.asarray(im.convert("RGB"))
            items.append(GalleryItem(
                pixels, name, f"{name}: {classes.names[det.label_codes[row]]} "
                f"{float(det.scores[row]):.2f}\n{image_id}", det.boxes_norm[row],
                annotated.boxes_norm[gt], [str(classes.names[c]) for c in
                                           annotated.label_codes[gt]]))
            if len(items) == GALLERY_PER_TYPE:
                break
        if items:
            rows.append(items)
    return rows


def compute_diagnosis(inputs: DiagnoseInputs) -> tuple[ClassList, BoxTable, Diagnosis]:
    """Read the inputs and diagnose: (classes, annotated boxes, diagnosis)."""
    classes = oid_csv.read_classes(inputs.classes)
    gt = oid_csv.read_boxes(inputs.boxes, classes)
    labels = oid_csv.read_image_labels(inputs.image_labels, classes)
    dets = oid_csv.read_detections(inputs.detections, classes)
    tree = None if inputs.hierarchy is None else read_hierarchy(inputs.hierarchy, classes)
    pairs = None if inputs.pairs is None else read_confusion_pairs(inputs.pairs, classes)
    gt, labels, dets = oid_csv.align_images(gt, labels, dets)
    return classes, gt, diagnose(gt, labels, dets, len(classes), hierarchy=tree, pairs=pairs)


def write_diagnosis(out_dir: Path, inputs: DiagnoseInputs, classes: ClassList,
                    annotated: BoxTable, d: Diagnosis) -> list[Path]:
    """Write every output into ``out_dir`` (all renamed in together); returns their paths."""
    from wilddet.reports.plots_diagnose import (
        draw_error_gallery,
        pick_pr_classes,
        plot_error_breakdown,
        plot_pr_curves,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = ["errors.csv", "summary.json", "pr_curves.csv", "error_types.png", "pr_curves.png"]
    gallery = [] if inputs.images is None else _gallery_rows(d, annotated, classes,
                                                             Path(inputs.images))
    if gallery:
        names.append("gallery.png")
    elif inputs.images is not None:
        log.warning("no false positive has an image in %s: no gallery.png", inputs.images)
    with contextlib.ExitStack() as stack:
        tmp = {n: stack.enter_context(atomic_path(out_dir / n)) for n in names}
        write_errors_csv(tmp["errors.csv"], classes, d)
        write_summary_json(tmp["summary.json"], summary_json(classes, d, inputs.as_json()))
        write_pr_curves_csv(tmp["pr_curves.csv"], classes, d)
        plot_error_breakdown(tmp["error_types.png"], classes.names, d.fp_counts)
        curves = [(str(classes.names[c]), d.pr_recall[d.pr_offsets[c]:d.pr_offsets[c + 1]],
                   d.pr_precision[d.pr_offsets[c]:d.pr_offsets[c + 1]])
                  for c in pick_pr_classes(d.match.num_gt)]
        plot_pr_curves(tmp["pr_curves.png"], curves)
        if gallery:
            draw_error_gallery(tmp["gallery.png"], gallery)
    return [out_dir / n for n in names]


def diagnose_files(inputs: DiagnoseInputs, out_dir: str | Path) -> tuple[ClassList, Diagnosis]:
    """Read, diagnose, write (the command without its terminal output)."""
    classes, annotated, d = compute_diagnosis(inputs)
    write_diagnosis(Path(out_dir), inputs, classes, annotated, d)
    return classes, d


__all__ = ["DiagnoseInputs", "compute_diagnosis", "diagnose_files", "write_diagnosis"]
