"""How far ``fast=True`` (JPEG draft decoding) moves each hash from the exact one.

    python benchmarks/fast_agreement.py [--json out.json]

For every registered algorithm, on the bundled images and, when present, the 256-image
../shared/datasets/coco-sample: the Hamming distance between ``hash_image(p, a, fast=True)``
and ``hash_image(p, a)`` — mean, median, max (bits) and the fraction of images whose fast
hash is identical. Prints a Markdown table (used in docs/benchmarks-hashing.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import hashlib_ext as hx

ROOT = Path(__file__).resolve().parent.parent
SETS = {
    "bundled (32)": ROOT / "datasets" / "coco-mini",
    "coco-sample (256)": ROOT.parent / "shared" / "datasets" / "coco-sample",
}


def distances(paths: list[Path], algo: str) -> np.ndarray:
    return np.array([hx.hash_image(p, algo, fast=True) - hx.hash_image(p, algo) for p in paths])


def summarise(d: np.ndarray, bits: int) -> dict[str, float]:
    return {
        "n": int(d.size), "bits": bits, "mean": float(d.mean()), "median": float(np.median(d)),
        "max": int(d.max()), "identical": float(np.mean(d == 0)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = []
    print("| images | algorithm | bits | mean | median | max | identical |")
    print("|---|---|---|---|---|---|---|")
    for label, folder in SETS.items():
        paths = sorted(folder.rglob("*.jpg")) if folder.exists() else []
        if not paths:
            continue
        for algo in hx.algorithms():
            bits = hx.hash_image(paths[0], algo).bits
            s = summarise(distances(paths, algo), bits)
            rows.append({"images": label, "algorithm": algo, **s})
            print(f"| {label} | {algo} | {bits} | {s['mean']:.2f} | {s['median']:.1f} "
                  f"| {s['max']} | {100 * s['identical']:.0f}% |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
