"""Scale benchmark for RobustIndex stage 2: memory, build time, query time and retrieval
recall with 10k, 100k and 1M synthetic distractor images beside 256 real COCO photos.

    python benchmarks/robust_scale.py --sizes 10000 100000 1000000 --out results.json
    python benchmarks/robust_scale.py --sizes 100000 1000000 --flip 0.03125 --out heavy.json

What it does (docs/robust-scale.md has the figures and their reading):

1. **Real part** (this process): index-side descriptors of the 256 COCO sample images
   (``../shared/datasets/coco-sample`` beside the checkout, or ``--images``;
   ``datasets/coco-mini`` as the fallback), query-side descriptors of hard edits (crops,
   rotate+zoom, mirror+crop, caption band) of the val2017 images that stage 1 does not
   answer, and a few easy edits that it does. On the real images alone it measures the
   votes every hard query gives the unrelated real photographs (the reference the synthetic
   distractors are checked against), models recall@10 among N real photographs from them,
   and repeats that for other word lengths.
2. **Distractors**: index-side descriptors made from the ORB descriptors of the train2017
   images (disjoint from the queried val2017 images): each distractor copies the 200
   keypoints of a random train image, drawn with replacement, and flips every descriptor bit
   independently with probability ``--flip`` (default 7/32, about 56 of 256 bits: no
   distractor keypoint is a near-duplicate of a real one, while the image-level mix of
   descriptors and, attenuated, their per-bit bias stay), at uniform random positions of a
   640x480 frame, with a random PDQ code of quality 100.
3. **Per size** (a fresh child process each, so memory figures do not mix): build the index
   (distractors first, real images last, so vote ties go against the real image), then
   measure build time, ``RobustIndex.nbytes``, process RSS, the saved file size, stage-2
   query time (median/p90/p99, one thread, CPU and wall) split into stage 1 (a miss),
   retrieval (``WordIndex.top``) and verification, retrieval recall (true image among the
   10 candidates), end-to-end recall and false matches of ``match()`` at the default
   operating point, stage-1-only query time for easy edits, stage 1 on flat and MIH
   indexes, and :class:`ProposedRetrieval` (a faster ``top``) on the same queries.

Every size is built through ``RobustIndex.add`` (lists of Descriptor objects, blocks of
5,000). Above ``--public-max`` (100k) two benchmark-side changes keep a 1M build within
memory (:func:`build`): the index's arrays are sized once instead of doubling, and the
distractors' word postings are sorted once at the end instead of merged block by block.
The index is the same (checked at start-up against plain ``add`` on a small set); plain
``add`` would need several GB more transient memory at 1M (docs/robust-scale.md).
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets" / "coco-sample"
HARD_SPECS = ("crop:side=0.2", "rotzoom:deg=5", "crop:side=0.15+hflip",
              "meme:top=0,bottom=0.2,extend=false", "rotzoom:deg=-10",
              "crop:side=0.25,edge=bottom")
"""Edits that whole-image PDQ mostly misses (queries that stage 2 must answer)."""
EASY_SPECS = ("jpeg:q=50", "resize:scale=0.5")
"""Edits that stage 1 answers (for the stage-1-only query time)."""
FRAME = (640, 480)
KEYPOINTS = 200
BLOCK = 5000
"""Distractors are generated (and added) in blocks of this many images."""
LIBRARY_FILES = ("robust.py", "wordindex.py", "verify.py", "features.py", "descriptor.py",
                 "trim.py", "index.py", "mih.py", "imageio.py")


# -- real images ---------------------------------------------------------------------------

def image_paths(folder: str | None) -> tuple[list[Path], str]:
    """The COCO images to index (train2017 then val2017 when split), and where from."""
    for base in ([Path(folder)] if folder else [SHARED, ROOT / "datasets" / "coco-mini"]):
        paths = sorted(base.rglob("*.jpg"))
        if paths:
            return paths, str(base)
    return [], ""


def _split(p: Path) -> str:
    return "val" if "val2017" in p.parts else "train"


def prepare_real(args: argparse.Namespace) -> dict[str, Any]:
    """Index-side descriptors of every image, hard queries that stage 1 misses, easy
    queries that it answers, describe timings, and the real-pair vote statistics."""
    import cv2

    from hashlib_ext.descriptor import describe
    from hashlib_ext.evaluate.transforms import parse
    from hashlib_ext.imageio import load
    from hashlib_ext.robust import RobustIndex

    cv2.setNumThreads(1)
    paths, source = image_paths(args.images)
    if not paths:
        raise SystemExit("robust_scale: no images found (looked in "
                         f"{SHARED} and {ROOT / 'datasets' / 'coco-mini'}); nothing measured")
    splits = [_split(p) for p in paths]
    if "val" not in splits or "train" not in splits:  # flat folder: halves
        half = len(paths) // 2
        splits = ["train"] * half + ["val"] * (len(paths) - half)
    print(f"real part: {len(paths)} images from {source}", file=sys.stderr)
    describe(paths[0])  # warm-up (imports, kernels)
    t0 = time.perf_counter()
    index = [describe(p) for p in paths]
    index_ms = (time.perf_counter() - t0) / len(paths) * 1e3

    real = RobustIndex()
    real.add(index)
    val = [i for i, s in enumerate(splits) if s == "val"]
    hard: list[dict[str, Any]] = []
    tried = stage1_answered = 0
    q_ms: list[float] = []
    for round_ in range(len(HARD_SPECS)):
        for j, pos in enumerate(val):
            if len(hard) >= args.queries:
                break
            spec = HARD_SPECS[(j + round_) % len(HARD_SPECS)]
            image = parse(spec)(load(paths[pos]), np.random.default_rng([args.seed, pos, 7]))
            t0 = time.perf_counter()
            d = describe(image, query=True)
            q_ms.append((time.perf_counter() - t0) * 1e3)
            tried += 1
            if real._stage1(d, real.pdq_threshold):
                stage1_answered += 1
                continue
            hard.append({"pos": pos, "spec": spec, "desc": d})
        if len(hard) >= args.queries:
            break
    easy = []
    for j, pos in enumerate(val[:args.easy_queries]):
        spec = EASY_SPECS[j % len(EASY_SPECS)]
        image = parse(spec)(load(paths[pos]), np.random.default_rng([args.seed, pos, 8]))
        easy.append({"pos": pos, "spec": spec, "desc": describe(image, query=True)})
    print(f"real part: {len(hard)} hard queries ({stage1_answered} of {tried} edits answered "
          f"by stage 1 were dropped), {len(easy)} easy queries", file=sys.stderr)
    train = [i for i, s in enumerate(splits) if s == "train"]
    return {"source": source, "paths": [str(p) for p in paths], "splits": splits,
            "index": index, "hard": hard, "easy": easy, "train": train,
            "library": _library_state(),
            "describe": {"index_ms_per_image": index_ms,
                         "query_ms_median": float(np.median(q_ms)),
                         "query_ms_p90": float(np.percentile(q_ms, 90)),
                         "hard_edits_tried": tried,
                         "hard_edits_answered_by_stage1": stage1_answered}}


def _fixed(desc: np.ndarray, k: int) -> np.ndarray:
    """Exactly ``k`` rows (repeating rows of images with fewer keypoints)."""
    return desc[np.arange(k) % len(desc)]


# -- synthetic distractors -----------------------------------------------------------------

def flip_mask(rng: np.random.Generator, rows: int, p: float, words: int = 4,
              depth: int = 5) -> np.ndarray:
    """``(rows, 8 * words)`` uint8 masks whose bits are set independently with probability
    ``p`` rounded to a multiple of ``2**-depth`` (built from ``depth`` random words by the
    binary expansion of ``p``: AND for a 0 digit, OR for a 1 digit, least significant first)."""
    q = round(p * (1 << depth))
    if not 0 <= q <= 1 << depth:
        raise ValueError("flip probability must be in [0, 1]")
    if q == 0:
        return np.zeros((rows, 8 * words), np.uint8)
    while q % 2 == 0:  # drop trailing zero digits
        q //= 2
        depth -= 1
    gen = rng.bit_generator
    mask = gen.random_raw(rows * words)  # least significant digit is 1
    for i in range(1, depth):
        r = gen.random_raw(rows * words)
        if (q >> i) & 1:
            np.bitwise_or(mask, r, out=mask)
        else:
            np.bitwise_and(mask, r, out=mask)
    return mask.view(np.uint8).reshape(rows, 8 * words)


class Distractors:
    """Synthetic index-side images, generated block by block from a seed (section 2 of
    the module doc): the same ``(seed, block)`` always gives the same images.

    ``templates`` are real index-side descriptors (train2017): a distractor copies the
    keypoints of one of them (drawn with replacement), with bits flipped, positions and PDQ
    code replaced; every other field (the thumbnail, ...) is the template's, so the
    synthetic images follow whatever layout :class:`Descriptor` has."""

    def __init__(self, templates: Sequence[Any], flip: float, seed: int):
        self.templates = list(templates)
        self.pool = np.stack([_fixed(t.local[0].desc, KEYPOINTS) for t in self.templates])
        self.flip = flip
        self.seed = seed

    def block(self, b: int, count: int) -> tuple[np.ndarray, ...]:
        """``count`` images: ``desc (count*KEYPOINTS, 32)`` uint8, ``xy`` float32,
        ``pdq (count, 32)`` uint8 and the template of each."""
        rng = np.random.Generator(np.random.PCG64([self.seed, b]))
        src = rng.integers(0, len(self.pool), count)
        kp = rng.integers(0, self.pool.shape[1], (count, KEYPOINTS))
        desc = self.pool[src[:, None], kp].reshape(-1, 32)
        desc ^= flip_mask(rng, len(desc), self.flip)
        xy = rng.random((len(desc), 2), dtype=np.float32)
        xy *= np.array([FRAME[0] - 1, FRAME[1] - 1], np.float32)
        pdq = rng.integers(0, 256, (count, 32), dtype=np.uint8)
        return desc, xy, pdq, src

    def descriptors(self, b: int, count: int) -> list[Any]:
        """One block as :class:`~hashlib_ext.descriptor.Descriptor` objects."""
        desc, xy, pdq, src = self.block(b, count)
        q = np.array([100], np.int16)
        out = []
        for i, t in enumerate(src.tolist()):
            tpl = self.templates[t]
            k = slice(i * KEYPOINTS, (i + 1) * KEYPOINTS)
            local = replace(tpl.local[0], xy=xy[k], desc=desc[k], size=FRAME)
            out.append(replace(tpl, size=FRAME, pdq=pdq[i].reshape(1, 1, 32), quality=q,
                               boxes=(), local=(local,)))
        return out


def _grows(idx: Any) -> dict[str, Any]:
    """The growable arrays of a RobustIndex (whatever their number)."""
    from hashlib_ext import robust

    return {k: v for k, v in vars(idx).items() if isinstance(v, robust._Grow)}


def _reserve(g: Any, rows: int) -> None:
    """Give a growable array room for ``rows`` more rows, allocated once (no doubling)."""
    buf = g._buf
    need = len(g) + rows
    if need > len(buf):
        grown = np.empty((need, *buf.shape[1:]), buf.dtype)
        grown[:len(g)] = buf[:len(g)]
        g._buf = grown


def build(n: int, gen: Distractors, real: Sequence[Any], bulk: bool) -> tuple[Any, dict]:
    """``n`` distractors then the real images, through ``RobustIndex.add`` in blocks of
    BLOCK images.

    ``bulk=True`` adds two benchmark-side changes that keep the memory of a 1M build near
    its final size (the index is the same: :func:`check_bulk`): after the first block,
    every growable array is sized once for the whole build (``add`` otherwise doubles
    them, holding old and new copies), and the word postings of the distractors are not
    posted block by block (segment merges sort and copy hundreds of millions of postings)
    but sorted once at the end by :func:`sorted_postings`."""
    from hashlib_ext.robust import RobustIndex

    idx = RobustIndex()
    t_gen = t_add = 0.0
    t_post = 0.0
    if bulk:
        idx._words.add = lambda keys, owners: None  # deferred (instance attribute)
    for b, start in enumerate(range(0, n, BLOCK)):
        count = min(BLOCK, n - start)
        t0 = time.perf_counter()
        ds = gen.descriptors(b, count)
        t1 = time.perf_counter()
        idx.add(ds)
        t_add += time.perf_counter() - t1
        t_gen += t1 - t0
        if bulk and b == 0:
            rest = n - count
            for g in _grows(idx).values():
                per = max(1, -(-(len(g) - 1) // count))
                _reserve(g, per * rest + 4 * per * len(real) + 16)
    if bulk:
        del idx._words.add
        t0 = time.perf_counter()
        keys, owners = sorted_postings(idx._desc.view(), idx._kp_off.view(), idx._words.bits)
        idx._words._segments.append((keys, owners))
        del keys, owners
        t_post = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx.add(real)
    t_add += time.perf_counter() - t0
    t0 = time.perf_counter()
    prepare = getattr(idx._global, "prepare", None)
    if prepare is not None:
        prepare()  # MIH tables, if the global index builds them
    t_prep = time.perf_counter() - t0
    info = {"path": "add() + bulk sizing/postings" if bulk else "add()",
            "generate_s": t_gen, "add_s": t_add, "postings_sort_s": t_post,
            "global_prepare_s": t_prep,
            "add_us_per_image": t_add / (n + len(real)) * 1e6}
    return idx, info


def _postings_kernels() -> tuple[Callable, Callable]:
    import numba

    @numba.njit(nogil=True)
    def count(desc, byte, shift, counts):  # pragma: no cover - compiled
        for i in range(desc.shape[0]):
            w = 0
            for j in range(byte.shape[0]):
                w |= ((desc[i, byte[j]] >> shift[j]) & 1) << j
            counts[w] += 1

    @numba.njit(nogil=True)
    def scatter(desc, off, byte, shift, start, keys, owners):  # pragma: no cover
        for img in range(off.shape[0] - 1):
            for i in range(off[img], off[img + 1]):
                w = 0
                for j in range(byte.shape[0]):
                    w |= ((desc[i, byte[j]] >> shift[j]) & 1) << j
                p = start[w]
                start[w] = p + 1
                keys[p] = w
                owners[p] = img

    return count, scatter


def sorted_postings(desc: np.ndarray, off: np.ndarray, bits: Sequence[int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Postings ``(keys, owners)`` of images ``0..len(off)-2`` sorted by word (owners
    ascending within a word) by a two-pass counting sort: no argsort, no copy of the
    descriptors, 2**len(bits) counters of extra memory."""
    count, scatter = _postings_kernels()
    byte = np.array([b >> 3 for b in bits], np.int64)
    shift = np.array([7 - (b & 7) for b in bits], np.uint8)
    counts = np.zeros(1 << len(bits), np.int64)
    count(desc, byte, shift, counts)
    start = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=start[1:])
    del counts
    total = int(off[-1])
    keys = np.empty(total, np.uint32)
    owners = np.empty(total, np.uint32)
    scatter(desc, off.astype(np.int64), byte, shift, start, keys, owners)
    return keys, owners


def check_bulk(data: dict, gen: Distractors, n: int = 1200) -> dict:
    """``build(bulk=True)`` gives the same stored arrays, postings and matches as
    ``build(bulk=False)`` (plain ``add``)."""
    a, _ = build(n, gen, data["index"], bulk=False)
    b, _ = build(n, gen, data["index"], bulk=True)
    same = {name: bool(np.array_equal(g.view(), _grows(b)[name].view()))
            for name, g in _grows(a).items()}
    ka, oa = (np.concatenate(x) for x in zip(*a._words._segments, strict=True))
    kb, ob = (np.concatenate(x) for x in zip(*b._words._segments, strict=True))
    oa_, ob_ = np.lexsort((oa, ka)), np.lexsort((ob, kb))
    same["postings"] = bool(np.array_equal(ka[oa_], kb[ob_]) and np.array_equal(oa[oa_], ob[ob_]))
    same["ids"] = a.ids.tolist() == b.ids.tolist()
    same["nbytes"] = a.nbytes == b.nbytes
    same["matches"] = all(a.match(q["desc"]) == b.match(q["desc"]) for q in data["hard"][:8])
    if not all(same.values()):
        raise SystemExit(f"robust_scale: bulk build differs from add(): {same}")
    return same


# -- measuring -----------------------------------------------------------------------------

def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM", "RssAnon")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) * 1024
    return out


class _Timer:
    """Wraps a bound method on one object and sums the time spent in it."""

    def __init__(self, obj: Any, name: str):
        self.obj, self.name = obj, name
        self.inner = getattr(obj, name)
        self.total = self.cpu = 0.0
        self.calls = 0

        def timed(*a: Any, **k: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return self.inner(*a, **k)
            finally:
                self.total += time.perf_counter() - t0
                self.cpu += time.thread_time() - c0
                self.calls += 1

        setattr(obj, name, timed)

    def take(self) -> tuple[float, float, int]:
        out = self.total, self.cpu, self.calls
        self.total = self.cpu = 0.0
        self.calls = 0
        return out


def postings_info(words: Any, desc_sets: Sequence[np.ndarray]) -> dict[str, int]:
    """The posting entries a query reads (``read``), its probes, and the probes dropped
    for exceeding ``MAX_POSTING`` in some segment (``capped``)."""
    from hashlib_ext.wordindex import MAX_POSTING, probes, word_keys

    read = capped = total = 0
    for desc in desc_sets:
        if not len(desc):
            continue
        pr = probes(word_keys(desc, words.bits), len(words.bits)).ravel()
        total += len(pr)
        dropped = np.zeros(len(pr), bool)
        for keys, _ in words._segments:
            cnt = np.searchsorted(keys, pr, "right") - np.searchsorted(keys, pr, "left")
            dropped |= cnt > MAX_POSTING
            read += int(cnt[cnt <= MAX_POSTING].sum())
        capped += int(dropped.sum())
    return {"read": read, "capped": capped, "probes": total}


def vote_table(words: Any, desc_sets: Sequence[np.ndarray], n: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """``(images, votes, info)``: every image the query votes for and its votes summed over
    the sets, as the library's ``WordIndex.top`` counts them (asked for every image, not
    only the best k), and :func:`postings_info`. ``n``: the number of indexed images."""
    info = postings_info(words, desc_sets)
    try:
        res = words.top(list(desc_sets), 1 << 62, 1, n_images=n)
    except TypeError:  # a library whose top takes no n_images
        res = words.top(list(desc_sets), 1 << 62, 1)
    if isinstance(res, tuple):
        images, table = res
        return np.asarray(images, np.int64), np.asarray(table).sum(axis=1), info
    n = 1 + max((int(o.max()) for _, o in words._segments if len(o)), default=-1)
    full = votes_per_image(words, desc_sets, n)  # a library whose top returns images only
    images = np.flatnonzero(full)
    return images, full[images], info


class ProposedRetrieval:
    """A ``WordIndex.top`` for measuring proposed library changes (same candidates):

    * a word -> first-posting offset table (``2**24 + 1`` uint32, 64 MiB) for each large
      segment, so a probe's posting run is two array reads instead of two binary searches
      (small segments keep the binary search);
    * votes summed over the query's sets by a compiled loop into one int32 counter per
      image, **kept between queries** (only the touched entries are reset: no per-query
      work proportional to the number of indexed images), instead of collecting every hit
      and running ``np.unique``;
    * the per-set votes that ``top`` also returns are counted afterwards for the ``k``
      winners only, by a second pass over the same posting runs.

    ``distinct`` counts one vote per (query descriptor, image) instead of one per probe hit
    (:func:`measure_proposed_retrieval` picks the library's rule).
    """

    MIN_TABLE = 1 << 22
    """Segments with at least this many postings get an offset table."""

    def __init__(self, words: Any, n_images: int, distinct: bool = True):
        import numba

        from hashlib_ext.wordindex import MAX_POSTING

        self.words = words
        self.cap = MAX_POSTING
        self.distinct = distinct
        self.tables = []
        nwords = 1 << len(words.bits)
        t0 = time.perf_counter()
        for keys, owners in words._segments:
            off = None
            if len(keys) >= self.MIN_TABLE:
                counts = np.zeros(nwords, np.int64)
                for i in range(0, len(keys), 1 << 24):  # bincount copies its input to int64
                    counts += np.bincount(keys[i:i + (1 << 24)], minlength=nwords)
                off = np.zeros(nwords + 1, np.uint32 if len(keys) < 2**32 else np.int64)
                np.cumsum(counts, out=off[1:])
                del counts
            self.tables.append((keys, owners, off))
        self.build_s = time.perf_counter() - t0
        self.table_bytes = sum(o.nbytes for _, _, o in self.tables if o is not None)
        self.counts = np.zeros(n_images, np.int32)
        self.last = np.full(n_images, -1, np.int64)
        self.touched = np.zeros(n_images, np.int64)
        self.mark = np.zeros(n_images, np.int32)

        @numba.njit(nogil=True)
        def vote(lo, hi, row, owners, cap, distinct, counts, last, touched, nt):
            for p in range(lo.shape[0]):  # pragma: no cover - compiled
                a, b = lo[p], hi[p]
                if b - a > cap:
                    continue
                r = row[p]
                for i in range(a, b):
                    o = owners[i]
                    if distinct:
                        if last[o] == r:
                            continue
                        last[o] = r
                    if counts[o] == 0:
                        touched[nt] = o
                        nt += 1
                    counts[o] += 1
            return nt

        @numba.njit(nogil=True)
        def vote_set(lo, hi, row, owners, cap, distinct, mark, last_c, table, j):
            for p in range(lo.shape[0]):  # pragma: no cover - compiled
                a, b = lo[p], hi[p]
                if b - a > cap:
                    continue
                r = row[p]
                for i in range(a, b):
                    m = mark[owners[i]]
                    if m > 0:
                        if distinct:
                            if last_c[m - 1] == r:
                                continue
                            last_c[m - 1] = r
                        table[m - 1, j] += 1

        self._vote, self._vote_set = vote, vote_set

    def top(self, desc_sets: Sequence[np.ndarray], k: int, min_votes: int = 1
            ) -> tuple[np.ndarray, np.ndarray]:
        """``(images, per_set votes)`` of the ``k`` best-voted images, as ``WordIndex.top``."""
        from hashlib_ext.wordindex import probes, word_keys

        nbits = len(self.words.bits)
        nt = base = 0
        runs = []
        for j, desc in enumerate(desc_sets):
            if not len(desc):
                continue
            pr = probes(word_keys(desc, self.words.bits), nbits).ravel()
            row = np.repeat(np.arange(base, base + len(desc), dtype=np.int64), nbits + 1)
            base += len(desc)  # rows unique over the query's sets
            for keys, owners, off in self.tables:
                if off is None:
                    lo = np.searchsorted(keys, pr, "left")
                    hi = np.searchsorted(keys, pr, "right")
                else:
                    lo = off[pr].astype(np.int64)
                    hi = off[pr + 1].astype(np.int64)
                runs.append((j, lo, hi, row, owners))
                nt = self._vote(lo, hi, row, owners, self.cap, self.distinct, self.counts,
                                self.last, self.touched, nt)
        images = self.touched[:nt].copy()
        total = self.counts[images].astype(np.int64)
        self.counts[images] = 0
        self.last[images] = -1
        keep = np.flatnonzero(total >= min_votes)
        if len(keep) > k:
            keep = keep[np.argpartition(-total[keep], k - 1)[:k]]
        keep = keep[np.lexsort((images[keep], -total[keep]))]
        cand = images[keep]
        table = np.zeros((len(cand), len(desc_sets)), np.int64)
        last_c = np.full(len(cand), -1, np.int64)
        self.mark[cand] = np.arange(1, len(cand) + 1)
        for j, lo, hi, row, owners in runs:
            self._vote_set(lo, hi, row, owners, self.cap, self.distinct, self.mark, last_c,
                           table, j)
        self.mark[cand] = 0
        return cand, table


def _top_images(result: Any) -> list[int]:
    """The candidate list of ``WordIndex.top`` (an array, or ``(images, votes)``)."""
    return np.asarray(result[0] if isinstance(result, tuple) else result).tolist()


def _same_per_set(a: tuple[np.ndarray, np.ndarray], b: Any) -> bool:
    """The per-set votes agree for every image both top lists hold (when ``b`` has them)."""
    if not isinstance(b, tuple):
        return True
    rows = {i: r.tolist() for i, r in zip(b[0].tolist(), b[1], strict=True)}
    return all(rows[i] == r.tolist() for i, r in zip(a[0].tolist(), a[1], strict=True)
               if i in rows)


def _same_ranking(a: list[int], b: list[int], votes: dict[int, int]) -> bool:
    """Two top-k lists agree up to the order of images tied on votes (``top`` breaks a tie
    at the cut-off arbitrarily): same vote counts, same images above the last count."""
    va, vb = [votes.get(i, 0) for i in a], [votes.get(i, 0) for i in b]
    if va != vb:
        return False
    last = va[-1] if va else 0
    return {i for i in a if votes[i] > last} == {i for i in b if votes[i] > last}


def counts_per_descriptor(words: Any, desc_sets: Sequence[np.ndarray], n: int) -> bool:
    """The library's vote rule, read off one query: True when ``top`` counts one vote per
    (query descriptor, image), False when one per probe hit."""
    images, votes, _ = vote_table(words, desc_sets, n)
    return not np.array_equal(votes_per_image(words, desc_sets, n)[images], votes)


def measure_proposed_retrieval(idx: Any, data: dict) -> dict:
    """Time :class:`ProposedRetrieval` against ``WordIndex.top`` on the hard queries."""
    from hashlib_ext.robust import CANDIDATES, MIN_VOTES

    sets = [[s.desc for s in q["desc"].local if len(s)] for q in data["hard"]]
    distinct = counts_per_descriptor(idx._words, sets[0], len(idx))
    fast = ProposedRetrieval(idx._words, len(idx), distinct=distinct)
    for ss in sets[:3]:
        fast.top(ss, CANDIDATES, MIN_VOTES)
    wall, cpu, same = [], [], 0
    for ss in sets:
        t0, c0 = time.perf_counter(), time.thread_time()
        got = fast.top(ss, CANDIDATES, MIN_VOTES)
        cpu.append((time.thread_time() - c0) * 1e3)
        wall.append((time.perf_counter() - t0) * 1e3)
        lib = idx._words.top(ss, CANDIDATES, MIN_VOTES)
        images, counts, _ = vote_table(idx._words, ss, len(idx))
        same += _same_ranking(got[0].tolist(), _top_images(lib),
                              dict(zip(images.tolist(), counts.tolist(), strict=True))) \
            and _same_per_set(got, lib)
    return {"ms": _pct(wall), "cpu_ms": _pct(cpu), "same_candidates": same,
            "one_vote_per_descriptor": distinct,
            "queries": len(sets), "table_bytes": fast.table_bytes,
            "counter_bytes": int(fast.counts.nbytes + fast.mark.nbytes + fast.touched.nbytes
                                 + fast.last.nbytes),
            "table_build_s": fast.build_s}


def _pct(x: Sequence[float]) -> dict[str, float]:
    a = np.asarray(x, float)
    if not len(a):
        return {}
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "max": float(a.max())}


def measure_queries(idx: Any, data: dict, n: int) -> dict:
    """Stage-2 queries (hard edits), then stage-1 queries (easy edits)."""
    from hashlib_ext.robust import CANDIDATES

    real_id = {pos: n + pos for pos in range(len(data["index"]))}
    timers = {"stage1": _Timer(idx, "_stage1"), "retrieval": _Timer(idx._words, "top"),
              "verify": _Timer(idx, "_verify")}
    for q in data["hard"][:5]:  # warm-up: compiled kernels, caches
        idx.match(q["desc"])
    for t in timers.values():
        t.take()
    rows = []
    for q in data["hard"]:
        t0, c0 = time.perf_counter(), time.thread_time()
        ms = idx.match(q["desc"])
        row = {"spec": q["spec"], "total_ms": (time.perf_counter() - t0) * 1e3,
               "total_cpu_ms": (time.thread_time() - c0) * 1e3}
        for k, t in timers.items():
            s, c, calls = t.take()
            row[f"{k}_ms"] = s * 1e3
            row[f"{k}_cpu_ms"] = c * 1e3
            row[f"{k}_calls"] = calls
        want = real_id[q["pos"]]
        row["found"] = any(m.id == want for m in ms)
        row["false"] = sum(m.id != want for m in ms)
        row["stage"] = ms[0].stage if ms else 0
        rows.append(row)
    for t in timers.values():  # unwrap
        delattr(t.obj, t.name)
    # retrieval statistics (not timed): rank of the true image among all voted images
    noise_hist = np.zeros(256, np.int64)
    for q, row in zip(data["hard"], rows, strict=True):
        sets = [s.desc for s in q["desc"].local if len(s)]
        images, counts, info = vote_table(idx._words, sets, n + len(data["index"]))
        want = real_id[q["pos"]]
        mine = counts[images == want]
        v = int(mine[0]) if len(mine) else 0
        others = counts[images != want]
        row["true_votes"] = v
        row["rank"] = 1 + int((others > v).sum())  # ties not counted against it
        row["rank_ties_lost"] = 1 + int((others >= v).sum())
        top = np.sort(others)[::-1]
        row["tenth_other_votes"] = int(top[CANDIDATES - 1]) if len(top) >= CANDIDATES else 0
        row["best_other_votes"] = int(top[0]) if len(top) else 0
        row.update(info)
        dis = images < n
        noise_hist += np.bincount(np.minimum(counts[dis], 255), minlength=256)
        noise_hist[0] += n - int(dis.sum())
        row["retrieved"] = bool(row["rank"] <= CANDIDATES)
    stage2_rows = [r for r in rows if r["stage"] != 1]
    out = {
        "queries": len(rows),
        "answered_by_stage1_at_this_size": sum(r["stage"] == 1 for r in rows),
        "verify_calls": _pct([r["verify_calls"] for r in stage2_rows]),
        "postings_read": _pct([r["read"] for r in rows]),
        "probes": _pct([r["probes"] for r in rows]),
        "capped_probes": _pct([r["capped"] for r in rows]),
        "retrieval_recall_at_10": float(np.mean([r["retrieved"] for r in rows])),
        "retrieval_recall_at_10_ties_lost": float(
            np.mean([r["rank_ties_lost"] <= CANDIDATES for r in rows])),
        "recall": float(np.mean([r["found"] for r in rows])),
        "false_matches": int(sum(r["false"] for r in rows)),
        "queries_with_false_matches": int(sum(r["false"] > 0 for r in rows)),
        "true_votes": _pct([r["true_votes"] for r in rows]),
        "true_votes_all": [r["true_votes"] for r in rows],
        "tenth_other_votes": _pct([r["tenth_other_votes"] for r in rows]),
        "best_other_votes": _pct([r["best_other_votes"] for r in rows]),
        "rank": _pct([r["rank"] for r in rows]),
        "distractor_vote_hist": noise_hist.tolist(),
        "per_spec": {},
    }
    for clock in ("", "_cpu"):
        out[f"total{clock}_ms"] = _pct([r[f"total{clock}_ms"] for r in rows])
        out[f"stage1_miss{clock}_ms"] = _pct([r[f"stage1{clock}_ms"] for r in rows])
        for k in ("retrieval", "verify"):
            out[f"{k}{clock}_ms"] = _pct([r[f"{k}{clock}_ms"] for r in stage2_rows])
        out[f"stage2{clock}_ms"] = _pct([r[f"retrieval{clock}_ms"] + r[f"verify{clock}_ms"]
                                         for r in stage2_rows])
    for spec in HARD_SPECS:
        rs = [r for r in rows if r["spec"] == spec]
        if rs:
            out["per_spec"][spec] = {"queries": len(rs),
                                     "retrieval_recall_at_10": float(np.mean(
                                         [r["retrieved"] for r in rs])),
                                     "recall": float(np.mean([r["found"] for r in rs]))}
    easy = []
    for q in data["easy"]:
        t0, c0 = time.perf_counter(), time.thread_time()
        ms = idx.match(q["desc"])
        easy.append(((time.perf_counter() - t0) * 1e3, ms, real_id[q["pos"]],
                     (time.thread_time() - c0) * 1e3))
    out["stage1_query"] = {
        "queries": len(easy), "ms": _pct([e[0] for e in easy]),
        "cpu_ms": _pct([e[3] for e in easy]),
        "recall": float(np.mean([any(m.id == w and m.stage == 1 for m in ms)
                                 for _, ms, w, _ in easy])) if easy else None,
        "false_matches": int(sum(sum(m.id != w for m in ms) for _, ms, w, _ in easy))}
    return out


def measure_stage1_kinds(idx: Any, data: dict) -> dict:
    """Stage-1 search of the same query codes (hard and easy queries) in a flat-scan and
    in a multi-index-hashing HashIndex over the index's PDQ codes: what the choice of
    global index costs at this size (RobustIndex uses ``idx._global``)."""
    from hashlib_ext.descriptor import MIN_QUALITY
    from hashlib_ext.index import HashIndex

    codes = idx._pdq.view()
    good = idx._quality.view() >= MIN_QUALITY
    owners = idx._pdq_owner.view()[good].astype(np.int64)
    qs = [q["desc"] for q in data["hard"]] + [q["desc"] for q in data["easy"]]
    qcodes = [d.pdq[d.quality >= MIN_QUALITY].reshape(-1, d.pdq.shape[-1]) for d in qs]
    out: dict[str, Any] = {"library_kind": str(getattr(idx._global, "kind", "?")),
                           "codes": int(good.sum())}
    results = {}
    for kind in ("flat", "mih"):
        t0 = time.perf_counter()
        ix = HashIndex("pdq", kind=kind, design_threshold=idx.pdq_threshold)
        ix.add(codes[good], ids=owners)
        ix.search(codes[:1], idx.pdq_threshold)  # builds MIH tables
        out[f"{kind}_build_s"] = time.perf_counter() - t0
        out[f"{kind}_nbytes"] = int(ix.nbytes)
        times, res = [], []
        for c in qcodes:
            c0 = time.thread_time()
            r = ix.search(c, idx.pdq_threshold)
            times.append((time.thread_time() - c0) * 1e3)
            res.append([sorted(h) for h in r])
        out[f"{kind}_cpu_ms"] = _pct(times)
        results[kind] = res
        del ix
    out["same_results"] = results["flat"] == results["mih"]
    return out


def run_size(args: argparse.Namespace) -> dict:
    """One size, in this (child) process."""
    import cv2

    cv2.setNumThreads(1)
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    with open(args.cache, "rb") as f:
        data = pickle.load(f)
    n = args.child
    gen = Distractors([data["index"][i] for i in data["train"]], args.flip, args.seed)
    before = _status()
    t0 = time.perf_counter()
    idx, info = build(n, gen, data["index"], bulk=n > args.public_max)
    info["total_s"] = time.perf_counter() - t0
    info["segments"] = [len(k) for k, _ in idx._words._segments]
    info["global_kind"] = str(getattr(idx._global, "kind", "?"))
    after = _status()
    images = len(idx)
    parts = {"desc": idx._desc.nbytes, "xy": idx._xy.nbytes, "postings": idx._words.nbytes,
             "global_pdq": int(idx._global.nbytes)}
    parts["other"] = int(idx.nbytes) - sum(parts.values())
    res: dict[str, Any] = {
        "distractors": n, "images": images, "build": info,
        "memory": {"nbytes": int(idx.nbytes), "nbytes_per_image": idx.nbytes / images,
                   "parts": parts, "rss_before": before["VmRSS"], "rss_after": after["VmRSS"],
                   "rss_peak": after["VmHWM"],
                   "rss_growth_per_image": (after["VmRSS"] - before["VmRSS"]) / images},
    }
    if n <= args.save_max:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            path = Path(tmp) / "robust.idx"
            t0 = time.perf_counter()
            idx.save(path)
            save_s = time.perf_counter() - t0
            size = path.stat().st_size
        res["file"] = {"bytes": size, "bytes_per_image": size / images, "save_s": save_s}
    else:
        res["file"] = {"skipped": f"save() skipped above --save-max={args.save_max} (its "
                                  "temporary keypoint-position arrays need ~3 GB more memory "
                                  "at 1M)"}
    res["rss_peak_after_save"] = _status()["VmHWM"]
    res["queries"] = measure_queries(idx, data, n)
    res["proposed_retrieval"] = measure_proposed_retrieval(idx, data)
    if args.mih:
        res["stage1_kinds"] = measure_stage1_kinds(idx, data)
    res["rss_end"] = _status()
    res["library"] = _library_state()
    return res


# -- the real-pair reference and the model -------------------------------------------------

def votes_per_image(words: Any, desc_sets: Sequence[np.ndarray], n: int,
                    distinct: bool = False) -> np.ndarray:
    """``(n,)`` votes of a query for every image, as ``WordIndex.top`` sums them over the
    query's sets (one per probe hit; probes of a word posted more than ``MAX_POSTING``
    times in a segment are dropped). ``distinct=True`` counts each (query keypoint, image)
    pair once instead (a proposed change: an image with many keypoints of one repeated
    texture, or a query keypoint whose 25 probes hit several of its keypoints, then adds
    one vote, not many)."""
    from hashlib_ext.wordindex import MAX_POSTING, probes, word_keys

    total = np.zeros(n, np.int64)
    for desc in desc_sets:
        if not len(desc):
            continue
        pr = probes(word_keys(desc, words.bits), len(words.bits))
        per_kp = pr.shape[1]
        pr = pr.ravel()
        found = []
        for keys, owners in words._segments:
            lo = np.searchsorted(keys, pr, "left")
            cnt = np.searchsorted(keys, pr, "right") - lo
            cnt[cnt > MAX_POSTING] = 0
            at = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
            kp = np.repeat(np.arange(len(pr)) // per_kp, cnt)
            found.append((kp, owners[at].astype(np.int64)))
        kp = np.concatenate([k for k, _ in found])
        img = np.concatenate([o for _, o in found])
        if distinct:
            img = np.unique(kp * n + img) % n
        total += np.bincount(img, minlength=n)
    return total


class Tail:
    """Survival ``P(X >= x)`` of a sample (values with weights): empirical while at least
    ``min_count`` sample points reach ``x``, beyond that an exponential tail fitted to the
    top ``top`` share of the sample (threshold its 1 - top quantile, scale the mean excess
    over it: the maximum-likelihood exponential)."""

    def __init__(self, values: np.ndarray, weights: np.ndarray | None = None,
                 top: float = 0.01, min_count: int = 20):
        order = np.argsort(values, kind="stable")
        self.v = np.asarray(values, float)[order]
        w = np.ones(len(self.v)) if weights is None else np.asarray(weights, float)[order]
        self.total = float(w.sum())
        self.above = np.cumsum(w[::-1])[::-1]  # weight of values >= v[i]
        self.min_count = min_count
        i = int(np.searchsorted(self.above <= top * self.total, True))
        i = min(i, len(self.v) - 1)
        self.t0 = self.v[i]
        tail = self.v >= self.t0
        self.p0 = float(self.above[i] / self.total)
        wt = w[tail]
        self.scale = max(float(((self.v[tail] - self.t0) * wt).sum() / wt.sum()), 1e-9) \
            if wt.sum() > 0 else 1e-9

    def __call__(self, x: float) -> float:
        i = int(np.searchsorted(self.v, x, "left"))
        count = self.above[i] if i < len(self.v) else 0.0
        if count >= self.min_count:
            return float(count / self.total)
        return self.p0 * math.exp(-(x - self.t0) / self.scale)


def recall_model(true_votes: np.ndarray, noise: np.ndarray, n: int, scaled: bool,
                 k: int = 10) -> float:
    """Modelled share of queries whose true image stays in the top ``k`` beside ``n``
    unrelated images, from ``noise`` (queries x unrelated images: the votes each query
    gives unrelated real photographs) and each query's true-image votes: the number of
    unrelated images with more votes is Poisson with mean ``n * S(v_true + 1)``.
    ``scaled=False`` pools every pair into one survival ``S``; ``scaled=True`` divides
    each query's votes by its mean noise vote first (textured queries give both more
    true and more noise votes), then pools."""
    t = np.asarray(true_votes, float) + 1
    if scaled:
        mu = np.maximum(noise.mean(axis=1), 1e-9)
        tail, x = Tail((noise / mu[:, None]).ravel()), t / mu
    else:
        tail, x = Tail(noise.ravel()), t
    out = []
    for xi in x:
        lam = n * tail(float(xi))
        out.append(sum(math.exp(-lam) * lam ** i / math.factorial(i) for i in range(k)))
    return float(np.mean(out))


def recall_from_hist(true_votes: Sequence[int], hist: np.ndarray, n: int, k: int = 10
                     ) -> float:
    """:func:`recall_model` (pooled) from a histogram of noise votes."""
    tail = Tail(np.arange(len(hist)), hist)
    out = []
    for v in true_votes:
        lam = n * tail(v + 1.0)
        out.append(sum(math.exp(-lam) * lam ** i / math.factorial(i) for i in range(k)))
    return float(np.mean(out))


def real_pair_votes(data: dict, sizes: Sequence[int]) -> dict:
    """Votes every hard query gives every real image (its true image and the 255 other
    photographs) in an index of the real images alone: the reference for the noise votes
    of real distractors, and the model recall at ``sizes`` from it; for the votes as
    ``WordIndex.top`` counts them and counted once per query keypoint (proposed)."""
    from hashlib_ext.robust import RobustIndex

    idx = RobustIndex()
    idx.add(data["index"])
    n = len(idx)
    out: dict[str, Any] = {"pairs": len(data["hard"]) * (n - 1)}
    for mode, distinct in (("hits", False), ("keypoints", True)):
        true_v, noise = [], []
        for q in data["hard"]:
            full = votes_per_image(idx._words, [s.desc for s in q["desc"].local if len(s)], n,
                                   distinct)
            true_v.append(int(full[q["pos"]]))
            noise.append(np.delete(full, q["pos"]))
        tv, nz = np.array(true_v), np.array(noise)
        out[mode] = {
            "true_votes": _pct(tv) | {"p1": float(np.percentile(tv, 1)),
                                      "p5": float(np.percentile(tv, 5)),
                                      "p10": float(np.percentile(tv, 10))},
            "noise_mean": float(nz.mean()),
            "noise_p99": float(np.percentile(nz, 99)),
            "noise_p999": float(np.percentile(nz, 99.9)),
            "noise_max": int(nz.max()),
            "noise_hist": np.bincount(np.minimum(nz.ravel(), 255), minlength=256).tolist(),
            "true_votes_all": true_v,
            "model_recall_at_10": {str(s): {"pooled": recall_model(tv, nz, s, False),
                                            "per_query_scaled": recall_model(tv, nz, s, True)}
                                   for s in sizes},
        }
    return out


def extended_bits(data: dict, count: int, max_corr: float = 0.25) -> tuple[int, ...]:
    """``WORD_BITS`` followed by further descriptor bits chosen as the library's were: the
    most balanced bits (on the train2017 descriptors) whose correlation with every bit
    already chosen stays below ``max_corr``; at most ``count`` bits."""
    from hashlib_ext.wordindex import WORD_BITS

    desc = np.concatenate([data["index"][i].local[0].desc for i in data["train"]])
    bits = np.unpackbits(desc, axis=1).astype(float)
    corr = np.corrcoef(bits.T)
    chosen = list(WORD_BITS)
    for b in np.argsort(np.abs(bits.mean(axis=0) - 0.5), kind="stable").tolist():
        if len(chosen) >= count:
            break
        if b not in chosen and all(abs(corr[b, c]) < max_corr for c in chosen):
            chosen.append(b)
    return tuple(chosen)


def word_length_sweep(data: dict, lengths: Sequence[int], sizes: Sequence[int]) -> dict:
    """Real-pair votes (as :func:`real_pair_votes`, both vote rules) with words of other
    lengths: the first ``L`` bits of :func:`extended_bits`. Per length and rule: true-image
    votes, noise votes per unrelated pair (with one vote per probe hit, the postings a query
    reads per indexed image of real statistics) and the model recall at ``sizes``."""
    from hashlib_ext.wordindex import WordIndex, word_keys

    avail = extended_bits(data, max(lengths))
    n = len(data["index"])
    desc = np.concatenate([d.local[0].desc for d in data["index"]])
    owners = np.repeat(np.arange(n), [len(d.local[0]) for d in data["index"]]).astype(np.uint32)
    out: dict[str, Any] = {"bits": list(avail)}
    for length, (mode, distinct) in itertools.product(lengths, (("hits", False),
                                                               ("keypoints", True))):
        key = f"{length}/{mode}"
        if length > len(avail):
            out[key] = {"error": f"only {len(avail)} bits pass the selection"}
            continue
        bits = avail[:length]
        words = WordIndex(bits)
        words.add(word_keys(desc, bits), owners)
        true_v, noise = [], []
        for q in data["hard"]:
            full = votes_per_image(words, [s.desc for s in q["desc"].local if len(s)], n,
                                   distinct)
            true_v.append(int(full[q["pos"]]))
            noise.append(np.delete(full, q["pos"]))
        tv, nz = np.array(true_v), np.array(noise)
        out[key] = {
            "true_votes_p5": float(np.percentile(tv, 5)), "true_votes_p50": float(np.median(tv)),
            "noise_per_pair": float(nz.mean()),
            "model_recall_at_10": {str(s): {"pooled": recall_model(tv, nz, s, False),
                                            "per_query_scaled": recall_model(tv, nz, s, True)}
                                   for s in sizes}}
    return out


# -- driver --------------------------------------------------------------------------------

def _library_state() -> dict:
    h = hashlib.sha256()
    for name in LIBRARY_FILES:
        p = ROOT / "hashlib_ext" / name
        if p.exists():
            h.update(name.encode() + p.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--",
                                *[f"hashlib_ext/{n}" for n in LIBRARY_FILES]], cwd=ROOT,
                               capture_output=True, text=True, check=False).stdout.split("\n")
    except OSError:  # pragma: no cover
        head, dirty = "", []
    return {"git_head": head, "library_sha256": h.hexdigest()[:16],
            "uncommitted_library_files": [d[3:] for d in dirty if d.strip()]}


def _machine() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count(),
            "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:  # pragma: no cover
        pass
    return info


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    return 0


def estimate_bytes(n: int, public: bool) -> int:
    """Rough peak memory of one size (bytes): 48 B per stored keypoint (descriptor 32,
    position 8, posting 8), plus the transient of the build path."""
    kp = (n + 256) * KEYPOINTS
    steady = kp * 48 + n * 200
    return int(steady * (1.6 if public else 1.05)) + 600 * 2**20


def summarise(results: dict) -> str:
    """Markdown tables of the per-size figures (memory and build; query time; quality)."""
    rows = [(int(k), r) for k, r in sorted(results["sizes"].items(), key=lambda x: int(x[0]))]
    ok = [(k, r) for k, r in rows if "error" not in r]

    def p3(d: dict) -> str:
        return f"{d['median']:.1f} / {d['p90']:.1f} / {d['p99']:.1f}"

    a = ["| distractors | images | build s | nbytes/image | RSS GiB | peak RSS GiB | "
         "file bytes/image |", "|" + "---:|" * 7]
    for k, r in rows:
        if "error" in r:
            a.append(f"| {k:,} | {r['error']} | | | | | |")
            continue
        f = r["file"].get("bytes_per_image")
        a.append(f"| {k:,} | {r['images']:,} | {r['build']['total_s']:.0f} | "
                 f"{r['memory']['nbytes_per_image']:,.0f} | "
                 f"{r['rss_end']['VmRSS'] / 2**30:.2f} | {r['rss_end']['VmHWM'] / 2**30:.2f} | "
                 f"{f'{f:,.0f}' if f else 'not saved'} |")
    b = ["| distractors | match() wall ms p50/p90/p99 | match() CPU ms p50/p90/p99 | "
         "stage 1 (miss) CPU ms | retrieval CPU ms | verification CPU ms (calls) | "
         "postings read | proposed retrieval CPU ms |", "|" + "---:|" * 8]
    for k, r in ok:
        q = r["queries"]
        pr = r.get("proposed_retrieval", {}).get("cpu_ms", {})
        b.append(f"| {k:,} | {p3(q['total_ms'])} | {p3(q['total_cpu_ms'])} | "
                 f"{q['stage1_miss_cpu_ms']['median']:.2f} | "
                 f"{q['retrieval_cpu_ms']['median']:.1f} | {q['verify_cpu_ms']['median']:.1f} "
                 f"({q['verify_calls']['median']:.0f}) | {q['postings_read']['median']:,.0f} | "
                 f"{pr.get('median', float('nan')):.1f} |")
    c = ["| distractors | retrieval recall@10 | end-to-end recall | false matches | "
         "true-image votes p50 | 10th other votes p50 / max | stage-1 query CPU ms p50 |",
         "|" + "---:|" * 7]
    for k, r in ok:
        q = r["queries"]
        c.append(f"| {k:,} | {q['retrieval_recall_at_10']:.3f} | {q['recall']:.3f} | "
                 f"{q['false_matches']} | {q['true_votes']['median']:.0f} | "
                 f"{q['tenth_other_votes']['median']:.0f} / {q['tenth_other_votes']['max']:.0f} | "
                 f"{q['stage1_query']['cpu_ms']['median']:.2f} |")
    return "\n".join(a + [""] + b + [""] + c)


def growth(results: dict) -> dict:
    """Log-log slopes between consecutive sizes (images) and a labelled 10M extrapolation
    from the last pair."""
    rows = sorted((r for r in results["sizes"].values() if "error" not in r),
                  key=lambda r: r["images"])
    metrics = {
        "total_cpu_ms_median": lambda r: r["queries"]["total_cpu_ms"]["median"],
        "total_cpu_ms_p99": lambda r: r["queries"]["total_cpu_ms"]["p99"],
        "retrieval_cpu_ms_median": lambda r: r["queries"]["retrieval_cpu_ms"]["median"],
        "verify_cpu_ms_median": lambda r: r["queries"]["verify_cpu_ms"]["median"],
        "stage1_miss_cpu_ms_median": lambda r: r["queries"]["stage1_miss_cpu_ms"]["median"],
        "proposed_retrieval_cpu_ms_median":
            lambda r: r["proposed_retrieval"]["cpu_ms"]["median"],
        "postings_read_median": lambda r: r["queries"]["postings_read"]["median"],
        "nbytes": lambda r: r["memory"]["nbytes"],
        "rss": lambda r: r["rss_end"]["VmRSS"],
    }
    out: dict[str, Any] = {}
    for name, f in metrics.items():
        slopes = []
        for a, b in zip(rows, rows[1:], strict=False):
            slopes.append({"from": a["images"], "to": b["images"],
                           "exponent": math.log(f(b) / f(a)) / math.log(b["images"] / a["images"])
                           if f(a) > 0 and f(b) > 0 else None})
        out[name] = {"values": {r["images"]: f(r) for r in rows}, "slopes": slopes}
        if slopes and slopes[-1]["exponent"] is not None:
            last = rows[-1]
            e = max(slopes[-1]["exponent"], 0.0)
            out[name]["extrapolated_10M"] = f(last) * (10_000_256 / last["images"]) ** e
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=240, help="hard-edit (stage-2) queries")
    ap.add_argument("--easy-queries", type=int, default=40, help="stage-1 queries")
    ap.add_argument("--out", default="robust-scale.json")
    ap.add_argument("--images", help="folder of JPEGs (default: the shared COCO sample)")
    ap.add_argument("--flip", type=float, default=7 / 32,
                    help="distractor bit-flip probability (multiple of 1/32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--public-max", type=int, default=100_000,
                    help="largest size built through RobustIndex.add (bulk path above)")
    ap.add_argument("--save-max", type=int, default=100_000,
                    help="largest size whose index is saved to measure the file size")
    ap.add_argument("--max-gb", type=float, default=11.5,
                    help="skip a size whose estimated peak memory exceeds this")
    ap.add_argument("--no-mih", dest="mih", action="store_false",
                    help="skip the stage-1 MIH comparison")
    ap.add_argument("--word-lengths", type=int, nargs="*", default=[20, 22, 24, 26, 28],
                    help="word lengths for the real-pair sweep (none: skip)")
    ap.add_argument("--cache", help="pickle of the real part (made if missing)")
    ap.add_argument("--tmp", default=None, help="folder for the saved index files")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child is not None:
        res = run_size(args)
        with open(args.child_out, "w") as f:
            json.dump(res, f)
        return 0

    own_cache = args.cache is None
    cache = Path(args.cache or tempfile.mkstemp(suffix=".pkl", prefix="robust_scale_")[1])
    try:
        data = None
        if args.cache and cache.exists():
            with open(cache, "rb") as f:
                data = pickle.load(f)
            if data.get("library", {}).get("library_sha256") != \
                    _library_state()["library_sha256"]:
                print("real part: library changed since the cache was made; describing "
                      "again", file=sys.stderr)
                data = None
            else:
                print(f"real part: from {cache}", file=sys.stderr)
        if data is None:
            data = prepare_real(args)
            with open(cache, "wb") as f:
                pickle.dump(data, f)
        gen = Distractors([data["index"][i] for i in data["train"]], args.flip, args.seed)
        results: dict[str, Any] = {
            "machine": _machine(), "library": _library_state(),
            "args": {k: v for k, v in vars(args).items() if not k.startswith("child")},
            "real": {"source": data["source"], "images": len(data["index"]),
                     "hard_queries": len(data["hard"]), "easy_queries": len(data["easy"]),
                     "describe": data["describe"],
                     "hard_specs": sorted({q["spec"] for q in data["hard"]})},
            "bulk_check": check_bulk(data, gen), "sizes": {}}
        model_sizes = sorted({*args.sizes, 10_000, 100_000, 1_000_000, 10_000_000})
        results["real_pairs"] = real_pair_votes(data, model_sizes)
        results["word_length"] = word_length_sweep(data, args.word_lengths, model_sizes)
        for n in args.sizes:
            need = estimate_bytes(n, n <= args.public_max)
            if need > args.max_gb * 2**30 or need > _mem_available() * 0.9:
                msg = (f"skipped: needs ~{need / 2**30:.1f} GB (limit {args.max_gb} GB, "
                       f"available {_mem_available() / 2**30:.1f} GB)")
                print(f"size {n}: {msg}", file=sys.stderr)
                results["sizes"][str(n)] = {"error": msg}
                continue
            print(f"size {n}: building and measuring in a child process", file=sys.stderr)
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                cmd = [sys.executable, __file__, "--child", str(n), "--child-out", out.name,
                       "--cache", str(cache), "--flip", str(args.flip), "--seed",
                       str(args.seed), "--public-max", str(args.public_max), "--save-max",
                       str(args.save_max)] + (["--tmp", args.tmp] if args.tmp else []) + \
                      ([] if args.mih else ["--no-mih"])
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, check=False)
                if proc.returncode:
                    results["sizes"][str(n)] = {"error": f"child exited {proc.returncode}"}
                    continue
                res = json.load(open(out.name))
            res["wall_s"] = time.perf_counter() - t0
            hist = np.asarray(res["queries"]["distractor_vote_hist"], float)
            res["model_check"] = {  # the pooled model on the measured synthetic votes
                "pooled_model_recall_at_10": recall_from_hist(
                    res["queries"]["true_votes_all"], hist, n),
                "measured_retrieval_recall_at_10": res["queries"]["retrieval_recall_at_10"]}
            results["sizes"][str(n)] = res
            print(summarise(results), file=sys.stderr)
            Path(args.out).write_text(json.dumps(results, indent=1))
        results["growth"] = growth(results)
        results["table"] = summarise(results)
        Path(args.out).write_text(json.dumps(results, indent=1))
        print(results["table"])
    finally:
        if own_cache:
            cache.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
