"""find_duplicates and hash-list I/O speed on PDQ-like random codes with planted clusters.

    pytest benchmarks/test_bench_dedup.py --benchmark-enable -m '' -s

Codes: 256-bit uniform random; 10% of them replaced by near copies (16 random bit flips)
of other codes, so the self-join finds real clusters, threshold 31 (PDQ's default).
``HASHLIB_EXT_BENCH_DEDUP_N`` sets the sizes (default "100000"; the 1M figure in
docs/formats.md used "1000000"). ``kind="flat"`` (FAISS scan) and ``"auto"`` (HashIndex's
choice: MIH tables from 50k codes) run side by side; both give identical clusters.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import hashlib_ext as hx
from hashlib_ext import formats

SIZES = [int(s) for s in os.environ.get("HASHLIB_EXT_BENCH_DEDUP_N", "100000").split(",")]
THRESHOLD = 31


def planted_codes(n: int, nbytes: int = 32, frac: float = 0.1, flips: int = 16,
                  seed: int = 0) -> np.ndarray:
    """Uniform random codes; ``frac`` of them overwritten by near copies of others."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    k = int(n * frac)
    dst = rng.choice(n, k, replace=False)
    src = rng.integers(0, n, k)
    bits = np.unpackbits(codes[src], axis=1)
    for _ in range(flips):  # up to `flips` distinct bits (repeats cancel out)
        bits[np.arange(k), rng.integers(0, nbytes * 8, k)] ^= 1
    codes[dst] = np.packbits(bits, axis=1)
    return codes


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"{n // 1000}k")
def codes(request) -> np.ndarray:
    return planted_codes(request.param)


@pytest.mark.parametrize("kind", ["auto", "flat"])
def test_find_duplicates(benchmark, codes, kind):
    n = len(codes)
    benchmark.group = f"find_duplicates 256-bit n={n} t={THRESHOLD}"
    benchmark.extra_info["n"] = n
    clusters = benchmark.pedantic(hx.find_duplicates, args=(codes, THRESHOLD),
                                  kwargs={"kind": kind, "progress": True}, rounds=1, iterations=1,
                                  warmup_rounds=0)
    benchmark.extra_info["clusters"] = len(clusters)
    # Every planted copy (<= 16 flips) is linked to its source: at least 0.09 n members.
    assert sum(map(len, clusters)) >= 0.09 * n


@pytest.mark.parametrize("ext", ["txt", "csv", "jsonl", "parquet"])
def test_write_read_hash_list(benchmark, tmp_path, ext):
    n = 200_000
    hashes = hx.HashArray(planted_codes(n), "pdq")
    keys = [f"images/{i:07d}.jpg" for i in range(n)]
    path = tmp_path / f"list.{ext}"
    benchmark.group = f"hash list write+read, {n} PDQ hashes with keys"

    def round_trip() -> formats.HashList:
        formats.write_hash_list(path, hashes, keys=keys)
        return formats.read_hash_list(path)

    got = benchmark.pedantic(round_trip, rounds=3, iterations=1, warmup_rounds=0)
    assert got.hashes == hashes
