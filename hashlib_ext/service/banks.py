"""Banks: named, persistent collections of hashes (or robust descriptors) to match against.

A *hash bank* is a :class:`~hashlib_ext.index.HashIndex` file ``NAME.hidx``; a *robust
bank* a :class:`~hashlib_ext.robust.RobustIndex` file ``NAME.ridx``. Beside each lives its
journal ``NAME.hidx.journal`` (:mod:`.journal`): every acknowledged change is appended there
(and flushed) before it is applied in memory and answered, so additions are visible to the
next request and survive a crash. *Compaction* folds the journal into the index file (saved
atomically) and starts a fresh journal; it runs when the journal passes a size, on request
and at shutdown.

Crash safety of compaction: the index file is saved first, then the journal is replaced.
A crash between the two leaves a journal whose changes the index file already holds, so
replay is idempotent: ids are handed out once and never reused (the next id is kept in the
journal header), an addition whose ids the file holds already is skipped, and a removal of
ids it does not hold does nothing.

Removals are *tombstones* until the next compaction: the ids are journalled, left out of
every answer at once, and removed from the index when it is compacted, so removing hashes
from a large bank does not drop its multi-index tables (which a
:meth:`HashIndex.remove` of indexed codes does; rebuilding them takes seconds at 10M
hashes, with searches held back).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from ..errors import HashlibExtError, IndexFileError
from ..index import MAX_COLUMN_NAME, MAX_METADATA_COLUMNS, HashIndex
from .errors import bad_request, not_found
from .journal import Journal, Record

log = logging.getLogger("hashlib_ext.service")

HASH_SUFFIX = ".hidx"
ROBUST_SUFFIX = ".ridx"
JOURNAL_SUFFIX = ".journal"
LOCK_NAME = ".hashlib-ext-serve.lock"
BANK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Bank names: letters, digits, ``_`` and ``-`` (they become file names)."""
JOURNAL_FORMAT = "hashlib_ext.journal"
REPLAY_MAX_PIXELS = 1 << 32
"""Pixel limit when a robust bank's journalled images are described again on start."""
Metadata = dict[str, list[str | None]]


def check_name(name: str) -> str:
    if not isinstance(name, str) or not BANK_NAME.fullmatch(name):
        raise bad_request(f"bank names are 1-64 letters, digits, '_' or '-' (starting with a "
                         f"letter or digit), got {str(name)[:80]!r}")
    return name


class Bank:
    """What hash and robust banks share: name, files, journal, writer lock, compaction."""

    kind = "bank"

    def __init__(self, name: str, path: str, algorithm: str | None, bits: int):
        self.name = name
        self.path = path
        self.algorithm = algorithm
        self.bits = bits
        self.journal: Journal | None = None
        self.write_lock = threading.Lock()
        """Serialises changes and compaction (searches never take it)."""
        self.closed = False
        self.next_id = 0
        self.compactions = 0
        self.last_compaction: float | None = None
        self.dropped_bytes = 0

    @property
    def journal_path(self) -> str:
        return self.path + JOURNAL_SUFFIX

    def header(self) -> dict[str, Any]:
        return {"format": JOURNAL_FORMAT, "version": 1, "bank": self.name, "kind": self.kind,
                "algorithm": self.algorithm, "bits": self.bits, "next_id": self.next_id}

    def count(self) -> int:
        raise NotImplementedError

    def pending(self) -> int:
        """Journal records not yet folded into the index file."""
        return 0 if self.journal is None else self.journal.records

    def journal_bytes(self) -> int:
        return 0 if self.journal is None else self.journal.size

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "algorithm": self.algorithm,
                "bits": self.bits, "count": self.count(), "next_id": self.next_id,
                "journal_records": self.pending(), "journal_bytes": self.journal_bytes(),
                "compactions": self.compactions, "last_compaction": self.last_compaction,
                "file": os.path.basename(self.path)}

    def check_open(self) -> Journal:
        if self.closed or self.journal is None:
            raise not_found(f"bank {self.name!r} does not exist (deleted)")
        return self.journal

    # -- persistence ------------------------------------------------------------------------
    def open_journal(self) -> None:
        """Replay the journal (creating an empty one if there is none)."""
        if not os.path.exists(self.journal_path):
            self.journal = Journal.create(self.journal_path, self.header())
            return
        count = [0]

        def apply(record: Record) -> None:
            count[0] += 1
            try:
                self.replay(record)
            except (HashlibExtError, ValueError, TypeError, KeyError) as e:
                raise IndexFileError(f"{self.journal_path}: record {count[0]} cannot be "
                                     f"replayed: {e}") from None

        self.journal, self.dropped_bytes = Journal.open(self.journal_path, apply)
        head = self.journal.header
        if head.get("format") != JOURNAL_FORMAT or head.get("kind") != self.kind or \
                head.get("algorithm") != self.algorithm or head.get("bits") != self.bits:
            self.journal.close()
            self.journal = None
            raise IndexFileError(f"{self.journal_path}: journal of another bank (kind, "
                                 f"algorithm or width differ from {self.path})")
        given = head.get("next_id")
        if type(given) is int and given > self.next_id:
            self.next_id = given
        if self.dropped_bytes:
            log.warning("bank %s: cut a torn last journal record (%d bytes, never "
                        "acknowledged)", self.name, self.dropped_bytes)

    def replay(self, record: Record) -> None:
        raise NotImplementedError

    def save(self) -> None:
        """Write the index file (atomically)."""
        raise NotImplementedError

    def compact(self) -> bool:
        """Fold the journal into the index file; False when there was nothing to fold."""
        with self.write_lock:
            journal = self.check_open()
            if journal.records == 0:
                return False
            started = time.monotonic()
            self.save()
            journal.reset(self.header())
            self.compactions += 1
            self.last_compaction = time.time()
            log.info("bank %s: compacted in %.2f s", self.name, time.monotonic() - started)
            return True

    def close(self) -> None:
        with self.write_lock:
            self.closed = True
            if self.journal is not None:
                self.journal.close()
                self.journal = None


class HashBank(Bank):
    """A :class:`HashIndex` with a journal and tombstones for pending removals."""

    kind = "hash"

    def __init__(self, name: str, path: str, index: HashIndex):
        super().__init__(name, path, index.algorithm, index.bits)
        self.index = index
        self.removed: set[int] = set()
        self.base = np.sort(index.ids)
        """The ids the index file held when loaded (sorted); after start-up and each
        compaction, every id the index holds below ``first_new``."""
        self.next_id = int(self.base[-1]) + 1 if self.base.size else 0
        self.first_new = self.next_id
        """Ids from here up to ``next_id`` were handed out since, each once, in order."""

    def open_journal(self) -> None:
        super().open_journal()
        self._rebase()

    def _rebase(self) -> None:
        """Note the ids the index holds now (after replay or compaction); removals
        pending for ids it does not hold are dropped."""
        self.base = np.sort(self.index.ids)
        if self.removed:
            gone = np.fromiter(self.removed, np.int64, len(self.removed))
            self.removed = set(gone[np.isin(gone, self.base)].tolist())
        top = int(self.base[-1]) + 1 if self.base.size else 0
        self.next_id = max(self.next_id, top)
        self.first_new = self.next_id

    @classmethod
    def create(cls, name: str, path: str, algorithm: str) -> HashBank:
        index = HashIndex(algorithm)
        index.save(path)
        bank = cls(name, path, index)
        bank.open_journal()
        return bank

    @classmethod
    def open(cls, name: str, path: str) -> HashBank:
        bank = cls(name, path, HashIndex.load(path))
        bank.open_journal()
        bank.warm()
        return bank

    def warm(self) -> None:
        """Run one search so the compiled kernels and the MIH tables are ready before the
        first request."""
        if len(self.index):
            self.index.search(np.zeros((1, self.bits // 8), np.uint8), 0)

    def count(self) -> int:
        return len(self.index) - len(self.removed)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        info = self.index.stats()
        out.update({"pending_removals": len(self.removed), "nbytes": info["nbytes"],
                    "index_kind": info["kind"], "mih_indexed": info["mih_indexed"],
                    "metadata_columns": self.index.metadata_columns})
        return out

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Per id: whether the bank holds it (removals pending count as gone)."""
        ids = np.asarray(ids, np.int64)
        pos = np.searchsorted(self.base, ids)
        found = (pos < self.base.size) & (self.base[np.minimum(pos, self.base.size - 1)] == ids) \
            if self.base.size else np.zeros(ids.shape, bool)
        found |= (ids >= self.first_new) & (ids < self.next_id)
        if self.removed:
            found &= ~np.isin(ids, np.fromiter(self.removed, np.int64, len(self.removed)))
        return found

    # -- changes ----------------------------------------------------------------------------
    def add(self, codes: np.ndarray, keys: Sequence[str | None] | None = None,
            metadata: Metadata | None = None) -> tuple[int, int]:
        """Journal, then index ``codes`` under fresh consecutive ids; returns (first id, n)."""
        n = int(codes.shape[0])
        check_additions(codes, self.bits, keys, metadata, self.index.metadata_columns)
        with self.write_lock:
            journal = self.check_open()
            first = self.next_id
            if n == 0:
                return first, 0
            op: dict[str, Any] = {"op": "add", "first_id": first, "n": n}
            if keys is not None:
                op["keys"] = list(keys)
            if metadata:
                op["metadata"] = metadata
            before = journal.size
            journal.append(op, np.ascontiguousarray(codes, np.uint8).tobytes())
            try:
                self._apply_add(first, codes, keys, metadata)
            except BaseException:
                journal.cut(before)  # refused by the index: not recorded either
                raise
            self.next_id = first + n
            return first, n

    def _apply_add(self, first: int, codes: np.ndarray, keys: Sequence[str | None] | None,
                   metadata: Metadata | None) -> None:
        ids = np.arange(first, first + codes.shape[0], dtype=np.int64)
        # (a None key records no key for that hash, as HashIndex.add documents)
        self.index.add(codes, ids=ids, keys=cast("Sequence[str] | None", keys),
                       metadata=metadata or None)

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Journal the removal of the ``ids`` the bank holds; returns how many. They are
        left out of answers at once and removed from the index at the next compaction."""
        want = np.unique(np.asarray(ids, np.int64))
        with self.write_lock:
            journal = self.check_open()
            gone = want[self.contains(want)]
            if gone.size == 0:
                return 0
            journal.append({"op": "remove", "n": int(gone.size)}, gone.astype("<i8").tobytes())
            self.removed.update(gone.tolist())
            return int(gone.size)

    def replay(self, record: Record) -> None:
        op = record.op
        if op["op"] == "add":
            first, n = int(op["first_id"]), int(op["n"])
            nb = self.bits // 8
            if len(record.blob) != n * nb or n <= 0:
                raise ValueError("codes do not match the count")
            self.next_id = max(self.next_id, first + n)
            ids = np.arange(first, first + n, dtype=np.int64)
            lo, hi = np.searchsorted(self.base, [first, first + n])
            if hi - lo == n:  # the index file holds it already (compacted, then crashed)
                return
            codes = np.frombuffer(record.blob, np.uint8).reshape(n, nb)
            keys, metadata = op.get("keys"), op.get("metadata")
            if hi > lo:  # some of it: add the rest (a later removal in the journal follows)
                keep = ~np.isin(ids, self.base)
                codes, ids = codes[keep], ids[keep]
                flags = keep.tolist()
                keys = None if keys is None else \
                    [k for k, ok in zip(keys, flags, strict=True) if ok]
                metadata = None if not metadata else {
                    c: [v for v, ok in zip(vals, flags, strict=True) if ok]
                    for c, vals in metadata.items()}
            self.index.add(codes, ids=ids, keys=keys, metadata=metadata or None)
        elif op["op"] == "remove":  # ids the index does not hold are dropped by _rebase
            self.removed.update(np.frombuffer(record.blob, "<i8").tolist())
        else:
            raise ValueError(f"unknown operation {op['op']!r}")

    def save(self) -> None:
        if self.removed:
            self.index.remove(np.fromiter(self.removed, np.int64, len(self.removed)))
            self.removed.clear()
        self.index.save(self.path)
        self._rebase()

    # -- searching ----------------------------------------------------------------------------
    def search(self, codes: np.ndarray, threshold: int) -> list[list[tuple[int, int]]]:
        """Per query, ``(id, distance)`` within ``threshold``, nearest first."""
        found = self.index.search(codes, threshold)
        removed = self.removed
        if removed:
            found = [[m for m in hits if m[0] not in removed] for hits in found]
        return found

    def search_dihedral(self, variants: np.ndarray, threshold: int
                        ) -> list[list[tuple[int, int, int]]]:
        found = self.index.search_dihedral(variants, threshold)
        removed = self.removed
        if removed:
            found = [[m for m in hits if m[0] not in removed] for hits in found]
        return found

    def describe(self, ids: Sequence[int]) -> tuple[list[str | None], list[dict[str, str]]]:
        """Keys and metadata of ``ids``."""
        if not ids:
            return [], []
        return self.index.keys(ids), self.index.metadata(ids)


class RobustBank(Bank):
    """A :class:`~hashlib_ext.robust.RobustIndex` that grows by image uploads. The journal
    holds each added image's bytes, described again on replay."""

    kind = "robust"

    def __init__(self, name: str, path: str, index: Any):
        super().__init__(name, path, "pdq", 256)
        self.index = index
        ids = index.ids
        self.next_id = int(ids.max()) + 1 if ids.size else 0
        self._held: set[int] = set(ids.tolist())

    @classmethod
    def create(cls, name: str, path: str) -> RobustBank:
        from ..robust import RobustIndex

        index = RobustIndex()
        index.save(path)
        bank = cls(name, path, index)
        bank.open_journal()
        return bank

    @classmethod
    def open(cls, name: str, path: str) -> RobustBank:
        from ..robust import RobustIndex

        bank = cls(name, path, RobustIndex.load(path))
        bank.open_journal()
        return bank

    def count(self) -> int:
        return len(self.index)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["nbytes"] = int(self.index.nbytes)
        return out

    def add(self, image: bytes, descriptor: Any, key: str | None) -> int:
        """Journal the image, then index its (index-side) descriptor; returns its id."""
        if key is not None and not isinstance(key, str):
            raise bad_request("key must be a string")
        with self.write_lock:
            journal = self.check_open()
            ident = self.next_id
            before = journal.size
            journal.append({"op": "add_image", "id": ident, "key": key}, image)
            try:
                self.index.add([descriptor], ids=[ident], keys=[key])
            except BaseException:
                journal.cut(before)
                raise
            self.next_id = ident + 1
            self._held.add(ident)
            return ident

    def replay(self, record: Record) -> None:
        from ..descriptor import describe

        op = record.op
        if op["op"] != "add_image":
            raise ValueError(f"unknown operation {op['op']!r}")
        ident, key = int(op["id"]), op.get("key")
        self.next_id = max(self.next_id, ident + 1)
        if ident in self._held:
            return
        # accepted under the limits when it was added: decode it whatever they are now
        self.index.add([describe(record.blob, max_pixels=REPLAY_MAX_PIXELS)], ids=[ident],
                       keys=[key])
        self._held.add(ident)

    def save(self) -> None:
        self.index.save(self.path)

    def match(self, descriptor: Any, min_score: int | None, pdq_threshold: int | None
              ) -> list[Any]:
        return self.index.match(descriptor, min_score=min_score, pdq_threshold=pdq_threshold)

    def keys(self, ids: Sequence[int]) -> list[str | None]:
        return self.index.keys(ids)


def check_additions(codes: np.ndarray, bits: int, keys: Sequence[str | None] | None,
                    metadata: Metadata | None, columns: Sequence[str]) -> None:
    """Refuse additions the index would refuse, before anything is journalled."""
    n = codes.shape[0]
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != bits // 8:
        raise bad_request(f"expected {bits}-bit hashes")
    if keys is not None and (len(keys) != n or
                             not all(k is None or isinstance(k, str) for k in keys)):
        raise bad_request(f"keys: one string (or null) per hash, {n} in all")
    if not metadata:
        return
    if not isinstance(metadata, Mapping):
        raise bad_request("metadata must map column names to values")
    if len(set(columns) | set(metadata)) > MAX_METADATA_COLUMNS:
        raise bad_request(f"a bank holds at most {MAX_METADATA_COLUMNS} metadata columns")
    for name, values in metadata.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_COLUMN_NAME:
            raise bad_request(f"metadata column names are strings of 1 to {MAX_COLUMN_NAME} "
                             "characters")
        if len(values) != n or not all(v is None or isinstance(v, str) for v in values):
            raise bad_request(f"metadata column {name!r}: one string (or null) per hash")
