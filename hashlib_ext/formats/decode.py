"""Decoding the fields of one chunk of records into numpy arrays: hashes, ids, keys,
qualities; malformed records are collected (lenient) or raised (strict)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import HashFormatError
from ..hash import HashArray
from .common import MAX_HASH_BYTES, MAX_LINE_CHARS, HashList

TOO_LONG = f"line longer than {MAX_LINE_CHARS} characters"


def bounded_lines(f: IO[str], dec: Decoder) -> Iterator[tuple[int, str | None]]:
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


def expected_nbytes(algorithm: str, bits: int | None) -> int | None:
    if bits is not None:
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits <= 0 \
                or bits % 8 or bits > 8 * MAX_HASH_BYTES:
            raise HashFormatError(f"bits must be a positive multiple of 8 up to "
                                  f"{8 * MAX_HASH_BYTES}, got {bits!r}")
        return int(bits) // 8
    from ..hashers import expected_bits

    known = expected_bits(algorithm)
    return None if known is None else known // 8


class Decoder:
    """State shared by the chunks of one file: width, skipped records, record numbering."""

    def __init__(self, path: Path, algorithm: str, nbytes: int | None, lenient: bool,
                 unit: str = "line", metadata: bool | tuple[str, ...] = True):
        self.path = path
        self.metadata = metadata  # which metadata columns to read (see formats.metadata)
        self.meta_names: set[str] = set()  # JSON: the metadata fields met so far
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
                if t and len(t) % 2 == 0 and len(t) <= 2 * MAX_HASH_BYTES and is_hex(t):
                    self.nbytes = len(t) // 2
                    break
            else:
                for line, t in zip(lines, texts, strict=True):
                    bad.append((line, hex_reason(t, None)))
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
            one = hex_bytes(t, self.nbytes)
            if one is None:
                bad.append((line, hex_reason(t, self.nbytes)))
            else:
                ok[i] = True
                rows.append(one)
        codes = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), self.nbytes)
        return codes, ok


def is_hex(t: str) -> bool:
    try:
        return len(bytes.fromhex(t)) * 2 == len(t)
    except ValueError:
        return False


def hex_bytes(t: str, nbytes: int) -> bytes | None:
    if len(t) != 2 * nbytes:
        return None
    try:
        raw = bytes.fromhex(t)
    except ValueError:
        return None
    return raw if len(raw) == nbytes else None


def hex_reason(t: str, nbytes: int | None) -> str:
    if not t:
        return "empty hash"
    shown = repr(t[:80]) + ("..." if len(t) > 80 else "")
    if nbytes is not None and len(t) != 2 * nbytes:
        return f"hash {shown} has {len(t)} characters, expected {2 * nbytes} ({8 * nbytes} bits)"
    return f"hash {shown} is not hexadecimal"


def digits(value: int) -> str:
    """An integer for a message, shortened when it is huge."""
    text = str(value) if value.bit_length() < 4000 else "(a huge number)"
    return text if len(text) <= 40 else text[:20] + "..." + text[-8:]


def parse_int(text: Any, what: str) -> tuple[int | None, str | None]:
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
        return None, f"{what} {digits(value)} does not fit in int64"
    return value, None


class Rows:
    """Fields of one chunk, column by column."""

    __slots__ = ("lines", "texts", "ids", "keys", "quals", "bad", "meta", "has_ids")

    def __init__(self) -> None:
        self.lines: list[int] = []
        self.texts: list[str] = []
        self.ids: list[int] = []
        self.keys: list[str | None] = []
        self.quals: list[int] = []
        self.bad: list[tuple[int, str]] = []
        self.meta: dict[str, list[str | None]] = {}
        self.has_ids = False  # whether any record carried its own id

    def add(self, dec: Decoder, line: int, text: str, id_: Any = None, key: str | None = None,
            quality: Any = None, meta: Mapping[str, str | None] | None = None) -> None:
        """One data record (``id_`` None: the record number; ``quality`` None or "": unknown;
        ``meta``: its metadata values, checked by the reader).

        Ids and qualities are kept raw and parsed for the whole chunk in :meth:`finish`.
        """
        record = dec.records
        dec.records += 1
        before = len(self.lines)
        self.lines.append(line)
        self.texts.append(text)
        if id_ is None:
            self.ids.append(record)
        else:
            self.ids.append(id_)
            self.has_ids = True
        self.keys.append(key)
        self.quals.append(-1 if quality is None or quality == "" else quality)
        if meta or self.meta:
            for name, col in self.meta.items():
                col.append(meta.get(name) if meta else None)
            if meta:
                for name, value in meta.items():
                    if name not in self.meta:
                        filled: list[str | None] = [None] * before
                        filled.append(value)
                        self.meta[name] = filled

    def __len__(self) -> int:
        return len(self.lines) + len(self.bad)

    def finish(self, dec: Decoder) -> HashList:
        ids, id_ok = int64_column(self.ids, self.lines, "id", self.bad)
        quals, q_ok = int64_column(self.quals, self.lines, "quality", self.bad, (0, 100))
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
        meta = {}
        for name, values in self.meta.items():
            col = np.empty(len(values), dtype=object)
            col[:] = values
            meta[name] = col[keep]
        nbytes = dec.nbytes or 0
        codes = codes.reshape(-1, nbytes) if codes.size == 0 else codes
        out = make_list(codes, dec.algorithm, ids[keep], keys, quals[keep].astype(np.int16),
                        meta)
        out.has_ids = self.has_ids
        return out


def int64_column(values: list[Any], lines: list[int], what: str, bad: list[tuple[int, str]],
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
        value, err = (v, None) if type(v) is int else parse_int(v, what)
        if value is None:
            err = err or f"{what} is missing"
        elif not -(1 << 63) <= value < (1 << 63):
            err = f"{what} {digits(value)} does not fit in int64"
        elif valid_range is not None and value != -1 and \
                not valid_range[0] <= value <= valid_range[1]:
            err = f"{what} {value} is outside {valid_range[0]}..{valid_range[1]}"
        if err is None and value is not None:
            out[i] = value
        else:
            ok[i] = False
            bad.append((lines[i], err or f"bad {what}"))
    return out, ok


def make_list(codes: np.ndarray, algorithm: str, ids: np.ndarray, keys: np.ndarray | None,
              quals: np.ndarray | None, metadata: dict[str, np.ndarray] | None = None
              ) -> HashList:
    """A chunk's HashList (qualities dropped when none is known)."""
    if quals is not None and not (quals >= 0).any():
        quals = None
    return HashList(HashArray(codes, algorithm, quals), ids, keys, metadata=metadata or {})
