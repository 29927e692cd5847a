"""Check the transform conventions against the issue's peer figures, with the peers alone.

For each transform, recall at the threshold where the distinct-pair FPR <= 1e-3, computed
with imagehash (ahash/dhash/phash/whash, 64 bits), pdqhash and ``pdqhash.compute_dihedral``
on our transforms, brute-force distances; plus PDQ recall at its customary threshold 31.
No hashlib_ext hashing is involved, so this isolates the transforms.

    python benchmarks/transforms_reference.py [--dataset coco-sample] [EXTRA_SPEC ...]
    python benchmarks/transforms_reference.py --only "banner:height=0.2,bg=black"
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor

import imagehash
import numpy as np
import pdqhash
from PIL import Image

from hashlib_ext import datasets
from hashlib_ext.evaluate import transforms as T

ALGOS = ["ahash", "dhash", "phash", "whash", "pdq"]
_IMAGEHASH = {"ahash": imagehash.average_hash, "dhash": imagehash.dhash,
              "phash": imagehash.phash, "whash": imagehash.whash}


def _bits(img: Image.Image) -> dict[str, np.ndarray]:
    out = {name: f(img).hash.flatten() for name, f in _IMAGEHASH.items()}
    vector, _quality = pdqhash.compute(np.asarray(img))
    out["pdq"] = vector.astype(bool)
    return out


def _item(args: tuple[int, object, list[str]]):
    i, source, specs = args
    with Image.open(source) as im:
        img = im.convert("RGB")
    dihedral = np.array(pdqhash.compute_dihedral(np.asarray(img))[0], bool)  # (8, 256)
    return _bits(img), dihedral, [_bits(T.apply(s, img, seed=i)) for s in specs]


def _threshold(distinct: np.ndarray, bits: int, fpr: float) -> int:
    counts = np.bincount(distinct.ravel(), minlength=bits + 1)
    cdf = np.cumsum(counts) / distinct.size
    return int(np.nonzero(cdf <= fpr)[0].max()) if (cdf <= fpr).any() else -1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="*", help="transforms to add to the reference set")
    p.add_argument("--only", action="store_true", help="measure only the given specs")
    p.add_argument("--dataset", default="coco-sample")
    p.add_argument("--fpr", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    specs = [T.parse(s).spec for s in args.specs]
    specs = specs if args.only else T.REFERENCE_SUITE + specs
    ds = datasets.get(args.dataset)
    tasks = [(i, src, specs) for i, src in enumerate(ds.sources())]
    with ProcessPoolExecutor(args.workers) as pool:
        res = list(pool.map(_item, tasks, chunksize=8))
    n = len(res)
    iu = np.triu_indices(n, 1)
    names = ALGOS + ["pdq-dihedral"]
    thresholds = {}
    for a in ALGOS:
        h = np.array([r[0][a] for r in res])
        thresholds[a] = _threshold((h[:, None] != h[None]).sum(-1)[iu], h.shape[1], args.fpr)
    h = np.array([r[0]["pdq"] for r in res])
    dih = np.array([r[1] for r in res])
    d = (dih[:, None] != h[None, :, None]).sum(-1).min(-1)  # query i's 8 views vs original j
    off = ~np.eye(n, dtype=bool)
    thresholds["pdq-dihedral"] = _threshold(d[off], 256, args.fpr)

    print(f"{ds.name}: {n} images, recall at distinct-pair FPR <= {args.fpr:g}\n")
    print("| transform | " + " | ".join(names) + " | pdq @31 |")
    print("|---" * (len(names) + 2) + "|")
    print("| threshold | " + " | ".join(str(thresholds[a]) for a in names) + " | 31 |")
    for k, spec in enumerate(specs):
        row = []
        for a in ALGOS:
            dist = np.array([(r[0][a] != r[2][k][a]).sum() for r in res])
            row.append((dist <= thresholds[a]).mean())
        dist = np.array([(r[1] != r[2][k]["pdq"][None]).sum(-1).min() for r in res])
        row.append((dist <= thresholds["pdq-dihedral"]).mean())
        at31 = np.mean([(r[0]["pdq"] != r[2][k]["pdq"]).sum() <= 31 for r in res])
        print(f"| `{spec}` | " + " | ".join(f"{x:.2f}" for x in row) + f" | {at31:.2f} |")


if __name__ == "__main__":
    main()
