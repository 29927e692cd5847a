"""The checksummed section file: round trip, and typed refusal of damaged or foreign files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hashlib_ext import container
from hashlib_ext.errors import IndexFileError

KIND = "hashlib_ext.Test"


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"codes": rng.integers(0, 256, (50, 32), dtype=np.uint8),
            "ids": np.arange(50, dtype="<i8"), "xy": rng.integers(0, 999, (7, 2)).astype("<u2"),
            "empty": np.zeros((0, 32), np.uint8)}


def test_round_trip(tmp_path):
    p = tmp_path / "x.hidx"
    arrays = _arrays()
    container.write(p, KIND, 2, {"a": 1, "b": [1, 2]}, arrays)
    version, meta, out = container.read(p, KIND, 2)
    assert version == 2 and meta == {"a": 1, "b": [1, 2]}
    for k, v in arrays.items():
        assert out[k].dtype == v.dtype.newbyteorder("<") and np.array_equal(out[k], v)


def test_refuses_newer_foreign_and_unexpected(tmp_path):
    p = tmp_path / "x.hidx"
    container.write(p, KIND, 3, {}, _arrays())
    with pytest.raises(IndexFileError, match="upgrade"):
        container.read(p, KIND, 2)
    with pytest.raises(IndexFileError, match="not a hashlib_ext.Other"):
        container.read(p, "hashlib_ext.Other", 3)
    with pytest.raises(IndexFileError, match="unexpected section"):
        container.read(p, KIND, 3, expected={"codes": "u1"})


def test_every_truncation_and_bit_flip_is_refused(tmp_path):
    p = tmp_path / "x.hidx"
    container.write(p, KIND, 1, {"n": 5}, {"a": np.arange(5, dtype="<i8")})
    blob = p.read_bytes()
    bad = tmp_path / "bad.hidx"
    for cut in range(0, len(blob), 7):
        bad.write_bytes(blob[:cut])
        with pytest.raises(IndexFileError, match="bad.hidx"):
            container.read(bad, KIND, 1)
    for pos in range(0, len(blob), 3):
        flipped = bytearray(blob)
        flipped[pos] ^= 0x10
        bad.write_bytes(bytes(flipped))
        with pytest.raises(IndexFileError):
            container.read(bad, KIND, 1)
    bad.write_bytes(blob + b"x")
    with pytest.raises(IndexFileError, match="size"):
        container.read(bad, KIND, 1)


def test_huge_declared_sizes_do_not_allocate(tmp_path):
    import json

    head = json.dumps({"format": KIND, "version": 1, "meta": {},
                       "sections": [{"name": "a", "dtype": "<i8", "shape": [1 << 40]}]}).encode()
    p = tmp_path / "huge.hidx"
    p.write_bytes(container.MAGIC + len(head).to_bytes(8, "little") + head + b"\0" * 64)
    with pytest.raises(IndexFileError, match="size"):
        container.read(p, KIND, 1)
    head = b'{"format": "' + KIND.encode() + b'", "version": 1' + b"0" * 5000 + b"}"
    p.write_bytes(container.MAGIC + len(head).to_bytes(8, "little") + head + b"\0" * 64)
    with pytest.raises(IndexFileError):
        container.read(p, KIND, 1)
    nested = b"[" * 100_000 + b"]" * 100_000
    p.write_bytes(container.MAGIC + len(nested).to_bytes(8, "little") + nested + b"\0" * 64)
    with pytest.raises(IndexFileError):
        container.read(p, KIND, 1)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_refuses_non_regular_files(tmp_path):
    fifo = tmp_path / "fifo.hidx"
    os.mkfifo(fifo)
    with pytest.raises(IndexFileError, match="regular"):
        container.read(fifo, KIND, 1)
    with pytest.raises(IndexFileError, match="regular"):
        container.read(tmp_path, KIND, 1)
    with pytest.raises(IndexFileError):
        container.read(tmp_path / "missing.hidx", KIND, 1)


def test_strings_round_trip_including_none_and_surrogates():
    values = ["a", None, "", "ü/ß", "bad\udcff.jpg", None]
    off, data = container.pack_strings(values)
    assert container.unpack_strings(off, data, ValueError) == values
    off[2] = 999
    with pytest.raises(ValueError):
        container.unpack_strings(off, data, ValueError)
