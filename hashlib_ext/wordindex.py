"""Candidate retrieval for local features: binary words, posting lists and votes.

Each 256-bit ORB descriptor is reduced to a *word*: :data:`WORD_BITS` of its bits, chosen
once for balance and low correlation (bit-sampling locality-sensitive hashing, which needs
no trained vocabulary). Two descriptors of the same point differ in about 7% of their bits,
so they share a word ~20% of the time; a query also probes every word at Hamming distance
1 from its own (multi-probe), which raises that to ~50%, while unrelated descriptors
collide about once in millions. An image is retrieved by *votes*: the number of query
descriptors with a probe that hits one of its postings (a descriptor votes once per image,
however many of its probes hit: repeated texture does not pile up votes), counted by a
compiled loop. Only the best few candidates are then verified geometrically
(:mod:`hashlib_ext.verify`).

Postings are kept as sorted runs (word, image) in a few segments that merge like a binary
counter, so adding images one by one costs amortised O(log n) per posting. A query finds a
probe's run by binary search in small segments and through a word -> offset table in large
ones (:data:`TABLE_MIN`).
"""

from __future__ import annotations

import numba
import numpy as np

WORD_BITS = (3, 236, 153, 21, 30, 73, 65, 74, 220, 16, 217, 230, 245, 247, 152, 210, 17, 23,
             61, 190, 159, 84, 179, 12)
"""Descriptor bit positions (``np.unpackbits`` order) forming a word: the most balanced
ORB bits whose pairwise correlation stays below 0.25, picked greedily on the 200
strongest descriptors of each of the 128 COCO train2017 sample images."""
TABLE_MIN = 1 << 22
"""Segments with this many postings get a word -> offset table (``2**24 + 1`` uint32,
64 MiB): a probe's run is then two reads instead of two binary searches."""
MAX_POSTING = 5000
"""Words posted by more images than this are not voted on (too common to tell images
apart, and costly to read)."""


def word_keys(desc: np.ndarray, bits: tuple[int, ...] = WORD_BITS) -> np.ndarray:
    """``(k,)`` uint32 words of ``(k, 32)`` uint8 descriptors."""
    desc = np.asarray(desc, np.uint8)
    out = np.zeros(len(desc), np.uint32)
    for i, b in enumerate(bits):
        bit = (desc[:, b >> 3] >> np.uint8(7 - (b & 7))) & np.uint8(1)
        out |= bit.astype(np.uint32) << np.uint32(i)
    return out


def probes(keys: np.ndarray, nbits: int) -> np.ndarray:
    """``(k, nbits + 1)`` words: each key and its neighbours at Hamming distance 1."""
    flips = np.concatenate([[0], np.uint32(1) << np.arange(nbits, dtype=np.uint32)])
    return keys[:, None] ^ flips.astype(np.uint32)[None, :]


class WordIndex:
    """Posting lists word -> image numbers, with vote-based retrieval."""

    def __init__(self, bits: tuple[int, ...] = WORD_BITS):
        self.bits = tuple(int(b) for b in bits)
        self._segments: list[tuple[np.ndarray, np.ndarray]] = []
        self._tables: dict[int, np.ndarray] = {}  # id(keys) -> word offsets, large segments

    def __len__(self) -> int:
        return sum(len(k) for k, _ in self._segments)

    @property
    def nbytes(self) -> int:
        live = {id(k) for k, _ in self._segments}
        return sum(k.nbytes + o.nbytes for k, o in self._segments) + sum(
            t.nbytes for i, t in self._tables.items() if i in live)

    def add(self, keys: np.ndarray, owners: np.ndarray) -> None:
        """Post words ``keys`` (uint32) for image numbers ``owners`` (uint32)."""
        if len(keys) == 0:
            return
        self._segments.append(_sorted(keys.astype(np.uint32), owners.astype(np.uint32)))
        while len(self._segments) > 1 and \
                len(self._segments[-2][0]) <= 2 * len(self._segments[-1][0]):
            k2, o2 = self._segments.pop()
            k1, o1 = self._segments.pop()
            self._tables.pop(id(k1), None)
            self._tables.pop(id(k2), None)
            self._segments.append(_sorted(np.concatenate([k1, k2]), np.concatenate([o1, o2])))

    def _runs(self, desc: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray,
                                                    np.ndarray]]:
        """Per segment: ``(lo, hi, row, owners)``, the posting run of every probe of the
        query descriptors ``desc`` and the descriptor row it belongs to."""
        nbits = len(self.bits)
        pr = probes(word_keys(desc, self.bits), nbits).ravel()
        row = np.repeat(np.arange(len(desc), dtype=np.int64), nbits + 1)
        out = []
        for keys, owners in self._segments:
            table = self._tables.get(id(keys))
            if table is None and len(keys) >= TABLE_MIN and nbits <= 24:
                table = self._tables[id(keys)] = _offsets(keys, nbits)
            if table is not None:
                lo, hi = table[pr].astype(np.int64), table[pr + 1].astype(np.int64)
            else:
                lo = np.searchsorted(keys, pr, "left")
                hi = np.searchsorted(keys, pr, "right")
            out.append((lo, hi, row, owners))
        return out

    def votes(self, desc: np.ndarray, n_images: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """``(images, counts)``: every image that at least one query descriptor of ``desc``
        reaches through a probe, and the number of descriptors that reach it (each counts
        once per image, however many of its probes hit)."""
        images, table = self._count([desc], n_images)
        return images, table[:, 0]

    def top(self, desc_sets: list[np.ndarray], k: int, min_votes: int = 1,
            n_images: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` images with most votes summed over the query's descriptor sets (at
        least ``min_votes``), most first: ``(images, per_set)`` with ``per_set[i, j]`` the
        votes of set ``j`` for ``images[i]``."""
        images, table = self._count(desc_sets, n_images)
        total = table.sum(axis=1)
        keep = np.flatnonzero(total >= min_votes)
        if len(keep) > k:
            keep = keep[np.argpartition(-total[keep], k - 1)[:k]]
        keep = keep[np.lexsort((images[keep], -total[keep]))]
        return images[keep], table[keep]

    def _count(self, desc_sets: list[np.ndarray], n_images: int | None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Every image voted for, and its votes per set (compiled; counters per call, so
        concurrent queries share nothing)."""
        n = n_images if n_images is not None else 1 + max(
            (int(o.max()) for _, o in self._segments if len(o)), default=-1)
        counts = np.zeros((max(n, 1), max(len(desc_sets), 1)), np.int32)
        last = np.full(max(n, 1), -1, np.int64)
        touched = np.empty(0, np.int64)
        parts = []
        for j, desc in enumerate(desc_sets):
            if len(desc) == 0:
                continue
            last[:] = -1
            for lo, hi, row, owners in self._runs(np.asarray(desc, np.uint8)):
                found = np.empty(int(np.minimum(hi - lo, MAX_POSTING).sum()) + 1, np.int64)
                m = _vote(lo, hi, row, owners, MAX_POSTING, counts, j, last, found)
                parts.append(found[:m])
        if parts:  # distinct images voted for: sort and drop repeats (cheaper than unique)
            touched = np.concatenate(parts)
            touched.sort()
            if len(touched):
                touched = touched[np.concatenate(([True], touched[1:] != touched[:-1]))]
        return touched, counts[touched].astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _vote(lo: np.ndarray, hi: np.ndarray, row: np.ndarray, owners: np.ndarray, cap: int,
          counts: np.ndarray, j: int, last: np.ndarray, found: np.ndarray) -> int:
    """Add one vote of set ``j`` per (query descriptor, image) over the posting runs
    ``lo[p]:hi[p]`` (runs longer than ``cap`` skipped); images voted for first in this call
    are written to ``found``; returns how many. Probes of one descriptor are consecutive,
    so ``last[image]`` (the descriptor that last voted for it) makes each count once."""
    m = 0
    for p in range(lo.shape[0]):
        a, b = lo[p], hi[p]
        if b - a > cap:
            continue
        r = row[p]
        for i in range(a, b):
            o = owners[i]
            if last[o] != r:
                last[o] = r
                if counts[o, j] == 0:
                    found[m] = o
                    m += 1
                counts[o, j] += 1
    return m


def _offsets(keys: np.ndarray, nbits: int) -> np.ndarray:
    """``off[w]:off[w + 1]`` is the run of word ``w`` in the sorted ``keys``."""
    counts = np.zeros(1 << nbits, np.int64)
    for i in range(0, len(keys), 1 << 24):  # bincount widens its input: go in chunks
        counts += np.bincount(keys[i:i + (1 << 24)], minlength=1 << nbits)
    off = np.zeros((1 << nbits) + 1, np.uint32 if len(keys) < 1 << 32 else np.int64)
    np.cumsum(counts, out=off[1:])
    return off


def _sorted(keys: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    return keys[order], owners[order]
