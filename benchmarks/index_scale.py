"""Scale benchmark for HashIndex: flat scan vs multi-index hashing, 1M-10M codes.

Measures build time, memory, save/load time, single-thread queries/s and recall of the MIH
index against FAISS ``IndexBinaryFlat`` range search (the exact reference) in the same run,
on uniform random codes with planted neighbours and on clustered (near-duplicate) sets, and
appends Markdown table rows to ``--out``.

    python benchmarks/index_scale.py --n 1000000 --bits 256 --threshold 31
    python benchmarks/index_scale.py --n 10000000 --bits 64 --threshold 10 --data clustered
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from hashlib_ext import mih
from hashlib_ext.index import HashIndex

ROOT = Path(__file__).resolve().parent.parent


def flip_random(codes: np.ndarray, rng: np.random.Generator, max_flips: int) -> np.ndarray:
    """Copy of ``codes`` with 0..max_flips random distinct bits flipped per row."""
    n, nb = codes.shape
    bits = nb * 8
    out = codes.copy()
    k = rng.integers(0, max_flips + 1, n)
    for j in range(max_flips):
        rows = np.flatnonzero(k > j)
        # Distinct positions per row: a random permutation prefix would cost O(bits) per row,
        # so draw and accept occasional repeats (they flip back, lowering the distance).
        b = rng.integers(0, bits, rows.size)
        out[rows, b // 8] ^= (1 << (7 - b % 8)).astype(np.uint8)
    return out


def real_centres(bits: int, rng: np.random.Generator) -> np.ndarray | None:
    """PDQ (256) or pHash (64) hashes of the bundled and shared COCO images, if available."""
    try:
        import hashlib_ext as hx
    except Exception:  # pragma: no cover - partial checkouts
        return None
    algo = {256: "pdq", 64: "phash"}.get(bits)
    if algo is None:
        return None
    paths = sorted((ROOT / "datasets" / "coco-mini").glob("*.jpg"))
    paths += sorted((ROOT.parent / "shared" / "datasets" / "coco-sample").rglob("*.jpg"))
    codes = []
    for p in paths:
        try:
            codes.append(hx.hash_image(str(p), algo).code)
        except Exception:
            continue
    return np.stack(codes) if codes else None


def make_data(n: int, bits: int, data: str, t: int, rng: np.random.Generator,
              chunk: int = 1 << 20) -> np.ndarray:
    """``uniform``: random codes. ``clustered``: 30% near-duplicate clusters (each centre
    with variants within ~t bits; centres include real image hashes) + 70% background."""
    nb = bits // 8
    out = np.empty((n, nb), dtype=np.uint8)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        out[lo:hi] = rng.integers(0, 256, (hi - lo, nb), dtype=np.uint8)
    if data == "clustered":
        n_clu = int(n * 0.3)
        per = 20
        real = real_centres(bits, rng)
        centres = rng.integers(0, 256, (max(1, n_clu // per), nb), dtype=np.uint8)
        if real is not None:
            k = min(len(real), len(centres))
            centres[:k] = real[:k]
            # more centres near the real ones: real hash lists have dense neighbourhoods
            centres[k:] = flip_random(real[rng.integers(0, len(real), len(centres) - k)],
                                      rng, 3 * t)
        where = rng.permutation(n)[:n_clu]
        for lo in range(0, n_clu, chunk):
            sel = where[lo:lo + chunk]
            out[sel] = flip_random(centres[rng.integers(0, len(centres), sel.size)], rng, t)
    return out


def timed(fn, repeat: int) -> tuple[float, object]:
    times, res = [], None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), res


def pairs(lims: np.ndarray, ids: np.ndarray) -> set[tuple[int, int]]:
    q = np.repeat(np.arange(len(lims) - 1), np.diff(lims).astype(np.int64))
    return set(zip(q.tolist(), ids.tolist(), strict=True))


def run(args: argparse.Namespace) -> list[str]:
    faiss.omp_set_num_threads(args.threads)
    mih.USE_KERNEL = not args.no_kernel
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    db = make_data(args.n, args.bits, args.data, args.threshold, rng)
    print(f"data {args.data} n={args.n:,} bits={args.bits}: {time.perf_counter() - t0:.1f}s",
          file=sys.stderr)
    nq = args.queries
    src = db[rng.integers(0, args.n, nq)]
    queries = np.concatenate([flip_random(src[: nq // 2], rng, args.threshold + 2),
                              flip_random(src[nq // 2:], rng, args.bits // 2)])
    raw_mb = db.nbytes / 2**20
    rows = []

    flat = HashIndex(bits=args.bits, kind="flat")
    t_build_flat, _ = timed(lambda: flat.add(db), 1)
    nflat = min(nq, args.flat_queries)
    t_flat, ref = timed(lambda: flat.search_arrays(queries[:nflat], args.threshold), args.repeat)
    flat_qps = nflat / t_flat
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        p = os.path.join(d, "flat.hxidx")
        t_save, _ = timed(lambda: flat.save(p), 1)
        t_load, _ = timed(lambda: HashIndex.load(p), 1)
    rows.append(dict(kind="flat", build=t_build_flat, mem=flat.nbytes / 2**20, save=t_save,
                     load=t_load, qps=flat_qps, recall=1.0, speedup=1.0, layout="-"))
    flat = None  # free before building the MIH index
    gc.collect()

    ix = HashIndex(bits=args.bits, kind="mih", design_threshold=args.threshold)

    def build():
        ix.add(db)
        ix.search(queries[:1], args.threshold)  # builds the tables

    t_build, _ = timed(build, 1)
    widths = ix.stats()["mih_widths"]
    slack, inline = ix.stats()["mih_slack"], ix.stats()["mih_inline"]
    plan = mih.plan_radii(tuple(widths), args.threshold, args.n, args.bits // 8, slack, inline)
    ix.search_arrays(queries[:50], args.threshold)  # warm (kernel compile cache, page-in)
    t_mih, got = timed(lambda: ix.search_arrays(queries, args.threshold), args.repeat)
    mih_qps = nq / t_mih
    ref_pairs = pairs(ref[0], ref[1])
    got_lims, got_ids = got[0][: nflat + 1], got[1][: got[0][nflat]]
    got_pairs = pairs(got_lims, got_ids)
    recall = len(ref_pairs & got_pairs) / max(1, len(ref_pairs))
    exact = got_pairs == ref_pairs and np.array_equal(got[2][: got[0][nflat]], ref[2])
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        p = os.path.join(d, "mih.hxidx")
        t_save, _ = timed(lambda: ix.save(p), 1)
        t_load, back = timed(lambda: HashIndex.load(p), 1)
        del back
    layout = (f"{len(widths)}x{widths[0]}b s{slack}{' inline' if inline else ''} r=" +
              ",".join(str(pr.radius) for pr in plan.probes))
    rows.append(dict(kind="mih", build=t_build, mem=ix.nbytes / 2**20, save=t_save,
                     load=t_load, qps=mih_qps, recall=recall, speedup=mih_qps / flat_qps,
                     layout=layout))
    print(f"matches checked: {len(ref_pairs)} (over {nflat} queries), identical: {exact}",
          file=sys.stderr)
    engine = "numpy" if args.no_kernel or mih._kernel() is None else "numba"
    out = []
    for r in rows:
        out.append(
            f"| {args.data} | {args.bits} | {args.n:,} | {args.threshold} | {r['kind']} "
            f"({engine if r['kind'] == 'mih' else 'faiss'}) | {r['layout']} | "
            f"{r['build']:.1f} | {r['mem']:.0f} ({r['mem'] / raw_mb:.2f}x) | "
            f"{r['save']:.2f} / {r['load']:.2f} | {r['qps']:,.0f} | {r['recall']:.3f} | "
            f"{r['speedup']:.1f}x |")
    return out


HEADER = ("| data | bits | n | t | kind | layout | build s | memory MB (x raw) | "
          "save / load s | queries/s | recall | vs flat |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--bits", type=int, default=256)
    ap.add_argument("--threshold", type=int, default=31)
    ap.add_argument("--data", choices=["uniform", "clustered"], default="uniform")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--flat-queries", type=int, default=200,
                    help="queries timed on the flat index (it is slow at 10M)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-kernel", action="store_true", help="numpy MIH path, no numba")
    ap.add_argument("--tmp", default=None, help="folder for save/load timing")
    ap.add_argument("--out", default=None, help="append table rows to this Markdown file")
    args = ap.parse_args(argv)
    rows = run(args)
    print(HEADER)
    print("\n".join(rows))
    if args.out:
        new = not Path(args.out).exists()
        with open(args.out, "a") as f:
            if new:
                f.write(f"Machine: {platform.processor() or platform.machine()}, "
                        f"{os.cpu_count()} cores; single thread.\n\n{HEADER}\n")
            f.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
