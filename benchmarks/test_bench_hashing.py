"""Hashing speed, ours beside the peers, per image from a file path, on the bundled COCO JPEGs.

    pytest benchmarks/test_bench_hashing.py --benchmark-enable -m '' --benchmark-group-by=group

Each benchmark hashes every bundled image once per round (ms/image = round time / 32).
Groups: one per algorithm (ours exact, ours ``fast=True``, the peer: ``imagehash.*`` on
``Image.open(p)``; ``pdqhash.compute`` on the PIL-decoded RGB array), the decode floors
(PIL full decode; PIL JPEG draft decode at 1/8 scale), and five algorithms from one decode
vs five separate calls. Sequential benchmarks see different load from other processes; the
side-by-side ratios in docs/benchmarks-hashing.md come from ``benchmarks/hashing_table.py``,
which interleaves the contenders round by round.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # single core, as the targets are stated

from pathlib import Path  # noqa: E402

import imagehash  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import hashlib_ext as hx  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PATHS = sorted(str(p) for p in (ROOT / "datasets" / "coco-mini").glob("*.jpg"))
ALGOS = ["ahash", "dhash", "phash", "whash", "pdq"]
IMAGEHASH = {
    "ahash": imagehash.average_hash,
    "dhash": imagehash.dhash,
    "phash": imagehash.phash,
    "whash": imagehash.whash,
}
ROUNDS = 8


def _pdqhash_compute(path: str):
    import pdqhash

    with Image.open(path) as im:
        return pdqhash.compute(np.asarray(im.convert("RGB")))


def peer(algo: str):
    """The reference package's call for ``algo``, decoding the file with PIL."""
    if algo == "pdq":
        return _pdqhash_compute
    fn = IMAGEHASH[algo]

    def run(path: str):
        with Image.open(path) as im:
            return fn(im)

    return run


def pil_decode(path: str) -> Image.Image:
    im = Image.open(path)
    im.load()
    return im


def pil_draft_decode(path: str) -> Image.Image:
    im = Image.open(path)
    im.draft("RGB", (im.width // 8, im.height // 8))
    im.load()
    return im


def _each(fn, *args, **kwargs):
    def run():
        for p in PATHS:
            fn(p, *args, **kwargs)
    return run


def _bench(benchmark, group: str, run) -> None:
    assert PATHS, "bundled images missing from datasets/coco-mini"
    benchmark.group = group
    benchmark.extra_info["images"] = len(PATHS)
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)


def _needs(algo: str) -> None:
    if algo not in hx.algorithms():
        pytest.skip(f"{algo} is not registered")
    if algo == "pdq":
        pytest.importorskip("pdqhash")


@pytest.mark.parametrize("algo", ALGOS)
def test_ours_exact(benchmark, algo):
    _needs(algo)
    _bench(benchmark, f"hash {algo}", _each(hx.hash_image, algo))


@pytest.mark.parametrize("algo", ALGOS)
def test_ours_fast(benchmark, algo):
    _needs(algo)
    _bench(benchmark, f"hash {algo}", _each(hx.hash_image, algo, fast=True))


@pytest.mark.parametrize("algo", ALGOS)
def test_peer(benchmark, algo):
    _needs(algo)
    _bench(benchmark, f"hash {algo}", _each(peer(algo)))


def test_decode_full(benchmark):
    _bench(benchmark, "decode floors", _each(pil_decode))


def test_decode_draft_eighth(benchmark):
    _bench(benchmark, "decode floors", _each(pil_draft_decode))


def test_five_algorithms_one_decode(benchmark):
    algos = [a for a in ALGOS if a in hx.algorithms()]
    _bench(benchmark, "several algorithms", _each(hx.hash_image, algos))


def test_five_algorithms_separate_calls(benchmark):
    algos = [a for a in ALGOS if a in hx.algorithms()]

    def run():
        for p in PATHS:
            for a in algos:
                hx.hash_image(p, a)

    _bench(benchmark, "several algorithms", run)
