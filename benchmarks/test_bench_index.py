"""HashIndex speed: FAISS flat scan vs multi-index hashing, side by side (single thread).

    pytest benchmarks/test_bench_index.py --benchmark-enable -m ''

Compare the ``group`` rows: ratios measured in one run are what matter on a shared machine.
The 1M-10M table in docs/matching.md comes from benchmarks/index_scale.py.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from hashlib_ext import mih
from hashlib_ext.index import HashIndex

N = 200_000
NQ = 500
CASES = {"pdq-256-t31": (256, 31), "phash-64-t10": (64, 10)}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _data(bits: int, t: int):
    rng = np.random.default_rng(bits)
    db = rng.integers(0, 256, (N, bits // 8), dtype=np.uint8)
    q = db[rng.integers(0, N, NQ)].copy()
    for i in range(NQ):  # planted neighbours within t + 2 bits
        for b in rng.choice(bits, rng.integers(0, t + 3), replace=False):
            q[i, b // 8] ^= np.uint8(1 << (7 - b % 8))
    return db, q


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    bits, t = CASES[request.param]
    db, q = _data(bits, t)
    flat = HashIndex(bits=bits, kind="flat")
    flat.add(db)
    ix = HashIndex(bits=bits, kind="mih", design_threshold=t)
    ix.add(db)
    ix.search(q[:1], t)  # build tables
    return request.param, t, db, q, flat, ix


def test_flat_search(benchmark, case):
    name, t, _, q, flat, _ = case
    benchmark.group = f"index search {name} n={N}"
    benchmark.pedantic(flat.search_arrays, args=(q[:100], t), rounds=3)


def test_mih_search(benchmark, case):
    name, t, _, q, flat, ix = case
    benchmark.group = f"index search {name} n={N}"
    got = benchmark.pedantic(ix.search_arrays, args=(q[:100], t), rounds=3)
    ref = flat.search_arrays(q[:100], t)
    assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))


def test_mih_search_numpy_path(benchmark, case, monkeypatch):
    name, t, _, q, flat, ix = case
    monkeypatch.setattr(mih, "USE_KERNEL", False)
    benchmark.group = f"index search {name} n={N}"
    got = benchmark.pedantic(ix.search_arrays, args=(q[:100], t), rounds=3)
    ref = flat.search_arrays(q[:100], t)
    assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))


def test_mih_build(benchmark, case):
    name, t, db, _, _, ix = case
    benchmark.group = f"index build {name} n={N}"
    st = ix.stats()
    args = (db, tuple(st["mih_widths"]), st["mih_slack"], st["mih_inline"])
    benchmark.pedantic(mih.MIHTables.build, args=args, rounds=2)


def test_save_load(benchmark, case, tmp_path):
    name, t, _, q, _, ix = case
    benchmark.group = f"index save+load {name} n={N}"
    path = tmp_path / "i.hxidx"

    def round_trip():
        ix.save(path)
        return HashIndex.load(path)

    back = benchmark.pedantic(round_trip, rounds=2)
    assert len(back) == N
