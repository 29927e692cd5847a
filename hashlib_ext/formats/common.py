"""What every hash-list reader and writer shares: the limits, :class:`HashList`, format
names and extensions, and opening files (regular files only, gzip guarded against bombs,
atomic writes)."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from ..atomic import atomic_path
from ..errors import HashFormatError
from ..files import open_regular
from ..hash import HashArray

FORMATS = ("hex", "csv", "tsv", "jsonl", "json", "parquet", "te")

DEFAULT_ALGORITHM = "pdq"

CHUNK_ROWS = 65536

MAX_LINE_CHARS = 1 << 20
"""Longest line (hex, CSV/TSV, JSONL) or JSON array item read, in characters (1 Mi); a
longer one is a malformed record (strict: an error; lenient: skipped without being held)."""

MAX_HASH_BYTES = 1024
"""Widest hash accepted (8192 bits), also when the width is taken from the first hash."""

MAX_GZIP_RATIO = 500
"""A ``.gz`` list that decompresses to more than this many times its compressed size (once
past :data:`GZIP_RATIO_FLOOR` bytes) is refused as a compression bomb. Real lists stay far
below: identical 256-bit hash lines compress about 300:1, a run of one byte 1030:1."""

GZIP_RATIO_FLOOR = 8 << 20

MAX_PARQUET_COLUMN_CHUNK = 1 << 31
"""Largest uncompressed column chunk (per row group) a Parquet footer may declare (2 GiB)."""

MAX_PARQUET_ROWS = 1 << 31
"""Most rows a Parquet row group may declare."""

PDQ_MIN_QUALITY = 50
"""PDQ quality below this is unreliable (the policy of the PDQ reference tools and
ThreatExchange); ``quality_ok`` in written lists and ``min_quality=`` on reading use it."""

EXTENSIONS = {
    ".txt": "hex", ".hex": "hex", ".hashes": "hex", ".lst": "hex",
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".parquet": "parquet", ".pq": "parquet",
}

ALIASES = {"threatexchange": "te", "hma": "te", "ndjson": "jsonl", "txt": "hex", "lines": "hex"}

# Column names recognised in headers, JSON objects and Parquet schemas, in order of preference.

HASH_NAMES = ("hash", "signal_str", "hex", "code")

ID_NAMES = ("id",)

KEY_NAMES = ("key", "path", "file", "filename", "name", "url", "content_id")

QUALITY_NAMES = ("quality",)

TE_COLUMNS = ("signal_type", "signal_str", "collab", "category", "tags")

PARQUET_META = b"hashlib_ext.algorithm"

ALGORITHM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


@dataclass
class HashList:
    """Hashes read from (or to be written to) a hash-list file."""

    hashes: HashArray
    ids: np.ndarray
    """``(n,)`` int64, the caller's id of each hash."""
    keys: np.ndarray | None = None
    """``(n,)`` object array of str (e.g. file paths) or None (a NULL key: JSON ``null``, a
    Parquet null, a JSON record without a key), or None when the file has no keys at all."""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """Lenient mode: (line number, reason) of every malformed record that was skipped."""
    ignored: int = 0
    """Records of other algorithms (ThreatExchange signal types, ``algorithm`` columns)."""
    low_quality: int = 0
    """Records left out by ``min_quality`` (a known quality below it)."""
    metadata: dict[str, np.ndarray] = field(default_factory=dict)
    """Extra columns (ThreatExchange's ``collab``, ``category``, ``tags``; any other column
    of the file that is not hash, id, key, quality or algorithm): name -> ``(n,)`` object
    array of str, None where a record has no value. What ``HashIndex.add(metadata=...)``
    takes. Empty when the file has none (or was read with ``metadata=False``)."""
    has_ids: bool = True
    """Whether the ids came from the file (an id column or field) rather than being record
    numbers (hex lines, CSV without an ``id`` column, JSON records without ``id``)."""

    def __len__(self) -> int:
        return len(self.hashes)


def quality_ok(qualities: np.ndarray | Sequence[int] | None,
               min_quality: int = PDQ_MIN_QUALITY) -> np.ndarray | None:
    """Per hash: True if its quality is known and >= ``min_quality``, False if known and
    lower, None where unknown (-1); None for no qualities at all. What ``quality_ok`` holds."""
    if qualities is None:
        return None
    q = np.asarray(qualities).reshape(-1)
    out = np.full(q.shape[0], None, dtype=object)
    known = q >= 0
    out[known] = q[known] >= min_quality
    return out


def strip_gz(path: Path) -> tuple[Path, bool]:
    if path.suffix.lower() == ".gz":
        return path.with_suffix(""), True
    return path, False


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` from its extension (``.gz`` looked through).

    A ``.csv`` whose header starts ``signal_type,signal_str`` reads as ThreatExchange CSV
    whatever the extension says; that sniff happens when reading.
    """
    inner, _ = strip_gz(Path(path))
    fmt = EXTENSIONS.get(inner.suffix.lower())
    if fmt is None:
        raise HashFormatError(
            f"{path}: cannot tell the hash-list format from the extension {inner.suffix!r}; "
            f"name it (one of {', '.join(FORMATS)}) or use one of "
            f"{', '.join(sorted(EXTENSIONS))}"
        )
    return fmt


def is_hash_list_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path``'s extension is one of the hash-list extensions."""
    inner, _ = strip_gz(Path(path))
    return inner.suffix.lower() in EXTENSIONS


def format_name(name: str) -> str:
    """The canonical name of a hash-list format given by name or alias (``"ndjson"`` ->
    ``"jsonl"``, ``"threatexchange"`` -> ``"te"``); :class:`HashFormatError` if unknown."""
    return resolve_format(Path("-"), name)


def resolve_format(path: Path, fmt: str | None) -> str:
    if fmt is None:
        return detect_format(path)
    if not isinstance(fmt, str):
        raise HashFormatError(f"format must be a string, got {fmt!r}")
    fmt = ALIASES.get(fmt.lower(), fmt.lower())
    if fmt not in FORMATS:
        raise HashFormatError(f"unknown hash-list format {fmt!r}; known: {', '.join(FORMATS)}")
    return fmt


def output_format(path: str | os.PathLike[str] | None, fmt: str | None,
                  default: str = "csv") -> str:
    """The format to write ``path`` in: ``fmt`` (a name or alias) if given, else the one its
    extension names (``.gz`` looked through), else ``default``. A ``fmt`` that contradicts
    the extension (``-f csv -o x.parquet``) is a :class:`HashFormatError`; ThreatExchange
    CSV may be named ``.csv``. Parquet is compressed inside, so ``.parquet.gz`` is refused."""
    given = resolve_format(Path("-"), fmt) if fmt is not None else None
    if path is None:
        return given or default
    inner, gz = strip_gz(Path(path))
    by_ext = EXTENSIONS.get(inner.suffix.lower())
    if given is not None and by_ext is not None and given != by_ext \
            and not (by_ext == "csv" and given == "te"):
        raise HashFormatError(f"format {given} does not match {path}: its extension "
                              f"{inner.suffix} is {by_ext}; drop the format or rename the file")
    result = given or by_ext or default
    if gz and result == "parquet":
        raise HashFormatError(f"{path}: Parquet is compressed inside; drop the .gz")
    return result


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    _, gz = strip_gz(path)
    with atomic_path(path) as tmp, open_text_output(tmp, path, gz) as f:
        yield f


@contextlib.contextmanager
def open_text_output(tmp: str | os.PathLike[str], final: Path, gz: bool,
                     errors: str = "strict") -> Iterator[IO[str]]:
    """A UTF-8 text stream writing ``tmp`` (the temporary file that becomes ``final``),
    gzip-compressed when ``gz``; the gzip header names the file as it will be called once
    unpacked (``h.csv`` for ``h.csv.gz``), never the temporary file."""
    if not gz:
        with open(tmp, "w", encoding="utf-8", errors=errors, newline="") as f:
            yield f
        return
    with open(tmp, "wb") as raw, \
            gzip.GzipFile(filename=final.with_suffix("").name, mode="wb", fileobj=raw) as gzf, \
            io.TextIOWrapper(gzf, encoding="utf-8", errors=errors, newline="") as f:
        yield f


def open_binary(path: Path) -> BinaryIO:
    """A regular file opened for reading; anything else is a HashFormatError."""
    try:
        return open_regular(path)
    except FileNotFoundError:
        raise HashFormatError(f"{path}: no such hash-list file") from None
    except OSError as e:
        raise HashFormatError(f"{path}: cannot open hash list: {e.strerror or e}") from None


class GzipGuard(io.RawIOBase):
    """Decompresses a gzip stream, refusing one that expands like a compression bomb."""

    def __init__(self, raw: BinaryIO, path: Path):
        super().__init__()
        self._raw = raw
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self._path = path
        self._out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._gz.readinto(b)
        self._out += n
        if self._out > GZIP_RATIO_FLOOR and self._out > MAX_GZIP_RATIO * max(1, self._raw.tell()):
            raise HashFormatError(
                f"{self._path}: decompresses to more than {MAX_GZIP_RATIO} times its compressed "
                f"size ({self._out} bytes from {self._raw.tell()}): refused as a compression "
                "bomb")
        return n

    def close(self) -> None:
        try:
            self._gz.close()
        finally:
            self._raw.close()
            super().close()


def open_text(path: Path) -> IO[str]:
    _, gz = strip_gz(path)
    raw = open_binary(path)
    # utf-8-sig: a byte-order mark (spreadsheet exports) must not hide the header.
    if gz:
        stream: BinaryIO = io.BufferedReader(GzipGuard(raw, path),  # type: ignore[assignment]
                                             buffer_size=1 << 18)
    else:
        stream = raw
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")


def short_text(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_algorithm_name(name: Any, path: Path, where: str) -> str:
    if not isinstance(name, str) or not ALGORITHM_NAME.fullmatch(name):
        raise HashFormatError(f"{path}: {where} names no usable algorithm ({str(name)[:40]!r})")
    return name


def key_texts(path: object, keys: Any) -> list[str | None]:
    """Keys as text (None stays None); a key too long to be read back is refused."""
    out = [None if k is None else str(k) for k in keys]
    for k in out:
        if k is not None and len(k) > MAX_LINE_CHARS // 2:
            raise HashFormatError(f"{path}: key {k[:40]!r}... has {len(k)} characters; keys "
                                  f"are limited to {MAX_LINE_CHARS // 2}")
    return out
