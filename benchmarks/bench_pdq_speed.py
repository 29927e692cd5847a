"""PDQ speed, side by side in one run: ``python benchmarks/bench_pdq_speed.py [--repeats N]``.

Prints ms/image (per-image median over alternating repeats, averaged over the images) for
the PIL decode floor, pdqhash with decode, our exact, fast and dihedral modes, and the
ratios. Images: the bundled COCO set (or paths/globs given on the command line).
"""

from __future__ import annotations

import argparse
import glob
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

import hashlib_ext as hx
from hashlib_ext.hashers import pdq

ROOT = Path(__file__).resolve().parent.parent


def _draft_floor(p: str) -> None:
    im = Image.open(p)
    im.draft("RGB", pdq.draft_size())
    im.load()


METHODS: dict[str, Callable[[str], object]] = {
    "PIL decode (floor)": lambda p: Image.open(p).load(),
    "PIL draft decode (fast floor)": _draft_floor,
    "pdqhash.compute incl. decode": lambda p: pdqhash.compute(
        np.asarray(Image.open(p).convert("RGB"))
    ),
    "hx pdq exact": lambda p: hx.hash_image(p, "pdq"),
    "hx pdq fast": lambda p: hx.hash_image(p, "pdq", fast=True),
    "pdqhash.compute_dihedral incl. decode": lambda p: pdqhash.compute_dihedral(
        np.asarray(Image.open(p).convert("RGB"))
    ),
    "hx pdq dihedral": lambda p: hx.hash_image(p, "pdq", dihedral=True),
}


def measure(paths: list[str], repeats: int, clock: Callable[[], float]) -> dict[str, float]:
    times: dict[str, dict[str, list[float]]] = {m: {p: [] for p in paths} for m in METHODS}
    for fn in METHODS.values():  # warm caches (filter plans, imports)
        for p in paths:
            fn(p)
    # Each repeat runs every method over all images in turn: methods alternate (so load
    # changes hit all alike) while each sees a stream of images as in real use, without
    # another library's allocations in between.
    for _ in range(repeats):
        for name, fn in METHODS.items():
            for p in paths:
                t0 = clock()
                fn(p)
                times[name][p].append(clock() - t0)
    return {
        name: 1e3 * statistics.fmean(statistics.median(v) for v in per.values())
        for name, per in times.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("paths", nargs="*", help="images or globs (default: bundled COCO set)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: perf_counter; cpu: process CPU time (steadier on a busy machine)",
    )
    args = ap.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    paths = [q for g in args.paths for q in sorted(glob.glob(g))] or sorted(
        str(p) for p in (ROOT / "datasets" / "coco-mini").glob("*.jpg")
    )
    ms = measure(paths, args.repeats, clock)
    print(f"{len(paths)} images, {args.repeats} repeats, {args.clock} clock, ms/image:")
    for name, v in ms.items():
        print(f"  {name:40s} {v:7.3f}")
    ref, ours = ms["pdqhash.compute incl. decode"], ms["hx pdq exact"]
    print(f"  speed-up exact vs pdqhash:        {ref / ours:5.2f}x")
    print(f"  exact minus decode floor:         {ours - ms['PIL decode (floor)']:6.3f} ms")
    fast_floor = ms["PIL draft decode (fast floor)"]
    print(f"  fast / draft floor:               {ms['hx pdq fast'] / fast_floor:5.2f}x")
    print(f"  speed-up fast vs pdqhash:         {ref / ms['hx pdq fast']:5.2f}x")
    dref = ms["pdqhash.compute_dihedral incl. decode"]
    print(f"  speed-up dihedral vs pdqhash:     {dref / ms['hx pdq dihedral']:5.2f}x")


if __name__ == "__main__":
    main()
