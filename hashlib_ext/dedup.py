"""find_duplicates(): near-duplicate clusters by a Hamming range self-join.

Every hash is queried against all others through an index (``distance <= threshold``,
inclusive); the resulting pairs are edges of a graph whose connected components are the
clusters. Components are transitive: if a~b and b~c then a, b, c form one cluster even when
a and c are further apart than the threshold (single-linkage), which is what "which of
these are copies of each other" needs for edit chains.

Exact duplicates are collapsed before the join (one representative per distinct code), so a
corpus with many identical hashes (blank frames, one logo) costs one query per distinct
code rather than a quadratic number of pairs. Edges are merged into components as they
arrive, so memory stays proportional to the number of hashes, not the number of pairs.

When the index answers through MIH tables (whose compiled kernel releases the GIL), query
batches are searched by several threads, one per CPU up to :data:`MAX_THREADS`; a flat scan
is already spread over the CPUs by FAISS, so it runs from one thread.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .errors import HashFormatError
from .hash import HashArray

QUERY_BATCH = 4096
"""Queries per range search: large enough for FAISS's threads, small enough for a smooth bar."""
_MAX_PENDING_EDGES = 4_000_000
"""Edges held before they are folded into components (bounds memory for dense clusters)."""
MAX_THREADS = 8
"""Most threads searching query batches at once (MIH tables only)."""


def find_duplicates(
    hashes: HashArray | np.ndarray,
    threshold: int,
    *,
    ids: np.ndarray | Sequence[int] | None = None,
    progress: bool = False,
    include_singletons: bool = False,
    batch_size: int = QUERY_BATCH,
    kind: str = "auto",
) -> list[list[int]]:
    """Clusters of near-duplicate hashes: groups whose members are linked by distance <= t.

    ``hashes`` is a HashArray or a raw ``(n, bits/8)`` uint8 array; ``ids`` (int64, default
    0..n-1) name the hashes in the result. Returns a list of clusters, each a sorted list of
    ids, the clusters sorted by their first id. Hashes without any near duplicate are left
    out unless ``include_singletons`` (then every id appears in exactly one cluster).
    ``progress`` shows a bar on stderr. ``kind`` is passed to :class:`HashIndex` ("auto",
    "flat" or "mih"); every kind gives the same, exact clusters.
    """
    codes = _codes(hashes)
    n = codes.shape[0]
    ids_arr = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    if ids_arr.shape != (n,):
        raise HashFormatError(f"{ids_arr.reshape(-1).shape[0]} ids for {n} hashes")
    threshold = _check_threshold(threshold)
    if n == 0:
        return []
    labels = duplicate_labels(codes, threshold, progress=progress, batch_size=batch_size,
                              kind=kind)
    return _clusters(labels, ids_arr, include_singletons)


def duplicate_labels(
    hashes: HashArray | np.ndarray,
    threshold: int,
    *,
    progress: bool = False,
    batch_size: int = QUERY_BATCH,
    kind: str = "auto",
) -> np.ndarray:
    """Component label per hash (``(n,)`` int64): equal labels = same cluster."""
    codes = _codes(hashes)
    threshold = _check_threshold(threshold)
    n = codes.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    # Collapse exact duplicates: join distinct codes only, then map back.
    unique, inverse = _unique_rows(codes)
    m = unique.shape[0]
    uf = _Components(m)
    for rows, cols in _pairs(unique, threshold, progress=progress, batch_size=batch_size,
                             kind=kind):
        uf.add(rows, cols)
    return uf.labels()[inverse]


def _check_threshold(threshold: int) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) \
            or threshold < 0:
        raise ValueError(f"threshold must be a non-negative integer, got {threshold!r}")
    return int(threshold)


def _codes(hashes: HashArray | np.ndarray) -> np.ndarray:
    codes = hashes.codes if isinstance(hashes, HashArray) else np.asarray(hashes)
    if codes.dtype != np.uint8 or codes.ndim != 2:
        raise HashFormatError(
            f"hashes must be a HashArray or an (n, bits/8) uint8 array, got "
            f"{codes.dtype} {codes.shape}"
        )
    if codes.shape[0] and codes.shape[1] == 0:
        raise HashFormatError("hashes have zero width")
    return np.ascontiguousarray(codes)


def _unique_rows(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows (in order of first appearance) and the inverse map."""
    view = codes.view(np.dtype((np.void, codes.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return codes[first[order]], rank[inverse.reshape(-1)]


def _pairs(codes: np.ndarray, threshold: int, *, progress: bool, batch_size: int, kind: str
           ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (rows, cols) int64 arrays of all pairs i < j with distance <= threshold."""
    from tqdm import tqdm

    search, threaded = _range_searcher(codes, threshold, kind)
    n = codes.shape[0]

    def batch(start: int) -> tuple[int, np.ndarray, np.ndarray]:
        stop = min(n, start + batch_size)
        lims, labels = search(codes[start:stop])
        rows = np.repeat(np.arange(start, stop, dtype=np.int64), np.diff(lims))
        keep = labels > rows
        return stop - start, rows[keep], labels[keep]

    starts = range(0, n, batch_size)
    threads = _threads(len(starts)) if threaded else 1
    with tqdm(total=n, unit="hash", desc="dedup", file=sys.stderr, disable=not progress,
              mininterval=0.5) as bar:
        if threads == 1:
            for start in starts:
                done, rows, cols = batch(start)
                bar.update(done)
                yield rows, cols
            return
        # A few batches in flight per thread, taken in order: memory stays bounded.
        with ThreadPoolExecutor(threads, thread_name_prefix="dedup") as pool:
            pending: deque[Future[tuple[int, np.ndarray, np.ndarray]]] = deque()
            todo = iter(starts)
            for start in todo:
                pending.append(pool.submit(batch, start))
                if len(pending) >= 2 * threads:
                    break
            while pending:
                done, rows, cols = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(batch, nxt))
                bar.update(done)
                yield rows, cols


def _threads(batches: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_THREADS, batches))


def _range_searcher(codes: np.ndarray, threshold: int, kind: str):
    """A function queries -> (lims, positions) over ``codes`` (distance <= threshold), and
    whether it searches through MIH tables (then threads may call it at once).

    Goes through :meth:`HashIndex.search_arrays` (FAISS-style arrays, inclusive threshold),
    so dedup gets whatever exact structure HashIndex picks for this size and threshold.
    """
    from .index import HashIndex

    index = HashIndex(bits=codes.shape[1] * 8, kind=kind,  # type: ignore[arg-type]
                      design_threshold=threshold)
    index.add(codes)  # ids 0..n-1 == positions
    index.prepare()

    def search(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lims, found, _dist = index.search_arrays(queries, threshold)
        return lims, found

    return search, index._plan(min(threshold, index.bits)) is not None


class _Components:
    """Connected components of a growing edge list, folded periodically to bound memory."""

    def __init__(self, n: int):
        self.n = n
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.pending = 0

    def add(self, rows: np.ndarray, cols: np.ndarray) -> None:
        if rows.size:
            self.rows.append(rows)
            self.cols.append(cols)
            self.pending += rows.size
            if self.pending > _MAX_PENDING_EDGES:
                self._fold()

    def _fold(self) -> None:
        """Replace the edges by a star per component (node -> smallest member)."""
        labels = self._components()
        first = np.full(labels.max() + 1, self.n, dtype=np.int64)
        np.minimum.at(first, labels, np.arange(self.n, dtype=np.int64))
        root = first[labels]
        nodes = np.flatnonzero(root != np.arange(self.n))
        self.rows, self.cols = [nodes], [root[nodes]]
        self.pending = nodes.size

    def _components(self) -> np.ndarray:
        if not self.rows:
            return np.arange(self.n, dtype=np.int64)
        rows = np.concatenate(self.rows)
        cols = np.concatenate(self.cols)
        from scipy.sparse import coo_matrix  # scipy loads only when clustering
        from scipy.sparse.csgraph import connected_components

        graph = coo_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(self.n, self.n))
        _, labels = connected_components(graph.tocsr(), directed=False)
        return labels.astype(np.int64)

    def labels(self) -> np.ndarray:
        return self._components()


def _clusters(labels: np.ndarray, ids: np.ndarray, include_singletons: bool) -> list[list[int]]:
    """Group ids by label: each group sorted, groups sorted by first id."""
    order = np.lexsort((ids, labels))
    sorted_labels = labels[order]
    bounds = np.flatnonzero(np.diff(sorted_labels)) + 1
    starts = np.concatenate([[0], bounds])
    sizes = np.diff(np.concatenate([starts, [labels.size]]))
    groups = np.split(ids[order], bounds)
    keep = [g for g, s in zip(groups, sizes, strict=True) if include_singletons or s > 1]
    keep.sort(key=lambda g: g[0])
    return [g.tolist() for g in keep]
