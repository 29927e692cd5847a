"""Hash lists in and out: hex lines, CSV/TSV, JSONL, JSON, Parquet and ThreatExchange CSV.

A hash list is a :class:`HashList`: a :class:`~hashlib_ext.hash.HashArray`, an int64 id per
hash and optionally a key per hash (a file path, a content id; None where a record has a
NULL key). Readers stream the file in chunks and turn each chunk into numpy arrays at once,
so a list of millions of hashes never exists as millions of Python objects. A malformed
record raises :class:`~hashlib_ext.errors.HashFormatError` naming the file and line; with
``lenient=True`` it is skipped and listed in ``HashList.skipped`` instead — never silently
dropped or truncated. Writers are atomic (temporary file in the same folder, then
``os.replace``).

Hostile input: every failure to read a file — malformed records, bad encodings, corrupt
gzip or Parquet data, deep nesting, a line or JSON item longer than
:data:`MAX_LINE_CHARS`, a compression bomb — is a :class:`HashFormatError` naming the file
(and the line, item or row where there is one); FIFOs, devices and directories are refused
before they are opened. Memory per record is bounded, whatever the file holds.

The formats (see docs/formats.md):

``hex``      one hash per line, optionally followed by whitespace and a key (the rest of the
             line); blank lines and lines starting with ``#`` are ignored.
``csv/tsv``  a header row naming the columns (``hash``, ``id``, ``key``/``path``, ``quality``)
             or no header (the hash in the first column).
``jsonl``    one object per line: ``{"hash": ..., "id": ..., "key": ..., "quality": ...}``.
``json``     a JSON array of such objects (what ``hashlib-ext hash --format json`` prints),
             read item by item.
``parquet``  ``hash`` as fixed-size binary (or hex strings), ``id`` int64, optional ``key``
             and ``quality``; the algorithm is kept in the schema metadata.
``te``       ThreatExchange's CSV export, ``signal_type,signal_str,collab,category,tags``;
             rows of other signal types than the algorithm's are counted and ignored.

Records that name another algorithm (an ``algorithm`` column or field, as the ``hash``
command writes) are likewise counted in ``HashList.ignored`` and left out.

PDQ quality: writers add a ``quality_ok`` flag (quality >= :data:`PDQ_MIN_QUALITY`) beside
the quality in CSV/TSV and JSON/JSONL; readers take ``min_quality=`` to leave out hashes of
lower known quality (counted in ``HashList.low_quality``).

Where a file has no ids, a hash's id is its record number: 0 for the first data record, and
records skipped in lenient mode keep their numbers (no renumbering of the others).
Files ending in ``.gz`` are read and written gzip-compressed (text formats).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from .atomic import atomic_path
from .errors import HashFormatError
from .files import open_regular
from .hash import HashArray

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

_EXTENSIONS = {
    ".txt": "hex", ".hex": "hex", ".hashes": "hex", ".lst": "hex",
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".parquet": "parquet", ".pq": "parquet",
}
_ALIASES = {"threatexchange": "te", "hma": "te", "ndjson": "jsonl", "txt": "hex", "lines": "hex"}

# Column names recognised in headers, JSON objects and Parquet schemas, in order of preference.
_HASH_NAMES = ("hash", "signal_str", "hex", "code")
_ID_NAMES = ("id",)
_KEY_NAMES = ("key", "path", "file", "filename", "name", "url", "content_id")
_QUALITY_NAMES = ("quality",)
_TE_COLUMNS = ("signal_type", "signal_str", "collab", "category", "tags")
_PARQUET_META = b"hashlib_ext.algorithm"
_ALGORITHM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


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


# --------------------------------------------------------------------------------------
# format detection and atomic writing


def _strip_gz(path: Path) -> tuple[Path, bool]:
    if path.suffix.lower() == ".gz":
        return path.with_suffix(""), True
    return path, False


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` from its extension (``.gz`` looked through).

    A ``.csv`` whose header starts ``signal_type,signal_str`` reads as ThreatExchange CSV
    whatever the extension says; that sniff happens when reading.
    """
    inner, _ = _strip_gz(Path(path))
    fmt = _EXTENSIONS.get(inner.suffix.lower())
    if fmt is None:
        raise HashFormatError(
            f"{path}: cannot tell the hash-list format from the extension {inner.suffix!r}; "
            f"name it (one of {', '.join(FORMATS)}) or use one of "
            f"{', '.join(sorted(_EXTENSIONS))}"
        )
    return fmt


def is_hash_list_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path``'s extension is one of the hash-list extensions."""
    inner, _ = _strip_gz(Path(path))
    return inner.suffix.lower() in _EXTENSIONS


def format_name(name: str) -> str:
    """The canonical name of a hash-list format given by name or alias (``"ndjson"`` ->
    ``"jsonl"``, ``"threatexchange"`` -> ``"te"``); :class:`HashFormatError` if unknown."""
    return _resolve_format(Path("-"), name)


def _resolve_format(path: Path, fmt: str | None) -> str:
    if fmt is None:
        return detect_format(path)
    if not isinstance(fmt, str):
        raise HashFormatError(f"format must be a string, got {fmt!r}")
    fmt = _ALIASES.get(fmt.lower(), fmt.lower())
    if fmt not in FORMATS:
        raise HashFormatError(f"unknown hash-list format {fmt!r}; known: {', '.join(FORMATS)}")
    return fmt


@contextlib.contextmanager
def _atomic_text(path: Path) -> Iterator[IO[str]]:
    _, gz = _strip_gz(path)
    with atomic_path(path) as tmp:
        if gz:
            with gzip.open(tmp, "wt", encoding="utf-8", newline="") as f:
                yield f
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                yield f


def _open_binary(path: Path) -> BinaryIO:
    """A regular file opened for reading; anything else is a HashFormatError."""
    try:
        return open_regular(path)
    except FileNotFoundError:
        raise HashFormatError(f"{path}: no such hash-list file") from None
    except OSError as e:
        raise HashFormatError(f"{path}: cannot open hash list: {e.strerror or e}") from None


class _GzipGuard(io.RawIOBase):
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


def _open_text(path: Path) -> IO[str]:
    _, gz = _strip_gz(path)
    raw = _open_binary(path)
    # utf-8-sig: a byte-order mark (spreadsheet exports) must not hide the header.
    if gz:
        stream: BinaryIO = io.BufferedReader(_GzipGuard(raw, path),  # type: ignore[assignment]
                                             buffer_size=1 << 18)
    else:
        stream = raw
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")


def _lines(f: IO[str], dec: _Decoder) -> Iterator[tuple[int, str | None]]:
    """Physical lines with their numbers, none longer than :data:`MAX_LINE_CHARS`.

    A longer line is never held whole: strict mode raises, lenient mode reads past it and
    yields ``(line, None)`` for the reader to record as skipped.
    """
    line_no = 0
    while True:
        line = f.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        line_no += 1
        dec.line = line_no
        if len(line) <= MAX_LINE_CHARS:
            yield line_no, line
            continue
        if not dec.lenient:
            raise HashFormatError(f"{dec.path}, line {line_no}: line longer than "
                                  f"{MAX_LINE_CHARS} characters")
        while line and line[-1] not in "\r\n":  # skip the rest of it, a block at a time
            line = f.readline(MAX_LINE_CHARS)
        yield line_no, None


_TOO_LONG = f"line longer than {MAX_LINE_CHARS} characters"


# --------------------------------------------------------------------------------------
# decoding: text fields of one chunk -> numpy arrays


def _expected_nbytes(algorithm: str, bits: int | None) -> int | None:
    if bits is not None:
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits <= 0 \
                or bits % 8 or bits > 8 * MAX_HASH_BYTES:
            raise HashFormatError(f"bits must be a positive multiple of 8 up to "
                                  f"{8 * MAX_HASH_BYTES}, got {bits!r}")
        return int(bits) // 8
    from .hashers import expected_bits

    known = expected_bits(algorithm)
    return None if known is None else known // 8


class _Decoder:
    """State shared by the chunks of one file: width, skipped records, record numbering."""

    def __init__(self, path: Path, algorithm: str, nbytes: int | None, lenient: bool,
                 unit: str = "line"):
        self.path = path
        self.algorithm = algorithm
        self.nbytes = nbytes
        self.lenient = lenient
        self.unit = unit
        self.skipped: list[tuple[int, str]] = []
        self.records = 0  # data records seen so far, the default ids
        self.ignored = 0
        self.line = 0  # where reading is (line, item or first row of a batch), for errors
        self.json = False  # JSON records: a missing or null key is None

    def fail(self, bad: list[tuple[int, str]]) -> None:
        """Record the malformed records of a chunk; in strict mode raise on the first."""
        if not bad:
            return
        bad.sort()
        if not self.lenient:
            line, reason = bad[0]
            raise HashFormatError(f"{self.path}, {self.unit} {line}: {reason}")
        self.skipped.extend(bad)

    def hex_codes(self, lines: list[int], texts: list[str],
                  bad: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
        """Decode hex ``texts``; returns (codes of the good ones, boolean mask of good ones)."""
        n = len(texts)
        if self.nbytes is None:
            for t in texts:
                if t and len(t) % 2 == 0 and len(t) <= 2 * MAX_HASH_BYTES and _is_hex(t):
                    self.nbytes = len(t) // 2
                    break
            else:
                for line, t in zip(lines, texts, strict=True):
                    bad.append((line, _hex_reason(t, None)))
                return np.zeros((0, 0), np.uint8), np.zeros(n, bool)
        width = 2 * self.nbytes
        # Fast path: every field has the right length and the concatenation is pure hex.
        if all(len(t) == width for t in texts):
            joined = "".join(texts)
            try:
                raw = bytes.fromhex(joined)
            except ValueError:
                raw = b""
            if len(raw) == n * self.nbytes:  # whitespace inside a field would shorten it
                return np.frombuffer(raw, np.uint8).reshape(n, self.nbytes), np.ones(n, bool)
        ok = np.zeros(n, bool)
        rows = []
        for i, (line, t) in enumerate(zip(lines, texts, strict=True)):
            one = _hex_bytes(t, self.nbytes)
            if one is None:
                bad.append((line, _hex_reason(t, self.nbytes)))
            else:
                ok[i] = True
                rows.append(one)
        codes = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), self.nbytes)
        return codes, ok


def _is_hex(t: str) -> bool:
    try:
        return len(bytes.fromhex(t)) * 2 == len(t)
    except ValueError:
        return False


def _hex_bytes(t: str, nbytes: int) -> bytes | None:
    if len(t) != 2 * nbytes:
        return None
    try:
        raw = bytes.fromhex(t)
    except ValueError:
        return None
    return raw if len(raw) == nbytes else None


def _hex_reason(t: str, nbytes: int | None) -> str:
    if not t:
        return "empty hash"
    shown = repr(t[:80]) + ("..." if len(t) > 80 else "")
    if nbytes is not None and len(t) != 2 * nbytes:
        return f"hash {shown} has {len(t)} characters, expected {2 * nbytes} ({8 * nbytes} bits)"
    return f"hash {shown} is not hexadecimal"


def _digits(value: int) -> str:
    """An integer for a message, shortened when it is huge."""
    text = str(value) if value.bit_length() < 4000 else "(a huge number)"
    return text if len(text) <= 40 else text[:20] + "..." + text[-8:]


def _parse_int(text: Any, what: str) -> tuple[int | None, str | None]:
    if isinstance(text, bool):
        return None, f"{what} {text!r} is not an integer"
    if isinstance(text, int):
        value = text
    else:
        try:
            value = int(str(text).strip())
        except ValueError:
            return None, f"{what} {str(text)[:40]!r} is not an integer"
    if not -(1 << 63) <= value < (1 << 63):
        return None, f"{what} {_digits(value)} does not fit in int64"
    return value, None


class _Rows:
    """Fields of one chunk, column by column."""

    __slots__ = ("lines", "texts", "ids", "keys", "quals", "bad")

    def __init__(self) -> None:
        self.lines: list[int] = []
        self.texts: list[str] = []
        self.ids: list[int] = []
        self.keys: list[str | None] = []
        self.quals: list[int] = []
        self.bad: list[tuple[int, str]] = []

    def add(self, dec: _Decoder, line: int, text: str, id_: Any = None, key: str | None = None,
            quality: Any = None) -> None:
        """One data record (``id_`` None: the record number; ``quality`` None or "": unknown).

        Ids and qualities are kept raw and parsed for the whole chunk in :meth:`finish`.
        """
        record = dec.records
        dec.records += 1
        self.lines.append(line)
        self.texts.append(text)
        self.ids.append(record if id_ is None else id_)
        self.keys.append(key)
        self.quals.append(-1 if quality is None or quality == "" else quality)

    def __len__(self) -> int:
        return len(self.lines) + len(self.bad)

    def finish(self, dec: _Decoder) -> HashList:
        ids, id_ok = _int64_column(self.ids, self.lines, "id", self.bad)
        quals, q_ok = _int64_column(self.quals, self.lines, "quality", self.bad, (0, 100))
        valid = id_ok & q_ok
        sel = np.flatnonzero(valid)
        texts = self.texts if valid.all() else [self.texts[i] for i in sel]
        lines = self.lines if valid.all() else [self.lines[i] for i in sel]
        codes, ok = dec.hex_codes(lines, texts, self.bad)
        dec.fail(self.bad)
        keep = sel[ok]
        keys = None
        if any(k is not None for k in self.keys):
            keys = np.empty(len(self.keys), dtype=object)
            # Text lines have no NULL: a line without a key has the empty key.
            keys[:] = self.keys if dec.json else \
                ["" if k is None else k for k in self.keys]
            keys = keys[keep]
        nbytes = dec.nbytes or 0
        codes = codes.reshape(-1, nbytes) if codes.size == 0 else codes
        return _make_list(codes, dec.algorithm, ids[keep], keys, quals[keep].astype(np.int16))


def _int64_column(values: list[Any], lines: list[int], what: str, bad: list[tuple[int, str]],
                  valid_range: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse a chunk's ids or qualities at once: (int64 values, mask of parseable rows).

    Python ints (record numbers, JSON) convert directly and digit strings (CSV) through
    Arrow's strict cast; anything else, or any failure, falls back to a per-value check
    that names the bad ones. ``valid_range`` also admits -1 (unknown quality).
    """
    n = len(values)
    arr = None
    kinds = set(map(type, values))
    try:
        if kinds <= {int}:
            arr = np.array(values, dtype=np.int64)
        elif kinds <= {str}:
            import pyarrow as pa
            import pyarrow.compute as pc

            arr = pc.cast(pa.array(values, pa.string()), pa.int64()).to_numpy(
                zero_copy_only=False)
    except (OverflowError, ValueError, ImportError):
        arr = None
    except Exception as e:  # pyarrow.ArrowInvalid and kin: not every value is a plain int
        if type(e).__module__.split(".")[0] != "pyarrow":
            raise
        arr = None
    if arr is not None and n:
        if valid_range is None or bool(((arr == -1) | ((arr >= valid_range[0])
                                                       & (arr <= valid_range[1]))).all()):
            return arr.astype(np.int64, copy=False), np.ones(n, bool)
    out = np.zeros(n, np.int64)
    ok = np.ones(n, bool)
    for i, v in enumerate(values):
        value, err = (v, None) if type(v) is int else _parse_int(v, what)
        if value is None:
            err = err or f"{what} is missing"
        elif not -(1 << 63) <= value < (1 << 63):
            err = f"{what} {_digits(value)} does not fit in int64"
        elif valid_range is not None and value != -1 and \
                not valid_range[0] <= value <= valid_range[1]:
            err = f"{what} {value} is outside {valid_range[0]}..{valid_range[1]}"
        if err is None and value is not None:
            out[i] = value
        else:
            ok[i] = False
            bad.append((lines[i], err or f"bad {what}"))
    return out, ok


def _make_list(codes: np.ndarray, algorithm: str, ids: np.ndarray, keys: np.ndarray | None,
               quals: np.ndarray | None) -> HashList:
    if quals is not None and not (quals >= 0).any():
        quals = None
    return HashList(HashArray(codes, algorithm, quals), ids, keys)


# --------------------------------------------------------------------------------------
# readers, one per format; each yields HashList chunks


def _iter_hex(f: IO[str], dec: _Decoder, chunk: int) -> Iterator[HashList]:
    rows = _Rows()
    for line_no, line in _lines(f, dec):
        if line is None:
            dec.records += 1
            rows.bad.append((line_no, _TOO_LONG))
        else:
            text = line.strip()
            if not text or text[0] == "#":
                continue
            parts = text.split(None, 1)
            rows.add(dec, line_no, parts[0], key=parts[1] if len(parts) > 1 else None)
        if len(rows) >= chunk:
            yield rows.finish(dec)
            rows = _Rows()
    if len(rows):
        yield rows.finish(dec)


def _column(header: list[str], wanted: str | int | None, names: Sequence[str], what: str,
            path: Path, required: bool = False) -> int | None:
    """Index of a column: ``wanted`` (name or 0-based index) or the first of ``names``."""
    if isinstance(wanted, bool):
        raise HashFormatError(f"{path}: {what} column must be a name or an index, got "
                              f"{wanted!r}")
    if isinstance(wanted, int):
        if (header and not 0 <= wanted < len(header)) or wanted < 0 \
                or wanted >= MAX_LINE_CHARS:
            raise HashFormatError(f"{path}: {what} column {wanted} is out of range")
        return wanted
    lower = [h.strip().lower() for h in header]
    for name in [wanted] if wanted is not None else names:
        if name.lower() in lower:
            return lower.index(name.lower())
    if wanted is not None or required:
        shown = [h[:40] for h in header[:12]]
        raise HashFormatError(
            f"{path}: no {what} column {wanted or names[0]!r} in header {shown}"
        )
    return None


def _iter_csv(f: IO[str], dec: _Decoder, chunk: int, delimiter: str, te: bool,
              header: bool | None, hash_column: str | int | None, id_column: str | int | None,
              key_column: str | int | None) -> Iterator[HashList]:
    too_long: list[int] = []

    def source() -> Iterator[str]:
        for line_no, line in _lines(f, dec):
            if line is None:  # lenient: an empty row stands in for it, recorded below
                too_long.append(line_no)
                yield "\n"
            else:
                yield line

    reader = csv.reader(source(), delimiter=delimiter)
    first: list[str] | None = None
    for first in reader:
        if too_long:
            raise HashFormatError(f"{dec.path}, line {too_long[0]}: {_TOO_LONG} (before the "
                                  "first row)")
        if any(c.strip() for c in first):
            break
    else:
        return
    names = [c.strip().lower() for c in first]
    if header is None:
        given = {str(c).lower() for c in (hash_column, id_column, key_column)
                 if isinstance(c, str)}
        known = set(_HASH_NAMES) | set(_ID_NAMES) | set(_KEY_NAMES) | set(_QUALITY_NAMES) \
            | set(_TE_COLUMNS) | {dec.algorithm.lower()} | given
        header = any(n in known for n in names)
    if names[:2] == ["signal_type", "signal_str"] and header:
        te = True
    if te and not header:
        raise HashFormatError(f"{dec.path}: ThreatExchange CSV needs its header row "
                              f"({','.join(_TE_COLUMNS)})")
    cols = first if header else []
    hash_names = ("signal_str",) if te else (*_HASH_NAMES, dec.algorithm, f"{dec.algorithm}_hash")
    h_col = _column(cols, hash_column, hash_names, "hash", dec.path, required=bool(header))
    h_col = 0 if h_col is None else h_col
    i_col = _column(cols, id_column, _ID_NAMES, "id", dec.path) if cols or id_column is not None \
        else None
    k_col = _column(cols, key_column, _KEY_NAMES, "key", dec.path) \
        if cols or key_column is not None else None
    q_col = _column(cols, None, _QUALITY_NAMES, "quality", dec.path) if cols else None
    t_col = _column(cols, None, ("signal_type",) if te else ("algorithm",), "algorithm",
                    dec.path) if cols else None
    need = max(c for c in (h_col, i_col, k_col, q_col, t_col) if c is not None) + 1
    algo = dec.algorithm.lower()

    def records() -> Iterator[tuple[int, list[str]]]:
        if not header:
            yield reader.line_num, first
        for row in reader:
            yield reader.line_num, row

    rows = _Rows()
    for line_no, row in records():
        while too_long:
            dec.records += 1
            rows.bad.append((too_long.pop(0), _TOO_LONG))
        if not row or (len(row) == 1 and not row[0].strip()):
            pass
        elif t_col is not None and len(row) > t_col and row[t_col].strip() \
                and row[t_col].strip().lower() != algo:
            dec.ignored += 1
        elif len(row) < need:
            dec.records += 1
            rows.bad.append((line_no, f"row has {len(row)} fields, expected at least {need}"))
        else:
            rows.add(dec, line_no, row[h_col].strip(),
                     None if i_col is None else row[i_col],
                     None if k_col is None else row[k_col],
                     None if q_col is None else row[q_col].strip())
        if len(rows) >= chunk:
            yield rows.finish(dec)
            rows = _Rows()
    while too_long:
        dec.records += 1
        rows.bad.append((too_long.pop(0), _TOO_LONG))
    if len(rows):
        yield rows.finish(dec)


def _first_field(obj: dict[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _add_object(rows: _Rows, dec: _Decoder, line_no: int, obj: Any) -> None:
    """One JSON record: an object with a hash string and optional id, key, quality."""
    if not isinstance(obj, dict):
        dec.records += 1
        rows.bad.append((line_no, f"expected a JSON object, got {type(obj).__name__}"))
        return
    obj_algo = obj.get("algorithm", obj.get("signal_type"))
    if obj_algo is not None and str(obj_algo).lower() != dec.algorithm.lower():
        dec.ignored += 1
        return
    text = _first_field(obj, (*_HASH_NAMES, dec.algorithm))
    if not isinstance(text, str):
        dec.records += 1
        rows.bad.append((line_no, "no hash string ('hash' field)" if text is None
                         else f"hash is a {type(text).__name__}, expected a hex string"))
        return
    key = _first_field(obj, _KEY_NAMES)
    if key is not None and not isinstance(key, str):
        if isinstance(key, (dict, list)):
            dec.records += 1
            rows.bad.append((line_no, f"key is a JSON {type(key).__name__}, expected a string"))
            return
        key = json.dumps(key)  # a number or boolean: its JSON text
    rows.add(dec, line_no, text.strip(), obj.get("id"), key, obj.get("quality"))


def _json_reason(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "JSON nested too deeply"
    return f"invalid JSON ({getattr(e, 'msg', None) or e})"


def _iter_jsonl(f: IO[str], dec: _Decoder, chunk: int) -> Iterator[HashList]:
    dec.json = True
    rows = _Rows()
    for line_no, line in _lines(f, dec):
        if line is None:
            dec.records += 1
            rows.bad.append((line_no, _TOO_LONG))
        elif not line.strip():
            continue
        else:
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as e:
                dec.records += 1
                rows.bad.append((line_no, _json_reason(e)))
            else:
                _add_object(rows, dec, line_no, obj)
        if len(rows) >= chunk:
            yield rows.finish(dec)
            rows = _Rows()
    if len(rows):
        yield rows.finish(dec)


_WS = re.compile(r"[ \t\n\r]*")
_JSON_BLOCK = 1 << 16


class _JsonStream:
    """Reads one JSON document value by value, holding at most one item (bounded by
    :data:`MAX_LINE_CHARS`) plus a block: arrays are iterated without loading them whole."""

    def __init__(self, f: IO[str], dec: _Decoder):
        self.f, self.dec = f, dec
        self.buf, self.pos, self.eof = "", 0, False
        self.decoder = json.JSONDecoder()

    def _more(self) -> bool:
        if self.eof:
            return False
        data = self.f.read(_JSON_BLOCK)
        if not data:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + data
        self.pos = 0
        return True

    def fail(self, what: str) -> HashFormatError:
        where = f", item {self.dec.line}" if self.dec.line else ""
        return HashFormatError(f"{self.dec.path}{where}: {what}")

    def peek(self) -> str:
        """The next non-blank character ("" at the end)."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def take(self, ch: str, what: str) -> None:
        got = self.peek()
        if got != ch:
            shown = "the end of the file" if not got else repr(got)
            raise self.fail(f"invalid JSON: expected {what}, found {shown}")
        self.pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except (ValueError, RecursionError) as e:
                if isinstance(e, ValueError) and len(self.buf) - self.pos <= MAX_LINE_CHARS \
                        and self._more():
                    continue  # maybe only cut by the block boundary: read on and retry
                if len(self.buf) - self.pos > MAX_LINE_CHARS:
                    raise self.fail(f"JSON item longer than {MAX_LINE_CHARS} characters") \
                        from None
                raise self.fail(_json_reason(e)) from None
            if end == len(self.buf) and self._more():
                continue  # a number cut by the block boundary would parse short
            if end - self.pos > MAX_LINE_CHARS:
                raise self.fail(f"JSON item longer than {MAX_LINE_CHARS} characters")
            self.pos = end
            return obj

    def items(self) -> Iterator[Any]:
        """The items of the array that starts here."""
        self.take("[", "'['")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            self.dec.line += 1
            yield self.value()
            c = self.peek()
            self.pos += 1
            if c == "]":
                return
            if c != ",":
                self.pos -= 1
                self.take(",", "',' or ']' after the item")

    def records(self) -> Iterator[Any]:
        """The hash objects of a document that is an array of them, or an object with a
        ``hashes`` array (its other members are read and left alone)."""
        c = self.peek()
        if c == "[":
            yield from self.items()
        elif c == "{":
            self.pos += 1
            found = False
            if self.peek() == "}":
                self.pos += 1
            else:
                while True:
                    name = self.value()
                    if not isinstance(name, str):
                        raise self.fail("invalid JSON: an object member name must be a string")
                    self.take(":", "':'")
                    if name == "hashes" and self.peek() == "[" and not found:
                        found = True
                        yield from self.items()
                    else:
                        self.value()
                    c = self.peek()
                    self.pos += 1
                    if c == "}":
                        break
                    if c != ",":
                        self.pos -= 1
                        self.take(",", "',' or '}'")
            if not found:
                raise self.fail("expected a JSON array of hash objects (or an object with a "
                                "'hashes' array)")
        elif c == "":
            raise self.fail("invalid JSON: the file is empty")
        else:
            raise self.fail("expected a JSON array of hash objects")
        if self.peek() != "":
            raise HashFormatError(f"{self.dec.path}: invalid JSON: extra data after the "
                                  "document")


def _iter_json(f: IO[str], dec: _Decoder, chunk: int) -> Iterator[HashList]:
    """A JSON array of objects (``hashlib-ext hash --format json``), or {"hashes": [...]}.

    Streamed item by item (each at most :data:`MAX_LINE_CHARS`); records are numbered as
    items from 1.
    """
    dec.json = True
    rows = _Rows()
    for obj in _JsonStream(f, dec).records():
        _add_object(rows, dec, dec.line, obj)
        if len(rows) >= chunk:
            yield rows.finish(dec)
            rows = _Rows()
    if len(rows):
        yield rows.finish(dec)


# -- Parquet ------------------------------------------------------------------------------


def _check_algorithm_name(name: Any, path: Path, where: str) -> str:
    if not isinstance(name, str) or not _ALGORITHM_NAME.fullmatch(name):
        raise HashFormatError(f"{path}: {where} names no usable algorithm ({str(name)[:40]!r})")
    return name


class _Parquet:
    """An open Parquet hash list: its schema checked, its footer's sizes bounded."""

    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.path = path
        self.file = _open_binary(path)
        try:
            self.pf = pq.ParquetFile(self.file)
            self.schema = self.pf.schema_arrow
            md = self.pf.metadata
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                if not 0 <= rg.num_rows <= MAX_PARQUET_ROWS:
                    raise HashFormatError(f"{path}: row group {g} declares {rg.num_rows} rows")
                for c in range(rg.num_columns):
                    size = rg.column(c).total_uncompressed_size
                    if not 0 <= size <= MAX_PARQUET_COLUMN_CHUNK:
                        raise HashFormatError(
                            f"{path}: row group {g} declares a column chunk of {size} bytes "
                            f"(more than {MAX_PARQUET_COLUMN_CHUNK})")
            meta = self.schema.metadata or {}
            raw = meta.get(_PARQUET_META)
        except HashFormatError:
            self.close()
            raise
        except Exception as e:  # noqa: BLE001 - every pyarrow failure is a bad file here
            self.close()
            raise HashFormatError(f"{path}: not a readable Parquet file "
                                  f"({_short(e)})") from None
        self.algorithm = None
        if raw:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            self.algorithm = _check_algorithm_name(text, path, "the Parquet metadata")

    def close(self) -> None:
        self.file.close()


def _short(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _iter_parquet(pqf: _Parquet, dec: _Decoder, chunk: int, hash_column: str | int | None,
                  id_column: str | int | None, key_column: str | int | None
                  ) -> Iterator[HashList]:
    import pyarrow as pa

    path = pqf.path
    names = pqf.schema.names
    h = _column(names, hash_column, (*_HASH_NAMES, dec.algorithm), "hash", path, required=True)
    i = _column(names, id_column, _ID_NAMES, "id", path)
    k = _column(names, key_column, _KEY_NAMES, "key", path)
    q = _column(names, None, _QUALITY_NAMES, "quality", path)
    chosen = [c for c in (h, i, k, q) if c is not None]
    for c in chosen:
        if names.count(names[c]) > 1:
            raise HashFormatError(f"{path}: column {names[c][:40]!r} appears more than once")
    types = {c: _value_type(pqf.schema.field(c).type) for c in chosen}  # type: ignore[call-overload]
    ht = types[h]  # type: ignore[index]
    if pa.types.is_fixed_size_binary(ht):
        if ht.byte_width > MAX_HASH_BYTES:
            raise HashFormatError(f"{path}: hash column is {ht.byte_width} bytes wide "
                                  f"(at most {MAX_HASH_BYTES})")
    elif not (pa.types.is_binary(ht) or pa.types.is_large_binary(ht) or pa.types.is_string(ht)
              or pa.types.is_large_string(ht)):
        raise HashFormatError(f"{path}: hash column has type {ht}; expected fixed-size "
                              "binary, binary or hex strings")
    if i is not None and not (pa.types.is_integer(types[i]) or pa.types.is_null(types[i])):
        raise HashFormatError(f"{path}: id column has type {types[i]}, expected int64")
    if q is not None and not (pa.types.is_integer(types[q]) or pa.types.is_null(types[q])):
        raise HashFormatError(f"{path}: quality column has type {types[q]}, expected integers "
                              "0..100")
    if k is not None:
        kt = types[k]
        if not (pa.types.is_string(kt) or pa.types.is_large_string(kt) or pa.types.is_integer(kt)
                or pa.types.is_null(kt)):
            raise HashFormatError(f"{path}: key column has type {kt}, expected strings")
    columns = [names[c] for c in chosen]
    row0 = 0
    batches = pqf.pf.iter_batches(batch_size=chunk, columns=columns)
    while True:
        dec.line = row0 + 1
        try:
            batch = next(batches)
        except StopIteration:
            break
        n = batch.num_rows
        rows_no = np.arange(row0 + 1, row0 + n + 1)
        bad: list[tuple[int, str]] = []
        ok = np.ones(n, bool)
        codes = _parquet_codes(_decoded(batch.column(0)), dec, rows_no, ok, bad)
        pos = 1
        ids = np.arange(row0, row0 + n, dtype=np.int64)
        if i is not None:
            ids = _parquet_ints(_decoded(batch.column(pos)), rows_no, ok, bad, "id", None,
                                null_ok=False)
            pos += 1
        keys = None
        if k is not None:
            keys = _parquet_keys(_decoded(batch.column(pos)), rows_no, ok, bad)
            pos += 1
        quals = None
        if q is not None:
            quals = _parquet_ints(_decoded(batch.column(pos)), rows_no, ok, bad, "quality",
                                  (0, 100), null_ok=True).astype(np.int16)
        bad.sort()
        dec.fail(bad)
        row0 += n
        sel = np.flatnonzero(ok)
        yield _make_list(codes[sel], dec.algorithm, ids[sel],
                         None if keys is None else keys[sel],
                         None if quals is None else quals[sel])
    dec.records = row0


def _value_type(t: Any) -> Any:
    """The type of the values of a (possibly dictionary-encoded) column."""
    import pyarrow as pa

    return t.value_type if pa.types.is_dictionary(t) else t


def _decoded(col: Any) -> Any:
    import pyarrow as pa

    return col.dictionary_decode() if pa.types.is_dictionary(col.type) else col


def _parquet_ints(col: Any, rows_no: np.ndarray, ok: np.ndarray, bad: list[tuple[int, str]],
                  what: str, valid: tuple[int, int] | None, null_ok: bool) -> np.ndarray:
    """An integer column as int64 (nulls: -1 if ``null_ok``, else bad rows); values that do
    not fit in int64 or lie outside ``valid`` are bad rows."""
    import pyarrow as pa

    n = len(col)
    if pa.types.is_null(col.type):
        nulls = np.ones(n, bool)
        values = np.zeros(n, np.int64)
    else:
        nulls = col.is_null().to_numpy(zero_copy_only=False) if col.null_count \
            else np.zeros(n, bool)
        raw = col.fill_null(0).to_numpy(zero_copy_only=False)
        big = raw > np.iinfo(np.int64).max if raw.dtype == np.uint64 else np.zeros(n, bool)
        values = np.where(big, 0, raw).astype(np.int64)
        for r in np.flatnonzero(big & ok):
            bad.append((int(rows_no[r]), f"{what} {int(raw[r])} does not fit in int64"))
        ok &= ~big
    if null_ok:
        values[nulls] = -1
    else:
        for r in np.flatnonzero(nulls & ok):
            bad.append((int(rows_no[r]), f"{what} is null"))
        ok &= ~nulls
    if valid is not None:
        out = ~nulls & ((values < valid[0]) | (values > valid[1]))
        for r in np.flatnonzero(out & ok):
            bad.append((int(rows_no[r]), f"{what} {int(values[r])} is outside "
                        f"{valid[0]}..{valid[1]}"))
        ok &= ~out
    return values


def _parquet_keys(col: Any, rows_no: np.ndarray, ok: np.ndarray,
                  bad: list[tuple[int, str]]) -> np.ndarray:
    """Keys as an object array: str, or None for a NULL key; over-long keys are bad rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(col)
    keys = np.full(n, None, dtype=object)
    if pa.types.is_null(col.type):
        return keys
    if pa.types.is_integer(col.type):
        col = col.cast(pa.string())
    lengths = pc.utf8_length(col).fill_null(0).to_numpy(zero_copy_only=False)
    long = lengths > MAX_LINE_CHARS
    for r in np.flatnonzero(long & ok):
        bad.append((int(rows_no[r]), f"key longer than {MAX_LINE_CHARS} characters"))
    ok &= ~long
    if long.any():
        col = pc.if_else(pa.array(long), pa.scalar(None, col.type), col)
    keys[:] = col.to_pylist()
    return keys


def _parquet_codes(col: Any, dec: _Decoder, rows_no: np.ndarray, ok: np.ndarray,
                   bad: list[tuple[int, str]]) -> np.ndarray:
    """``(n, nbytes)`` codes of one Parquet column chunk; clears ``ok`` for bad rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(col)
    t = col.type
    nulls = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else np.zeros(n, bool)
    if pa.types.is_fixed_size_binary(t):
        w = t.byte_width
        if dec.nbytes is None:
            dec.nbytes = w
        if w != dec.nbytes:
            bad.extend((int(r), f"hash has {w} bytes, expected {dec.nbytes} ({8 * dec.nbytes} "
                        "bits)") for r in rows_no)
            ok[:] = False
            return np.zeros((n, dec.nbytes), np.uint8)
        buf = col.buffers()[1]
        if buf is None or buf.size < (col.offset + n) * w:
            raise HashFormatError(f"{dec.path}, rows {rows_no[0]}..{rows_no[-1]}: the hash "
                                  "column's data is shorter than its rows")
        codes = np.frombuffer(buf, np.uint8)[col.offset * w:(col.offset + n) * w]
        codes = codes.reshape(n, w)
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        lengths = pc.binary_length(col).fill_null(0).to_numpy(zero_copy_only=False)
        if dec.nbytes is None:
            first = np.flatnonzero((lengths > 0) & (lengths <= MAX_HASH_BYTES))
            dec.nbytes = int(lengths[first[0]]) if first.size else None
        w = dec.nbytes or 0
        codes = np.zeros((n, w), np.uint8)
        for r in np.flatnonzero((lengths != w) & ~nulls):
            ok[r] = False
            bad.append((int(rows_no[r]), f"hash has {int(lengths[r])} bytes, expected {w}"))
        good = np.flatnonzero(ok & ~nulls)
        if good.size and w:
            values = col.take(pa.array(good)).to_pylist()
            codes[good] = np.frombuffer(b"".join(values), np.uint8).reshape(-1, w)
    else:  # strings (the type was checked up front)
        lengths = pc.utf8_length(col).fill_null(0).to_numpy(zero_copy_only=False)
        long = (lengths > 2 * MAX_HASH_BYTES + 64) & ~nulls
        for r in np.flatnonzero(long):
            ok[r] = False
            bad.append((int(rows_no[r]), f"hash has {int(lengths[r])} characters"))
        keep = np.flatnonzero(~nulls & ~long)
        values = col.take(pa.array(keep)).to_pylist() if keep.size else []
        good, good_mask = dec.hex_codes([int(rows_no[r]) for r in keep],
                                        [v.strip() for v in values], bad)
        codes = np.zeros((n, dec.nbytes or 0), np.uint8)
        codes[keep[good_mask]] = good
        ok[keep[~good_mask]] = False
    for r in np.flatnonzero(nulls):
        bad.append((int(rows_no[r]), "hash is null"))
    ok &= ~nulls
    return codes


# --------------------------------------------------------------------------------------
# public reading API


def _where(dec: _Decoder | None) -> str:
    return f", {dec.unit} {dec.line}" if dec is not None and dec.line else ""


def _untyped(e: BaseException) -> bool:
    """Whether ``e`` is one of the failures a hostile file can provoke in the libraries we
    read with (decoders, gzip, csv, json, pyarrow), rather than a bug of ours."""
    if isinstance(e, HashFormatError):
        return False
    if type(e).__module__.split(".")[0] == "pyarrow":
        return True
    return isinstance(e, (ValueError, TypeError, KeyError, IndexError, OverflowError, OSError,
                          EOFError, RecursionError, MemoryError, csv.Error, zlib.error,
                          NotImplementedError))


def _reason(e: BaseException) -> str:
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text ({e.reason}); is the format right?"
    if isinstance(e, csv.Error):
        return f"malformed CSV: {_short(e)}"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, MemoryError):
        return "too large to read into memory"
    if isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile)):
        return f"corrupt or truncated gzip data ({_short(e)})"
    if type(e).__module__.split(".")[0] == "pyarrow":
        return f"unreadable Parquet data ({_short(e)})"
    return f"unreadable ({type(e).__name__}: {_short(e)})"


def _check_min_quality(min_quality: int | None) -> int | None:
    if min_quality is None:
        return None
    if isinstance(min_quality, bool) or not isinstance(min_quality, (int, np.integer)) \
            or not 0 <= min_quality <= 100:
        raise HashFormatError(f"min_quality must be an integer 0..100 or None, got "
                              f"{min_quality!r}")
    return int(min_quality)


def _check_chunk_rows(chunk_rows: int) -> int:
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) \
            or not 1 <= chunk_rows <= 1 << 24:
        raise HashFormatError(f"chunk_rows must be an integer 1..{1 << 24}, got {chunk_rows!r}")
    return int(chunk_rows)


def iter_hash_list(
    path: str | os.PathLike[str],
    algorithm: str | None = None,
    *,
    format: str | None = None,
    lenient: bool = False,
    bits: int | None = None,
    header: bool | None = None,
    hash_column: str | int | None = None,
    id_column: str | int | None = None,
    key_column: str | int | None = None,
    chunk_rows: int = CHUNK_ROWS,
    skipped: list[tuple[int, str]] | None = None,
    min_quality: int | None = None,
) -> Iterator[HashList]:
    """Read a hash list in chunks of at most ``chunk_rows`` records (bounded memory).

    Each chunk is a :class:`HashList` (its ``skipped`` is empty); malformed records of the
    whole file are appended to ``skipped`` when that list is given (lenient mode).
    ``algorithm`` defaults to the one recorded in the file (Parquet metadata, ThreatExchange
    ``pdq`` rows) or ``"pdq"``; the hash width is the algorithm's (or ``bits``, or, for a
    name the registry does not know, the first hash's). ``min_quality`` leaves out hashes
    whose quality is known and lower (counted in each chunk's ``low_quality``); hashes
    without a quality are kept. See :func:`read_hash_list`.

    Every failure to read the file is a :class:`HashFormatError` naming it.
    """
    path = Path(path)
    fmt = _resolve_format(path, format)
    min_quality = _check_min_quality(min_quality)
    chunk_rows = _check_chunk_rows(chunk_rows)
    dec: _Decoder | None = None
    try:
        if fmt == "parquet":
            pqf = _Parquet(path)
            try:
                if algorithm and pqf.algorithm and pqf.algorithm != algorithm:
                    raise HashFormatError(f"{path}: holds {pqf.algorithm} hashes, not "
                                          f"{algorithm}")
                algorithm = algorithm or pqf.algorithm or DEFAULT_ALGORITHM
                dec = _Decoder(path, algorithm, _expected_nbytes(algorithm, bits), lenient,
                               unit="row")
                chunks = _iter_parquet(pqf, dec, chunk_rows, hash_column, id_column,
                                       key_column)
                yield from _report(chunks, dec, skipped, min_quality)
            finally:
                pqf.close()
            return
        algorithm = algorithm or _file_algorithm(path, fmt)
        dec = _Decoder(path, algorithm, _expected_nbytes(algorithm, bits), lenient)
        with _open_text(path) as f:
            if fmt == "hex":
                chunks = _iter_hex(f, dec, chunk_rows)
            elif fmt == "jsonl":
                chunks = _iter_jsonl(f, dec, chunk_rows)
            elif fmt == "json":
                dec.unit = "item"
                chunks = _iter_json(f, dec, chunk_rows)
            else:
                chunks = _iter_csv(f, dec, chunk_rows, "\t" if fmt == "tsv" else ",",
                                   fmt == "te", header, hash_column, id_column, key_column)
            yield from _report(chunks, dec, skipped, min_quality)
    except HashFormatError:
        raise
    except Exception as e:
        if not _untyped(e):
            raise
        raise HashFormatError(f"{path}{_where(dec)}: {_reason(e)}") from None


def _report(chunks: Iterator[HashList], dec: _Decoder, skipped: list[tuple[int, str]] | None,
            min_quality: int | None) -> Iterator[HashList]:
    for chunk in chunks:
        if skipped is not None:
            skipped.extend(dec.skipped)
        chunk.ignored, dec.ignored = dec.ignored, 0
        dec.skipped = []
        if min_quality is not None:
            chunk = _drop_low_quality(chunk, min_quality)
        yield chunk
    if dec.ignored or dec.skipped:  # records after the last chunk that held none
        if skipped is not None:
            skipped.extend(dec.skipped)
        empty = _make_list(np.zeros((0, dec.nbytes or 0), np.uint8), dec.algorithm,
                           np.zeros(0, np.int64), None, None)
        empty.ignored, dec.ignored, dec.skipped = dec.ignored, 0, []
        yield empty


def _drop_low_quality(chunk: HashList, min_quality: int) -> HashList:
    q = chunk.hashes.qualities
    if q is None:
        return chunk
    low = (q >= 0) & (q < min_quality)
    if not low.any():
        return chunk
    keep = np.flatnonzero(~low)
    out = HashList(chunk.hashes[keep], chunk.ids[keep],
                   None if chunk.keys is None else chunk.keys[keep], chunk.skipped,
                   chunk.ignored, chunk.low_quality + int(low.sum()))
    return out


def read_hash_list(
    path: str | os.PathLike[str],
    algorithm: str | None = None,
    *,
    format: str | None = None,
    lenient: bool = False,
    bits: int | None = None,
    header: bool | None = None,
    hash_column: str | int | None = None,
    id_column: str | int | None = None,
    key_column: str | int | None = None,
    chunk_rows: int = CHUNK_ROWS,
    min_quality: int | None = None,
) -> HashList:
    """Read a whole hash list: hashes, int64 ids, optional keys.

    ``format`` is one of :data:`FORMATS`, else taken from the extension. A malformed record
    (wrong length, non-hex, bad id, quality outside 0..100, short CSV row, invalid JSON, a
    line longer than :data:`MAX_LINE_CHARS`) raises :class:`HashFormatError` with the file
    and line number; ``lenient=True`` skips it and lists ``(line, reason)`` in the result's
    ``skipped``. A file that cannot be read at all (not a regular file, corrupt gzip or
    Parquet, not UTF-8, a compression bomb) raises :class:`HashFormatError` either way.

    CSV/TSV: ``header`` None detects a header row (a cell naming a known column: ``hash``,
    ``signal_str``, ``id``, ``key``, ``path``, ``quality``, ...). Columns are chosen by
    ``hash_column`` / ``id_column`` / ``key_column`` (a name, or a 0-based index), else by
    those names; without a header the hash is the first column.

    ``min_quality`` (e.g. :data:`PDQ_MIN_QUALITY`) leaves out hashes of a lower known
    quality and counts them in ``low_quality``; hashes without a quality are kept.
    """
    skipped: list[tuple[int, str]] = []
    chunks = list(iter_hash_list(
        path, algorithm, format=format, lenient=lenient, bits=bits, header=header,
        hash_column=hash_column, id_column=id_column, key_column=key_column,
        chunk_rows=chunk_rows, skipped=skipped, min_quality=min_quality))
    if chunks:
        algorithm = chunks[0].hashes.algorithm
    else:
        algorithm = algorithm or _file_algorithm(Path(path), _resolve_format(Path(path), format))
    return concat_lists(chunks, algorithm, bits, skipped)


def _file_algorithm(path: Path, fmt: str) -> str:
    """The algorithm a file records (Parquet metadata, the ``algorithm`` column or field of
    the first record), or pdq. Any problem reading it is left for the read to report."""
    found = None
    dec = _Decoder(path, DEFAULT_ALGORITHM, None, False)
    with contextlib.suppress(Exception):
        if fmt == "parquet":
            pqf = _Parquet(path)
            pqf.close()
            found = pqf.algorithm
        elif fmt in ("csv", "tsv"):
            with _open_text(path) as f:
                reader = csv.reader((line or "" for _, line in _lines(f, dec)),
                                    delimiter="\t" if fmt == "tsv" else ",")
                head = [c.strip().lower() for c in next(reader, [])]
                first = next(reader, [])
                if "algorithm" in head and "signal_type" not in head:
                    found = first[head.index("algorithm")].strip()
        elif fmt == "json":
            with _open_text(path) as f:
                found = next(_JsonStream(f, dec).records()).get("algorithm")
        elif fmt == "jsonl":
            with _open_text(path) as f:
                for _, line in _lines(f, dec):
                    if line is not None and line.strip():
                        found = json.loads(line).get("algorithm")
                        break
    return found if isinstance(found, str) and _ALGORITHM_NAME.fullmatch(found) \
        else DEFAULT_ALGORITHM


def concat_lists(chunks: Sequence[HashList], algorithm: str, bits: int | None = None,
                 skipped: list[tuple[int, str]] | None = None) -> HashList:
    """Join chunks (as :func:`iter_hash_list` yields them) into one :class:`HashList`."""
    skipped = list(skipped or [])
    ignored = sum(c.ignored for c in chunks)
    low = sum(c.low_quality for c in chunks)
    chunks = [c for c in chunks if len(c)] or list(chunks[:1])
    if not chunks:
        nbytes = _expected_nbytes(algorithm, bits) or 0
        empty = HashArray.empty(algorithm, 8 * nbytes)
        return HashList(empty, np.zeros(0, np.int64), None, skipped, ignored, low)
    hashes = HashArray.concat([c.hashes for c in chunks]) if len(chunks) > 1 \
        else chunks[0].hashes
    ids = np.concatenate([c.ids for c in chunks])
    keys = None
    if any(c.keys is not None for c in chunks):
        keys = np.concatenate([
            c.keys if c.keys is not None else np.full(len(c), None, dtype=object) for c in chunks
        ])
    return HashList(hashes, ids, keys, skipped, ignored, low)


# --------------------------------------------------------------------------------------
# public writing API


def _hex_rows(codes: np.ndarray) -> list[str]:
    width = 2 * codes.shape[1]
    text = codes.tobytes().hex()
    return [text[i:i + width] for i in range(0, len(text), width)]


def write_hash_list(
    path: str | os.PathLike[str],
    hashes: HashArray | HashList | np.ndarray,
    ids: np.ndarray | Sequence[int] | None = None,
    keys: Sequence[str] | np.ndarray | None = None,
    *,
    format: str | None = None,
    algorithm: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> None:
    """Write a hash list atomically: the old file stays intact if anything fails.

    ``hashes`` is a HashArray (its qualities are written where the format has a column), a
    :class:`HashList` (ids and keys taken from it) or a raw ``(n, bits/8)`` uint8 array with
    ``algorithm``. ``ids`` default to 0..n-1. Hex lines hold no ids, so they refuse ids other
    than 0..n-1 (use CSV, JSONL or Parquet for those). A None key is written as a NULL
    (JSON ``null``, a Parquet null) or, in formats without NULLs, as no key / an empty cell.
    Where there are qualities, CSV/TSV and JSON/JSONL also get ``quality_ok``: whether the
    quality is at least :data:`PDQ_MIN_QUALITY` (empty / absent where it is unknown).
    """
    path = Path(path)
    fmt = _resolve_format(path, format)
    if isinstance(hashes, HashList):
        ids = hashes.ids if ids is None else ids
        keys = hashes.keys if keys is None else keys
        hashes = hashes.hashes
    if not isinstance(hashes, HashArray):
        hashes = HashArray(np.asarray(hashes), algorithm or DEFAULT_ALGORITHM)
    n = len(hashes)
    default_ids = ids is None
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    if ids.shape != (n,):
        raise HashFormatError(f"{ids.shape[0]} ids for {n} hashes")
    if not default_ids and np.array_equal(ids, np.arange(n)):
        default_ids = True
    if keys is not None and len(keys) != n:
        raise HashFormatError(f"{len(keys)} keys for {n} hashes")
    quals = hashes.qualities
    if quals is not None and not (quals >= 0).any():
        quals = None
    if fmt == "parquet":
        _write_parquet(path, hashes, ids, keys, quals, chunk_rows)
        return
    if fmt == "hex" and not default_ids:
        raise HashFormatError(f"{path}: hex lines hold no ids; write ids 0..n-1 or use "
                              "csv, jsonl or parquet")
    with _atomic_text(path) as f:
        for start in range(0, n, chunk_rows) if n else ():
            stop = min(n, start + chunk_rows)
            texts = _hex_rows(hashes.codes[start:stop])
            k = None if keys is None else _key_texts(path, keys[start:stop])
            q = None if quals is None else quals[start:stop].tolist()
            if fmt == "hex":
                _write_hex_chunk(f, path, texts, k)
            elif fmt in ("jsonl", "json"):
                if fmt == "json":
                    f.write("[\n" if start == 0 else ",\n")
                _write_jsonl_chunk(f, hashes.algorithm, texts, ids[start:stop].tolist(), k, q,
                                   ",\n" if fmt == "json" else "\n")
            else:
                _write_csv_chunk(f, fmt, start == 0, hashes.algorithm, texts,
                                 ids[start:stop].tolist(), k, q, default_ids)
        if fmt == "json":
            f.write("\n]\n" if n else "[]\n")
        if n == 0 and fmt in ("csv", "tsv", "te"):
            _write_csv_chunk(f, fmt, True, hashes.algorithm, [], [], None if keys is None else [],
                             None, default_ids)


def _key_texts(path: Path, keys: Any) -> list[str | None]:
    """Keys as text (None stays None); a key too long to be read back is refused."""
    out = [None if k is None else str(k) for k in keys]
    for k in out:
        if k is not None and len(k) > MAX_LINE_CHARS // 2:
            raise HashFormatError(f"{path}: key {k[:40]!r}... has {len(k)} characters; keys "
                                  f"are limited to {MAX_LINE_CHARS // 2}")
    return out


def _write_hex_chunk(f: IO[str], path: Path, texts: list[str],
                     keys: list[str | None] | None) -> None:
    if keys is None:
        f.write("\n".join(texts) + "\n")
        return
    texts_k = ["" if k is None else k for k in keys]
    for k in texts_k:
        if "\n" in k or "\r" in k or k != k.strip():
            raise HashFormatError(f"{path}: key {k[:80]!r} has a line break or surrounding "
                                  "space, which hex lines cannot hold; use csv or jsonl")
    f.write("".join(f"{t} {k}\n" if k else f"{t}\n"
                    for t, k in zip(texts, texts_k, strict=True)))


def _write_jsonl_chunk(f: IO[str], algorithm: str, texts: list[str], ids: list[int],
                       keys: list[str | None] | None, quals: list[int] | None,
                       sep: str) -> None:
    out = io.StringIO()
    for i, t in enumerate(texts):
        if i:
            out.write(sep)
        obj: dict[str, Any] = {"hash": t, "id": ids[i], "algorithm": algorithm}
        if keys is not None:
            obj["key"] = keys[i]
        if quals is not None and quals[i] >= 0:
            obj["quality"] = quals[i]
            obj["quality_ok"] = quals[i] >= PDQ_MIN_QUALITY
        out.write(json.dumps(obj, ensure_ascii=False))
    if sep == "\n" and texts:
        out.write("\n")
    f.write(out.getvalue())


def _write_csv_chunk(f: IO[str], fmt: str, first: bool, algorithm: str, texts: list[str],
                     ids: list[int], keys: list[str | None] | None, quals: list[int] | None,
                     default_ids: bool) -> None:
    if keys is not None:
        keys = ["" if k is None else k for k in keys]  # CSV has no NULL
    # Python's csv quotes only line-terminator characters, so a lone "\r" in a key would
    # end the row on reading: quote every field of such a chunk.
    lone_cr = keys is not None and any("\r" in k for k in keys)  # type: ignore[operator]
    writer = csv.writer(f, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n",
                        quoting=csv.QUOTE_ALL if lone_cr else csv.QUOTE_MINIMAL)
    if fmt == "te":
        # ThreatExchange's columns first; id/key appended only when there is something to keep.
        header = list(_TE_COLUMNS) + ([] if default_ids else ["id"]) + \
            ([] if keys is None else ["key"])
        if first:
            writer.writerow(header)
        cols: list[Any] = [[algorithm] * len(texts), texts, [""] * len(texts),
                           [""] * len(texts), [""] * len(texts)]
        if not default_ids:
            cols.append(ids)
        if keys is not None:
            cols.append(keys)
    else:
        # The algorithm on every row makes the file self-describing (as the hash command's).
        header = ["hash", "id", "algorithm"] + ([] if keys is None else ["key"]) + \
            ([] if quals is None else ["quality", "quality_ok"])
        if first:
            writer.writerow(header)
        cols = [texts, ids, [algorithm] * len(texts)]
        if keys is not None:
            cols.append(keys)
        if quals is not None:
            cols.append(["" if q < 0 else q for q in quals])
            cols.append(["" if q < 0 else "true" if q >= PDQ_MIN_QUALITY else "false"
                         for q in quals])
    writer.writerows(zip(*cols, strict=True))


def _write_parquet(path: Path, hashes: HashArray, ids: np.ndarray, keys: Any,
                   quals: np.ndarray | None, chunk_rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    nbytes = hashes.codes.shape[1]
    fields = [pa.field("hash", pa.binary(nbytes), nullable=False),
              pa.field("id", pa.int64(), nullable=False)]
    if keys is not None:
        fields.append(pa.field("key", pa.string()))
    if quals is not None:
        fields.append(pa.field("quality", pa.int16()))
    schema = pa.schema(fields, metadata={_PARQUET_META: hashes.algorithm.encode(),
                                         b"hashlib_ext.bits": str(hashes.bits).encode()})
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        n = len(hashes)
        for start in range(0, n, chunk_rows) if n else ():
            stop = min(n, start + chunk_rows)
            flat = pa.py_buffer(np.ascontiguousarray(hashes.codes[start:stop]).tobytes())
            arrays = [pa.FixedSizeBinaryArray.from_buffers(pa.binary(nbytes), stop - start,
                                                           [None, flat]),
                      pa.array(ids[start:stop], pa.int64())]
            if keys is not None:
                arrays.append(pa.array(_key_texts(path, keys[start:stop]), pa.string()))
            if quals is not None:
                q = quals[start:stop]
                arrays.append(pa.array(q, pa.int16(), mask=q < 0))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        if n == 0:
            writer.write_table(schema.empty_table())
