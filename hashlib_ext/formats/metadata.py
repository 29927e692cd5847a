"""Metadata columns of hash lists: the extra columns a list carries beside hash, id, key and
quality (ThreatExchange's ``collab``, ``category``, ``tags``; any column of the user's).

Files are untrusted, so what is kept is bounded: at most :data:`MAX_METADATA_COLUMNS`
columns, names of at most :data:`MAX_METADATA_NAME` printable characters, values of at most
:data:`MAX_METADATA_CHARS` characters (a longer value is a malformed record, never cut).
In memory a column is an ``(n,)`` object array of ``str`` or ``None`` (no value).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HashFormatError
from .common import HASH_NAMES, ID_NAMES, KEY_NAMES, QUALITY_NAMES

MAX_METADATA_COLUMNS = 64
"""Most metadata columns read from (or written to) one hash list."""
MAX_METADATA_NAME = 64
"""Longest metadata column name, in characters."""
MAX_METADATA_CHARS = 8192
"""Longest metadata value, in characters; a longer one makes its record malformed."""

RESERVED_NAMES = frozenset(
    {*HASH_NAMES, *ID_NAMES, *KEY_NAMES, *QUALITY_NAMES, "quality_ok", "algorithm",
     "signal_type"})
"""Column names (compared in lower case) that are never metadata: the columns a reader
recognises as hash, id, key, quality or algorithm, and the ``quality_ok`` flag writers add."""

_NAME = re.compile(r"[^\x00-\x1f\x7f]{1," + str(MAX_METADATA_NAME) + "}")

MetadataRequest = bool | Sequence[str]
"""What ``metadata=`` asks for: True (every metadata column), False (none) or names."""

Metadata = dict[str, np.ndarray]
"""Column name -> ``(n,)`` object array of str or None."""


def name_ok(name: Any) -> bool:
    """Whether ``name`` can be a metadata column: 1..64 characters, no control characters,
    no surrounding white space."""
    return isinstance(name, str) and bool(_NAME.fullmatch(name)) and name == name.strip()


def is_reserved(name: str) -> bool:
    """Whether a column of this name is one a reader takes as hash, id, key, quality or
    algorithm (so never metadata)."""
    return name.strip().lower() in RESERVED_NAMES


def check_request(metadata: MetadataRequest) -> bool | tuple[str, ...]:
    """``metadata=`` checked: True, False, or a tuple of distinct usable names."""
    if isinstance(metadata, bool):
        return metadata
    if isinstance(metadata, (str, bytes)) or not isinstance(metadata, Sequence):
        raise HashFormatError(f"metadata must be True, False or a list of column names, got "
                              f"{metadata!r:.60}")
    names = tuple(metadata)
    for n in names:
        if not name_ok(n) or is_reserved(n):
            raise HashFormatError(f"metadata: {n!r:.60} is not a usable metadata column name")
    if len(set(names)) != len(names) or len(names) > MAX_METADATA_COLUMNS:
        raise HashFormatError(f"metadata: at most {MAX_METADATA_COLUMNS} distinct names")
    return names


def wanted(name: str, request: bool | tuple[str, ...]) -> bool:
    """Whether a column called ``name`` is read under ``request`` (reserved names never)."""
    if request is False or is_reserved(name):
        return False
    return True if request is True else name in request  # type: ignore[operator]


def select_columns(path: Path, header: Sequence[str], taken: set[int],
                   request: bool | tuple[str, ...]) -> list[tuple[int, str]]:
    """The metadata columns of a file with a fixed header (CSV/TSV, Parquet): ``(index,
    name)`` of every column that is not ``taken`` (hash, id, key, ...), not reserved and
    wanted. A header with unusable or repeated names among them, or more than
    :data:`MAX_METADATA_COLUMNS`, is refused; columns with an empty name are not metadata.
    Names asked for by ``request`` must be there."""
    if request is False:
        return []
    out: list[tuple[int, str]] = []
    for i, raw in enumerate(header):
        name = raw.strip()
        if i in taken or not name or not wanted(name, request):
            continue
        if not name_ok(name):
            raise HashFormatError(f"{path}: column {name[:40]!r} is not a usable metadata name "
                                  f"(1 to {MAX_METADATA_NAME} printable characters); read "
                                  "with metadata=False or name the columns to keep")
        if any(name == n for _, n in out):
            raise HashFormatError(f"{path}: column {name[:40]!r} appears more than once")
        out.append((i, name))
    if len(out) > MAX_METADATA_COLUMNS:
        raise HashFormatError(f"{path}: {len(out)} metadata columns; at most "
                              f"{MAX_METADATA_COLUMNS} are read (name the ones to keep, or "
                              "read with metadata=False)")
    if request is not True:
        missing = [n for n in request if n not in {name for _, name in out}]  # type: ignore[union-attr]
        if missing:
            raise HashFormatError(f"{path}: no metadata column {missing[0][:40]!r}")
    return out


def text_value(value: Any) -> tuple[str | None, str | None]:
    """A metadata value as text: (text or None, reason it is unusable or None). Strings as
    they are; JSON numbers, booleans, arrays and objects as their compact JSON text; None
    stays None."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if len(value) > MAX_METADATA_CHARS:
        return None, f"metadata value longer than {MAX_METADATA_CHARS} characters"
    return value, None


def as_column(values: Any, n: int, name: str) -> np.ndarray:
    """One metadata column as an ``(n,)`` object array of str or None (checked)."""
    col = np.empty(n, dtype=object)
    col[:] = list(values) if not isinstance(values, np.ndarray) else values
    for v in col:
        if v is not None and not isinstance(v, str):
            raise HashFormatError(f"metadata column {name!r}: values must be str or None, got "
                                  f"{type(v).__name__}")
    return col


def check_metadata(metadata: Mapping[str, Any] | None, n: int) -> Metadata:
    """Metadata given by a caller (a writer's argument, a HashList built by hand) checked:
    usable names, at most :data:`MAX_METADATA_COLUMNS`, ``n`` str-or-None values each."""
    if not metadata:
        return {}
    if not isinstance(metadata, Mapping):
        raise HashFormatError("metadata must be a mapping of column name -> values")
    if len(metadata) > MAX_METADATA_COLUMNS:
        raise HashFormatError(f"at most {MAX_METADATA_COLUMNS} metadata columns, got "
                              f"{len(metadata)}")
    out: Metadata = {}
    for name, values in metadata.items():
        if not name_ok(name) or is_reserved(name):
            raise HashFormatError(f"{name!r:.60} is not a usable metadata column name")
        if isinstance(values, (str, bytes)) or len(values) != n:
            raise HashFormatError(f"metadata column {name!r}: one value per hash ({n})")
        out[name] = as_column(values, n, name)
    return out


def take(metadata: Metadata, index: np.ndarray) -> Metadata:
    """The rows ``index`` of every column."""
    return {name: col[index] for name, col in metadata.items()}


def concat(parts: Sequence[tuple[Metadata, int]]) -> Metadata:
    """Join the metadata of consecutive chunks ``(metadata, rows)``: columns in order of first
    appearance, None where a chunk lacks a column."""
    names: list[str] = []
    for meta, _ in parts:
        names.extend(n for n in meta if n not in names)
    return {name: np.concatenate([meta[name] if name in meta
                                  else np.full(rows, None, dtype=object)
                                  for meta, rows in parts]) if parts
            else np.zeros(0, dtype=object)
            for name in names}
