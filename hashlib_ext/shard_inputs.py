"""Checking and splitting what is given to a :class:`~hashlib_ext.ShardedIndex`: codes,
ids, keys, metadata and parameters (shared by the in-process and cluster builders)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import AlgorithmMismatchError, HashFormatError
from .hash import Hash, HashArray
from .index import MetadataLike
from .shard_manifest import MAX_SHARDS


def query_codes(x: Any, algorithm: str | None, bits: int) -> np.ndarray:
    """Queries as ``(n, bits/8)`` uint8 codes, checked against the index's algorithm and
    width (as HashIndex checks them)."""
    nb = bits // 8
    if isinstance(x, (Hash, HashArray)):
        if algorithm is not None and x.algorithm != algorithm:
            raise AlgorithmMismatchError(
                f"{x.algorithm} hashes cannot be used with a {algorithm} index")
        if x.bits != bits:
            raise AlgorithmMismatchError(
                f"{x.algorithm} hashes have {x.bits} bits, the index holds "
                f"{bits}-bit codes")
        codes = x.code[None, :] if isinstance(x, Hash) else x.codes
    elif isinstance(x, np.ndarray):
        if x.dtype != np.uint8 or x.ndim not in (1, 2) or x.shape[-1] != nb:
            raise HashFormatError(f"expected a (n, {nb}) uint8 array of {bits}-bit "
                                  f"codes, got {x.dtype} {x.shape}")
        codes = x.reshape(-1, nb)
    else:
        raise HashFormatError(
            f"expected a Hash, HashArray or uint8 array, got {type(x).__name__}")
    return np.ascontiguousarray(codes, dtype=np.uint8)


def input_codes(hashes: Any, algorithm: str | None) -> tuple[np.ndarray, str | None, int]:
    """Codes to index, their algorithm (None: raw codes) and width in bits."""
    if isinstance(hashes, HashArray):
        if algorithm is not None and hashes.algorithm != algorithm:
            raise AlgorithmMismatchError(f"{hashes.algorithm} hashes given for a "
                                         f"{algorithm} index")
        return np.ascontiguousarray(hashes.codes), hashes.algorithm, hashes.bits
    codes = np.asarray(hashes)
    if codes.dtype != np.uint8 or codes.ndim != 2 or not codes.shape[1]:
        raise HashFormatError(f"hashes must be a HashArray or an (n, bits/8) uint8 array, "
                              f"got {codes.dtype} {codes.shape}")
    bits = codes.shape[1] * 8
    if algorithm is not None and bits_of(algorithm) not in (None, bits):
        raise AlgorithmMismatchError(f"{algorithm} hashes have {bits_of(algorithm)} bits, "
                                     f"not {bits}")
    return np.ascontiguousarray(codes), algorithm, bits


def bits_of(algorithm: str) -> int | None:
    """The registry's width for ``algorithm`` (None for a name it does not know)."""
    from .hashers import expected_bits

    return expected_bits(algorithm)


def chunk_parts(chunk: Any, next_id: int) -> tuple[Any, np.ndarray, Any]:
    """``(hashes, ids, keys)`` of a HashList-like chunk, or of a HashArray (ids from
    ``next_id`` on, no keys)."""
    if isinstance(chunk, HashArray):
        return chunk, np.arange(next_id, next_id + len(chunk), dtype=np.int64), None
    hashes, ids = chunk.hashes, np.asarray(chunk.ids, dtype=np.int64)
    keys = getattr(chunk, "keys", None)
    return hashes, ids, keys


def ids_or_default(ids: Any, n: int, start: int) -> np.ndarray:
    """``ids`` as int64 (checked), or ``start, start+1, ...`` when None."""
    if ids is None:
        return np.arange(start, start + n, dtype=np.int64)
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.shape[0] != n or (n and not np.issubdtype(arr.dtype, np.integer)):
        raise HashFormatError(f"ids must be a 1-D integer array of length {n}, got shape "
                              f"{arr.shape} dtype {arr.dtype}")
    return arr.astype(np.int64)


def check_unique(ids: np.ndarray) -> None:
    """Refuse repeated ids (a sharded index holds each id once)."""
    if ids.size < 2:
        return
    s = np.sort(ids)
    rep = s[1:][s[1:] == s[:-1]]
    if rep.size:
        raise HashFormatError(f"ids must be unique in a sharded index; repeated: "
                              f"{np.unique(rep)[:5].tolist()}")


def check_len(values: Any, n: int, what: str) -> None:
    """Refuse ``values`` (when given) that are not one per hash."""
    if values is not None and len(values) != n:
        raise HashFormatError(f"{len(values)} {what} for {n} hashes")


def check_shards(shards: Any) -> int:
    """A shard count from 1 to :data:`MAX_SHARDS`."""
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or \
            not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be an integer from 1 to {MAX_SHARDS}, got {shards!r}")
    return int(shards)


def check_threshold(threshold: Any) -> int:
    """A non-negative integer threshold."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) \
            or threshold < 0:
        raise ValueError(f"threshold must be a non-negative integer, got {threshold!r}")
    return int(threshold)


def take(values: Any, rows: np.ndarray) -> list[Any] | None:
    """``values[rows]`` as a list (None stays None)."""
    if values is None:
        return None
    if isinstance(values, np.ndarray):
        return values[rows].tolist()
    seq = list(values) if not isinstance(values, list) else values
    return [seq[i] for i in rows.tolist()]


def metadata_rows(metadata: MetadataLike | None, n: int) -> list[dict[str, Any] | None] | None:
    """Metadata as one mapping (or None) per hash, whatever form it was given in."""
    if metadata is None:
        return None
    if isinstance(metadata, Mapping):
        cols = {c: list(v) for c, v in metadata.items()}
        for c, v in cols.items():
            check_len(v, n, f"metadata column {c!r}")
        return [{c: v[i] for c, v in cols.items()} for i in range(n)]
    rows = list(metadata)
    check_len(rows, n, "metadata rows")
    return [None if r is None else dict(r) for r in rows]
