"""The demo study (``wilddet demo --out runs/demo``): the whole pipeline on a fresh machine in
minutes on a CPU.

1. synthesise a small Open Images-style dataset (``OUT/data``),
2. analyse it: confusion pairs and the concurrent-rate matrix (``OUT/analysis``),
3. train a small concurrent-softmax detector with the hybrid sampler schedule (``OUT/train``),
4. predict on the val split with it and with the same network before training (``OUT/predictions``),
5. score both with the challenge metric (``OUT/eval``: per-class AP CSV + JSON), and the trained
   model's detections with the COCO metric through COCO json (``OUT/eval/val-coco.json``,
   ``trained-coco-results.json``, ``trained-coco.json``),
6. draw detections next to ground truth (``OUT/report/detections.png``), write
   ``OUT/report/summary.md``, diagnose both detection files (``OUT/diagnose/``) and write the
   HTML report ``OUT/report/html/index.html`` (``wilddet report``).

Re-running continues where it stopped (the dataset, the analysis and a finished training run
are reused).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from wilddet.config import Config, demo_config, with_overrides
from wilddet.errors import InputError
from wilddet.fileio import write_text_atomic
from wilddet.studies.common import Say, quiet

log = logging.getLogger(__name__)

# The demo dataset: sized so that the tiny detector learns it on 2 CPU cores in a few minutes.
DEMO_SYNTH = {"train_images": 1200, "val_images": 150, "classes": 12, "image_size": 128,
              "objects_per_image": 2.5, "seed": 0}


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    trained_map: float
    untrained_map: float
    per_class_csv: Path
    picture: Path
    summary: Path
    seconds: dict[str, float]
    iterations: int = 0   # training iterations of the trained model


def _synthesise(data_dir: Path, synth: dict, say: Say) -> None:
    from wilddet.data.synthetic import SynthConfig, write_dataset

    if (data_dir / "synth.json").is_file():
        saved = json.loads((data_dir / "synth.json").read_text())["config"]
        if all(saved.get(k) == v for k, v in synth.items()):
            say(f"[1/6] dataset: reusing {data_dir}")
            return
        raise InputError(data_dir, "holds another synthetic dataset; remove it or pick "
                         "another --out")
    write_dataset(data_dir, SynthConfig(**synth))
    say(f"[1/6] dataset: wrote {data_dir} ({synth['train_images']} train / "
        f"{synth['val_images']} val images, {synth['image_size']} px)")


def _analyse(data_dir: Path, out: Path, say: Say) -> Path:
    from wilddet.reports.analysis_files import RATE_FILE, analyze_dataset

    rate = out / RATE_FILE
    if not rate.is_file():
        analysis = analyze_dataset(data_dir / "train-annotations-bbox.csv",
                                   data_dir / "class-descriptions.csv",
                                   data_dir / "hierarchy.json", out)
        say(f"[2/6] analysis: {len(analysis.pairs)} confusion pairs with ratio >= 0.1"
            f" -> {rate}; report: {out / 'report.md'}")
    else:
        say(f"[2/6] analysis: reusing {rate}")
    return rate


def _evaluate(config: Config, detections: Path, out_json: Path, out_csv: Path) -> float:
    from wilddet.reports.evaluation_files import evaluate_files

    data = config.data
    _, result, _ = evaluate_files(data.path("val_boxes"), data.path("val_image_labels"),
                                  data.path("classes"), detections, data.path("hierarchy"),
                                  out_json, out_csv)
    return float(result.mean_ap)


def _evaluate_coco(config: Config, detections: Path, ev: Path) -> float:
    """The json path: val ground truth -> COCO GT json (image sizes from the file headers), the
    detections CSV -> COCO results json, then the COCO metric (``wilddet convert`` and
    ``wilddet evaluate --metric coco``). Returns AP@[.5:.95]."""
    from wilddet.data.coco.convert import detections_csv_to_results, oid_files_to_coco
    from wilddet.reports.evaluation_files import evaluate_coco_files

    data = config.data
    gt_json, results_json = ev / "val-coco.json", ev / "trained-coco-results.json"
    oid_files_to_coco(data.path("val_boxes"), data.path("classes"), gt_json, kind="coco",
                      image_labels=data.path("val_image_labels"), images=data.path("val_images"))
    detections_csv_to_results(detections, gt_json, results_json)
    result = evaluate_coco_files(gt_json, results_json, "coco", ev / "trained-coco.json", None)
    return result.mean_ap


def _untrained_detections(config: Config, path: Path) -> None:
    """Detections of the network as training initialises it (same seed, same architecture)."""
    import torch

    from wilddet.data.dataset import ImageFolderDataset
    from wilddet.data.oid_csv import write_detections
    from wilddet.engine.builders import build_detector, load_meta
    from wilddet.engine.inference import predict_dataset

    meta = load_meta(config)
    torch.manual_seed(config.train.seed)  # what engine.train does before building the model
    model = build_detector(config.model, meta)
    dataset = ImageFolderDataset(config.data.path("val_images"), uint8=True)
    dets = predict_dataset(model, dataset, batch_size=config.eval.batch_size)
    write_detections(path, dets, meta.classes)


PICTURE_SCORE_THRESH = 0.3


def _picture(config: Config, detections_csv: Path, path: Path, num_images: int = 4) -> Path:
    from wilddet.data.dataset import ImageFolderDataset
    from wilddet.data.oid_csv import read_boxes, read_classes, read_detections
    from wilddet.reports.draw import draw_detections_vs_truth, table_panel

    classes = read_classes(config.data.path("classes"))
    gt = read_boxes(config.data.path("val_boxes"), classes)
    dets = read_detections(detections_csv, classes)
    dataset = ImageFolderDataset(config.data.path("val_images"))
    images, truth, found = [], [], []
    for k in range(min(num_images, len(dataset))):
        image, info = dataset[k]
        h, w = info["size"]
        panels = []
        title_dets = f"detections (score >= {PICTURE_SCORE_THRESH:g})"
        for table, title in ((gt, "ground truth"), (dets, title_dets)):
            panels.append(table_panel(f"{info['image_id']}: {title}", table, classes.names,
                                      info["image_id"], h, w, mark_group_of=True))
        images.append(image)
        truth.append(panels[0])
        found.append(panels[1])
    return draw_detections_vs_truth(path, images, truth, found,
                                    score_thresh=PICTURE_SCORE_THRESH)


def run_demo(out_dir: str | Path = "runs/demo", *, overrides: list[str] | tuple[str, ...] = (),
             synth: dict | None = None, progress: bool | None = None,
             say: Say = quiet) -> DemoResult:
    """Run the six steps (module docstring) into ``out_dir``; returns both mAPs and paths.
    ``overrides``: ``--set``-style changes of the demo config (e.g. ``train.max_iters=100``);
    ``synth``: ``SynthConfig`` fields of the dataset (default ``DEMO_SYNTH``); ``say(text)``
    reports each step."""
    import torch  # here, not at import: `wilddet --help` should not load torch

    synth = dict(DEMO_SYNTH if synth is None else synth)
    out = Path(out_dir)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    _synthesise(out / "data", synth, say)
    times["synthesise"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rate = _analyse(out / "data", out / "analysis", say)
    times["analyse"] = time.perf_counter() - t0

    # the demo scores the model itself below; no evaluation inside training
    config = with_overrides(demo_config(out / "data", rate), ["eval.period_iters=-1", *overrides])
    threads_before = torch.get_num_threads()
    if config.train.num_threads > 0:  # prediction too (see demo_config)
        torch.set_num_threads(config.train.num_threads)
    try:
        return _train_predict_report(config, out, times, synth, progress, say)
    finally:
        torch.set_num_threads(threads_before)


def _train_predict_report(config: Config, out: Path, times: dict[str, float], synth: dict,
                          progress: bool | None, say: Say) -> DemoResult:
    from wilddet.engine.inference import predict
    from wilddet.engine.train import train

    t0 = time.perf_counter()
    say(f"[3/6] training {config.model.backbone} backbone, "
        f"{config.model.classifier_loss} loss, {config.sampling.kind} sampling, "
        f"{config.train.max_iters} iterations x {config.train.batch_size} images")
    result = train(config, out / "train", resume=True, progress=progress)
    times["train"] = time.perf_counter() - t0
    say(f"      done in {times['train']:.0f} s, last loss "
        f"{result.losses.get('loss', float('nan')):.3f}")

    t0 = time.perf_counter()
    preds = out / "predictions"
    trained_csv, untrained_csv = preds / "val-detections.csv", preds / "untrained-detections.csv"
    predict(result.checkpoint, config.data.path("val_images"), trained_csv,
            batch_size=config.eval.batch_size, device="cpu", num_workers=0, progress=progress)
    _untrained_detections(config, untrained_csv)
    times["predict"] = time.perf_counter() - t0
    say(f"[4/6] predictions: {trained_csv} (trained), {untrained_csv} (untrained)")

    t0 = time.perf_counter()
    ev = out / "eval"
    trained_map = _evaluate(config, trained_csv, ev / "trained.json", ev / "trained-per-class.csv")
    untrained_map = _evaluate(config, untrained_csv, ev / "untrained.json",
                              ev / "untrained-per-class.csv")
    coco_ap = _evaluate_coco(config, trained_csv, ev)
    times["evaluate"] = time.perf_counter() - t0
    say(f"[5/6] challenge metric: {ev / 'trained-per-class.csv'}; COCO metric (AP "
        f"{coco_ap:.4f}) on the same detections via COCO json: {ev / 'trained-coco.json'}")

    picture = _picture(config, trained_csv, out / "report" / "detections.png")
    summary = out / "report" / "summary.md"
    write_text_atomic(summary, _summary_md(config, synth, trained_map, untrained_map, times,
                                           out))
    html = _html_report(config, out, {"untrained": untrained_csv, "trained": trained_csv})
    say(f"[6/6] report: {summary}, {picture}, {html}")
    return DemoResult(out, trained_map, untrained_map, ev / "trained-per-class.csv", picture,
                      summary, times, result.iteration)


def _html_report(config: Config, out: Path, detections: dict[str, Path]) -> Path:
    """``wilddet diagnose`` of each detections file (``OUT/diagnose/<name>``), then the HTML
    report of them, the training run and the label analysis (``OUT/report/html``)."""
    from wilddet.reports.analysis_files import PAIRS_FILE
    from wilddet.reports.diagnose_run import DiagnoseInputs, diagnose_files
    from wilddet.reports.html.build import build_report

    data = config.data
    for name, csv_path in detections.items():
        diagnose_files(DiagnoseInputs(data.path("val_boxes"), data.path("val_image_labels"),
                                      data.path("classes"), csv_path, data.path("hierarchy"),
                                      out / "analysis" / PAIRS_FILE,
                                      data.path("val_images")), out / "diagnose" / name)
    return build_report([out / "diagnose" / name for name in detections] +
                        [out / "train", out / "analysis"], out / "report" / "html",
                        title="wilddet demo")


def _summary_md(config: Config, synth: dict, trained: float, untrained: float, times: dict,
                out: Path) -> str:
    def fmt(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{x:.4f}"

    from wilddet.reports.markdown import markdown_table

    lines = ["# wilddet demo", "",
             markdown_table(["model", "val mAP"], [
                 ["untrained (initial weights)", fmt(untrained)],
                 [f"trained ({config.train.max_iters} iterations)", fmt(trained)]], "lr"), "",
             "Times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()), "",
             f"- per-class AP: `{out / 'eval' / 'trained-per-class.csv'}`",
             f"- detections next to ground truth: `{out / 'report' / 'detections.png'}`",
             f"- training run (config.toml, metrics.jsonl, tensorboard/): `{out / 'train'}`",
             "", "Synthetic dataset: " + ", ".join(f"{k}={v}" for k, v in synth.items()),
             "", "Config:", "", "```toml"]
    from wilddet.config import dump_toml

    return "\n".join(lines + [dump_toml(config), "```", ""])
