"""Steps the studies share: the analyzer run that gives the rate file, a resumable training run,
cached prediction + challenge-metric scoring, and the detection figures.

Shapes: ``C`` classes, ``I`` val images.

Every step is resumable: a finished training run (final checkpoint at ``max_iters``), a written
detections file and a written per-class log are reused, so an interrupted study re-runs only what
is missing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilddet.config import Config, dump_toml
from wilddet.data import oid_csv
from wilddet.reports.csv_logs import PerClassAP, read_per_class_ap, write_per_class_ap

log = logging.getLogger(__name__)

FIGURE_SCORE_THRESH = 0.5  # as in the seed's Figures 1 and 2

Say = Callable[[str], None]


def quiet(_: str) -> None:
    pass


def ensure_rate_file(config: Config, out_dir: Path, say: Say = quiet) -> tuple[Config, Path]:
    """Run the analyzer on the train boxes into ``out_dir/analysis`` (once) and point
    ``model.rate_file`` at its ``concurrent_rate.npz`` unless the config names one. Returns the
    config and the confusion-pairs CSV (the co-occurring classes of Table 1)."""
    from wilddet.engine.builders import require_file
    from wilddet.reports.analysis_files import PAIRS_FILE, RATE_FILE, analyze_dataset

    analysis_dir = out_dir / "analysis"
    pairs_csv = analysis_dir / PAIRS_FILE
    if not pairs_csv.is_file():
        analyze_dataset(require_file(config, "train_boxes"), require_file(config, "classes"),
                        require_file(config, "hierarchy") if config.data.hierarchy else None,
                        analysis_dir)
        say(f"analysis: wrote {analysis_dir}")
    if not config.model.rate_file:
        config = dataclasses.replace(config, model=dataclasses.replace(
            config.model, rate_file=str(analysis_dir / RATE_FILE)))
    return config, pairs_csv


def train_once(config: Config, run_dir: Path, say: Say = quiet) -> Path:
    """Train ``config`` into ``run_dir`` unless a finished run is there; returns the final
    checkpoint. An unfinished run is resumed from its newest checkpoint."""
    from wilddet.engine.checkpoint import latest_valid_checkpoint
    from wilddet.engine.train import train

    found = latest_valid_checkpoint(run_dir) if run_dir.exists() else None
    if found is not None and int(found[1]["iteration"]) >= config.train.max_iters:
        say(f"{run_dir.name}: finished run found, not retrained")
        return found[0]
    say(f"{run_dir.name}: training {config.train.max_iters} iterations "
        f"({config.model.classifier_loss} loss, {config.sampling.kind} sampling)")
    result = train(config, run_dir, resume=True)
    say(f"{run_dir.name}: done in {result.seconds / 60:.1f} min")
    return result.checkpoint


def predict_and_score(config: Config, checkpoint: Path, test_scores: str, detections_csv: Path,
                      per_class_csv: Path, image_ids: list[str]) -> PerClassAP:
    """Detections of the val images with ``test_scores`` (cached in ``detections_csv``), scored
    with the challenge metric into ``per_class_csv`` (cached)."""
    from wilddet.engine.builders import load_meta, require_file
    from wilddet.engine.evaluate import evaluate_detections
    from wilddet.engine.inference import predict

    if per_class_csv.is_file():
        return read_per_class_ap(per_class_csv)
    meta = load_meta(config)
    if detections_csv.is_file():
        detections = oid_csv.read_detections(detections_csv, meta.classes)
    else:
        detections = predict(checkpoint, require_file(config, "val_images"), detections_csv,
                             image_ids=image_ids, test_scores=test_scores,
                             batch_size=config.eval.batch_size, device=config.train.device,
                             num_workers=0, progress=False)
    evaluation = evaluate_detections(detections, config, meta, image_ids)
    table = PerClassAP.from_result(meta.classes, evaluation.result)
    write_per_class_ap(per_class_csv, table)
    return table


def val_image_ids(config: Config) -> list[str]:
    from wilddet.engine.evaluate import split_image_ids

    return split_image_ids(config, config.eval.max_images)


@dataclass(frozen=True)
class FigureImages:
    """Val images chosen for a figure: ImageIDs, pixels [H, W, 3] uint8 and a ground-truth
    ``reports.draw.Panel`` (raw, unexpanded boxes) each."""

    image_ids: list[str]
    pixels: list[np.ndarray]
    truth: list


def pick_figure_images(config: Config, prefer_labels: set[str], count: int = 3,
                       max_boxes: int = 12) -> FigureImages:
    """``count`` val images with at most ``max_boxes`` boxes, those holding most boxes of
    ``prefer_labels`` first (ties by ImageID), with their raw ground truth."""
    from PIL import Image

    from wilddet.engine.builders import require_file
    from wilddet.reports.draw import table_panel

    classes = oid_csv.read_classes(require_file(config, "classes"))
    gt = oid_csv.read_boxes(require_file(config, "val_boxes"), classes)
    allowed = set(val_image_ids(config))
    preferred = np.isin(classes.labels.astype(str)[gt.label_codes],
                        np.asarray(sorted(prefer_labels), dtype=str))
    score = np.bincount(gt.image_codes, weights=preferred.astype(float),
                        minlength=gt.num_images)
    boxes_per_image = np.bincount(gt.image_codes, minlength=gt.num_images)
    readable = boxes_per_image <= max_boxes  # crowded images make unreadable pictures
    candidates = [i for i in np.argsort(-score, kind="stable")
                  if gt.image_ids[i] in allowed and readable[i]]
    chosen = sorted(candidates[:count], key=lambda i: (-score[i], gt.image_ids[i]))
    folder = require_file(config, "val_images")
    out = FigureImages([], [], [])
    for code in chosen:
        image_id = str(gt.image_ids[code])
        pixels = np.asarray(Image.open(folder / f"{image_id}.jpg").convert("RGB"))
        out.image_ids.append(image_id)
        out.pixels.append(pixels)
        out.truth.append(table_panel("ground truth", gt, classes.names, image_id,
                                     *pixels.shape[:2], mark_group_of=True))
    return out


def detection_panel(title: str, detections_csv: Path, config: Config, image_id: str,
                    height: int, width: int):
    """A ``reports.draw.Panel`` of one image's detections read back from a detections CSV."""
    from wilddet.engine.builders import require_file
    from wilddet.reports.draw import table_panel

    classes = oid_csv.read_classes(require_file(config, "classes"))
    dets = _read_detections_cached(detections_csv, classes)
    return table_panel(title, dets, classes.names, image_id, height, width)


_DET_CACHE: dict[tuple[str, float], object] = {}


def _read_detections_cached(path: Path, classes):
    key = (str(path), path.stat().st_mtime)
    if key not in _DET_CACHE:
        if len(_DET_CACHE) > 8:  # figures read a handful of files; keep memory bounded
            _DET_CACHE.clear()
        _DET_CACHE[key] = oid_csv.read_detections(path, classes)
    return _DET_CACHE[key]


def figure_grid(path: Path, images: FigureImages, columns: list[tuple[str, Path | None]],
            config: Config) -> Path:
    """Rows = images; columns = (title, detections CSV) or (title, None) for ground truth."""
    from wilddet.reports.draw import draw_grid

    rows = []
    for k, image_id in enumerate(images.image_ids):
        h, w = images.pixels[k].shape[:2]
        panels = []
        for title, csv_path in columns:
            if csv_path is None:
                panels.append(dataclasses.replace(images.truth[k], title=title))
            else:
                panels.append(detection_panel(title, csv_path, config, image_id, h, w))
        rows.append((images.pixels[k], panels))
    return draw_grid(path, rows, score_thresh=FIGURE_SCORE_THRESH)


def fmt_ap(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def config_block(config: Config) -> str:
    return "```toml\n" + dump_toml(config).strip() + "\n```\n"
