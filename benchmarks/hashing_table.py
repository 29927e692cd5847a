"""Side-by-side hashing speed table (issue #2, item 5) for docs/benchmarks-hashing.md.

    python benchmarks/hashing_table.py [--rounds 9] [--pin 0] [--images DIR] [--json out.json]

Every round times each contender over the same images (ms/image, from a file path, one
thread), in a rotating order, so load from other processes hits all contenders alike; ratios
are the median over rounds of the per-round ratio. ``--clock cpu`` (default) counts this
process's CPU time, which on a shared machine is far less disturbed by other processes than
wall time (everything here runs on one thread, so on an idle machine the two agree);
``--clock wall`` counts elapsed time. Prints a Markdown table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_bench_hashing import ALGOS, peer, pil_decode, pil_draft_decode  # noqa: E402

import hashlib_ext as hx  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# (algorithm, speed-up over the peer it must reach in exact mode), from issue #2
TARGETS = {"phash": 1.3, "dhash": 1.3, "whash": 3.0, "pdq": 2.0}
FAST_LIMIT = 1.2  # fast mode within 1.2x of the draft-decode floor


def contenders(algos: list[str]) -> dict[str, callable]:
    c = {"decode: PIL full": pil_decode, "decode: PIL draft 1/8": pil_draft_decode}
    for a in algos:
        c[f"{a}: ours exact"] = lambda p, a=a: hx.hash_image(p, a)
        c[f"{a}: ours fast"] = lambda p, a=a: hx.hash_image(p, a, fast=True)
        c[f"{a}: peer"] = peer(a)
    c["all: one decode"] = lambda p: hx.hash_image(p, algos)
    c["all: separate calls"] = lambda p: [hx.hash_image(p, a) for a in algos]
    return c


def measure(paths: list[str], rounds: int, algos: list[str], clock=time.process_time
            ) -> dict[str, list[float]]:
    runs = contenders(algos)
    names = list(runs)
    times: dict[str, list[float]] = {n: [] for n in names}
    for fn in runs.values():  # warm-up: imports, page cache, resize plans
        for p in paths:
            fn(p)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            fn = runs[n]
            t = clock()
            for p in paths:
                fn(p)
            times[n].append((clock() - t) / len(paths) * 1e3)
    return times


def breakdown(paths: list[str], rounds: int, clock=time.process_time) -> str:
    """Where exact-mode time goes: stages measured on already decoded images."""
    import numpy as np
    from PIL import Image

    from hashlib_ext.hashers import _lanczos, hash_pixels
    from hashlib_ext.pixels import Pixels

    rgb = [hx.load(p) for p in paths]
    gray = [im.convert("L") for im in rgb]
    u8 = [np.asarray(g) for g in gray]
    lanczos = Image.Resampling.LANCZOS
    stages = {
        "PIL full decode (file -> RGB)": lambda i: pil_decode(paths[i]),
        "hx.load (decode + checks + orientation)": lambda i: hx.load(paths[i]),
        "convert('L')": lambda i: rgb[i].convert("L"),
        "Pillow LANCZOS to 32x32 (imagehash)": lambda i: gray[i].resize((32, 32), lanczos),
        "ours LANCZOS to 32x32 (uint8 in, float64 out)": lambda i: _lanczos.resize_l(u8[i], 32, 32),
        "Pillow LANCZOS to 9x8 (imagehash)": lambda i: gray[i].resize((9, 8), lanczos),
        "ours LANCZOS to 9x8": lambda i: _lanczos.resize_l(u8[i], 9, 8),
        "Pillow LANCZOS to 256x256 (imagehash)": lambda i: gray[i].resize((256, 256), lanczos),
        "ours LANCZOS to 256x256": lambda i: _lanczos.resize_l(u8[i], 256, 256),
    }
    mode = _lanczos._pillow_mode()
    for w, h in ((32, 32), (9, 8), (256, 256)):
        stages[f"ours grey + LANCZOS to {w}x{h} from RGB (fused, compiled)"] = (
            lambda i, w=w, h=h: _lanczos._fused_from_rgb(Pixels(rgb[i]), w, h, mode))
    for a in ("dhash", "phash", "whash"):
        stages[f"{a}: all hashing after decode"] = (
            lambda i, a=a: hash_pixels(Pixels(rgb[i]), a))
    res: dict[str, list[float]] = {k: [] for k in stages}
    for f in stages.values():
        for i in range(len(paths)):
            f(i)
    for _ in range(rounds):
        for k, f in stages.items():
            t = clock()
            for i in range(len(paths)):
                f(i)
            res[k].append((clock() - t) / len(paths) * 1e3)
    lines = ["| stage | ms/image |", "|---|---|"]
    lines += [f"| {k} | {statistics.median(v):.3f} |" for k, v in res.items()]
    return "\n".join(lines)


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    return statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))


def table(times: dict[str, list[float]], algos: list[str]) -> str:
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        "| algorithm | peer ms | ours exact ms | speed-up | target | ours fast ms "
        "| fast / draft floor | fast target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in algos:
        sp = ratio(times, f"{a}: peer", f"{a}: ours exact")
        ff = ratio(times, f"{a}: ours fast", "decode: PIL draft 1/8")
        tgt = TARGETS.get(a)
        tgt_s = f">= {tgt}x: {'met' if sp >= tgt else 'missed'}" if tgt else "none set"
        fast_s = f"<= {FAST_LIMIT}x: {'met' if ff <= FAST_LIMIT else 'missed'}"
        lines.append(
            f"| {a} | {med[f'{a}: peer']:.2f} | {med[f'{a}: ours exact']:.2f} | {sp:.2f}x "
            f"| {tgt_s} | {med[f'{a}: ours fast']:.2f} | {ff:.2f}x | {fast_s} |"
        )
    lines += [
        "",
        "| floor / combination | ms/image |",
        "|---|---|",
        f"| PIL full decode | {med['decode: PIL full']:.2f} |",
        f"| PIL draft decode, 1/8 scale | {med['decode: PIL draft 1/8']:.2f} |",
        f"| {len(algos)} algorithms, one decode (`hash_image(p, [...])`) "
        f"| {med['all: one decode']:.2f} |",
        f"| {len(algos)} algorithms, separate calls | {med['all: separate calls']:.2f} |",
        f"| separate / one decode "
        f"| {ratio(times, 'all: separate calls', 'all: one decode'):.2f}x |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--images", type=Path, default=ROOT / "datasets" / "coco-mini")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images")
    ap.add_argument("--pin", type=int, default=None, help="pin this process to one CPU")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--breakdown", action="store_true", help="also time the exact-mode stages")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw timings here")
    args = ap.parse_args(argv)
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    paths = sorted(str(p) for p in args.images.rglob("*.jpg"))
    if args.limit:
        paths = paths[:args.limit]
    algos = [a for a in ALGOS if a in hx.algorithms()]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = measure(paths, args.rounds, algos, clock)
    print(f"{len(paths)} JPEGs from {args.images}, {args.rounds} interleaved rounds, "
          f"median {args.clock} ms/image; {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print(table(times, algos))
    if args.breakdown:
        print("\n" + breakdown(paths, args.rounds, clock))
    if args.json:
        args.json.write_text(json.dumps(times, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
