"""fileio.py: atomic writes land whole or not at all (temporary file + os.replace)."""

import os
import stat

import pytest

from wilddet.fileio import atomic_path, write_text_atomic


def test_write_text_atomic_round_trip_and_replace(tmp_path):
    path = tmp_path / "new" / "dir" / "out.txt"  # parent folders are created
    write_text_atomic(path, "první řádek\nzweite Zeile\n")
    assert path.read_text(encoding="utf-8") == "první řádek\nzweite Zeile\n"
    write_text_atomic(path, "replaced")
    assert path.read_text(encoding="utf-8") == "replaced"
    assert os.listdir(path.parent) == ["out.txt"]  # no temporary file left


def test_atomic_path_writes_beside_the_target_and_renames(tmp_path):
    target = tmp_path / "table.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target and not target.exists()
        tmp.write_bytes(b"a,b\n1,2\n")
    assert target.read_bytes() == b"a,b\n1,2\n" and not tmp.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_failure_leaves_no_file_and_keeps_the_old_one(tmp_path):
    fresh, old = tmp_path / "fresh.txt", tmp_path / "old.txt"
    old.write_text("old content")
    for target in (fresh, old):
        with pytest.raises(RuntimeError, match="half-way"), atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("failed half-way")
    assert not fresh.exists()
    assert old.read_text() == "old content"
    assert sorted(os.listdir(tmp_path)) == ["old.txt"]  # temporaries removed


def test_failure_before_anything_was_written(tmp_path):
    target = tmp_path / "x.bin"
    with pytest.raises(KeyboardInterrupt), atomic_path(target):  # a BaseException too
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
