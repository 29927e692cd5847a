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

from .common import (
    CHUNK_ROWS,
    DEFAULT_ALGORITHM,
    FORMATS,
    GZIP_RATIO_FLOOR,
    MAX_GZIP_RATIO,
    MAX_HASH_BYTES,
    MAX_LINE_CHARS,
    MAX_PARQUET_COLUMN_CHUNK,
    MAX_PARQUET_ROWS,
    PDQ_MIN_QUALITY,
    HashList,
    detect_format,
    format_name,
    is_hash_list_path,
    output_format,
    quality_ok,
)
from .convert import Converted, convert_hash_list
from .metadata import MAX_METADATA_CHARS, MAX_METADATA_COLUMNS, MAX_METADATA_NAME
from .parquet import PARQUET_EXTRA, require_pyarrow
from .read import concat_lists, iter_hash_list, read_hash_list
from .write import HashListWriter, Layout, write_hash_list

__all__ = [
    "CHUNK_ROWS", "DEFAULT_ALGORITHM", "FORMATS", "GZIP_RATIO_FLOOR", "MAX_GZIP_RATIO",
    "MAX_HASH_BYTES", "MAX_LINE_CHARS", "MAX_PARQUET_COLUMN_CHUNK", "MAX_PARQUET_ROWS",
    "PDQ_MIN_QUALITY", "HashList", "concat_lists", "detect_format", "format_name",
    "is_hash_list_path", "iter_hash_list", "quality_ok", "read_hash_list", "write_hash_list",
    "HashListWriter", "Layout", "MAX_METADATA_CHARS", "MAX_METADATA_COLUMNS", "MAX_METADATA_NAME",
    "PARQUET_EXTRA", "require_pyarrow", "Converted", "convert_hash_list",
    "output_format",
]
