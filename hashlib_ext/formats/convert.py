"""Converting a hash list from one format to another in bounded memory.

The input is read twice, chunk by chunk: once to learn which columns the output needs (keys,
qualities, metadata names, whether the ids are the record numbers) — a CSV header or a
Parquet schema must be written before the first row — and once to write. Nothing but one
chunk is held at a time, so a list of ten million hashes converts in the memory of
:data:`CHUNK_ROWS` records.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import HashFormatError, HashListOutputError
from .common import CHUNK_ROWS, resolve_format
from .metadata import MetadataRequest
from .read import iter_hash_list
from .write import HashListWriter, Layout

RECORD_UNITS = {"parquet": "row", "json": "item"}
"""What a record of each input format is called in messages (default: ``line``)."""


@dataclass
class Converted:
    """What :func:`convert_hash_list` did."""

    algorithm: str
    written: int
    layout: Layout
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """Lenient mode: (line, reason) of the malformed records left out."""
    ignored: int = 0
    """Records of other algorithms left out."""
    low_quality: int = 0
    """Records left out by ``min_quality``."""


def scan_layout(src: str | os.PathLike[str], **read: Any) -> tuple[Layout, str, int, int]:
    """Read ``src`` once (``read``: :func:`iter_hash_list`'s arguments) and return the
    layout that holds all of it, its algorithm, hash width in bits and record count."""
    keys = quals = ids = False
    names: list[str] = []
    algorithm, bits, count = None, 0, 0
    for chunk in iter_hash_list(src, **read):
        if algorithm is None:
            algorithm, bits = chunk.hashes.algorithm, chunk.hashes.bits
        keys = keys or chunk.keys is not None
        q = chunk.hashes.qualities
        quals = quals or (q is not None and bool((q >= 0).any()))
        names.extend(n for n in chunk.metadata if n not in names)
        ids = ids or Layout.of(chunk, count).ids
        count += len(chunk)
    return (Layout(keys=keys, qualities=quals, metadata=tuple(names), ids=ids),
            algorithm or read.get("algorithm") or "pdq", bits, count)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file (the same path, or one existing file twice)."""
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def convert_hash_list(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | IO[str],
    *,
    format: str | None = None,
    input_format: str | None = None,
    algorithm: str | None = None,
    lenient: bool = False,
    min_quality: int | None = None,
    metadata: MetadataRequest = True,
    chunk_rows: int = CHUNK_ROWS,
    on_chunk: Callable[[int, int], None] | None = None,
    **read: Any,
) -> Converted:
    """Write the hash list ``src`` to ``dst`` (a path, or an open text stream) in another
    format (``format``, default from ``dst``'s extension; ``input_format`` likewise for
    ``src``), keeping ids, keys, qualities (where the output has a column for them) and
    metadata; atomically, in bounded memory (see the module docstring). ``algorithm``
    chooses the hashes of a list holding several (default: the file's). ``lenient``,
    ``min_quality``, ``metadata`` and ``read`` (e.g. ``hash_column=``) are
    :func:`iter_hash_list`'s. ``on_chunk(n, total)`` is called after each chunk of ``n`` of
    the ``total`` records is written (a progress bar).

    Refuses ``dst`` naming the same file as ``src`` (:class:`HashFormatError`), and anything
    the output format cannot hold (ids other than 0..n-1 or metadata in hex lines):
    :class:`~hashlib_ext.errors.HashListOutputError`; either way ``dst`` is left as it was.
    """
    if isinstance(dst, (str, os.PathLike)):
        if same_file(src, dst):
            raise HashFormatError(f"{dst}: is the input too; write the converted list "
                                  "elsewhere")
        resolve_format(Path(dst), format)  # an unknown format fails before any reading
    elif format is None:
        raise HashFormatError("writing to a stream needs a format")
    kwargs = dict(read, format=input_format, algorithm=algorithm, lenient=lenient,
                  min_quality=min_quality, metadata=metadata, chunk_rows=chunk_rows)
    layout, found, bits, total = scan_layout(src, **kwargs)
    skipped: list[tuple[int, str]] = []
    done = Converted(found, 0, layout)
    kwargs["algorithm"] = found
    try:
        out = HashListWriter(dst, format, layout=layout, algorithm=found, bits=bits or None,
                             chunk_rows=chunk_rows)
    except HashFormatError as e:
        raise HashListOutputError(str(e)) from None
    with out:
        for chunk in iter_hash_list(src, skipped=skipped, **kwargs):
            try:
                out.write(chunk)
            except HashFormatError as e:
                raise HashListOutputError(str(e)) from None
            done.written += len(chunk)
            done.ignored += chunk.ignored
            done.low_quality += chunk.low_quality
            if on_chunk is not None:
                on_chunk(len(chunk), total)
    done.skipped = skipped
    return done
