"""HashIndex: exact Hamming-distance search over perceptual hashes, with ids and persistence.

Codes live in a FAISS ``IndexBinaryFlat`` (brute-force scan, k-NN, FAISS serialisation).
For large sets a multi-index-hashing structure (:mod:`hashlib_ext.mih`) answers threshold
queries exactly without scanning everything. ``kind="auto"`` uses it from
``AUTO_MIH_MIN`` codes up, and only for thresholds where its cost model beats a scan.
See docs/matching.md for the measurements behind these choices.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO, Literal

import faiss
import numpy as np

from . import mih
from .atomic import atomic_open, atomic_path
from .errors import AlgorithmMismatchError, HashFormatError, IndexFileError
from .hash import Hash, HashArray

Kind = Literal["auto", "flat", "mih"]
QueryLike = Hash | HashArray | np.ndarray

AUTO_MIH_MIN = 30_000
"""``kind="auto"`` builds MIH tables from this many codes up (see docs/matching.md)."""
MEMORY_FACTOR = 2.9
"""MIH layouts are chosen so codes + ids + tables stay within this many times the raw codes."""
SMALL_CODE_TABLE_BYTES = 50
"""For codes of at most 64 bits, tables may use this many bytes per code instead (inline
tables, which store the codes themselves: see docs/matching.md)."""
TAIL_MIN = 4096
TAIL_FRACTION = 0.05
TAIL_MAX = 50_000
"""Codes added after the MIH tables were built form a *tail* that searches scan exactly;
the tables are rebuilt over everything once the tail exceeds
``max(TAIL_MIN, min(TAIL_FRACTION * indexed, TAIL_MAX))`` codes (and on
:meth:`HashIndex.prepare` / :meth:`HashIndex.save`), so adding a few hashes between
searches costs no rebuild, while the scan stays below about 50 us per query (256 bits)."""

MAGIC = b"HXINDEX\n"
FORMAT_VERSION = 1
_FAISS_FOURCC = b"IBxF"  # FAISS's tag for a serialised IndexBinaryFlat
_MAX_HEADER = 1 << 20
_SECTION_DTYPES = {"u1": np.dtype("u1"), "<i4": np.dtype("<i4"), "<u4": np.dtype("<u4"),
                   "<u8": np.dtype("<u8"), "<i8": np.dtype("<i8")}
_READ_CHUNK = 1 << 26


class HashIndex:
    """Exact Hamming range and k-NN search over hashes of one algorithm (or raw codes).

    ``HashIndex("pdq")`` takes its width from the hasher registry; ``HashIndex(bits=64)``
    holds raw codes: with no algorithm the index checks widths only and accepts hashes of
    any algorithm of that width. ``kind`` is ``"auto"``, ``"flat"`` (always scan) or
    ``"mih"`` (always use MIH tables, whatever the size). ``design_threshold`` is the
    threshold the MIH layout is tuned for (default: the algorithm's default threshold);
    every threshold is still answered exactly.
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
            if not isinstance(algorithm, str) or not algorithm:
                raise HashFormatError(f"algorithm must be a non-empty string, got {algorithm!r}")
            from .hashers import expected_bits

            known = expected_bits(algorithm)
        if bits is None:
            if known is None:
                raise HashFormatError(
                    f"unknown algorithm {algorithm!r}: pass bits= to index raw codes"
                    if algorithm else "HashIndex needs an algorithm or bits="
                )
            bits = known
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits <= 0 \
                or bits % 8:
            raise HashFormatError(f"bits must be a positive multiple of 8, got {bits!r}")
        if known is not None and known != bits:
            raise AlgorithmMismatchError(f"{algorithm} hashes have {known} bits, not {bits}")
        if kind not in ("auto", "flat", "mih"):
            raise ValueError(f"kind must be 'auto', 'flat' or 'mih', got {kind!r}")
        self._algorithm = algorithm
        self._bits = int(bits)
        self._kind: Kind = kind
        if design_threshold is None:
            design_threshold = _default_threshold(algorithm, self._bits)
        self._design_t = int(design_threshold)
        self._flat = faiss.IndexBinaryFlat(self._bits)
        self._ids: np.ndarray | None = None  # None: id == position (the common default case)
        self._next_id = 0
        self._tables: mih.MIHTables | None = None
        self._keys: dict[int, str] = {}

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
        return self._id_array().copy()

    @property
    def codes(self) -> np.ndarray:
        """The stored codes, ``(n, bits/8)`` uint8, in storage order (a copy)."""
        return self._codes().copy()

    @property
    def nbytes(self) -> int:
        """Memory held: codes, ids and MIH tables (when built)."""
        n = self._codes().nbytes + (0 if self._ids is None else self._ids.nbytes)
        return n + (0 if self._tables is None else self._tables.nbytes)

    def stats(self) -> dict[str, Any]:
        """Size, memory and the MIH layout, for reports and benchmarks."""
        return {
            "count": len(self), "bits": self._bits, "kind": self._kind,
            "nbytes": self.nbytes, "raw_nbytes": self._codes().nbytes,
            "mih_widths": None if self._tables is None else list(self._tables.widths),
            "mih_slack": None if self._tables is None else self._tables.slack,
            "mih_inline": None if self._tables is None else self._tables.inline,
            "mih_indexed": None if self._tables is None else self._tables.n,
        }

    # -- adding and removing ------------------------------------------------------------
    def add(
        self,
        hashes: HashArray | Hash | np.ndarray,
        ids: Sequence[int] | np.ndarray | None = None,
        *,
        keys: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Add hashes; returns their ids. Default ids continue ``0, 1, ...`` after the last
        default or largest given id. ``keys`` optionally maps each id to a string (a path),
        looked up with :meth:`keys` and saved beside the index."""
        codes = self._as_codes(hashes, "hashes")
        n = codes.shape[0]
        if ids is None:
            new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            new_ids = np.asarray(ids)
            if new_ids.ndim != 1 or new_ids.shape[0] != n or (
                    n and not np.issubdtype(new_ids.dtype, np.integer)):
                raise HashFormatError(
                    f"ids must be a 1-D integer array of length {n}, "
                    f"got shape {new_ids.shape} dtype {new_ids.dtype}"
                )
            new_ids = new_ids.astype(np.int64)
        if keys is not None:
            keys = list(keys)
            if len(keys) != n or not all(isinstance(k, str) for k in keys):
                raise HashFormatError(f"keys must be {n} strings, one per hash")
        if n == 0:
            return new_ids
        start = len(self)
        identity = self._ids is None and bool(
            np.array_equal(new_ids, np.arange(start, start + n, dtype=np.int64)))
        if not identity:
            self._ids = np.concatenate([self._id_array(), new_ids])
        self._flat.add(codes)  # MIH tables (if any) stay valid: new codes join the tail
        self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        if keys is not None:
            self._keys.update(zip(new_ids.tolist(), keys, strict=True))
        return new_ids

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove every stored hash whose id is in ``ids``; returns how many were removed.

        Removing only codes of the tail (added since the MIH tables were built) keeps the
        tables; removing an indexed code drops them (positions shift), so the next search
        rebuilds them."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        current = self._id_array()
        gone = np.flatnonzero(np.isin(current, ids))
        if gone.size == 0:
            return 0
        self._flat.remove_ids(faiss.IDSelectorBatch(gone.astype(np.int64)))
        self._ids = np.delete(current, gone)
        # FAISS compacts in order: positions below the first removed one are unchanged.
        if self._tables is not None and int(gone[0]) < self._tables.n:
            self._tables = None
        for i in np.unique(ids).tolist():
            self._keys.pop(i, None)
        return int(gone.size)

    def keys(self, ids: Iterable[int] | np.ndarray) -> list[str | None]:
        """The external keys recorded for ``ids`` (None where none was given)."""
        return [self._keys.get(int(i)) for i in ids]

    def prepare(self) -> None:
        """Build the MIH tables now if this index's kind and size call for them (otherwise
        the first search builds them), e.g. before :meth:`save` so a loaded index is ready.
        Tables already built are rebuilt to cover the tail of codes added since."""
        if len(self):
            self._mih_plan(self._design_t)
            self._index_tail()

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
        nq = q.shape[0]
        if nq == 0 or len(self) == 0:
            return np.zeros(nq + 1, dtype=np.int64), np.empty(0, np.int64), np.empty(0, np.int32)
        plan = self._mih_plan(t)
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
        nq = q.shape[0] // 8
        lims, ids, dist = self.search_arrays(q, threshold)
        row = np.repeat(np.arange(q.shape[0], dtype=np.int64), np.diff(lims))
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

    def knn(self, queries: QueryLike, k: int) -> list[list[tuple[int, int]]]:
        """Per query, the ``k`` nearest ``(id, distance)`` (fewer if the index is smaller),
        nearest first; among equal distances the smallest ids win, so results are
        deterministic."""
        q = self._as_codes(queries, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        nq, n = q.shape[0], len(self)
        if nq == 0 or n == 0:
            return [[] for _ in range(nq)]
        k = min(int(k), n)
        dk, _ = self._flat.search(q, k)
        kth = dk[:, k - 1].astype(np.int64)
        out: list[list[tuple[int, int]]] = [[] for _ in range(nq)]
        # Exact tie handling: everything within the k-th distance, then the first k.
        for radius in np.unique(kth).tolist():
            rows = np.flatnonzero(kth == radius)
            found = self.search(q[rows], radius)
            for r, res in zip(rows.tolist(), found, strict=True):
                out[r] = res[:k]
        return out

    # -- internals ------------------------------------------------------------------------
    def _codes(self) -> np.ndarray:
        n, nb = len(self), self._bits // 8
        if n == 0:
            return np.zeros((0, nb), dtype=np.uint8)
        return faiss.rev_swig_ptr(self._flat.xb.data(), n * nb).reshape(n, nb)

    def _id_array(self) -> np.ndarray:
        if self._ids is None:
            return np.arange(len(self), dtype=np.int64)
        return self._ids

    def _positions_to_ids(self, pos: np.ndarray) -> np.ndarray:
        pos = pos.astype(np.int64, copy=False)
        return pos.copy() if self._ids is None else self._ids[pos]

    def _mih_plan(self, t: int) -> mih.SearchPlan | None:
        """The MIH plan to use for threshold ``t``, or None to scan."""
        n = len(self)
        if self._kind == "flat" or (self._kind == "auto" and n < AUTO_MIH_MIN):
            return None
        if self._tables is None or n - self._tables.n > \
                max(TAIL_MIN, min(TAIL_FRACTION * self._tables.n, TAIL_MAX)):
            self._build_tables()
        tb = self._tables
        assert tb is not None
        plan = mih.plan_radii(tb.widths, t, tb.n, self._bits // 8, tb.slack, tb.inline)
        if not plan.probes or (self._kind == "auto" and plan.use_scan):
            return None
        return plan

    def _build_tables(self) -> None:
        """(Re)build the MIH tables over every stored code (the tail becomes empty)."""
        widths, slack, inline = self._layout(len(self))
        self._tables = mih.MIHTables.build(self._codes(), widths, slack, inline)

    def _index_tail(self) -> None:
        """Rebuild tables that exist but do not cover every code."""
        if self._tables is not None and self._tables.n < len(self):
            self._build_tables()

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
        """Write the index to ``path`` atomically (temp file, fsync, rename): a crash
        mid-save leaves any previous file intact. MIH tables that do not cover codes added
        since they were built are rebuilt first, so the file's tables cover every code.
        External keys, if any, go to ``path + ".keys.sqlite"`` (also written atomically)."""
        path = os.fspath(path)
        self._index_tail()  # the file's tables always cover every code (format version 1)
        sections: list[tuple[str, str, np.ndarray]] = [
            ("faiss", "u1", faiss.serialize_index_binary(self._flat))]
        if self._ids is not None:
            sections.append(("ids", "<i8", self._ids))
        tb = self._tables
        if tb is not None:
            sections.append(("entries", "<u8" if tb.inline else "<u4", tb.entries))
            if tb.positions is not None:
                sections.append(("positions", "<i4", tb.positions))
            sections.append(("offsets", "<i4", tb.offsets))
        header = {
            "format": "hashlib_ext.HashIndex", "version": FORMAT_VERSION,
            "algorithm": self._algorithm, "bits": self._bits, "count": len(self),
            "kind": self._kind, "design_threshold": self._design_t, "next_id": self._next_id,
            "mih_widths": None if self._tables is None else list(self._tables.widths),
            "mih_slack": None if tb is None else tb.slack,
            "mih_inline": None if tb is None else tb.inline,
            "sections": [{"name": nm, "dtype": dt, "nbytes": int(a.nbytes)}
                         for nm, dt, a in sections],
        }
        head = json.dumps(header, sort_keys=True).encode("utf-8")

        def chunks() -> Iterable[bytes | memoryview]:
            yield MAGIC
            yield len(head).to_bytes(8, "little")
            yield head
            for _, dt, arr in sections:
                data = np.ascontiguousarray(arr, dtype=_SECTION_DTYPES[dt])
                yield memoryview(data.reshape(-1).view(np.uint8))

        _atomic_write(path, chunks(), checksum=True)
        _save_keys(path + ".keys.sqlite", self._keys)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HashIndex:
        """Read an index written by :meth:`save`. A truncated, modified, foreign or
        newer-version file raises :class:`~hashlib_ext.errors.IndexFileError`."""
        path = os.fspath(path)
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                return cls._read(f, size, path)
        except OSError as e:
            raise IndexFileError(f"{path}: cannot read index file: {e}") from e

    @classmethod
    def _read(cls, f: BinaryIO, size: int, path: str) -> HashIndex:
        def bad(msg: str) -> IndexFileError:
            return IndexFileError(f"{path}: {msg}")

        digest = hashlib.sha256()
        prefix = f.read(16)
        if len(prefix) < 16 or prefix[:8] != MAGIC:
            raise bad("not a hashlib_ext index file (bad magic)")
        hlen = int.from_bytes(prefix[8:], "little")
        if hlen > _MAX_HEADER or 16 + hlen + 32 > size:
            raise bad("truncated or corrupt header")
        raw_head = f.read(hlen)
        digest.update(prefix)
        digest.update(raw_head)
        try:
            head = json.loads(raw_head.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise bad("corrupt header (not JSON)") from None
        if not isinstance(head, dict) or head.get("format") != "hashlib_ext.HashIndex":
            raise bad("not a hashlib_ext index file (unknown format)")
        version = head.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise bad(f"format version {version!r} is not supported (this hashlib_ext "
                      f"reads version {FORMAT_VERSION}; upgrade hashlib_ext)")
        try:
            sections = [(str(s["name"]), _SECTION_DTYPES[s["dtype"]], int(s["nbytes"]))
                        for s in head["sections"]]
            bits, count = int(head["bits"]), int(head["count"])
            algorithm, kind = head["algorithm"], head["kind"]
            widths, slack = head["mih_widths"], head["mih_slack"]
            inline = bool(head.get("mih_inline"))
            next_id, design_t = int(head["next_id"]), int(head["design_threshold"])
        except (KeyError, TypeError, ValueError):
            raise bad("corrupt header (missing or invalid fields)") from None
        expected = {"faiss": np.uint8, "ids": np.dtype("<i8"), "offsets": np.dtype("<i4"),
                    "entries": np.dtype("<u8" if inline else "<u4"),
                    "positions": np.dtype("<i4")}
        names = [nm for nm, _, _ in sections]
        if len(set(names)) != len(names) or any(
                expected.get(nm) != np.dtype(dt) for nm, dt, _ in sections):
            raise bad("corrupt header (unknown, repeated or mistyped sections)")
        if any(nb < 0 or nb % np.dtype(dt).itemsize for _, dt, nb in sections) or \
                16 + hlen + sum(nb for _, _, nb in sections) + 32 != size:
            raise bad("file size does not match its header (truncated or extended)")
        arrays: dict[str, np.ndarray] = {}
        for name, dt, nb in sections:
            arr = np.empty(nb // np.dtype(dt).itemsize, dtype=dt)
            view = memoryview(arr.view(np.uint8))
            for lo in range(0, nb, _READ_CHUNK):
                part = view[lo:lo + _READ_CHUNK]
                if f.readinto(part) != len(part):
                    raise bad("truncated file")
                digest.update(part)
            arrays[name] = arr
        if f.read(32) != digest.digest():
            raise bad("checksum mismatch: the file is corrupted or was modified")

        try:
            idx = cls(algorithm, bits=bits, kind=kind, design_threshold=design_t) \
                if algorithm is None or isinstance(algorithm, str) else None
        except (HashFormatError, AlgorithmMismatchError, ValueError) as e:
            raise bad(f"invalid header: {e}") from None
        if idx is None:
            raise bad("invalid header: algorithm")
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
        if ent is not None:
            idx._tables = _checked_tables(widths, slack, bits, count, ent, off, pos, bad)
        idx._keys = _load_keys(path + ".keys.sqlite", bad)
        return idx


# -- helpers ------------------------------------------------------------------------------
def _default_threshold(algorithm: str | None, bits: int) -> int:
    if algorithm is not None:
        from .hashers import default_threshold

        with contextlib.suppress(ValueError, KeyError):
            return int(default_threshold(algorithm))
    return max(1, bits * 5 // 32)  # 10 of 64 bits, 40 of 256


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
            any(not isinstance(w, int) or not 1 <= w <= mih.MAX_KEY_BITS for w in widths):
        raise bad("invalid MIH layout in header")
    if slack not in mih.SLACKS:
        raise bad("invalid MIH bucket slack in header")
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


def _atomic_write(path: str, chunks: Iterable[bytes | memoryview], checksum: bool) -> None:
    """Write chunks (and, with ``checksum``, their sha256) atomically to ``path``."""
    with atomic_open(path, "wb") as f:
        digest = hashlib.sha256()
        for c in chunks:
            _write_chunk(f, c)
            if checksum:
                digest.update(c)
        if checksum:
            _write_chunk(f, digest.digest())


def _write_chunk(f: BinaryIO, chunk: bytes | memoryview) -> None:
    f.write(chunk)


def _save_keys(path: str, keys: dict[int, str]) -> None:
    if not keys:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # no stale keys from an earlier save
        return
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        try:
            con.execute("CREATE TABLE keys (id INTEGER PRIMARY KEY, key TEXT NOT NULL)")
            con.executemany("INSERT INTO keys VALUES (?, ?)", keys.items())
            con.commit()
        finally:
            con.close()


def _load_keys(path: str, bad: Any) -> dict[int, str]:
    if not os.path.exists(path):
        return {}
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT id, key FROM keys").fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        raise bad(f"keys file {path} unreadable: {e}") from None
    return {int(i): str(k) for i, k in rows}
