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
def range_kernel(data, qdata, qpre, qtag, tables, radii, mask_lims, masks, mask_pc, offsets,
                 off_base, entries, pbits, t):
    """Return (query, position, distance) int64/int64/int32 arrays of all matches <= t,
    grouped by query in ascending order, positions ascending within a query.

    Per query, candidate positions (bucket entries whose tag is close enough) are gathered
    first and then verified in a branch-free loop, so the CPU can overlap the cache misses
    of many candidates.
    """
    nq = qdata.shape[0]
    nw = data.shape[1]
    pmask = np.int64((1 << pbits) - 1)
    cap = 1024
    out_q = np.empty(cap, np.int64)
    out_p = np.empty(cap, np.int64)
    out_d = np.empty(cap, np.int32)
    cand = np.empty(4096, np.int64)
    los = np.empty(1024, np.int64)
    his = np.empty(1024, np.int64)
    cnt = 0
    for qi in range(nq):
        nc = 0
        for j in range(tables.shape[0]):
            tb = tables[j]
            pre = qpre[qi, j]
            tag = qtag[qi, j]
            r = radii[j]
            ob = off_base[tb]
            m0 = mask_lims[j]
            nm = mask_lims[j + 1] - m0
            if nm > los.shape[0]:
                los = np.empty(2 * nm, np.int64)
                his = np.empty(2 * nm, np.int64)
            # Phase 1: all bucket bounds (independent loads the CPU can overlap).
            total = 0
            for i in range(nm):
                k = ob + (pre ^ np.int64(masks[m0 + i]))
                los[i] = offsets[k]
                his[i] = offsets[k + 1]
                total += his[i] - los[i]
            if nc + total > cand.shape[0]:
                bigger = np.empty(2 * (nc + total), np.int64)
                bigger[:nc] = cand[:nc]
                cand = bigger
            # Phase 2: scan the buckets, keeping entries whose tag is within the radius left.
            for i in range(nm):
                rem = r - mask_pc[m0 + i]
                for e in range(los[i], his[i]):
                    ent = np.int64(entries[tb, e])
                    cand[nc] = ent & pmask
                    nc += _popcount64((ent >> pbits) ^ tag) <= rem
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


@njit(cache=True)
def inline_kernel(qw, qpre, tables, mask_lims, masks, offsets, off_base, codes, positions, t):
    """Inline tables (codes of <= 64 bits stored in each table): every entry of every probed
    bucket is verified in place. Same output as :func:`range_kernel`."""
    nq = qw.shape[0]
    cap = 1024
    out_q = np.empty(cap, np.int64)
    out_p = np.empty(cap, np.int64)
    out_d = np.empty(cap, np.int32)
    los = np.empty(1024, np.int64)
    his = np.empty(1024, np.int64)
    cnt = 0
    for qi in range(nq):
        first = cnt
        q = qw[qi]
        for j in range(tables.shape[0]):
            tb = tables[j]
            pre = qpre[qi, j]
            ob = off_base[tb]
            m0 = mask_lims[j]
            nm = mask_lims[j + 1] - m0
            if nm > los.shape[0]:
                los = np.empty(2 * nm, np.int64)
                his = np.empty(2 * nm, np.int64)
            for i in range(nm):
                k = ob + (pre ^ np.int64(masks[m0 + i]))
                los[i] = offsets[k]
                his[i] = offsets[k + 1]
            for i in range(nm):
                for e in range(los[i], his[i]):
                    d = _popcount64(codes[tb, e] ^ q)
                    if d <= t:
                        if cnt == cap:
                            cap *= 2
                            nq_ = np.empty(cap, np.int64)
                            np_ = np.empty(cap, np.int64)
                            nd_ = np.empty(cap, np.int32)
                            nq_[:cnt] = out_q[:cnt]
                            np_[:cnt] = out_p[:cnt]
                            nd_[:cnt] = out_d[:cnt]
                            out_q, out_p, out_d = nq_, np_, nd_
                        out_p[cnt] = positions[tb, e]
                        out_d[cnt] = d
                        cnt += 1
        if cnt - first > 1 and tables.shape[0] > 1:
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
