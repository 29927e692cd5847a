"""Geometric verification of two sets of local features: is one image a copy of the other?

:func:`score` matches query descriptors to candidate descriptors (nearest neighbour by
Hamming distance, ratio test, one-to-one), fits a similarity transform (rotation, uniform
scale, translation) with RANSAC (OpenCV), and scores the consistent matches by the
**number of distinct grid cells** of the candidate's frame they fall in (repeated
keypoints at one spot, pyramid levels or texture, count once). Two copy tests then tell a
copy from two pictures that share a pasted logo, sticker or watermark, whose matches are
just as consistent: the transform must overlay a large part of both frames and explain a
fair share of the cells where either has keypoints (:func:`explains`), and the pictures
must also look alike *away from* the matches (:func:`agrees`, on small thumbnails).
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
MIN_OVERLAP = 0.25
"""A copy's frame, mapped by the transform, covers at least this share of the other's."""
MIN_EXPLAINED = 0.25
"""Of the candidate's cells, within the overlap, where either image has keypoints, at
least this share must hold consistent matches (two photos sharing only a sticker explain
a few cells of many)."""
MIN_CORRELATION = 0.5
"""Aligned thumbnails of a copy correlate at least this much over their overlap, away
from the matched keypoints."""
MIN_SCALE, MAX_SCALE = 0.2, 5.0
"""Similarity transforms scaling outside this range are rejected as degenerate."""


@numba.njit(cache=True, nogil=True)
def _distance(q: np.ndarray, i: int, c: np.ndarray, j: int) -> int:
    """Hamming distance of row ``i`` of ``q`` and row ``j`` of ``c`` (uint64 words)."""
    d = 0
    for x in range(q.shape[1]):
        v = q[i, x] ^ c[j, x]
        v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
        v = (v & np.uint64(0x3333333333333333)) + \
            ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
        v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
        d += int((v * np.uint64(0x0101010101010101)) >> np.uint64(56))
    return d


@numba.njit(cache=True, nogil=True)
def _nearest(q: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of ``q`` (uint64 words) its nearest and second-nearest distance in
    ``c`` and the index of the nearest."""
    n, m = q.shape[0], c.shape[0]
    best = np.full(n, 1 << 20, np.int32)
    second = np.full(n, 1 << 20, np.int32)
    arg = np.full(n, -1, np.int64)
    for i in range(n):
        b1 = 1 << 20
        b2 = 1 << 20
        a = -1
        for j in range(m):
            d = _distance(q, i, c, j)
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
    """Every ``(query row, code row, distance)`` with distance <= ``t`` (uint64 words):
    one pass to count, one to fill, so the inner loop allocates nothing."""
    n, m = q.shape[0], c.shape[0]
    k = 0
    for i in range(n):
        for j in range(m):
            if _distance(q, i, c, j) <= t:
                k += 1
    qi = np.empty(k, np.int64)
    ci = np.empty(k, np.int64)
    dd = np.empty(k, np.int64)
    k = 0
    for i in range(n):
        for j in range(m):
            d = _distance(q, i, c, j)
            if d <= t:
                qi[k] = i
                ci[k] = j
                dd[k] = d
                k += 1
    return qi, ci, dd


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


def score(q_xy: np.ndarray, q_desc: np.ndarray, q_size: tuple[int, int], q_thumb: np.ndarray,
          c_xy: np.ndarray, c_desc: np.ndarray, c_size: tuple[int, int], c_thumb: np.ndarray,
          grid: int | None = None, gated: bool = True) -> int:
    """Distinct occupied grid cells (of the candidate frame, sizes are ``(w, h)``) among
    the RANSAC-consistent one-to-one matches; 0 when no plausible transform is found or
    the transform fails the copy tests (:func:`explains`, :func:`agrees`).

    A second transform is fitted to the matches the first leaves out and the better of
    the two counts: a pasted sticker or logo that moved between the two images has its own
    consistent transform, which must not hide the photo's. ``gated=False`` skips the copy
    tests: the raw cell count, an upper bound of the score, for modelling its tail."""
    grid = GRID if grid is None else grid
    qi, ci = matches(q_desc, c_desc)
    src = np.ascontiguousarray(q_xy[qi], np.float32)
    dst = np.ascontiguousarray(c_xy[ci], np.float32)
    best = 0
    for _ in range(2):
        if len(src) < 4:
            break
        found = _consensus(src, dst, REPROJ * max(c_size))
        if found is None:
            break
        model, inliers = found
        cells = _cells(dst[inliers], c_size, grid)
        if cells > best and (not gated or (
                explains(model, cells, q_xy, q_size, c_xy, c_size, grid)
                and agrees(model, dst[inliers], q_thumb, q_size, c_thumb, c_size))):
            best = cells
        src, dst = src[~inliers], dst[~inliers]
    return best


def explains(model: np.ndarray, cells: int, q_xy: np.ndarray, q_size: tuple[int, int],
             c_xy: np.ndarray, c_size: tuple[int, int], grid: int) -> bool:
    """Whether a transform makes one image a copy of the other rather than two pictures
    sharing an object (a logo, a sticker): the query frame mapped into the candidate frame
    must cover at least :data:`MIN_OVERLAP` of it, and inliers must occupy at least
    :data:`MIN_EXPLAINED` of the candidate's grid cells, within that overlap, where either
    image has keypoints (two photos sharing only a sticker explain a few cells of many)."""
    cv2 = require_cv2()
    qw, qh = q_size
    w, h = c_size
    corners = np.array([[0, 0], [qw, 0], [qw, qh], [0, qh]], np.float32)
    mapped = (corners @ model[:, :2].T + model[:, 2]).astype(np.float32)
    frame = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    area, _ = cv2.intersectConvexConvex(mapped, frame)
    if area < MIN_OVERLAP * w * h:
        return False
    proj = np.asarray(q_xy, np.float32) @ model[:, :2].T + model[:, 2]
    proj = proj[(proj[:, 0] >= 0) & (proj[:, 0] < w) & (proj[:, 1] >= 0) & (proj[:, 1] < h)]
    a, t = model[:, :2], model[:, 2]
    back = (np.asarray(c_xy, np.float32) - t) @ np.linalg.inv(a).T
    mine = np.asarray(c_xy, np.float32)[(back[:, 0] >= 0) & (back[:, 0] < qw)
                                        & (back[:, 1] >= 0) & (back[:, 1] < qh)]
    either = _cells(np.concatenate([proj, mine]), c_size, grid) if len(proj) + len(mine) else 1
    return cells >= MIN_EXPLAINED * either


def agrees(model: np.ndarray, inliers: np.ndarray, q_thumb: np.ndarray,
           q_size: tuple[int, int], c_thumb: np.ndarray, c_size: tuple[int, int]) -> bool:
    """Whether the two pictures also look alike *away from* their matched keypoints: each
    cell of the candidate's thumbnail that holds no inlier (nor borders one) is compared
    with the query thumbnail sampled at the mapped position, and their correlation over
    the overlap must reach :data:`MIN_CORRELATION`. Two photos that share a sticker match
    on the sticker and nowhere else; a copy agrees everywhere. Where inliers leave less
    than a tenth of the grid free, the matches themselves cover the picture."""
    w, h = c_size
    qw, qh = q_size
    side = c_thumb.shape[0]
    centres = (np.arange(side, dtype=np.float64) + 0.5) / side
    gx, gy = np.meshgrid(centres * w, centres * h)
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    a, t = model[:, :2].astype(np.float64), model[:, 2].astype(np.float64)
    back = (pts - t) @ np.linalg.inv(a).T  # candidate cell centres in query pixels
    qs = q_thumb.shape[0]
    u, v = back[:, 0] / qw * qs - 0.5, back[:, 1] / qh * qs - 0.5
    ok = (u >= 0) & (u <= qs - 1) & (v >= 0) & (v <= qs - 1)
    if ok.sum() < MIN_OVERLAP * side * side:
        return False
    used = np.zeros((side + 2, side + 2), bool)
    ix = np.clip((inliers[:, 0] * side / w).astype(np.int64), 0, side - 1) + 1
    iy = np.clip((inliers[:, 1] * side / h).astype(np.int64), 0, side - 1) + 1
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            used[iy + dy, ix + dx] = True
    ok &= ~used[1:-1, 1:-1].ravel()
    if ok.sum() < 0.1 * side * side:
        return True
    u, v = u[ok], v[ok]
    x0, y0 = np.minimum(u.astype(np.int64), qs - 2), np.minimum(v.astype(np.int64), qs - 2)
    fx, fy = u - x0, v - y0
    q = q_thumb.astype(np.float64)
    sampled = (q[y0, x0] * (1 - fx) * (1 - fy) + q[y0, x0 + 1] * fx * (1 - fy)
               + q[y0 + 1, x0] * (1 - fx) * fy + q[y0 + 1, x0 + 1] * fx * fy)
    c = c_thumb.astype(np.float64).ravel()[ok]
    sampled, c = sampled - sampled.mean(), c - c.mean()
    denom = float(np.sqrt((sampled ** 2).sum() * (c ** 2).sum()))
    return denom > 0 and float((sampled * c).sum()) / denom >= MIN_CORRELATION


def _consensus(src: np.ndarray, dst: np.ndarray, tol: float
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """The RANSAC similarity transform from ``src`` to ``dst`` (2x3) and its inlier mask,
    or None when there is none or it scales implausibly."""
    cv2 = require_cv2()
    model, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                              ransacReprojThreshold=tol, maxIters=2000,
                                              confidence=0.995, refineIters=10)
    if model is None or mask is None:
        return None
    s = float(np.hypot(model[0, 0], model[1, 0]))
    if not MIN_SCALE <= s <= MAX_SCALE:
        return None
    inliers = mask.ravel().astype(bool)
    return (model, inliers) if inliers.sum() >= 4 else None


def _cells(pts: np.ndarray, size: tuple[int, int], grid: int) -> int:
    w, h = size
    cx = np.clip((pts[:, 0] * grid / w).astype(np.int64), 0, grid - 1)
    cy = np.clip((pts[:, 1] * grid / h).astype(np.int64), 0, grid - 1)
    return int(np.unique(cy * grid + cx).size)
