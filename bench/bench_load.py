"""Load the challenge-train-sized box file (~14.6M rows, ~1.2 GB) into columnar records.

Prints wall time (median of 3 runs, each in a fresh process so peak RSS is the loader's own) and
peak RSS; baseline: ``pandas.read_csv`` of the same columns with default settings, in the same
run. Goals: < 20 s and < 4 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _data import oid_scale_dataset

CHILD = r"""
import json, resource, sys, time
path, classes_path, mode = sys.argv[1:4]
t0 = time.perf_counter()
if mode == "wilddet":
    from wilddet.data import oid_csv
    classes = oid_csv.read_classes(classes_path)
    boxes = oid_csv.read_boxes(path, classes)
    rows = len(boxes)
else:
    import pandas as pd
    df = pd.read_csv(path, usecols=["ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax",
                                    "IsGroupOf"])
    rows = len(df)
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": rows,
                  "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def run(mode: str, path, classes) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(classes), mode],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k images instead of 1.7M")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = oid_scale_dataset(100_000 if args.quick else 1_700_000)
    path, classes = data / "train-annotations-bbox.csv", data / "class-descriptions.csv"
    ours = [run("wilddet", path, classes) for _ in range(args.repeats)]
    base = [run("pandas", path, classes) for _ in range(max(1, args.repeats // 3))]
    t_ours = statistics.median(r["seconds"] for r in ours)
    t_base = statistics.median(r["seconds"] for r in base)
    rss = max(r["rss_gb"] for r in ours)
    print(f"rows: {ours[0]['rows']:,}  file: {path.stat().st_size / 2**30:.2f} GiB")
    print(f"wilddet read_boxes: median {t_ours:.1f} s, peak RSS {rss:.2f} GB "
          f"(goal < 20 s, < 4 GB)")
    print(f"pandas.read_csv baseline (no validation, strings kept): median {t_base:.1f} s, "
          f"peak RSS {max(r['rss_gb'] for r in base):.2f} GB; ratio {t_base / t_ours:.2f}x")


if __name__ == "__main__":
    main()
