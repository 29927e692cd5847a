"""RobustIndex: find edited copies that whole-image hashes miss (crops, padding, frames,
caption bands, rotate+zoom, screenshots, mirror+crop).

A query runs a two-stage cascade (docs/robust.md has the measurements behind it):

1. **Global**: PDQ of the whole query and of its content boxes (borders, padding, caption
   bands and screenshot chrome trimmed: :mod:`hashlib_ext.trim`), each in its 8
   rotations/flips, searched exactly in a :class:`~hashlib_ext.index.HashIndex` of the
   indexed images' PDQ codes (whole image and content boxes). Easy copies (recompressed,
   resized, recoloured, mirrored, turned, padded) stop here at the cost of a PDQ query.
2. **Local**, only when stage 1 finds nothing: ORB keypoints of the query (its frame, the
   mirror image, each content box) vote for indexed images through binary words
   (:mod:`hashlib_ext.wordindex`); the best few candidates are verified geometrically
   (:mod:`hashlib_ext.verify`: one-to-one matches, RANSAC similarity, score = distinct
   grid cells covered by consistent matches).

Each match is ``(id, score, stage)``: stage 1 scores ``256 - PDQ distance``; stage 2 the
verified cell count of the first query feature set (best-voting first) that reaches the
operating point, or the best of them when none does. The default operating points
(:data:`PDQ_THRESHOLD`, :data:`MIN_SCORE`) keep the modelled per-pair false-match rate of
each stage far below 5e-10 on COCO's distinct pairs (docs/robust.md has the fits), with
margin for what those pairs do not show: two photos sharing a large pasted sticker.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from . import container, verify
from .describe_batch import describe_images, input_id
from .descriptor import (
    INDEX_THUMB,
    MIN_QUALITY,
    Descriptor,
    FeatureSet,
    describe_global,
    with_local,
)
from .errors import IndexFileError
from .imageio import load
from .index import AUTO_MIH_MIN, HashIndex
from .rwlock import RWLock
from .wordindex import WORD_BITS, WordIndex, word_keys

PDQ_THRESHOLD = 31
"""Stage 1: largest PDQ distance (of 256 bits) between any query code and any indexed code
of an image that counts as a copy."""
MIN_SCORE = 12
"""Stage 2: smallest verified score (distinct grid cells of consistent matches)."""
CANDIDATES = 10
"""Stage 2 verifies this many of the best-voted images."""
MIN_VOTES = 3
"""Images with fewer word votes are not verified."""
SMALL_SCAN = AUTO_MIH_MIN
"""Below this many stored PDQ codes stage 1 scans them in one thread
(:func:`hashlib_ext.verify.within`); from here on the HashIndex answers (multi-index
hashing tables from 30k codes)."""

FORMAT = "hashlib_ext.RobustIndex"
VERSION = 1
_XY_SCALE = 16  # keypoint positions stored in 1/16 px (uint16: frames up to 4095 px)
_INT64_MAX = (1 << 63) - 1
_NDIM = {"ids": 1, "key_offsets": 1, "key_data": 1, "sizes": 2, "thumbs": 3, "pdq": 2,
         "pdq_owner": 1, "quality": 1, "kp_offsets": 1, "kp_xy": 2, "kp_desc": 2}
_SECTIONS = {"ids": "<i8", "key_offsets": "<i8", "key_data": "u1", "sizes": "<u2",
             "thumbs": "u1",
             "pdq": "u1", "pdq_owner": "<u4", "quality": "<u2", "kp_offsets": "<i8",
             "kp_xy": "<u2", "kp_desc": "u1"}


class RobustMatch(NamedTuple):
    """One match: the indexed image's id, its score, and the stage (1 or 2) that found it."""

    id: int
    score: int
    stage: int


@dataclass
class AddResult:
    """What :meth:`RobustIndex.add` returns: the ids given to the images that were added,
    and ``(input, error type, message)`` for every input that failed (the batch goes on)."""

    ids: np.ndarray
    errors: list[tuple[Any, str, str]]


class RobustIndex:
    """Robust copy detection over a growing collection of images (see the module doc).

    Thread-safe: matches run concurrently (the compiled kernels release the GIL); ``add``
    and ``save`` wait for them and run alone."""

    def __init__(self, *, pdq_threshold: int = PDQ_THRESHOLD, min_score: int = MIN_SCORE):
        self.pdq_threshold = _threshold(pdq_threshold, 256, "pdq_threshold")
        self.min_score = _threshold(min_score, 1 << 20, "min_score")
        self._global = HashIndex("pdq")
        self._words = WordIndex()
        self._ids: list[int] = []
        self._pos: dict[int, int] = {}
        self._keys: list[str | None] = []
        self._sizes = _Grow((2,), np.uint16)
        self._thumbs = _Grow((INDEX_THUMB, INDEX_THUMB), np.uint8)
        self._kp_off = _Grow((), np.int64)
        self._kp_off.extend(np.zeros(1, np.int64))
        self._xy = _Grow((2,), np.float32)
        self._desc = _Grow((32,), np.uint8)
        self._pdq = _Grow((32,), np.uint8)
        self._pdq_owner = _Grow((), np.uint32)
        self._quality = _Grow((), np.uint16)
        self._next_id = 0
        self._lock = RWLock()

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"RobustIndex(n={len(self)}, pdq_threshold={self.pdq_threshold}, " \
               f"min_score={self.min_score})"

    @property
    def nbytes(self) -> int:
        """Memory held by the stored codes, keypoints and postings."""
        parts = (self._sizes, self._thumbs, self._kp_off, self._xy, self._desc, self._pdq,
                 self._pdq_owner, self._quality)
        return int(self._global.nbytes + self._words.nbytes + sum(g.nbytes for g in parts))

    @property
    def ids(self) -> np.ndarray:
        """The ids of the indexed images, in the order they were added."""
        return np.array(self._ids, np.int64)

    def keys(self, ids: Iterable[int]) -> list[str | None]:
        """The keys given with ``ids`` (None where none was given or the id is unknown)."""
        return [self._keys[self._pos[i]] if i in self._pos else None for i in ids]

    # -- adding ---------------------------------------------------------------------------
    def add(self, srcs: Iterable[Any], ids: Sequence[int] | np.ndarray | None = None,
            keys: Sequence[str | None] | None = None, *, workers: int | None = 1,
            progress: bool = False) -> AddResult:
        """Describe and add images. ``srcs``: anything :func:`hashlib_ext.load` takes, or
        :class:`~hashlib_ext.descriptor.Descriptor` objects from :func:`hashlib_ext.describe`.
        ``ids`` default to consecutive integers continuing from the last; ``keys`` are
        optional strings stored with them. An input that fails is reported in the result's
        ``errors`` (the others are added). ``workers`` > 1 describes in that many processes,
        None in one per CPU (:func:`hashlib_ext.describe_batch.describe_images`)."""
        srcs = list(srcs)
        if ids is not None and len(ids) != len(srcs):
            raise ValueError(f"{len(ids)} ids for {len(srcs)} images")
        if keys is not None and len(keys) != len(srcs):
            raise ValueError(f"{len(keys)} keys for {len(srcs)} images")
        if ids is not None:
            ids = [_int64(i) for i in ids]
            clash = set(ids) & self._pos.keys()
            if clash or len(set(ids)) != len(ids):
                raise ValueError(f"ids already indexed or repeated: {sorted(clash)[:5]}")
        elif self._next_id + len(srcs) - 1 > _INT64_MAX:  # the last id given must fit
            raise ValueError("automatic ids would pass 2**63 - 1: give ids=")
        if keys is not None:
            keys = [_key(k) for k in keys]
        added: list[int] = []
        errors: list[tuple[Any, str, str]] = []
        batch: list[Descriptor] = []
        batch_keys: list[str | None] = []
        raw = [i for i, s in enumerate(srcs) if not isinstance(s, Descriptor)]
        described = describe_images([srcs[i] for i in raw], workers=workers, progress=progress)
        done: dict[int, Descriptor | tuple[Any, str, str]] = {
            raw[p]: d for p, d in zip(described.positions, described.descriptors, strict=True)}
        for p, (_, kind, msg) in zip(sorted(set(range(len(raw))) - set(described.positions)),
                                     described.errors, strict=True):
            done[raw[p]] = (input_id(srcs[raw[p]], raw[p]), kind, msg)
        for i, src in enumerate(srcs):
            got = src if isinstance(src, Descriptor) else done[i]
            if not isinstance(got, Descriptor):
                errors.append(got)
                continue
            d = got
            if d.query or len(d.local) != 1:
                raise TypeError("add() takes index-side descriptors: describe(src) without "
                                "query=True")
            batch.append(d)
            batch_keys.append(None if keys is None else keys[i])
            added.append(-1 if ids is None else ids[i])
        with self._lock.write():
            if ids is None:
                added = list(range(self._next_id, self._next_id + len(batch)))
            self._append(batch, added, batch_keys)
        return AddResult(np.array(added, np.int64), errors)

    def _append(self, ds: Sequence[Descriptor], idents: Sequence[int],
                keys: Sequence[str | None]) -> None:
        n0 = len(self._ids)
        for k, (d, ident, key) in enumerate(zip(ds, idents, keys, strict=True)):
            local = d.local[0]
            self._pos[ident] = n0 + k
            self._ids.append(ident)
            self._keys.append(key)
            self._sizes.extend(np.array([local.size], np.uint16))
            self._thumbs.extend(local.thumb[None])
            self._xy.extend(np.asarray(local.xy, np.float32))
            self._desc.extend(np.asarray(local.desc, np.uint8))
            self._kp_off.extend(np.array([len(self._desc)], np.int64))
            self._pdq.extend(d.pdq[:, 0, :])
            self._pdq_owner.extend(np.full(len(d.pdq), n0 + k, np.uint32))
            self._quality.extend(d.quality.astype(np.uint16))
            self._next_id = max(self._next_id, ident + 1)
        if ds:
            self._index(n0)

    def _index(self, n0: int) -> None:
        """Post the search structures of images ``n0..`` (stored already)."""
        first_code = int(np.searchsorted(self._pdq_owner.view(), n0))
        codes, owner = self._pdq.view()[first_code:], self._pdq_owner.view()[first_code:]
        good = self._quality.view()[first_code:] >= MIN_QUALITY
        if good.any():
            self._global.add(codes[good], ids=owner[good].astype(np.int64))
        off = self._kp_off.view()
        lo = int(off[n0])
        counts = np.diff(off[n0:])
        self._words.add(word_keys(self._desc.view()[lo:]),
                        np.repeat(np.arange(n0, len(self._ids), dtype=np.uint32), counts))

    # -- matching -------------------------------------------------------------------------
    def match(self, src: Any, *, min_score: int | None = None,
              pdq_threshold: int | None = None,
              exclude: Iterable[int] = ()) -> list[RobustMatch]:
        """Every indexed image judged a copy of ``src``, best first, as
        ``(id, score, stage)``. ``min_score`` / ``pdq_threshold`` move the operating points
        of stage 2 / stage 1 (defaults: the index's). ``src`` is anything
        :func:`hashlib_ext.load` takes or a :class:`Descriptor` (query-side descriptors
        use every variant; index-side ones only the whole image). Ids in ``exclude`` are
        never returned, nor do they stop the cascade after stage 1 (for a collection
        matched against itself, exclude the query's own id)."""
        with self._lock.read():
            return self._match(src, min_score, pdq_threshold, exclude)

    def _match(self, src: Any, min_score: int | None, pdq_threshold: int | None,
               exclude: Iterable[int]) -> list[RobustMatch]:
        skip = {int(i) for i in exclude}
        t1 = self.pdq_threshold if pdq_threshold is None else \
            _threshold(pdq_threshold, 256, "pdq_threshold")
        s2 = self.min_score if min_score is None else _threshold(min_score, 1 << 20, "min_score")
        image = None
        if isinstance(src, Descriptor):
            d = src
        else:
            image = load(src)
            d = describe_global(image, query=True)
        found = [m for m in self._stage1(d, t1) if m.id not in skip]
        if found:
            return found
        if not d.local and image is not None:
            d = with_local(d, image)
        return [m for m in self._stage2(d, max(1, s2), len(skip)) if m.id not in skip]

    def _stage1(self, d: Descriptor, t: int) -> list[RobustMatch]:
        if not len(self._global):
            return []
        codes = d.pdq[d.quality >= MIN_QUALITY].reshape(-1, d.pdq.shape[-1])
        if not len(codes):
            return []
        best: dict[int, int] = {}
        pairs: Iterable[tuple[int, int]]
        if len(self._global) < SMALL_SCAN:
            good = self._quality.view() >= MIN_QUALITY
            _, rows, dists = verify.within(codes, self._pdq.view()[good], t)
            pairs = zip(self._pdq_owner.view()[good][rows].tolist(), dists.tolist(), strict=True)
        else:
            pairs = ((n, d) for hits in self._global.search(codes, t) for n, d in hits)
        for n, dist in pairs:
            if dist < best.get(n, 1 << 30):
                best[n] = dist
        out = [RobustMatch(self._ids[n], 256 - dist, 1) for n, dist in best.items()]
        return sorted(out, key=lambda m: (-m.score, m.id))

    def _stage2(self, d: Descriptor, min_score: int, spare: int = 0) -> list[RobustMatch]:
        sets = [s for s in d.local if len(s)]
        if not sets or not len(self._ids):
            return []
        cands, votes = self._words.top([s.desc for s in sets], CANDIDATES + spare, MIN_VOTES,
                                       n_images=len(self._ids))
        out = []
        for n, v in zip(cands.tolist(), votes, strict=True):
            best = 0
            for j in np.argsort(-v, kind="stable").tolist():  # best-voting set first
                if v[j] < MIN_VOTES and best:
                    break
                best = max(best, self._verify(sets[j], n))
                if best >= min_score:
                    break
            if best >= min_score:
                out.append(RobustMatch(self._ids[n], best, 2))
        return sorted(out, key=lambda m: (-m.score, m.id))

    def _verify(self, q: FeatureSet, n: int, gated: bool = True) -> int:
        off = self._kp_off.view()
        lo, hi = int(off[n]), int(off[n + 1])
        w, h = self._sizes.view()[n].tolist()
        return verify.score(q.xy, q.desc, q.size, q.thumb, self._xy.view()[lo:hi],
                            self._desc.view()[lo:hi], (w, h), self._thumbs.view()[n],
                            gated=gated)

    def pair_score(self, query: Descriptor, n: int, gated: bool = True) -> int:
        """The stage-2 score of a query descriptor against the ``n``-th indexed image
        (storage position), without retrieval: for measuring score distributions.
        ``gated=False``: the raw cell count without the copy tests (an upper bound)."""
        return max((self._verify(s, n, gated) for s in query.local if len(s)), default=0)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to one checksummed file, atomically (see
        :mod:`hashlib_ext.container`)."""
        with self._lock.read():
            self._save(path)

    def _save(self, path: str | os.PathLike[str]) -> None:
        key_off, key_data = container.pack_strings(self._keys)
        arrays = {
            "ids": np.array(self._ids, "<i8"),
            "key_offsets": key_off, "key_data": key_data,
            "sizes": self._sizes.view(), "thumbs": self._thumbs.view(),
            "pdq": self._pdq.view(),
            "pdq_owner": self._pdq_owner.view(), "quality": self._quality.view(),
            "kp_offsets": self._kp_off.view(),
            "kp_xy": np.rint(self._xy.view() * _XY_SCALE).astype("<u2"),
            "kp_desc": self._desc.view(),
        }
        # After id 2**63 - 1 the next automatic id does not fit int64; the file says 2**63 - 1
        # and loading derives the rest from the ids (no automatic id is left to give).
        meta = {"count": len(self._ids), "next_id": min(self._next_id, _INT64_MAX),
                "word_bits": list(self._words.bits), "pdq_threshold": self.pdq_threshold,
                "min_score": self.min_score, "xy_scale": _XY_SCALE}
        container.remove_stale_temps(path)
        container.write(path, FORMAT, VERSION, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RobustIndex:
        """Read a file written by :meth:`save`; anything malformed raises
        :class:`~hashlib_ext.errors.IndexFileError`."""
        path = os.fspath(path)
        _, meta, a = container.read(path, FORMAT, VERSION, _SECTIONS)
        container.remove_stale_temps(path)

        def bad(msg: str) -> IndexFileError:
            return IndexFileError(f"{path}: {msg}")

        raw = {k: meta.get(k) for k in ("count", "pdq_threshold", "min_score", "next_id",
                                         "xy_scale")}
        bits = meta.get("word_bits")
        if any(type(v) is not int for v in raw.values()) or not isinstance(bits, list) \
                or any(type(b) is not int for b in bits):
            raise bad("corrupt header (missing or invalid fields)")
        fields: dict[str, int] = {k: int(v) for k, v in raw.items() if isinstance(v, int)}
        n, next_id = fields["count"], fields["next_id"]
        if set(a) != set(_SECTIONS) or fields["xy_scale"] != _XY_SCALE or \
                len(bits) != len(WORD_BITS) or len(set(bits)) != len(bits) or \
                any(not 0 <= b < 256 for b in bits) or not 0 <= n <= _INT64_MAX or \
                not 0 <= next_id <= _INT64_MAX or not 0 <= fields["pdq_threshold"] <= 256 \
                or not 0 <= fields["min_score"] <= 1 << 20:
            raise bad("corrupt header (sections or parameters)")
        idx = cls(pdq_threshold=fields["pdq_threshold"], min_score=fields["min_score"])
        _check_layout(a, n, bad)
        keys = container.unpack_strings(a["key_offsets"], a["key_data"], bad)
        if len(keys) != n:
            raise bad("keys do not match the count")
        idx._words = WordIndex(tuple(bits))
        idx._ids = a["ids"].tolist()
        idx._pos = {i: p for p, i in enumerate(idx._ids)}
        idx._keys = keys
        idx._sizes.extend(a["sizes"])
        idx._thumbs.extend(a["thumbs"])
        idx._kp_off = _Grow((), np.int64)
        idx._kp_off.extend(a["kp_offsets"] if n else np.zeros(1, np.int64))
        idx._xy.extend(a["kp_xy"].astype(np.float32) / _XY_SCALE)
        idx._desc.extend(a["kp_desc"])
        idx._pdq.extend(a["pdq"])
        idx._pdq_owner.extend(a["pdq_owner"])
        idx._quality.extend(a["quality"])
        idx._next_id = max(next_id, max(idx._ids, default=-1) + 1)
        idx._index(0)
        return idx


class _Grow:
    """An append-only array with amortised O(1) appends (capacity doubles)."""

    def __init__(self, shape: tuple[int, ...], dtype: Any):
        self._buf = np.zeros((16, *shape), dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return int(self.view().nbytes)

    def extend(self, rows: np.ndarray) -> None:
        need = self._n + len(rows)
        if need > len(self._buf):
            grown = np.zeros((max(need, 2 * len(self._buf)), *self._buf.shape[1:]),
                             self._buf.dtype)
            grown[:self._n] = self._buf[:self._n]
            self._buf = grown
        self._buf[self._n:need] = rows
        self._n = need

    def view(self) -> np.ndarray:
        return self._buf[:self._n]


def _threshold(value: Any, hi: int, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not 0 <= int(value) <= hi:
        raise ValueError(f"{name} must be an integer in 0..{hi}, got {value!r}")
    return int(value)


def _int64(i: Any) -> int:
    """An id: an integer (Python or numpy, not bool) within int64."""
    if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
        raise TypeError(f"ids must be integers, got {i!r}")
    if not -_INT64_MAX - 1 <= int(i) <= _INT64_MAX:
        raise ValueError(f"id {i} is outside int64")
    return int(i)


def _key(k: Any) -> str | None:
    """A key: None, text, or a path (decoded as the OS does, surrogates kept)."""
    if k is None or isinstance(k, str):
        return k
    if isinstance(k, os.PathLike):
        return os.fsdecode(k)
    raise TypeError(f"keys must be text, paths or None, got {type(k).__name__}")


def _check_layout(a: dict[str, np.ndarray], n: int, bad: Any) -> None:
    """Refuse arrays whose shapes or offsets do not fit together (before any use)."""
    from .features import FRAME_SIDE

    if any(a[k].ndim != nd for k, nd in _NDIM.items()):
        raise bad("sections of the wrong rank")
    off, owner = a["kp_offsets"], a["pdq_owner"]
    total = len(a["kp_desc"])
    if a["ids"].shape != (n,) or a["sizes"].shape != (n, 2) or off.shape != (n + 1,) or \
            a["thumbs"].shape != (n, INDEX_THUMB, INDEX_THUMB) or \
            a["kp_desc"].ndim != 2 or a["kp_desc"].shape[1:] != (32,) or \
            a["kp_xy"].shape != (total, 2) or a["pdq"].ndim != 2 or \
            a["pdq"].shape[1:] != (32,) or owner.shape != (len(a["pdq"]),) or \
            a["quality"].shape != owner.shape:
        raise bad("sections do not match the count")
    if off[0] != 0 or off[-1] != total or np.any(np.diff(off) < 0):
        raise bad("corrupt keypoint offsets")
    if len(owner) and (np.any(np.diff(owner.astype(np.int64)) < 0) or int(owner[-1]) >= n):
        raise bad("corrupt PDQ owners")
    if np.any(a["quality"] > 100) or len(np.unique(a["ids"])) != n:
        raise bad("corrupt qualities or repeated ids")
    sizes = a["sizes"].astype(np.int64)
    if n and (sizes.min() < 1 or np.any(sizes.max(axis=1) != FRAME_SIDE)):
        raise bad("corrupt frame sizes")
    xy = a["kp_xy"].astype(np.int64)
    owner_kp = np.repeat(np.arange(n), np.diff(off))
    if total and (np.any(xy[:, 0] > sizes[owner_kp, 0] * _XY_SCALE)
                  or np.any(xy[:, 1] > sizes[owner_kp, 1] * _XY_SCALE)):
        raise bad("keypoints outside their frames")


def _cat(parts: list[np.ndarray], empty: tuple[int, ...], dtype: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(empty, dtype)
