"""Compiled (numba) inner loop of the MIH range search; imported only when numba is present.

One pass per query: for each planned table, walk the buckets of every key within the
table's radius and verify each stored code with a word-wise popcount that stops as soon as
the distance exceeds the threshold. Matches found through several tables are kept once.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _popcount64(x):
    x = np.uint64(x)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True)
def range_kernel(data, qdata, qkeys, tables, mask_lims, masks, offsets, off_base, positions, t):
    """Return (query, position, distance) int64/int64/int32 arrays of all matches <= t,
    grouped by query in ascending order, positions ascending within a query.

    Per query, candidate positions are gathered first and then verified in a branch-free
    loop, so the CPU can overlap the cache misses of many candidates.
    """
    nq = qdata.shape[0]
    nw = data.shape[1]
    cap = 1024
    out_q = np.empty(cap, np.int64)
    out_p = np.empty(cap, np.int64)
    out_d = np.empty(cap, np.int32)
    cand = np.empty(4096, np.int64)
    cnt = 0
    for qi in range(nq):
        nc = 0
        for j in range(tables.shape[0]):
            tb = tables[j]
            key = np.int64(qkeys[qi, j])
            ob = off_base[tb]
            for mi in range(mask_lims[j], mask_lims[j + 1]):
                k = ob + (key ^ np.int64(masks[mi]))
                lo = offsets[k]
                hi = offsets[k + 1]
                if nc + (hi - lo) > cand.shape[0]:
                    bigger = np.empty(2 * (nc + hi - lo), np.int64)
                    bigger[:nc] = cand[:nc]
                    cand = bigger
                for e in range(lo, hi):
                    cand[nc] = positions[tb, e]
                    nc += 1
        if cnt + nc > cap:
            cap = 2 * (cnt + nc)
            nq_ = np.empty(cap, np.int64)
            np_ = np.empty(cap, np.int64)
            nd_ = np.empty(cap, np.int32)
            nq_[:cnt] = out_q[:cnt]
            np_[:cnt] = out_p[:cnt]
            nd_[:cnt] = out_d[:cnt]
            out_q, out_p, out_d = nq_, np_, nd_
        first = cnt
        for c in range(nc):
            p = cand[c]
            d = 0
            for w in range(nw):
                d += _popcount64(data[p, w] ^ qdata[qi, w])
            out_p[cnt] = p
            out_d[cnt] = d
            cnt += d <= t
        if cnt - first > 1 and tables.shape[0] > 1:
            # Found through several tables: sort this query's matches, keep each once.
            order = np.argsort(out_p[first:cnt], kind="mergesort")
            ps = out_p[first:cnt][order]
            ds = out_d[first:cnt][order]
            m = first
            for i in range(ps.shape[0]):
                if i == 0 or ps[i] != ps[i - 1]:
                    out_p[m] = ps[i]
                    out_d[m] = ds[i]
                    m += 1
            cnt = m
        out_q[first:cnt] = qi
    return out_q[:cnt].copy(), out_p[:cnt].copy(), out_d[:cnt].copy()
