"""Compiled (numba) inner loop of the MIH range search; imported only when numba is present.

One pass per query: for each planned table, walk the buckets of every key within the
table's radius and verify each stored code with a word-wise popcount that stops as soon as
the distance exceeds the threshold. Matches found through several tables are kept once.
Every kernel releases the GIL (``nogil``), so searches from several threads run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._prefetch import prefetch

PREFETCH_AHEAD = 12
"""Candidates whose code is requested ahead of the one being verified."""


@njit(cache=True, nogil=True, inline="always")
def _popcount64(x):
    x = np.uint64(x)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True, nogil=True)
def _touch(row, los, nm):
    """Xor of the first entry of each bucket (clamped in range): pulls them into cache."""
    last = row.shape[0] - 1
    acc = row[0] ^ row[0]
    for i in range(nm):
        acc ^= row[min(los[i], last)]
    return acc


@njit(cache=True, nogil=True)
def _gather_bucket(row, lo, hi, pmask, pbits, tag, rem, cand, nc):
    """Append the positions of entries ``row[lo:hi]`` whose tag is within ``rem`` bits of
    ``tag``; returns the new fill level (the caller guarantees room)."""
    for e in range(lo, hi):
        ent = np.int64(row[e])
        cand[nc] = ent & pmask
        nc += _popcount64((ent >> pbits) ^ tag) <= rem
    return nc


@njit(cache=True, nogil=True)
def _verify(data, q, cand, nc, t, out_p, out_d, cnt):
    """Append (position, distance) of candidates within ``t`` of ``q``, branch-free, with
    the code of a candidate :data:`PREFETCH_AHEAD` places on already requested."""
    nw = data.shape[1]
    for c in range(min(nc, PREFETCH_AHEAD)):
        prefetch(data, (cand[c], 0))
    for c in range(nc):
        if c + PREFETCH_AHEAD < nc:
            prefetch(data, (cand[c + PREFETCH_AHEAD], 0))
        p = cand[c]
        d = 0
        for w in range(nw):
            d += _popcount64(data[p, w] ^ q[w])
        out_p[cnt] = p
        out_d[cnt] = d
        cnt += d <= t
    return cnt


@njit(cache=True, nogil=True)
def part_keys(codes, starts, widths, shifts):
    """Per row of ``(n, nbytes)`` uint8 ``codes`` and per part ``j`` (bits ``starts[j]``
    to ``starts[j] + widths[j]``, first bit most significant), the key's prefix (its top
    ``widths[j] - shifts[j]`` bits) and tag (its low ``shifts[j]`` bits), as two
    ``(n, parts)`` int64 arrays. One call for all parts: a query's keys cost nanoseconds
    here, against microseconds per part in numpy."""
    n, k = codes.shape[0], starts.shape[0]
    pre = np.empty((n, k), np.int64)
    tag = np.empty((n, k), np.int64)
    for i in range(n):
        for j in range(k):
            s = starts[j]
            w = widths[j]
            first = s // 8
            last = (s + w - 1) // 8
            v = np.int64(0)
            for b in range(first, last + 1):
                v = (v << 8) | np.int64(codes[i, b])
            v = (v >> ((last + 1) * 8 - (s + w))) & ((np.int64(1) << w) - 1)
            pre[i, j] = v >> shifts[j]
            tag[i, j] = v & ((np.int64(1) << shifts[j]) - 1)
    return pre, tag


@njit(cache=True, nogil=True, inline="always")
def _bucket_bounds(ob, pre, masks, m0, nm, offsets, los, his):
    """Fill los/his with the [start, end) of the nm buckets probed around key ``pre``;
    return the total number of entries they hold."""
    total = 0
    for i in range(nm):
        k = ob + (pre ^ np.int64(masks[m0 + i]))
        los[i] = offsets[k]
        his[i] = offsets[k + 1]
        total += his[i] - los[i]
    return total


@njit(cache=True, nogil=True)
def range_kernel(data, qdata, qpre, qtag, tables, radii, mask_lims, masks, mask_pc, offsets,
                 off_base, entries, pbits, t):
    """Return (query, position, distance) int64/int64/int32 arrays of all matches <= t,
    grouped by query in ascending order, positions ascending within a query.

    Per query, candidate positions (bucket entries whose tag is close enough) are gathered
    first and then verified in a branch-free loop, so the CPU can overlap the cache misses
    of many candidates.
    """
    nq = qdata.shape[0]
    pmask = np.int64((1 << pbits) - 1)
    cap = 1024
    out_q = np.empty(cap, np.int64)
    out_p = np.empty(cap, np.int64)
    out_d = np.empty(cap, np.int32)
    cand = np.empty(4096, np.int64)
    sink = np.zeros(1, entries.dtype)
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
            total = _bucket_bounds(ob, pre, masks, m0, nm, offsets, los, his)
            if nc + total > cand.shape[0]:
                bigger = np.empty(2 * (nc + total), np.int64)
                bigger[:nc] = cand[:nc]
                cand = bigger
            # Phase 2: touch every bucket's first entry (independent loads the CPU overlaps;
            # the stored xor keeps them from being optimised away), then scan the buckets,
            # keeping entries whose tag is within the radius left.
            row = entries[tb]
            sink[0] ^= _touch(row, los, nm)
            for i in range(nm):
                nc = _gather_bucket(row, los[i], his[i], pmask, pbits, tag,
                                    r - mask_pc[m0 + i], cand, nc)
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
        cnt = _verify(data, qdata[qi], cand, nc, t, out_p, out_d, cnt)
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


@njit(cache=True, nogil=True)
def _scan_bucket(row, pos_row, lo, hi, q, t, buf_p, buf_d, nb):
    """Append (position, distance) of every entry of ``row[lo:hi]`` within ``t`` of ``q``;
    returns the new fill level (the caller guarantees room)."""
    for e in range(lo, hi):
        d = _popcount64(row[e] ^ q)
        if d <= t:
            buf_p[nb] = pos_row[e]
            buf_d[nb] = d
            nb += 1
    return nb


@njit(cache=True, nogil=True)
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
    buf_p = np.empty(4096, np.int64)
    sink = np.zeros(1, codes.dtype)
    buf_d = np.empty(4096, np.int32)
    cnt = 0
    for qi in range(nq):
        q = qw[qi]
        nb = 0
        for j in range(tables.shape[0]):
            tb = tables[j]
            row = codes[tb]
            pos_row = positions[tb]
            pre = qpre[qi, j]
            ob = off_base[tb]
            m0 = mask_lims[j]
            nm = mask_lims[j + 1] - m0
            if nm > los.shape[0]:
                los = np.empty(2 * nm, np.int64)
                his = np.empty(2 * nm, np.int64)
            total = _bucket_bounds(ob, pre, masks, m0, nm, offsets, los, his)
            if nb + total > buf_p.shape[0]:
                bp = np.empty(2 * (nb + total), np.int64)
                bd = np.empty(2 * (nb + total), np.int32)
                bp[:nb] = buf_p[:nb]
                bd[:nb] = buf_d[:nb]
                buf_p, buf_d = bp, bd
            sink[0] ^= _touch(row, los, nm)
            for i in range(nm):
                nb = _scan_bucket(row, pos_row, los[i], his[i], q, t, buf_p, buf_d, nb)
        if nb > 1 and tables.shape[0] > 1:
            # Found through several tables: keep each position once.
            order = np.argsort(buf_p[:nb], kind="mergesort")
            m = 0
            for i in range(nb):
                p = buf_p[order[i]]
                if i == 0 or p != buf_p[order[i - 1]]:
                    order[m] = order[i]
                    m += 1
            sel = order[:m]
        else:
            sel = np.arange(nb)
        if cnt + sel.shape[0] > cap:
            cap = 2 * (cnt + sel.shape[0])
            nq_ = np.empty(cap, np.int64)
            np_ = np.empty(cap, np.int64)
            nd_ = np.empty(cap, np.int32)
            nq_[:cnt] = out_q[:cnt]
            np_[:cnt] = out_p[:cnt]
            nd_[:cnt] = out_d[:cnt]
            out_q, out_p, out_d = nq_, np_, nd_
        for i in range(sel.shape[0]):
            out_q[cnt] = qi
            out_p[cnt] = buf_p[sel[i]]
            out_d[cnt] = buf_d[sel[i]]
            cnt += 1
    return out_q[:cnt].copy(), out_p[:cnt].copy(), out_d[:cnt].copy()
