"""Geometric verification of two sets of local features: is one image a copy of the other?

:func:`score` matches query descriptors to candidate descriptors (nearest neighbour by
Hamming distance, ratio test, one-to-one), fits a similarity transform (rotation, uniform
scale, translation) with RANSAC (OpenCV), and scores the consistent matches by the
**number of distinct grid cells** of the candidate's frame they fall in. Counting cells,
not matches, is what keeps a shared logo, sticker or watermark from scoring like a copy:
a copy's inliers spread over the picture, a pasted object's stay inside a few cells, and
repeated keypoints at one spot (pyramid levels, texture) count once.
"""

from __future__ import annotations

import numba
import numpy as np

from .features import require_cv2

GRID = 12
"""The candidate frame is divided into GRID x GRID cells; the score counts occupied cells."""
RATIO = 0.8
"""Lowe's ratio test on Hamming distances: best <= RATIO * second best."""
MAX_DISTANCE = 64
"""A descriptor match farther than this many bits (of 256) is never used."""
REPROJ = 0.012
"""RANSAC inlier tolerance, as a fraction of the candidate frame's longer side."""
MIN_SCALE, MAX_SCALE = 0.2, 5.0
"""Similarity transforms scaling outside this range are rejected as degenerate."""


@numba.njit(cache=True, nogil=True)
def _nearest(q: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of ``q`` (uint64 words) its nearest and second-nearest distance in
    ``c`` and the index of the nearest."""
    n, m, w = q.shape[0], c.shape[0], q.shape[1]
    best = np.full(n, 1 << 20, np.int32)
    second = np.full(n, 1 << 20, np.int32)
    arg = np.full(n, -1, np.int64)
    for i in range(n):
        b1 = 1 << 20
        b2 = 1 << 20
        a = -1
        for j in range(m):
            d = 0
            for k in range(w):
                x = q[i, k] ^ c[j, k]
                x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
                x = (x & np.uint64(0x3333333333333333)) + \
                    ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
                x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
                d += np.int32((x * np.uint64(0x0101010101010101)) >> np.uint64(56))
            if d < b1:
                b2 = b1
                b1 = d
                a = j
            elif d < b2:
                b2 = d
        best[i] = b1
        second[i] = b2
        arg[i] = a
    return best, second, arg


@numba.njit(cache=True, nogil=True)
def _within(q: np.ndarray, c: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``(query row, code row, distance)`` with distance <= ``t`` (uint64 words)."""
    n, m, w = q.shape[0], c.shape[0], q.shape[1]
    qi = np.empty(16, np.int64)
    ci = np.empty(16, np.int64)
    dd = np.empty(16, np.int64)
    k = 0
    for i in range(n):
        for j in range(m):
            d = 0
            for x in range(w):
                v = q[i, x] ^ c[j, x]
                v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
                v = (v & np.uint64(0x3333333333333333)) + \
                    ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
                v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
                d += np.int64((v * np.uint64(0x0101010101010101)) >> np.uint64(56))
            if d <= t:
                if k == len(qi):
                    qi = np.concatenate((qi, np.empty(k, np.int64)))
                    ci = np.concatenate((ci, np.empty(k, np.int64)))
                    dd = np.concatenate((dd, np.empty(k, np.int64)))
                qi[k] = i
                ci[k] = j
                dd[k] = d
                k += 1
    return qi[:k], ci[:k], dd[:k]


def within(queries: np.ndarray, codes: np.ndarray, t: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact scan: ``(query rows, code rows, distances)`` of every pair of ``(n, 32)``
    uint8 codes within Hamming distance ``t``. One thread and no set-up cost, for the
    small code sets where a FAISS scan's thread start-up dominates."""
    if not len(queries) or not len(codes):
        e = np.zeros(0, np.int64)
        return e, e, e
    return _within(words(queries), words(codes), int(t))


def words(desc: np.ndarray) -> np.ndarray:
    """``(k, 32)`` uint8 descriptors as ``(k, 4)`` uint64 words for the matching kernel."""
    return np.ascontiguousarray(desc).view(np.uint64).reshape(len(desc), -1)


def matches(q_desc: np.ndarray, c_desc: np.ndarray, ratio: float = RATIO,
            max_distance: int = MAX_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one descriptor matches ``(query_rows, candidate_rows)`` passing the ratio
    test; where several query rows pick one candidate row, the closest keeps it."""
    if len(q_desc) == 0 or len(c_desc) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    best, second, arg = _nearest(words(q_desc), words(c_desc))
    ok = (best <= max_distance) & (best <= ratio * second)
    qi = np.flatnonzero(ok)
    ci, d = arg[qi], best[qi]
    order = np.lexsort((d, ci))  # by candidate row, closest first
    qi, ci = qi[order], ci[order]
    first = np.ones(len(ci), bool)
    first[1:] = ci[1:] != ci[:-1]
    return qi[first], ci[first]


def score(q_xy: np.ndarray, q_desc: np.ndarray, c_xy: np.ndarray, c_desc: np.ndarray,
          c_size: tuple[int, int], grid: int | None = None) -> int:
    """Distinct occupied grid cells (of the candidate frame, ``c_size`` = (w, h)) among
    the RANSAC-consistent one-to-one matches; 0 when no plausible transform is found."""
    grid = GRID if grid is None else grid
    qi, ci = matches(q_desc, c_desc)
    if len(qi) < 4:
        return 0
    cv2 = require_cv2()
    src = np.ascontiguousarray(q_xy[qi], np.float32)
    dst = np.ascontiguousarray(c_xy[ci], np.float32)
    tol = REPROJ * max(c_size)
    model, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                              ransacReprojThreshold=tol, maxIters=2000,
                                              confidence=0.995, refineIters=10)
    if model is None or mask is None:
        return 0
    s = float(np.hypot(model[0, 0], model[1, 0]))
    if not MIN_SCALE <= s <= MAX_SCALE:
        return 0
    inl = dst[mask.ravel().astype(bool)]
    if len(inl) < 4:
        return 0
    w, h = c_size
    cx = np.clip((inl[:, 0] * grid / w).astype(np.int64), 0, grid - 1)
    cy = np.clip((inl[:, 1] * grid / h).astype(np.int64), 0, grid - 1)
    return int(np.unique(cy * grid + cx).size)
