"""Cost of adding a few hashes between searches: add(k codes) + search(1 query) on an MIH
index, with the tail (current behaviour) and with a forced table rebuild after each add
(what every add cost before incremental adds). Also the per-query cost of scanning a tail.

    python benchmarks/index_incremental.py --n 1000000 --bits 256 --threshold 31
"""

from __future__ import annotations

import argparse
import statistics
import time

import faiss
import numpy as np

from hashlib_ext import index as index_mod
from hashlib_ext.index import HashIndex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--bits", type=int, default=256)
    ap.add_argument("--threshold", type=int, default=31)
    ap.add_argument("--add", type=int, default=100, help="codes added before each search")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    nb = args.bits // 8
    db = rng.integers(0, 256, (args.n, nb), dtype=np.uint8)
    queries = rng.integers(0, 256, (2000, nb), dtype=np.uint8)
    ix = HashIndex(bits=args.bits, kind="mih")
    ix.add(db)
    t0 = time.perf_counter()
    ix.prepare()
    print(f"n={args.n} bits={args.bits} t={args.threshold}: "
          f"table build {time.perf_counter() - t0:.2f} s")
    ix.search(queries[:10], args.threshold)  # compile / warm up

    def round_(rebuild: bool) -> float:
        new = rng.integers(0, 256, (args.add, nb), dtype=np.uint8)
        t0 = time.perf_counter()
        ix.add(new)
        if rebuild:
            ix._tables = None  # the previous behaviour: every add dropped the tables
        ix.search(queries[:1], args.threshold)
        return time.perf_counter() - t0

    full = [round_(True) for _ in range(args.rounds)]
    tail = [round_(False) for _ in range(args.rounds)]  # the tail grows round by round
    mt, mf = statistics.median(tail), statistics.median(full)
    print(f"add({args.add}) + search(1): rebuild each time {mf * 1e3:.1f} ms, "
          f"with tail {mt * 1e3:.2f} ms ({mf / mt:.0f}x), median of {args.rounds}")

    # Per-query search cost as the tail grows (tables over the first n codes).
    index_mod.TAIL_MIN = 10**9  # keep the tail for this measurement
    index_mod.TAIL_MAX = 10**9
    for size in (0, 10_000, 50_000, 100_000):
        ix = HashIndex(bits=args.bits, kind="mih")
        ix.add(db)
        ix.prepare()
        if size:
            ix.add(rng.integers(0, 256, (size, nb), dtype=np.uint8))
        ix.search(queries[:10], args.threshold)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            ix.search(queries, args.threshold)
            runs.append(time.perf_counter() - t0)
        qps = len(queries) / statistics.median(runs)
        print(f"tail {size:>7}: {qps:,.0f} queries/s")


if __name__ == "__main__":
    main()
