"""Sharded evaluation: 2 gloo processes each predict every 2nd val image, rank 0 gathers; the
gathered detections and the mAP equal one process evaluating the whole split."""

from __future__ import annotations

import pickle
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from engine_helpers import tiny_config

from wilddet.data.records import BoxTable
from wilddet.engine.builders import build_detector, load_meta
from wilddet.engine.evaluate import (
    evaluate_split,
    evaluate_split_sharded,
    merge_shards,
    shard_image_ids,
)

# eval.batch_size = 1: every image is its own forward pass in both runs, so the comparison is
# exact up to float noise; 5 of the 6 val images: shards of 3 and 2
SETTINGS = ["eval.batch_size=1", "eval.max_images=5", "train.num_threads=1"]


def _model(config):
    torch.manual_seed(0)
    return build_detector(config.model, load_meta(config)).eval()


def _rank_main(rank: int, world_size: int, port: int, config, out_path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        result = evaluate_split_sharded(_model(config), config, load_meta(config),
                                        max_images=config.eval.max_images)
        if rank == 0:
            with open(out_path, "wb") as f:
                pickle.dump((result.detections, result.mean_ap, result.image_ids), f)
        else:
            assert result is None
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_gather_what_one_process_predicts(tiny_data, tmp_path):
    config = tiny_config(tiny_data, *SETTINGS)
    out = tmp_path / "rank0.pkl"
    mp.spawn(_rank_main, args=(2, _free_port(), config, str(out)), nprocs=2, join=True)
    with open(out, "rb") as f:
        gathered, gathered_map, ids = pickle.load(f)

    single = evaluate_split(_model(config), config, load_meta(config),
                            max_images=config.eval.max_images)
    ref = single.detections
    assert ids == single.image_ids and len(ids) == 5
    assert len(ref) > 0  # an untrained detector still returns boxes above 0.01
    assert list(gathered.image_ids) == list(ref.image_ids)
    np.testing.assert_array_equal(gathered.image_codes, ref.image_codes)
    np.testing.assert_array_equal(gathered.label_codes, ref.label_codes)
    np.testing.assert_allclose(gathered.boxes_norm, ref.boxes_norm, atol=1e-5)
    np.testing.assert_allclose(gathered.scores, ref.scores, atol=1e-6)
    assert gathered_map == pytest.approx(single.mean_ap, abs=1e-9)


def _table(codes, labels, image_ids):
    n = len(codes)
    return BoxTable(np.asarray(codes, np.int32), np.asarray(labels, np.int32),
                    np.tile(np.asarray(labels, np.float32)[:, None] / 10, (1, 4)),
                    np.zeros(n, bool), np.asarray(image_ids, dtype=object),
                    np.asarray(labels, np.float32))


def test_shards_and_merge_by_hand():
    ids = ["a", "b", "c", "d", "e"]
    assert [shard_image_ids(ids, r, 3) for r in range(3)] == [["a", "d"], ["b", "e"], ["c"]]
    assert sum(len(shard_image_ids(ids, r, 7)) for r in range(7)) == 5
    with pytest.raises(ValueError):
        shard_image_ids(ids, 2, 2)
    # rank 0 holds a (2 rows), c, e (1 row); rank 1 holds b (none), d (2 rows)
    shard0 = _table([0, 0, 1, 2], [1, 2, 3, 5], ["a", "c", "e"])
    shard1 = _table([1, 1], [4, 6], ["b", "d"])
    merged = merge_shards([shard0, shard1], ids)
    assert list(merged.image_ids) == ids
    assert merged.image_codes.tolist() == [0, 0, 2, 3, 3, 4]  # a, a, c, d, d, e
    assert merged.label_codes.tolist() == [1, 2, 3, 4, 6, 5]
    np.testing.assert_allclose(merged.scores, [1, 2, 3, 4, 6, 5])
    with pytest.raises(ValueError, match="shard 1"):
        merge_shards([shard0, _table([0], [1], ["b"])], ids)
