"""Threaded search speed-up: the same exact threshold queries on one shared MIH index, from
1 thread and from N threads (each taking every N-th batch), with the compiled kernel
releasing the GIL. FAISS is kept to one OpenMP thread so only our threads add parallelism.
Results of every run are checked equal to the one-thread run. ``--dedup N`` also times
``find_duplicates`` over N codes (a tenth of them near copies of others) with its batches
searched from 1 thread and from ``--threads`` threads.

    python benchmarks/index_threads.py --n 1000000 --bits 256 --threshold 31 --threads 2
    python benchmarks/index_threads.py --n 0 --dedup 300000 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np

from hashlib_ext import dedup
from hashlib_ext.index import HashIndex


def flip_random(codes: np.ndarray, rng: np.random.Generator, max_flips: int) -> np.ndarray:
    """Copies of ``codes`` with up to ``max_flips`` random bits flipped each."""
    bits = np.unpackbits(codes, axis=1)
    for row in bits:
        k = int(rng.integers(0, max_flips + 1))
        row[rng.choice(row.size, k, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--bits", type=int, default=256)
    ap.add_argument("--threshold", type=int, default=31)
    ap.add_argument("--queries", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=256, help="queries per search call")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dedup", type=int, default=0, help="also time find_duplicates on N codes")
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    if args.n:
        search_speedup(args)
    if args.dedup:
        dedup_speedup(args)


def dedup_speedup(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(1)
    nb, n = args.bits // 8, args.dedup
    codes = rng.integers(0, 256, (n, nb), dtype=np.uint8)
    near = n // 10
    codes[n - near:] = flip_random(codes[:near], rng, args.threshold // 2)
    times: dict[int, list[float]] = {1: [], args.threads: []}
    results = []
    for _ in range(args.rounds):
        for threads in times:
            dedup.MAX_THREADS = threads
            t0 = time.perf_counter()
            results.append(dedup.find_duplicates(codes, args.threshold))
            times[threads].append(time.perf_counter() - t0)
    assert all(r == results[0] for r in results)
    m1, mn = statistics.median(times[1]), statistics.median(times[args.threads])
    print(f"find_duplicates n={n} bits={args.bits} t={args.threshold}: 1 thread {m1:.2f} s, "
          f"{args.threads} threads {mn:.2f} s, speed-up {m1 / mn:.2f}x "
          f"({len(results[0])} clusters, median of {args.rounds}; all results equal)")


def search_speedup(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    nb = args.bits // 8
    db = rng.integers(0, 256, (args.n, nb), dtype=np.uint8)
    # Half the queries are stored codes moved by up to t bits (matches), half are random.
    half = args.queries // 2
    queries = np.concatenate([
        flip_random(db[rng.integers(0, args.n, half)], rng, args.threshold),
        rng.integers(0, 256, (args.queries - half, nb), dtype=np.uint8)])
    ix = HashIndex(bits=args.bits, kind="mih")
    ix.add(db)
    ix.prepare()
    ix.search_arrays(queries[:10], args.threshold)  # compile / warm up
    batches = [queries[i:i + args.batch] for i in range(0, len(queries), args.batch)]

    def work(part: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
        return [ix.search_arrays(b, args.threshold) for b in part]

    cpu: dict[int, list[float]] = {}

    def run(threads: int) -> tuple[float, list[tuple[np.ndarray, ...]]]:
        parts = [batches[i::threads] for i in range(threads)]
        t0, c0 = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(threads) as pool:
            done = list(pool.map(work, parts))
        elapsed = time.perf_counter() - t0
        cpu.setdefault(threads, []).append((time.process_time() - c0) / elapsed)
        out: list[tuple[np.ndarray, ...]] = [()] * len(batches)
        for i, res in enumerate(done):
            out[i::threads] = res
        return elapsed, out

    _, reference = run(1)
    one, many = [], []
    for _ in range(args.rounds):  # interleaved, so load from other jobs hits both alike
        t1, r1 = run(1)
        tn, rn = run(args.threads)
        for res in (r1, rn):
            for a, b in zip(reference, res, strict=True):
                assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        one.append(t1)
        many.append(tn)
    m1, mn = statistics.median(one), statistics.median(many)
    stats = ix.stats()
    print(f"n={args.n} bits={args.bits} t={args.threshold} queries={args.queries} "
          f"batch={args.batch} layout={stats['mih_widths']} slack={stats['mih_slack']} "
          f"cpus={os.cpu_count()}")
    print(f"1 thread: {args.queries / m1:,.0f} queries/s; {args.threads} threads: "
          f"{args.queries / mn:,.0f} queries/s; speed-up {m1 / mn:.2f}x "
          f"(median of {args.rounds}; all results equal); CPU time / wall time: "
          f"{statistics.median(cpu[1]):.2f} with 1 thread, "
          f"{statistics.median(cpu[args.threads]):.2f} with {args.threads}")


if __name__ == "__main__":
    main()
