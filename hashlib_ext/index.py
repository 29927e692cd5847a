"""HashIndex: exact Hamming-distance search over perceptual hashes, with ids, keys,
per-hash metadata and persistence in one checksummed file.

Codes live in a FAISS ``IndexBinaryFlat`` (brute-force scan, k-NN). For large sets a
multi-index-hashing structure (:mod:`hashlib_ext.mih`) answers threshold queries exactly
without scanning everything. ``kind="auto"`` uses it from ``AUTO_MIH_MIN`` codes up, and
only for thresholds where its cost model beats a scan. See docs/matching.md for the
measurements behind these choices.

Thread safety: one HashIndex may be shared by threads. Searches (``search``,
``search_arrays``, ``search_dihedral``, ``knn``) and lookups run concurrently under a
shared lock; ``add``, ``remove``, ``prepare`` and building MIH tables take it exclusively,
so every search sees the index entirely before or entirely after each change.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import faiss
import numpy as np

from . import container, hugepages, mih
from .errors import (
    AlgorithmMismatchError,
    HashFormatError,
    IndexFileError,
    UnknownAlgorithmError,
)
from .hash import Hash, HashArray
from .rwlock import RWLock

Kind = Literal["auto", "flat", "mih"]
QueryLike = Hash | HashArray | np.ndarray
MetadataLike = Mapping[str, Sequence[str | None]] | Sequence[Mapping[str, str | None] | None]

AUTO_MIH_MIN = 30_000
"""``kind="auto"`` builds MIH tables from this many codes up (see docs/matching.md)."""
MEMORY_FACTOR = 2.9
"""MIH layouts are chosen so codes + ids + tables stay within this many times the raw codes."""
SMALL_CODE_TABLE_BYTES = 50
"""For codes of at most 64 bits, tables may use this many bytes per code instead (inline
tables, which store the codes themselves: see docs/matching.md)."""
BUILD_ATTEMPTS = 3
"""Table builds outside the lock that a removal may void before one builds under it."""
TAIL_MIN = 4096
TAIL_FRACTION = 0.05
TAIL_MAX = 50_000
"""Codes added after the MIH tables were built form a *tail* that searches scan exactly;
the tables are rebuilt over everything once the tail exceeds
``max(TAIL_MIN, min(TAIL_FRACTION * indexed, TAIL_MAX))`` codes (and on
:meth:`HashIndex.prepare` / :meth:`HashIndex.save`), so adding a few hashes between
searches costs no rebuild, while the scan stays below about 50 us per query (256 bits)."""
MAX_BITS = 1 << 16
"""Widest code an index holds."""
MAX_METADATA_COLUMNS = 256
MAX_COLUMN_NAME = 256
MAX_NAME = 256
"""Longest algorithm name an index records."""

MAGIC = container.MAGIC
FORMAT = "hashlib_ext.HashIndex"
FORMAT_VERSION = 2
"""Version 2: one :mod:`hashlib_ext.container` file holding codes, ids, MIH tables, keys and
metadata. Version 1 (a FAISS section, with keys in a ``PATH.keys.sqlite`` side file) is
still read; saving always writes version 2 and removes the side file."""
LEGACY_KEYS_SUFFIX = ".keys.sqlite"
_FAISS_FOURCC = b"IBxF"  # FAISS's tag for a serialised IndexBinaryFlat (version 1 files)
_V1_DTYPES: dict[str, np.dtype] = {name: np.dtype(name)
                                   for name in ("u1", "<i4", "<u4", "<u8", "<i8")}
_LEGACY_KEYS_BYTES_PER_CODE = 8192
"""A version-1 keys database larger than 1 MiB plus this much per code is refused unread."""
_ID_RANGE = (-(1 << 63), 1 << 63)  # next_id may be one past the largest int64 id
_MAX_DESIGN_T = 1 << 20


class HashIndex:
    """Exact Hamming range and k-NN search over hashes of one algorithm (or raw codes).

    ``HashIndex("pdq")`` takes its width from the hasher registry; ``HashIndex(bits=64)``
    holds raw codes: with no algorithm the index checks widths only and accepts hashes of
    any algorithm of that width. ``kind`` is ``"auto"``, ``"flat"`` (always scan) or
    ``"mih"`` (always use MIH tables, whatever the size). ``design_threshold`` is the
    threshold the MIH layout is tuned for (default: the algorithm's default threshold);
    every threshold is still answered exactly.

    Safe to share between threads: searches and lookups run concurrently, while ``add``,
    ``remove`` and ``prepare`` wait for running searches and hold new ones back until they
    are done (a reader-writer lock), so each search is exact against the index as it was
    before or after any change, never in between.
    """

    def __init__(
        self,
        algorithm: str | None = None,
        *,
        bits: int | None = None,
        kind: Kind = "auto",
        design_threshold: int | None = None,
    ):
        known = None
        if algorithm is not None:
            if not isinstance(algorithm, str) or not 0 < len(algorithm) <= MAX_NAME:
                raise HashFormatError(f"algorithm must be a non-empty string of at most "
                                      f"{MAX_NAME} characters, got {str(algorithm)[:80]!r}")
            from .hashers import expected_bits

            known = expected_bits(algorithm)
        if bits is None:
            if known is None:
                if algorithm:
                    from .hashers import algorithms

                    raise UnknownAlgorithmError(
                        f"unknown algorithm {algorithm!r} (known: {', '.join(algorithms())}): "
                        "pass bits= to index raw codes")
                raise HashFormatError("HashIndex needs an algorithm or bits=")
            bits = known
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits <= 0 \
                or bits % 8 or bits > MAX_BITS:
            raise HashFormatError(
                f"bits must be a positive multiple of 8 up to {MAX_BITS}, got {bits!r}")
        if known is not None and known != bits:
            raise AlgorithmMismatchError(f"{algorithm} hashes have {known} bits, not {bits}")
        if kind not in ("auto", "flat", "mih"):
            raise ValueError(f"kind must be 'auto', 'flat' or 'mih', got {kind!r}")
        self._algorithm = algorithm
        self._bits = int(bits)
        self._kind: Kind = kind
        if design_threshold is None:
            design_threshold = _default_threshold(algorithm, self._bits)
        self._design_t = min(_check_threshold(design_threshold), _MAX_DESIGN_T)
        self._flat = faiss.IndexBinaryFlat(self._bits)
        self._ids: np.ndarray | None = None  # None: id == position (the common default case)
        self._next_id = 0
        self._tables: mih.MIHTables | None = None
        self._keys: dict[int, str] = {}
        self._meta: dict[str, dict[int, str]] = {}
        self._lock = RWLock()
        self._build_lock = threading.Lock()  # one table build at a time
        self._epoch = 0  # bumped by every removal: positions may have shifted

    # -- properties ---------------------------------------------------------------------
    @property
    def algorithm(self) -> str | None:
        return self._algorithm

    @property
    def bits(self) -> int:
        return self._bits

    @property
    def kind(self) -> Kind:
        return self._kind

    def __len__(self) -> int:
        return int(self._flat.ntotal)

    def __repr__(self) -> str:
        return (f"HashIndex(algorithm={self._algorithm!r}, bits={self._bits}, "
                f"kind={self._kind!r}, n={len(self)})")

    @property
    def ids(self) -> np.ndarray:
        """The ids of the stored hashes, in storage order (a copy)."""
        with self._lock.read():
            return self._id_array().copy()

    @property
    def codes(self) -> np.ndarray:
        """The stored codes, ``(n, bits/8)`` uint8, in storage order (a copy)."""
        with self._lock.read():
            return self._codes().copy()

    @property
    def nbytes(self) -> int:
        """Memory held: codes, ids and MIH tables (when built)."""
        with self._lock.read():
            return self._nbytes()

    def _nbytes(self) -> int:
        n = self._codes().nbytes + (0 if self._ids is None else self._ids.nbytes)
        return n + (0 if self._tables is None else self._tables.nbytes)

    def stats(self) -> dict[str, Any]:
        """Size, memory and the MIH layout, for reports and benchmarks."""
        with self._lock.read():
            tb = self._tables
            return {
                "count": len(self), "bits": self._bits, "kind": self._kind,
                "nbytes": self._nbytes(), "raw_nbytes": self._codes().nbytes,
                "mih_widths": None if tb is None else list(tb.widths),
                "mih_slack": None if tb is None else tb.slack,
                "mih_inline": None if tb is None else tb.inline,
                "mih_indexed": None if tb is None else tb.n,
            }

    # -- adding and removing ------------------------------------------------------------
    def add(
        self,
        hashes: HashArray | Hash | np.ndarray,
        ids: Sequence[int] | np.ndarray | None = None,
        *,
        keys: Sequence[str] | None = None,
        metadata: MetadataLike | None = None,
    ) -> np.ndarray:
        """Add hashes; returns their ids. Default ids continue ``0, 1, ...`` after the last
        default or largest given id. ``keys`` optionally maps each id to a string (a path),
        looked up with :meth:`keys`. ``metadata`` optionally records string fields per id
        (e.g. ThreatExchange's ``collab``, ``category``, ``tags``, or any payload): either a
        mapping ``column -> one str-or-None per hash`` or one mapping (or None) per hash;
        None records no value (and clears an earlier one for that id). Read back with
        :meth:`metadata`. Keys and metadata are saved in the index file."""
        codes = self._as_codes(hashes, "hashes")
        n = codes.shape[0]
        given_ids = None
        if ids is not None:
            given_ids = np.asarray(ids)
            if given_ids.ndim != 1 or given_ids.shape[0] != n or (
                    n and not np.issubdtype(given_ids.dtype, np.integer)):
                raise HashFormatError(
                    f"ids must be a 1-D integer array of length {n}, "
                    f"got shape {given_ids.shape} dtype {given_ids.dtype}"
                )
            given_ids = given_ids.astype(np.int64)
        if keys is not None:
            keys = list(keys)
            if len(keys) != n or not all(k is None or isinstance(k, str) for k in keys):
                raise HashFormatError(f"keys must be {n} strings (or None), one per hash")
        columns = _check_metadata(metadata, n)
        with self._lock.write():
            if given_ids is None:
                if n and self._next_id + n - 1 > np.iinfo(np.int64).max:
                    raise HashFormatError(
                        f"automatic ids would pass 2**63 - 1 (the largest id is "
                        f"{self._next_id - 1}): give ids")
                new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            else:
                new_ids = given_ids
            if n == 0:
                return new_ids
            if len(set(self._meta) | set(columns)) > MAX_METADATA_COLUMNS:
                raise HashFormatError(
                    f"an index holds at most {MAX_METADATA_COLUMNS} metadata columns")
            start = len(self)
            identity = self._ids is None and bool(
                np.array_equal(new_ids, np.arange(start, start + n, dtype=np.int64)))
            if not identity:
                self._ids = np.concatenate([self._id_array(), new_ids])
            self._flat.add(codes)  # MIH tables (if any) stay valid: new codes join the tail
            self._next_id = max(self._next_id, int(new_ids.max()) + 1)
            id_list = new_ids.tolist()
            if keys is not None:  # None: no key for that hash
                for i, k in zip(id_list, keys, strict=True):
                    if k is None:
                        self._keys.pop(i, None)
                    else:
                        self._keys[i] = k
            for name, values in columns.items():
                col = self._meta.setdefault(name, {})
                for i, v in zip(id_list, values, strict=True):
                    if v is None:
                        col.pop(i, None)
                    else:
                        col[i] = v
            return new_ids

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove every stored hash whose id is in ``ids``; returns how many were removed.

        Removing only codes of the tail (added since the MIH tables were built) keeps the
        tables; removing an indexed code drops them (positions shift), so the next search
        rebuilds them."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        with self._lock.write():
            current = self._id_array()
            gone = np.flatnonzero(np.isin(current, ids))
            if gone.size == 0:
                return 0
            self._flat.remove_ids(faiss.IDSelectorBatch(gone.astype(np.int64)))
            self._ids = np.delete(current, gone)
            self._epoch += 1
            # FAISS compacts in order: positions below the first removed one are unchanged.
            if self._tables is not None and int(gone[0]) < self._tables.n:
                self._tables = None
            for i in np.unique(ids).tolist():
                self._keys.pop(i, None)
                for col in self._meta.values():
                    col.pop(i, None)
            return int(gone.size)

    def keys(self, ids: Iterable[int] | np.ndarray) -> list[str | None]:
        """The external keys recorded for ``ids`` (None where none was given)."""
        with self._lock.read():
            return [self._keys.get(int(i)) for i in ids]

    @property
    def metadata_columns(self) -> list[str]:
        """Names of the metadata columns recorded so far, in order of first use."""
        with self._lock.read():
            return list(self._meta)

    def metadata(self, ids: Iterable[int] | np.ndarray,
                 columns: Sequence[str] | None = None) -> list[dict[str, str]]:
        """Per id, ``{column: value}`` for the columns (default: all) that have a value
        recorded for it (an empty dict where none has)."""
        with self._lock.read():
            names = list(self._meta) if columns is None else list(columns)
            cols = [(c, self._meta.get(c, {})) for c in names]
            out = []
            for i in ids:
                i = int(i)
                out.append({c: col[i] for c, col in cols if i in col})
            return out

    def prepare(self) -> None:
        """Build the MIH tables now if this index's kind and size call for them (otherwise
        the first search builds them), e.g. before :meth:`save` so a loaded index is ready.
        Tables already built are rebuilt to cover the tail of codes added since. Searches
        go on meanwhile (see :meth:`_refresh_tables`)."""
        self._refresh_tables(self._tables_behind, wait=True)

    # -- searching ----------------------------------------------------------------------
    def search(self, queries: QueryLike, threshold: int) -> list[list[tuple[int, int]]]:
        """Per query, every ``(id, distance)`` with distance <= threshold, nearest first
        (ties by id). Exact for every index kind."""
        lims, ids, dist = self.search_arrays(queries, threshold)
        return _to_lists(lims, ids, dist)

    def search_arrays(
        self, queries: QueryLike, threshold: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch form of :meth:`search`: ``(lims, ids, distances)`` where query ``i``'s
        matches are ``ids[lims[i]:lims[i+1]]`` (int64) at ``distances[...]`` (int32),
        nearest first, ties by id (like FAISS's ``range_search``, but inclusive)."""
        q = self._as_codes(queries, "queries")
        t = min(_check_threshold(threshold), self._bits)  # no distance exceeds the width
        self._ensure_tables()
        with self._lock.read():
            return self._search(q, t)

    def search_dihedral(
        self, variants: HashArray | np.ndarray, threshold: int
    ) -> list[list[tuple[int, int, int]]]:
        """Match any of 8 rotations/flips per query (rows ``8i..8i+7`` of ``variants``, as
        ``hash_image(src, "pdq", dihedral=True)`` returns them). Per query, every
        ``(id, distance, variant)`` with the best distance over the variants (lowest variant
        index on ties), nearest first, ties by id."""
        q = self._as_codes(variants, "variants")
        if q.shape[0] % 8:
            raise HashFormatError(
                f"dihedral queries need 8 rows per query, got {q.shape[0]} rows")
        lims, ids, dist = self.search_arrays(q, threshold)
        return dihedral_answer(lims, ids, dist, q.shape[0])

    def knn(self, queries: QueryLike, k: int) -> list[list[tuple[int, int]]]:
        """Per query, the ``k`` nearest ``(id, distance)`` (fewer if the index is smaller),
        nearest first; among equal distances the smallest ids win, so results are
        deterministic."""
        q = self._as_codes(queries, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        nq = q.shape[0]
        self._ensure_tables()
        with self._lock.read():
            n = len(self)
            if nq == 0 or n == 0:
                return [[] for _ in range(nq)]
            k = min(int(k), n)
            dk, _ = self._flat.search(q, k)
            kth = dk[:, k - 1].astype(np.int64)
            out: list[list[tuple[int, int]]] = [[] for _ in range(nq)]
            # Exact tie handling: everything within the k-th distance, then the first k.
            for radius in np.unique(kth).tolist():
                rows = np.flatnonzero(kth == radius)
                found = _to_lists(*self._search(q[rows], radius))
                for r, res in zip(rows.tolist(), found, strict=True):
                    out[r] = res[:k]
            return out

    # -- internals (callers hold the lock) ---------------------------------------------------
    def _search(self, q: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The range search itself; the caller holds the lock (shared or exclusive)."""
        nq = q.shape[0]
        if nq == 0 or len(self) == 0:
            return np.zeros(nq + 1, dtype=np.int64), np.empty(0, np.int64), np.empty(0, np.int32)
        plan = self._plan(t)
        if plan is None:
            lims, dist, pos = self._flat.range_search(q, t + 1)  # FAISS: strictly < radius
            lims = lims.astype(np.int64)
            qof = np.repeat(np.arange(nq, dtype=np.int64), np.diff(lims))
            dist = dist.astype(np.int32)
        else:
            tb = self._tables
            assert tb is not None
            codes = self._codes()
            qof, pos, dist = tb.range_search(codes[:tb.n], q, t, plan)
            if tb.n < len(self):  # the tail: scanned exactly, merged by the sort below
                tq, tp, td = _scan(codes[tb.n:], q, t, self._bits)
                qof = np.concatenate([qof.astype(np.int64, copy=False), tq])
                pos = np.concatenate([pos.astype(np.int64, copy=False), tp + tb.n])
                dist = np.concatenate([dist.astype(np.int32, copy=False), td])
            lims = np.zeros(nq + 1, dtype=np.int64)
            np.cumsum(np.bincount(qof, minlength=nq), out=lims[1:])
        ids = self._positions_to_ids(pos)
        order = np.lexsort((ids, dist, qof))
        return lims, ids[order], dist[order]

    def _codes(self) -> np.ndarray:
        """A view of FAISS's code storage: valid only while the caller holds the lock."""
        n, nb = len(self), self._bits // 8
        if n == 0:
            return np.zeros((0, nb), dtype=np.uint8)
        xb = self._flat.xb  # type: ignore[attr-defined]  # (missing from FAISS's stubs)
        return faiss.rev_swig_ptr(xb.data(), n * nb).reshape(n, nb)

    def _id_array(self) -> np.ndarray:
        if self._ids is None:
            return np.arange(len(self), dtype=np.int64)
        return self._ids

    def _positions_to_ids(self, pos: np.ndarray) -> np.ndarray:
        pos = pos.astype(np.int64, copy=False)
        return pos.copy() if self._ids is None else self._ids[pos]

    def _wants_tables(self) -> bool:
        n = len(self)
        return n > 0 and (self._kind == "mih" or (self._kind == "auto" and n >= AUTO_MIH_MIN))

    def _needs_build(self) -> bool:
        """Whether this index's kind and size call for MIH tables that are missing, or whose
        tail has outgrown the rebuild rule."""
        if not self._wants_tables():
            return False
        tb = self._tables
        return tb is None or len(self) - tb.n > \
            max(TAIL_MIN, min(TAIL_FRACTION * tb.n, TAIL_MAX))

    def _tables_behind(self) -> bool:
        """Whether this index calls for tables that are missing or miss some codes."""
        return self._wants_tables() and (self._tables is None or self._tables.n < len(self))

    def _ensure_tables(self) -> None:
        """Before a search: build the tables when they are due, unless another thread is
        building them already (the search then goes on with what there is: exact too)."""
        with self._lock.read():
            due = self._needs_build()
        if due:
            self._refresh_tables(self._needs_build, wait=False)

    def _refresh_tables(self, due: Any, wait: bool) -> None:
        """(Re)build the MIH tables over every stored code while ``due()`` says so.

        The build works on a copy of the codes and holds no lock, so searches (with the old
        tables, the tail scanned) and adds go on while it runs: at 10M codes it takes about
        20 s, which used to stall every search. The new tables are installed under the
        exclusive lock for an instant, unless a removal moved codes meanwhile (then, with
        ``wait``, it builds again; after :data:`BUILD_ATTEMPTS` such tries, holding the
        exclusive lock). Without ``wait`` it returns at once when another thread is
        building. Costs, while it runs, a copy of the codes and a second set of tables.
        """
        if not self._build_lock.acquire(blocking=wait):
            return
        try:
            for _ in range(BUILD_ATTEMPTS):
                with self._lock.read():
                    if not due():
                        return
                    n, epoch = len(self), self._epoch
                    widths, slack, inline = self._layout(n)
                    codes = self._codes().copy()  # the storage may move once unlocked
                tables = mih.MIHTables.build(codes, widths, slack, inline)
                del codes
                with self._lock.write():
                    installed = self._epoch == epoch  # positions 0..n-1 are as built
                    if installed:
                        self._tables = tables
                if installed:
                    with self._lock.read():
                        hugepages.advise(self._codes())  # the codes the tables point into
                    return
                if not wait:
                    return
            with self._lock.write():  # removals keep landing: build holding them back
                if due():
                    widths, slack, inline = self._layout(len(self))
                    self._tables = mih.MIHTables.build(self._codes(), widths, slack, inline)
        finally:
            self._build_lock.release()

    def _plan(self, t: int) -> mih.SearchPlan | None:
        """The MIH plan to use for threshold ``t``, or None to scan (also when tables are not
        built: a scan is exact too)."""
        tb = self._tables
        if tb is None or not self._wants_tables():
            return None
        plan = mih.plan_radii(tb.widths, t, tb.n, self._bits // 8, tb.slack, tb.inline)
        if not plan.probes or (self._kind == "auto" and plan.use_scan):
            return None
        return plan

    def _layout(self, n: int) -> mih.Layout:
        raw = n * self._bits // 8
        ids = 0 if self._ids is None else self._ids.nbytes
        budget = max(0.5 * raw, (MEMORY_FACTOR - 1) * raw - ids)
        if self._bits <= 64:
            budget = max(budget, SMALL_CODE_TABLE_BYTES * n)
        return mih.choose_layout(self._bits, n, self._design_t, budget)

    def _as_codes(self, x: Any, what: str) -> np.ndarray:
        nb = self._bits // 8
        if isinstance(x, (Hash, HashArray)):
            if self._algorithm is not None and x.algorithm != self._algorithm:
                raise AlgorithmMismatchError(
                    f"{what}: {x.algorithm} hashes cannot be used with a "
                    f"{self._algorithm} index")
            if x.bits != self._bits:
                raise AlgorithmMismatchError(
                    f"{what}: {x.algorithm} hashes have {x.bits} bits, "
                    f"the index holds {self._bits}-bit codes")
            codes = x.code[None, :] if isinstance(x, Hash) else x.codes
        elif isinstance(x, np.ndarray):
            if x.dtype != np.uint8 or x.ndim not in (1, 2) or x.shape[-1] != nb:
                raise HashFormatError(
                    f"{what}: expected a (n, {nb}) uint8 array of {self._bits}-bit codes, "
                    f"got {x.dtype} {x.shape}")
            codes = x.reshape(-1, nb)
        else:
            raise HashFormatError(
                f"{what}: expected a Hash, HashArray or uint8 array, got {type(x).__name__}")
        return np.ascontiguousarray(codes, dtype=np.uint8)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index, with its keys and metadata, to the one file ``path``, atomically
        (temp file, fsync, rename): a crash or kill mid-save leaves the previous file intact,
        and the temp file it leaves behind is removed by the next save or load of ``path``.
        MIH tables that do not cover codes added since they were built are rebuilt first.
        An old ``path + ".keys.sqlite"`` side file (format version 1) is removed once the
        new file is in place. Searches may run while the file is written; adds wait."""
        path = os.fspath(path)
        self._refresh_tables(lambda: self._tables is not None and self._tables.n < len(self),
                             wait=True)
        with self._lock.read():
            meta, arrays = self._sections()
            container.remove_stale_temps(path)
            container.write(path, FORMAT, FORMAT_VERSION, meta, arrays)
        with contextlib.suppress(OSError):  # (a version 2 file never reads it anyway)
            os.unlink(path + LEGACY_KEYS_SUFFIX)

    def _sections(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Header fields and array sections of the file (caller holds the lock)."""
        tb = self._tables
        arrays: dict[str, np.ndarray] = {"codes": self._codes()}
        if self._ids is not None:
            arrays["ids"] = self._ids
        if tb is not None:
            arrays["mih.entries"] = tb.entries
            if tb.positions is not None:
                arrays["mih.positions"] = tb.positions
            arrays["mih.offsets"] = tb.offsets
        _put_strings(arrays, "keys", self._keys)
        for j, col in enumerate(self._meta.values()):
            _put_strings(arrays, f"meta.{j}", col)
        meta = {
            "algorithm": self._algorithm, "bits": self._bits, "count": len(self),
            "kind": self._kind, "design_threshold": self._design_t, "next_id": self._next_id,
            "mih": None if tb is None else {"widths": list(tb.widths), "slack": tb.slack,
                                             "inline": tb.inline, "indexed": tb.n},
            "metadata_columns": list(self._meta),
        }
        return meta, arrays

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HashIndex:
        """Read an index written by :meth:`save` (format version 2, or version 1 with its
        ``.keys.sqlite`` side file). A truncated, modified, foreign or newer-version file,
        or anything but a regular file, raises :class:`~hashlib_ext.errors.IndexFileError`.
        Temp files that killed saves of ``path`` left behind are removed."""
        path = os.fspath(path)
        container.remove_stale_temps(path)
        try:
            f, size = container.open_regular(path)
            with f:
                _, head = container.read_header(f, size, path)
                version = head.get("version")
                f.seek(0)
                if head.get("format") == FORMAT and type(version) is int and version == 1:
                    return cls._read_v1(f, size, path)
                _, meta, arrays = container.read_open(f, size, path, FORMAT, FORMAT_VERSION)
        except OSError as e:
            raise IndexFileError(f"{path}: cannot read index file: {e.strerror or e}") from e
        return cls._from_sections(meta, arrays, path)

    @classmethod
    def _from_sections(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                       path: str) -> HashIndex:
        def bad(msg: str) -> IndexFileError:
            return IndexFileError(f"{path}: {msg}")

        bits = _int_field(meta, "bits", 8, MAX_BITS, bad)
        count = _int_field(meta, "count", 0, 1 << 40, bad)
        design_t = _int_field(meta, "design_threshold", 0, _MAX_DESIGN_T, bad)
        next_id = _int_field(meta, "next_id", *_ID_RANGE, bad)
        algorithm, kind = meta.get("algorithm"), meta.get("kind")
        if not _algorithm_ok(algorithm):
            raise bad("invalid header: algorithm")
        if kind not in ("auto", "flat", "mih"):
            raise bad("invalid header: kind")
        columns = meta.get("metadata_columns", [])
        if not isinstance(columns, list) or len(columns) > MAX_METADATA_COLUMNS or \
                len(set(map(str, columns))) != len(columns) or \
                any(not _column_name_ok(c) for c in columns):
            raise bad("invalid header: metadata columns")
        table = meta.get("mih")
        nb = bits // 8
        expected: dict[str, tuple[str, tuple[int, ...] | None]] = {
            "codes": ("u1", (count, nb)), "ids": ("<i8", (count,))}
        if table is not None:
            if not isinstance(table, dict) or not isinstance(table.get("inline"), bool) or \
                    not isinstance(table.get("widths"), list):
                raise bad("invalid MIH description in header")
            indexed = _int_field(table, "indexed", 0, count, bad)
            m = len(table["widths"])
            inline = table["inline"]
            if inline and bits > 64:
                raise bad("invalid MIH description in header (inline tables of wide codes)")
            expected["mih.entries"] = ("<u8" if inline else "<u4", (m, indexed))
            expected["mih.offsets"] = ("<i4", None)
            if inline:
                expected["mih.positions"] = ("<i4", (m, indexed))
        groups = ["keys"] + [f"meta.{j}" for j in range(len(columns))]
        for g in groups:
            expected[f"{g}.ids"] = ("<i8", None)
            expected[f"{g}.offsets"] = ("<i8", None)
            expected[f"{g}.data"] = ("u1", None)
        for name, arr in arrays.items():
            want = expected.get(name)
            if want is None or arr.dtype != np.dtype(want[0]) or \
                    (want[1] is not None and arr.shape != want[1]) or \
                    (want[1] is None and arr.ndim != 1):
                raise bad(f"unexpected or mis-shaped section {name[:40]!r}")
        codes = arrays.get("codes")
        if codes is None:
            raise bad("missing codes section")
        try:
            idx = cls(algorithm, bits=bits, kind=kind, design_threshold=design_t)
        except (HashFormatError, AlgorithmMismatchError, ValueError) as e:
            raise bad(f"invalid header: {e}") from None
        if count:
            idx._flat.add(np.ascontiguousarray(codes))
        del codes
        idx._next_id = next_id
        ids = arrays.get("ids")
        if ids is not None:
            idx._ids = ids
        if table is not None:
            ent, off = arrays.get("mih.entries"), arrays.get("mih.offsets")
            pos = arrays.get("mih.positions")
            if ent is None or off is None or (table["inline"] != (pos is not None)):
                raise bad("incomplete MIH tables")
            idx._tables = _checked_tables(table["widths"], table.get("slack"), bits,
                                          ent.shape[1], ent, off, pos, bad)
            hugepages.advise(idx._codes())
        all_ids = idx._id_array()
        idx._keys = _get_strings(arrays, "keys", all_ids, bad)
        for j, name in enumerate(columns):
            idx._meta[name] = _get_strings(arrays, f"meta.{j}", all_ids, bad)
        return idx

    @classmethod
    def _read_v1(cls, f: io.BufferedReader, size: int, path: str) -> HashIndex:
        """Format version 1: a FAISS section and MIH tables in the file, keys in the
        ``path + ".keys.sqlite"`` side database."""
        def bad(msg: str) -> IndexFileError:
            return IndexFileError(f"{path}: {msg}")

        raw_head, head = container.read_header(f, size, path)
        digest = hashlib.sha256(raw_head)
        try:
            sections: list[tuple[str, np.dtype, int]] = [
                (str(s["name"]), _V1_DTYPES[s["dtype"]], int(s["nbytes"]))
                        for s in head["sections"]]
            algorithm, kind = head["algorithm"], head["kind"]
            widths, slack = head["mih_widths"], head["mih_slack"]
            inline = bool(head.get("mih_inline"))
        except (KeyError, TypeError, ValueError):
            raise bad("corrupt header (missing or invalid fields)") from None
        bits = _int_field(head, "bits", 8, MAX_BITS, bad)
        count = _int_field(head, "count", 0, 1 << 40, bad)
        next_id = _int_field(head, "next_id", *_ID_RANGE, bad)
        design_t = _int_field(head, "design_threshold", 0, _MAX_DESIGN_T, bad)
        expected: dict[str, np.dtype] = {
                    "faiss": np.dtype("u1"), "ids": np.dtype("<i8"), "offsets": np.dtype("<i4"),
                    "entries": np.dtype("<u8" if inline else "<u4"),
                    "positions": np.dtype("<i4")}
        names = [nm for nm, _, _ in sections]
        if len(set(names)) != len(names) or any(
                expected.get(nm) != dt for nm, dt, _ in sections):
            raise bad("corrupt header (unknown, repeated or mistyped sections)")
        if any(nb < 0 or nb % dt.itemsize for _, dt, nb in sections) or \
                len(raw_head) + sum(nb for _, _, nb in sections) + 32 != size:
            raise bad("file size does not match its header (truncated or extended)")
        arrays: dict[str, np.ndarray] = {}
        for name, dt, nb in sections:
            arrays[name] = container.read_array(f, np.dtype(dt), nb, digest, bad)
        if f.read(32) != digest.digest():
            raise bad("checksum mismatch: the file is corrupted or was modified")

        if not _algorithm_ok(algorithm):
            raise bad("invalid header: algorithm")
        try:
            idx = cls(algorithm, bits=bits, kind=kind, design_threshold=design_t)
        except (HashFormatError, AlgorithmMismatchError, ValueError) as e:
            raise bad(f"invalid header: {e}") from None
        blob = arrays.pop("faiss", None)
        if blob is None or not _flat_blob_ok(blob, bits, count):
            raise bad("missing or unexpected FAISS section (not a flat binary index of "
                      f"{count} {bits}-bit codes)")
        try:
            flat = faiss.deserialize_index_binary(blob)
        except (RuntimeError, MemoryError) as e:
            raise bad(f"FAISS section unreadable: {e}") from None
        if not isinstance(flat, faiss.IndexBinaryFlat) or flat.d != bits \
                or flat.ntotal != count:
            raise bad("FAISS section does not match the header")
        idx._flat = flat
        idx._next_id = next_id
        ids = arrays.pop("ids", None)
        if ids is not None:
            if ids.shape != (count,):
                raise bad("ids section does not match the count")
            idx._ids = ids
        ent, off = arrays.pop("entries", None), arrays.pop("offsets", None)
        pos = arrays.pop("positions", None)
        if inline != (pos is not None):
            raise bad("incomplete MIH tables")
        if (ent is None) != (off is None) or (ent is not None and not widths):
            raise bad("incomplete MIH tables")
        if ent is not None and off is not None:
            idx._tables = _checked_tables(widths, slack, bits, count, ent, off, pos, bad)
        idx._keys = _read_legacy_keys(path + LEGACY_KEYS_SUFFIX, idx._id_array(), path)
        return idx


# -- helpers ------------------------------------------------------------------------------
def _default_threshold(algorithm: str | None, bits: int) -> int:
    if algorithm is not None:
        from .hashers import default_threshold

        with contextlib.suppress(ValueError, KeyError):
            return int(default_threshold(algorithm))
    return max(1, bits * 5 // 32)  # 10 of 64 bits, 40 of 256


def _algorithm_ok(name: Any) -> bool:
    return name is None or (isinstance(name, str) and 0 < len(name) <= MAX_NAME)


def _column_name_ok(name: Any) -> bool:
    return isinstance(name, str) and 0 < len(name) <= MAX_COLUMN_NAME


def _check_metadata(metadata: MetadataLike | None, n: int) -> dict[str, list[str | None]]:
    """``metadata`` as ``{column: n values}``, every value a str or None."""
    if metadata is None:
        return {}
    if isinstance(metadata, Mapping):
        columns: dict[str, list[str | None]] = {}
        for name, values in metadata.items():
            if not _column_name_ok(name):
                raise HashFormatError(f"metadata column names must be strings of 1 to "
                                      f"{MAX_COLUMN_NAME} characters, got {str(name)[:60]!r}")
            if isinstance(values, (str, bytes)):
                raise HashFormatError(f"metadata column {name!r}: one value per hash, "
                                      "not a single string")
            columns[name] = list(values)
    else:
        if isinstance(metadata, (str, bytes)):
            raise HashFormatError("metadata must be a mapping of columns or one mapping "
                                  "per hash")
        rows = list(metadata)
        if len(rows) != n:
            raise HashFormatError(f"metadata has {len(rows)} rows for {n} hashes")
        columns = {}
        for row in rows:
            if row is None:
                continue
            if not isinstance(row, Mapping):
                raise HashFormatError("metadata rows must be mappings (or None)")
            for name in row:
                if name not in columns:
                    if not _column_name_ok(name):
                        raise HashFormatError(
                            f"metadata column names must be strings of 1 to "
                            f"{MAX_COLUMN_NAME} characters, got {str(name)[:60]!r}")
                    columns[name] = []
        for name, values in columns.items():
            values.extend(None if row is None else row.get(name) for row in rows)
    if len(columns) > MAX_METADATA_COLUMNS:
        raise HashFormatError(f"at most {MAX_METADATA_COLUMNS} metadata columns")
    for name, values in columns.items():
        if len(values) != n:
            raise HashFormatError(
                f"metadata column {name!r} has {len(values)} values for {n} hashes")
        if not all(v is None or isinstance(v, str) for v in values):
            raise HashFormatError(f"metadata column {name!r}: values must be str or None")
    return columns


def _put_strings(arrays: dict[str, np.ndarray], group: str, values: dict[int, str]) -> None:
    """Sections ``group.ids`` (sorted int64), ``group.offsets`` and ``group.data``."""
    if not values and group == "keys":
        return
    ids = np.fromiter(values.keys(), dtype=np.int64, count=len(values))
    order = np.argsort(ids, kind="stable")
    texts = list(values.values())
    offsets, data = container.pack_strings([texts[i] for i in order.tolist()])
    arrays[f"{group}.ids"] = ids[order]
    arrays[f"{group}.offsets"] = offsets
    arrays[f"{group}.data"] = data


def _get_strings(arrays: dict[str, np.ndarray], group: str, index_ids: np.ndarray,
                 bad: Any) -> dict[int, str]:
    """Inverse of :func:`_put_strings`: ids must be unique and ids of the index."""
    parts = [arrays.get(f"{group}.{p}") for p in ("ids", "offsets", "data")]
    if all(p is None for p in parts):
        return {}
    ids, offsets, data = parts
    if ids is None or offsets is None or data is None:
        raise bad(f"incomplete {group} sections")
    if ids.size > index_ids.size or offsets.size != ids.size + 1 or \
            np.any(ids[1:] <= ids[:-1]) or not np.all(np.isin(ids, index_ids)):
        raise bad(f"{group} sections do not match the index's ids")
    texts = container.unpack_strings(offsets, data, bad)
    return {i: t for i, t in zip(ids.tolist(), texts, strict=True) if t is not None}


def _int_field(head: Mapping[str, Any], name: str, lo: int, hi: int, bad: Any) -> int:
    value = head.get(name)
    if type(value) is not int or not lo <= value <= hi:
        raise bad(f"invalid header: {name}")
    return value


def _read_legacy_keys(side: str, index_ids: np.ndarray, path: str) -> dict[int, str]:
    """Keys of a version-1 index from its SQLite side file, read from a private copy (never
    opened by URI, never written), bounded: only a plain table ``keys(id, key)`` is read, at
    most one row per code, under a cap on the file size and on SQLite's work."""
    def bad(msg: str) -> IndexFileError:
        return IndexFileError(
            f"{path}: keys file {side}: {msg}. Move it aside to load the index without "
            "keys, or load and save the index with a hashlib_ext that reads it, which "
            "converts it to a single file")

    count = int(index_ids.size)
    try:
        fd = os.open(side, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise bad(f"cannot open ({e.strerror or e})") from None
    limit = (1 << 20) + _LEGACY_KEYS_BYTES_PER_CODE * count
    with os.fdopen(fd, "rb") as src, \
            tempfile.TemporaryDirectory(prefix="hashlib_ext-keys-") as tmp:
        copy = os.path.join(tmp, "keys.sqlite")
        try:
            st = os.fstat(src.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise bad("not a regular file")
            if st.st_size > limit:
                raise bad(f"{st.st_size} bytes is too large for {count} keys")
            with open(copy, "wb") as dst:
                shutil.copyfileobj(src, dst)
                if dst.tell() > limit:
                    raise bad("grew too large while it was read")
        except OSError as e:
            raise bad(f"cannot read ({e.strerror or e})") from None
        return _query_legacy_keys(copy, index_ids, bad)


def _query_legacy_keys(copy: str, index_ids: np.ndarray, bad: Any) -> dict[int, str]:
    count = int(index_ids.size)
    budget = [1000 + count // 20]  # calls of 1000 SQLite instructions (about 5 per row)

    def progress() -> int:
        budget[0] -= 1
        return 1 if budget[0] < 0 else 0

    con = None
    try:
        con = sqlite3.connect(copy, uri=False, isolation_level=None)
        con.set_progress_handler(progress, 1000)
        con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1 << 20)
        con.execute("PRAGMA trusted_schema=OFF")
        con.execute("PRAGMA query_only=ON")
        schema = con.execute("SELECT type, name FROM sqlite_master LIMIT 3").fetchall()
        if schema != [("table", "keys")]:
            raise bad("not a keys database (expected only a table 'keys')")
        cols = [(r[1], str(r[2]).upper())
                for r in con.execute("PRAGMA table_info(keys)").fetchall()]
        if cols != [("id", "INTEGER"), ("key", "TEXT")]:
            raise bad("unexpected columns in table 'keys'")
        rows = con.execute("SELECT id, key FROM keys LIMIT ?", (count + 1,)).fetchall()
    except sqlite3.Error as e:
        raise bad(f"unreadable ({e})") from None
    finally:
        if con is not None:
            con.close()
    if len(rows) > count:
        raise bad(f"more keys than the index's {count} codes")
    keys: dict[int, str] = {}
    for i, k in rows:
        if type(i) is not int or not (k is None or isinstance(k, str)):
            raise bad("keys must be integer ids and text")
        if k is not None:
            keys[i] = k
    if keys and not np.all(np.isin(np.fromiter(keys, np.int64, len(keys)), index_ids)):
        raise bad("keys for ids the index does not hold")
    return keys


def _flat_blob_ok(blob: np.ndarray, bits: int, count: int) -> bool:
    """Whether ``blob`` has the exact layout FAISS writes for an ``IndexBinaryFlat`` of
    ``count`` codes of ``bits`` bits (checked before FAISS parses and allocates anything):
    fourcc, d, code_size, ntotal, is_trained, metric_type, then the code vector."""
    head = 4 + 4 + 4 + 8 + 1 + 4 + 8
    nb = bits // 8
    if blob.size != head + count * nb or blob[:4].tobytes() != _FAISS_FOURCC:
        return False
    raw = blob[:head].tobytes()
    d, code_size = int.from_bytes(raw[4:8], "little"), int.from_bytes(raw[8:12], "little")
    ntotal, vec = int.from_bytes(raw[12:20], "little"), int.from_bytes(raw[25:33], "little")
    return d == bits and code_size == nb and ntotal == count and vec == count * nb


def _scan(codes: np.ndarray, q: np.ndarray, t: int,
          bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact scan of ``codes``: ``(query, position, distance)`` for distances <= ``t``."""
    flat = faiss.IndexBinaryFlat(bits)
    flat.add(np.ascontiguousarray(codes))
    lims, dist, pos = flat.range_search(q, t + 1)  # FAISS: strictly < radius
    qof = np.repeat(np.arange(q.shape[0], dtype=np.int64), np.diff(lims.astype(np.int64)))
    return qof, pos.astype(np.int64), dist.astype(np.int32)


def dihedral_answer(lims: np.ndarray, ids: np.ndarray, dist: np.ndarray,
                    rows: int) -> list[list[tuple[int, int, int]]]:
    """The answer of :meth:`HashIndex.search_dihedral` from the range answer for ``rows``
    variant rows (8 per query): per query and id, the best distance over the variants
    (the lowest variant on ties), as ``(id, distance, variant)``, nearest first, ties by
    id. A sharded index merges its shards' answers with it too."""
    nq = rows // 8
    row = np.repeat(np.arange(rows, dtype=np.int64), np.diff(lims))
    grp, var = row // 8, row % 8
    order = np.lexsort((var, dist, ids, grp))
    grp, ids, dist, var = grp[order], ids[order], dist[order], var[order]
    first = np.ones(grp.size, dtype=bool)
    first[1:] = (grp[1:] != grp[:-1]) | (ids[1:] != ids[:-1])
    grp, ids, dist, var = grp[first], ids[first], dist[first], var[first]
    order = np.lexsort((ids, dist, grp))
    out: list[list[tuple[int, int, int]]] = [[] for _ in range(nq)]
    for g, i, d, v in zip(grp[order].tolist(), ids[order].tolist(), dist[order].tolist(),
                          var[order].tolist(), strict=True):
        out[g].append((i, d, v))
    return out


def _check_threshold(threshold: Any) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) \
            or threshold < 0:
        raise ValueError(f"threshold must be a non-negative integer, got {threshold!r}")
    return int(threshold)


def _to_lists(lims: np.ndarray, ids: np.ndarray, dist: np.ndarray) -> list[list[tuple[int, int]]]:
    pairs = list(zip(ids.tolist(), dist.tolist(), strict=True))
    bounds = lims.tolist()
    return [pairs[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]


def _checked_tables(widths: Any, slack: Any, bits: int, count: int, entries: np.ndarray,
                    off: np.ndarray, positions: np.ndarray | None, bad: Any) -> mih.MIHTables:
    """Rebuild MIH tables from file arrays, refusing any that could index out of bounds."""
    if not isinstance(widths, list) or not widths or sum(widths) != bits or \
            any(type(w) is not int or not 1 <= w <= mih.MAX_KEY_BITS for w in widths):
        raise bad("invalid MIH layout in header")
    if type(slack) is not int or slack not in mih.SLACKS:
        raise bad("invalid MIH bucket slack in header")
    if count < 1 or count >= 2**31:
        raise bad("invalid MIH table size in header")
    if positions is not None and bits > 64:
        raise bad("invalid MIH layout in header (inline tables of wide codes)")
    m = len(widths)
    if entries.size != m * count or (positions is not None and positions.size != m * count):
        raise bad("MIH tables do not match the layout")
    if positions is not None:
        positions = positions.reshape(m, count)
    try:
        tables = mih.MIHTables(tuple(widths), entries.reshape(m, count), off, slack, positions)
    except ValueError:
        raise bad("MIH tables do not match the layout") from None
    problem = tables.check()
    if problem:
        raise bad(problem)
    return tables
