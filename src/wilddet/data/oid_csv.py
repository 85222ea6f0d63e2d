"""Read, validate and write the Open Images CSV files (metric spec §1), columnar and fast.

Shapes: ``N`` box rows, ``L`` image-label rows, ``I`` images, ``C`` classes.

Files are read by column name with pyarrow's multithreaded CSV reader (14.6M box rows in seconds);
strings become integer codes at once so that nothing per-row stays a Python object. Every check
runs vectorised; on failure the first offending row is located and reported as
``file:line: field: message`` (line 1 is the header).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from wilddet.data.records import BoxTable, ClassList, ImageLabelTable
from wilddet.errors import InputError
from wilddet.fileio import atomic_path

log = logging.getLogger(__name__)

BOX_COLUMNS_SHORT = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf")
LABEL_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence")
DETECTION_COLUMNS = ("ImageID", "LabelName", "Score", "XMin", "XMax", "YMin", "YMax")
KAGGLE_COLUMNS = ("ImageId", "PredictionString")
_COORDS = ("XMin", "YMin", "XMax", "YMax")  # the order of boxes_norm's columns


# ----------------------------------------------------------------------------------------------
# reading helpers


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    return path


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        first = f.readline()
    if not first.strip():
        raise InputError(path, "empty file: expected a header line", line=1)
    return next(csv.reader([first]))


def _require_columns(path: Path, header: list[str], required: tuple[str, ...]) -> None:
    for col in required:
        if col not in header:
            raise InputError(path, f"missing column; the header has {','.join(header)} "
                             f"but needs {','.join(required)}", line=1, field=col)


def _read_table(path: Path, columns: dict[str, pa.DataType]) -> pa.Table:
    """Read ``columns`` (name -> arrow type) by name. A value that does not convert raises
    InputError at its line."""
    opts = pcsv.ConvertOptions(column_types=columns, include_columns=list(columns),
                               strings_can_be_null=False)
    try:
        return pcsv.read_csv(path, read_options=pcsv.ReadOptions(use_threads=True,
                                                                 block_size=1 << 24),
                             convert_options=opts)
    except pa.ArrowInvalid as e:
        _locate_conversion_error(path, columns, e)
        raise InputError(path, f"cannot parse CSV: {e}") from None


def _locate_conversion_error(path: Path, columns: dict[str, pa.DataType], err: Exception) -> None:
    """Re-read the numeric columns as text to name the first value that is not a number."""
    as_text = {name: pa.string() for name in columns}
    try:
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            column_types=as_text, include_columns=list(columns)))
    except pa.ArrowInvalid as e2:  # structural problem (wrong number of fields, ...)
        raise InputError(path, f"malformed CSV: {e2}") from None
    for name, typ in columns.items():
        if pa.types.is_string(typ) or pa.types.is_dictionary(typ):
            continue
        text = table.column(name).to_pandas()
        numbers = pd.to_numeric(text, errors="coerce")
        bad = (numbers.isna() & text.notna() & (text.str.strip() != "")).to_numpy()
        if bad.any():
            row = _first_row(bad)
            raise InputError(path, f"{text.iloc[row]!r} is not a number", line=row + 2,
                             field=name)
    raise InputError(path, f"cannot parse CSV: {err}")


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_no_nulls(path: Path, table: pa.Table, names) -> None:
    for name in names:
        col = table.column(name)
        if col.null_count:
            row = _first_row(col.is_null().to_numpy(zero_copy_only=False))
            raise InputError(path, "missing value", line=row + 2, field=name)


def _codes(path: Path, column: pa.ChunkedArray, field: str) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary-encode a string column: (codes [N] int32, vocabulary [V] object str)."""
    encoded = column.combine_chunks().dictionary_encode() if column.num_chunks else \
        pa.array([], pa.string()).dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    vocab = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    return codes, vocab


def _label_codes(path: Path, column: pa.ChunkedArray, classes: ClassList,
                 field: str = "LabelName") -> np.ndarray:
    codes, vocab = _codes(path, column, field)
    lookup = np.array([classes.index.get(v, -1) for v in vocab], dtype=np.int32)
    out = lookup[codes] if len(codes) else np.zeros(0, np.int32)
    if (out < 0).any():
        row = _first_row(out < 0)
        raise InputError(path, f"unknown LabelName {vocab[codes[row]]!r} (not in the classes file)",
                         line=row + 2, field=field)
    return out


def _float_column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy().astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------
# readers


def read_classes(path: str | os.PathLike) -> ClassList:
    """``LabelName,DisplayName`` rows, no header (a ``LabelName,DisplayName`` header is skipped)."""
    path = _check_file(path)
    labels, names, seen = [], [], {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if line_no == 1 and row[0] == "LabelName":
                continue
            if len(row) < 2:
                raise InputError(path, "expected 2 fields LabelName,DisplayName", line=line_no,
                                 field="DisplayName")
            label = row[0].strip()
            if not label:
                raise InputError(path, "empty LabelName", line=line_no, field="LabelName")
            if label in seen:
                raise InputError(path, f"duplicate class {label!r} (first on line {seen[label]})",
                                 line=line_no, field="LabelName")
            seen[label] = line_no
            labels.append(label)
            names.append(",".join(row[1:]).strip())
    if not labels:
        raise InputError(path, "no classes in file")
    return ClassList(np.asarray(labels, dtype=object), np.asarray(names, dtype=object))


def read_boxes(path: str | os.PathLike, classes: ClassList) -> BoxTable:
    """Ground-truth boxes, 13-column or 7-column challenge format (by column name).

    Validates: numbers in every coordinate, 0 <= XMin <= XMax <= 1 and the same for Y, known
    LabelName. ``IsGroupOf``: any non-zero integer counts as group-of (as the reference casts it).
    """
    path = _check_file(path)
    header = _header(path)
    _require_columns(path, header, BOX_COLUMNS_SHORT)
    cols = {"ImageID": pa.string(), "LabelName": pa.string(),
            **{c: pa.float64() for c in _COORDS}, "IsGroupOf": pa.float64()}
    table = _read_table(path, cols)
    _check_no_nulls(path, table, cols)
    boxes = np.stack([_float_column(table, c) for c in _COORDS], axis=1)
    for c, name in enumerate(_COORDS):
        bad = (boxes[:, c] < 0) | (boxes[:, c] > 1) | np.isnan(boxes[:, c])
        if bad.any():
            row = _first_row(bad)
            raise InputError(path, f"{boxes[row, c]:g} not in [0, 1]", line=row + 2, field=name)
    for lo, hi, name in ((0, 2, "XMin"), (1, 3, "YMin")):
        bad = boxes[:, lo] > boxes[:, hi]
        if bad.any():
            row = _first_row(bad)
            other = "XMax" if name == "XMin" else "YMax"
            raise InputError(path, f"{boxes[row, lo]:g} > {other}={boxes[row, hi]:g}",
                             line=row + 2, field=name)
    group = table.column("IsGroupOf").to_numpy()
    if (group != np.round(group)).any():
        row = _first_row(group != np.round(group))
        raise InputError(path, f"{group[row]:g} is not an integer flag", line=row + 2,
                         field="IsGroupOf")
    labels = _label_codes(path, table.column("LabelName"), classes)
    images, image_ids = _codes(path, table.column("ImageID"), "ImageID")
    return BoxTable(images, labels, boxes, group != 0, image_ids)


def read_image_labels(path: str | os.PathLike, classes: ClassList) -> ImageLabelTable:
    """Human-verified image-level labels ``ImageID,[Source,]LabelName,Confidence``; a header-only
    file is an empty table. Confidence must be 0 or 1."""
    path = _check_file(path)
    header = _header(path)
    _require_columns(path, header, ("ImageID", "LabelName", "Confidence"))
    cols = {"ImageID": pa.string(), "LabelName": pa.string(), "Confidence": pa.float64()}
    table = _read_table(path, cols)
    _check_no_nulls(path, table, cols)
    conf = table.column("Confidence").to_numpy()
    bad = (conf != 0) & (conf != 1)
    if bad.any():
        row = _first_row(bad)
        raise InputError(path, f"{conf[row]:g} is not 0 or 1", line=row + 2, field="Confidence")
    labels = _label_codes(path, table.column("LabelName"), classes)
    images, image_ids = _codes(path, table.column("ImageID"), "ImageID")
    return ImageLabelTable(images, labels, conf.astype(np.int8), image_ids)


BOX_ATTRIBUTE_COLUMNS = ("Source", "Confidence", "IsOccluded", "IsTruncated", "IsDepiction",
                         "IsInside")


def read_attribute_columns(path: str | os.PathLike,
                           names: tuple[str, ...] = BOX_ATTRIBUTE_COLUMNS,
                           float_columns: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The columns of ``names`` the file has, in row order: ``Source`` as str (object array),
    ``float_columns`` as float64 (e.g. the coordinates at full precision), the others as int64
    (an OID flag may be -1, unknown). Call after the file's reader validated it; a value that
    is not an integer raises InputError at its line."""
    path = _check_file(path)
    header = _header(path)
    present = [n for n in names if n in header]
    if not present:
        return {}
    cols = {n: pa.string() if n == "Source" else pa.float64() for n in present}
    table = _read_table(path, cols)
    _check_no_nulls(path, table, cols)
    out: dict[str, np.ndarray] = {}
    for n in present:
        if n == "Source":
            out[n] = np.asarray(table.column(n).to_pylist(), dtype=object)
            continue
        values = table.column(n).to_numpy()
        if n in float_columns:
            out[n] = values
            continue
        if (values != np.round(values)).any():
            row = _first_row(values != np.round(values))
            raise InputError(path, f"{values[row]:g} is not an integer", line=row + 2, field=n)
        out[n] = values.astype(np.int64)
    return out


def read_detections(path: str | os.PathLike, classes: ClassList) -> BoxTable:
    """Detections: ``ImageID,LabelName,Score,XMin,XMax,YMin,YMax`` or the Kaggle submission
    ``ImageId,PredictionString`` ("LabelName Score XMin YMin XMax YMax ..."). Coordinates are not
    range-checked (the metric drops inverted boxes itself) but must be numbers."""
    path = _check_file(path)
    header = _header(path)
    if "PredictionString" in header:
        return _read_kaggle(path, header, classes)
    _require_columns(path, header, DETECTION_COLUMNS)
    cols = {"ImageID": pa.string(), "LabelName": pa.string(), "Score": pa.float64(),
            **{c: pa.float64() for c in _COORDS}}
    table = _read_table(path, cols)
    _check_no_nulls(path, table, cols)
    boxes = np.stack([_float_column(table, c) for c in _COORDS], axis=1)
    labels = _label_codes(path, table.column("LabelName"), classes)
    images, image_ids = _codes(path, table.column("ImageID"), "ImageID")
    scores = _float_column(table, "Score")
    return BoxTable(images, labels, boxes, np.zeros(len(labels), bool), image_ids, scores)


def _read_kaggle(path: Path, header: list[str], classes: ClassList) -> BoxTable:
    _require_columns(path, header, KAGGLE_COLUMNS)
    table = _read_table(path, {"ImageId": pa.string(), "PredictionString": pa.string()})
    image_col = table.column("ImageId").to_pylist()
    preds = table.column("PredictionString").to_pylist()
    vocab: dict[str, int] = {}
    images, labels, values = [], [], []
    for row, (image_id, text) in enumerate(zip(image_col, preds)):
        code = vocab.setdefault(image_id, len(vocab))
        tokens = (text or "").split()
        if len(tokens) % 6:
            raise InputError(path, f"{len(tokens)} tokens; expected groups of 6 "
                             "'LabelName Score XMin YMin XMax YMax'", line=row + 2,
                             field="PredictionString")
        for k in range(0, len(tokens), 6):
            label = tokens[k]
            if label not in classes.index:
                raise InputError(path, f"unknown LabelName {label!r} (not in the classes file)",
                                 line=row + 2, field="PredictionString")
            try:
                values.append([float(t) for t in tokens[k + 1:k + 6]])
            except ValueError:
                raise InputError(path, f"non-numeric value in {' '.join(tokens[k:k + 6])!r}",
                                 line=row + 2, field="PredictionString") from None
            labels.append(classes.index[label])
            images.append(code)
    arr = np.asarray(values, dtype=np.float64).reshape(-1, 5)
    # Kaggle order: Score XMin YMin XMax YMax == our boxes_norm order after the score.
    return BoxTable(np.asarray(images, np.int32), np.asarray(labels, np.int32),
                    arr[:, 1:5].astype(np.float32), np.zeros(len(labels), bool),
                    np.asarray(list(vocab), dtype=object), arr[:, 0].astype(np.float32))


def align_images(*tables):
    """Re-code tables (BoxTable / ImageLabelTable / None) onto one shared image-ID vocabulary,
    sorted by ImageID (the order the reference evaluator visits images). Returns the tables in
    the same order; ``None`` passes through."""
    vocabs = [t.image_ids for t in tables if t is not None]
    if not vocabs:
        return tables
    merged = np.unique(np.concatenate(vocabs).astype(str)).astype(object)
    out = []
    for t in tables:
        if t is None:
            out.append(None)
            continue
        remap = np.searchsorted(merged.astype(str), t.image_ids.astype(str)).astype(np.int32)
        codes = remap[t.image_codes] if len(t.image_codes) else t.image_codes
        if isinstance(t, BoxTable):
            out.append(BoxTable(codes, t.label_codes, t.boxes_norm, t.is_group_of, merged,
                                t.scores))
        else:
            out.append(ImageLabelTable(codes, t.label_codes, t.confidence, merged))
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# writers (atomic)


def _write_arrow(path: str | os.PathLike, columns: dict[str, object]) -> None:
    table = pa.table(columns)
    # pyarrow quotes header names; the Open Images files do not.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write((",".join(table.column_names) + "\n").encode())
        pcsv.write_csv(table, f, write_options=pcsv.WriteOptions(
            include_header=False, quoting_style="none"))


def _take_strings(vocab: np.ndarray, codes: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()),
                                          pa.array(list(vocab), pa.string())).cast(pa.string())


def write_boxes(path: str | os.PathLike, boxes: BoxTable, classes: ClassList,
                source: str = "xclick", short_format: bool = False,
                attributes: dict[str, np.ndarray] | None = None) -> None:
    """Write ground truth in the 13-column format (or the 7-column challenge format).

    ``attributes``: per-row values of ``BOX_ATTRIBUTE_COLUMNS`` (as ``read_attribute_columns``
    returns them) replacing the defaults (``source``, Confidence 1, flags 0)."""
    n = len(boxes)
    cols: dict[str, object] = {"ImageID": _take_strings(boxes.image_ids, boxes.image_codes)}
    if not short_format:
        cols["Source"] = pa.array(np.full(n, source, dtype=object), pa.string())
    cols["LabelName"] = _take_strings(classes.labels, boxes.label_codes)
    if not short_format:
        cols["Confidence"] = np.ones(n, np.int8)
    for name, c in (("XMin", 0), ("XMax", 2), ("YMin", 1), ("YMax", 3)):
        cols[name] = np.round(boxes.boxes_norm[:, c].astype(np.float64), 6)
    zeros = np.zeros(n, np.int8)
    if short_format:
        cols["IsGroupOf"] = boxes.is_group_of.astype(np.int8)
    else:
        cols.update(IsOccluded=zeros, IsTruncated=zeros,
                    IsGroupOf=boxes.is_group_of.astype(np.int8), IsDepiction=zeros,
                    IsInside=zeros)
    for name, values in (attributes or {}).items():
        if name in cols:
            cols[name] = pa.array(list(values), pa.string()) if name == "Source" else \
                np.asarray(values, np.int64)
    _write_arrow(path, cols)


def write_classes(path: str | os.PathLike, classes: ClassList) -> None:
    """``LabelName,DisplayName`` rows, no header (csv-quoted where a name needs it)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        for label, name in zip(classes.labels, classes.names):
            writer.writerow([label, name])


def write_image_labels(path: str | os.PathLike, labels: ImageLabelTable, classes: ClassList,
                       source: str | np.ndarray = "verification") -> None:
    """``ImageID,Source,LabelName,Confidence``; ``source``: one string or [L] per row."""
    n = len(labels)
    sources = np.full(n, source, dtype=object) if isinstance(source, str) else \
        np.asarray(source, dtype=object)
    _write_arrow(path, {
        "ImageID": _take_strings(labels.image_ids, labels.image_codes),
        "Source": pa.array(list(sources), pa.string()),
        "LabelName": _take_strings(classes.labels, labels.label_codes),
        "Confidence": labels.confidence.astype(np.int8),
    })


def write_detections(path: str | os.PathLike, detections: BoxTable, classes: ClassList) -> None:
    """``ImageID,LabelName,Score,XMin,XMax,YMin,YMax`` (normalized)."""
    assert detections.scores is not None
    _write_arrow(path, {
        "ImageID": _take_strings(detections.image_ids, detections.image_codes),
        "LabelName": _take_strings(classes.labels, detections.label_codes),
        "Score": np.round(detections.scores.astype(np.float64), 6),
        **{name: np.round(detections.boxes_norm[:, c].astype(np.float64), 6)
           for name, c in (("XMin", 0), ("XMax", 2), ("YMin", 1), ("YMax", 3))},
    })


def write_kaggle_submission(path: str | os.PathLike, detections: BoxTable, classes: ClassList,
                            all_image_ids=None) -> None:
    """Kaggle ``ImageId,PredictionString`` ("LabelName Score XMin YMin XMax YMax ..."); images in
    ``all_image_ids`` without detections get an empty string."""
    from wilddet.data.records import rows_by_image

    order, offsets = rows_by_image(detections.image_codes, detections.num_images)
    lines = ["ImageId,PredictionString"]
    written = set()
    for code, image_id in enumerate(detections.image_ids):
        rows = order[offsets[code]:offsets[code + 1]]
        parts = []
        for r in rows:
            b = detections.boxes_norm[r]
            parts.append(f"{classes.labels[detections.label_codes[r]]} {detections.scores[r]:.6f} "
                         f"{b[0]:.6f} {b[1]:.6f} {b[2]:.6f} {b[3]:.6f}")
        lines.append(f"{image_id},{' '.join(parts)}")
        written.add(image_id)
    for image_id in (all_image_ids or []):
        if image_id not in written:
            lines.append(f"{image_id},")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
