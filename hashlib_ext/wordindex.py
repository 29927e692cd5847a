"""Candidate retrieval for local features: binary words, posting lists and votes.

Each 256-bit ORB descriptor is reduced to a *word*: :data:`WORD_BITS` of its bits, chosen
once for balance and low correlation (bit-sampling locality-sensitive hashing, which needs
no trained vocabulary). Two descriptors of the same point differ in about 7% of their bits,
so they share a word ~20% of the time; a query also probes every word at Hamming distance
1 from its own (multi-probe), which raises that to ~50%, while unrelated descriptors
collide about once in millions. An image is retrieved by *votes*: the number of query
probes that hit one of its postings. Only the best few candidates are then
verified geometrically (:mod:`hashlib_ext.verify`).

Postings are kept as sorted runs (word, image) in a few segments that merge like a binary
counter, so adding images one by one costs amortised O(log n) per posting and a query does
one binary search per probe per segment.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = (3, 236, 153, 21, 30, 73, 65, 74, 220, 16, 217, 230, 245, 247, 152, 210, 17, 23,
             61, 190, 159, 84, 179, 12)
"""Descriptor bit positions (``np.unpackbits`` order) forming a word: the most balanced
ORB bits whose pairwise correlation stays below 0.25, picked greedily on the 200
strongest descriptors of each of the 128 COCO train2017 sample images."""
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

    def __len__(self) -> int:
        return sum(len(k) for k, _ in self._segments)

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + o.nbytes for k, o in self._segments)

    def add(self, keys: np.ndarray, owners: np.ndarray) -> None:
        """Post words ``keys`` (uint32) for image numbers ``owners`` (uint32)."""
        if len(keys) == 0:
            return
        self._segments.append(_sorted(keys.astype(np.uint32), owners.astype(np.uint32)))
        while len(self._segments) > 1 and \
                len(self._segments[-2][0]) <= 2 * len(self._segments[-1][0]):
            k2, o2 = self._segments.pop()
            k1, o1 = self._segments.pop()
            self._segments.append(_sorted(np.concatenate([k1, k2]), np.concatenate([o1, o2])))

    def postings(self) -> tuple[np.ndarray, np.ndarray]:
        """All postings as one sorted run ``(keys, owners)`` (merges the segments)."""
        if len(self._segments) > 1:
            keys = np.concatenate([k for k, _ in self._segments])
            owners = np.concatenate([o for _, o in self._segments])
            self._segments = [_sorted(keys, owners)]
        if not self._segments:
            return np.zeros(0, np.uint32), np.zeros(0, np.uint32)
        return self._segments[0]

    @classmethod
    def from_postings(cls, keys: np.ndarray, owners: np.ndarray,
                      bits: tuple[int, ...] = WORD_BITS) -> WordIndex:
        """Rebuild from :meth:`postings` output (checked to be sorted)."""
        if keys.shape != owners.shape or keys.ndim != 1:
            raise ValueError("postings: keys and owners differ in shape")
        if len(keys) and np.any(keys[1:] < keys[:-1]):
            raise ValueError("postings: keys are not sorted")
        idx = cls(bits)
        if len(keys):
            idx._segments = [(keys.astype(np.uint32), owners.astype(np.uint32))]
        return idx

    def votes(self, desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(images, counts)``: every image with at least one probe hit from the query
        descriptors ``desc``, and its number of hits."""
        if len(desc) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        pr = probes(word_keys(desc, self.bits), len(self.bits)).ravel()
        hits = []
        for keys, owners in self._segments:
            lo = np.searchsorted(keys, pr, "left")
            n = np.searchsorted(keys, pr, "right") - lo
            keep = (n > 0) & (n <= MAX_POSTING)
            lo, n = lo[keep], n[keep]
            if len(n):
                starts = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
                hits.append(owners[starts])
        if not hits:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        images, counts = np.unique(np.concatenate(hits), return_counts=True)
        return images.astype(np.int64), counts.astype(np.int64)

    def top(self, desc_sets: list[np.ndarray], k: int, min_votes: int = 1
            ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` images with most votes summed over the query's descriptor sets (at
        least ``min_votes``), most first: ``(images, per_set)`` with ``per_set[i, j]`` the
        votes of set ``j`` for ``images[i]``."""
        per = [self.votes(d) for d in desc_sets]
        if not per or not any(len(im) for im, _ in per):
            return np.zeros(0, np.int64), np.zeros((0, len(desc_sets)), np.int64)
        images = np.unique(np.concatenate([im for im, _ in per]))
        table = np.zeros((len(images), len(per)), np.int64)
        for j, (im, c) in enumerate(per):
            table[np.searchsorted(images, im), j] = c
        total = table.sum(axis=1)
        keep = np.flatnonzero(total >= min_votes)
        if len(keep) > k:
            keep = keep[np.argpartition(-total[keep], k - 1)[:k]]
        keep = keep[np.lexsort((images[keep], -total[keep]))]
        return images[keep], table[keep]


def _sorted(keys: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    return keys[order], owners[order]
