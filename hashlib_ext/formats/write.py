"""The public writing API: :class:`HashListWriter` (chunk by chunk, bounded memory) and
:func:`write_hash_list` (a whole list), atomic, in every format.

What a writer writes is its :class:`Layout`: whether there is a key column, a quality
column, which metadata columns, whether ids need a column of their own (ThreatExchange CSV,
hex lines), and optionally the exact columns and their names (CSV/TSV/JSON/JSONL). The
layout is fixed before the first row: given, or taken from the first chunk written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from ..atomic import atomic_path
from ..errors import HashFormatError
from ..hash import HashArray
from .common import (
    CHUNK_ROWS,
    DEFAULT_ALGORITHM,
    TE_COLUMNS,
    HashList,
    open_text_output,
    resolve_format,
    strip_gz,
)
from .metadata import check_metadata
from .textwrite import ROLES, TextRows, check_metadata_values

HEADER_FORMATS = ("csv", "tsv", "te", "parquet")
"""Formats whose columns are fixed by a header or schema before the first row."""


@dataclass(frozen=True)
class Layout:
    """The columns a :class:`HashListWriter` writes."""

    keys: bool = False
    """A key column (``key``; a ``path`` column in the ``hash`` command's layout)."""
    qualities: bool = False
    """A quality column (and ``quality_ok`` in CSV/TSV/JSON/JSONL)."""
    metadata: tuple[str, ...] = ()
    """The metadata columns, in order."""
    ids: bool = True
    """Whether the ids are other than the record numbers 0, 1, ... . ThreatExchange CSV
    gets an ``id`` column only then; hex lines, which hold no ids, refuse them."""
    columns: tuple[str, ...] | None = None
    """CSV/TSV/JSON/JSONL only: exactly these columns, in this order, every one on every
    row (empty / null where unknown). Names: ``hash`` (or ``hex``, ``signal_str``), ``id``,
    ``algorithm``, ``key`` (or ``path``), ``quality``, ``quality_ok`` and metadata names.
    Default: ``hash,id,algorithm[,key][,quality,quality_ok][,metadata...]``, optional
    JSON fields left out where unknown."""

    @classmethod
    def of(cls, hl: HashList, start: int = 0) -> Layout:
        """The layout that holds everything of ``hl`` (its ids compared with the record
        numbers from ``start``)."""
        q = hl.hashes.qualities
        return cls(keys=hl.keys is not None, qualities=q is not None and bool((q >= 0).any()),
                   metadata=tuple(hl.metadata),
                   ids=not np.array_equal(hl.ids, np.arange(start, start + len(hl))))


def slice_list(hl: HashList, start: int, stop: int) -> HashList:
    """Rows ``start:stop`` of ``hl``."""
    return HashList(hl.hashes[start:stop], hl.ids[start:stop],
                    None if hl.keys is None else hl.keys[start:stop],
                    metadata={k: v[start:stop] for k, v in hl.metadata.items()})


class HashListWriter:
    """Writes a hash list chunk by chunk: to a path, atomically (a temporary file renamed
    into place by :meth:`close`; any failure, or :meth:`abort`, leaves the old file as it
    was), or to an open text stream (not Parquet).

    ``format`` is one of :data:`FORMATS` (default: from the path's extension; ``.gz``
    compresses text formats). ``layout`` fixes the columns (default: those of the first
    chunk). ``algorithm`` / ``bits`` describe an empty list; ``name`` is what messages call
    the destination (default: its path or the stream's name). Use as a context manager::

        with HashListWriter("out.parquet", layout=Layout(keys=True)) as w:
            for chunk in iter_hash_list("in.csv"):
                w.write(chunk)
    """

    def __init__(self, dest: str | os.PathLike[str] | IO[str], format: str | None = None, *,
                 layout: Layout | None = None, algorithm: str | None = None,
                 bits: int | None = None, chunk_rows: int = CHUNK_ROWS,
                 name: str | None = None):
        if isinstance(dest, (str, os.PathLike)):
            self.path: Path | None = Path(dest)
            self.fmt = resolve_format(self.path, format)
            self.shown = name or str(dest)
            self.gz = strip_gz(self.path)[1]
        else:
            self.path = None
            if format is None:
                raise HashFormatError("writing to a stream needs a format")
            self.fmt = resolve_format(Path("-"), format)
            self.shown = name or str(getattr(dest, "name", "<stream>"))
            self.gz = False
            if self.fmt == "parquet":
                raise HashFormatError("Parquet is written to a file, not to a stream")
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise HashFormatError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        self.chunk_rows = chunk_rows
        self.algorithm = algorithm
        self.bits = bits
        self.layout: Layout | None = None
        self.count = 0
        self._rows: TextRows | None = None
        self._sink: Any = None
        self._stack = contextlib.ExitStack()
        self._closed = False
        if layout is not None:
            self._set_layout(layout)
        self._tmp: Path | None = None
        self._f: IO[str] | None = None if self.path is not None else dest  # type: ignore[assignment]
        if self.path is not None:
            self._tmp = self._stack.enter_context(atomic_path(self.path))
            if self.fmt != "parquet":
                try:
                    # Undecodable bytes of file names (lone surrogates) are written as the
                    # bytes they stand for, as the file system holds them.
                    self._f = self._stack.enter_context(open_text_output(
                        self._tmp, Path(self.path), self.gz, errors="surrogateescape"))
                except BaseException:
                    self.abort()
                    raise

    # -- layout ----------------------------------------------------------------------------
    def _set_layout(self, layout: Layout) -> None:
        if layout.columns is not None:
            if self.fmt not in ("csv", "tsv", "json", "jsonl"):
                raise HashFormatError(f"{self.shown}: {self.fmt} has fixed columns; named "
                                      "columns are for csv, tsv, json and jsonl")
            for c in layout.columns:
                if c not in ROLES and c not in layout.metadata:
                    raise HashFormatError(f"{self.shown}: unknown column {c!r}")
        if self.fmt == "hex" and layout.metadata:
            raise HashFormatError(
                f"{self.shown}: hex lines hold no metadata ({', '.join(layout.metadata[:5])}); "
                "use csv, tsv, jsonl, json, parquet or te, or leave the metadata out")
        if self.fmt == "hex" and layout.ids:
            raise HashFormatError(f"{self.shown}: hex lines hold no ids; write ids 0..n-1 or "
                                  "use csv, jsonl or parquet")
        reserved = {"hash", "id", "algorithm", "key", "quality", "quality_ok", *TE_COLUMNS[:2]}
        for name in layout.metadata:
            if name.lower() in reserved:
                raise HashFormatError(f"{self.shown}: metadata column {name!r} would clash "
                                      "with a column of the list")
        self.layout = layout

    def _start(self, chunk: HashList | None) -> None:
        """Fix the layout and algorithm (from ``chunk`` where not given) and write the
        header."""
        if self.layout is None:
            self._set_layout(Layout.of(chunk) if chunk is not None else Layout(ids=False))
        assert self.layout is not None
        if self.algorithm is None:
            self.algorithm = chunk.hashes.algorithm if chunk is not None else DEFAULT_ALGORITHM
        if self.fmt == "parquet":
            from .parquet_write import ParquetSink

            if chunk is not None:
                nbytes = chunk.hashes.codes.shape[1]
            else:
                from .decode import expected_nbytes

                nbytes = (self.bits // 8 if self.bits else None) \
                    or expected_nbytes(self.algorithm, None) or 0
            lay = self.layout
            assert self._tmp is not None
            self._sink = ParquetSink(self._tmp, self.shown, self.algorithm, nbytes, lay.keys,
                                     lay.qualities, lay.metadata, ids=lay.ids)
        else:
            assert self._f is not None
            self._rows = TextRows(self._f, self.fmt, self.shown, self.layout)
            self._rows.header()

    def _check(self, chunk: HashList) -> None:
        lay = self.layout
        assert lay is not None
        if chunk.keys is not None and not lay.keys:
            raise HashFormatError(f"{self.shown}: the list was started without keys")
        extra = [m for m in chunk.metadata if m not in lay.metadata]
        if extra:
            raise HashFormatError(f"{self.shown}: metadata column {extra[0]!r} is not among "
                                  "the list's columns")
        q = chunk.hashes.qualities
        if q is not None and not lay.qualities and self.fmt not in ("hex", "te") \
                and bool((q >= 0).any()):
            raise HashFormatError(f"{self.shown}: the list was started without qualities")
        if self.fmt in ("parquet", "hex") and chunk.hashes.algorithm != self.algorithm:
            raise HashFormatError(f"{self.shown}: {self.fmt} holds one algorithm "
                                  f"({self.algorithm}), not also {chunk.hashes.algorithm}")
        if (self.fmt == "hex" or (self.fmt == "te" and not lay.ids)) and not np.array_equal(
                chunk.ids, np.arange(self.count, self.count + len(chunk))):
            what = "hex lines hold no ids" if self.fmt == "hex" else \
                "the ThreatExchange list was started without an id column"
            raise HashFormatError(f"{self.shown}: {what}; write ids 0..n-1 or use csv, "
                                  "jsonl or parquet")
        check_metadata_values(self.shown, chunk.metadata)

    # -- writing -----------------------------------------------------------------------------
    def write(self, chunk: HashList) -> None:
        """Append the rows of ``chunk``."""
        self.write_interleaved([chunk])

    def write_interleaved(self, chunks: Sequence[HashList]) -> None:
        """Append row 0 of every chunk, then row 1 of every chunk, ...: one record per input
        and algorithm (the chunks are the same inputs hashed with several algorithms; the
        ids, keys and metadata are the first chunk's). Only formats with an algorithm
        column (CSV/TSV/JSON/JSONL, ThreatExchange's signal_type) hold several."""
        if self._closed:
            raise HashFormatError(f"{self.shown}: the writer is closed")
        if not chunks:
            return
        n = len(chunks[0])
        if any(len(c) != n for c in chunks):
            raise HashFormatError("interleaved chunks must have the same length")
        if self.layout is None or (self._rows is None and self._sink is None):
            self._start(chunks[0])
        for c in chunks:
            self._check(c)
        for start in range(0, n, self.chunk_rows):
            stop = min(n, start + self.chunk_rows)
            parts = [slice_list(c, start, stop) if (start, stop) != (0, n) else c
                     for c in chunks]
            if self._sink is not None:
                for p in parts:
                    self._sink.write(p)
            else:
                assert self._rows is not None
                self._rows.write(parts, self.count)
            self.count += stop - start

    def close(self) -> None:
        """Finish the list (header and trailer even when empty) and, for a path, rename it
        into place."""
        if self._closed:
            return
        try:
            if self._rows is None and self._sink is None:
                self._start(None)
            if self._sink is not None:
                self._sink.close()
            elif self._rows is not None:
                self._rows.trailer()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._stack.close()

    def abort(self) -> None:
        """Stop without replacing the destination (the temporary file is removed)."""
        if self._closed:
            return
        self._closed = True
        if self._sink is not None:
            self._sink.abort()
        stop = RuntimeError("hash list writer aborted")  # only ever seen by atomic_path
        with contextlib.suppress(RuntimeError):
            self._stack.__exit__(RuntimeError, stop, None)

    def __enter__(self) -> HashListWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def as_hash_list(hashes: HashArray | HashList | np.ndarray, ids: Any = None, keys: Any = None,
                 metadata: Any = None, algorithm: str | None = None) -> HashList:
    """The arguments of :func:`write_hash_list` as one checked :class:`HashList`."""
    if isinstance(hashes, HashList):
        ids = hashes.ids if ids is None else ids
        keys = hashes.keys if keys is None else keys
        metadata = hashes.metadata if metadata is None else metadata
        hashes = hashes.hashes
    if not isinstance(hashes, HashArray):
        hashes = HashArray(np.asarray(hashes), algorithm or DEFAULT_ALGORITHM)
    n = len(hashes)
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    if ids.shape != (n,):
        raise HashFormatError(f"{ids.shape[0]} ids for {n} hashes")
    if keys is not None:
        if len(keys) != n:
            raise HashFormatError(f"{len(keys)} keys for {n} hashes")
        arr = np.empty(n, dtype=object)
        arr[:] = list(keys)
        keys = arr
    return HashList(hashes, ids, keys, metadata=check_metadata(metadata, n))


def write_hash_list(
    path: str | os.PathLike[str],
    hashes: HashArray | HashList | np.ndarray,
    ids: np.ndarray | Sequence[int] | None = None,
    keys: Sequence[str] | np.ndarray | None = None,
    *,
    format: str | None = None,
    algorithm: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    metadata: dict[str, Any] | None = None,
    columns: Sequence[str] | None = None,
) -> None:
    """Write a hash list atomically: the old file stays intact if anything fails.

    ``hashes`` is a HashArray (its qualities are written where the format has a column), a
    :class:`HashList` (ids, keys and metadata taken from it) or a raw ``(n, bits/8)`` uint8
    array with ``algorithm``. ``ids`` default to 0..n-1. Hex lines hold no ids, so they
    refuse ids other than 0..n-1 (use CSV, JSONL or Parquet for those), and no metadata. A
    None key is written as a NULL (JSON ``null``, a Parquet null) or, in formats without
    NULLs, as no key / an empty cell. Where there are qualities, CSV/TSV and JSON/JSONL also
    get ``quality_ok``: whether the quality is at least :data:`PDQ_MIN_QUALITY` (empty /
    absent where it is unknown). ``metadata``: column name -> one str-or-None per hash
    (default: the HashList's), written as extra columns (JSON fields; ThreatExchange's
    ``collab``, ``category``, ``tags`` in their places). ``columns``: see
    :attr:`Layout.columns`.
    """
    hl = as_hash_list(hashes, ids, keys, metadata, algorithm)
    layout = Layout.of(hl)
    if columns is not None:
        layout = Layout(layout.keys, layout.qualities, layout.metadata, layout.ids,
                        tuple(columns))
    with HashListWriter(path, format, layout=layout, algorithm=hl.hashes.algorithm,
                        bits=hl.hashes.bits, chunk_rows=chunk_rows) as w:
        if len(hl):
            w.write(hl)
