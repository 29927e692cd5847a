"""What ``imageio.load`` adds over the decode floor: ``python benchmarks/bench_imageio.py``.

Prints ms/image (per-image median over interleaved repeats, averaged over the images) for
PIL's plain decode, PIL decode + ``convert("RGB")``, the EXIF-transposed reference image
imagehash is compared against, ``load`` from a path and from bytes, and the JPEG draft
floor beside ``load(draft=...)``; then each method's ratio to its floor. Images: the bundled
COCO set (or paths/globs given on the command line). Options: ``--repeats N``,
``--clock cpu|wall`` (default cpu: this thread's CPU time, steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import glob
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageOps

from hashlib_ext.imageio import load

ROOT = Path(__file__).resolve().parent.parent
DRAFT = (64, 64)


def _draft_floor(p: str) -> None:
    im = Image.open(p)
    im.draft("RGB", DRAFT)
    im.load()


METHODS: dict[str, Callable[[str], object]] = {
    "PIL open+load (floor)": lambda p: Image.open(p).load(),
    "PIL open+convert('RGB')": lambda p: Image.open(p).convert("RGB"),
    "PIL exif_transpose(open)": lambda p: ImageOps.exif_transpose(Image.open(p)),
    "hx load(path)": load,
    "hx load(bytes) incl. read": lambda p: load(Path(p).read_bytes()),
    "PIL draft 64x64 (draft floor)": _draft_floor,
    "hx load(path, draft=64x64)": lambda p: load(p, draft=DRAFT),
}
FLOOR = {name: ("PIL draft 64x64 (draft floor)" if "draft" in name else "PIL open+load (floor)")
         for name in METHODS}


def measure(paths: list[str], repeats: int, clock: str = "cpu") -> dict[str, float]:
    """Mean over images of the per-image median time (ms), methods interleaved per round."""
    now = time.thread_time if clock == "cpu" else time.perf_counter
    times: dict[str, dict[str, list[float]]] = {m: {p: [] for p in paths} for m in METHODS}
    for p in paths:  # warm the page cache and the decoders
        for fn in METHODS.values():
            fn(p)
    for _ in range(repeats):
        for p in paths:
            for name, fn in METHODS.items():
                t = now()
                fn(p)
                times[name][p].append(now() - t)
    return {m: 1e3 * statistics.fmean(statistics.median(v) for v in per.values())
            for m, per in times.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", help="images or globs (default: bundled COCO set)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = ap.parse_args(argv)
    paths = sorted(q for g in args.paths for q in glob.glob(g)) if args.paths else sorted(
        str(p) for p in (ROOT / "datasets" / "coco-mini").glob("*.jpg"))
    ms = measure(paths, args.repeats, args.clock)
    print(f"{len(paths)} images, {args.repeats} interleaved repeats, single thread, "
          f"{args.clock} time")
    print(f"{'method':34s} {'ms/image':>9s} {'x floor':>8s}")
    for name, v in ms.items():
        print(f"{name:34s} {v:9.3f} {v / ms[FLOOR[name]]:8.3f}")


if __name__ == "__main__":
    main()
