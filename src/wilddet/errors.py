"""The one error type for bad user input: it names the file, the line and the field."""

from __future__ import annotations

import os


class InputError(ValueError):
    """Bad input in a user's file.

    Rendered as ``path:line: field: message`` (line and field omitted when unknown), e.g.
    ``train-bbox.csv:1042: XMax: 1.7 not in [0, 1]``. ``line`` is 1-based and counts the header.
    """

    def __init__(self, path: str | os.PathLike | None, message: str, *, line: int | None = None,
                 field: str | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        prefix = f"{where}: "
        if self.field:
            prefix += f"{self.field}: "
        return prefix + self.message
