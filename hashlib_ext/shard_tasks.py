"""The work done on one shard: load it (checked against the manifest), search it, write it;
and merging per-shard answers into exactly what one HashIndex over the union answers.

These functions run on dask workers (or in-process when no cluster is used); they take and
return numpy arrays and small objects only. A loaded shard is a :class:`ShardHandle`:
dask sizes it by the memory its HashIndex holds, so tasks that need it are sent to the
worker that has it rather than moving it; and should dask ever have to move or spill it,
it travels as its recipe (location and manifest entry) and is loaded again from its file
on arrival, never as gigabytes of pickled tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from . import fsio
from .errors import IndexFileError, ShardChecksumError
from .index import HashIndex
from .shard_manifest import ShardEntry, file_digest

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(lims, ids, distances)`` as :meth:`HashIndex.search_arrays` returns them."""


class ShardHandle:
    """One loaded shard: its :class:`HashIndex` and where it was loaded from."""

    __slots__ = ("location", "entry", "algorithm", "bits", "index")

    def __init__(self, location: str, entry: ShardEntry, algorithm: str | None, bits: int,
                 index: HashIndex):
        self.location, self.entry = location, entry
        self.algorithm, self.bits, self.index = algorithm, bits, index

    def __sizeof__(self) -> int:  # what dask counts: the index, not the small wrapper
        return self.index.nbytes + 64 * self.entry.keys + 1024

    def __reduce__(self) -> tuple[Any, ...]:
        return (load_shard, (self.location, self.entry, self.algorithm, self.bits))

    def __repr__(self) -> str:
        return f"ShardHandle({self.location!r}, n={self.entry.count})"


def load_shard(location: str, entry: ShardEntry, algorithm: str | None,
               bits: int) -> ShardHandle:
    """Load the shard file at ``location`` after checking it is the file ``entry`` names:
    a missing file, another size or SHA-256, or content failing its own checksum raise
    :class:`ShardChecksumError` naming the shard."""
    try:
        with fsio.fetched(location) as path:
            try:
                size, digest = file_digest(path)
            except IndexFileError as e:
                raise ShardChecksumError(f"shard {location}: {e}", location) from None
            if size != entry.size or digest != entry.sha256:
                raise ShardChecksumError(
                    f"shard {location} fails its checksum: {size} bytes, sha256 "
                    f"{digest[:16]}..., but the manifest records {entry.size} bytes, sha256 "
                    f"{entry.sha256[:16]}...", location)
            try:
                index = HashIndex.load(path)
            except IndexFileError as e:
                raise ShardChecksumError(f"shard {location} fails its checksum: {e}",
                                         location) from None
    except FileNotFoundError:
        raise ShardChecksumError(f"shard {location} is missing", location) from None
    except OSError as e:
        raise ShardChecksumError(f"shard {location} cannot be read: {e}", location) from None
    if len(index) != entry.count or index.bits != bits or index.algorithm != algorithm:
        raise IndexFileError(f"shard {location} does not match its manifest entry")
    return ShardHandle(location, entry, algorithm, bits, index)


def write_shard(folder: str, name: str, codes: np.ndarray, ids: np.ndarray,
                keys: Sequence[str | None] | None, algorithm: str | None, bits: int, *,
                metadata: Mapping[str, Sequence[str | None]] | None = None,
                kind: str = "auto", design_threshold: int | None = None) -> ShardEntry:
    """Index ``codes`` (with ids, keys, metadata) into one HashIndex, its search tables
    built, and save it as ``name`` in ``folder``; returns its manifest entry."""
    index = new_index(algorithm, bits, kind, design_threshold)
    if codes.shape[0]:
        index.add(codes, ids, keys=None if keys is None else cast(list[str], list(keys)),
                  metadata=metadata)
    return save_shard(folder, name, index)


def save_shard(folder: str, name: str, index: HashIndex) -> ShardEntry:
    """Save ``index`` (search tables built first) as the shard file ``name`` in ``folder``
    (a path or URL); returns its manifest entry."""
    index.prepare()
    found: list[tuple[int, str]] = []

    def save(path: str) -> None:
        index.save(path)
        found.append(file_digest(path))

    fsio.write_file(fsio.join(folder, name), save)
    size, digest = found[0]
    ids = index.ids
    n_keys = sum(k is not None for k in index.keys(ids))
    lo = int(ids.min()) if ids.size else None
    hi = int(ids.max()) if ids.size else None
    return ShardEntry(name, len(index), lo, hi, n_keys, size, digest)


def new_index(algorithm: str | None, bits: int, kind: str = "auto",
              design_threshold: int | None = None) -> HashIndex:
    """An empty HashIndex for a shard of ``algorithm`` codes (raw codes when None, or for a
    name the hasher registry does not know)."""
    from .hashers import expected_bits

    known = algorithm is not None and expected_bits(algorithm) is not None
    return HashIndex(algorithm if known else None, bits=bits, kind=kind,  # type: ignore[arg-type]
                     design_threshold=design_threshold)


# -- tasks on a loaded shard ------------------------------------------------------------
def query_batch(queries: np.ndarray) -> np.ndarray:
    """A query batch as a task of its own, shared by the shard tasks (recomputable from
    its spec if the worker holding it is lost)."""
    return queries


def search_shard(shard: ShardHandle, queries: np.ndarray, threshold: int) -> Arrays:
    return shard.index.search_arrays(queries, threshold)


def knn_shard(shard: ShardHandle, queries: np.ndarray, k: int) -> Arrays:
    lists = shard.index.knn(queries, k)
    return from_lists(lists)


def keys_shard(shard: ShardHandle, ids: np.ndarray) -> list[str | None]:
    return shard.index.keys(ids)


def metadata_shard(shard: ShardHandle, ids: np.ndarray,
                   columns: Sequence[str] | None) -> list[dict[str, str]]:
    return shard.index.metadata(ids, columns)


def shard_part(shard: ShardHandle) -> tuple[np.ndarray, np.ndarray]:
    """A copy of the shard's ``(codes, ids)``."""
    return shard.index.codes, shard.index.ids


def shard_ids(shard: ShardHandle) -> np.ndarray:
    return shard.index.ids


# -- merging ------------------------------------------------------------------------------
def from_lists(lists: list[list[tuple[int, int]]]) -> Arrays:
    """``(lims, ids, distances)`` of per-query ``(id, distance)`` lists."""
    counts = np.fromiter((len(r) for r in lists), np.int64, len(lists))
    lims = np.zeros(len(lists) + 1, np.int64)
    np.cumsum(counts, out=lims[1:])
    flat = [p for r in lists for p in r]
    ids = np.fromiter((p[0] for p in flat), np.int64, len(flat))
    dist = np.fromiter((p[1] for p in flat), np.int32, len(flat))
    return lims, ids, dist


def merge(parts: Sequence[Arrays], nq: int, k: int | None = None) -> Arrays:
    """One answer from per-shard answers to the same ``nq`` queries: per query nearest
    first, ties by id (as HashIndex orders them); with ``k``, only the first ``k``."""
    qof = [np.repeat(np.arange(nq, dtype=np.int64), np.diff(lims)) for lims, _, _ in parts]
    q = np.concatenate(qof) if qof else np.empty(0, np.int64)
    ids = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    dist = np.concatenate([p[2] for p in parts]) if parts else np.empty(0, np.int32)
    order = np.lexsort((ids, dist, q))
    q, ids, dist = q[order], ids[order].astype(np.int64), dist[order].astype(np.int32)
    counts = np.bincount(q, minlength=nq)
    if k is not None:
        start = np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        keep = np.arange(q.size) - start < k
        q, ids, dist = q[keep], ids[keep], dist[keep]
        counts = np.bincount(q, minlength=nq)
    lims = np.zeros(nq + 1, np.int64)
    np.cumsum(counts, out=lims[1:])
    return lims, ids, dist


def to_lists(lims: np.ndarray, ids: np.ndarray, dist: np.ndarray) -> list[list[tuple[int, int]]]:
    pairs = list(zip(ids.tolist(), dist.tolist(), strict=True))
    bounds = lims.tolist()
    return [pairs[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]
