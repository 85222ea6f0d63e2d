"""`wilddet analyze` at challenge-train scale (~14.6M boxes in 1.7M images, some with hundreds).

Prints, on the synthetic file of ``bench/_data.py``:
1. end to end: ``python -m wilddet analyze`` in a fresh process (CSV reading included, with
   --hierarchy), wall time (median of repeats), peak RSS of that process and boxes/s, against the
   issue's goals (< 60 s, < 8 GB on 2 cores);
2. the confusion-pair count alone, in process: the numba kernel on all boxes (median of repeats)
   against a plain per-image numpy implementation (IoU matrix vectorised per image, Python loop
   over images) timed in the same run. The numpy baseline runs on a uniform random sample of
   images (it would take minutes on all of them) and its time is extrapolated by the number of
   images; the kernel is also timed on that same sample, so one speed-up is measured like for
   like, and both give the same counts (checked).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from _data import oid_scale_dataset

from wilddet.data import oid_csv
from wilddet.data.records import rows_by_image
from wilddet.stats.confusion import count_confusion_pairs


def numpy_per_image(boxes_norm, label_codes, image_codes, num_images, num_classes, thr=0.9):
    """Baseline: per image, the full [n, n] IoU matrix with numpy broadcasting (float64), ordered
    pairs of different classes with IoU > thr added to [C, C]; a Python loop over images."""
    order, offsets = rows_by_image(image_codes, num_images)
    boxes = boxes_norm[order].astype(np.float64)
    labels = label_codes[order]
    counts = np.zeros((num_classes, num_classes), np.int64)
    for im in range(num_images):
        s, e = offsets[im], offsets[im + 1]
        if e - s < 2:
            continue
        b, lab = boxes[s:e], labels[s:e]
        iw = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        ih = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)  # [n, n]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        union = area[:, None] + area[None, :] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        i, j = np.nonzero((iou > thr) & (lab[:, None] != lab[None, :]))
        np.add.at(counts, (lab[i], lab[j]), 1)
    return counts


def run_cli(data: Path, out: Path) -> tuple[float, float, str]:
    """(wall s, peak RSS GB, last output line) of one ``wilddet analyze`` process."""
    cmd = [sys.executable, "-m", "wilddet", "analyze",
           "--boxes", str(data / "train-annotations-bbox.csv"),
           "--classes", str(data / "class-descriptions.csv"),
           "--hierarchy", str(data / "hierarchy.json"), "--out", str(out), "--top", "5"]
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "200"})  # no wrapped lines
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read()
    if proc.returncode != 0:
        raise SystemExit(f"wilddet analyze failed ({proc.returncode}):\n{text}")
    last = [ln for ln in text.splitlines() if ln.startswith("analyzed")]
    return wall, usage.ru_maxrss / 2**20, (last[0] if last else "")


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k images instead of 1.7M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-images", type=int, default=20_000,
                        help="images in the random sample the numpy baseline runs on")
    args = parser.parse_args()
    images = 100_000 if args.quick else 1_700_000
    repeats = 1 if args.quick else args.repeats
    t0 = time.perf_counter()
    data = oid_scale_dataset(images)
    print(f"data: {data} ({time.perf_counter() - t0:.1f} s to make or find); "
          f"{numba.get_num_threads()} numba threads, {os.cpu_count()} CPUs")

    # 1. end to end, fresh processes
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_cli(data, Path(tmp) / f"out{k}") for k in range(repeats)]
    walls, rss = [r[0] for r in runs], max(r[1] for r in runs)
    classes = oid_csv.read_classes(data / "class-descriptions.csv")
    t_read = time.perf_counter()
    boxes = oid_csv.read_boxes(data / "train-annotations-bbox.csv", classes)
    t_read = time.perf_counter() - t_read
    n, num_images, c = len(boxes), boxes.num_images, len(classes)
    wall = statistics.median(walls)
    print(f"\n== wilddet analyze end to end ({n:,} boxes, {num_images:,} images, {c} classes)")
    print(f"   wall {wall:.1f} s (median of {len(walls)}: "
          f"{', '.join(f'{w:.1f}' for w in walls)}), peak RSS {rss:.2f} GB, "
          f"{n / wall / 1e6:.2f} M boxes/s  [goal < 60 s, < 8 GB: "
          f"{'PASS' if wall < 60 and rss < 8 else 'FAIL'}]")
    print(f"   ({runs[-1][2]}; read_boxes alone {t_read:.1f} s in this process)")

    # 2. the pair count alone
    args_full = (boxes.boxes_norm, boxes.label_codes, boxes.image_codes, num_images, c)
    count_confusion_pairs(*args_full)  # compile / load the cached kernel
    t_kernel, full_counts = median_time(lambda: count_confusion_pairs(*args_full), repeats)
    rng = np.random.default_rng(0)
    sample = np.zeros(num_images, bool)
    sample[rng.choice(num_images, size=min(args.baseline_images, num_images), replace=False)] = True
    rows = np.flatnonzero(sample[boxes.image_codes])
    new_code = np.cumsum(sample) - 1  # sampled images re-coded 0..S-1
    sub = (boxes.boxes_norm[rows], boxes.label_codes[rows],
           new_code[boxes.image_codes[rows]].astype(np.int32), int(sample.sum()), c)
    t_numpy_sub, numpy_counts = median_time(lambda: numpy_per_image(*sub), 1)
    t_kernel_sub, kernel_counts = median_time(lambda: count_confusion_pairs(*sub), repeats)
    same = bool(np.array_equal(numpy_counts, kernel_counts))
    scale = num_images / sub[3]
    t_numpy_full = t_numpy_sub * scale
    print("\n== confusion-pair counting only (IoU > 0.9), in process")
    print(f"   numba kernel, all boxes: {t_kernel:.2f} s (median of {repeats}), "
          f"{n / t_kernel / 1e6:.1f} M boxes/s, {int(full_counts.sum()):,} ordered pairs")
    print(f"   numpy per-image baseline on a random sample of {sub[3]:,} images "
          f"({len(rows):,} boxes): {t_numpy_sub:.2f} s (1 run); numba on the same sample: "
          f"{t_kernel_sub * 1e3:.1f} ms -> speed-up x{t_numpy_sub / t_kernel_sub:.0f} "
          f"(counts equal: {same})")
    print(f"   numpy baseline extrapolated to all {num_images:,} images (x{scale:.0f}): "
          f"{t_numpy_full:.0f} s -> speed-up of the kernel x{t_numpy_full / t_kernel:.0f}")
    if not same:
        raise SystemExit("numpy baseline and numba kernel disagree")


if __name__ == "__main__":
    main()
