"""Shared by the benchmarks: an Open Images-scale synthetic annotation file, made once in /tmp."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(os.environ.get("WILDDET_BENCH_DIR", "/tmp/wilddet-bench"))


def oid_scale_dataset(train_images: int = 1_700_000, objects_per_image: float = 7.95) -> Path:
    """Folder of ``wilddet synth --no-images`` at challenge-train scale (~14.6M box rows by
    default). Generated on first use (about a minute), reused afterwards."""
    out = BENCH_DIR / f"synth-{train_images}-{objects_per_image}"
    if not (out / "train-annotations-bbox.csv").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "wilddet", "synth", str(out), "--no-images",
                        "--train-images", str(train_images), "--val-images", "1000",
                        "--objects-per-image", str(objects_per_image)], check=True)
    return out
