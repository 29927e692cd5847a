"""Sharded index on a dask LocalCluster vs one HashIndex: search throughput, per-batch
overhead, worker memory, and dedup wall time and peak memory, in one run.

Data: ``--n`` random 256-bit codes (PDQ width) of which ``--dup-fraction`` are planted near
copies of others (0..``--max-flips`` bits flipped, so they match at threshold 31; random
codes are ~128 bits apart and never do). Ids are 0..n-1.

Search: query batches of each ``--batch-sizes`` (half planted copies, half fresh random
codes) at ``--threshold``, answered by one HashIndex in this process and by the
ShardedIndex (``--shards`` shards) on a LocalCluster of ``--workers`` single-threaded worker
processes; every distributed answer is checked against the single index. Per batch size:
queries/s both ways, the mean wall time of a batch, and the overhead of a batch: its wall
time minus the busiest worker's compute time in the shard tasks (from dask's task stream),
i.e. what dask, transfers and the merge add to the searching itself. CPU time per query
is recorded beside each rate (this process's for the single index, the workers' for the
cluster), since on a shared machine wall-clock rates follow the other jobs' load.

Memory: resident set (RSS) of each worker after its shards are loaded, and each worker's
peak RSS while loading, while searching and during dedup (sampled every 0.1 s by a thread
in the worker; ``ru_maxrss`` would report the parent's peak, which Linux carries across
fork and exec). Dedup: ``find_duplicates_sharded`` on the cluster,
wall time and clusters, checked against ``hx.find_duplicates`` on one process (also timed)
unless ``--no-single-dedup``.

    python benchmarks/sharded_scale.py --n 1000000 --out sharded-1m.json
    python benchmarks/sharded_scale.py --n 10000000 --shards 4 --workers 2 --out sharded-10m.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import hashlib_ext as hx
from hashlib_ext.sharded_dedup import find_duplicates_sharded, join_forest

MiB = 1 << 20


def planted(n: int, fraction: float, max_flips: int, seed: int) -> np.ndarray:
    """``n`` random 256-bit codes, ``fraction`` of them near copies of other rows."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    k = int(n * fraction)
    dst = rng.choice(n, k, replace=False)
    src = rng.integers(0, n, k)
    copies = codes[src].copy()
    flips = rng.integers(0, max_flips + 1, k)
    for j in range(max_flips):
        rows = np.flatnonzero(flips > j)
        b = rng.integers(0, 256, rows.size)
        copies[rows, b // 8] ^= (1 << (b % 8)).astype(np.uint8)
    codes[dst] = copies
    return codes


def queries(codes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    half = size // 2
    near = codes[rng.integers(0, codes.shape[0], half)].copy()
    near[:, 0] ^= 1  # one bit off an indexed code
    fresh = rng.integers(0, 256, (size - half, 32), dtype=np.uint8)
    return np.concatenate([near, fresh])


def rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int:
    """This process's high-water RSS. Not for dask workers: Linux keeps ``ru_maxrss``
    across fork and exec, so a worker would report its parent's peak."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def start_sampler(dask_worker: Any, interval: float = 0.1) -> int:
    """In a worker (``client.run``): sample its RSS every ``interval`` s in a thread,
    keeping the highest seen (read and reset with :func:`sampled_peak`)."""
    import threading

    import psutil

    proc = psutil.Process()
    box = [proc.memory_info().rss]
    dask_worker.hx_rss_peak = box

    def loop() -> None:
        while getattr(dask_worker, "hx_rss_peak", None) is box:
            box[0] = max(box[0], proc.memory_info().rss)
            time.sleep(interval)

    threading.Thread(target=loop, daemon=True, name="rss-sampler").start()
    return box[0]


def sampled_peak(dask_worker: Any, reset: bool = True) -> int:
    """The highest RSS sampled in this worker since the last reset."""
    import psutil

    box = dask_worker.hx_rss_peak
    peak = max(box[0], psutil.Process().memory_info().rss)
    if reset:
        box[0] = psutil.Process().memory_info().rss
    return int(peak)


def timed_batches(fn: Any, batches: list[np.ndarray], *args: Any) -> list[float]:
    """Wall time of ``fn(q, *args)`` per batch; the CPU time of the whole loop (this
    process, all threads) is appended last."""
    out = []
    cpu = time.process_time()
    for q in batches:
        t0 = time.perf_counter()
        fn(q, *args)
        out.append(time.perf_counter() - t0)
    out.append(time.process_time() - cpu)
    return out


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used: what a worker has spent."""
    import psutil

    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def probe(n: int, threshold: int, say: Any) -> dict[str, Any]:
    """One HashIndex of ``n`` planted codes: build time, memory, one-thread queries/s for
    batches of 10,000 (the per-shard search rate at that shard size), and the rate at
    which dedup's pair join searches indexed codes in it (100k of them)."""
    codes = planted(n, 0.01, 16, seed=3)
    t0 = time.perf_counter()
    index = hx.HashIndex("pdq")
    index.add(codes)
    index.prepare()
    build = time.perf_counter() - t0
    rng = np.random.default_rng(4)
    bs = [queries(codes, 10_000, rng) for _ in range(3)]
    index.search(bs[0][:100], threshold)
    *walls, cpu = timed_batches(index.search, bs, threshold)
    m = min(n, 100_000)  # dedup's self-join of m indexed codes: its shard-queries/s
    t0, c0 = time.perf_counter(), time.process_time()
    join_forest(index, codes[:m], np.arange(m, dtype=np.int64), threshold)
    join, join_cpu = m / (time.perf_counter() - t0), (time.process_time() - c0) / m
    out = {"n": n, "build_s": build, "nbytes": index.nbytes,
           "qps_batch_10000": 30_000 / sum(walls), "cpu_ms_per_query": 1e3 * cpu / 30_000,
           "join_qps": join, "join_cpu_ms_per_query": 1e3 * join_cpu}
    say(f"probe: one HashIndex of {n}: {out['qps_batch_10000']:.0f} q/s, join "
        f"{join:.0f} codes/s, {index.nbytes / MiB:.0f} MiB, built in {build:.0f}s")
    return out


def forest_probe(edges: int, say: Any) -> dict[str, Any]:
    """The client's last step of sharded dedup on a forest of ``edges`` edges (pairs of
    near-duplicate clusters of 2-5 ids): time and peak memory (tracemalloc: numpy's and
    scipy's arrays) of merging it and listing the clusters."""
    import tracemalloc

    from hashlib_ext.sharded_dedup import clusters, merge_forests

    rng = np.random.default_rng(5)
    ids = rng.permutation(2 * edges).astype(np.int64)
    sizes = rng.integers(2, 6, edges)  # cluster sizes
    starts = np.concatenate([[0], np.cumsum(sizes)])
    k = int(np.searchsorted(starts, edges))  # clusters covering ``edges`` member links
    head = np.repeat(ids[starts[:k]], sizes[:k] - 1)[:edges]
    inside = np.ones(int(starts[k]), bool)
    inside[starts[:k]] = False  # every position of the first k clusters but their heads
    member = ids[:int(starts[k])][inside][:edges]
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    found = clusters(merge_forests((head, member)))
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = {"edges": edges, "clusters": len(found), "s": wall, "peak_bytes": peak,
           "peak_bytes_per_edge": peak / edges}
    say(f"forest of {edges} edges -> {len(found)} clusters: {wall:.1f}s, peak "
        f"{peak / MiB:.0f} MiB ({out['peak_bytes_per_edge']:.0f} B/edge)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-sizes", default="1,100,10000")
    ap.add_argument("--threshold", type=int, default=31)
    ap.add_argument("--dup-fraction", type=float, default=0.01)
    ap.add_argument("--max-flips", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=0,
                    help="batches per size (default: about 20k queries, 3 to 50 batches)")
    ap.add_argument("--no-single-dedup", action="store_true",
                    help="skip hx.find_duplicates on one process (the reference)")
    ap.add_argument("--no-dedup", action="store_true", help="measure search only")
    ap.add_argument("--forest-probe", type=int, default=0, metavar="E",
                    help="also time turning a forest of E edges into clusters on the client "
                         "(what sharded dedup ends with) and its peak memory")
    ap.add_argument("--shard-probe", default="", metavar="N[,N...]",
                    help="also build one HashIndex of N codes (a planned shard size; a "
                         "comma-separated list for several, one after another) and measure "
                         "its one-thread queries/s and memory")
    ap.add_argument("--probe-only", action="store_true",
                    help="run the --shard-probe and --forest-probe measurements only")
    ap.add_argument("--folder", default=None, help="where to write the shards (default: temp)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    res: dict[str, Any] = {
        "n": args.n, "shards": args.shards, "workers": args.workers,
        "threshold": args.threshold, "dup_fraction": args.dup_fraction,
        "max_flips": args.max_flips, "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "machine": platform.machine(), "loadavg_start": os.getloadavg(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    }

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if args.probe_only:
        return finish(args, res, say, probes_only=True)
    t0 = time.perf_counter()
    codes = planted(args.n, args.dup_fraction, args.max_flips, seed=1)
    say(f"{args.n} codes in {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    one = hx.HashIndex("pdq")
    one.add(codes)
    one.prepare()
    res["single_build_s"] = time.perf_counter() - t0
    res["single_nbytes"] = one.nbytes
    say(f"one HashIndex: {res['single_build_s']:.1f}s, {one.nbytes / MiB:.0f} MiB")

    tmp = tempfile.TemporaryDirectory(prefix="sharded-bench-", dir=args.folder)
    folder = os.path.join(tmp.name, "idx")
    t0 = time.perf_counter()
    idx = hx.ShardedIndex.build(hx.HashArray(codes, "pdq"), folder, shards=args.shards)
    res["sharded_build_s"] = time.perf_counter() - t0
    res["shard_file_bytes"] = [e.size for e in idx.manifest.shards]
    res["shard_counts"] = [e.count for e in idx.manifest.shards]
    say(f"ShardedIndex.build ({args.shards} shards, one process): "
        f"{res['sharded_build_s']:.1f}s")

    rng = np.random.default_rng(2)
    batches = {}
    for size in sizes:
        rounds = args.rounds or max(3, min(50, 20_000 // size))
        batches[size] = [queries(codes, size, rng) for _ in range(rounds)]

    # One HashIndex, this process (FAISS and the MIH kernel use the cores they can).
    res["single_search"] = {}
    for size, bs in batches.items():
        one.search(bs[0], args.threshold)  # warm
        *walls, cpu = timed_batches(one.search, bs, args.threshold)
        res["single_search"][size] = {"batches": len(bs), "mean_batch_s": statistics.mean(walls),
                                      "qps": size * len(bs) / sum(walls),
                                      "cpu_ms_per_query": 1e3 * cpu / (size * len(bs))}
        say(f"one index, batch {size}: {res['single_search'][size]['qps']:.0f} q/s")

    # The same shards searched one after another in this process (no dask): what querying
    # every shard costs by itself.
    local = hx.ShardedIndex.open(folder)
    res["inprocess_sharded_search"] = {}
    for size, bs in batches.items():
        local.search(bs[0], args.threshold)  # loads the shards, warms
        *walls, cpu = timed_batches(local.search, bs, args.threshold)
        res["inprocess_sharded_search"][size] = {
            "batches": len(bs), "mean_batch_s": statistics.mean(walls),
            "qps": size * len(bs) / sum(walls),
            "cpu_ms_per_query": 1e3 * cpu / (size * len(bs))}
        say(f"sharded in this process, batch {size}: "
            f"{res['inprocess_sharded_search'][size]['qps']:.0f} q/s")
    local.release()
    del local
    gc.collect()

    from distributed import Client, LocalCluster, get_task_stream

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, memory_limit=0) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(args.workers)
        base = client.run(rss)
        client.run(start_sampler)
        t0 = time.perf_counter()
        idx = hx.ShardedIndex.open(folder)
        client.gather(idx.shard_futures(client))
        res["cluster_load_s"] = time.perf_counter() - t0
        loaded = client.run(rss)
        res["worker_rss_idle"] = list(base.values())
        res["worker_rss_loaded"] = [loaded[w] for w in base]
        res["worker_peak_rss_loading"] = list(client.run(sampled_peak).values())
        res["worker_shards"] = {w: sum(1 for x in idx.shard_workers(client) if x == w)
                                for w in base}
        say(f"shards loaded on the cluster in {res['cluster_load_s']:.1f}s; worker RSS "
            f"{[round(v / MiB) for v in res['worker_rss_loaded']]} MiB")

        res["sharded_search"] = {}
        for size, bs in batches.items():
            idx.search(bs[0], args.threshold, client=client)  # warm
            walls, overheads = [], []
            cpu0 = sum(client.run(cpu_seconds).values())
            for q in bs:
                with get_task_stream(client) as ts:
                    t0 = time.perf_counter()
                    got = idx.search(q, args.threshold, client=client)
                    wall = time.perf_counter() - t0
                busy: dict[str, float] = {}  # compute time of the shard tasks, per worker
                for t in ts.data:
                    if str(t["key"]).startswith("search_shard"):
                        busy[t["worker"]] = busy.get(t["worker"], 0.0) + sum(
                            s["stop"] - s["start"] for s in t["startstops"]
                            if s["action"] == "compute")
                walls.append(wall)
                overheads.append(wall - max(busy.values(), default=0.0))
                if got != one.search(q, args.threshold):
                    raise SystemExit(f"batch of {size}: sharded answer differs from one index")
            cpu = sum(client.run(cpu_seconds).values()) - cpu0
            res["sharded_search"][size] = {
                "worker_cpu_ms_per_query": 1e3 * cpu / (size * len(bs)),
                "batches": len(bs), "mean_batch_s": statistics.mean(walls),
                "median_batch_s": statistics.median(walls),
                "qps": size * len(bs) / sum(walls),
                "overhead_mean_s": statistics.mean(overheads),
                "overhead_median_s": statistics.median(overheads)}
            r = res["sharded_search"][size]
            say(f"sharded, batch {size}: {r['qps']:.0f} q/s, batch {r['mean_batch_s'] * 1e3:.1f}"
                f" ms, overhead {r['overhead_median_s'] * 1e3:.1f} ms (median)")
        res["search_exact"] = True
        res["worker_peak_rss_search"] = list(client.run(sampled_peak).values())

        del one
        gc.collect()
        if args.no_dedup:
            args.no_single_dedup = True
            clusters = []
        else:
            t0 = time.perf_counter()
            cpu0 = sum(client.run(cpu_seconds).values())
            clusters = find_duplicates_sharded(idx, args.threshold, client=client)
            res["sharded_dedup_worker_cpu_s"] = sum(client.run(cpu_seconds).values()) - cpu0
            res["sharded_dedup_s"] = time.perf_counter() - t0
            res["worker_peak_rss_dedup"] = list(client.run(sampled_peak).values())
            res["dedup_clusters"] = len(clusters)
            res["dedup_members"] = sum(len(c) for c in clusters)
            say(f"sharded dedup: {res['sharded_dedup_s']:.1f}s, {len(clusters)} clusters, "
                f"worker peaks "
                f"{[round(v / MiB) for v in res['worker_peak_rss_dedup']]} MiB")
    res["client_peak_rss_before_single_dedup"] = peak_rss()

    if not args.no_single_dedup:
        t0 = time.perf_counter()
        ref = hx.find_duplicates(codes, args.threshold)
        res["single_dedup_s"] = time.perf_counter() - t0
        res["dedup_exact"] = ref == clusters
        say(f"one-process find_duplicates: {res['single_dedup_s']:.1f}s, "
            f"identical clusters: {res['dedup_exact']}")
        if not res["dedup_exact"]:
            raise SystemExit("sharded dedup differs from find_duplicates")
    res["client_peak_rss"] = peak_rss()
    del codes
    gc.collect()
    tmp.cleanup()
    return finish(args, res, say)


def finish(args: argparse.Namespace, res: dict[str, Any], say: Any,
           probes_only: bool = False) -> int:
    """The optional probes, then the results (stdout, and ``--out``)."""
    if probes_only:
        for key in [k for k in res if k not in ("command", "cpus", "python", "machine",
                                                   "loadavg_start")]:
            del res[key]
    if args.forest_probe:
        res["forest_probe"] = forest_probe(args.forest_probe, say)
    if args.shard_probe:
        res["shard_probe"] = [probe(int(n), args.threshold, say)
                              for n in args.shard_probe.split(",")]
    res["loadavg_end"] = os.getloadavg()
    text = json.dumps(res, indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
