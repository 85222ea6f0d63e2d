"""torch Dataset over an image folder + the memory-mapped annotation cache."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from wilddet.data.cache import BoxCache, open_box_cache
from wilddet.data.dataset import (
    DetectionDataset,
    ImageFolderDataset,
    collate_detection,
    read_image_list,
    unpack_batch,
)
from wilddet.data.oid_csv import read_boxes, read_classes
from wilddet.data.synthetic import SynthConfig, write_dataset
from wilddet.errors import InputError


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "d"
    write_dataset(root, SynthConfig(train_images=24, val_images=4, classes=6, image_size=48,
                                    objects_per_image=3, group_of_rate=0.3, seed=1))
    return root


@pytest.fixture
def data(synth, tmp_path):
    classes = read_classes(synth / "class-descriptions.csv")
    cache = open_box_cache(synth / "train-annotations-bbox.csv", classes, cache_dir=tmp_path / "c")
    return classes, cache, DetectionDataset(synth / "train", cache)


def test_targets_match_the_csv(synth, data):
    classes, _, ds = data
    df = pd.read_csv(synth / "train-annotations-bbox.csv", dtype={"ImageID": str})
    assert len(ds) == df.ImageID.nunique()
    seen_group = False
    for i in range(len(ds)):
        image, target = ds[i]
        rows = df[df.ImageID == target["image_id"]]  # independent: pandas + arithmetic
        h, w = image.shape[1:]
        assert image.dtype == torch.float32 and image.shape[0] == 3 and 0 <= image.min() <= 1
        assert target["size"] == (h, w) == (48, 48)
        expect = np.stack([rows.XMin * w, rows.YMin * h, rows.XMax * w, rows.YMax * h], 1)
        assert target["boxes"].dtype == torch.float32
        np.testing.assert_allclose(target["boxes"].numpy(), expect, rtol=1e-5, atol=1e-4)
        labels = [classes.index[lab] + 1 for lab in rows.LabelName]
        assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == labels
        assert target["is_group_of"].tolist() == (rows.IsGroupOf == 1).tolist()
        seen_group |= bool(target["is_group_of"].any())
    assert seen_group


def test_cache_is_memory_mapped_sorted_and_agrees_with_reader(synth, data, tmp_path):
    classes, cache, _ = data
    assert isinstance(cache.label_codes, np.memmap) and isinstance(cache.boxes_norm, np.memmap)
    table = read_boxes(synth / "train-annotations-bbox.csv", classes)
    ids = [cache.image_id(k) for k in range(cache.num_images)]
    assert ids == sorted(ids) == sorted(table.image_ids)
    np.testing.assert_array_equal(cache.label_codes, table.label_codes)
    np.testing.assert_array_equal(cache.boxes_norm, table.boxes_norm)
    for k, image_id in enumerate(ids):  # rows(k) are the reader's rows of that image, file order
        expect = np.flatnonzero(table.image_ids[table.image_codes] == image_id)
        np.testing.assert_array_equal(cache.rows(k), expect)
        assert cache.image_code(image_id) == k
    assert cache.image_code("no-such-image") == -1 and cache.image_code("x" * 99) == -1
    index = cache.class_image_index()
    assert index.images_per_class.sum() == len({(i, c) for i, c in zip(
        cache.image_codes.tolist(), cache.label_codes.tolist())})


def test_cache_is_reused_and_rebuilt_when_the_csv_changes(synth, tmp_path):
    classes = read_classes(synth / "class-descriptions.csv")
    csv = tmp_path / "boxes.csv"
    csv.write_bytes((synth / "train-annotations-bbox.csv").read_bytes())
    first = open_box_cache(csv, classes)
    assert first.directory.parent == tmp_path / ".wilddet-cache"
    stamp = (first.directory / "meta.json").stat().st_mtime_ns
    assert open_box_cache(csv, classes).directory == first.directory
    assert (first.directory / "meta.json").stat().st_mtime_ns == stamp  # not rebuilt
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-1]) + "\n")  # drop one row
    os.utime(csv, ns=(time.time_ns() + 10**9,) * 2)
    second = open_box_cache(csv, classes)
    assert second.directory != first.directory and len(second) == len(first) - 1
    assert not first.directory.exists()  # stale cache removed
    assert not list((tmp_path / ".wilddet-cache").glob(".*tmp*"))


def _open_in_child(args):
    csv, classes_path, cache_dir = args
    cache = open_box_cache(csv, read_classes(classes_path), cache_dir=cache_dir)
    return str(cache.directory), int(cache.label_codes.sum())


def test_concurrent_processes_build_one_cache(synth, tmp_path):
    args = (synth / "train-annotations-bbox.csv", synth / "class-descriptions.csv",
            tmp_path / "shared")
    with mp.get_context("fork").Pool(3) as pool:
        results = pool.map(_open_in_child, [args] * 3)
    assert len(set(results)) == 1
    entries = [p.name for p in (tmp_path / "shared").iterdir()]
    assert sum(not n.endswith(".lock") for n in entries) == 1, entries


def test_pickled_dataset_carries_only_paths(data):
    _, _, ds = data
    blob = pickle.dumps(ds)
    assert len(blob) < 4000  # the arrays are re-mapped, not copied
    again = pickle.loads(blob)
    assert isinstance(again.boxes.boxes_norm, np.memmap)
    a, b = ds[3], again[3]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])


def test_in_memory_cache_and_image_list(synth, data):
    classes, cache, _ = data
    table = read_boxes(synth / "train-annotations-bbox.csv", classes)
    mem = BoxCache.from_table(table, len(classes))
    ids = [cache.image_id(5), cache.image_id(0)]
    ds = DetectionDataset(synth / "train", mem, image_ids=ids, uint8=True)
    image, target = ds[0]
    assert image.dtype == torch.uint8 and target["image_id"] == ids[0]
    np.testing.assert_array_equal(target["boxes"], DetectionDataset(synth / "train", cache)[5][1]
                                  ["boxes"])


def test_listed_image_without_boxes_has_empty_target(synth, data):
    _, cache, _ = data
    val_id = (synth / "val-image-ids.txt").read_text().split()[0]
    ds = DetectionDataset(synth / "val", cache, image_ids=[val_id])
    _, target = ds[0]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_degenerate_boxes_dropped_on_request(synth, tmp_path):
    classes = read_classes(synth / "class-descriptions.csv")
    csv = tmp_path / "b.csv"
    text = (synth / "train-annotations-bbox.csv").read_text().splitlines()
    header, first = text[0], text[1].split(",")
    first[4] = first[5]  # XMin = XMax
    csv.write_text(header + "\n" + ",".join(first) + "\n")
    cache = open_box_cache(csv, classes)
    assert len(DetectionDataset(synth / "train", cache)[0][1]["boxes"]) == 1
    assert len(DetectionDataset(synth / "train", cache, drop_degenerate=True)[0][1]["boxes"]) == 0


def test_missing_and_unreadable_images_name_the_file(synth, data, tmp_path):
    _, cache, _ = data
    folder = tmp_path / "imgs"
    folder.mkdir()
    first, second = cache.image_id(0), cache.image_id(1)
    (folder / f"{second}.jpg").write_bytes(b"not a jpeg at all")
    ds = DetectionDataset(folder, cache)
    with pytest.raises(InputError) as err:
        ds[0]
    assert err.value.path == str(folder / f"{first}.jpg") and "not found" in str(err.value)
    with pytest.raises(InputError, match="unreadable image") as err:
        ds[1]
    assert err.value.path == str(folder / f"{second}.jpg")
    # inside a worker process the error travels back and is raised in the main process
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate_detection)
    with pytest.raises(InputError) as err:
        for batch in loader:
            unpack_batch(batch)
    assert err.value.path == str(folder / f"{first}.jpg")
    with pytest.raises(InputError, match="image folder not found"):
        DetectionDataset(tmp_path / "nope", cache)


def test_bad_csv_leaves_no_cache(synth, tmp_path):
    classes = read_classes(synth / "class-descriptions.csv")
    csv = tmp_path / "bad.csv"
    lines = (synth / "train-annotations-bbox.csv").read_text().splitlines()
    row = lines[2].split(",")
    row[5] = "1.7"  # XMax out of range
    csv.write_text("\n".join([lines[0], lines[1], ",".join(row)]) + "\n")
    with pytest.raises(InputError) as err:
        open_box_cache(csv, classes, cache_dir=tmp_path / "c")
    assert err.value.line == 3 and err.value.field == "XMax"
    assert not [p for p in (tmp_path / "c").iterdir() if not p.name.endswith(".lock")]
    with pytest.raises(InputError, match="file not found"):
        open_box_cache(tmp_path / "none.csv", classes)


def test_image_folder_dataset_and_image_list(synth, tmp_path):
    ds = ImageFolderDataset(synth / "val")
    assert len(ds) == 4 and ds.image_ids == sorted(ds.image_ids)
    image, info = ds[0]
    assert image.shape == (3, 48, 48) and info["size"] == (48, 48)
    lst = tmp_path / "ids.txt"
    lst.write_text(f"{ds.image_ids[2]}.jpg\n\n{ds.image_ids[1]}\n")
    assert read_image_list(lst) == [ds.image_ids[2], ds.image_ids[1]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .jpg"):
        ImageFolderDataset(tmp_path / "empty")


def test_shared_cache_dir_keeps_caches_of_other_csvs_with_the_same_name(synth, tmp_path):
    classes = read_classes(synth / "class-descriptions.csv")
    caches = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        csv = tmp_path / name / "train-annotations-bbox.csv"
        csv.write_bytes((synth / "train-annotations-bbox.csv").read_bytes())
        caches.append(open_box_cache(csv, classes, cache_dir=tmp_path / "shared"))
    assert caches[0].directory != caches[1].directory
    assert all((c.directory / "meta.json").is_file() for c in caches)


def test_worker_batches_equal_in_process_batches(data):
    _, _, ds = data
    kw = {"batch_size": 3, "collate_fn": collate_detection}
    direct = [unpack_batch(b) for b in DataLoader(ds, num_workers=0, **kw)]
    workers = [unpack_batch(b) for b in DataLoader(ds, num_workers=2, **kw)]
    assert len(direct) == len(workers)
    for (im_a, t_a), (im_b, t_b) in zip(direct, workers):
        assert all(torch.equal(a, b) for a, b in zip(im_a, im_b))
        for a, b in zip(t_a, t_b):
            assert a.keys() == b.keys() and a["image_id"] == b["image_id"]
            for key in ("boxes", "labels", "is_group_of"):
                assert isinstance(b[key], torch.Tensor) and torch.equal(a[key], b[key])
