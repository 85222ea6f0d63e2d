"""``wilddet diagnose`` at challenge-validation scale, against ``wilddet evaluate`` on the same
files in the same run.

Workload: ``bench_evaluate``'s (41,620 images, the 500 challenge-2019 classes with the Open
Images hierarchy, ~416k raw GT boxes, 4.16M detections, seeded, written once under
$WILDDET_BENCH_DIR), plus a confusion-pairs CSV of 200 random class pairs. Each side runs in a
fresh process (read the CSVs, expand the ground truth, compute, write every output: for
diagnose errors.csv, summary.json, pr_curves.csv and the two pictures); the median of
``--repeats`` runs and the ratio diagnose / evaluate are printed. Goal: well under 60 s.

``--quick``: 4,000 images.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _data import BENCH_DIR
from bench_evaluate import make_workload, run_ours

DIAGNOSE = r"""
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from wilddet.reports.diagnose_run import DiagnoseInputs, diagnose_files
t1 = time.perf_counter()
d, out = Path(sys.argv[1]), Path(sys.argv[2])
inputs = DiagnoseInputs(d / "boxes.csv", d / "labels.csv", d / "classes.csv", d / "dets.csv",
                        d / "hierarchy.json", d / "pairs.csv")
_, diag = diagnose_files(inputs, out)
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t1, "import_seconds": t1 - t0, "mAP": diag.mean_ap,
                  "false_positives": [int(x) for x in diag.fp_totals],
                  "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def write_pairs(data: Path, num_pairs: int = 200, seed: int = 0) -> None:
    """``pairs.csv`` (the analyzer's columns) with random class pairs, once."""
    path = data / "pairs.csv"
    if path.is_file():
        return
    labels = [line.split(",")[0] for line in (data / "classes.csv").read_text().splitlines()
              if line.strip()]
    rng = np.random.default_rng(seed)
    lines = ["source,confusion,source_name,confusion_name,source_boxes,confusion_boxes,ratio"]
    for _ in range(num_pairs):
        a, b = rng.choice(len(labels), 2, replace=False)
        lines.append(f"{labels[a]},{labels[b]},,,1,1,1.0")
    path.write_text("\n".join(lines) + "\n")


def run_diagnose(data: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", DIAGNOSE, str(data), tmp], check=True,
                              capture_output=True, text=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4,000 images")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = 4_000 if args.quick else 41_620
    data = make_workload(BENCH_DIR / f"eval-{n}", n, seed=0)
    write_pairs(data)
    n_det = len((data / "dets.csv").read_bytes().splitlines()) - 1
    evals, diags = [], []
    for _ in range(args.repeats):  # interleaved: both see the same machine load
        evals.append(run_ours(data))
        diags.append(run_diagnose(data))
    t_eval = statistics.median(r["seconds"] for r in evals)
    t_diag = statistics.median(r["seconds"] for r in diags)
    fps = dict(zip(("duplicate", "localization", "hierarchy", "confusion", "class",
                    "background", "other"), diags[0]["false_positives"]))
    print(f"{n:,} images, 500 classes, {n_det:,} detections; medians of {args.repeats} fresh "
          f"processes (read + expand + compute + write)")
    print(f"  wilddet evaluate: {t_eval:.1f} s, mAP {evals[0]['mAP']:.4f}")
    print(f"  wilddet diagnose: {t_diag:.1f} s, mAP {diags[0]['mAP']:.4f}, peak RSS "
          f"{max(r['rss_gb'] for r in diags):.2f} GB   (goal: well under 60 s)")
    print(f"  ratio diagnose / evaluate: {t_diag / t_eval:.2f}x")
    print(f"  false positives by type: {fps}")
    assert abs(evals[0]["mAP"] - diags[0]["mAP"]) < 1e-12, "diagnose and evaluate disagree"


if __name__ == "__main__":
    main()
