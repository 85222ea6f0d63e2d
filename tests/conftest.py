"""Shared fixtures: small files written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from wilddet.resources import OPENIMAGES_DIR as RESOURCES  # noqa: F401


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> Path of a new file under tmp_path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write
