"""Small CSV files with a header line (per-class logs, confusion-pairs lists): the one reader of
their rows, so every such reader checks and numbers lines the same way.

Shapes: ``n`` data rows.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from wilddet.errors import InputError


def read_csv_rows(path: str | os.PathLike) -> tuple[Path, list[str], list[tuple[int, list[str]]]]:
    """(path, header, [(line, row)] [n]) of a UTF-8 CSV (a BOM is allowed). Rows that are empty
    or all blank are skipped; ``line`` is the physical line the row ends on (quoted fields may
    span lines), for InputError messages. A missing file or header raises InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        head = next(reader, None)
        if not head:
            raise InputError(path, "empty file: expected a header line", line=1)
        rows = [(reader.line_num, row) for row in reader if row and any(v.strip() for v in row)]
    return path, head, rows
