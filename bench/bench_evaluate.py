"""``wilddet evaluate`` at challenge-validation scale, and side by side with the TF OD API.

Workload (seeded, written once under $WILDDET_BENCH_DIR, default /tmp/wilddet-bench): the 500
challenge-2019 classes with the Open Images hierarchy, long-tailed class frequencies, ~10 raw GT
boxes per image (8% group-of), image-level labels (every box class positive, plus ~4 more
positive/negative), 100 detections per image (40% jittered copies of GT boxes, some relabelled to
a parent class; the rest random), distinct scores.

1. 41,620 images (the challenge-2019 validation size): wall time of the whole command (read CSVs,
   expand the ground truth with the hierarchy, evaluate, write JSON/CSV), median of ``--repeats``
   fresh processes, and their peak RSS. Goal: < 60 s and < 8 GB on 2 cores.
2. 2,000 images, side by side with the reference evaluator (metric spec §11): the TF OD API's
   ``oid_od_challenge_evaluation.py`` pipeline (pandas read, groupby, per-image evaluator,
   pre-expanded ground truth) from the ``object-detection==0.0.3`` wheel, run without TensorFlow in
   a throwaway venv outside the repository ($WILDDET_TFREF_VENV, default /tmp/wilddet-tfref-venv,
   built here on first use). Prints the speed ratio, the mAP difference and the largest per-class
   |AP difference|. If the venv cannot be built, says why and goes on.

``--quick``: 4,000 and 500 images.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _data import BENCH_DIR

TF_VENV = Path(os.environ.get("WILDDET_TFREF_VENV", "/tmp/wilddet-tfref-venv"))
WORKLOAD_VERSION = 2

# ---------------------------------------------------------------------------------------------
# workload


def make_workload(out: Path, num_images: int, seed: int) -> Path:
    """Write classes.csv, hierarchy.json, boxes.csv (raw, 7-column), labels.csv, dets.csv and the
    hierarchy-expanded boxes_expanded.csv / labels_expanded.csv (for the reference)."""
    stamp = out / f"ok-v{WORKLOAD_VERSION}"
    if stamp.is_file():
        return out
    from wilddet.data import hierarchy as hmod
    from wilddet.data import oid_csv
    from wilddet.data.records import BoxTable, ImageLabelTable
    from wilddet.resources import OID_CHALLENGE_2019_CLASSES_CSV, OID_HIERARCHY_JSON

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(OID_CHALLENGE_2019_CLASSES_CSV, out / "classes.csv")
    shutil.copy(OID_HIERARCHY_JSON, out / "hierarchy.json")
    classes = oid_csv.read_classes(out / "classes.csv")
    tree = hmod.read_hierarchy(out / "hierarchy.json", classes)
    rng = np.random.default_rng(seed)
    C = len(classes)
    freq = 1.0 / (np.arange(C) + 3.0) ** 1.2  # long tail
    freq = freq[rng.permutation(C)]
    freq /= freq.sum()
    ids = np.array([f"{i:016x}" for i in rng.choice(2**62, num_images, replace=False)],
                   dtype=object)

    def boxes_like(n, lo=0.03, hi=0.6):
        w = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        h = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        x0 = rng.random(n) * (1 - w)
        y0 = rng.random(n) * (1 - h)
        return np.stack([x0, y0, x0 + w, y0 + h], axis=1)

    # ground truth: ~10 boxes per image
    per_image = rng.poisson(10, num_images)
    g_img = np.repeat(np.arange(num_images), per_image).astype(np.int32)
    m = len(g_img)
    g_cls = rng.choice(C, m, p=freq).astype(np.int32)
    g_grp = rng.random(m) < 0.08
    g_box = boxes_like(m)
    gt = BoxTable(g_img, g_cls, np.round(g_box, 6).astype(np.float32), g_grp, ids)

    # image-level labels: every box class positive + 4 extra, half of them negative
    extra_img = rng.integers(0, num_images, 4 * num_images)
    l_img = np.concatenate([g_img, extra_img]).astype(np.int32)
    l_cls = np.concatenate([g_cls, rng.choice(C, len(extra_img), p=freq)]).astype(np.int32)
    l_conf = np.concatenate([np.ones(m, np.int8),
                             (rng.random(len(extra_img)) < 0.5).astype(np.int8)])
    key = np.unique(l_img.astype(np.int64) * C + l_cls, return_index=True)[1]
    labels = ImageLabelTable(l_img[key], l_cls[key], l_conf[key], ids)

    # detections: 100 per image
    n_det = 100 * num_images
    d_img = np.repeat(np.arange(num_images), 100).astype(np.int32)
    d_cls = rng.choice(C, n_det, p=freq).astype(np.int32)
    d_box = boxes_like(n_det)
    near = rng.random(n_det) < 0.4
    offsets = np.concatenate([[0], np.cumsum(per_image)])
    has_gt = per_image[d_img] > 0
    near &= has_gt
    src = offsets[d_img[near]] + (rng.random(near.sum()) * per_image[d_img[near]]).astype(int)
    size = np.repeat(g_box[src, 2:] - g_box[src, :2], 2, axis=1)[:, [0, 2, 1, 3]]
    jitter = g_box[src] + rng.normal(0, 0.12, (len(src), 4)) * size
    jitter = np.clip(jitter, 0, 1)
    jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1e-3)
    d_box[near] = np.clip(jitter, 0, 1)
    d_cls[near] = g_cls[src]
    parent = near.copy()
    parent[near] = rng.random(near.sum()) < 0.15
    for i in np.flatnonzero(parent):  # relabel some to an ancestor (a few thousand rows)
        anc = tree.ancestors[d_cls[i]]
        if len(anc):
            d_cls[i] = anc[rng.integers(len(anc))]
    verified_pick = ~near & (rng.random(n_det) < 0.5)  # half the rest: a verified class
    l_off = np.concatenate([[0], np.cumsum(np.bincount(labels.image_codes, minlength=num_images))])
    l_order = np.argsort(labels.image_codes, kind="stable")
    n_lab = np.diff(l_off)
    verified_pick &= n_lab[d_img] > 0
    pick = l_off[d_img[verified_pick]] + (rng.random(verified_pick.sum())
                                          * n_lab[d_img[verified_pick]]).astype(int)
    d_cls[verified_pick] = labels.label_codes[l_order[pick]]
    # distinct 6-decimal scores (up to 999,999 detections): no ties, so the reference's
    # unstable tie order cannot blur the comparison; detections near a GT box score higher
    quality = np.where(near, np.sqrt(rng.random(n_det)), rng.random(n_det) ** 2)
    grid = np.sort(rng.choice(999_999, n_det, replace=n_det > 999_999) + 1) / 1e6
    scores = np.empty(n_det)
    scores[np.argsort(quality, kind="stable")] = grid
    dets = BoxTable(d_img, d_cls, np.round(d_box, 6).astype(np.float32),
                    np.zeros(n_det, bool), ids, scores.astype(np.float32))

    oid_csv.write_boxes(out / "boxes.csv", gt, classes, short_format=True)
    oid_csv.write_image_labels(out / "labels.csv", labels, classes)
    oid_csv.write_detections(out / "dets.csv", dets, classes)
    oid_csv.write_boxes(out / "boxes_expanded.csv", hmod.expand_boxes(gt, tree), classes,
                        short_format=True)
    oid_csv.write_image_labels(out / "labels_expanded.csv",
                               hmod.expand_image_labels(labels, tree), classes)
    stamp.write_text(f"{num_images} images, seed {seed}\n")
    return out


# ---------------------------------------------------------------------------------------------
# our evaluator, in a fresh process (peak RSS is its own)

OURS = r"""
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from wilddet.reports.evaluation_files import evaluate_files
from wilddet.evaluation.oid_challenge import ChallengeSettings
t1 = time.perf_counter()
d, out = Path(sys.argv[1]), Path(sys.argv[2])
classes, result, _ = evaluate_files(d / "boxes.csv", d / "labels.csv", d / "classes.csv",
                                    d / "dets.csv", d / "hierarchy.json", out / "result.json",
                                    out / "per_class.csv", ChallengeSettings())
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t1, "import_seconds": t1 - t0, "mAP": result.mean_ap,
                  "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def run_ours(data: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", OURS, str(data), tmp], check=True,
                              capture_output=True, text=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["per_class"] = json.loads((Path(tmp) / "result.json").read_text())["per_class_AP"]
    return res


# ---------------------------------------------------------------------------------------------
# the reference: TF OD API metric code without TensorFlow (metric spec §11)

TF_DRIVER = r"""
import builtins, json, sys, time, types
import numpy as np
import pandas as pd
# stubs: the metric code is numpy only; these imports are for other parts of the package
for name in ("tensorflow", "google", "google.protobuf", "google.protobuf.text_format",
             "object_detection.protos", "object_detection.protos.string_int_label_map_pb2"):
    sys.modules.setdefault(name, types.ModuleType(name))
sys.modules["google"].protobuf = sys.modules["google.protobuf"]
sys.modules["google.protobuf"].text_format = sys.modules["google.protobuf.text_format"]
builtins.unicode = str
np.float = float
np.NAN = np.nan
pd.DataFrame.as_matrix = lambda self: self.to_numpy()  # removed from pandas; 2019 code uses it
pd.Series.as_matrix = lambda self: self.to_numpy()
from object_detection.metrics import oid_od_challenge_evaluation_utils as utils
from object_detection.utils import object_detection_evaluation

boxes_csv, labels_csv, classes_csv, dets_csv = sys.argv[1:5]
t0 = time.perf_counter()
labels = [line.split(",")[0] for line in open(classes_csv) if line.strip()]
class_label_map = {lab: i + 1 for i, lab in enumerate(labels)}
categories = [{"id": i + 1, "name": lab} for i, lab in enumerate(labels)]
# main() of object_detection/metrics/oid_od_challenge_evaluation.py, label map given directly
all_box_annotations = pd.read_csv(boxes_csv)
all_label_annotations = pd.read_csv(labels_csv)
all_label_annotations.rename(columns={"Confidence": "ConfidenceImageLabel"}, inplace=True)
all_annotations = pd.concat([all_box_annotations, all_label_annotations])
evaluator = object_detection_evaluation.OpenImagesDetectionChallengeEvaluator(categories)
for image_id, image_groundtruth in all_annotations.groupby("ImageID"):
    evaluator.add_single_ground_truth_image_info(
        image_id, utils.build_groundtruth_boxes_dictionary(image_groundtruth, class_label_map))
all_predictions = pd.read_csv(dets_csv)
for image_id, image_predictions in all_predictions.groupby("ImageID"):
    evaluator.add_single_detected_image_info(
        image_id, utils.build_predictions_dictionary(image_predictions, class_label_map))
metrics = evaluator.evaluate()
seconds = time.perf_counter() - t0
ap = evaluator._evaluation.average_precision_per_class
mean = [v for k, v in metrics.items() if k.endswith("Precision/mAP@0.5IOU")][0]
print(json.dumps({"seconds": seconds, "mAP": float(mean),
                  "per_class": {lab: (None if np.isnan(a) else float(a))
                                for lab, a in zip(labels, ap)}}))
"""


def tf_python() -> tuple[Path | None, str]:
    """The reference venv's python, built on first use; (None, why) if it cannot be built."""
    py = TF_VENV / "bin" / "python"
    if (TF_VENV / ".wilddet-ok").is_file():
        return py, "ready"
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(TF_VENV)], check=True,
                       capture_output=True, text=True)
        pip = [str(py), "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run(pip + ["install", "numpy", "pandas"], check=True, capture_output=True,
                       text=True, timeout=600)
        wheels = TF_VENV / "wheels"
        subprocess.run(pip + ["download", "--no-deps", "object-detection==0.0.3", "-d",
                              str(wheels)], check=True, capture_output=True, text=True,
                       timeout=600)
        wheel = next(wheels.glob("object_detection-0.0.3-*.whl"))
        subprocess.run(pip + ["install", "--no-deps", str(wheel)], check=True,
                       capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, StopIteration,
            OSError) as e:
        detail = getattr(e, "stderr", "") or ""
        return None, f"{type(e).__name__}: {e} {detail.strip()[-400:]}"
    (TF_VENV / ".wilddet-ok").write_text("object-detection==0.0.3, numpy, pandas\n")
    return py, "built"


def run_tf(py: Path, data: Path) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(TF_DRIVER)
    try:
        proc = subprocess.run([str(py), f.name, str(data / "boxes_expanded.csv"),
                               str(data / "labels_expanded.csv"), str(data / "classes.csv"),
                               str(data / "dets.csv")], check=True, capture_output=True,
                              text=True, cwd=tempfile.gettempdir())
    finally:
        os.unlink(f.name)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def per_class_diff(a: dict, b: dict) -> tuple[float, int]:
    """(max |AP difference| over classes with an AP on both sides, #classes where exactly one
    side has no AP)."""
    diffs, mismatched = [0.0], 0
    for lab, x in a.items():
        y = b.get(lab)
        if (x is None) != (y is None):
            mismatched += 1
        elif x is not None:
            diffs.append(abs(x - y))
    return max(diffs), mismatched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4,000 and 500 images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-reference", action="store_true",
                        help="do not run the TF OD API evaluator")
    args = parser.parse_args()
    big_n, small_n = (4_000, 500) if args.quick else (41_620, 2_000)

    big = make_workload(BENCH_DIR / f"eval-{big_n}", big_n, seed=0)
    n_det, n_gt = (len((big / name).read_bytes().splitlines()) - 1
                   for name in ("dets.csv", "boxes.csv"))
    runs = [run_ours(big) for _ in range(args.repeats)]
    t = statistics.median(r["seconds"] for r in runs)
    rss = max(r["rss_gb"] for r in runs)
    print(f"[1] {big_n:,} images, 500 classes, {n_gt:,} raw GT boxes, {n_det:,} detections")
    print(f"    wilddet evaluate (read + hierarchy expansion + evaluate + write): median {t:.1f} s "
          f"over {len(runs)} runs (first {runs[0]['seconds']:.1f} s; imports "
          f"{runs[0]['import_seconds']:.1f} s more), peak RSS {rss:.2f} GB; "
          f"mAP {runs[0]['mAP']:.4f}   (goal < 60 s, < 8 GB)")

    small = make_workload(BENCH_DIR / f"eval-{small_n}", small_n, seed=1)
    ours = [run_ours(small) for _ in range(args.repeats)]
    t_ours = statistics.median(r["seconds"] for r in ours)
    print(f"[2] {small_n:,} images: wilddet median {t_ours:.2f} s, mAP {ours[0]['mAP']:.6f}")
    if args.skip_reference:
        print("    reference skipped (--skip-reference)")
        return
    py, why = tf_python()
    if py is None:
        print(f"    TF OD API reference unavailable, venv not built: {why}")
        return
    try:
        ref = run_tf(py, small)
    except subprocess.CalledProcessError as e:
        print(f"    TF OD API reference failed: {e.stderr.strip()[-600:]}")
        return
    worst, mismatched = per_class_diff(ours[0]["per_class"], ref["per_class"])
    print(f"    TF OD API object-detection==0.0.3 ({TF_VENV}): {ref['seconds']:.1f} s (1 run), "
          f"mAP {ref['mAP']:.6f}")
    print(f"    speed ratio {ref['seconds'] / t_ours:.1f}x (goal >= 20x); "
          f"mAP difference {abs(ours[0]['mAP'] - ref['mAP']):.2e}; max per-class |AP diff| "
          f"{worst:.2e}; classes with AP on one side only: {mismatched}")


if __name__ == "__main__":
    main()
