"""``wilddet evaluate --metric coco|lvis`` (faster-coco-eval) beside pycocotools and lvis-api.

Workloads (seeded, written once as json under $WILDDET_BENCH_DIR, default /tmp/wilddet-bench):

1. COCO val2017-sized: 5,000 images (640x480), 80 classes, ~7.3 GT boxes per image (1% crowd),
   100 detections per image (jittered copies of GT boxes, some relabelled, the rest random).
   wilddet (read + validate GT.json and RESULTS.json, evaluate, write R.json) vs pycocotools
   (``COCO`` + ``loadRes`` + ``COCOeval``), each in a fresh process, median of ``--repeats``.
2. LVIS v1 val-sized: 19,809 images, 1,203 classes (r/c/f 337/461/405 as LVIS v1), ~12.4 GT
   boxes per image, federated negative / not-exhaustive lists, 300 detections per image. wilddet
   on the full set; lvis-api and pycocotools (whose Python loop over every (image, category,
   area) triple takes hours at this size on 2 cores) on the first ``--lvis-subset`` images,
   with wilddet timed on the same subset for the ratio.

Each row: median wall time, the peak RSS of the process (data included), and the ratio
reference / wilddet measured in this run. ``--quick``: 500 / 1,000 images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _data import BENCH_DIR

WORKLOAD_VERSION = 1

# ---------------------------------------------------------------------------------------------
# workloads


def _boxes(rng, n, w, h, min_side=4.0):
    bw = np.minimum(rng.lognormal(np.log(w / 8), 0.9, n), w - 1).clip(min_side)
    bh = np.minimum(rng.lognormal(np.log(h / 8), 0.9, n), h - 1).clip(min_side)
    x = rng.uniform(0, 1, n) * (w - bw)
    y = rng.uniform(0, 1, n) * (h - bh)
    return np.stack([x, y, bw, bh], 1)


def make_workload(out: Path, num_images: int, num_classes: int, gt_per_image: float,
                  dets_per_image: int, lvis: bool, seed: int = 0) -> Path:
    """Write ``gt.json`` and ``results.json`` into ``out`` (once)."""
    stamp = out / f"ok-v{WORKLOAD_VERSION}"
    if stamp.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    W, H = 640, 480
    freq = np.asarray(["r"] * 337 + ["c"] * 461 + ["f"] * 405) if lvis else None
    class_p = rng.dirichlet(np.full(num_classes, 0.3))
    n_gt = rng.poisson(gt_per_image, num_images)
    images, anns, results = [], [], []
    for i in range(num_images):
        boxes = _boxes(rng, n_gt[i], W, H)
        cats = rng.choice(num_classes, n_gt[i], p=class_p) + 1
        for b, c in zip(boxes.tolist(), cats.tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c, "bbox": b,
                         "area": b[2] * b[3], "iscrowd": int(not lvis and rng.random() < 0.01)})
        im = {"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": W, "height": H}
        if lvis:
            present = set(cats.tolist())
            neg = rng.choice(num_classes, 8, replace=False) + 1
            im["neg_category_ids"] = sorted(int(c) for c in neg if c not in present)
            im["not_exhaustive_category_ids"] = sorted(c for c in present if rng.random() < 0.1)
        images.append(im)
        n_copy = min(len(boxes) * 3, dets_per_image // 2)
        src = rng.integers(0, max(len(boxes), 1), n_copy)
        copies = boxes[src] + rng.normal(0, 0.08, (n_copy, 4)) * boxes[src][:, [2, 3, 2, 3]] \
            if len(boxes) else np.zeros((0, 4))
        copies[:, 2:] = np.maximum(copies[:, 2:], 1.0)
        copy_cats = cats[src] if len(boxes) else np.zeros(0, np.int64)
        relabel = rng.random(n_copy) < 0.2
        copy_cats = np.where(relabel, rng.integers(1, num_classes + 1, n_copy), copy_cats)
        rand = _boxes(rng, dets_per_image - n_copy, W, H, 2.0)
        rand_cats = rng.choice(num_classes, len(rand), p=class_p) + 1
        scores = rng.random(dets_per_image)
        for b, c, s in zip(np.concatenate([copies, rand]).tolist(),
                           np.concatenate([copy_cats, rand_cats]).tolist(), scores.tolist()):
            results.append({"image_id": i + 1, "category_id": int(c), "bbox": b, "score": s})
    cats_doc = [{"id": k + 1, "name": f"class_{k + 1}", "supercategory": "none"}
                for k in range(num_classes)]
    if lvis:
        for c, f in zip(cats_doc, rng.permutation(freq).tolist()):
            c["frequency"] = f
    (out / "gt.json").write_text(json.dumps({"images": images, "annotations": anns,
                                             "categories": cats_doc}))
    (out / "results.json").write_text(json.dumps(results))
    stamp.write_text("")
    return out


def subset(src: Path, out: Path, num_images: int) -> Path:
    """The first ``num_images`` images of a workload (GT and results)."""
    if (out / f"ok-v{WORKLOAD_VERSION}").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    gt = json.loads((src / "gt.json").read_text())
    keep = {im["id"] for im in gt["images"][:num_images]}
    gt["images"] = gt["images"][:num_images]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    res = [r for r in json.loads((src / "results.json").read_text()) if r["image_id"] in keep]
    (out / "gt.json").write_text(json.dumps(gt))
    (out / "results.json").write_text(json.dumps(res))
    (out / f"ok-v{WORKLOAD_VERSION}").write_text("")
    return out


# ---------------------------------------------------------------------------------------------
# workers (run in a fresh process each: time and peak RSS of that process)


def _worker(method: str, data: Path) -> dict:
    import contextlib
    import io

    gt, res = str(data / "gt.json"), str(data / "results.json")
    start = time.perf_counter()
    value = None
    if method in ("wilddet-coco", "wilddet-lvis"):
        # what `wilddet evaluate --metric coco|lvis` runs: read + validate both files, evaluate
        from wilddet.data.coco.json_io import read_ground_truth, read_results
        from wilddet.evaluation.coco_metric import Detections, evaluate_coco_style

        metric = method.split("-")[1]
        truth = read_ground_truth(gt, kind=metric)
        r = read_results(res, truth)
        dets = Detections(truth.image_ids[r.image], truth.category_ids[r.category], r.bbox,
                          r.score)
        value = evaluate_coco_style(truth.doc, dets, metric).summary["AP"]
    elif method == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(gt)
            ev = COCOeval(coco, coco.loadRes(res), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        value = float(ev.stats[0])
    elif method == "lvis-api":
        np.float = float  # lvis-api still uses np.float (removed in numpy 2)
        import logging

        from lvis import LVIS, LVISEval, LVISResults

        logging.disable(logging.WARNING)
        lvis_gt = LVIS(gt)
        ev = LVISEval(lvis_gt, LVISResults(lvis_gt, res, max_dets=300), "bbox")
        ev.run()
        value = float(ev.get_results()["AP"])
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_gb": _peak_rss_gb(), "AP": value}


def _peak_rss_gb() -> float:
    """Peak RSS of this process (``VmHWM``: reset by exec, while ``ru_maxrss`` keeps the
    forking parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # kB -> GB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(method: str, data: Path, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, __file__, "--worker", method, str(data)],
                              check=True, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "rss_gb": max(r["rss_gb"] for r in runs), "AP": runs[0]["AP"], "repeats": repeats}


def _row(name: str, m: dict, base: dict | None) -> str:
    ratio = "" if base is None else f"{m['seconds'] / base['seconds']:8.1f}x"
    return (f"  {name:<34} {m['seconds']:9.2f} s  {m['rss_gb']:6.2f} GB  AP {m['AP']:.6f}"
            f"  {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "DATA"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--lvis-subset", type=int, default=1000,
                        help="images of the LVIS workload that lvis-api / pycocotools get")
    parser.add_argument("--skip-lvis", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker[0], Path(args.worker[1]))))
        return
    coco_images = 500 if args.quick else 5000
    lvis_images = 1000 if args.quick else 19809
    lvis_sub = min(args.lvis_subset, lvis_images) if not args.quick else 200

    coco = make_workload(BENCH_DIR / f"coco-{coco_images}", coco_images, 80, 7.3, 100, False)
    print(f"COCO val2017-sized: {coco_images} images, 80 classes, 100 detections/image "
          f"(median of {args.repeats}; ratio = time / wilddet)")
    ours = measure("wilddet-coco", coco, args.repeats)
    ref = measure("pycocotools", coco, args.repeats)
    print(_row("wilddet (faster-coco-eval)", ours, None))
    print(_row("pycocotools", ref, ours))
    print(f"  |AP difference| {abs(ours['AP'] - ref['AP']):.2e}")
    if args.skip_lvis:
        return

    lvis = make_workload(BENCH_DIR / f"lvis-{lvis_images}", lvis_images, 1203, 12.4, 300, True)
    sub = subset(lvis, BENCH_DIR / f"lvis-{lvis_images}-first{lvis_sub}", lvis_sub)
    print(f"LVIS v1 val-sized: {lvis_images} images, 1203 classes, 300 detections/image")
    full = measure("wilddet-lvis", lvis, 1)
    print(_row(f"wilddet LVIS, all {lvis_images} images", full, None))
    print(f"  subset: first {lvis_sub} images (lvis-api / pycocotools loop in Python over every "
          "(image, category, area); the full size takes hours on 2 cores)")
    ours_sub = measure("wilddet-lvis", sub, args.repeats)
    lvis_ref = measure("lvis-api", sub, 1)
    coco_ref = measure("pycocotools", sub, 1)
    print(_row("wilddet LVIS (faster-coco-eval)", ours_sub, None))
    print(_row("lvis-api", lvis_ref, ours_sub))
    print(_row("pycocotools (COCO metric, not federated)", coco_ref, ours_sub))
    print(f"  |AP difference| vs lvis-api {abs(ours_sub['AP'] - lvis_ref['AP']):.2e}")


if __name__ == "__main__":
    main()
