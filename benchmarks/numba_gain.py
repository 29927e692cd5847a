"""What numba earns, kernel by kernel: each compiled kernel against the numpy path it
replaces, in the same run, on the same data.

    python benchmarks/numba_gain.py --n 1000000 --queries 2000 --out numba_gain.json

- MIH range search (``_mih_kernel``): 256-bit PDQ-width random codes with planted near
  copies, threshold 31; queries/s with the kernel and with the numpy path (exact too).
- Lanczos resize (``hashers/_lanczos_kernel``): PDQ and pHash of the bundled JPEGs from
  decoded pixels (decoding excluded, so the resize's share is visible), and from file.
- The robust matcher's kernels (``wordindex`` vote counting, ``verify`` matching) have no
  numpy twin: they are required by the ``robust`` extra, not measured here.

Results vary with machine load: the script prints ``os.getloadavg()`` with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _best(fn, repeat: int) -> float:
    """Best of ``repeat`` runs, seconds (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def mih_gain(n: int, queries: int, repeat: int) -> dict:
    import hashlib_ext as hx
    from hashlib_ext import mih

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    q = codes[rng.choice(n, size=queries, replace=False)].copy()
    flips = rng.integers(0, 256, size=(queries, 12))
    for row, bits in enumerate(flips):  # near copies: up to 12 flipped bits
        for b in bits:
            q[row, b // 8] ^= np.uint8(1 << (b % 8))
    index = hx.HashIndex(bits=256, kind="mih")
    index.add(codes)
    index.prepare()
    out = {}
    for label, flag in (("kernel", True), ("numpy", False)):
        mih.USE_KERNEL = flag
        index.search_arrays(q[:10], 31)  # compile / warm
        secs = _best(lambda: index.search_arrays(q, 31), repeat)
        out[label] = {"seconds": secs, "queries_per_s": queries / secs}
    mih.USE_KERNEL = True
    out["gain"] = out["kernel"]["queries_per_s"] / out["numpy"]["queries_per_s"]
    return out


def resize_gain(repeat: int) -> dict:
    from PIL import Image

    import hashlib_ext as hx
    from hashlib_ext.hashers import _lanczos

    paths = sorted((ROOT / "datasets" / "coco-mini").glob("*.jpg"))
    pixels = []
    for p in paths:
        with Image.open(p) as im:
            pixels.append(np.asarray(im.convert("RGB")))
    out: dict = {"images": len(paths)}
    for alg in ("pdq", "phash"):
        row = {}
        for label, flag in (("kernel", True), ("numpy", False)):
            _lanczos.USE_KERNEL = flag
            hx.hash_image(pixels[0], alg)  # compile / warm
            from_pixels = _best(lambda a=alg: [hx.hash_image(x, a) for x in pixels], repeat)
            from_file = _best(lambda a=alg: [hx.hash_image(p, a) for p in paths], repeat)
            row[label] = {"ms_per_image_pixels": 1e3 * from_pixels / len(paths),
                          "ms_per_image_file": 1e3 * from_file / len(paths)}
        _lanczos.USE_KERNEL = True
        row["gain_pixels"] = row["numpy"]["ms_per_image_pixels"] / \
            row["kernel"]["ms_per_image_pixels"]
        row["gain_file"] = row["numpy"]["ms_per_image_file"] / row["kernel"]["ms_per_image_file"]
        out[alg] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="indexed codes (MIH)")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    res = {"load_before": os.getloadavg(),
           "mih": mih_gain(args.n, args.queries, args.repeat),
           "resize": resize_gain(args.repeat),
           "load_after": os.getloadavg()}
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
