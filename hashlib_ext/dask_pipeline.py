"""End to end on a dask cluster: images -> partitioned Parquet -> sharded index, with no
step passing all the data through one process.

1. :func:`hash_to_parquet`: inputs (local paths, folders, or fsspec URLs) are cut into
   partitions; each partition is hashed by one task, which writes its own
   ``part-NNNNNN.parquet`` (a Parquet hash list as :mod:`hashlib_ext.formats` writes it:
   ``hash``, ``id`` = the input's position, ``key`` = its path or URL, ``quality``) and,
   when some inputs failed, ``_errors/errors-NNNNNN.parquet`` (``id``, ``key``,
   ``error``, ``message``: one row per failed input, none dropped). Only counts come back to the
   client, which finally writes a small ``_hashes.json`` listing the partitions.
2. :func:`build_sharded_from_parquet`: each partition (or any hash-list file) is read by a
   task that splits it by shard; one task per shard gathers its pieces from the workers,
   builds the shard's HashIndex and writes the shard file; the client writes the manifest.
   Then search and dedup run on the cluster (:class:`~hashlib_ext.ShardedIndex`,
   :func:`~hashlib_ext.sharded_dedup.find_duplicates_sharded`).

The partitions are plain Parquet files (a folder of them is a Parquet dataset that
``pyarrow.dataset``, ``dask.dataframe.read_parquet`` or Spark read), written by pyarrow in
the tasks themselves, so the ``dask`` extra needs no pandas. Read them back with
:func:`iter_partitions` and :func:`read_errors`.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import fsio
from . import shard_manifest as sm
from . import shard_tasks as st
from .batch import hash_chunk, validate_algorithms
from .errors import AlgorithmMismatchError, HashFormatError
from .formats import HashList, read_hash_list, write_hash_list
from .hash import HashArray
from .shard_inputs import check_shards, check_unique
from .sharded import ShardedIndex

SUMMARY = "_hashes.json"
ERRORS = "_errors"
"""Subfolder of the error files: names starting with ``_`` are left out when pyarrow, dask
or Spark read the partition folder as one Parquet dataset."""
MAX_INPUT_BYTES = 256 << 20
"""Largest image read from a URL (a larger object is recorded as an error)."""


@dataclass
class HashPartitions:
    """What :func:`hash_to_parquet` wrote: the partition files (names inside ``folder``,
    in input order), the error files (names inside ``folder/_errors``), and how many
    inputs hashed or failed."""

    folder: str
    algorithm: str
    parts: list[str]
    error_parts: list[str]
    ok: int
    failed: int


def hash_to_parquet(
    inputs: Iterable[str],
    folder: str | os.PathLike[str],
    algorithm: str = "pdq",
    *,
    client: Any,
    partition_size: int = 1024,
    fast: bool = False,
    max_pixels: int | None = None,
    recursive: bool = True,
    window: int | None = None,
    overwrite: bool = False,
) -> HashPartitions:
    """Hash ``inputs`` on ``client``'s cluster into Parquet partitions in ``folder`` (path
    or URL), ``partition_size`` inputs per partition. ``inputs``: image paths, local
    folders (expanded to their images, ``recursive`` or not) or fsspec URLs of images; the
    workers must be able to read them. At most ``window`` partitions (default four per
    worker thread) are in flight, so a stream of any length is fine. A partition folder
    already holding partitions is refused unless ``overwrite`` (its old partitions are then
    removed first)."""
    from distributed import as_completed

    names, _ = validate_algorithms(algorithm, fast)
    if partition_size < 1:
        raise ValueError(f"partition_size must be >= 1, got {partition_size!r}")
    folder = os.fspath(folder)
    old = [n for n in fsio.list_names(folder) if _is_partition_file(n)]
    if old or fsio.exists(fsio.join(folder, SUMMARY)):
        if not overwrite:
            raise FileExistsError(f"{folder}: holds hash partitions already "
                                  "(pass overwrite=True to replace them)")
        for n in old + [SUMMARY]:
            fsio.remove(fsio.join(folder, n))
        errs = fsio.join(folder, ERRORS)
        for n in fsio.list_names(errs):
            if _is_partition_file(n):
                fsio.remove(fsio.join(errs, n))
    fsio.make_folder(folder)
    fsio.make_folder(fsio.join(folder, ERRORS))
    if window is None:
        info = client.scheduler_info(n_workers=-1).get("workers", {})
        window = 4 * max(1, sum(int(w.get("nthreads", 1)) for w in info.values()))
    args = (names[0], bool(fast), max_pixels, folder)
    chunks = _partitions(_expand(inputs, recursive), partition_size)
    ac = as_completed()
    results: list[tuple[int, int, int, str, str | None]] = []

    def submit_next() -> bool:
        nxt = next(chunks, None)
        if nxt is None:
            return False
        p, items = nxt
        ac.add(client.submit(hash_partition, items, p, *args, pure=False))
        return True

    for _ in range(max(1, window)):
        if not submit_next():
            break
    for fut in ac:
        results.append(fut.result())
        submit_next()
    results.sort()
    summary = HashPartitions(folder, names[0], [r[3] for r in results],
                             [r[4] for r in results if r[4]], sum(r[1] for r in results),
                             sum(r[2] for r in results))
    doc = {"algorithm": summary.algorithm, "parts": summary.parts,
           "error_parts": summary.error_parts, "ok": summary.ok, "failed": summary.failed}
    fsio.write_bytes(fsio.join(folder, SUMMARY), (json.dumps(doc, indent=1) + "\n").encode())
    return summary


def _expand(inputs: Iterable[str], recursive: bool) -> Iterator[str]:
    from .files import iter_image_paths

    for src in inputs:
        src = os.fspath(src)
        if fsio.is_remote(src) or not os.path.isdir(fsio.local_path(src)):
            yield src
        else:
            yield from iter_image_paths([fsio.local_path(src)], recursive=recursive)


def _partitions(inputs: Iterator[str], size: int) -> Iterator[tuple[int, list[tuple[int, str]]]]:
    pos = p = 0
    while True:
        items = []
        for src in inputs:
            items.append((pos, src))
            pos += 1
            if len(items) == size:
                break
        if not items:
            return
        yield p, items
        p += 1


def _is_partition_file(name: str) -> bool:
    return (name.startswith("part-") or name.startswith("errors-")) and name.endswith(".parquet")


def part_name(p: int) -> str:
    return f"part-{p:06d}.parquet"


def errors_name(p: int) -> str:
    return f"errors-{p:06d}.parquet"


def hash_partition(items: list[tuple[int, str]], p: int, algorithm: str, fast: bool,
                   max_pixels: int | None, folder: str) -> tuple[int, int, int, str, str | None]:
    """Hash one partition (a task) and write its Parquet file(s); returns
    ``(partition, hashed, failed, part file, errors file or None)``."""
    srcs: list[tuple[int, Any]] = []
    errors: list[tuple[int, str, str]] = []
    for pos, loc in items:
        if not fsio.is_remote(loc):
            srcs.append((pos, fsio.local_path(loc)))
            continue
        try:
            srcs.append((pos, fsio.read_bytes(loc, MAX_INPUT_BYTES)))
        except Exception as e:  # noqa: BLE001 - every per-input failure is recorded
            errors.append((pos, type(e).__name__, " ".join(str(e).split()) or type(e).__name__))
    res = hash_chunk(srcs, (algorithm,), fast, max_pixels) if srcs else None
    where = dict(items)
    if res is not None and res.positions.size:
        q = res.qualities[algorithm]
        hashes = HashArray(res.codes[algorithm], algorithm, q if (q >= 0).any() else None)
    else:
        hashes = HashArray.empty(algorithm, _bits(algorithm))
    positions = res.positions if res is not None else np.zeros(0, np.int64)
    keys = [where[i] for i in positions.tolist()]
    fsio.write_file(fsio.join(folder, part_name(p)), lambda path: write_hash_list(
        path, hashes, positions, keys, format="parquet"))
    if res is not None:
        errors.extend(res.errors)
    err_file = None
    if errors:
        errors.sort()
        err_file = errors_name(p)
        fsio.write_file(fsio.join(fsio.join(folder, ERRORS), err_file),
                        lambda path: _write_errors(path, errors, where))
    return p, len(hashes), len(errors), part_name(p), err_file


def _bits(algorithm: str) -> int:
    from .hashers import expected_bits

    return expected_bits(algorithm) or 0


def _write_errors(path: str, errors: list[tuple[int, str, str]], where: dict[int, str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .atomic import atomic_path

    table = pa.table({"id": pa.array([e[0] for e in errors], pa.int64()),
                      "key": pa.array([where[e[0]] for e in errors], pa.string()),
                      "error": pa.array([e[1] for e in errors], pa.string()),
                      "message": pa.array([e[2] for e in errors], pa.string())})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def partition_files(folder: str | os.PathLike[str]) -> list[str]:
    """Locations of the hash partitions in ``folder``, in input order (from its
    ``_hashes.json``, else every ``part-*.parquet`` there)."""
    folder = os.fspath(folder)
    return [fsio.join(folder, n) for n in _summary(folder)["parts"]]


def _summary(folder: str) -> dict[str, Any]:
    loc = fsio.join(folder, SUMMARY)
    if fsio.exists(loc):
        try:
            doc = json.loads(fsio.read_bytes(loc, sm.MAX_MANIFEST_BYTES).decode("utf-8"))
        except (ValueError, OSError) as e:
            raise HashFormatError(f"{loc}: unreadable partition list ({e})") from None
        parts, errs = doc.get("parts"), doc.get("error_parts")
        if not isinstance(parts, list) or not isinstance(errs, list) or not all(
                isinstance(n, str) and _is_partition_file(n) and "/" not in n
                for n in parts + errs):
            raise HashFormatError(f"{loc}: invalid partition list")
        return {"parts": parts, "error_parts": errs}
    names = fsio.list_names(folder)
    return {"parts": [n for n in names if n.startswith("part-") and n.endswith(".parquet")],
            "error_parts": [n for n in fsio.list_names(fsio.join(folder, ERRORS))
                            if n.startswith("errors-") and n.endswith(".parquet")]}


def iter_partitions(folder: str | os.PathLike[str]) -> Iterator[HashList]:
    """Each partition's hashes, ids (input positions) and keys (paths), in input order."""
    for loc in partition_files(folder):
        yield read_partition(loc)


def read_partition(location: str, algorithm: str | None = None) -> HashList:
    """One hash-list file (a partition, or any format :func:`read_hash_list` reads) from a
    path or URL."""
    with fsio.fetched(location) as path:
        return read_hash_list(path, algorithm)


def read_errors(folder: str | os.PathLike[str]) -> list[tuple[int, str, str, str]]:
    """Every failed input: ``(position, path or URL, error type, message)``, in input
    order."""
    import pyarrow.parquet as pq

    folder = os.fspath(folder)
    out: list[tuple[int, str, str, str]] = []
    for name in _summary(folder)["error_parts"]:
        with fsio.fetched(fsio.join(fsio.join(folder, ERRORS), name)) as path:
            t = pq.read_table(path).to_pydict()
        out.extend(zip(t["id"], t["key"], t["error"], t["message"], strict=True))
    out.sort()
    return out


def build_sharded_from_parquet(
    sources: str | os.PathLike[str] | Sequence[str],
    index_folder: str | os.PathLike[str],
    shards: int,
    *,
    client: Any,
    algorithm: str | None = None,
    kind: str = "auto",
    design_threshold: int | None = None,
    overwrite: bool = False,
) -> ShardedIndex:
    """Build a sharded index in ``index_folder`` from hash partitions on ``client``'s
    cluster: ``sources`` is a folder written by :func:`hash_to_parquet`, or a list of
    hash-list files (paths or URLs, any format :func:`read_hash_list` reads). Each file is
    split by shard on a worker, each shard built and written by one task; the client sees
    only the manifest entries. Ids must be unique across the files."""
    if isinstance(sources, (str, os.PathLike)):
        files = partition_files(sources)
    else:
        files = [os.fspath(s) for s in sources]
    shards = check_shards(shards)
    folder = os.fspath(index_folder)
    if fsio.exists(sm.manifest_location(folder)) and not overwrite:
        raise FileExistsError(f"{folder}: a sharded index is already there "
                              "(pass overwrite=True to replace it)")
    old = sm.read_manifest(folder) if fsio.exists(sm.manifest_location(folder)) else None
    fsio.make_folder(folder)
    splits = [client.submit(split_partition, f, shards, algorithm, pure=False) for f in files]
    token = sm.new_token()
    builds = []
    for k in range(shards):
        pieces = [client.submit(operator.getitem, s, k, pure=False) for s in splits]
        builds.append(client.submit(build_shard, folder, sm.shard_file_name(k, token), kind,
                                    design_threshold, algorithm, *pieces, pure=False))
    del splits
    try:
        done = client.gather(builds)
    except BaseException:
        for k in range(shards):
            fsio.remove(fsio.join(folder, sm.shard_file_name(k, token)))
        raise
    kinds = {(a, b) for _, a, b in done}
    if len(kinds) != 1:
        raise AlgorithmMismatchError(f"the partitions hold different hashes: {sorted(kinds)}")
    (alg, bits), = kinds
    entries = [e for e, _, _ in done]
    next_id = max((e.max_id + 1 for e in entries if e.max_id is not None), default=0)
    manifest = sm.Manifest(alg, bits, kind, next_id, entries)
    sm.write_manifest(folder, manifest)
    if old is not None:
        keep = {e.file for e in entries}
        for e in old.shards:
            if e.file not in keep:
                fsio.remove(fsio.join(folder, e.file))
    return ShardedIndex(folder, manifest)


Piece = tuple[np.ndarray, np.ndarray, list[str | None] | None,
              dict[str, list[str | None]], str, int]
"""One file's rows for one shard: codes, ids, keys (None: no keys), metadata columns,
algorithm, bits."""


def split_partition(location: str, shards: int, algorithm: str | None) -> list[Piece]:
    """Read one hash-list file (a task) and split its rows by shard."""
    got = read_partition(location, algorithm)
    ids = got.ids.astype(np.int64)
    which = sm.shard_of(ids, shards)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(shards + 1))
    alg, bits = got.hashes.algorithm, got.hashes.bits
    meta = getattr(got, "metadata", None) or {}
    out: list[Piece] = []
    for k in range(shards):
        rows = order[bounds[k]:bounds[k + 1]]
        keys = None if got.keys is None else got.keys[rows].tolist()
        cols = {name: np.asarray(col, dtype=object)[rows].tolist() for name, col in meta.items()}
        out.append((got.hashes.codes[rows], ids[rows], keys, cols, alg, bits))
    return out


def build_shard(folder: str, name: str, kind: str, design_threshold: int | None,
                algorithm: str | None, *pieces: Piece) -> tuple[sm.ShardEntry, str, int]:
    """Build and write one shard from its pieces of every file (a task); returns its
    manifest entry, algorithm and width."""
    kinds = {(p[4], p[5]) for p in pieces if p[0].shape[0]} or \
        {(p[4], p[5]) for p in pieces}
    if len(kinds) > 1:
        raise AlgorithmMismatchError(f"the partitions hold different hashes: {sorted(kinds)}")
    alg, bits = kinds.pop() if kinds else (algorithm or "pdq", _bits(algorithm or "pdq"))
    codes = np.concatenate([p[0] for p in pieces]) if pieces else \
        np.zeros((0, bits // 8), np.uint8)
    ids = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, np.int64)
    check_unique(ids)
    keys: list[str | None] | None = None
    if any(p[2] is not None for p in pieces):
        keys = [k for p in pieces for k in (p[2] if p[2] is not None else [None] * len(p[1]))]
    names = list(dict.fromkeys(c for p in pieces for c in p[3]))
    meta = {c: [v for p in pieces for v in p[3].get(c, [None] * len(p[1]))] for c in names}
    entry = st.write_shard(folder, name, codes, ids, keys, alg, bits, metadata=meta or None,
                           kind=kind, design_threshold=design_threshold)
    return entry, alg, bits


__all__ = ["HashPartitions", "build_sharded_from_parquet", "hash_to_parquet",
           "iter_partitions", "partition_files", "read_errors", "read_partition"]
