"""atomic_path / atomic_open: complete replacement or nothing."""

import os

import pytest

from hashlib_ext.atomic import atomic_open, atomic_path


def test_replaces_only_when_complete(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temporary file left behind
    with atomic_open(target) as f:
        f.write("new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_mode_of_new_and_replaced_files(tmp_path):
    fresh = tmp_path / "fresh.bin"
    with atomic_open(fresh, "wb") as f:
        f.write(b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    kept = tmp_path / "kept.bin"
    kept.write_bytes(b"a")
    kept.chmod(0o640)
    with atomic_path(kept) as tmp:
        tmp.write_bytes(b"b")
    assert kept.read_bytes() == b"b"
    assert kept.stat().st_mode & 0o777 == 0o640
