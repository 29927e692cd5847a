"""An append-only journal of a bank's acknowledged changes, replayed on start.

Saving a large index file on every addition is far too slow, so a bank writes each change
here first (one record, flushed to disk with ``fdatasync`` before the request is answered)
and folds the journal into its index file only now and then (:mod:`.banks`: compaction).

Layout (little-endian)::

    header:  b"HXJOURN1" | u32 length | u32 crc32 | JSON object (bank, kind, next_id, ...)
    record:  u32 length | u32 crc32 of the payload | payload
    payload: u32 op length | op as JSON | binary blob (codes, ids or image bytes)

A fresh journal (its header alone) is written atomically, so its header is either whole or
absent. A crash in the middle of an append leaves a *torn* last record: too short for its
length, or failing its checksum. :meth:`Journal.open` replays the records up to the first
torn one, cuts the file back to the end of the last good record (so later appends follow
good data) and reports how many bytes it dropped. Only the last record can be torn, since
every earlier one was flushed before the next was written. A failed append (a full disk)
is cut back the same way at once, and the request that made it fails.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..atomic import atomic_path
from ..errors import IndexFileError

MAGIC = b"HXJOURN1"
MAX_RECORD = 1 << 30
"""A record longer than this is taken for garbage (a torn length field)."""
MAX_HEADER = 1 << 20
_PREFIX = struct.Struct("<II")


@dataclass(frozen=True)
class Record:
    """One journalled change: ``op`` (a JSON object, ``op["op"]`` names it) and its blob."""

    op: dict[str, Any]
    blob: bytes


def encode(op: dict[str, Any], blob: bytes = b"") -> bytes:
    """The bytes of one record (length, checksum, payload)."""
    meta = json.dumps(op, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    payload = struct.pack("<I", len(meta)) + meta + blob
    if len(payload) > MAX_RECORD:
        raise ValueError(f"journal record of {len(payload)} bytes exceeds {MAX_RECORD}")
    return _PREFIX.pack(len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes) -> Record | None:
    """The record of a checksummed payload, or None when it does not parse."""
    if len(payload) < 4:
        return None
    (n,) = struct.unpack_from("<I", payload)
    if 4 + n > len(payload):
        return None
    try:
        op = json.loads(payload[4:4 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(op, dict) or not isinstance(op.get("op"), str):
        return None
    return Record(op, payload[4 + n:])


def _header_bytes(header: dict[str, Any]) -> bytes:
    raw = json.dumps(header, sort_keys=True).encode("utf-8")
    if len(raw) > MAX_HEADER:
        raise ValueError("journal header too large")
    return MAGIC + _PREFIX.pack(len(raw), zlib.crc32(raw)) + raw


class Journal:
    """An open journal file: :meth:`append` records, :meth:`reset` to a fresh header.

    Not thread-safe by itself: the bank serialises its writers."""

    def __init__(self, path: str, header: dict[str, Any], fd: int, size: int, records: int):
        self.path = path
        self.header = header
        self._fd = fd
        self.size = size
        """Bytes in the file (header included)."""
        self.records = records
        """Records in the file (replayed ones included)."""

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], header: dict[str, Any]) -> Journal:
        """Write a journal holding only ``header`` atomically (replacing any file there)
        and open it for appending."""
        path = os.fspath(path)
        raw = _header_bytes(header)
        with atomic_path(path) as tmp:
            tmp.write_bytes(raw)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        return cls(path, dict(header), fd, len(raw), 0)

    @classmethod
    def open(cls, path: str | os.PathLike[str], apply: Callable[[Record], None]
             ) -> tuple[Journal, int]:
        """Replay an existing journal: ``apply`` is called with every good record in order.
        Returns the journal, open for appending after the last good record, and the number
        of bytes of a torn tail that were cut off (0 when none). A missing or malformed
        header raises :class:`~hashlib_ext.errors.IndexFileError`."""
        path = os.fspath(path)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            with os.fdopen(os.dup(fd), "rb") as f:
                header, good, count = _replay(f, path, apply)
                end = f.seek(0, os.SEEK_END)
            dropped = end - good
            if dropped:
                os.ftruncate(fd, good)
                _sync(fd)
            os.lseek(fd, 0, os.SEEK_END)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, header, fd, good, count), dropped

    # -- writing ---------------------------------------------------------------------------
    def append(self, op: dict[str, Any], blob: bytes = b"") -> None:
        """Write one record and flush it to disk before returning. On failure the file is
        cut back to where it was and the error raised (nothing was recorded)."""
        data = encode(op, blob)
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            _sync(self._fd)
        except BaseException:
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                pass
            raise
        self.size += len(data)
        self.records += 1

    def cut(self, size: int) -> None:
        """Take back the last record (the file is cut to ``size``, its length before that
        record was appended): for a change that failed after it was journalled."""
        if not 0 < size <= self.size:
            raise ValueError(f"cannot cut a journal of {self.size} bytes to {size}")
        os.ftruncate(self._fd, size)
        _sync(self._fd)
        self.size = size
        self.records -= 1

    def reset(self, header: dict[str, Any]) -> None:
        """Replace the file with a fresh journal holding only ``header`` (atomically: a
        crash leaves the old journal or the new one), after its records were folded into
        the index file."""
        old = self._fd
        fresh = Journal.create(self.path, header)
        self._fd, self.size, self.records, self.header = \
            fresh._fd, fresh.size, 0, fresh.header
        os.close(old)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _sync(fd: int) -> None:
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of the journal at ``path`` (:class:`IndexFileError` if malformed)."""
    with open(path, "rb") as f:
        return _read_header(f, os.fspath(path))


def _read_header(f: Any, path: str) -> dict[str, Any]:
    def bad(msg: str) -> IndexFileError:
        return IndexFileError(f"{path}: not a hashlib_ext journal ({msg})")

    head = f.read(len(MAGIC) + _PREFIX.size)
    if len(head) < len(MAGIC) + _PREFIX.size or head[:len(MAGIC)] != MAGIC:
        raise bad("bad magic")
    n, crc = _PREFIX.unpack_from(head, len(MAGIC))
    if n > MAX_HEADER:
        raise bad("header too long")
    raw = f.read(n)
    if len(raw) != n or zlib.crc32(raw) != crc:
        raise bad("header checksum mismatch")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("header is not an object")
    return header


def _replay(f: Any, path: str, apply: Callable[[Record], None]
            ) -> tuple[dict[str, Any], int, int]:
    """Header, offset after the last good record, number of good records."""
    header = _read_header(f, path)
    good = f.tell()
    count = 0
    while True:
        prefix = f.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size:
            break
        n, crc = _PREFIX.unpack(prefix)
        if n > MAX_RECORD:
            break
        payload = f.read(n)
        if len(payload) != n or zlib.crc32(payload) != crc:
            break
        record = _decode(payload)
        if record is None:
            break
        apply(record)
        good = f.tell()
        count += 1
    return header, good, count
