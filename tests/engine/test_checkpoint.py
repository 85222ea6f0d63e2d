"""Atomic checkpoints: newest valid one found, corrupt ones skipped, foreign configs refused."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from wilddet.engine.checkpoint import (
    FORMAT_VERSION,
    capture_rng_state,
    check_fingerprint,
    checkpoint_path,
    latest_valid_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
)
from wilddet.errors import InputError


def _state(it):
    return {"format_version": FORMAT_VERSION, "iteration": it, "fingerprint": "abc",
            "model": {"w": torch.full((2,), float(it))}, "rng": [capture_rng_state()]}


def test_newest_valid_checkpoint_skips_a_corrupt_one(tmp_path):
    for it in (5, 10, 15):
        save_checkpoint(checkpoint_path(tmp_path, it), _state(it))
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "iter_00000015.pt", "iter_00000010.pt", "iter_00000005.pt"]
    checkpoint_path(tmp_path, 20).write_bytes(b"\x80\x02 truncated")  # e.g. a foreign write
    path, state = latest_valid_checkpoint(tmp_path)
    assert path.name == "iter_00000015.pt" and state["iteration"] == 15
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))  # no temp files left
    assert latest_valid_checkpoint(tmp_path / "none") is None


def test_failed_save_leaves_no_file(tmp_path):
    class Boom:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        save_checkpoint(checkpoint_path(tmp_path, 1), {"x": Boom()})
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_prune_keeps_the_newest(tmp_path):
    for it in (1, 2, 3, 4):
        save_checkpoint(checkpoint_path(tmp_path, it), _state(it))
    prune_checkpoints(tmp_path, 2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["iter_00000004.pt",
                                                            "iter_00000003.pt"]


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "x.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(InputError, match="not a wilddet checkpoint") as err:
        load_checkpoint(other)
    assert err.value.path == str(other)
    with pytest.raises(InputError) as err:
        check_fingerprint({"fingerprint": "aaa"}, "bbb", other)
    assert "another config" in str(err.value) and str(err.value).count("\n") == 0


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    save_checkpoint(tmp_path / "c.pt", {"format_version": FORMAT_VERSION,
                                        "rng": capture_rng_state()})
    expect = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1])
    assert expect[2] == got[2]
