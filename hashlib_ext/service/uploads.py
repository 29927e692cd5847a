"""Hashes to add, from a JSON body or an uploaded hash-list file.

JSON: ``{"hashes": [HEX | {"hash": HEX, "key": K, "metadata": {COLUMN: VALUE}}, ...]}``.
Files (the raw body, or a multipart ``file`` field): any format
:func:`hashlib_ext.formats.read_hash_list` reads (hex lines, CSV/TSV, JSONL, JSON,
Parquet, ThreatExchange CSV; gzip-compressed too). The library reader is path-based, so an
upload is written to a private temporary folder first, and error messages name the upload,
not that file. Metadata columns (ThreatExchange's ``collab``, ``category``, ``tags``) come
from the reader where it returns them (``HashList.metadata``); a reader without them drops
those columns, and :func:`te_metadata` then reads them here and lines them up with the
records the reader kept (checked hash by hash).
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import HashFormatError
from .errors import bad_request, unsupported_media_type

CONTENT_TYPES = {
    "text/csv": "csv", "text/tab-separated-values": "tsv", "text/plain": "hex",
    "application/x-ndjson": "jsonl", "application/jsonl": "jsonl",
    "application/vnd.apache.parquet": "parquet", "application/x-parquet": "parquet",
}
_SUFFIX = {"hex": ".txt", "csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "json": ".json",
           "parquet": ".parquet", "te": ".csv"}
_TE_SKIP = {"signal_type", "signal_str"}


@dataclass
class Additions:
    """Codes to add, with optional keys and metadata columns (one value per code)."""

    codes: np.ndarray
    keys: list[str | None] | None = None
    metadata: dict[str, list[str | None]] | None = None


def codes_from_hex(texts: Any, nbytes: int, what: str = "hashes") -> np.ndarray:
    """``(n, nbytes)`` uint8 codes of a list of hex strings (400 naming the first bad one)."""
    if not isinstance(texts, list):
        raise bad_request(f"{what} must be a list of hex strings")
    width = 2 * nbytes
    if all(isinstance(t, str) and len(t) == width for t in texts):
        try:
            raw = bytes.fromhex("".join(texts))
        except ValueError:
            raw = b""
        if len(raw) == nbytes * len(texts):
            return np.frombuffer(raw, np.uint8).reshape(len(texts), nbytes).copy()
    for i, t in enumerate(texts):
        if not isinstance(t, str) or len(t) != width or \
                not re.fullmatch(r"[0-9A-Fa-f]*", t):
            shown = repr(t[:80]) if isinstance(t, str) else type(t).__name__
            raise bad_request(f"{what}[{i}]: expected {width} hex digits ({nbytes * 8} bits), "
                             f"got {shown}")
    raise bad_request(f"{what}: malformed hex")  # pragma: no cover - caught above


def from_json(body: Any, nbytes: int) -> Additions:
    """:class:`Additions` from a parsed JSON body (see the module docstring)."""
    if not isinstance(body, dict) or "hashes" not in body:
        raise bad_request('expected a JSON object {"hashes": [...]}')
    items = body["hashes"]
    if not isinstance(items, list):
        raise bad_request('"hashes" must be a list')
    texts: list[Any] = []
    keys: list[str | None] = []
    rows: list[dict[str, Any] | None] = []
    any_key = False
    for i, item in enumerate(items):
        if isinstance(item, dict):
            extra = set(item) - {"hash", "key", "metadata"}
            if extra:
                raise bad_request(f"hashes[{i}]: unknown field {sorted(extra)[0]!r}")
            texts.append(item.get("hash"))
            key = item.get("key")
            if key is not None and not isinstance(key, str):
                raise bad_request(f"hashes[{i}].key must be a string")
            any_key = any_key or key is not None
            keys.append(key)
            meta = item.get("metadata")
            if meta is not None and (not isinstance(meta, dict) or not all(
                    isinstance(v, str) or v is None for v in meta.values())):
                raise bad_request(f"hashes[{i}].metadata must map names to strings")
            rows.append(meta)
        else:
            texts.append(item)
            keys.append(None)
            rows.append(None)
    codes = codes_from_hex(texts, nbytes)
    columns: dict[str, list[str | None]] = {}
    for row in rows:
        for name in row or ():
            columns.setdefault(name, [])
    for name, values in columns.items():
        values.extend(None if row is None else row.get(name) for row in rows)
    return Additions(codes, keys if any_key else None, columns or None)


def format_of(content_type: str | None, given: str | None) -> str:
    """The hash-list format named by the ``format`` parameter, else by the content type."""
    from ..formats import FORMATS

    if given:
        fmt = {"threatexchange": "te", "hma": "te", "ndjson": "jsonl", "txt": "hex"}.get(
            given.lower(), given.lower())
        if fmt not in FORMATS:
            raise bad_request(f"unknown hash-list format {given[:40]!r}; known: "
                             f"{', '.join(FORMATS)}")
        return fmt
    base = (content_type or "").split(";")[0].strip().lower()
    if base in CONTENT_TYPES:
        return CONTENT_TYPES[base]
    raise unsupported_media_type(
        f"cannot tell the hash-list format from the content type {base or '(none)'!r}: pass "
        f"?format= (one of {', '.join(FORMATS)}) or send text/csv, text/plain (hex lines), "
        "application/x-ndjson, application/json")


def from_file(data: bytes, fmt: str, algorithm: str | None, bits: int,
              name: str = "upload") -> Additions:
    """:class:`Additions` from the bytes of a hash-list file of format ``fmt``."""
    from ..formats import read_hash_list

    gz = data[:2] == b"\x1f\x8b"
    with tempfile.TemporaryDirectory(prefix="hashlib-ext-upload-") as tmp:
        path = os.path.join(tmp, "upload" + _SUFFIX[fmt] + (".gz" if gz else ""))
        with open(path, "wb") as f:
            f.write(data)
        try:
            got = read_hash_list(path, algorithm or None, format=fmt,
                                 bits=None if algorithm else bits)
        except HashFormatError as e:
            raise bad_request(str(e).replace(path, name)) from None
    if got.hashes.bits != bits:
        raise bad_request(f"{name}: holds {got.hashes.bits}-bit hashes; the bank holds "
                         f"{bits}-bit ones")
    codes = np.ascontiguousarray(got.hashes.codes, np.uint8)
    keys = None if got.keys is None else [str(k) if k else None for k in got.keys]
    metadata = None
    columns = getattr(got, "metadata", None)  # hash lists read with metadata columns
    if columns:
        metadata = {str(c): [None if v is None else str(v) for v in values]
                    for c, values in columns.items()}
    elif fmt in ("te", "csv") and not gz and _is_te(data):
        metadata = te_metadata(data, algorithm or "pdq", got.ids, codes, name)
    return Additions(codes, keys, metadata)


def _is_te(data: bytes) -> bool:
    head = data[:200].decode("utf-8-sig", "replace").lstrip().lower()
    return head.startswith("signal_type,signal_str")


def te_metadata(data: bytes, algorithm: str, ids: np.ndarray, codes: np.ndarray,
                name: str) -> dict[str, list[str | None]] | None:
    """The ThreatExchange columns other than ``signal_type``/``signal_str`` (``collab``,
    ``category``, ``tags``, ...) of each record the reader kept, by record number (the
    reader numbers the records of ``algorithm`` from 0, blank rows and other signal types
    not counted)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        return None
    names = [c.strip() for c in header]
    lower = [c.lower() for c in names]
    extra = [j for j, c in enumerate(lower) if c not in _TE_SKIP and c]
    if not extra:
        return None
    algo = algorithm.lower()
    records: list[list[str]] = []
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        kind = row[0].strip().lower()
        if kind and kind != algo:
            continue
        records.append(row)
    columns: dict[str, list[str | None]] = {names[j]: [] for j in extra}
    hexes = [bytes(c).hex() for c in codes]
    for pos, rid in enumerate(ids.tolist()):
        record = records[rid] if 0 <= rid < len(records) else None
        if record is None or len(record) < 2 or record[1].strip().lower() != hexes[pos]:
            raise bad_request(f"{name}: could not line up the ThreatExchange columns with "
                             f"record {rid}")
        for j in extra:
            value = record[j].strip() if j < len(record) else ""
            columns[names[j]].append(value or None)
    return columns
