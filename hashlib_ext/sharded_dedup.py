"""Near-duplicate clusters of a :class:`~hashlib_ext.ShardedIndex`, shard pair by shard pair.

The clusters are those of :func:`~hashlib_ext.find_duplicates` over the union of the
shards (connected components of the graph linking hashes at distance <= threshold; each
cluster a sorted list of ids, clusters sorted by their first id), computed as one task per
shard pair ``(i, j)`` with ``i <= j``:

* ``i == j``: shard ``i``'s distinct codes searched in shard ``i`` (a range self-join);
* ``i < j``: shard ``i``'s distinct codes searched in shard ``j``, on the worker that holds
  shard ``j`` (shard ``i``'s codes and ids travel, about 40 bytes per hash).

Each task folds its matches, batch by batch, into a spanning forest (every linked id
pointing at the smallest id of its component) and returns that instead of the edges: at
most one edge per hash that has a near duplicate, however dense the matches. Forests are
merged on the workers, a few at a time, into one; the client only turns the final forest
into clusters with :func:`scipy.sparse.csgraph.connected_components`. The client therefore
holds one edge per hash that has a near duplicate (about 40 bytes each, and twice that
while clustering): ~100M such hashes fit in ~8 GB, and the figure grows linearly with the
number of duplicated hashes, not with the number of pairs (see docs/scale.md).

Pair tasks are submitted a bounded window at a time, so a worker holds its shards plus
the codes of the few shards whose pairs are running. A worker that dies takes its shards
and results with it; dask reloads the shards from their files and recomputes what was
lost, and the clusters are still exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import shard_tasks as st
from .index import HashIndex
from .sharded import ShardedIndex, pinned

Forest = tuple[np.ndarray, np.ndarray]
"""``(roots, members)``: each member id linked to the smallest id of its component."""
RESULT_BUDGET = 2_000_000
"""Matches a pair task holds before folding them into its forest (~50 MB)."""
QUERY_BATCH = 4096
"""Most distinct codes per range search."""
FAN_IN = 8
"""Forests merged by one task."""


def find_duplicates_sharded(
    index: ShardedIndex,
    threshold: int,
    *,
    client: Any = None,
    include_singletons: bool = False,
    window: int | None = None,
) -> list[list[int]]:
    """Clusters of near-duplicate hashes of ``index``: exactly what
    ``hx.find_duplicates(all_codes, threshold, ids=all_ids)`` gives for the union of its
    shards. ``client``: a ``distributed.Client`` to run on its cluster (the shards stay
    loaded there); None runs shard pair by shard pair here. ``include_singletons`` adds
    every other id as a cluster of one. ``window``: pair tasks in flight (default twice
    the cluster's threads)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) \
            or threshold < 0:
        raise ValueError(f"threshold must be a non-negative integer, got {threshold!r}")
    t = int(threshold)
    if client is None:
        forest = _local_forest(index, t)
    else:
        forest = _cluster_forest(index, t, client, window)
    all_ids = None
    if include_singletons:
        all_ids = _all_ids(index, client)
    return clusters(forest, all_ids)


def _local_forest(index: ShardedIndex, t: int) -> Forest:
    forest = _empty()
    for i in range(index.shards):
        part = index.load_shard(i)
        codes, ids = part.codes, part.ids
        for j in range(i, index.shards):
            found = join_forest(index.load_shard(j), codes, ids, t)
            forest = merge_forests(forest, found)
    return forest


def _cluster_forest(index: ShardedIndex, t: int, client: Any, window: int | None) -> Forest:
    from distributed import as_completed

    shards = index.shard_futures(client)
    workers = index.shard_workers(client)
    n = len(shards)
    if window is None:
        info = client.scheduler_info(n_workers=-1).get("workers", {})
        window = 2 * max(1, sum(int(w.get("nthreads", 1)) for w in info.values()))
    pairs = [(i, j) for i in range(n) for j in range(i, n)]
    left = {i: n - 1 - i for i in range(n)}  # cross pairs still to submit, per shard i
    parts: dict[int, Any] = {}
    token = index.manifest.digest
    ac = as_completed()

    def submit(i: int, j: int) -> None:
        key = f"hashlib_ext-dedup-{token}-{t}-{i}-{j}"
        if i == j:
            ac.add(client.submit(self_forest, shards[i], t, key=key, **pinned(workers[i])))
            return
        if i not in parts:
            parts[i] = client.submit(st.shard_part, shards[i], key=f"hashlib_ext-part-{token}-{i}",
                                     **pinned(workers[i]))
        ac.add(client.submit(cross_forest, shards[j], parts[i], t, key=key,
                             **pinned(workers[j])))
        left[i] -= 1
        if left[i] == 0:
            del parts[i]  # dask keeps it while the pair tasks that need it wait

    todo = iter(pairs)
    for i, j in _take(todo, max(1, window)):
        submit(i, j)
    ready: list[Any] = []
    for fut in ac:
        if fut.status == "error":
            fut.result()  # raises the task's error (e.g. a shard failing its checksum)
        ready.append(fut)
        if len(ready) >= FAN_IN:
            ac.add(client.submit(merge_forests, *ready, pure=False))
            ready = []
        for i, j in _take(todo, 1):
            submit(i, j)
    return merge_forests(*client.gather(ready)) if ready else _empty()


def _take(it: Any, k: int) -> list[tuple[int, int]]:
    out = []
    for _ in range(k):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


def _all_ids(index: ShardedIndex, client: Any) -> np.ndarray:
    if client is None:
        parts = [index.load_shard(k).ids for k in range(index.shards)]
    else:
        parts = client.gather([client.submit(st.shard_ids, f, pure=False, **pinned(w))
                               for f, w in zip(index.shard_futures(client),
                                               index.shard_workers(client), strict=True)])
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


# -- on the workers ---------------------------------------------------------------------
def self_forest(shard: st.ShardHandle, threshold: int) -> Forest:
    """The forest of shard pair ``(i, i)``."""
    index = shard.index
    return join_forest(index, index.codes, index.ids, threshold)


def cross_forest(shard: st.ShardHandle, part: tuple[np.ndarray, np.ndarray],
                 threshold: int) -> Forest:
    """The forest of shard pair ``(i, j)``: ``part`` is shard ``i``'s (codes, ids), and
    ``shard`` is shard ``j``."""
    return join_forest(shard.index, part[0], part[1], threshold)


def join_forest(index: HashIndex, codes: np.ndarray, ids: np.ndarray, threshold: int) -> Forest:
    """Spanning forest of the links between the hashes ``(codes, ids)`` and those of
    ``index`` at distance <= threshold (and among ``codes`` themselves where equal).
    Distinct codes are searched once each, in batches sized to about
    :data:`RESULT_BUDGET` matches; matches are folded into the forest as they grow."""
    if codes.shape[0] == 0 or len(index) == 0:
        return _empty()
    view = np.ascontiguousarray(codes).view(np.dtype((np.void, codes.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    distinct = codes[first]
    rep = ids[first]
    same = rep[inverse] != ids  # equal codes: linked to their representative
    roots, members = [rep[inverse][same]], [ids[same]]
    held = int(same.sum())
    m = distinct.shape[0]
    step = max(1, min(QUERY_BATCH, RESULT_BUDGET // max(1, len(index))))
    pos = 0
    while pos < m:
        stop = min(m, pos + step)
        lims, found, _ = index.search_arrays(distinct[pos:stop], threshold)
        a = np.repeat(rep[pos:stop], np.diff(lims))
        keep = a != found
        roots.append(a[keep])
        members.append(found[keep])
        held += int(keep.sum())
        if held > RESULT_BUDGET:
            r, mm = compress(np.concatenate(roots), np.concatenate(members))
            roots, members, held = [r], [mm], r.size
        per_query = max(1.0, found.size / (stop - pos))
        step = int(min(QUERY_BATCH, 2 * step, max(1.0, RESULT_BUDGET / per_query)))
        pos = stop
    return compress(np.concatenate(roots), np.concatenate(members))


def merge_forests(*forests: Forest) -> Forest:
    """One forest with the components of all of ``forests`` together."""
    if not forests:
        return _empty()
    return compress(np.concatenate([f[0] for f in forests]),
                    np.concatenate([f[1] for f in forests]))


def compress(a: np.ndarray, b: np.ndarray) -> Forest:
    """The spanning forest of the edges ``a[i] -- b[i]`` (ids): every id of a component
    but its smallest paired with that smallest id."""
    if a.size == 0:
        return _empty()
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    k, m = nodes.size, a.size
    graph = coo_matrix((np.ones(m, np.int8), (inv[:m], inv[m:])), shape=(k, k)).tocsr()
    ncomp, labels = connected_components(graph, directed=False)
    first = np.full(ncomp, k, dtype=np.int64)  # nodes are sorted: the first is the smallest
    np.minimum.at(first, labels, np.arange(k, dtype=np.int64))
    root = nodes[first[labels]]
    keep = root != nodes
    return root[keep].astype(np.int64), nodes[keep].astype(np.int64)


def clusters(forest: Forest, all_ids: np.ndarray | None = None) -> list[list[int]]:
    """Clusters (sorted lists of ids, sorted by first id) from a forest; with
    ``all_ids``, every id not in the forest is added as a cluster of one."""
    roots, members = forest
    order = np.lexsort((members, roots))
    roots, members = roots[order], members[order]
    starts = np.flatnonzero(np.concatenate([[True], roots[1:] != roots[:-1]])) \
        if roots.size else np.zeros(0, np.int64)
    heads = roots[starts]
    flat = members.tolist()
    bounds = [*starts.tolist(), len(flat)]
    out = [[h, *flat[bounds[i]:bounds[i + 1]]] for i, h in enumerate(heads.tolist())]
    if all_ids is None:
        return out
    alone = np.sort(all_ids[~np.isin(all_ids, np.concatenate([heads, members]))])
    out.extend([i] for i in alone.tolist())
    order = np.argsort(np.concatenate([heads, alone]), kind="stable")
    return [out[j] for j in order.tolist()]


def _empty() -> Forest:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)


__all__: Sequence[str] = ("find_duplicates_sharded", "join_forest", "merge_forests",
                          "compress", "clusters")
