"""ShardedIndex: a hash list split into N HashIndex shard files, searched shard by shard in
this process or with every shard held in memory by a dask worker.

    idx = hx.ShardedIndex.build(hashes, "index/", shards=4)      # or an fsspec URL
    idx = hx.ShardedIndex.open("index/")
    idx.search(queries, threshold=31)                              # in-process
    idx.search(queries, threshold=31, client=client)               # on a dask cluster

Answers are exactly those of one :class:`~hashlib_ext.HashIndex` over the union, pair for
pair and in the same order (nearest first, ties by id). Ids are global: shard ``k`` holds
the ids :func:`~hashlib_ext.shard_manifest.shard_of` maps to ``k``, and an id appears at
most once in the whole index. The folder layout, the manifest and how it is checked are
described in :mod:`hashlib_ext.shard_manifest`.

On a cluster, each shard is loaded once by one long-lived task (spread over the workers,
``workers=`` pinned but allowed to move) whose future the index keeps; every query batch
is sent to the cluster once and searched by one task per shard, next to its shard. If a
worker dies, dask recomputes the shards it held from their recipe — loading the file again
— and the searches that were lost with it, so answers stay exact. Docs: docs/scale.md.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import fsio
from . import shard_inputs as si
from . import shard_manifest as sm
from . import shard_tasks as st
from .errors import HashFormatError
from .hash import Hash, HashArray
from .index import HashIndex, Kind, MetadataLike, dihedral_answer
from .shard_manifest import Manifest, ShardEntry

QueryLike = Hash | HashArray | np.ndarray
INLINE_QUERY_BYTES = 64 << 10
"""Query batches up to this size travel inside the per-shard tasks (one message fewer);
larger ones are sent to the cluster once per batch, as one task the shard tasks share."""


class PendingSearch:
    """A query batch sent to the cluster: :meth:`result` waits for every shard's answer
    and merges them (several batches may be in flight at once)."""

    def __init__(self, client: Any, parts: list[Any], nq: int, k: int | None):
        self._client, self._parts, self._nq, self._k = client, parts, nq, k
        self._done: st.Arrays | None = None

    @property
    def futures(self) -> list[Any]:
        """The per-shard futures (until :meth:`arrays` or :meth:`result` has run)."""
        return list(self._parts)

    def arrays(self) -> st.Arrays:
        """``(lims, ids, distances)`` as :meth:`HashIndex.search_arrays` returns them."""
        if self._done is None:
            parts = self._client.gather(self._parts)
            self._parts = []
            self._done = st.merge(parts, self._nq, self._k)
        return self._done

    def result(self) -> list[list[tuple[int, int]]]:
        """Per query, ``(id, distance)`` pairs, as :meth:`HashIndex.search` returns them."""
        return st.to_lists(*self.arrays())


class ShardedIndex:
    """A sharded hash index in a folder (path or fsspec URL): see the module docstring.
    Make one with :meth:`build`, :meth:`build_from_chunks` or :meth:`open`."""

    def __init__(self, folder: str | os.PathLike[str], manifest: Manifest):
        self._folder = os.fspath(folder)
        self._manifest = manifest
        self._local: dict[int, st.ShardHandle] = {}
        self._futures: dict[str, tuple[str, list[Any], list[str | None]]] = {}
        self._lock = threading.RLock()

    # -- making one ---------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> ShardedIndex:
        """Open the sharded index in ``folder``; its manifest is read and validated now, each
        shard file when it is first loaded (:meth:`verify` checks them all at once)."""
        folder = os.fspath(folder)
        return cls(folder, sm.read_manifest(folder))

    @classmethod
    def build(
        cls,
        hashes: HashArray | np.ndarray,
        folder: str | os.PathLike[str],
        shards: int,
        *,
        ids: Sequence[int] | np.ndarray | None = None,
        keys: Sequence[str | None] | None = None,
        metadata: Mapping[str, Sequence[str | None]] | None = None,
        algorithm: str | None = None,
        kind: Kind = "auto",
        design_threshold: int | None = None,
        overwrite: bool = False,
    ) -> ShardedIndex:
        """Split ``hashes`` (a HashArray, or raw ``(n, bits/8)`` uint8 codes of
        ``algorithm``) into ``shards`` shard files in ``folder`` and write the manifest.
        ``ids`` (unique int64, default 0..n-1), ``keys`` and ``metadata`` (columns of one
        str-or-None per hash) are as for :meth:`HashIndex.add`. An existing index in
        ``folder`` is replaced only with ``overwrite`` (and only once the new one is
        complete). Memory: the input plus one shard's index at a time."""
        codes, algorithm, bits = si.input_codes(hashes, algorithm)
        n = codes.shape[0]
        ids_arr = si.ids_or_default(ids, n, 0)
        si.check_unique(ids_arr)
        si.check_len(keys, n, "keys")
        for name, col in (metadata or {}).items():
            si.check_len(col, n, f"metadata column {name!r}")
        shards = si.check_shards(shards)
        folder = os.fspath(folder)
        old = _existing(folder, overwrite)
        which = sm.shard_of(ids_arr, shards)
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(shards + 1))
        token = sm.new_token()
        fsio.make_folder(folder)
        entries: list[ShardEntry] = []
        try:
            for k in range(shards):
                rows = order[bounds[k]:bounds[k + 1]]
                entries.append(st.write_shard(
                    folder, sm.shard_file_name(k, token), codes[rows], ids_arr[rows],
                    si.take(keys, rows), algorithm, bits,
                    metadata={c: si.take(v, rows) for c, v in metadata.items()}  # type: ignore[misc]
                    if metadata else None, kind=kind, design_threshold=design_threshold))
        except BaseException:
            _remove_files(folder, entries)
            raise
        next_id = int(ids_arr.max()) + 1 if n else 0
        return cls._commit(folder, Manifest(algorithm, bits, kind, next_id, entries), old)

    @classmethod
    def build_from_chunks(
        cls,
        chunks: Iterable[Any],
        folder: str | os.PathLike[str],
        shards: int,
        *,
        algorithm: str | None = None,
        bits: int | None = None,
        kind: Kind = "auto",
        design_threshold: int | None = None,
        overwrite: bool = False,
        spill_dir: str | None = None,
    ) -> ShardedIndex:
        """Build from a stream of chunks — :class:`~hashlib_ext.formats.HashList` objects
        (as :func:`~hashlib_ext.formats.iter_hash_list` yields them: hashes, ids, keys,
        metadata columns) or HashArrays (ids continuing 0, 1, ...) — in bounded memory:
        each chunk is split by
        shard into temporary Parquet files (in ``spill_dir``, default the system temp
        folder), then the shards are built one at a time. A hash list larger than memory
        can be indexed this way; ids must be unique across all chunks."""
        from .shard_spill import Spill

        shards = si.check_shards(shards)
        folder = os.fspath(folder)
        old = _existing(folder, overwrite)
        with tempfile.TemporaryDirectory(prefix="hashlib_ext-spill-", dir=spill_dir) as tmp:
            spill = Spill(tmp, shards)
            with spill:
                for chunk in chunks:
                    hashes, ids, keys = si.chunk_parts(chunk, spill.next_id)
                    codes, alg, b = si.input_codes(hashes, algorithm)
                    if spill.bits is None:
                        algorithm, bits = alg, b
                    spill.add(codes, ids, keys, alg, b, getattr(chunk, "metadata", None))
            if spill.bits is None:  # no chunks at all: an empty index
                algorithm = algorithm or "pdq"
                bits = bits or si.bits_of(algorithm)
            assert bits is not None
            token = sm.new_token()
            fsio.make_folder(folder)
            entries: list[ShardEntry] = []
            try:
                for k in range(shards):
                    codes, ids, keys, meta = spill.read(k, bits // 8)
                    si.check_unique(ids)
                    entries.append(st.write_shard(
                        folder, sm.shard_file_name(k, token), codes, ids, keys,
                        algorithm, bits, metadata=meta or None, kind=kind,
                        design_threshold=design_threshold))
                    del codes, ids, keys, meta
            except BaseException:
                _remove_files(folder, entries)
                raise
        next_id = max((e.max_id + 1 for e in entries if e.max_id is not None), default=0)
        return cls._commit(folder, Manifest(algorithm, bits, kind, next_id, entries), old)

    @classmethod
    def _commit(cls, folder: str, manifest: Manifest, old: Manifest | None) -> ShardedIndex:
        sm.write_manifest(folder, manifest)
        if old is not None:
            keep = {e.file for e in manifest.shards}
            _remove_files(folder, [e for e in old.shards if e.file not in keep])
        return cls(folder, manifest)

    # -- what it holds ------------------------------------------------------------------
    @property
    def folder(self) -> str:
        return self._folder

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def algorithm(self) -> str | None:
        return self._manifest.algorithm

    @property
    def bits(self) -> int:
        return self._manifest.bits

    @property
    def shards(self) -> int:
        """Number of shards."""
        return len(self._manifest.shards)

    @property
    def has_keys(self) -> bool:
        """Whether any hash has a key (from the manifest; no shard is loaded)."""
        return any(e.keys for e in self._manifest.shards)

    def __len__(self) -> int:
        return self._manifest.count

    def __repr__(self) -> str:
        return (f"ShardedIndex({self._folder!r}, algorithm={self.algorithm!r}, "
                f"bits={self.bits}, shards={self.shards}, n={len(self)})")

    def shard_location(self, k: int) -> str:
        """Path or URL of shard ``k``'s file."""
        return fsio.join(self._folder, self._manifest.shards[k].file)

    def load_shard(self, k: int) -> HashIndex:
        """Shard ``k``'s HashIndex, loaded in this process (checked, then kept)."""
        return self._handle(k).index

    def _handle(self, k: int) -> st.ShardHandle:
        with self._lock:
            h = self._local.get(k)
            if h is None:
                h = self._load(k)
                self._local[k] = h
            return h

    def _load(self, k: int) -> st.ShardHandle:
        return st.load_shard(self.shard_location(k), self._manifest.shards[k], self.algorithm,
                             self.bits)

    def verify(self, client: Any = None) -> None:
        """Load every shard (on the cluster with ``client``, else here one at a time without
        keeping them) and check it against the manifest: a shard that fails raises
        :class:`~hashlib_ext.ShardChecksumError` naming its file."""
        if client is not None:
            client.gather(self.shard_futures(client))
            return
        for k in range(self.shards):
            if k not in self._local:
                self._load(k)

    def release(self, client: Any = None) -> None:
        """Drop the shards loaded in this process, and (with ``client``) the shard tasks
        held on that cluster, freeing their memory there."""
        with self._lock:
            self._local.clear()
            if client is not None:
                self._futures.pop(_client_id(client), None)

    # -- on a cluster -------------------------------------------------------------------
    def shard_futures(self, client: Any) -> list[Any]:
        """One future per shard on ``client``'s cluster, each the shard loaded by a
        long-lived task: submitted on first use (shard ``k`` pinned to the ``k``-th worker
        modulo their number, allowed to move), then reused by every query batch. Keys are
        derived from the shard checksums, so indexes opened twice share them."""
        cid = _client_id(client)
        with self._lock:
            held = self._futures.get(cid)
            digest = self._manifest.digest
            if held is not None and held[0] == digest:
                return held[1]
            workers = sorted(client.scheduler_info(n_workers=-1).get("workers", {}))
            first = [workers[k % len(workers)] if workers else None
                     for k in range(self.shards)]
            futures = [client.submit(st.load_shard, self.shard_location(k), entry,
                                     self.algorithm, self.bits,
                                     key=f"hashlib_ext-shard-{digest}-{k}", **pinned(first[k]))
                       for k, entry in enumerate(self._manifest.shards)]
            self._futures[cid] = (digest, futures, first)
            return futures

    def shard_workers(self, client: Any) -> list[str | None]:
        """The worker holding each shard now (None while one is being loaded): tasks on a
        shard are pinned there, so the shard never has to move (dask would otherwise be free
        to copy it, which for a shard means loading its file a second time)."""
        futures = self.shard_futures(client)
        first = self._futures[_client_id(client)][2]
        held = client.who_has(futures)
        return [(list(held.get(f.key, ())) or [w])[0] for f, w in zip(futures, first,
                                                                     strict=True)]

    def submit_search(self, queries: QueryLike, threshold: int, client: Any) -> PendingSearch:
        """Send one query batch to every shard on ``client``'s cluster; returns at once."""
        q = self._as_codes(queries)
        t = si.check_threshold(threshold)
        return PendingSearch(client, self._submit(client, st.search_shard, q, t),
                             q.shape[0], None)

    def _submit(self, client: Any, fn: Any, q: np.ndarray, arg: Any) -> list[Any]:
        shard_futures = self.shard_futures(client)
        workers = self.shard_workers(client)
        # A larger batch becomes one task of its own (not client.scatter: scattered data has
        # no recipe, so a worker lost with it could not be recomputed); the shard tasks fetch
        # it from wherever it ran.
        qarg: Any = q if q.nbytes <= INLINE_QUERY_BYTES else \
            client.submit(st.query_batch, q, pure=False)
        return [client.submit(fn, f, qarg, arg, pure=False, **pinned(w))
                for f, w in zip(shard_futures, workers, strict=True)]

    # -- searching ----------------------------------------------------------------------
    def search(self, queries: QueryLike, threshold: int,
               client: Any = None) -> list[list[tuple[int, int]]]:
        """Per query, every ``(id, distance)`` with distance <= threshold, nearest first,
        ties by id: what :meth:`HashIndex.search` answers over the union. ``client``: a
        ``distributed.Client`` to search on its cluster; None searches here, shard by
        shard (each loaded on first use and kept)."""
        return st.to_lists(*self.search_arrays(queries, threshold, client))

    def search_arrays(self, queries: QueryLike, threshold: int,
                      client: Any = None) -> st.Arrays:
        """Batch form of :meth:`search`, as :meth:`HashIndex.search_arrays`."""
        q = self._as_codes(queries)
        t = si.check_threshold(threshold)
        if client is not None:
            return PendingSearch(client, self._submit(client, st.search_shard, q, t),
                                 q.shape[0], None).arrays()
        parts = [self._handle(k).index.search_arrays(q, t) for k in range(self.shards)]
        return st.merge(parts, q.shape[0])

    def knn(self, queries: QueryLike, k: int, client: Any = None) -> list[list[tuple[int, int]]]:
        """Per query, the ``k`` nearest ``(id, distance)``, ties by smallest id: what
        :meth:`HashIndex.knn` answers over the union."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        q = self._as_codes(queries)
        k = int(k)
        if client is not None:
            return PendingSearch(client, self._submit(client, st.knn_shard, q, k),
                                 q.shape[0], k).result()
        parts = [st.knn_shard(self._handle(s), q, k) for s in range(self.shards)]
        return st.to_lists(*st.merge(parts, q.shape[0], k))

    def search_dihedral(self, variants: HashArray | np.ndarray, threshold: int,
                        client: Any = None) -> list[list[tuple[int, int, int]]]:
        """What :meth:`HashIndex.search_dihedral` answers over the union (8 rows per
        query, as ``hash_image(src, "pdq", dihedral=True)`` gives them)."""
        q = self._as_codes(variants)
        if q.shape[0] % 8:
            raise HashFormatError(f"dihedral queries need 8 rows per query, got "
                                  f"{q.shape[0]} rows")
        lims, ids, dist = self.search_arrays(q, threshold, client)
        return dihedral_answer(lims, ids, dist, q.shape[0])

    def keys(self, ids: Iterable[int] | np.ndarray, client: Any = None) -> list[str | None]:
        """The key recorded for each id (None where none was, or the id is unknown)."""
        return self._by_shard(ids, client, st.keys_shard, (), None)

    def metadata(self, ids: Iterable[int] | np.ndarray, columns: Sequence[str] | None = None,
                 client: Any = None) -> list[dict[str, str]]:
        """Per id, ``{column: value}`` as :meth:`HashIndex.metadata` gives it."""
        return self._by_shard(ids, client, st.metadata_shard, (columns,), {})

    def _by_shard(self, ids: Iterable[int] | np.ndarray, client: Any, fn: Any,
                  args: tuple[Any, ...], empty: Any) -> list[Any]:
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, np.int64)
        which = sm.shard_of(arr, self.shards)
        out: list[Any] = [empty] * arr.size
        wanted = np.flatnonzero(np.bincount(which, minlength=self.shards)).tolist()
        rows = {k: np.flatnonzero(which == k) for k in wanted}
        if client is not None:
            futures = self.shard_futures(client)
            workers = self.shard_workers(client)
            found = client.gather([client.submit(fn, futures[k], arr[rows[k]], *args,
                                                 pure=False, **pinned(workers[k]))
                                   for k in wanted])
        else:
            found = [fn(self._handle(k), arr[rows[k]], *args) for k in wanted]
        for k, values in zip(wanted, found, strict=True):
            for r, v in zip(rows[k].tolist(), values, strict=True):
                out[r] = v
        return out

    # -- adding -------------------------------------------------------------------------
    def add(self, hashes: HashArray | Hash | np.ndarray,
            ids: Sequence[int] | np.ndarray | None = None, *,
            keys: Sequence[str | None] | None = None,
            metadata: MetadataLike | None = None) -> np.ndarray:
        """Add hashes, each to the shard its id maps to; returns their ids (default: from
        ``next_id`` on, as :meth:`HashIndex.add`). An id already in the index is refused
        (:class:`HashFormatError`), as is any repeated in ``ids``. Only the shards that
        receive hashes are rewritten (new files, then the manifest, then the old files are
        removed), here in this process; clusters holding the old shards drop them."""
        codes = self._as_codes(hashes)
        n = codes.shape[0]
        new_ids = si.ids_or_default(ids, n, self._manifest.next_id)
        si.check_unique(new_ids)
        si.check_len(keys, n, "keys")
        rows_meta = si.metadata_rows(metadata, n)
        if n == 0:
            return new_ids
        which = sm.shard_of(new_ids, self.shards)
        affected = np.flatnonzero(np.bincount(which, minlength=self.shards)).tolist()
        rows = {k: np.flatnonzero(which == k) for k in affected}
        token = sm.new_token()
        entries = list(self._manifest.shards)
        written: list[ShardEntry] = []
        with self._lock:
            handles = {k: self._handle(k) for k in affected}
            for k in affected:  # refuse before anything changes
                taken = np.isin(new_ids[rows[k]], handles[k].index.ids)
                if taken.any():
                    raise HashFormatError(f"ids already in the index: "
                                          f"{new_ids[rows[k]][taken][:5].tolist()}")
            try:
                for k in affected:
                    r = rows[k]
                    handles[k].index.add(
                        codes[r], new_ids[r], keys=si.take(keys, r),
                        metadata=None if rows_meta is None else [rows_meta[i] for i in r.tolist()])
                    entries[k] = st.save_shard(self._folder, sm.shard_file_name(k, token),
                                               handles[k].index)
                    written.append(entries[k])
                old = self._manifest
                manifest = Manifest(old.algorithm, old.bits, old.kind,
                                    max(old.next_id, int(new_ids.max()) + 1), entries)
                sm.write_manifest(self._folder, manifest)
            except BaseException:
                _remove_files(self._folder, written)
                for k in affected:  # their in-memory copies may hold part of the change
                    self._local.pop(k, None)
                raise
            _remove_files(self._folder, [old.shards[k] for k in affected])
            self._manifest = manifest
            for k in affected:
                self._local[k] = st.ShardHandle(self.shard_location(k), entries[k],
                                                self.algorithm, self.bits, handles[k].index)
            self._futures.clear()
        return new_ids

    def _as_codes(self, x: Any) -> np.ndarray:
        return si.query_codes(x, self.algorithm, self.bits)


# -- helpers ------------------------------------------------------------------------------
def pinned(worker: str | None) -> dict[str, Any]:
    """``client.submit`` options running a task on ``worker`` while it lives (elsewhere
    once it is gone, so a lost worker never stalls a task)."""
    return {} if worker is None else {"workers": [worker], "allow_other_workers": True}


def _client_id(client: Any) -> str:
    return str(getattr(client, "id", id(client)))


def _existing(folder: str, overwrite: bool) -> Manifest | None:
    """The manifest already in ``folder`` (to replace), refusing without ``overwrite``."""
    if not fsio.exists(sm.manifest_location(folder)):
        return None
    if not overwrite:
        raise FileExistsError(f"{folder}: a sharded index is already there "
                              "(pass overwrite=True to replace it)")
    with contextlib.suppress(Exception):
        return sm.read_manifest(folder)
    return None


def _remove_files(folder: str, entries: Iterable[ShardEntry]) -> None:
    for e in entries:
        with contextlib.suppress(OSError):
            fsio.remove(fsio.join(folder, e.file))
