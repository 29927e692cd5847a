"""The public writing API: :func:`write_hash_list`, atomic, in every format."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import HashFormatError
from ..hash import HashArray
from .common import (
    CHUNK_ROWS,
    DEFAULT_ALGORITHM,
    PDQ_MIN_QUALITY,
    TE_COLUMNS,
    HashList,
    atomic_text,
    key_texts,
    resolve_format,
)
from .parquet import write_parquet


def hex_rows(codes: np.ndarray) -> list[str]:
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
    fmt = resolve_format(path, format)
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
        write_parquet(path, hashes, ids, keys, quals, chunk_rows)
        return
    if fmt == "hex" and not default_ids:
        raise HashFormatError(f"{path}: hex lines hold no ids; write ids 0..n-1 or use "
                              "csv, jsonl or parquet")
    with atomic_text(path) as f:
        for start in range(0, n, chunk_rows) if n else ():
            stop = min(n, start + chunk_rows)
            texts = hex_rows(hashes.codes[start:stop])
            k = None if keys is None else key_texts(path, keys[start:stop])
            q = None if quals is None else quals[start:stop].tolist()
            if fmt == "hex":
                write_hex_chunk(f, path, texts, k)
            elif fmt in ("jsonl", "json"):
                if fmt == "json":
                    f.write("[\n" if start == 0 else ",\n")
                write_jsonl_chunk(f, hashes.algorithm, texts, ids[start:stop].tolist(), k, q,
                                   ",\n" if fmt == "json" else "\n")
            else:
                write_csv_chunk(f, fmt, start == 0, hashes.algorithm, texts,
                                 ids[start:stop].tolist(), k, q, default_ids)
        if fmt == "json":
            f.write("\n]\n" if n else "[]\n")
        if n == 0 and fmt in ("csv", "tsv", "te"):
            write_csv_chunk(f, fmt, True, hashes.algorithm, [], [], None if keys is None else [],
                             None, default_ids)




def write_hex_chunk(f: IO[str], path: Path, texts: list[str],
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


def write_jsonl_chunk(f: IO[str], algorithm: str, texts: list[str], ids: list[int],
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


def write_csv_chunk(f: IO[str], fmt: str, first: bool, algorithm: str, texts: list[str],
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
        header = list(TE_COLUMNS) + ([] if default_ids else ["id"]) + \
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
