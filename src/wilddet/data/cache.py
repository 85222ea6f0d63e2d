"""Memory-mapped columnar cache of a box-annotation CSV, shared by every rank and worker.

Shapes: ``N`` box rows, ``I`` images, ``C`` classes, ``P`` unique (image, class) pairs.

Why: at Open Images scale (14.6M boxes) a per-process copy of the annotations costs hundreds of MB
per DataLoader worker and per rank (mmdetection's Open Images configs fall back to
``num_workers=0`` for that reason). Here the CSV is parsed once (``oid_csv.read_boxes``) into
``.npy`` files that every process opens with ``np.load(mmap_mode="r")``: the pages live once in
the OS page cache, and each process only maps them.

Layout: ``<cache root>/<csv name>-<key>/`` holds

- ``image_codes [N] int32``, ``label_codes [N] int32``, ``boxes_norm [N, 4] float32``
  (xmin, ymin, xmax, ymax), ``is_group_of [N] bool`` (rows in file order);
- ``image_ids [I] |S<w>`` (UTF-8 bytes, sorted, so ``image_code`` is a binary search);
- ``row_order [N] int64``, ``row_offsets [I+1] int64``: rows of image i are
  ``row_order[row_offsets[i]:row_offsets[i+1]]`` (``records.rows_by_image``);
- the ``data.class_index.ClassImageIndex`` CSRs (``image_offsets``, ``image_classes``,
  ``class_offsets``, ``class_images``);
- ``meta.json`` (version, source file, counts, class-list hash).

``key`` hashes the CSV's absolute path, size and mtime, the class list and the format version,
so an edited CSV or another class file gets a new cache. The cache root is ``cache_dir`` or
``.wilddet-cache/`` beside the CSV (``~/.cache/wilddet`` when that folder is read-only).
Building is atomic (a temporary folder renamed into place)
and serialised by an ``fcntl`` lock, so when several ranks start at once one builds and the
others wait, then all map the same files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from wilddet.data.class_index import ClassImageIndex
from wilddet.data.records import BoxTable, ClassList, rows_by_image
from wilddet.errors import InputError

log = logging.getLogger(__name__)

CACHE_VERSION = 1
_ARRAYS = ("image_codes", "label_codes", "boxes_norm", "is_group_of", "image_ids", "row_order",
           "row_offsets", "image_offsets", "image_classes", "class_offsets", "class_images")


class BoxCache:
    """Columnar boxes of one split, memory-mapped (or in memory via ``from_table``).

    Pickling keeps only the folder, and unpickling maps it again, so a ``Dataset`` holding a
    cache is cheap to send to spawned workers and never copies the arrays.
    """

    def __init__(self, directory: str | os.PathLike | None, arrays: dict[str, np.ndarray],
                 num_classes: int):
        self.directory = None if directory is None else Path(directory)
        self.num_classes = int(num_classes)
        for name in _ARRAYS:
            setattr(self, name, arrays[name])

    image_codes: np.ndarray
    label_codes: np.ndarray
    boxes_norm: np.ndarray
    is_group_of: np.ndarray
    image_ids: np.ndarray
    row_order: np.ndarray
    row_offsets: np.ndarray
    image_offsets: np.ndarray
    image_classes: np.ndarray
    class_offsets: np.ndarray
    class_images: np.ndarray

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | os.PathLike) -> BoxCache:
        """Map a built cache folder read-only."""
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
        return cls(directory, arrays, meta["num_classes"])

    @classmethod
    def from_table(cls, table: BoxTable, num_classes: int) -> BoxCache:
        """An in-memory cache of ``table`` (tests, small splits); image IDs are re-coded sorted."""
        return cls(None, _columns(table, num_classes), num_classes)

    def __getstate__(self):
        if self.directory is None:
            return {"directory": None, "num_classes": self.num_classes,
                    "arrays": {name: getattr(self, name) for name in _ARRAYS}}
        return {"directory": str(self.directory)}

    def __setstate__(self, state):
        if state["directory"] is None:
            self.__init__(None, state["arrays"], state["num_classes"])
        else:
            self.__dict__.update(BoxCache.open(state["directory"]).__dict__)

    # -- queries ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.label_codes)

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    def image_id(self, code: int) -> str:
        return bytes(self.image_ids[code]).decode("utf-8")

    def image_code(self, image_id: str) -> int:
        """Code of ``image_id``, or -1 if it has no boxes here (binary search, O(log I))."""
        raw = image_id.encode("utf-8")
        if len(raw) > self.image_ids.dtype.itemsize:
            return -1
        key = np.asarray(raw, dtype=self.image_ids.dtype)
        pos = int(np.searchsorted(self.image_ids, key))
        return pos if pos < len(self.image_ids) and self.image_ids[pos] == key else -1

    def rows(self, code: int) -> np.ndarray:
        """Row numbers of image ``code`` in file order ([n] int64)."""
        return np.asarray(self.row_order[self.row_offsets[code]:self.row_offsets[code + 1]])

    def class_image_index(self):
        """The samplers' ``ClassImageIndex`` over these images (raw, not hierarchy-expanded),
        backed by the mapped arrays."""
        return ClassImageIndex(self.num_images, self.num_classes, self.image_offsets,
                               self.image_classes, self.class_offsets, self.class_images)


def _columns(table: BoxTable, num_classes: int) -> dict[str, np.ndarray]:
    """All cached arrays of ``table`` with the image vocabulary re-coded in sorted order."""
    ids = np.asarray([str(s).encode("utf-8") for s in table.image_ids], dtype=bytes)
    if len(ids) == 0:
        ids = np.zeros(0, dtype="S1")
    order = np.argsort(ids, kind="stable")  # new code k is old code order[k]
    remap = np.empty(len(ids), dtype=np.int32)
    remap[order] = np.arange(len(ids), dtype=np.int32)
    image_codes = remap[table.image_codes] if len(table) else np.zeros(0, np.int32)
    row_order, row_offsets = rows_by_image(image_codes, len(ids))
    index = ClassImageIndex.from_codes(image_codes, table.label_codes, len(ids), num_classes)
    return {"image_codes": image_codes.astype(np.int32),
            "label_codes": np.asarray(table.label_codes, np.int32),
            "boxes_norm": np.asarray(table.boxes_norm, np.float32),
            "is_group_of": np.asarray(table.is_group_of, bool),
            "image_ids": ids[order], "row_order": row_order, "row_offsets": row_offsets,
            "image_offsets": index.image_offsets, "image_classes": index.image_classes,
            "class_offsets": index.class_offsets, "class_images": index.class_images}


def cache_key(csv_path: Path, classes: ClassList) -> str:
    """16 hex of sha256(version, absolute path, size, mtime_ns, class labels)."""
    st = csv_path.stat()
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{csv_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|".encode())
    h.update("\n".join(map(str, classes.labels)).encode())
    return h.hexdigest()[:16]


def _cache_root(csv_path: Path, cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir``, else ``.wilddet-cache/`` beside the CSV, else (read-only dataset folder)
    ``$XDG_CACHE_HOME/wilddet`` (default ``~/.cache/wilddet``)."""
    if cache_dir:
        root = Path(cache_dir)
        root.mkdir(parents=True, exist_ok=True)
        return root
    root = csv_path.parent / ".wilddet-cache"
    try:
        root.mkdir(exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    fallback = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wilddet"
    fallback.mkdir(parents=True, exist_ok=True)
    log.info("%s is not writable; annotation cache in %s", csv_path.parent, fallback)
    return fallback


@contextlib.contextmanager
def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_box_cache(csv_path: str | os.PathLike, classes: ClassList, *,
                   cache_dir: str | os.PathLike | None = None) -> BoxCache:
    """Map the cache of box CSV ``csv_path`` read with ``classes``, building it first if needed.

    Bad input in the CSV raises ``InputError`` (from ``oid_csv.read_boxes``) and leaves no cache.
    A ``.json`` path is a COCO / LVIS ground truth (``data.coco.split.json_boxes``).
    Safe to call from many processes at once: one builds under a file lock, the others wait.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError(csv_path, "file not found")
    root = _cache_root(csv_path, cache_dir)
    name = f"{csv_path.name}-{cache_key(csv_path, classes)}"
    final = root / name
    if not (final / "meta.json").is_file():
        with _locked(root / f"{csv_path.name}.lock"):
            if not (final / "meta.json").is_file():  # another process may have built it
                _build(csv_path, classes, root, final)
    return BoxCache.open(final)


def _build(csv_path: Path, classes: ClassList, root: Path, final: Path) -> None:
    from wilddet.data.oid_csv import read_boxes

    start = time.perf_counter()
    if csv_path.suffix.lower() == ".json":  # data.format coco|lvis: the same cache
        from wilddet.data.coco.split import json_boxes

        table = json_boxes(csv_path, classes)
    else:
        table = read_boxes(csv_path, classes)
    arrays = _columns(table, len(classes))
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for key, arr in arrays.items():
            np.save(tmp / f"{key}.npy", np.ascontiguousarray(arr))
        meta = {"version": CACHE_VERSION, "source": str(csv_path.resolve()),
                "num_rows": len(table), "num_images": len(arrays["image_ids"]),
                "num_classes": len(classes),
                "classes_sha256": hashlib.sha256(
                    "\n".join(map(str, classes.labels)).encode()).hexdigest()}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(tmp, final)  # atomic: readers see the whole folder or nothing
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Older caches of the same CSV are stale (a process still mapping one keeps its pages);
    # caches of other CSVs with the same name, in a shared cache folder, are left alone.
    source = str(csv_path.resolve())
    for old in root.glob(f"{csv_path.name}-*"):
        if old == final or not old.is_dir():
            continue
        try:
            same = json.loads((old / "meta.json").read_text())["source"] == source
        except (OSError, ValueError, KeyError):
            continue
        if same:
            shutil.rmtree(old, ignore_errors=True)
    log.info("built annotation cache %s (%d rows, %.1f s)", final, len(table),
             time.perf_counter() - start)
    del table, arrays
    _release_parser_memory()


def _release_parser_memory() -> None:
    """Hand the CSV parser's freed buffers back to the OS. pyarrow's allocator keeps them
    (~1.8 GB after 14.6M rows), and every DataLoader worker forked later would inherit them
    as private memory."""
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
