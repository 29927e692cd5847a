"""The public reading API: :func:`iter_hash_list` (chunks), :func:`read_hash_list` (whole),
:func:`concat_lists`."""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import HashFormatError
from ..hash import HashArray
from .common import (
    ALGORITHM_NAME,
    CHUNK_ROWS,
    DEFAULT_ALGORITHM,
    HashList,
    open_text,
    resolve_format,
    short_text,
)
from .decode import Decoder, bounded_lines, expected_nbytes, make_list
from .jsonstream import JsonStream, iter_json
from .metadata import MetadataRequest, check_request, take
from .metadata import concat as concat_metadata
from .parquet import ParquetList, iter_parquet
from .text import iter_csv, iter_hex, iter_jsonl


def where(dec: Decoder | None) -> str:
    return f", {dec.unit} {dec.line}" if dec is not None and dec.line else ""


def is_library_failure(e: BaseException) -> bool:
    """Whether ``e`` is one of the failures a hostile file can provoke in the libraries we
    read with (decoders, gzip, csv, json, pyarrow), rather than a bug of ours."""
    if isinstance(e, HashFormatError):
        return False
    if type(e).__module__.split(".")[0] == "pyarrow":
        return True
    return isinstance(e, (ValueError, TypeError, KeyError, IndexError, OverflowError, OSError,
                          EOFError, RecursionError, MemoryError, csv.Error, zlib.error,
                          NotImplementedError))


def failure_reason(e: BaseException) -> str:
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text ({e.reason}); is the format right?"
    if isinstance(e, csv.Error):
        return f"malformed CSV: {short_text(e)}"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, MemoryError):
        return "too large to read into memory"
    if isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile)):
        return f"corrupt or truncated gzip data ({short_text(e)})"
    if type(e).__module__.split(".")[0] == "pyarrow":
        return f"unreadable Parquet data ({short_text(e)})"
    return f"unreadable ({type(e).__name__}: {short_text(e)})"


def check_min_quality(min_quality: int | None) -> int | None:
    if min_quality is None:
        return None
    if isinstance(min_quality, bool) or not isinstance(min_quality, (int, np.integer)) \
            or not 0 <= min_quality <= 100:
        raise HashFormatError(f"min_quality must be an integer 0..100 or None, got "
                              f"{min_quality!r}")
    return int(min_quality)


def check_chunk_rows(chunk_rows: int) -> int:
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
    metadata: MetadataRequest = True,
) -> Iterator[HashList]:
    """Read a hash list in chunks of at most ``chunk_rows`` records (bounded memory).

    Each chunk is a :class:`HashList` (its ``skipped`` is empty); malformed records of the
    whole file are appended to ``skipped`` when that list is given (lenient mode).
    ``algorithm`` defaults to the one recorded in the file (Parquet metadata, ThreatExchange
    ``pdq`` rows) or ``"pdq"``; the hash width is the algorithm's (or ``bits``, or, for a
    name the registry does not know, the first hash's). ``min_quality`` leaves out hashes
    whose quality is known and lower (counted in each chunk's ``low_quality``); hashes
    without a quality are kept. ``metadata``: which extra columns to read into each chunk's
    ``metadata`` (see :func:`read_hash_list`). See :func:`read_hash_list`.

    Every failure to read the file is a :class:`HashFormatError` naming it.
    """
    path = Path(path)
    fmt = resolve_format(path, format)
    min_quality = check_min_quality(min_quality)
    chunk_rows = check_chunk_rows(chunk_rows)
    request = check_request(metadata)
    dec: Decoder | None = None
    try:
        if fmt == "parquet":
            pqf = ParquetList(path)
            try:
                if algorithm and pqf.algorithm and pqf.algorithm != algorithm:
                    raise HashFormatError(f"{path}: holds {pqf.algorithm} hashes, not "
                                          f"{algorithm}")
                algorithm = algorithm or pqf.algorithm or DEFAULT_ALGORITHM
                dec = Decoder(path, algorithm, expected_nbytes(algorithm, bits), lenient,
                              unit="row", metadata=request)
                chunks = iter_parquet(pqf, dec, chunk_rows, hash_column, id_column,
                                      key_column)
                yield from report_chunks(chunks, dec, skipped, min_quality)
            finally:
                pqf.close()
            return
        algorithm = algorithm or file_algorithm(path, fmt)
        dec = Decoder(path, algorithm, expected_nbytes(algorithm, bits), lenient,
                      metadata=request)
        with open_text(path) as f:
            if fmt == "hex":
                chunks = iter_hex(f, dec, chunk_rows)
            elif fmt == "jsonl":
                chunks = iter_jsonl(f, dec, chunk_rows)
            elif fmt == "json":
                dec.unit = "item"
                chunks = iter_json(f, dec, chunk_rows)
            else:
                chunks = iter_csv(f, dec, chunk_rows, "\t" if fmt == "tsv" else ",",
                                  fmt == "te", header, hash_column, id_column, key_column)
            yield from report_chunks(chunks, dec, skipped, min_quality)
    except HashFormatError:
        raise
    except Exception as e:
        if not is_library_failure(e):
            raise
        raise HashFormatError(f"{path}{where(dec)}: {failure_reason(e)}") from None


def report_chunks(chunks: Iterator[HashList], dec: Decoder,
                  skipped: list[tuple[int, str]] | None,
                  min_quality: int | None) -> Iterator[HashList]:
    """Chunks with their ``ignored`` counts, skipped records moved to ``skipped`` and
    ``min_quality`` applied."""
    for chunk in chunks:
        if skipped is not None:
            skipped.extend(dec.skipped)
        chunk.ignored, dec.ignored = dec.ignored, 0
        dec.skipped = []
        if min_quality is not None:
            chunk = drop_low_quality(chunk, min_quality)
        yield chunk
    if dec.ignored or dec.skipped:  # records after the last chunk that held none
        if skipped is not None:
            skipped.extend(dec.skipped)
        empty = make_list(np.zeros((0, dec.nbytes or 0), np.uint8), dec.algorithm,
                          np.zeros(0, np.int64), None, None)
        empty.ignored, dec.ignored, dec.skipped = dec.ignored, 0, []
        empty.has_ids = False
        yield empty


def drop_low_quality(chunk: HashList, min_quality: int) -> HashList:
    q = chunk.hashes.qualities
    if q is None:
        return chunk
    low = (q >= 0) & (q < min_quality)
    if not low.any():
        return chunk
    keep = np.flatnonzero(~low)
    return HashList(chunk.hashes[keep], chunk.ids[keep],
                    None if chunk.keys is None else chunk.keys[keep], chunk.skipped,
                    chunk.ignored, chunk.low_quality + int(low.sum()),
                    take(chunk.metadata, keep), chunk.has_ids)


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
    metadata: MetadataRequest = True,
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

    ``metadata``: the file's extra columns — ThreatExchange's ``collab``, ``category``,
    ``tags``, any CSV/TSV/Parquet column or JSON field that is not read as hash, id, key,
    quality or algorithm — go into ``HashList.metadata`` (True, the default: all of them;
    False: none; a list of names: those, which must be there in CSV/TSV/Parquet). Bounded
    for untrusted files: see :mod:`hashlib_ext.formats.metadata`. An empty CSV/TSV cell is
    None (no value).
    """
    skipped: list[tuple[int, str]] = []
    chunks = list(iter_hash_list(
        path, algorithm, format=format, lenient=lenient, bits=bits, header=header,
        hash_column=hash_column, id_column=id_column, key_column=key_column,
        chunk_rows=chunk_rows, skipped=skipped, min_quality=min_quality, metadata=metadata))
    if chunks:
        algorithm = chunks[0].hashes.algorithm
    else:
        algorithm = algorithm or file_algorithm(Path(path), resolve_format(Path(path), format))
    return concat_lists(chunks, algorithm, bits, skipped)


def file_algorithm(path: Path, fmt: str) -> str:
    """The algorithm a file records (Parquet metadata, the ``algorithm`` column or field of
    the first record), or pdq. Any problem reading it is left for the read to report."""
    found = None
    dec = Decoder(path, DEFAULT_ALGORITHM, None, False)
    with contextlib.suppress(Exception):
        if fmt == "parquet":
            pqf = ParquetList(path)
            pqf.close()
            found = pqf.algorithm
        elif fmt in ("csv", "tsv"):
            with open_text(path) as f:
                reader = csv.reader((line or "" for _, line in bounded_lines(f, dec)),
                                    delimiter="\t" if fmt == "tsv" else ",")
                head = [c.strip().lower() for c in next(reader, [])]
                first = next(reader, [])
                if "algorithm" in head and "signal_type" not in head:
                    found = first[head.index("algorithm")].strip()
        elif fmt == "json":
            with open_text(path) as f:
                found = next(JsonStream(f, dec).records()).get("algorithm")
        elif fmt == "jsonl":
            with open_text(path) as f:
                for _, line in bounded_lines(f, dec):
                    if line is not None and line.strip():
                        found = json.loads(line).get("algorithm")
                        break
    return found if isinstance(found, str) and ALGORITHM_NAME.fullmatch(found) \
        else DEFAULT_ALGORITHM


def concat_lists(chunks: Sequence[HashList], algorithm: str, bits: int | None = None,
                 skipped: list[tuple[int, str]] | None = None) -> HashList:
    """Join chunks (as :func:`iter_hash_list` yields them) into one :class:`HashList`;
    a metadata column some chunks lack is None there."""
    skipped = list(skipped or [])
    ignored = sum(c.ignored for c in chunks)
    low = sum(c.low_quality for c in chunks)
    chunks = [c for c in chunks if len(c)] or list(chunks[:1])
    if not chunks:
        nbytes = expected_nbytes(algorithm, bits) or 0
        empty = HashArray.empty(algorithm, 8 * nbytes)
        return HashList(empty, np.zeros(0, np.int64), None, skipped, ignored, low,
                        has_ids=False)
    hashes = HashArray.concat([c.hashes for c in chunks]) if len(chunks) > 1 \
        else chunks[0].hashes
    ids = np.concatenate([c.ids for c in chunks])
    keys = None
    if any(c.keys is not None for c in chunks):
        keys = np.concatenate([
            c.keys if c.keys is not None else np.full(len(c), None, dtype=object) for c in chunks
        ])
    meta = concat_metadata([(c.metadata, len(c)) for c in chunks])
    return HashList(hashes, ids, keys, skipped, ignored, low, meta,
                    any(c.has_ids for c in chunks))
