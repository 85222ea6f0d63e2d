"""What ``wilddet report`` finds in the folders it is given.

Shapes: ``C`` classes.

Each RUN_OR_RESULT_DIR (or file) is searched (recursively, skipping ``checkpoints/`` and
``tensorboard/``) for:

- training runs: a folder with ``config.toml`` and ``metrics.jsonl`` (``wilddet train``);
- label analyses: ``class_stats.csv`` + ``confusion_pairs.csv`` (``wilddet analyze``);
- diagnoses: ``summary.json`` of ``wilddet diagnose`` (with ``errors.csv``, ``pr_curves.csv``);
- per-class AP logs: CSVs whose header starts ``label,name,ap,num_gt`` (``wilddet evaluate
  --out-csv``).

The AP columns of the report are the diagnoses found under an argument, or, when it holds none,
its per-class logs; in argument order, then path order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from wilddet.reports.analysis_files import CLASS_STATS_FILE, PAIRS_FILE
from wilddet.reports.csv_logs import PER_CLASS_COLUMNS

SKIP_DIRS = {"checkpoints", "tensorboard", ".wilddet-cache", "__pycache__"}
AP_HEADER = ",".join(PER_CLASS_COLUMNS[:4])  # label,name,ap,num_gt: a per-class AP log


@dataclass(frozen=True)
class Found:
    """Artefacts of all arguments, each list in argument then path order."""

    runs: list[Path] = field(default_factory=list)
    analyses: list[Path] = field(default_factory=list)
    diagnoses: list[Path] = field(default_factory=list)
    ap_logs: list[Path] = field(default_factory=list)

    @property
    def ap_sources(self) -> list[Path]:
        return self.diagnoses + self.ap_logs


def _is_ap_log(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.readline().startswith(AP_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def _is_diagnosis(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "false_positives" in doc and "delta_mAP" in doc


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        yield Path(dirpath), set(filenames)


def find_sources(paths: list[Path]) -> Found:
    """Search every path (module doc)."""
    found = Found()
    for root in paths:
        diagnoses, ap_logs = [], []
        if root.is_file():
            (ap_logs if _is_ap_log(root) else diagnoses if _is_diagnosis(root) else []).append(
                root if root.suffix == ".csv" else root.parent)
        for folder, files in (_walk(root) if root.is_dir() else []):
            if {"config.toml", "metrics.jsonl"} <= files:
                found.runs.append(folder)
            if {CLASS_STATS_FILE, PAIRS_FILE} <= files:
                found.analyses.append(folder)
            if "summary.json" in files and _is_diagnosis(folder / "summary.json"):
                diagnoses.append(folder)
            ap_logs += [folder / f for f in sorted(files)
                        if f.endswith(".csv") and f not in (CLASS_STATS_FILE, PAIRS_FILE)
                        and _is_ap_log(folder / f)]
        found.diagnoses.extend(diagnoses)
        if not diagnoses:
            found.ap_logs.extend(ap_logs)
    return found


def source_names(paths: list[Path]) -> list[str]:
    """Short unique names: the last path part (stem for files), more parts when needed."""
    def name(p: Path, depth: int) -> str:
        parts = (p.parent / p.stem).parts if p.suffix else p.parts
        return "/".join(parts[-depth:])

    for depth in range(1, 6):
        names = [name(p, depth) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [f"{k}:{name(p, 2)}" for k, p in enumerate(paths)]


__all__ = ["Found", "find_sources", "source_names"]
