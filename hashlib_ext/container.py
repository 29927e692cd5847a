"""The checksummed section file that every hashlib_ext index is stored in.

Layout: 8-byte magic, 8-byte little-endian header length, a JSON header, the raw bytes of
each array section in header order, then the SHA-256 of everything before it::

    MAGIC | len | {"format": kind, "version": v, "meta": {...},
                  "sections": [{"name", "dtype", "shape"}, ...]} | arrays... | sha256

No pickle: sections are plain little-endian arrays of a few fixed dtypes, the header is
JSON. Writing goes through :func:`hashlib_ext.atomic.atomic_open` (temp file, fsync,
rename), so a crash leaves the old file or the new one; the temporary file is held under an
advisory lock (``flock``) while it is written, so :func:`remove_stale_temps` can tell the
leftovers of a killed writer (no lock) from a save in progress. Reading refuses anything that is
not a regular file before opening it, bounds the header and every declared size against
the real file size before allocating, and checks the checksum before returning, so a
truncated, extended, tampered or foreign file raises :class:`IndexFileError` naming the
path and never allocates more than the file holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np

from .atomic import atomic_path
from .errors import IndexFileError

MAGIC = b"HXINDEX\n"
MAX_HEADER = 1 << 20
DTYPES = {name: np.dtype(name) for name in
          ("u1", "<u2", "<i4", "<u4", "<i8", "<u8", "<f4")}
_READ_CHUNK = 1 << 26
_MAX_DIM = 1 << 48


def write(path: str | os.PathLike[str], kind: str, version: int, meta: Mapping[str, Any],
          arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` (dtypes among :data:`DTYPES`) and the JSON-able ``meta`` to
    ``path`` atomically, under a SHA-256 of the whole content."""
    sections = []
    for name, arr in arrays.items():
        dt = _dtype_name(arr.dtype)
        sections.append({"name": name, "dtype": dt, "shape": [int(s) for s in arr.shape]})
    head = json.dumps({"format": kind, "version": int(version), "meta": dict(meta),
                       "sections": sections}, sort_keys=True).encode("utf-8")
    if len(head) > MAX_HEADER:
        raise ValueError(f"header of {len(head)} bytes exceeds {MAX_HEADER}")
    digest = hashlib.sha256()
    f: BinaryIO | None = None
    try:
        with atomic_path(path) as tmp:
            f = _open_locked(os.fspath(tmp))
            for chunk in _chunks(head, arrays.values()):
                f.write(chunk)
                digest.update(chunk)
            f.write(digest.digest())
            f.flush()
        # atomic_path has fsynced and renamed the file; the lock goes with the close below
    finally:
        if f is not None:
            f.close()


def _open_locked(tmp: str) -> BinaryIO:
    """Open the temporary file ``tmp`` for writing under an exclusive ``flock`` held until
    it is closed. Should a cleaner have removed the name between its creation and the lock,
    the file is created again (a cleaner only removes files nobody holds locked)."""
    for _ in range(100):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            try:
                now = os.lstat(tmp)
            except FileNotFoundError:
                now = None
            if st.st_nlink and now is not None and \
                    (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.ftruncate(fd, 0)
                return os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # removed under us: create it again
    raise OSError(f"{tmp}: temporary file keeps disappearing")


def remove_stale_temps(path: str | os.PathLike[str]) -> list[str]:
    """Remove the temporary files that killed or failed writes of ``path`` left beside it;
    returns their names.

    Only names that :func:`hashlib_ext.atomic.atomic_path` makes for ``path`` (or for the
    ``path + ".keys.sqlite"`` side file of older index files) are considered, only regular
    files, and only those no process holds locked: a save in progress (by any process)
    keeps its file locked until it is renamed into place, while the lock of a killed
    process is released by the kernel. Never raises for a file it cannot remove."""
    full = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(full)
    pattern = re.compile(r"\." + re.escape(name) + r"\.(?:keys\.sqlite\.)?[a-z0-9_]{8}\.tmp")
    removed: list[str] = []
    try:
        entries = [e.name for e in os.scandir(folder)]
    except OSError:
        return removed
    for entry in entries:
        if pattern.fullmatch(entry) and _remove_if_unlocked(os.path.join(folder, entry)):
            removed.append(entry)
    return removed


def _remove_if_unlocked(tmp: str) -> bool:
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a writer holds it: a save in progress
        try:
            now = os.lstat(tmp)
        except OSError:
            return False
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        with contextlib.suppress(OSError):
            os.unlink(tmp)
            return True
        return False
    finally:
        os.close(fd)


def open_regular(path: str | os.PathLike[str]) -> tuple[io.BufferedReader, int]:
    """Open ``path`` for reading if it is a regular file: ``(file, size)``. A FIFO, device
    or directory is refused before anything could block on it (``OSError``)."""
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IndexFileError(f"{os.fspath(path)}: not a regular file")
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def file_format(path: str | os.PathLike[str]) -> str | None:
    """The ``format`` a container file declares in its header (e.g. the robust index's), or
    None when ``path`` is not a container file; :class:`IndexFileError` for a corrupt header,
    ``OSError`` when it cannot be opened."""
    f, size = open_regular(path)
    with f:
        if f.read(8) != MAGIC:
            return None
        f.seek(0)
        _, head = read_header(f, size, os.fspath(path))
    kind = head.get("format")
    return kind if isinstance(kind, str) else None


def read(path: str | os.PathLike[str], kind: str, max_version: int,
         expected: Mapping[str, str] | None = None
         ) -> tuple[int, dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`write`: ``(version, meta, arrays)``.

    ``kind`` must match the header's format; versions above ``max_version`` are refused
    with a message to upgrade. ``expected`` maps section names to the only dtype each may
    have (unknown names are refused too). Every failure is an :class:`IndexFileError`.
    """
    path = os.fspath(path)
    try:
        f, size = open_regular(path)
        with f:
            return _read(f, size, path, kind, max_version, expected)
    except OSError as e:
        raise IndexFileError(f"{path}: cannot read index file: {e.strerror or e}") from e
    except ValueError as e:  # e.g. a NUL byte in the path
        raise IndexFileError(f"{path!r}: cannot read index file: {e}") from None


def read_open(f: io.BufferedReader, size: int, path: str, kind: str, max_version: int,
              expected: Mapping[str, str] | None = None
              ) -> tuple[int, dict[str, Any], dict[str, np.ndarray]]:
    """:func:`read` on a file already opened (e.g. by :func:`open_regular`) and positioned
    at its start; ``size`` is its size, ``path`` names it in errors."""
    return _read(f, size, path, kind, max_version, expected)


def read_array(f: io.BufferedIOBase, dtype: np.dtype, nbytes: int, digest: Any,
               bad: Any) -> np.ndarray:
    """The next ``nbytes`` of ``f`` as a flat array of ``dtype``, read in chunks into its
    final buffer and fed to ``digest``; a short read raises ``bad("truncated file")``."""
    arr = np.empty(nbytes // dtype.itemsize, dtype=dtype)
    view = arr.view(np.uint8).data
    for lo in range(0, nbytes, _READ_CHUNK):
        part = view[lo:lo + _READ_CHUNK]
        if f.readinto(part) != len(part):
            raise bad("truncated file")
        digest.update(part)
    return arr


def read_header(f: BinaryIO, size: int, path: str) -> tuple[bytes, dict[str, Any]]:
    """The raw and parsed JSON header of an open file (position after the header)."""
    prefix = f.read(16)
    if len(prefix) < 16 or prefix[:8] != MAGIC:
        raise IndexFileError(f"{path}: not a hashlib_ext index file (bad magic)")
    hlen = int.from_bytes(prefix[8:], "little")
    if hlen > MAX_HEADER or 16 + hlen + 32 > size:
        raise IndexFileError(f"{path}: truncated or corrupt header")
    raw = f.read(hlen)
    try:
        head = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise IndexFileError(f"{path}: corrupt header (not JSON)") from None
    if not isinstance(head, dict):
        raise IndexFileError(f"{path}: corrupt header (not an object)")
    return prefix + raw, head


def _read(f: io.BufferedReader, size: int, path: str, kind: str, max_version: int,
          expected: Mapping[str, str] | None
          ) -> tuple[int, dict[str, Any], dict[str, np.ndarray]]:
    def bad(msg: str) -> IndexFileError:
        return IndexFileError(f"{path}: {msg}")

    raw, head = read_header(f, size, path)
    if head.get("format") != kind:
        raise bad(f"not a {kind} file (format {str(head.get('format'))[:60]!r})")
    version = head.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad("corrupt header (version)")
    if version > max_version:
        raise bad(f"format version {version} is newer than this hashlib_ext reads "
                  f"({max_version}); upgrade hashlib_ext")
    meta, sections = head.get("meta"), head.get("sections")
    if not isinstance(meta, dict) or not isinstance(sections, list):
        raise bad("corrupt header (meta or sections)")
    plan = _plan(sections, expected, bad)
    body = sum(nb for _, _, _, nb in plan)
    if len(raw) + body + 32 != size:
        raise bad("file size does not match its header (truncated or extended)")
    digest = hashlib.sha256(raw)
    arrays: dict[str, np.ndarray] = {}
    for name, dt, shape, nb in plan:
        arrays[name] = read_array(f, dt, nb, digest, bad).reshape(shape)
    if f.read(32) != digest.digest():
        raise bad("checksum mismatch: the file is corrupted or was modified")
    return version, meta, arrays


def _plan(sections: list[Any], expected: Mapping[str, str] | None,
          bad: Any) -> list[tuple[str, np.dtype, tuple[int, ...], int]]:
    plan = []
    seen: set[str] = set()
    for s in sections:
        if not isinstance(s, dict):
            raise bad("corrupt header (section)")
        name, dt, shape = s.get("name"), s.get("dtype"), s.get("shape")
        if not isinstance(name, str) or name in seen or dt not in DTYPES:
            raise bad("corrupt header (unknown, repeated or mistyped section)")
        if expected is not None and expected.get(name) != dt:
            raise bad(f"unexpected section {name[:40]!r} of type {dt}")
        if not isinstance(shape, list) or len(shape) > 4 or any(
                not isinstance(d, int) or isinstance(d, bool) or not 0 <= d < _MAX_DIM
                for d in shape):
            raise bad(f"corrupt header (shape of section {name!r})")
        count = 1
        for d in shape:
            count *= max(d, 1)  # a zero dimension must not hide an absurd other one
        nb = count * DTYPES[dt].itemsize
        if nb >= _MAX_DIM:
            raise bad(f"corrupt header (size of section {name!r})")
        seen.add(name)
        if 0 in shape:
            nb = 0
        plan.append((name, DTYPES[dt], tuple(shape), nb))
    return plan


def _dtype_name(dtype: np.dtype) -> str:
    for name, dt in DTYPES.items():
        if dt == dtype.newbyteorder("<") or dt == dtype:
            return name
    raise ValueError(f"unsupported section dtype {dtype}")


def _chunks(head: bytes, arrays: Iterable[np.ndarray]) -> Iterable[bytes | memoryview]:
    yield MAGIC
    yield len(head).to_bytes(8, "little")
    yield head
    for arr in arrays:
        dt = DTYPES[_dtype_name(arr.dtype)]
        data = np.ascontiguousarray(arr, dtype=dt)
        if data.size:
            yield data.reshape(-1).view(np.uint8).data


# -- strings as sections ------------------------------------------------------------------
def pack_strings(values: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, data)``: UTF-8 bytes of each value back to back (surrogates kept, so
    paths that are not valid UTF-8 round-trip); ``None`` is marked by offset -1 at its end."""
    parts = [b"" if v is None else v.encode("utf-8", "surrogatepass") for v in values]
    ends = np.cumsum([len(p) for p in parts], dtype=np.int64)
    offsets = np.concatenate([[0], ends]).astype("<i8")
    for i, v in enumerate(values):
        if v is None:
            offsets[i + 1] = -1 - offsets[i + 1]
    return offsets, np.frombuffer(b"".join(parts), dtype=np.uint8)


def unpack_strings(offsets: np.ndarray, data: np.ndarray, bad: Any) -> list[str | None]:
    """Inverse of :func:`pack_strings`; malformed offsets or text raise ``bad(msg)``."""
    ends = np.where(offsets < 0, -1 - offsets, offsets)
    if offsets.ndim != 1 or offsets.size < 1 or ends[0] != 0 or offsets[0] != 0 or \
            np.any(np.diff(ends) < 0) or ends[-1] != data.size:
        raise bad("corrupt string section")
    raw = data.tobytes()
    out: list[str | None] = []
    bounds = ends.tolist()
    nulls = (offsets[1:] < 0).tolist()
    for i, is_null in enumerate(nulls):
        if is_null:
            out.append(None)
            continue
        try:
            out.append(raw[bounds[i]:bounds[i + 1]].decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            raise bad("corrupt string section (not UTF-8)") from None
    return out
