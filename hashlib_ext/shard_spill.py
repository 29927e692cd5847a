"""Spill files for building a sharded index from a stream in bounded memory.

Each incoming chunk is split by shard (:func:`~hashlib_ext.shard_manifest.shard_of`) and
its rows appended to that shard's temporary files: raw codes, raw int64 ids, and each
string column (the keys, and every metadata column) as int64 lengths (-1 for none) plus
their UTF-8 bytes. Afterwards the shards are read back one at a time. Memory: one chunk
while spilling, one shard while building. These are private temporaries in a temporary
directory, written and read by this module only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import AlgorithmMismatchError
from .shard_manifest import shard_of

KEYS = ""
"""The column name the keys are spilled under (metadata column names are never empty)."""


class Spill:
    """Per-shard spill files in ``folder`` (a temporary directory)."""

    def __init__(self, folder: str, shards: int):
        self.folder, self.shards = folder, shards
        self.algorithm: str | None = None
        self.bits: int | None = None
        self.next_id = 0
        self._rows = [0] * shards
        self._columns: list[str] = []  # KEYS first if any chunk had keys

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _path(self, k: int, part: str) -> str:
        return os.path.join(self.folder, f"spill-{k:05d}.{part}")

    def add(self, codes: np.ndarray, ids: np.ndarray, keys: Any, algorithm: str | None,
            bits: int, metadata: Mapping[str, Any] | None = None) -> None:
        """Append one chunk: ``(n, bits/8)`` codes, int64 ids, keys (str or None each, or
        None for no keys), metadata columns (name -> one str or None per row)."""
        if self.bits is None:
            self.algorithm, self.bits = algorithm, bits
        elif (algorithm, bits) != (self.algorithm, self.bits):
            raise AlgorithmMismatchError(
                f"a chunk of {algorithm or 'raw'} {bits}-bit codes among "
                f"{self.algorithm or 'raw'} {self.bits}-bit ones")
        n = codes.shape[0]
        if n == 0:
            return
        given = dict(metadata or {})
        if keys is not None:
            given[KEYS] = keys
        for name in given:
            if name not in self._columns:  # rows spilled before get no value
                self._columns.append(name)
                for k in range(self.shards):
                    self._append(k, name, [None] * self._rows[k])
        self.next_id = max(self.next_id, int(ids.max()) + 1)
        which = shard_of(ids, self.shards)
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(self.shards + 1))
        for k in range(self.shards):
            rows = order[bounds[k]:bounds[k + 1]]
            if not rows.size:
                continue
            with open(self._path(k, "codes"), "ab") as f:
                f.write(np.ascontiguousarray(codes[rows]).tobytes())
            with open(self._path(k, "ids"), "ab") as f:
                f.write(ids[rows].astype("<i8").tobytes())
            for name in self._columns:
                col = given.get(name)
                texts: list[str | None] = [None] * rows.size if col is None else \
                    [None if col[i] is None else str(col[i]) for i in rows.tolist()]
                self._append(k, name, texts)
            self._rows[k] += int(rows.size)

    def _append(self, k: int, name: str, texts: list[str | None]) -> None:
        if not texts:
            return
        j = self._columns.index(name)
        data = [b"" if t is None else t.encode("utf-8", "surrogatepass") for t in texts]
        lens = np.array([-1 if t is None else len(d) for t, d in zip(texts, data, strict=True)],
                        dtype="<i8")
        with open(self._path(k, f"c{j}.len"), "ab") as f:
            f.write(lens.tobytes())
        with open(self._path(k, f"c{j}.dat"), "ab") as f:
            f.write(b"".join(data))

    def _column(self, k: int, j: int) -> list[str | None]:
        lens = np.fromfile(self._path(k, f"c{j}.len"), "<i8")
        with open(self._path(k, f"c{j}.dat"), "rb") as f:
            blob = f.read()
        ends = np.cumsum(np.maximum(lens, 0)).tolist()
        starts = [0, *ends[:-1]]
        return [None if ln < 0 else blob[s:e].decode("utf-8", "surrogatepass")
                for ln, s, e in zip(lens.tolist(), starts, ends, strict=True)]

    def read(self, k: int, nbytes: int) -> tuple[np.ndarray, np.ndarray, list[str | None] | None,
                                                 dict[str, list[str | None]]]:
        """Shard ``k``'s spilled ``(codes, ids, keys, metadata)`` (keys None if no chunk had
        keys; metadata: the columns any chunk had)."""
        n = self._rows[k]
        if n == 0:
            return np.zeros((0, nbytes), np.uint8), np.zeros(0, np.int64), None, {}
        codes = np.fromfile(self._path(k, "codes"), np.uint8).reshape(n, nbytes)
        ids = np.fromfile(self._path(k, "ids"), "<i8").astype(np.int64)
        cols = {name: self._column(k, j) for j, name in enumerate(self._columns)}
        keys = cols.pop(KEYS, None)
        return codes, ids, keys, cols
