"""GitHub-flavoured Markdown tables: the one helper every report uses.

Shapes: ``n`` columns, ``m`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence


def cell(text: object) -> str:
    """One cell's text: ``|`` escaped, newlines folded to spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[object], rows: Sequence[Sequence[object]],
                   align: str = "") -> str:
    """A table of ``header`` [n] and ``rows`` [m][n] (no trailing newline). ``align``: one
    character per column, ``r`` right-aligns it (``---:``), anything else left; missing
    characters mean left."""
    seps = ["---:" if a == "r" else "---" for a in align.ljust(len(header), "l")]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "| " + " | ".join(seps) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
