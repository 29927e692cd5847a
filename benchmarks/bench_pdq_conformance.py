"""PDQ conformance survey: ``python benchmarks/bench_pdq_conformance.py``.

Over the bundled images and ../shared/datasets (when present) prints, against ``pdqhash``:
exact-mode bit distances and quality differences, dihedral distances (ours vs pdqhash of
the transformed pixels, and our reference-style dihedral vs ``pdqhash.compute_dihedral``),
fast-mode (JPEG draft) distances per draft size, and the distance between pdqhash and the
pure-Python reference vectors. Figures for docs/pdq.md.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

from hashlib_ext.hashers import pdq
from hashlib_ext.imageio import load
from hashlib_ext.pixels import Pixels

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def ref_code(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    bits, q = pdqhash.compute(np.ascontiguousarray(rgb))
    return np.packbits(bits.astype(np.uint8)), int(q)


def dist(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())


def images() -> dict[str, list[Path]]:
    groups = {"bundled": sorted((ROOT / "datasets" / "coco-mini").glob("*.jpg"))}
    if SHARED.exists():
        groups["coco-sample"] = sorted((SHARED / "coco-sample").rglob("*.jpg"))
        groups["pdq-reference"] = sorted(
            p for p in (SHARED / "pdq-reference").rglob("*") if p.suffix.lower() in IMAGE_EXT
        )
    return groups


def summary(name: str, ds: list[int]) -> str:
    c = collections.Counter(ds)
    same = c.get(0, 0)
    return (
        f"{name}: n={len(ds)} identical={same} ({100 * same / max(len(ds), 1):.1f}%) "
        f"max={max(ds, default=0)} mean={np.mean(ds) if ds else 0:.2f} "
        f"hist={dict(sorted(c.items()))}"
    )


def exact_and_dihedral(paths: list[Path]) -> None:
    ds, dq, dd, ddr = [], [], [], []
    for p in paths:
        try:
            im = load(p)
        except Exception as exc:  # noqa: BLE001 - survey: report and go on
            print(f"  skip {p.name}: {type(exc).__name__}: {exc}")
            continue
        rgb = np.asarray(im.convert("RGB"))
        code, q = pdq.compute(Pixels(im))
        rc, rq = ref_code(rgb)
        ds.append(dist(code, rc))
        dq.append(abs(q - rq))
        if ds[-1] > 0 or dq[-1] > 0:
            print(f"  {p.name} {rgb.shape}: {ds[-1]} bits, quality {q} vs {rq}")
        codes, _ = pdq.dihedral(Pixels(im))
        for k in range(8):
            dd.append(dist(codes[k], ref_code(pdq.dihedral_transform(rgb, k))[0]))
        rcodes, _ = pdq.dihedral_reference(Pixels(im))
        vecs, _ = pdqhash.compute_dihedral(rgb)
        ddr += [dist(rcodes[k], np.packbits(vecs[k].astype(np.uint8))) for k in range(8)]
    print(" ", summary("exact bits", ds))
    print(" ", summary("quality |diff|", dq))
    print(" ", summary("dihedral vs pdqhash(transformed pixels)", dd))
    print(" ", summary("dihedral_reference vs pdqhash.compute_dihedral", ddr))


def reference_dihedral_vs_pixels(paths: list[Path]) -> None:
    """How far pdqhash's own DCT-domain dihedral is from hashing the transformed pixels."""
    dd = []
    for p in paths:
        rgb = np.asarray(load(p).convert("RGB"))
        vecs, _ = pdqhash.compute_dihedral(rgb)
        for k in range(8):
            px = ref_code(pdq.dihedral_transform(rgb, k))[0]
            dd.append(dist(np.packbits(vecs[k].astype(np.uint8)), px))
    print(" ", summary("pdqhash.compute_dihedral vs pdqhash(transformed pixels)", dd))


def fast_mode(paths: list[Path], sizes: tuple[int, ...] = (64, 128, 256)) -> None:
    for s in sizes:
        ds, scales = [], collections.Counter()
        for p in paths:
            full = load(p)
            im = load(p, draft=(s, s))
            scales[f"1/{round(full.size[0] / im.size[0])}"] += 1
            ds.append(dist(pdq.compute(Pixels(im))[0], pdq.compute(Pixels(full))[0]))
        print(" ", summary(f"fast draft=({s},{s}) vs exact", ds))
        print(f"    decode scales: {dict(scales)}; p90={np.percentile(ds, 90):.0f}")


def python_reference() -> None:
    vec = SHARED / "pdq-reference" / "python-reference-vectors.txt"
    if not vec.exists():
        return
    ds = []
    for line in vec.read_text().split("\n"):
        if not line.strip():
            continue
        hexs, rel = line.split(maxsplit=1)
        path = SHARED / "pdq-reference" / rel
        if rel == "misc-images/b.jpg":
            path = SHARED / "pdq-reference" / "bridge-mods" / "aaa-orig.jpg"
        ours = pdq.compute(Pixels(load(path)))[0]
        d = dist(ours, np.frombuffer(bytes.fromhex(hexs), np.uint8))
        ds.append(d)
        print(f"  {rel}: {d} bits (image {Image.open(path).size})")
    print(" ", summary("pure-Python reference tool vs ours (= pdqhash)", ds))


def thumbnail_emulation(paths: list[Path]) -> None:
    """The pure-Python tool's 512 px thumbnail step (PIL ``thumbnail``) then PDQ, vs exact.

    This emulation reproduces 18 of the 19 python-reference-vectors exactly.
    """
    ds = []
    for p in paths:
        im = load(p)
        exact = pdq.compute(Pixels(im))[0]
        thumb = im.copy()
        thumb.thumbnail((512, 512))
        ds.append(dist(pdq.compute(Pixels(thumb))[0], exact))
    print(" ", summary("512 px thumbnail (pure-Python tool) vs pdqhash-exact", ds))
    print(f"    p90={np.percentile(ds, 90):.0f}")


def main() -> None:
    groups = images()
    for name, paths in groups.items():
        print(f"== {name} ({len(paths)} images)")
        exact_and_dihedral(paths)
    jpegs = [p for g in groups.values() for p in g if p.suffix.lower() in (".jpg", ".jpeg")]
    print(f"== pdqhash's own dihedral vs transformed pixels ({len(jpegs)} JPEGs)")
    reference_dihedral_vs_pixels(jpegs)
    print(f"== fast mode ({len(jpegs)} JPEGs)")
    fast_mode(jpegs)
    print("== python-reference-vectors.txt")
    python_reference()
    for name in ("coco-sample", "bundled"):
        if name in groups:
            print(f"== pure-Python tool emulation on {name}")
            thumbnail_emulation(groups[name])
            break


if __name__ == "__main__":
    main()
