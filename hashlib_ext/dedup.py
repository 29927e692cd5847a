"""find_duplicates(): near-duplicate clusters by a Hamming range self-join.

Every hash is queried against all others through an index (``distance <= threshold``,
inclusive); the resulting pairs are edges of a graph whose connected components are the
clusters. Components are transitive: if a~b and b~c then a, b, c form one cluster even when
a and c are further apart than the threshold (single-linkage), which is what "which of
these are copies of each other" needs for edit chains.

Exact duplicates are collapsed before the join (one representative per distinct code), so a
corpus with many identical hashes (blank frames, one logo) costs one query per distinct
code rather than a quadratic number of pairs.

Memory follows the number of hashes, not the number of pairs: queries run in a fixed
pseudo-random order (so a dense group spreads over all batches) in batches sized to return
about :data:`RESULT_BUDGET` matches in all at the density seen so far, and each batch's edges
go straight into a union-find over the distinct codes and are dropped. Once every hash is in
one cluster, the remaining queries cannot change the answer and are skipped.

When the index answers through MIH tables (whose compiled kernel releases the GIL), query
batches are searched by several threads, one per CPU up to :data:`MAX_THREADS`; a flat scan
is already spread over the CPUs by FAISS, so it runs from one thread.

:func:`duplicate_forest` runs the same join and also keeps, with their distances, the links
that joined components (a spanning forest: at most one edge fewer than there are distinct
codes, whatever the number of linked pairs), and can match every rotation/flip of each
hash (``variants``). :mod:`hashlib_ext.clusters` builds the safe-dedup result on it.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import HashFormatError
from .hash import HashArray

QUERY_BATCH = 4096
"""Most queries per range search: large enough for FAISS's threads, small enough for a
smooth bar."""
RESULT_BUDGET = 2_000_000
"""Matches the range searches in flight may return together, about: batches shrink where
hashes are dense (a match costs some 50 bytes at peak inside a search: about 100 MB)."""
_COMPRESS_EVERY = 64
"""Batches between full path compressions of the union-find."""
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
    forest = _join(hashes, threshold, None, progress=progress, batch_size=batch_size,
                   kind=kind, record=False)
    return forest.labels[forest.inverse]


@dataclass(frozen=True)
class DuplicateForest:
    """The link graph of a range self-join, kept small: distinct codes and a spanning forest.

    ``first[u]`` is the position of the first hash with distinct code ``u`` (in order of
    first appearance); ``inverse[i]`` the distinct code of hash ``i``; ``labels[u]`` the
    component of code ``u`` (the smallest code of its component); ``edges`` an ``(k, 3)``
    int64 array ``[u, v, distance]`` of links between distinct codes, each within the
    threshold, that connect every component (a spanning forest: ``k`` = distinct codes -
    components). Hashes sharing a code are linked at distance 0 and have no edge here.
    """

    first: np.ndarray
    inverse: np.ndarray
    labels: np.ndarray
    edges: np.ndarray


def duplicate_forest(
    hashes: HashArray | np.ndarray,
    threshold: int,
    *,
    variants: HashArray | np.ndarray | None = None,
    progress: bool = False,
    batch_size: int = QUERY_BATCH,
    kind: str = "auto",
) -> DuplicateForest:
    """The join of :func:`duplicate_labels`, keeping a spanning forest of the links.

    ``variants`` (optional): 8 rows per hash, rows ``8i..8i+7`` the rotations/flips of
    hash ``i`` as ``hash_image(src, "pdq", dihedral=True)`` returns them; then ``i`` and
    ``j`` are linked when any variant of either is within ``threshold`` of the other, at
    the smallest such distance. Within each query batch the forest prefers the shortest
    links (a minimum spanning forest of that batch's new links).
    """
    return _join(hashes, threshold, variants, progress=progress, batch_size=batch_size,
                 kind=kind, record=True)


def _join(hashes: HashArray | np.ndarray, threshold: int,
          variants: HashArray | np.ndarray | None, *, progress: bool, batch_size: int,
          kind: str, record: bool) -> DuplicateForest:
    codes = _codes(hashes)
    threshold = _check_threshold(threshold)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n, nbytes = codes.shape
    queries = None if variants is None else variant_codes(variants, n, nbytes)
    if n == 0:
        empty = np.zeros(0, np.int64)
        return DuplicateForest(empty, empty, empty, np.zeros((0, 3), np.int64))
    # Collapse exact duplicates (with variants: of the hash and all its variants): join
    # distinct codes only, then map back.
    key = codes if queries is None else np.concatenate([codes, queries.reshape(n, -1)], 1)
    first, inverse = _unique_rows(key)
    unique = codes[first]
    uf = _Components(first.size, record=record)
    for rows, cols, dist in _pairs(unique, threshold, progress=progress,
                                   batch_size=int(batch_size), kind=kind,
                                   finished=lambda: uf.count == 1,
                                   queries=None if queries is None else queries[first]):
        uf.add(rows, cols, dist)
    return DuplicateForest(first, inverse, uf.labels(), uf.edge_array())


def variant_codes(variants: HashArray | np.ndarray, n: int, nbytes: int) -> np.ndarray:
    """``variants`` (8 rows per hash, or ``(n, 8, nbytes)``) as an ``(n, 8, nbytes)`` array."""
    v = variants.codes if isinstance(variants, HashArray) else np.asarray(variants)
    if v.dtype != np.uint8 or v.ndim not in (2, 3):
        raise HashFormatError(f"variants must be uint8 codes, got {v.dtype} {v.shape}")
    if v.size != n * 8 * nbytes or v.shape[-1] != nbytes:
        raise HashFormatError(
            f"variants must hold 8 rows of {nbytes} bytes per hash ({n} hashes), "
            f"got {v.shape}")
    return np.ascontiguousarray(v.reshape(n, 8, nbytes))


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
    """Positions of the distinct rows' first occurrences (in order of first appearance)
    and the inverse map (row -> distinct row)."""
    codes = np.ascontiguousarray(codes)
    view = codes.view(np.dtype((np.void, codes.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order].astype(np.int64), rank[inverse.reshape(-1)].astype(np.int64)


def _pairs(codes: np.ndarray, threshold: int, *, progress: bool, batch_size: int, kind: str,
           finished: Callable[[], bool] = lambda: False, queries: np.ndarray | None = None
           ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (rows, cols, distances) arrays of the pairs i != j with distance <= threshold,
    about :data:`RESULT_BUDGET` pairs at a time; stops early once ``finished()`` (checked
    after each batch was consumed). ``queries`` (``(n, q, nbytes)``, default the codes
    themselves) are what each row searches with: pair (i, j) is found when any of row i's
    queries is within the threshold of code j, at that query's distance (a pair may come
    more than once)."""
    from tqdm import tqdm

    search, threaded = _range_searcher(codes, threshold, kind)
    n = codes.shape[0]
    per = 1 if queries is None else queries.shape[1]
    qcodes = codes[:, None, :] if queries is None else queries
    may_switch = kind == "auto" and threaded

    def observe(done: int, found: int) -> None:
        """Size the next batches; and where nearly everything matches everything (a dense
        blob, where MIH's buckets degenerate), go on with a flat scan, which is then far
        cheaper (exact either way)."""
        nonlocal search, may_switch
        sizer.saw(done, found)
        if may_switch and found >= done * per * max(256, n // 8):
            search, _ = _range_searcher(codes, threshold, "flat")
            may_switch = False

    # A fixed pseudo-random query order: a dense group is spread over all batches instead of
    # filling a few, so the density seen so far predicts the next batches' matches.
    order = np.random.default_rng(0x5EED).permutation(n).astype(np.int64)

    def batch(items: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
        lims, labels, dist = search(qcodes[items].reshape(-1, codes.shape[1]))
        rows = np.repeat(np.repeat(items, per), np.diff(lims))
        # Both directions of each pair are kept: a query then joins its whole neighbourhood
        # at once, which is what lets a dense blob end the search early.
        keep = labels != rows
        return items.size, labels.size, rows[keep], labels[keep], dist[keep]

    threads = _threads(-(-n // batch_size)) if threaded else 1
    in_flight = 2 * threads if threads > 1 else 1
    sizer = _BatchSizer(n * per, batch_size, max(1, RESULT_BUDGET // in_flight))
    taken = 0

    def next_queries() -> np.ndarray | None:
        nonlocal taken
        if taken >= n:
            return None
        queries = order[taken:taken + sizer.step]
        taken += queries.size
        return queries

    seen = 0
    with tqdm(total=n, unit="hash", desc="dedup", file=sys.stderr, disable=not progress,
              mininterval=0.5) as bar:
        if threads == 1:
            while (queries := next_queries()) is not None:
                done, found, rows, cols, dist = batch(queries)
                observe(done, found)
                seen += done
                bar.update(done)
                yield rows, cols, dist
                del rows, cols, dist
                if finished():
                    bar.update(n - seen)
                    return
            return
        # A few batches in flight per thread, taken in order: memory stays bounded.
        with ThreadPoolExecutor(threads, thread_name_prefix="dedup") as pool:
            pending: deque[Future[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]] = \
                deque()
            while len(pending) < in_flight and (queries := next_queries()) is not None:
                pending.append(pool.submit(batch, queries))
            while pending:
                done, found, rows, cols, dist = pending.popleft().result()
                observe(done, found)
                seen += done
                bar.update(done)
                yield rows, cols, dist
                del rows, cols, dist
                if finished():
                    for f in pending:
                        f.cancel()
                    bar.update(n - seen)
                    return
                if (queries := next_queries()) is not None:
                    pending.append(pool.submit(batch, queries))


class _BatchSizer:
    """Queries per batch: the first batch is safe even if every pair matches; later ones
    aim at ``budget`` matches at the density seen last, growing at most twofold."""

    def __init__(self, n: int, most: int, budget: int):
        self.most, self.budget = most, budget
        self.step = max(1, min(most, budget // max(1, n)))

    def saw(self, queries: int, found: int) -> None:
        per_query = max(1.0, found / max(1, queries))
        self.step = int(min(self.most, 2 * self.step, max(1.0, self.budget / per_query)))


def _threads(batches: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_THREADS, batches))


def _range_searcher(codes: np.ndarray, threshold: int, kind: str):
    """A function queries -> (lims, positions, distances) over ``codes`` (distance <=
    threshold), and whether it searches through MIH tables (then threads may call it at
    once).

    Goes through :meth:`HashIndex.search_arrays` (FAISS-style arrays, inclusive threshold),
    so dedup gets whatever exact structure HashIndex picks for this size and threshold.
    """
    from .index import HashIndex

    index = HashIndex(bits=codes.shape[1] * 8, kind=kind,  # type: ignore[arg-type]
                      design_threshold=threshold)
    index.add(codes)  # ids 0..n-1 == positions
    index.prepare()

    def search(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return index.search_arrays(queries, threshold)

    return search, index._plan(min(threshold, index.bits)) is not None


class _Components:
    """Union-find over ``n`` nodes fed with batches of edges (numpy-vectorised): memory is
    O(n) plus one batch, whatever the number of edges. With ``record``, the edges that
    joined components are kept with their distances (a spanning forest, < n edges)."""

    def __init__(self, n: int, record: bool = False):
        self.n = n
        self.parent = np.arange(n, dtype=np.int64)
        self.count = n  # components so far
        self.batches = 0
        self.forest: list[np.ndarray] | None = [] if record else None

    def find(self, x: np.ndarray) -> np.ndarray:
        """Roots of ``x`` (compressing their paths)."""
        p = self.parent
        r = p[x]
        while True:
            rr = p[r]
            if np.array_equal(rr, r):
                break
            r = rr
        p[x] = r
        return r

    def add(self, rows: np.ndarray, cols: np.ndarray, dist: np.ndarray | None = None) -> None:
        if not rows.size:
            return
        a, b = self.find(rows), self.find(cols)
        diff = a != b
        if diff.any():
            a, b = a[diff], b[diff]
            # Components of the graph these edges make between current roots; each root then
            # points at the smallest root of its component.
            nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
            k, m = nodes.size, a.size
            from scipy.sparse import coo_matrix  # scipy loads only when clustering
            from scipy.sparse.csgraph import connected_components

            if self.forest is not None:
                if dist is None:
                    raise ValueError("recording a forest needs the edges' distances")
                graph = self._record(inv[:m], inv[m:], k, rows[diff], cols[diff], dist[diff])
            else:
                graph = coo_matrix((np.ones(m, bool), (inv[:m], inv[m:])), shape=(k, k))
            ncomp, lab = connected_components(graph.tocsr(), directed=False)
            first = np.full(ncomp, self.n, dtype=np.int64)
            np.minimum.at(first, lab, nodes)
            self.parent[nodes] = first[lab]
            self.count -= k - ncomp
        self.batches += 1
        if self.batches % _COMPRESS_EVERY == 0:
            self.parent = self.find(np.arange(self.n, dtype=np.int64))

    def _record(self, ia: np.ndarray, ib: np.ndarray, k: int, rows: np.ndarray,
                cols: np.ndarray, dist: np.ndarray) -> Any:
        """Keep a minimum spanning forest of this batch's links between roots (shortest
        link per pair of roots); returns it as a graph over the ``k`` roots."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import minimum_spanning_tree

        assert self.forest is not None
        lo, hi = np.minimum(ia, ib), np.maximum(ia, ib)
        order = np.lexsort((dist, hi, lo))
        lo, hi = lo[order], hi[order]
        keep = np.ones(order.size, bool)
        keep[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
        pick, lo, hi = order[keep], lo[keep], hi[keep]
        # weights d + 1: a zero would mean "no edge" (dihedral variants can match exactly)
        graph = csr_matrix((dist[pick].astype(np.float64) + 1, (lo, hi)), shape=(k, k))
        tree = minimum_spanning_tree(graph).tocoo()
        tlo = np.minimum(tree.row, tree.col).astype(np.int64)
        thi = np.maximum(tree.row, tree.col).astype(np.int64)
        at = np.searchsorted(lo * k + hi, tlo * k + thi)  # (lo, hi) are sorted and unique
        e = pick[at]
        self.forest.append(np.stack([rows[e], cols[e], dist[e].astype(np.int64)], axis=1))
        return tree

    def edge_array(self) -> np.ndarray:
        """The recorded forest as an ``(k, 3)`` int64 array ``[a, b, distance]``."""
        if not self.forest:
            return np.zeros((0, 3), np.int64)
        return np.concatenate(self.forest).astype(np.int64)

    def labels(self) -> np.ndarray:
        """Component label per node: the smallest node of its component."""
        return self.find(np.arange(self.n, dtype=np.int64))


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
