"""Safe dedup: near-duplicate clusters with their links, diameters and a chaining guard.

:func:`~hashlib_ext.find_duplicates` links every pair within the threshold and returns the
connected groups (single linkage). Linkage is transitive, so a group can *chain*: A~B,
B~C, ..., Y~Z, with A and Z unrelated. :func:`dedup_graph` returns the same groups with
what is needed to act on them safely:

- ``edges``: a spanning tree of each cluster's links with their distances (at most one
  edge fewer than members: a cluster of 10,000 identical files has 9,999 edges, not 50M),
  and ``links``, the number of linked pairs, where counted;
- ``diameter``: the largest distance between two members;
- the chaining guard: a cluster whose diameter exceeds ``max_diameter`` (default twice
  the threshold) is *chained*. Copies of one original that each lie within the threshold
  of it are at most twice the threshold apart (triangle inequality), so a larger diameter
  proves the members are not all copies of any one of them. ``chaining="split"`` (the
  default) then re-clusters the group into stars: repeatedly the member linked to the
  most unassigned members becomes a centre and takes them (every member of a star is
  within the threshold of its centre, so the star's diameter is at most twice the
  threshold); a member left with no unassigned neighbour joins the star of its nearest
  linked member, and that star is flagged ``chained`` if this makes its diameter exceed
  ``max_diameter``. ``"flag"`` keeps the group whole and flags it; ``"off"`` does neither.

Exactness: groups of at most :data:`EXACT_LIMIT` distinct hashes get all their pairwise
distances: exact diameter, a minimum spanning tree, the link count, and splitting. Larger
groups keep the spanning forest the join recorded, and their diameter is a lower bound
found by repeated farthest-point sweeps (:data:`DIAMETER_SWEEPS`; the pair that attains it
exists), with ``diameter_bound``, an upper bound (twice the smallest eccentricity seen;
none with dihedral variants, whose minimum-over-variants distance need not obey the
triangle inequality). They are flagged when the lower bound exceeds ``max_diameter``, never
split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dedup import QUERY_BATCH, duplicate_forest, variant_codes
from .errors import HashFormatError
from .hash import HashArray, popcount

EXACT_LIMIT = 4096
"""Clusters of at most this many distinct hashes get all pairwise distances (a 4096 x 4096
matrix: 64 MB); larger ones get bounds (see the module notes)."""
DIAMETER_SWEEPS = 4
"""Farthest-point sweeps that bound the diameter of a cluster above :data:`EXACT_LIMIT`."""
CHAINING = ("split", "flag", "off")
"""What :func:`dedup_graph` does with a cluster wider than ``max_diameter``."""


@dataclass(frozen=True)
class DuplicateCluster:
    """One cluster of near duplicates.

    ``members``: ids, sorted. ``edges``: ``(i, j, distance)`` links between
    ``members[i]`` and ``members[j]``, each within the threshold, forming a spanning tree
    (identical hashes link at distance 0). ``links``: the number of member pairs within
    the threshold (None where not counted: clusters above :data:`EXACT_LIMIT` distinct
    hashes). ``diameter``: the largest distance between two members, exact when
    ``diameter_exact``, else a lower bound attained by a real pair, with
    ``diameter_bound`` an upper bound where one is known. ``chained``: the diameter
    exceeds the ``max_diameter`` it was checked against. ``component``: the index of the
    single-link group (in the order of their smallest id) it belongs to; ``split``: that
    group was split into several clusters by the chaining guard.
    """

    members: list[int]
    edges: list[tuple[int, int, int]]
    links: int | None
    diameter: int
    diameter_exact: bool
    diameter_bound: int | None
    chained: bool
    component: int
    split: bool


def default_max_diameter(threshold: int) -> int:
    """Twice the threshold: the widest a group of copies of one original can be."""
    return 2 * int(threshold)


def dedup_graph(
    hashes: HashArray | np.ndarray,
    threshold: int,
    *,
    ids: np.ndarray | Sequence[int] | None = None,
    variants: HashArray | np.ndarray | None = None,
    chaining: str = "split",
    max_diameter: int | None = None,
    progress: bool = False,
    kind: str = "auto",
    batch_size: int = QUERY_BATCH,
    exact_limit: int = EXACT_LIMIT,
) -> list[DuplicateCluster]:
    """Near-duplicate clusters with edges, distances, diameters and the chaining guard.

    ``hashes``, ``threshold``, ``ids``, ``progress``, ``kind`` and ``batch_size`` as in
    :func:`~hashlib_ext.find_duplicates`; with ``chaining="off"`` the members are exactly
    its clusters. ``variants``: 8 rotation/flip rows per hash (see
    :func:`~hashlib_ext.dedup.duplicate_forest`); two hashes are then linked when any
    variant of one is within the threshold of the other. ``chaining``: ``"split"``,
    ``"flag"`` or ``"off"`` (module notes); ``max_diameter`` defaults to
    :func:`default_max_diameter` and may not be below ``threshold``. Clusters are sorted by
    their first id.
    """
    if chaining not in CHAINING:
        raise ValueError(f"chaining must be one of {', '.join(CHAINING)}, got {chaining!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) \
            or threshold < 0:
        raise ValueError(f"threshold must be a non-negative integer, got {threshold!r}")
    t = int(threshold)
    max_d = default_max_diameter(t) if max_diameter is None else int(max_diameter)
    if max_d < t:
        raise ValueError(f"max_diameter {max_d} is below the threshold {t}: every cluster "
                         "with a pair at the threshold would count as chained")
    forest = duplicate_forest(hashes, t, variants=variants, progress=progress,
                              batch_size=batch_size, kind=kind)
    codes = hashes.codes if isinstance(hashes, HashArray) else np.asarray(hashes)
    n = codes.shape[0]
    ids_arr = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    if ids_arr.shape != (n,):
        raise HashFormatError(f"{ids_arr.reshape(-1).shape[0]} ids for {n} hashes")
    if n == 0:
        return []
    space = _Space(codes[forest.first], None if variants is None else
                   variant_codes(variants, n, codes.shape[1])[forest.first])
    mult = np.bincount(forest.inverse, minlength=forest.first.size)
    items = np.argsort(forest.inverse, kind="stable")  # hashes grouped by distinct code
    starts = np.concatenate([[0], np.cumsum(mult)])
    out: list[DuplicateCluster] = []
    for codes_u, edges_u in _group(forest.labels, forest.edges, mult):
        pieces = _pieces(space, codes_u, edges_u, mult, t, max_d, chaining, exact_limit)
        members_of = [np.concatenate([items[starts[u]:starts[u + 1]] for u in p.codes])
                      for p in pieces]
        for p, pos in zip(pieces, members_of, strict=True):
            out.append(_expand(p, pos, ids_arr, forest.inverse, len(pieces) > 1))
    # components numbered by their smallest id; clusters sorted by first id
    first_of: dict[int, int] = {}
    for c in out:
        first_of[c.component] = min(first_of.get(c.component, c.members[0]), c.members[0])
    rank = {comp: k for k, comp in enumerate(sorted(first_of, key=lambda x: first_of[x]))}
    out = [_renumber(c, rank[c.component]) for c in out]
    out.sort(key=lambda c: (c.members[0], c.component))
    return out


def distances_to(hashes: HashArray | np.ndarray, positions: np.ndarray | Sequence[int],
                 target: int, *, variants: HashArray | np.ndarray | None = None
                 ) -> np.ndarray:
    """Distances of ``hashes[positions]`` to ``hashes[target]`` (with ``variants``: the
    smaller over all rotations/flips of either side, as :func:`dedup_graph` links them)."""
    codes = hashes.codes if isinstance(hashes, HashArray) else np.asarray(hashes)
    var = None if variants is None else variant_codes(variants, codes.shape[0],
                                                      codes.shape[1])
    pos = np.asarray(positions, dtype=np.int64)
    space = _Space(codes, var)
    return space.from_one(int(target), pos)


# -- internals -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Piece:
    """A cluster over distinct codes: codes, tree edges (code ids), statistics."""

    codes: np.ndarray
    edges: np.ndarray  # (k, 3): code, code, distance
    links: int | None
    diameter: int
    exact: bool
    bound: int | None
    chained: bool
    component: int


class _Space:
    """Distances among distinct codes (and their variants)."""

    def __init__(self, codes: np.ndarray, variants: np.ndarray | None):
        self.codes = np.ascontiguousarray(codes)
        self.variants = None if variants is None else np.ascontiguousarray(variants)

    def matrix(self, sel: np.ndarray) -> np.ndarray:
        """All pairwise distances among ``codes[sel]`` (int32, symmetric, zero diagonal)."""
        c = self.codes[sel]
        if self.variants is None:
            d = _xor_count(c, c)
        else:
            v = self.variants[sel]
            k = sel.size
            d = _xor_count(v.reshape(k * 8, -1), c).reshape(k, 8, k).min(axis=1)
            d = np.minimum(d, d.T)
        np.fill_diagonal(d, 0)
        return d

    def from_one(self, x: int, sel: np.ndarray) -> np.ndarray:
        """Distances from code ``x`` to ``codes[sel]``."""
        d = _xor_count(self.codes[x:x + 1], self.codes[sel])[0]
        if self.variants is not None:
            k = sel.size
            d = np.minimum(_xor_count(self.variants[x], self.codes[sel]).min(axis=0),
                           _xor_count(self.variants[sel].reshape(k * 8, -1),
                                      self.codes[x:x + 1]).reshape(k, 8).min(axis=1))
        d[sel == x] = 0
        return d


def _xor_count(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` int32 Hamming distances, in blocks of bounded memory."""
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    nbytes = a.shape[1]
    wide = nbytes % 8 == 0 and hasattr(np, "bitwise_count")
    if wide:
        a_w = np.ascontiguousarray(a).view(np.uint64)
        b_w = np.ascontiguousarray(b).view(np.uint64)
    step = max(1, (1 << 22) // max(1, b.shape[0] * nbytes))
    for s in range(0, a.shape[0], step):
        if wide:
            x = a_w[s:s + step, None, :] ^ b_w[None, :, :]
            out[s:s + step] = np.bitwise_count(x).sum(axis=-1, dtype=np.int32)
        else:
            out[s:s + step] = popcount(a[s:s + step, None, :] ^ b[None, :, :])
    return out


def _group(labels: np.ndarray, edges: np.ndarray, mult: np.ndarray
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(distinct codes, forest edges) per component of two or more hashes."""
    size = np.bincount(labels, weights=mult, minlength=labels.size)
    order = np.flatnonzero(size[labels] >= 2)
    if not order.size:
        return []
    order = order[np.argsort(labels[order], kind="stable")]
    lab = labels[order]
    cuts = np.flatnonzero(np.diff(lab)) + 1
    code_groups = np.split(order, cuts)
    comp_ids = lab[np.concatenate([[0], cuts]).astype(np.int64)]
    eorder = np.argsort(labels[edges[:, 0]], kind="stable") if edges.size else \
        np.zeros(0, np.int64)
    e_sorted = edges[eorder]
    e_lab = labels[e_sorted[:, 0]] if e_sorted.size else np.zeros(0, np.int64)
    lo = np.searchsorted(e_lab, comp_ids, side="left")
    hi = np.searchsorted(e_lab, comp_ids, side="right")
    return [(g, e_sorted[a:b]) for g, a, b in zip(code_groups, lo, hi, strict=True)]


def _pieces(space: _Space, codes_u: np.ndarray, forest: np.ndarray, mult: np.ndarray,
            t: int, max_d: int, chaining: str, exact_limit: int) -> list[_Piece]:
    """One component as one or more pieces (split by the chaining guard)."""
    comp = int(codes_u.min())
    w = mult[codes_u].astype(np.int64)
    if codes_u.size == 1:
        links = int(w[0] * (w[0] - 1) // 2)
        return [_Piece(codes_u, np.zeros((0, 3), np.int64), links, 0, True, None, False, comp)]
    guard = chaining != "off"
    if codes_u.size > exact_limit:
        diam, bound = _diameter_bounds(space, codes_u)
        return [_Piece(codes_u, forest, None, diam, False, bound, guard and diam > max_d,
                       comp)]
    d = space.matrix(codes_u)
    diam = int(d.max())
    if chaining == "split" and diam > max_d:
        parts = _star_cover(d, t, w)
    else:
        parts = [np.arange(codes_u.size)]
    out = []
    for p in parts:
        sub = d[np.ix_(p, p)]
        tree = _tree(sub, t)
        linked = np.triu(sub <= t, 1)
        wp = w[p]
        links = int((np.outer(wp, wp) * linked).sum() + (wp * (wp - 1) // 2).sum())
        tree[:, :2] = codes_u[p][tree[:, :2]]
        dp = int(sub.max())
        out.append(_Piece(codes_u[p], tree, links, dp, True, None, guard and dp > max_d,
                          comp))
    return out


def _diameter_bounds(space: _Space, sel: np.ndarray) -> tuple[int, int | None]:
    """(lower bound attained by a pair, upper bound or None) of the diameter of
    ``codes[sel]`` by farthest-point sweeps."""
    x = int(sel[0])
    lower, upper = 0, None
    for _ in range(DIAMETER_SWEEPS):
        d = space.from_one(x, sel)
        far = int(np.argmax(d))
        lower = max(lower, int(d[far]))
        ecc = 2 * int(d[far])
        upper = ecc if upper is None else min(upper, ecc)
        x = int(sel[far])
    return lower, (upper if space.variants is None else None)


def _star_cover(d: np.ndarray, t: int, w: np.ndarray) -> list[np.ndarray]:
    """Split a group into stars (see the module notes); ``w``: hashes per distinct code."""
    k = d.shape[0]
    adj = d <= t
    adj_w = adj.astype(np.int64)
    open_ = np.ones(k, dtype=bool)
    score = adj_w @ w  # weight of the open codes within t, itself included
    piece = np.full(k, -1, dtype=np.int64)
    count = 0
    while True:
        gain = np.where(open_, score - w, -1)  # open neighbours other than itself
        c = int(np.argmax(gain))
        if gain[c] <= 0:
            break
        star = np.flatnonzero(adj[c] & open_)
        piece[star] = count
        count += 1
        open_[star] = False
        score -= adj_w[:, star] @ w[star]
    for x in np.flatnonzero(open_):  # no open neighbour left: join the nearest link's star
        near = np.flatnonzero(adj[x] & ~open_)
        piece[x] = piece[near[np.argmin(d[x, near])]]
    order = np.argsort(piece, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(piece[order])) + 1)


def _tree(sub: np.ndarray, t: int) -> np.ndarray:
    """Minimum spanning tree of the links (distance <= t) of a distance matrix (Prim's
    algorithm on the dense matrix: no per-cluster sparse-matrix set-up), as an ``(k, 3)``
    int64 array of local indices (smaller first) and distances."""
    k = sub.shape[0]
    far = np.iinfo(np.int64).max // 2
    w = np.where(sub <= t, sub.astype(np.int64), far)
    inside = np.zeros(k, dtype=bool)
    inside[0] = True
    best = w[0].copy()
    parent = np.zeros(k, dtype=np.int64)
    rows = []
    for _ in range(k - 1):
        j = int(np.argmin(np.where(inside, far + 1, best)))
        if inside[j] or best[j] >= far:
            break  # not connected (cannot happen for a cluster)
        rows.append((min(int(parent[j]), j), max(int(parent[j]), j), int(best[j])))
        inside[j] = True
        closer = w[j] < best
        best = np.where(closer, w[j], best)
        parent = np.where(closer, j, parent)
    return np.array(sorted(rows), dtype=np.int64).reshape(-1, 3)


def _expand(p: _Piece, positions: np.ndarray, ids: np.ndarray, inverse: np.ndarray,
            split: bool) -> DuplicateCluster:
    """A piece over distinct codes as a cluster of hashes: members sorted by id; each
    distinct code is represented by its first member, the others link to it at 0."""
    order = np.lexsort((positions, ids[positions]))
    pos = positions[order]
    member_ids = ids[pos]
    code = inverse[pos]
    ucode, rep = np.unique(code, return_index=True)  # first member of each code
    rep_of = dict(zip(ucode.tolist(), rep.tolist(), strict=True))
    edges = [(rep_of[int(a)], rep_of[int(b)], int(dist)) for a, b, dist in p.edges.tolist()]
    is_rep = np.zeros(pos.size, dtype=bool)
    is_rep[rep] = True
    for i in np.flatnonzero(~is_rep).tolist():
        edges.append((rep_of[int(code[i])], i, 0))
    edges = sorted((min(a, b), max(a, b), dist) for a, b, dist in edges)
    return DuplicateCluster(member_ids.tolist(), edges, p.links, p.diameter, p.exact,
                            p.bound, p.chained, p.component, split)


def _renumber(c: DuplicateCluster, component: int) -> DuplicateCluster:
    return DuplicateCluster(c.members, c.edges, c.links, c.diameter, c.diameter_exact,
                            c.diameter_bound, c.chained, component, c.split)
