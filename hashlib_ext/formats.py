"""Hash lists in and out: hex lines, CSV/TSV, JSONL, Parquet and ThreatExchange CSV.

A hash list is a :class:`HashList`: a :class:`~hashlib_ext.hash.HashArray`, an int64 id per
hash and optionally a string key per hash (a file path, a content id). Readers stream the
file in chunks and turn each chunk into numpy arrays at once, so a list of millions of
hashes never exists as millions of Python objects. A malformed record raises
:class:`~hashlib_ext.errors.HashFormatError` naming the file and line; with ``lenient=True``
it is skipped and listed in ``HashList.skipped`` instead — never silently dropped or
truncated. Writers are atomic (temporary file in the same folder, then ``os.replace``).

The formats (see docs/formats.md):

``hex``      one hash per line, optionally followed by whitespace and a key (the rest of the
             line); blank lines and lines starting with ``#`` are ignored.
``csv/tsv``  a header row naming the columns (``hash``, ``id``, ``key``/``path``, ``quality``)
             or no header (the hash in the first column).
``jsonl``    one object per line: ``{"hash": ..., "id": ..., "key": ..., "quality": ...}``.
``json``     a JSON array of such objects (what ``hashlib-ext hash --format json`` prints).
``parquet``  ``hash`` as fixed-size binary (or hex strings), ``id`` int64, optional ``key``
             and ``quality``; the algorithm is kept in the schema metadata.
``te``       ThreatExchange's CSV export, ``signal_type,signal_str,collab,category,tags``;
             rows of other signal types than the algorithm's are counted and ignored.

Records that name another algorithm (an ``algorithm`` column or field, as the ``hash``
command writes) are likewise counted in ``HashList.ignored`` and left out.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .atomic import atomic_path
from .errors import HashFormatError
from .hash import HashArray

FORMATS = ("hex", "csv", "tsv", "jsonl", "json", "parquet", "te")
DEFAULT_ALGORITHM = "pdq"
CHUNK_ROWS = 65536

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


@dataclass
class HashList:
    """Hashes read from (or to be written to) a hash-list file."""

    hashes: HashArray
    ids: np.ndarray
    """``(n,)`` int64, the caller's id of each hash."""
    keys: np.ndarray | None = None
    """``(n,)`` object array of str (e.g. file paths), or None when the file has none."""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """Lenient mode: (line number, reason) of every malformed record that was skipped."""
    ignored: int = 0
    """ThreatExchange CSV: rows of other signal types, which are not hashes of this list."""

    def __len__(self) -> int:
        return len(self.hashes)


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


def _resolve_format(path: Path, fmt: str | None) -> str:
    if fmt is None:
        return detect_format(path)
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


def _open_text(path: Path) -> IO[str]:
    _, gz = _strip_gz(path)
    try:
        # utf-8-sig: a byte-order mark (spreadsheet exports) must not hide the header.
        if gz:
            return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise HashFormatError(f"{path}: cannot open hash list: {e.strerror or e}") from None


# --------------------------------------------------------------------------------------
# decoding: text fields of one chunk -> numpy arrays


def _expected_nbytes(algorithm: str, bits: int | None) -> int | None:
    if bits is not None:
        if bits <= 0 or bits % 8:
            raise HashFormatError(f"bits must be a positive multiple of 8, got {bits}")
        return bits // 8
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
                if t and len(t) % 2 == 0 and _is_hex(t):
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
            raw = _hex_bytes(t, self.nbytes)
            if raw is None:
                bad.append((line, _hex_reason(t, self.nbytes)))
            else:
                ok[i] = True
                rows.append(raw)
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
        return None, f"{what} {value} does not fit in int64"
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
            keys = np.array(["" if k is None else k for k in self.keys], dtype=object)[keep]
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
        if err is None and not -(1 << 63) <= value < (1 << 63):  # type: ignore[operator]
            err = f"{what} {value} does not fit in int64"
        if err is None and valid_range is not None and value != -1 and \
                not valid_range[0] <= value <= valid_range[1]:  # type: ignore[operator]
            err = f"{what} {value} is outside {valid_range[0]}..{valid_range[1]}"
        if err is None:
            out[i] = value
        else:
            ok[i] = False
            bad.append((lines[i], err))
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
    for line_no, line in enumerate(f, 1):
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
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        if header and not 0 <= wanted < len(header):
            raise HashFormatError(f"{path}: {what} column {wanted} is out of range")
        return wanted
    lower = [h.strip().lower() for h in header]
    for name in [wanted] if wanted is not None else names:
        if name.lower() in lower:
            return lower.index(name.lower())
    if wanted is not None or required:
        raise HashFormatError(
            f"{path}: no {what} column {wanted or names[0]!r} in header {header[:12]}"
        )
    return None


def _iter_csv(f: IO[str], dec: _Decoder, chunk: int, delimiter: str, te: bool,
              header: bool | None, hash_column: str | int | None, id_column: str | int | None,
              key_column: str | int | None) -> Iterator[HashList]:
    reader = csv.reader(f, delimiter=delimiter)
    first: list[str] | None = None
    for first in reader:
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
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if t_col is not None and len(row) > t_col and row[t_col].strip() \
                and row[t_col].strip().lower() != algo:
            dec.ignored += 1
            continue
        if len(row) < need:
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
    rows.add(dec, line_no, text.strip(), obj.get("id"), None if key is None else str(key),
             obj.get("quality"))


def _iter_jsonl(f: IO[str], dec: _Decoder, chunk: int) -> Iterator[HashList]:
    rows = _Rows()
    for line_no, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            dec.records += 1
            rows.bad.append((line_no, f"invalid JSON ({e.msg})"))
        else:
            _add_object(rows, dec, line_no, obj)
        if len(rows) >= chunk:
            yield rows.finish(dec)
            rows = _Rows()
    if len(rows):
        yield rows.finish(dec)


def _iter_json(f: IO[str], dec: _Decoder, chunk: int) -> Iterator[HashList]:
    """A JSON array of objects (``hashlib-ext hash --format json``), or {"hashes": [...]}.

    Read whole (JSON has no streaming boundary); records are numbered as items from 1.
    """
    try:
        data = json.load(f)
    except ValueError as e:
        raise HashFormatError(f"{dec.path}: invalid JSON: {e}") from None
    if isinstance(data, dict) and isinstance(data.get("hashes"), list):
        data = data["hashes"]
    if not isinstance(data, list):
        raise HashFormatError(f"{dec.path}: expected a JSON array of hash objects")
    rows = _Rows()
    for item, obj in enumerate(data, 1):
        _add_object(rows, dec, item, obj)
        if len(rows) >= chunk:
            yield rows.finish(dec)
            rows = _Rows()
    if len(rows):
        yield rows.finish(dec)


def _parquet_algorithm(path: Path) -> str | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as e:
        raise HashFormatError(f"{path}: not a readable Parquet file ({e})") from None
    value = meta.get(_PARQUET_META)
    return value.decode() if value else None


def _iter_parquet(path: Path, dec: _Decoder, chunk: int, hash_column: str | None,
                  id_column: str | None, key_column: str | None) -> Iterator[HashList]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise HashFormatError(f"{path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    h_name = names[_column(names, hash_column, (*_HASH_NAMES, dec.algorithm), "hash", path,
                           required=True)]  # type: ignore[index]
    i = _column(names, id_column, _ID_NAMES, "id", path)
    k = _column(names, key_column, _KEY_NAMES, "key", path)
    q = _column(names, None, _QUALITY_NAMES, "quality", path)
    columns = [h_name] + [names[c] for c in (i, k, q) if c is not None]
    row0 = 0
    for batch in pf.iter_batches(batch_size=chunk, columns=columns):
        n = batch.num_rows
        rows_no = np.arange(row0 + 1, row0 + n + 1)
        bad: list[tuple[int, str]] = []
        ok = np.ones(n, bool)
        hcol = batch.column(h_name)
        codes = _parquet_codes(hcol, dec, rows_no, ok, bad)
        ids = np.arange(row0, row0 + n, dtype=np.int64)
        if i is not None:
            icol = batch.column(names[i])
            if not pa.types.is_integer(icol.type):
                raise HashFormatError(f"{path}: id column has type {icol.type}, expected int64")
            nulls = icol.is_null().to_numpy(zero_copy_only=False)
            for r in np.flatnonzero(nulls & ok):
                bad.append((int(rows_no[r]), "id is null"))
            ok &= ~nulls
            ids = icol.fill_null(0).cast(pa.int64()).to_numpy()
        quals = None
        if q is not None:
            quals = batch.column(names[q]).fill_null(-1).cast(pa.int16()).to_numpy()
        keys = None
        if k is not None:
            keys = np.array(batch.column(names[k]).fill_null("").cast(pa.string())
                            .to_pylist(), dtype=object)
        dec.fail(bad)
        row0 += n
        sel = np.flatnonzero(ok)
        yield _make_list(codes[sel], dec.algorithm, ids[sel],
                         None if keys is None else keys[sel],
                         None if quals is None else quals[sel])
    dec.records = row0


def _parquet_codes(col: Any, dec: _Decoder, rows_no: np.ndarray, ok: np.ndarray,
                   bad: list[tuple[int, str]]) -> np.ndarray:
    """``(n, nbytes)`` codes of one Parquet column chunk; clears ``ok`` for bad rows."""
    import pyarrow as pa

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
        codes = np.frombuffer(col.buffers()[1], np.uint8)[col.offset * w:(col.offset + n) * w]
        codes = codes.reshape(n, w)
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        values = col.to_pylist()
        if dec.nbytes is None:
            dec.nbytes = next((len(v) for v in values if v), None)
        w = dec.nbytes or 0
        codes = np.zeros((n, w), np.uint8)
        for r, v in enumerate(values):
            if v is None:
                continue
            if len(v) != w:
                ok[r] = False
                bad.append((int(rows_no[r]), f"hash has {len(v)} bytes, expected {w}"))
            else:
                codes[r] = np.frombuffer(v, np.uint8)
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        values = col.to_pylist()
        keep = np.flatnonzero(~nulls)
        good, good_mask = dec.hex_codes([int(rows_no[r]) for r in keep],
                                        [values[r].strip() for r in keep], bad)
        codes = np.zeros((n, dec.nbytes or 0), np.uint8)
        codes[keep[good_mask]] = good
        ok[keep[~good_mask]] = False
    else:
        raise HashFormatError(f"{dec.path}: hash column has type {t}; expected fixed-size "
                              "binary, binary or hex strings")
    for r in np.flatnonzero(nulls):
        bad.append((int(rows_no[r]), "hash is null"))
    ok &= ~nulls
    return codes


# --------------------------------------------------------------------------------------
# public reading API


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
) -> Iterator[HashList]:
    """Read a hash list in chunks of at most ``chunk_rows`` records (bounded memory).

    Each chunk is a :class:`HashList` (its ``skipped`` is empty); malformed records of the
    whole file are appended to ``skipped`` when that list is given (lenient mode).
    ``algorithm`` defaults to the one recorded in the file (Parquet metadata, ThreatExchange
    ``pdq`` rows) or ``"pdq"``; the hash width is the algorithm's (or ``bits``, or, for a
    name the registry does not know, the first hash's). See :func:`read_hash_list`.
    """
    path = Path(path)
    fmt = _resolve_format(path, format)
    if not path.is_file():
        raise HashFormatError(f"{path}: no such hash-list file")
    recorded = _parquet_algorithm(path) if fmt == "parquet" else None
    if algorithm and recorded and recorded != algorithm:
        raise HashFormatError(f"{path}: holds {recorded} hashes, not {algorithm}")
    algorithm = algorithm or _file_algorithm(path, fmt)
    dec = _Decoder(path, algorithm, _expected_nbytes(algorithm, bits), lenient,
                   unit="row" if fmt == "parquet" else "line")
    if fmt == "parquet":
        chunks = _iter_parquet(path, dec, chunk_rows, hash_column,  # type: ignore[arg-type]
                               id_column, key_column)  # type: ignore[arg-type]
        yield from _report(chunks, dec, skipped)
        return
    with _open_text(path) as f:
        try:
            if fmt == "hex":
                chunks = _iter_hex(f, dec, chunk_rows)
            elif fmt == "jsonl":
                chunks = _iter_jsonl(f, dec, chunk_rows)
            elif fmt == "json":
                dec.unit = "item"
                chunks = _iter_json(f, dec, chunk_rows)
            else:
                chunks = _iter_csv(f, dec, chunk_rows, "\t" if fmt == "tsv" else ",", fmt == "te",
                                   header, hash_column, id_column, key_column)
            yield from _report(chunks, dec, skipped)
        except UnicodeDecodeError as e:
            raise HashFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start} of "
                                  "a block); is the format right?") from None
        except csv.Error as e:
            raise HashFormatError(f"{path}: malformed CSV: {e}") from None


def _report(chunks: Iterator[HashList], dec: _Decoder,
            skipped: list[tuple[int, str]] | None) -> Iterator[HashList]:
    for chunk in chunks:
        if skipped is not None:
            skipped.extend(dec.skipped)
        chunk.ignored, dec.ignored = dec.ignored, 0
        dec.skipped = []
        yield chunk
    if dec.ignored or dec.skipped:  # records after the last chunk that held none
        if skipped is not None:
            skipped.extend(dec.skipped)
        empty = _make_list(np.zeros((0, dec.nbytes or 0), np.uint8), dec.algorithm,
                           np.zeros(0, np.int64), None, None)
        empty.ignored, dec.ignored, dec.skipped = dec.ignored, 0, []
        yield empty


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
) -> HashList:
    """Read a whole hash list: hashes, int64 ids, optional keys.

    ``format`` is one of :data:`FORMATS`, else taken from the extension. A malformed record
    (wrong length, non-hex, bad id, short CSV row, invalid JSON) raises
    :class:`HashFormatError` with the file and line number; ``lenient=True`` skips it and
    lists ``(line, reason)`` in the result's ``skipped``.

    CSV/TSV: ``header`` None detects a header row (a cell naming a known column: ``hash``,
    ``signal_str``, ``id``, ``key``, ``path``, ``quality``, ...). Columns are chosen by
    ``hash_column`` / ``id_column`` / ``key_column`` (a name, or a 0-based index), else by
    those names; without a header the hash is the first column.
    """
    skipped: list[tuple[int, str]] = []
    chunks = list(iter_hash_list(
        path, algorithm, format=format, lenient=lenient, bits=bits, header=header,
        hash_column=hash_column, id_column=id_column, key_column=key_column,
        chunk_rows=chunk_rows, skipped=skipped))
    if chunks:
        algorithm = chunks[0].hashes.algorithm
    else:
        algorithm = algorithm or _file_algorithm(Path(path), _resolve_format(Path(path), format))
    return concat_lists(chunks, algorithm, bits, skipped)


def _file_algorithm(path: Path, fmt: str) -> str:
    """The algorithm a file records (Parquet metadata, a JSONL ``algorithm`` field), or pdq."""
    found = None
    if fmt == "parquet":
        with contextlib.suppress(Exception):  # an unreadable file is reported when read
            found = _parquet_algorithm(path)
    elif fmt in ("csv", "tsv") and path.is_file():
        with contextlib.suppress(ValueError, OSError, csv.Error, IndexError), _open_text(path) as f:
            reader = csv.reader(f, delimiter="\t" if fmt == "tsv" else ",")
            head = [c.strip().lower() for c in next(reader, [])]
            first = next(reader, [])
            if "algorithm" in head and "signal_type" not in head:
                found = first[head.index("algorithm")].strip()
    elif fmt == "json" and path.is_file():
        with contextlib.suppress(ValueError, OSError), _open_text(path) as f:
            data = json.load(f)
            data = data.get("hashes") if isinstance(data, dict) else data
            if isinstance(data, list) and data and isinstance(data[0], dict):
                found = data[0].get("algorithm")
    elif fmt == "jsonl" and path.is_file():
        with contextlib.suppress(ValueError, OSError), _open_text(path) as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        found = obj.get("algorithm")
                    break
    return found if isinstance(found, str) and found else DEFAULT_ALGORITHM


def concat_lists(chunks: Sequence[HashList], algorithm: str, bits: int | None = None,
                 skipped: list[tuple[int, str]] | None = None) -> HashList:
    """Join chunks (as :func:`iter_hash_list` yields them) into one :class:`HashList`."""
    skipped = list(skipped or [])
    ignored = sum(c.ignored for c in chunks)
    chunks = [c for c in chunks if len(c)] or list(chunks[:1])
    if not chunks:
        nbytes = _expected_nbytes(algorithm, bits) or 0
        empty = HashArray.empty(algorithm, 8 * nbytes)
        return HashList(empty, np.zeros(0, np.int64), None, skipped, ignored)
    hashes = HashArray.concat([c.hashes for c in chunks]) if len(chunks) > 1 \
        else chunks[0].hashes
    ids = np.concatenate([c.ids for c in chunks])
    keys = None
    if any(c.keys is not None for c in chunks):
        keys = np.concatenate([
            c.keys if c.keys is not None else np.full(len(c), "", dtype=object) for c in chunks
        ])
    return HashList(hashes, ids, keys, skipped, ignored)


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
    than 0..n-1 (use CSV, JSONL or Parquet for those).
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
            k = None if keys is None else [str(x) for x in keys[start:stop]]
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


def _write_hex_chunk(f: IO[str], path: Path, texts: list[str], keys: list[str] | None) -> None:
    if keys is None:
        f.write("\n".join(texts) + "\n")
        return
    for k in keys:
        if "\n" in k or "\r" in k or k != k.strip():
            raise HashFormatError(f"{path}: key {k[:80]!r} has a line break or surrounding "
                                  "space, which hex lines cannot hold; use csv or jsonl")
    f.write("".join(f"{t} {k}\n" if k else f"{t}\n" for t, k in zip(texts, keys, strict=True)))


def _write_jsonl_chunk(f: IO[str], algorithm: str, texts: list[str], ids: list[int],
                       keys: list[str] | None, quals: list[int] | None, sep: str) -> None:
    out = io.StringIO()
    for i, t in enumerate(texts):
        if i:
            out.write(sep)
        obj: dict[str, Any] = {"hash": t, "id": ids[i], "algorithm": algorithm}
        if keys is not None:
            obj["key"] = keys[i]
        if quals is not None and quals[i] >= 0:
            obj["quality"] = quals[i]
        out.write(json.dumps(obj, ensure_ascii=False))
    if sep == "\n" and texts:
        out.write("\n")
    f.write(out.getvalue())


def _write_csv_chunk(f: IO[str], fmt: str, first: bool, algorithm: str, texts: list[str],
                     ids: list[int], keys: list[str] | None, quals: list[int] | None,
                     default_ids: bool) -> None:
    # Python's csv quotes only line-terminator characters, so a lone "\r" in a key would
    # end the row on reading: quote every field of such a chunk.
    lone_cr = keys is not None and any("\r" in k for k in keys)
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
            ([] if quals is None else ["quality"])
        if first:
            writer.writerow(header)
        cols = [texts, ids, [algorithm] * len(texts)]
        if keys is not None:
            cols.append(keys)
        if quals is not None:
            cols.append(["" if q < 0 else q for q in quals])
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
                arrays.append(pa.array([str(k) for k in keys[start:stop]], pa.string()))
            if quals is not None:
                q = quals[start:stop]
                arrays.append(pa.array(q, pa.int16(), mask=q < 0))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        if n == 0:
            writer.write_table(schema.empty_table())
