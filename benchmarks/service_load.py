"""Load test of ``hashlib-ext serve``: hash lookups against 1M and 10M PDQ hashes, over
HTTP on the loopback interface, beside a direct in-process ``HashIndex.search`` loop over
the same queries in the same run (their ratio is the service's overhead).

For each bank size: build a bank of uniform random 256-bit codes (MIH tables built and
saved), time the in-process loop (one query per call, one thread, then two), start the
server on 127.0.0.1, check its answers against the in-process ones, then drive
``POST /v1/match`` (one hash per request) with 1, 8 and 64 concurrent clients for a fixed
time each, reporting requests/s and p50/p99 latency; then requests carrying 16 hashes each
(labelled separately: hash lookups/s, not requests/s); then image uploads (COCO JPEGs,
``POST /v1/match``) per second. Every run is bounded in time and count; nothing leaves the
machine.

The load generator is ``wrk`` when installed (C, one thread, a Lua script cycling through
the query bodies); otherwise a Python asyncio client (raw HTTP/1.1 keep-alive sockets;
slower, so it takes a larger share of the CPU it shares with the server). Half the queries
are stored codes with 0..t+2 bits flipped (most match), half random (no match).

    python benchmarks/service_load.py --sizes 1000000 10000000 --out docs/service-load.md
    python benchmarks/service_load.py --sizes 100000 --seconds 3 --client python   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hashlib_ext.index import HashIndex  # noqa: E402

WRK_SCRIPT = r"""
local bodies = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  i = math.random(#bodies)
end
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/match", {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def flip(codes: np.ndarray, rng: np.random.Generator, max_flips: int) -> np.ndarray:
    out = codes.copy()
    k = rng.integers(0, max_flips + 1, len(codes))
    for j in range(max_flips):
        rows = np.flatnonzero(k > j)
        b = rng.integers(0, codes.shape[1] * 8, rows.size)
        out[rows, b // 8] ^= (1 << (7 - b % 8)).astype(np.uint8)
    return out


def make_data(n: int, queries: int, t: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    near = flip(codes[rng.integers(0, n, queries // 2)], rng, t + 2)
    far = rng.integers(0, 256, (queries - len(near), 32), dtype=np.uint8)
    q = np.concatenate([near, far])
    return codes, q[rng.permutation(len(q))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) and of its descendants
    alive now (the forkserver and the decoding workers it forked), from /proc (Linux); NaN
    elsewhere."""
    try:
        total, todo = 0.0, [pid]
        while todo:
            p = todo.pop()
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{p}/task/{p}/children") as f:
                    todo += [int(c) for c in f.read().split()]
            except FileNotFoundError:  # ended meanwhile
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def percentiles(lat: list[float]) -> tuple[float, float]:
    a = np.asarray(lat) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


# -- in process --------------------------------------------------------------------------------
def inprocess(index: HashIndex, queries: np.ndarray, t: int, seconds: float,
              threads: int) -> dict[str, Any]:
    """One query per ``search`` call, in ``threads`` threads, for ``seconds``."""
    stop = time.perf_counter() + seconds
    lats: list[list[float]] = [[] for _ in range(threads)]

    def loop(k: int) -> None:
        i, out = k, lats[k]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            index.search(queries[i % len(queries)][None], t)
            out.append(time.perf_counter() - t0)
            i += threads

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    flat = [x for part in lats for x in part]
    p50, p99 = percentiles(flat)
    return {"rps": len(flat) / elapsed, "p50_ms": p50, "p99_ms": p99, "count": len(flat)}


# -- the server --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(folder: Path, log: Path, decode_workers: int,
                 search_threads: int) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HASHLIB_EXT_TOKEN", None)
    with open(log, "ab") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hashlib_ext", "serve", str(folder), "--port", str(port),
             "--decode-workers", str(decode_workers), "--search-threads",
             str(search_threads), "--log-level", "warning"],
            stdout=f, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server ended:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def body(hexes: list[str], t: int) -> str:
    return json.dumps({"algorithm": "pdq", "hashes": hexes, "threshold": t,
                       "banks": ["bench"]}, separators=(",", ":"))


def check_answers(url: str, index: HashIndex, queries: np.ndarray, t: int) -> int:
    """Compare the service's matches with the index's for 200 queries; returns how many of
    them matched something."""
    import httpx

    sample = queries[:200]
    want = index.search(sample, t)
    with httpx.Client(base_url=url, timeout=60) as c:
        got = c.post("/v1/match", content=body([bytes(q).hex() for q in sample], t),
                     headers={"content-type": "application/json"}).json()["results"]
    for w, g in zip(want, got, strict=True):
        if [(m["id"], m["distance"]) for m in g["matches"]] != [tuple(x) for x in w]:
            raise AssertionError("the service and the index disagree")
    return sum(1 for w in want if w)


# -- load generators ---------------------------------------------------------------------------
def run_wrk(url: str, bodies: Path, conc: int, seconds: float) -> dict[str, Any]:
    script = bodies.with_suffix(".lua")
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conc}", f"-d{max(1, int(seconds))}s", "--latency",
         "--timeout", "10s", "-s", str(script), url, "--", str(bodies)],
        capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m is not None, out
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        raise RuntimeError(f"wrk saw failures:\n{out}")
    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"),
            "seconds": max(1, int(seconds))}


async def _py_load(host: str, port: int, requests: list[bytes], conc: int,
                   seconds: float) -> dict[str, Any]:
    stop = time.perf_counter() + seconds
    lats: list[float] = []
    failures: list[str] = []

    async def one(k: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        i = k
        try:
            while time.perf_counter() < stop:
                req = requests[i % len(requests)]
                i += conc
                t0 = time.perf_counter()
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                answer = await reader.readexactly(int(m.group(1)) if m else 0)
                lats.append(time.perf_counter() - t0)
                if status != 200:
                    failures.append(f"{status} {answer[:300]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(conc)))
    elapsed = time.perf_counter() - started
    p50, p99 = percentiles(lats)
    out = {"rps": len(lats) / elapsed, "p50_ms": p50, "p99_ms": p99, "seconds": elapsed}
    if failures:  # counted and shown, not hidden: the rate includes them
        out["failed"] = len(failures)
        out["failure"] = failures[0]
    return out


def http_request(path: str, payload: bytes, ctype: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


def run_python(url: str, payloads: list[bytes], conc: int, seconds: float,
               path: str = "/v1/match", ctype: str = "application/json") -> dict[str, Any]:
    host, port = url.split("//")[1].split(":")
    reqs = [http_request(path, p, ctype) for p in payloads]
    return asyncio.run(_py_load(host, int(port), reqs, conc, seconds))


# -- one bank size -----------------------------------------------------------------------------
def measure(n: int, args: argparse.Namespace, work: Path, use_wrk: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    t = args.threshold

    def row(kind: str, conc: int | str, res: dict[str, Any], unit: str = "requests/s") -> None:
        r = {"n": n, "what": kind, "clients": conc, "unit": unit, **res,
             "load": load_average()}
        rows.append(r)
        cpu = f"  server CPU {res['cpu_us']:.0f} us/req" if "cpu_us" in res else ""
        if res.get("failed"):
            cpu += f"  FAILED: {res['failed']} (e.g. {res['failure']})"
        print(f"  {kind:<34} c={conc!s:<3} {res['rps']:>9,.0f} {unit:<16} "
              f"p50 {res.get('p50_ms', float('nan')):7.3f} ms  "
              f"p99 {res.get('p99_ms', float('nan')):7.3f} ms{cpu}  (load {r['load']})",
              flush=True)

    def served(fn: Any, *a: Any) -> dict[str, Any]:
        """Run a load, adding the server's CPU time per request."""
        before = cpu_seconds(proc.pid)
        res: dict[str, Any] = fn(*a)
        used = cpu_seconds(proc.pid) - before
        res["cpu_us"] = used / max(1.0, res["rps"] * res["seconds"]) * 1e6
        return res

    print(f"n = {n:,}: generating and indexing ...", flush=True)
    codes, queries = make_data(n, args.queries, t, seed=n % 1000)
    folder = work / f"banks-{n}"
    folder.mkdir()
    started = time.perf_counter()
    index = HashIndex("pdq")
    index.add(codes)
    del codes
    index.prepare()
    index.save(folder / "bench.hidx")
    print(f"  built and saved in {time.perf_counter() - started:.1f} s "
          f"({index.nbytes / 1e6:.0f} MB)", flush=True)
    index.search(queries[:1], t)
    for threads in (1, 2):
        row(f"in-process search, {threads} thread{'s' * (threads > 1)}", threads,
            inprocess(index, queries, t, args.seconds, threads), "searches/s")

    bodies = [body([bytes(q).hex()], t) for q in queries]
    bodies_file = work / f"bodies-{n}.txt"
    bodies_file.write_text("\n".join(bodies) + "\n")
    proc, url = start_server(folder, work / f"server-{n}.log", args.decode_workers,
                             args.search_threads)
    try:
        hits = check_answers(url, index, queries, t)
        print(f"  answers equal the in-process search ({hits} of 200 sampled queries "
              "matched)", flush=True)
        del index
        gc.collect()
        payloads = [b.encode() for b in bodies]
        for conc in args.clients:
            res = served(run_wrk, url, bodies_file, conc, args.seconds) if use_wrk else \
                served(run_python, url, payloads, conc, args.seconds)
            row("service, 1 hash per request", conc, res)
        batch = 16
        groups = [body([bytes(q).hex() for q in queries[i:i + batch]], t)
                  for i in range(0, len(queries) - batch + 1, batch)]
        gfile = work / f"batches-{n}.txt"
        gfile.write_text("\n".join(groups) + "\n")
        res = served(run_wrk, url, gfile, 8, args.seconds) if use_wrk else \
            served(run_python, url, [g.encode() for g in groups], 8, args.seconds)
        row(f"service, {batch} hashes per request", 8, res)
        row(f"  = hash lookups ({batch} per request)", 8,
            {"rps": res["rps"] * batch}, "lookups/s")
        if args.images and args.image_seconds > 0:
            images = [p.read_bytes() for p in args.images[:64]]
            res = served(run_python, url, images, args.image_clients, args.image_seconds,
                         "/v1/match?robust=false", "image/jpeg")
            row("service, image upload + match", args.image_clients, res, "images/s")
    finally:
        stop_server(proc)
        shutil.rmtree(folder, ignore_errors=True)
        if any(r.get("failed") for r in rows):
            log = (work / f"server-{n}.log").read_text(errors="replace")
            print(f"  server log (failures above):\n{log[-4000:]}", flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], client: str) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
             f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load generator: "
             f"{client} (on the same CPUs).", "",
             "| hashes in bank | what | clients | rate | p50 ms | p99 ms | server CPU "
             "us/request | load avg |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p50 = f"{r['p50_ms']:.2f}" if "p50_ms" in r else "-"
        p99 = f"{r['p99_ms']:.2f}" if "p99_ms" in r else "-"
        cpu = f"{r['cpu_us']:.0f}" if "cpu_us" in r else "-"
        what = r["what"].strip() + (f" ({r['failed']} failed)" if r.get("failed") else "")
        lines.append(f"| {r['n']:,} | {what} | {r['clients']} | "
                     f"{r['rps']:,.0f} {r['unit']} | {p50} | {p99} | {cpu} | {r['load']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--seconds", type=float, default=10.0, help="per measurement (max 60)")
    p.add_argument("--queries", type=int, default=4000)
    p.add_argument("--threshold", type=int, default=31)
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--search-threads", type=int, default=2)
    p.add_argument("--decode-workers", type=int, default=2)
    p.add_argument("--image-clients", type=int, default=4)
    p.add_argument("--image-seconds", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=None, help="append a Markdown table here")
    p.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    args.seconds = min(args.seconds, 60.0)
    args.image_seconds = min(args.image_seconds, 60.0)
    if max(args.sizes) > 20_000_000 or max(args.clients) > 256:
        p.error("bounded: at most 20M hashes and 256 clients")
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    if args.client == "wrk" and not shutil.which("wrk"):
        p.error("wrk is not installed")
    args.images = sorted((ROOT / "datasets" / "coco-mini").glob("*.jpg"))
    shared = ROOT.parent / "shared" / "datasets" / "coco-sample"
    args.images += sorted(shared.rglob("*.jpg"))[:32]
    client = "wrk (1 thread)" if use_wrk else "Python asyncio client"
    print(f"load generator: {client}; load average {load_average()}", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hashlib-ext-load-") as tmp:
        for n in args.sizes:
            rows += measure(n, args, Path(tmp), bool(use_wrk))
    table = markdown(rows, client)
    print(table)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(table + "\n")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
