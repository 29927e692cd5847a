"""The robust-matching column of the benchmark: :class:`~hashlib_ext.robust.RobustIndex`
on the same images and the same seeded edits as the hashes.

Steps (:func:`run_robust`):

1. describe every image (index side), its original and each edited copy (query side), and
   *sticker* pairs: two different photos carrying the same opaque sticker, the false match
   a logo or watermark invites (process pool; the edits use the hash benchmark's seeds);
2. index the originals and match every query: recall per transform and the stage that
   decided, false matches (any other image returned) and the empirical false-match rate;
   for queries stage 1 does not find, the verified score against their original (so
   recall at other stage-2 operating points can be read off, retrieval aside);
3. score distinct pairs without retrieval (every query against sampled other images):
   the stage-1 PDQ distance of every code pair and the stage-2 score, both with the copy
   tests and raw (without them: an upper bound, which the model is fitted to), fitted by
   tail models (:mod:`~hashlib_ext.evaluate.fprmodel`, :mod:`~hashlib_ext.evaluate.tailmodel`)
   to choose operating points with a modelled per-pair false-match rate of at most 1e-9;
4. costs: describe time per image (one process) and match time for queries decided by
   stage 1 and for queries that run both stages.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from . import fprmodel, tailmodel

STICKER_PAIRS = (("sticker:size=0.25,pos=br", "sticker:size=0.25,pos=br"),
                 ("sticker:size=0.2,pos=br", "sticker:size=0.3,pos=center,design=0"),
                 ("sticker:size=0.3,pos=tl,design=2", "sticker:size=0.3,pos=br,design=2"))
"""(indexed edit, query edit): the same sticker on two different photos (a false match)."""
TARGET_FPR = 1e-9
"""Per-pair false-match budget of the default operating point, split evenly between
the two stages."""
MAX_SCORE = 101


def _describe_item(args: tuple[int, Any, list[str], int]) -> dict:
    """Index and query descriptors of one image and its edits; errors returned as text."""
    from ..descriptor import describe, describe_pair
    from ..imageio import load
    from .transforms import parse

    pos, source, specs, seed = args
    out: dict[str, Any] = {"pos": pos}
    try:
        image = load(source)
        out["index"], out["query"] = describe_pair(image)
    except Exception as e:  # noqa: BLE001 - the benchmark reports bad inputs and goes on
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    variants: list[Any] = []
    for k, spec in enumerate(specs):
        try:
            rng = np.random.default_rng([seed, pos, k])
            variants.append(describe(parse(spec)(image, rng), query=True))
        except Exception as e:  # noqa: BLE001
            variants.append(f"{type(e).__name__}: {e}")
    out["variants"] = variants
    stickers = []
    for a, b in STICKER_PAIRS:
        rng = np.random.default_rng([seed, pos, 999])
        stickers.append((describe(parse(a)(image, rng)),
                         describe(parse(b)(image, rng), query=True)))
    out["stickers"] = stickers
    return out


def _describe_all(items: Sequence[tuple[Any, Any]], specs: list[str], seed: int,
                  workers: int, progress: bool) -> list[dict]:
    tasks = [(pos, src, specs, seed) for pos, (_id, src) in enumerate(items)]
    if workers <= 1 or len(tasks) < 2:
        it: Any = map(_describe_item, tasks)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        it = pool.map(_describe_item, tasks, chunksize=1)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(tasks), desc="robust", unit="img", file=sys.stderr)
    try:
        return list(it)
    finally:
        if pool is not None:
            pool.shutdown()


def _index(rows: list[dict], key: str = "index", which: int | None = None) -> Any:
    from ..robust import RobustIndex

    idx = RobustIndex()
    descs = [r[key] if which is None else r[key][which][0] for r in rows]
    idx.add(descs, ids=[r["pos"] for r in rows])
    return idx


def _match_all(idx: Any, rows: list[dict], specs: list[str]) -> tuple[dict, dict]:
    per: dict[str, dict] = {}
    times: dict[str, list[float]] = {"stage1": [], "stage2": []}
    pos_of = {r["pos"]: i for i, r in enumerate(rows)}
    for k, spec in enumerate(specs):
        found = stage1 = false = queries = 0
        true_scores = np.zeros(MAX_SCORE + 1, np.int64)
        for r in rows:
            d = r["variants"][k]
            if isinstance(d, str):
                continue
            queries += 1
            t0 = time.perf_counter()
            ms = idx.match(d)
            dt = time.perf_counter() - t0
            stage = ms[0].stage if ms else 2
            times["stage1" if stage == 1 else "stage2"].append(dt)
            hit = [m for m in ms if m.id == r["pos"]]
            found += bool(hit)
            stage1 += bool(hit) and hit[0].stage == 1
            false += sum(m.id != r["pos"] for m in ms)
            if not (hit and hit[0].stage == 1):
                true_scores[min(idx.pair_score(d, pos_of[r["pos"]]), MAX_SCORE)] += 1
        per[spec] = {"queries": queries, "recall": found / queries if queries else None,
                     "found_by_stage1": stage1, "found_by_stage2": found - stage1,
                     "false_matches": false,
                     "stage2_true_score_hist": true_scores.tolist()}
    return per, times


def _distinct_scores(idx: Any, rows: list[dict], sample: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Stage-2 score histograms (with the copy tests, and raw), per-code-pair PDQ distance
    histogram, min-distance histogram and code pairs per image pair, over distinct
    (query, other image) pairs."""
    from ..descriptor import MIN_QUALITY

    rng = np.random.default_rng(seed)
    n = len(rows)
    pos_of = {r["pos"]: i for i, r in enumerate(rows)}
    score_hist = np.zeros(MAX_SCORE + 1, np.int64)
    raw_hist = np.zeros(MAX_SCORE + 1, np.int64)
    code_hist = np.zeros(257, np.int64)
    min_hist = np.zeros(258, np.int64)
    code_pairs = 0
    stored = [(r["index"].pdq[:, 0][r["index"].quality >= MIN_QUALITY]) for r in rows]
    for i, r in enumerate(rows):
        queries = [(r["query"], np.arange(n))] + [
            (v, rng.choice(n, min(sample, n), replace=False))
            for v in r["variants"] if not isinstance(v, str)]
        for q, others in queries:
            qc = q.pdq[q.quality >= MIN_QUALITY].reshape(-1, 32)
            for j in others.tolist():
                if j == i:
                    continue
                c = stored[j]
                if len(qc) and len(c):
                    dist = np.unpackbits(qc[:, None, :] ^ c[None, :, :], axis=2).sum(axis=2)
                    code_hist += np.bincount(dist.ravel(), minlength=257)
                    code_pairs += dist.size
                    min_hist[int(dist.min())] += 1
                else:
                    min_hist[257] += 1
                raw = idx.pair_score(q, pos_of[rows[j]["pos"]], gated=False)
                raw_hist[min(raw, MAX_SCORE)] += 1
                s = idx.pair_score(q, pos_of[rows[j]["pos"]]) if raw else 0
                score_hist[min(s, MAX_SCORE)] += 1
    return score_hist, raw_hist, code_hist, min_hist, code_pairs


def _costs(items: Sequence[tuple[Any, Any]], count: int) -> dict:
    """Describe time per image from its source, one process."""
    from ..descriptor import describe, describe_global, with_local
    from ..imageio import load

    srcs = [src for _id, src in items[:count]]
    out: dict[str, Any] = {"images": len(srcs)}
    if not srcs:
        return out
    describe(srcs[0])  # warm-up: imports, compiled kernels
    for name, fn in (("index_describe_ms", lambda s: describe(s)),
                     ("query_global_ms", lambda s: describe_global(load(s), query=True)),
                     ("query_full_ms", lambda s: with_local(
                         describe_global(img := load(s), query=True), img))):
        t0 = time.perf_counter()
        for s in srcs:
            fn(s)
        out[name] = (time.perf_counter() - t0) / len(srcs) * 1000
    return out


def run_robust(items: Sequence[tuple[Any, Any]], specs: list[str], *, seed: int = 0,
               workers: int = 1, progress: bool = False, pair_sample: int = 16,
               cost_images: int = 32) -> dict:
    """Measure :class:`~hashlib_ext.robust.RobustIndex` on ``items`` (``(id, source)``)
    and the edits ``specs``; returns a JSON-ready dict (see the module doc)."""
    from ..descriptor import INDEX_FEATURES
    from ..robust import MIN_SCORE, PDQ_THRESHOLD

    started = time.perf_counter()
    rows_all = _describe_all(items, specs, seed, workers, progress)
    rows = [r for r in rows_all if "error" not in r]
    errors = [{"id": str(items[r["pos"]][0]), "error": r["error"]}
              for r in rows_all if "error" in r]
    if len(rows) < 2:
        raise ValueError("robust benchmark: fewer than 2 images could be described")
    idx = _index(rows)
    per, times = _match_all(idx, rows, specs)
    queries = sum(p["queries"] for p in per.values())
    false = sum(p["false_matches"] for p in per.values())

    sticker = []
    for k, (a, b) in enumerate(STICKER_PAIRS):
        sidx = _index(rows, "stickers", k)
        fm = same = 0
        for r in rows:
            ms = sidx.match(r["stickers"][k][1])
            fm += sum(m.id != r["pos"] for m in ms)
            same += any(m.id == r["pos"] for m in ms)
        sticker.append({"indexed": a, "query": b, "pairs": len(rows) * (len(rows) - 1),
                        "false_matches": fm, "same_photo_found": same})

    score_hist, raw_hist, code_hist, min_hist, code_pairs = _distinct_scores(
        idx, rows, pair_sample, seed)
    pairs = int(score_hist.sum())
    tail = tailmodel.fit_tail(raw_hist)  # the raw count bounds the score: conservative
    per_code = fprmodel.fit(code_hist, tail_fraction=0.001)
    mean_codes = code_pairs / max(1, int(min_hist[:257].sum()))
    half = TARGET_FPR / 2
    t1 = -1
    for t in range(257):
        if tailmodel.union_fpr(per_code.fpr(t), mean_codes) <= half:
            t1 = t
    s2 = tail.threshold_for(half)
    emp_s = np.cumsum(score_hist[::-1])[::-1] / max(1, pairs)
    emp_t = np.cumsum(min_hist[:257]) / max(1, pairs)
    return {
        "defaults": {"pdq_threshold": PDQ_THRESHOLD, "min_score": MIN_SCORE,
                     "index_features": INDEX_FEATURES},
        "images": len(rows),
        "transforms": per,
        "queries": queries,
        "false_matches": false,
        "false_pairs": queries * (len(rows) - 1),
        "empirical_fpr": false / max(1, queries * (len(rows) - 1)),
        "stickers": sticker,
        "distinct": {
            "pairs": pairs,
            "score_hist": score_hist.tolist(),
            "raw_score_hist": raw_hist.tolist(),
            "empirical_fpr_raw_at_min_score": float(
                np.cumsum(raw_hist[::-1])[::-1][min(MIN_SCORE, MAX_SCORE)] / max(1, pairs)),
            "min_pdq_hist": min_hist.tolist(),
            "empirical_fpr_at_min_score": float(emp_s[min(MIN_SCORE, MAX_SCORE)]),
            "empirical_fpr_at_pdq_threshold": float(emp_t[PDQ_THRESHOLD]),
            "code_pairs_per_image_pair": mean_codes,
        },
        "model": {
            "label": "MODEL (extrapolated), not measured",
            "target_fpr": TARGET_FPR,
            "stage2": {**tail.to_dict(), "fpr_at_default": tail.fpr(MIN_SCORE),
                       "min_score_for_target": s2},
            "stage1": {**per_code.to_dict(), "union_codes": mean_codes,
                       "fpr_at_default": tailmodel.union_fpr(per_code.fpr(PDQ_THRESHOLD),
                                                             mean_codes),
                       "pdq_threshold_for_target": t1},
        },
        "match_ms": {k: {"queries": len(v), "median": float(np.median(v) * 1000)
                         if v else None, "p99": float(np.quantile(v, 0.99) * 1000)
                         if v else None} for k, v in times.items()},
        "costs": _costs(items, cost_images),
        "errors": errors,
        "seconds": time.perf_counter() - started,
    }
