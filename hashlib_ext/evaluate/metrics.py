"""Matching metrics over Hamming distances: histograms, recall, FPR, thresholds, ROC, AUC.

Everything works on distance *histograms* (``hist[d]`` = number of pairs at distance ``d``,
``d = 0..bits``): they are small, exact, add up across chunks and runs, and every metric
below follows from them. A match is declared when ``distance <= threshold``.

* same-image pairs: an original and a transformed copy (positives);
* distinct-image pairs: two different originals (negatives), computed through
  :class:`~hashlib_ext.index.HashIndex` range search in chunks, never a Python loop over pairs.

``pdq-dihedral`` (match any of the 8 rotations/flips) is measured the same way, honestly: the
query side contributes 8 hashes and the distance of a pair is the minimum over those 8, for the
positives *and* for the distinct pairs (which makes its FPR higher at equal threshold).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..hash import HashArray, popcount

__all__ = [
    "auc",
    "dihedral_distinct_histogram",
    "dihedral_same_distances",
    "distinct_histogram",
    "fpr_at",
    "fpr_curve",
    "histogram",
    "recall_at",
    "recall_curve",
    "roc_curve",
    "same_distances",
    "threshold_for_fpr",
    "throughput",
]

# Result cells (query x stored hash) handled per range-search chunk; bounds memory.
_CHUNK_CELLS = 1 << 22


def _codes(x: HashArray | np.ndarray) -> np.ndarray:
    codes = x.codes if isinstance(x, HashArray) else np.asarray(x)
    if codes.dtype != np.uint8:
        raise ValueError(f"hash codes must be uint8, got {codes.dtype}")
    return codes


def histogram(distances: np.ndarray, bits: int) -> np.ndarray:
    """``(bits + 1,)`` int64 counts of each distance 0..bits; negative entries (missing) are
    ignored."""
    d = np.asarray(distances).reshape(-1)
    d = d[d >= 0].astype(np.int64)
    if d.size and d.max() > bits:
        raise ValueError(f"distance {int(d.max())} exceeds the hash width {bits}")
    return np.bincount(d, minlength=bits + 1).astype(np.int64)


# -- distances ------------------------------------------------------------------------------

def same_distances(originals: HashArray | np.ndarray,
                   variants: HashArray | np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance between each original and its transformed variant: ``(n,)``."""
    a, b = _codes(originals), _codes(variants)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: originals {a.shape}, variants {b.shape}")
    return popcount(a ^ b)


def dihedral_same_distances(originals: HashArray | np.ndarray, variants8: np.ndarray) -> np.ndarray:
    """Distance of each original to the nearest of its variant's 8 dihedral hashes.

    ``originals``: ``(n, nbytes)``; ``variants8``: ``(n, 8, nbytes)`` (the query's 8 rotations/
    flips). Returns ``(n,)`` = min over the 8.
    """
    a, q = _codes(originals), np.asarray(variants8, dtype=np.uint8)
    if q.ndim != 3 or q.shape[0] != a.shape[0] or q.shape[2] != a.shape[1]:
        raise ValueError(
            f"variants8 must be (n, k, {a.shape[1]}) for n={a.shape[0]}, got {q.shape}")
    return popcount(a[:, None, :] ^ q).min(axis=1)


def _index_for(codes: np.ndarray):
    from ..index import HashIndex

    # Every pair is wanted (radius = full width), so a scan is the right index kind.
    idx = HashIndex(bits=codes.shape[1] * 8, kind="flat")
    idx.add(codes, ids=np.arange(codes.shape[0], dtype=np.int64))
    return idx


def _range_all(index, queries: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, stored) distance through the index, as flat arrays (lims, distances, ids)."""
    lims, ids, dist = index.search_arrays(queries, bits)
    return np.asarray(lims, np.int64), np.asarray(dist, np.int64), np.asarray(ids, np.int64)


def _chunked_pairs(
    index, queries: np.ndarray, n_stored: int, bits: int,
    visit: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None],
) -> None:
    step = max(1, _CHUNK_CELLS // max(1, n_stored))
    for start in range(0, queries.shape[0], step):
        q = queries[start:start + step]
        lims, dist, ids = _range_all(index, q, bits)
        if lims[-1] != q.shape[0] * n_stored:
            raise RuntimeError(
                f"range search returned {int(lims[-1])} results for {q.shape[0]} queries over "
                f"{n_stored} hashes at radius {bits}; expected every pair"
            )
        qrow = np.repeat(np.arange(start, start + q.shape[0]), np.diff(lims))
        visit(start, qrow, dist, ids)


def distinct_histogram(codes: HashArray | np.ndarray, index=None) -> np.ndarray:
    """Histogram of distances over all distinct pairs ``i < j`` of ``codes`` (n(n-1)/2 pairs).

    The distances come from a range search of every hash against a
    :class:`~hashlib_ext.index.HashIndex` of all of them (radius = full width), chunked so
    memory stays bounded. ``index`` may be given if one over ``codes`` (ids 0..n-1) exists.
    """
    c = _codes(codes)
    n, bits = c.shape[0], c.shape[1] * 8
    hist = np.zeros(bits + 1, dtype=np.int64)
    if n < 2:
        return hist
    index = _index_for(c) if index is None else index

    def visit(_start: int, qrow: np.ndarray, dist: np.ndarray, ids: np.ndarray) -> None:
        keep = ids > qrow
        hist[:] += np.bincount(dist[keep], minlength=bits + 1)

    _chunked_pairs(index, c, n, bits, visit)
    return hist


def dihedral_distinct_histogram(codes: HashArray | np.ndarray, queries8: np.ndarray,
                                index=None) -> np.ndarray:
    """Histogram of ``min_k d(queries8[i, k], codes[j])`` over all ordered pairs ``i != j``.

    With dihedral matching, a pair's distance is the minimum over the query's 8 hashes, which
    is not symmetric in (i, j), so all n(n-1) ordered pairs count. Computed through the index:
    the 8n query hashes are range-searched against the n originals and reduced per (i, j).
    """
    c = _codes(codes)
    q8 = np.asarray(queries8, dtype=np.uint8)
    n, bits = c.shape[0], c.shape[1] * 8
    if q8.ndim != 3 or q8.shape[0] != n or q8.shape[2] != c.shape[1]:
        raise ValueError(f"queries8 must be (n, k, {c.shape[1]}) for n={n}, got {q8.shape}")
    k = q8.shape[1]
    hist = np.zeros(bits + 1, dtype=np.int64)
    if n < 2:
        return hist
    index = _index_for(c) if index is None else index
    flat = q8.reshape(n * k, -1)
    # Chunk on whole images so the min over k never straddles two chunks.
    images_per_chunk = max(1, _CHUNK_CELLS // max(1, n * k))
    for s in range(0, n, images_per_chunk):
        e = min(n, s + images_per_chunk)
        dense = np.empty(((e - s) * k, n), dtype=np.int64)

        def visit(_start: int, qrow: np.ndarray, dist: np.ndarray, ids: np.ndarray,
                  dense: np.ndarray = dense) -> None:
            dense[qrow, ids] = dist  # every (query, stored) cell is filled: radius = width

        _chunked_pairs(index, flat[s * k:e * k], n, bits, visit)
        block = dense.reshape(e - s, k, n).min(axis=1)
        block[np.arange(e - s), np.arange(s, e)] = -1  # drop self pairs
        hist += histogram(block, bits)
    return hist


# -- rates ----------------------------------------------------------------------------------

def _check_hist(hist: np.ndarray) -> np.ndarray:
    h = np.asarray(hist, dtype=np.int64)
    if h.ndim != 1 or h.size < 2 or (h < 0).any():
        raise ValueError("a distance histogram is a 1-D array of non-negative counts")
    return h


def recall_curve(same_hist: np.ndarray) -> np.ndarray:
    """Recall (share of same-image pairs with distance <= t) for every t = 0..bits."""
    h = _check_hist(same_hist)
    total = h.sum()
    return np.cumsum(h) / total if total else np.full(h.size, np.nan)


def fpr_curve(distinct_hist: np.ndarray) -> np.ndarray:
    """Per-pair false-positive rate (distinct pairs with distance <= t) for t = 0..bits."""
    return recall_curve(distinct_hist)


def recall_at(same_hist: np.ndarray, threshold: int) -> float:
    """Recall at ``distance <= threshold`` (0.0 for a negative threshold)."""
    if threshold < 0:
        return 0.0
    curve = recall_curve(same_hist)
    return float(curve[min(threshold, curve.size - 1)])


def fpr_at(distinct_hist: np.ndarray, threshold: int) -> float:
    """Empirical per-pair FPR at ``distance <= threshold``."""
    return recall_at(distinct_hist, threshold)


def threshold_for_fpr(distinct_hist: np.ndarray, target: float) -> int:
    """Largest threshold whose empirical per-pair FPR is <= ``target``; -1 if none (even
    distance 0 has distinct pairs above the budget)."""
    curve = fpr_curve(distinct_hist)
    ok = np.nonzero(curve <= target)[0]
    return int(ok[-1]) if ok.size else -1


def roc_curve(same_hist: np.ndarray, distinct_hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr)`` for thresholds -1, 0, .., bits: from (0, 0) to (1, 1)."""
    s, d = _check_hist(same_hist), _check_hist(distinct_hist)
    if s.size != d.size:
        raise ValueError(f"histograms of different widths: {s.size - 1} and {d.size - 1} bits")
    tpr = np.concatenate([[0.0], recall_curve(s)])
    fpr = np.concatenate([[0.0], fpr_curve(d)])
    return fpr, tpr


def auc(same_hist: np.ndarray, distinct_hist: np.ndarray) -> float:
    """Area under the ROC curve = P(same-pair distance < distinct-pair distance) + ties / 2."""
    fpr, tpr = roc_curve(same_hist, distinct_hist)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def throughput(n_images: int, seconds: float) -> float:
    """Images per second (``inf`` for a zero duration, 0 for no images)."""
    if n_images <= 0:
        return 0.0
    return float("inf") if seconds <= 0 else n_images / seconds
