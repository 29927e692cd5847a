"""Multi-index hashing (MIH): exact Hamming range search over packed binary codes.

The code bits are split into ``m`` disjoint contiguous parts. Each part has a table: the
positions of all stored codes sorted by that part's value (the *key*). A key of ``w`` bits is
split into a *prefix* of ``pw`` bits, addressed through a dense CSR offsets array (about one
bucket per 4 codes, so offsets stay small whatever ``w``), and a *tag* of the remaining bits,
packed with the position into one uint32 entry. Probing enumerates prefixes within the
radius and filters bucket entries by tag distance, so each table costs 4 bytes per code.

Exactness rests on the general pigeonhole principle: if ``d(q, x) <= t`` and per-part radii
``r_i`` over a set ``S`` of parts satisfy ``sum_{i in S} (r_i + 1) > t``, then some part
``i in S`` has ``d_i(q, x) <= r_i`` (else the distances, which add up over the parts, would
exceed ``t``). So probing, in every table of ``S``, all keys within ``r_i`` bits of the
query's key finds every match; every candidate is then verified with a full popcount.
Radii are chosen per search by a small dynamic programme that minimises the estimated
probe + verification cost under that constraint, so no threshold ever loses recall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np

# Cost model (nanoseconds, single thread), calibrated on this machine with
# benchmarks/index_scale.py: one probe (a random offsets lookup), one bucket entry scanned
# (sequential), one candidate verified (a random code fetch, plus popcount per 64-bit
# word), one code scanned by the FAISS flat kernel per 64-bit word.
C_PROBE = 40.0
C_ENTRY = 9.0
C_CAND = 50.0
C_CAND_WORD = 3.0
C_SCAN_WORD = 0.35
C_INLINE = 1.5  # one bucket entry of an inline table: sequential code + popcount
C_INLINE_PROBE = 250.0  # one inline bucket: offsets lookup, first miss, prefetch ramp-up
MAX_KEY_BITS = 32  # widest part (keys are uint32)
MAX_PREFIX_BITS = 26  # widest addressed prefix: 2**26 int32 offsets = 256 MiB
MAX_MASKS = 1 << 16  # most prefix flip masks one table may probe per query
CAND_PER_BATCH = 1 << 21  # numpy path: verification working set per batch of queries


def split_widths(bits: int, m: int) -> list[int]:
    """``m`` part widths adding up to ``bits``, as equal as possible (wider parts first)."""
    base, extra = divmod(bits, m)
    return [base + 1] * extra + [base] * (m - extra)


def pos_bits(n: int) -> int:
    """Bits an entry needs for positions ``0..n-1``."""
    return max(1, (n - 1).bit_length())


SLACKS = (0, 1, 2, 3)
"""Layout choices: about ``2**slack`` codes per addressed bucket (memory vs scan work)."""


def prefix_width(width: int, n: int, slack: int, inline: bool = False) -> int:
    """Addressed prefix bits of a ``width``-bit part for ``n`` codes (about ``2**slack``
    codes per bucket), at least enough that the tag fits beside the position in 32 bits
    (inline tables keep no tag)."""
    lo = 0 if inline else max(0, width - (32 - pos_bits(n)))
    target = max(0, round(math.log2(max(n, 1))) - slack)
    return min(width, max(lo, min(target, MAX_PREFIX_BITS)))


@lru_cache(maxsize=4096)
def ball_size(width: int, r: int) -> int:
    """Number of ``width``-bit keys within Hamming distance ``r`` of a key."""
    return sum(math.comb(width, j) for j in range(min(r, width) + 1))


@lru_cache(maxsize=64)
def flip_masks(width: int, r: int) -> np.ndarray:
    """All ``width``-bit masks with at most ``r`` bits set, as uint32 (fewest bits first)."""
    out = [0]
    for j in range(1, min(r, width) + 1):
        out.extend(sum(1 << b for b in c) for c in combinations(range(width), j))
    arr = np.array(out, dtype=np.uint32)
    arr.flags.writeable = False
    return arr


def extract_keys(codes: np.ndarray, start: int, width: int, chunk: int = 1 << 20) -> np.ndarray:
    """Bits ``[start, start + width)`` of every row of packed ``(n, nbytes)`` uint8 codes,
    first bit most significant, as a uint32 array (``width <= 32``)."""
    first, last = start // 8, (start + width - 1) // 8
    shift = np.uint64((last + 1) * 8 - (start + width))
    mask = np.uint64((1 << width) - 1)
    out = np.empty(codes.shape[0], dtype=np.uint32)
    for lo in range(0, codes.shape[0], chunk):
        block = codes[lo:lo + chunk, first:last + 1]
        v = np.zeros(block.shape[0], dtype=np.uint64)
        for j in range(block.shape[1]):
            v = (v << np.uint64(8)) | block[:, j]
        out[lo:lo + chunk] = (v >> shift) & mask
    return out


def popcount_rows(x: np.ndarray) -> np.ndarray:
    """Set bits per row of a 2-D unsigned integer array, as int32."""
    return np.bitwise_count(x).sum(axis=1, dtype=np.int32)


def word_view(codes: np.ndarray) -> np.ndarray:
    """``(n, nbytes)`` uint8 codes as ``(n, nbytes/8)`` uint64 when the width allows."""
    if codes.shape[1] % 8 == 0:
        return codes.view(np.uint64)
    return codes


@dataclass(frozen=True)
class Probe:
    """One table to probe and the radius to probe it with."""

    table: int
    radius: int


@dataclass(frozen=True)
class SearchPlan:
    """Which tables to probe at which radii; ``cost`` is the estimated ns per query."""

    probes: tuple[Probe, ...]
    cost: float
    candidates: float
    """Expected candidates per query on uniform codes."""
    scan_cost: float
    """Estimated ns per query of a flat scan, for comparison."""

    @property
    def use_scan(self) -> bool:
        return not self.probes or self.cost >= self.scan_cost


def latency_scale(n: int, nbytes: int) -> float:
    """Factor on random-access costs: about 1 when codes and tables are far larger than the
    CPU caches (256 MiB and up), down to 0.25 when they fit (8 MiB and less)."""
    footprint = max(1.0, n * (nbytes + 48.0))
    lo, hi = 8 * 2.0**20, 256 * 2.0**20
    if footprint <= lo:
        return 0.25
    if footprint >= hi:
        return 1.0
    return 0.25 + 0.75 * math.log(footprint / lo) / math.log(hi / lo)


def table_cost(width: int, r: int, n: int, words: int, slack: int, inline: bool = False,
               scale: float = 1.0) -> tuple[float, float] | None:
    """Estimated (ns, candidates) per query of probing one table at radius ``r``, or None
    when the probe count is over :data:`MAX_MASKS`. ``scale`` multiplies the costs of random
    memory accesses (see :func:`latency_scale`)."""
    pw = prefix_width(width, n, slack, inline)
    probes = ball_size(pw, r)
    if probes > MAX_MASKS:
        return None
    scanned = probes * n / float(1 << pw)
    if inline:  # every bucket entry is verified in place; no separate candidates
        return probes * C_INLINE_PROBE * scale + scanned * C_INLINE, scanned
    cands = ball_size(width, r) * n / float(1 << width)
    cost = probes * C_PROBE * scale + scanned * C_ENTRY
    return cost + cands * (C_CAND * scale + C_CAND_WORD * words), cands


def plan_radii(widths: tuple[int, ...], t: int, n: int, nbytes: int, slack: int = 2,
               inline: bool = False) -> SearchPlan:
    """Cheapest per-table radii whose pigeonhole sum ``sum(r_i + 1)`` exceeds ``t``.

    A table may be left out (it then contributes nothing to the sum). Returns a plan with
    no probes when no choice satisfies the bound (the caller scans instead).
    """
    return _plan(tuple(widths), int(t), int(n), int(nbytes), int(slack), bool(inline))


@lru_cache(maxsize=1024)
def _plan(widths: tuple[int, ...], t: int, n: int, nbytes: int, slack: int, inline: bool
          ) -> SearchPlan:
    words = max(1, math.ceil(nbytes / 8))
    scan = n * C_SCAN_WORD * words
    scale = latency_scale(n, nbytes)
    if t + 1 > sum(widths) + len(widths):  # the bound cannot be met even at full radii
        return SearchPlan((), float("inf"), float("inf"), scan)
    need = t + 1
    inf = float("inf")
    # dp[w] = (cost, candidates, probes) reaching pigeonhole weight min(w, need)
    dp: list[tuple[float, float, tuple[Probe, ...]]] = [(inf, 0.0, ())] * (need + 1)
    dp[0] = (0.0, 0.0, ())
    for ti, width in enumerate(widths):
        new = list(dp)
        for r in range(0, min(width, t) + 1):
            tc = table_cost(width, r, n, words, slack, inline, scale)
            if tc is None:
                break
            c, k = tc
            for w in range(need + 1):
                base = dp[w]
                if base[0] == inf:
                    continue
                w2 = min(need, w + r + 1)
                cost = base[0] + c
                if cost < new[w2][0]:
                    new[w2] = (cost, base[1] + k, base[2] + (Probe(ti, r),))
        dp = new
    cost, cands, probes = dp[need]
    if cost == inf:
        return SearchPlan((), inf, inf, scan)
    return SearchPlan(probes, cost, cands, scan)


def table_memory(widths: tuple[int, ...], n: int, slack: int, inline: bool = False) -> int:
    """Bytes of the tables for ``n`` codes: uint32 entries (inline: uint64 codes and int32
    positions) plus int32 offsets."""
    per = 12 if inline else 4
    return sum(per * n + 4 * ((1 << prefix_width(w, n, slack, inline)) + 1) for w in widths)


Layout = tuple[tuple[int, ...], int, bool]
"""(part widths, bucket slack, inline codes)."""


def choose_layout(bits: int, n: int, t: int, memory_budget: float) -> Layout:
    """Part widths and bucket slack minimising the estimated query cost at threshold ``t``
    for ``n`` codes, with table memory within ``memory_budget`` bytes (or, when nothing
    fits, the layout with the least memory)."""
    nbytes = (bits + 7) // 8
    best: tuple[float, Layout] | None = None
    smallest: tuple[float, Layout] | None = None
    inlines = (False, True) if bits <= 64 else (False,)
    for m in range(-(-bits // MAX_KEY_BITS), min(bits, 32) + 1):
        widths = tuple(split_widths(bits, m))
        if widths[0] - (32 - pos_bits(n)) > MAX_PREFIX_BITS:
            continue
        for slack in SLACKS:
            for inline in inlines:
                mem = table_memory(widths, n, slack, inline)
                if smallest is None or mem < smallest[0]:
                    smallest = (mem, (widths, slack, inline))
                if mem > memory_budget:
                    continue
                cost = plan_radii(widths, t, n, nbytes, slack, inline).cost
                if best is None or cost < best[0]:
                    best = (cost, (widths, slack, inline))
    if best is not None and best[0] < float("inf"):
        return best[1]
    if smallest is None:
        raise ValueError(f"no MIH layout for {bits}-bit codes and n={n}")
    return smallest[1]


class MIHTables:
    """The per-part sorted tables over a fixed array of codes (rebuilt when codes change).

    ``entries`` is ``(m, n)`` uint32: row ``i`` holds ``tag << pos_bits | position`` sorted
    by part ``i``'s key. ``offsets`` concatenates each table's ``2**pw + 1`` CSR offsets over
    key prefixes; table ``i``'s start at ``off_base[i]``.

    *Inline* tables (codes of at most 64 bits) instead hold the codes themselves, as
    zero-padded uint64, in ``entries`` and their positions in ``positions`` (``(m, n)``
    int32): a bucket is then verified in place, with no random fetch per candidate.
    """

    def __init__(self, widths: tuple[int, ...], entries: np.ndarray, offsets: np.ndarray,
                 slack: int, positions: np.ndarray | None = None):
        self.widths = tuple(int(w) for w in widths)
        self.slack = int(slack)
        self.inline = positions is not None
        self.n = entries.shape[1]
        self.pbits = pos_bits(self.n)
        self.prefix = tuple(prefix_width(w, self.n, self.slack, self.inline)
                            for w in self.widths)
        self.positions = positions
        if positions is not None and (positions.shape != entries.shape
                                      or entries.dtype != np.uint64):
            raise ValueError("inline MIH tables need uint64 codes and matching positions")
        self.starts = tuple(int(s) for s in np.cumsum((0,) + self.widths[:-1]))
        sizes = [(1 << p) + 1 for p in self.prefix]
        self.off_base = np.cumsum([0] + sizes[:-1]).astype(np.int64)
        if entries.shape[0] != len(self.widths) or offsets.shape[0] != sum(sizes):
            raise ValueError("MIH table arrays do not match the part widths")
        self.entries = entries
        self.offsets = offsets
        self._probe_cache: dict[SearchPlan, ProbeArrays] = {}

    @classmethod
    def build(cls, codes: np.ndarray, widths: tuple[int, ...], slack: int = 2,
              inline: bool = False) -> MIHTables:
        """Sort ``codes`` (``(n, nbytes)`` uint8) by each part; O(m n log n)."""
        n = codes.shape[0]
        if n >= 2**31:
            raise ValueError("MIH tables hold at most 2**31 - 1 codes")
        pb = pos_bits(n)
        prefix = [prefix_width(w, n, slack, inline) for w in widths]
        entries = np.empty((len(widths), n), dtype=np.uint64 if inline else np.uint32)
        positions = np.empty((len(widths), n), dtype=np.int32) if inline else None
        padded = pad64(codes)[:, 0] if inline else None
        offsets = np.empty(sum((1 << p) + 1 for p in prefix), dtype=np.int32)
        start = ob = 0
        for i, (w, pw) in enumerate(zip(widths, prefix, strict=True)):
            keys = extract_keys(codes, start, w)
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            counts = np.bincount(keys >> np.uint32(w - pw), minlength=1 << pw)
            offsets[ob] = 0
            np.cumsum(counts, out=offsets[ob + 1:ob + (1 << pw) + 1])
            if positions is not None and padded is not None:
                entries[i] = padded[order]
                positions[i] = order
            else:
                tags = keys & np.uint32((1 << (w - pw)) - 1)
                entries[i] = (tags << np.uint32(pb)) | order.astype(np.uint32)
                del tags
            del keys, order, counts
            start += w
            ob += (1 << pw) + 1
        return cls(widths, entries, offsets, slack, positions)

    @property
    def nbytes(self) -> int:
        extra = 0 if self.positions is None else self.positions.nbytes
        return self.entries.nbytes + self.offsets.nbytes + extra

    def table_offsets(self, i: int) -> np.ndarray:
        b = int(self.off_base[i])
        return self.offsets[b:b + (1 << self.prefix[i]) + 1]

    def check(self) -> str | None:
        """Why these arrays cannot be searched safely (out-of-range positions, inconsistent
        offsets), or None. Used on arrays read from files."""
        if self.positions is not None:
            if self.n and (int(self.positions.min()) < 0 or int(self.positions.max()) >= self.n):
                return "MIH positions out of range"
        elif self.n and int((self.entries & np.uint32((1 << self.pbits) - 1)).max()) >= self.n:
            return "MIH positions out of range"
        for i in range(len(self.widths)):
            o = self.table_offsets(i)
            if o[0] != 0 or o[-1] != self.n or np.any(np.diff(o) < 0):
                return "MIH offsets are inconsistent"
        return None

    def range_search(
        self, codes: np.ndarray, queries: np.ndarray, t: int, plan: SearchPlan
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ``(query, position, distance)`` with distance <= t, each pair once, grouped
        by query (ascending). ``codes`` must be the array the tables were built from."""
        pa = self._probe_arrays(plan)
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        keys_kernel = _kernel("part_keys")
        if keys_kernel is not None:
            qpre, qtag = keys_kernel(queries, pa.starts, pa.widths, pa.shifts)
        else:
            qpre, qtag = self._part_keys_numpy(queries, plan)
        if self.inline:
            return self._range_search_inline(queries, qpre, t, pa)
        kernel = _kernel()
        if kernel is not None:
            return kernel(word_view(codes), word_view(queries), qpre, qtag, pa.tables,
                          pa.radii, pa.mask_lims, pa.masks, pa.mask_pc, self.offsets,
                          self.off_base, self.entries, self.pbits, int(t))
        return self._range_search_numpy(codes, queries, qpre, qtag, t, plan)

    def _probe_arrays(self, plan: SearchPlan) -> ProbeArrays:
        """The arrays the kernels take for ``plan``, made once per plan and kept (a search
        of one query would otherwise spend a third of its time making them). They are
        never written to, but stay writable: a read-only array is another type to the
        compiled kernels, which would compile a second version of themselves."""
        got = self._probe_cache.get(plan)
        if got is None:
            got = ProbeArrays.make(plan, self.starts, self.widths, self.prefix)
            if len(self._probe_cache) >= 64:
                self._probe_cache.clear()
            self._probe_cache[plan] = got
        return got

    def _part_keys_numpy(self, queries: np.ndarray, plan: SearchPlan
                         ) -> tuple[np.ndarray, np.ndarray]:
        nq = queries.shape[0]
        qpre = np.empty((nq, len(plan.probes)), dtype=np.int64)
        qtag = np.empty((nq, len(plan.probes)), dtype=np.int64)
        for j, p in enumerate(plan.probes):
            keys = extract_keys(queries, self.starts[p.table], self.widths[p.table])
            s = self.widths[p.table] - self.prefix[p.table]
            qpre[:, j] = keys >> np.uint32(s)
            qtag[:, j] = keys & np.uint32((1 << s) - 1)
        return qpre, qtag

    def _range_search_inline(self, queries, qpre, t, pa):
        qw = pad64(queries)[:, 0]
        kernel = _kernel("inline_kernel")
        if kernel is not None:
            return kernel(qw, qpre, pa.tables, pa.mask_lims, pa.masks, self.offsets,
                          self.off_base, self.entries, self.positions, int(t))
        masks, mask_lims = pa.masks, pa.mask_lims
        out_q, out_p, out_d = [], [], []
        for j, tb in enumerate(pa.tables.tolist()):
            m = masks[mask_lims[j]:mask_lims[j + 1]].astype(np.int64)
            off = self.table_offsets(tb)
            keys = (qpre[:, j][:, None] ^ m[None, :]).ravel()
            lo = off[keys].astype(np.int64)
            cnt = off[keys + 1] - lo
            total = int(cnt.sum())
            if total == 0:
                continue
            ends = np.cumsum(cnt)
            idx = np.arange(total, dtype=np.int64) + np.repeat(lo - (ends - cnt), cnt)
            qi = np.repeat(np.arange(keys.size, dtype=np.int64) // m.size, cnt)
            d = np.bitwise_count(self.entries[tb][idx] ^ qw[qi]).astype(np.int32)
            ok = np.flatnonzero(d <= t)
            out_q.append(qi[ok])
            out_p.append(self.positions[tb][idx[ok]].astype(np.int64))
            out_d.append(d[ok])
        if not out_q:
            e = np.empty(0, dtype=np.int64)
            return e, e.copy(), np.empty(0, dtype=np.int32)
        q, p, d = np.concatenate(out_q), np.concatenate(out_p), np.concatenate(out_d)
        _, first = np.unique(q * self.n + p, return_index=True)
        return q[first], p[first], d[first]

    def _range_search_numpy(self, codes, queries, qpre, qtag, t, plan):
        nq = queries.shape[0]
        per_query = max(1.0, plan.candidates + sum(
            ball_size(self.prefix[p.table], p.radius) for p in plan.probes))
        batch = int(max(1, min(nq, CAND_PER_BATCH // per_query)))
        data = word_view(codes)
        qdata = word_view(np.ascontiguousarray(queries))
        out_q, out_p, out_d = [], [], []
        for lo in range(0, nq, batch):
            hi = min(nq, lo + batch)
            qs, ps, ds = [], [], []
            for j, probe in enumerate(plan.probes):
                q, p, d = self._probe_table(probe, qpre[lo:hi, j], qtag[lo:hi, j], data,
                                            qdata[lo:hi], t)
                qs.append(q + lo)
                ps.append(p)
                ds.append(d)
            q = np.concatenate(qs)
            p = np.concatenate(ps)
            d = np.concatenate(ds)
            # The same code may be found through several tables: keep it once.
            _, first = np.unique(q * self.n + p, return_index=True)
            out_q.append(q[first])
            out_p.append(p[first])
            out_d.append(d[first])
        if not out_q:
            e = np.empty(0, dtype=np.int64)
            return e, e.copy(), np.empty(0, dtype=np.int32)
        return np.concatenate(out_q), np.concatenate(out_p), np.concatenate(out_d)

    def _probe_table(self, probe, qpre, qtag, data, qdata, t):
        tb = probe.table
        masks = flip_masks(self.prefix[tb], probe.radius)
        mpc = np.bitwise_count(masks).astype(np.int64)
        off = self.table_offsets(tb)
        keys = (qpre[:, None] ^ masks[None, :].astype(np.int64)).ravel()
        lo = off[keys]
        cnt = off[keys + 1] - lo
        hit = np.flatnonzero(cnt)
        cnt = cnt[hit]
        total = int(cnt.sum(dtype=np.int64))
        e = np.empty(0, dtype=np.int64)
        if total == 0:
            return e, e.copy(), np.empty(0, dtype=np.int32)
        lo = lo[hit].astype(np.int64)
        qi = hit // masks.size
        rem = probe.radius - mpc[hit % masks.size]
        # Expand the bucket ranges [lo, lo + cnt) into one flat index array.
        ends = np.cumsum(cnt, dtype=np.int64)
        idx = np.arange(total, dtype=np.int64) + np.repeat(lo - (ends - cnt), cnt)
        ent = self.entries[tb][idx].astype(np.int64)
        qrep = np.repeat(qi, cnt)
        ok = np.bitwise_count((ent >> self.pbits) ^ qtag[qrep]) <= np.repeat(rem, cnt)
        pos = ent[ok] & ((1 << self.pbits) - 1)
        qrep = qrep[ok]
        dist = popcount_rows(data[pos] ^ qdata[qrep])
        keep = np.flatnonzero(dist <= t)
        return qrep[keep], pos[keep], dist[keep]


@dataclass(frozen=True, eq=False)
class ProbeArrays:
    """A plan as the kernels take it: per probe, the part's bit range (``starts``,
    ``widths``), its tag width (``shifts``), table and radius; and the prefix flip masks of
    every probe, concatenated (probe ``j``'s are ``masks[mask_lims[j]:mask_lims[j+1]]``,
    ``mask_pc`` their bit counts)."""

    starts: np.ndarray
    widths: np.ndarray
    shifts: np.ndarray
    tables: np.ndarray
    radii: np.ndarray
    masks: np.ndarray
    mask_pc: np.ndarray
    mask_lims: np.ndarray

    @classmethod
    def make(cls, plan: SearchPlan, starts: tuple[int, ...], widths: tuple[int, ...],
             prefix: tuple[int, ...]) -> ProbeArrays:
        tables = [p.table for p in plan.probes]
        masks = [flip_masks(prefix[p.table], p.radius) for p in plan.probes]
        lims = np.zeros(len(masks) + 1, dtype=np.int64)
        np.cumsum([m.size for m in masks], out=lims[1:])
        allm = np.concatenate(masks) if masks else np.zeros(0, dtype=np.uint32)

        def ints(values: list[int]) -> np.ndarray:
            return np.array(values, dtype=np.int64).reshape(-1)

        return cls(starts=ints([starts[i] for i in tables]),
                   widths=ints([widths[i] for i in tables]),
                   shifts=ints([widths[i] - prefix[i] for i in tables]),
                   tables=ints(tables), radii=ints([p.radius for p in plan.probes]),
                   masks=allm, mask_pc=np.bitwise_count(allm).astype(np.int64),
                   mask_lims=lims)


USE_KERNEL = True
"""Use the compiled kernel (numba) when it is installed; tests flip this to cover both."""


def _kernel(name: str = "range_kernel"):
    if not USE_KERNEL:
        return None
    try:
        from . import _mih_kernel
    except ImportError:  # numba not installed: the numpy path is exact too, only slower
        return None
    return getattr(_mih_kernel, name)


def pad64(codes: np.ndarray) -> np.ndarray:
    """``(n, nbytes <= 8)`` uint8 codes as ``(n, 1)`` uint64, zero-padded."""
    if codes.shape[1] == 8:
        return np.ascontiguousarray(codes).view(np.uint64)
    out = np.zeros((codes.shape[0], 8), dtype=np.uint8)
    out[:, :codes.shape[1]] = codes
    return out.view(np.uint64)
