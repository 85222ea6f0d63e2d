"""Atomic training checkpoints and exact resume.

A checkpoint ``RUN_DIR/checkpoints/iter_<8 digits>.pt`` (the iteration count done) holds:

- ``model``, ``optimizer``, ``lr_scheduler``, ``grad_scaler`` state dicts;
- ``schedule``: the sampler schedule's state (batches are a function of it and the iteration);
- ``rng``: per-rank RNG states (torch CPU, CUDA, numpy, python) — RoI/anchor subsampling draws
  from torch's global generator, so exact resume needs them;
- ``iteration``, ``fingerprint`` (``config.fingerprint``), ``config`` (dict), ``classes``
  (labels, names), ``rate`` ([K, K] float32 or None), ``hierarchy`` (ancestor lists or None),
  ``world_size``, ``format_version``.

Everything is plain Python / tensors, so ``torch.load(weights_only=True)`` reads it. Files are
written to a temporary name and renamed (``fileio.atomic_path``): a killed run leaves either the
previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from wilddet.errors import InputError
from wilddet.fileio import atomic_path

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^iter_(\d{8})\.pt$")


def checkpoint_path(run_dir: str | os.PathLike, iteration: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"iter_{iteration:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoints of a run, newest (highest iteration) first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` atomically (temp file + rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint; a missing, truncated or foreign file raises ``InputError``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise InputError(path, f"not a readable wilddet checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise InputError(path, "not a wilddet checkpoint (format_version missing or different)")
    return state


def latest_valid_checkpoint(run_dir: str | os.PathLike) -> tuple[Path, dict] | None:
    """The newest checkpoint of ``run_dir`` that loads; unreadable ones are skipped (logged)."""
    for path in list_checkpoints(run_dir):
        try:
            return path, load_checkpoint(path)
        except InputError as e:
            log.warning("skipping %s", e)
    return None


def check_fingerprint(state: dict, fingerprint: str, path: str | os.PathLike) -> None:
    """Refuse a checkpoint written under another config (one line, naming the file)."""
    if state.get("fingerprint") != fingerprint:
        raise InputError(path, f"checkpoint belongs to another config (fingerprint "
                         f"{state.get('fingerprint')}, this config {fingerprint}); resume with "
                         "the run's own config.toml or train into a new --out")


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (keep=0: keep all)."""
    if keep <= 0:
        return
    for old in list_checkpoints(run_dir)[keep:]:
        old.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# RNG states (weights_only-safe containers)


def capture_rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": _to_lists(random.getstate()),
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_to_tuples(state["python"]))


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
