"""Hostile inputs and races against the search fast paths: the compiled MIH kernels (query
keys, prefetch, cached probe arrays), table rebuilds outside the index lock, the search
batcher of the match service, and the service's ASGI wrapper (in process and over HTTP).

Every result is checked against a brute-force Hamming distance (numpy bit unpacking);
every wait is bounded.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from hashlib_ext import index as index_mod
from hashlib_ext import mih
from hashlib_ext.index import HashIndex

ROOT = Path(__file__).resolve().parent.parent
JOIN = 60  # seconds any thread or request may take before the test counts it as hung


# -- reference -----------------------------------------------------------------------------
def brute(q: np.ndarray, db: np.ndarray, ids: np.ndarray, t: int) -> list:
    qb = np.unpackbits(np.ascontiguousarray(q).reshape(-1, db.shape[1]), axis=1)
    dbb = np.unpackbits(db, axis=1)
    out = []
    for row in qb:
        d = (dbb != row).sum(axis=1)
        hit = np.flatnonzero(d <= t)
        out.append(sorted(((int(ids[i]), int(d[i])) for i in hit), key=lambda p: (p[1], p[0])))
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())


@pytest.fixture
def build_hook(monkeypatch):
    """Callables run (one per build, in order) inside MIHTables.build, i.e. while a table
    build is under way and the index lock is not held."""
    hooks: list = []
    orig = mih.MIHTables.build.__func__

    def build(cls, codes, *args, **kwargs):
        if hooks:
            hooks.pop(0)()
        return orig(cls, codes, *args, **kwargs)

    monkeypatch.setattr(mih.MIHTables, "build", classmethod(build))
    return hooks


# -- compiled kernels: hostile query arrays, tiny indexes ---------------------------------------
@pytest.mark.parametrize("use_kernel", [True, False])
@pytest.mark.parametrize("bits", [8, 24, 64, 72, 256])
def test_mih_search_exact_on_hostile_query_arrays(monkeypatch, use_kernel, bits):
    """Zero-row, one-row, read-only, Fortran-ordered, strided and 1-D queries against 1-,
    2- and 37-code MIH indexes, every threshold class: the same answers as brute force."""
    monkeypatch.setattr(mih, "USE_KERNEL", use_kernel)
    nb = bits // 8
    rng = np.random.default_rng(bits)
    for n in (1, 2, 37):
        db = rng.integers(0, 256, (n, nb), dtype=np.uint8)
        idx = HashIndex(None, bits=bits, kind="mih")
        idx.add(db)
        q = np.concatenate([db[: min(n, 4)], rng.integers(0, 256, (4, nb), dtype=np.uint8)])
        q[:2, 0] ^= 5
        ro = q.copy()
        ro.setflags(write=False)
        variants = [q, q[:0], q[:1], ro, ro[:0], np.asfortranarray(q), q[::3], q[1]]
        for t in sorted({0, 1, 3, bits // 4, bits // 2, bits}):
            for arr in variants:
                assert idx.search(arr, t) == brute(arr, db, np.arange(n), t), (n, t, arr.shape)
        assert idx.stats()["mih_indexed"] == n  # the tables were used, not a scan


def test_part_keys_kernel_equals_numpy_keys():
    """The compiled query keys (prefix and tag of every probed part) equal numpy's, for
    layouts with parts that straddle bytes, narrow and 32-bit parts, and no-tag prefixes."""
    kernel = pytest.importorskip("hashlib_ext._mih_kernel")
    rng = np.random.default_rng(7)
    for bits, n in ((16, 1), (40, 5), (64, 3000), (72, 100), (256, 20000)):
        db = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
        for m in sorted({-(-bits // 32), min(bits, 32) // 2 or 1, min(bits, 32)}):
            widths = tuple(mih.split_widths(bits, m))
            tb = mih.MIHTables.build(db, widths, 2, False)
            plan = mih.plan_radii(tb.widths, bits // 8, tb.n, bits // 8, tb.slack, tb.inline)
            if not plan.probes:
                continue
            pa = tb._probe_arrays(plan)
            assert tb._probe_arrays(plan) is pa  # cached per plan
            q = rng.integers(0, 256, (9, bits // 8), dtype=np.uint8)
            kpre, ktag = kernel.part_keys(q, pa.starts, pa.widths, pa.shifts)
            npre, ntag = tb._part_keys_numpy(q, plan)
            assert np.array_equal(kpre, npre) and np.array_equal(ktag, ntag), (bits, widths)
            e0, e1 = kernel.part_keys(q[:0], pa.starts, pa.widths, pa.shifts)
            assert e0.shape == e1.shape == (0, len(plan.probes))


def test_verify_kernel_with_no_candidates_and_one_row():
    """The prefetching verify loop with an empty candidate list, fewer candidates than it
    prefetches ahead, and a one-row code array: nothing read out of range, exact output."""
    kernel = pytest.importorskip("hashlib_ext._mih_kernel")
    data = np.array([[0x0F0F, 0xFF]], dtype=np.uint64)
    q = np.array([0x0F0E, 0xFF], dtype=np.uint64)
    out_p = np.zeros(8, np.int64)
    out_d = np.zeros(8, np.int32)
    assert kernel._verify(data, q, np.empty(0, np.int64), 0, 5, out_p, out_d, 0) == 0
    cand = np.zeros(3, np.int64)  # the one row, found through three tables
    assert kernel._verify(data, q, cand, 3, 5, out_p, out_d, 0) == 3
    assert out_p[:3].tolist() == [0, 0, 0] and out_d[:3].tolist() == [1, 1, 1]
    assert kernel._verify(data, q, cand, 3, 0, out_p, out_d, 0) == 0
    from hashlib_ext import _prefetch

    assert isinstance(_prefetch.AVAILABLE, bool)


def test_probe_cache_bounded_and_thread_safe():
    """Many thresholds (each its own plan) from several threads at once: the per-plan cache
    stays bounded and every answer is exact."""
    rng = np.random.default_rng(3)
    db = rng.integers(0, 256, (4000, 32), dtype=np.uint8)
    idx = HashIndex("pdq", kind="mih")
    idx.add(db)
    idx.prepare()
    q = np.concatenate([db[:6] ^ np.uint8(1), rng.integers(0, 256, (2, 32), dtype=np.uint8)])
    want = {t: brute(q, db, np.arange(len(db)), t) for t in range(0, 80, 3)}
    errors: list = []

    def worker(off: int) -> None:
        try:
            for t in list(want)[off::2] + list(want)[::-1]:
                assert idx.search(q, t) == want[t], t
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(JOIN)
    assert not any(th.is_alive() for th in threads) and not errors, errors
    assert len(idx._tables._probe_cache) <= 64


# -- table rebuilds outside the lock ------------------------------------------------------------
def test_removal_during_build_discards_the_tables(build_hook):
    rng = np.random.default_rng(11)
    db = rng.integers(0, 256, (2000, 32), dtype=np.uint8)
    idx = HashIndex("pdq", kind="mih")
    idx.add(db)
    build_hook.append(lambda: idx.remove([3, 1500]))  # positions shift under the build
    got = idx.search(db[[3, 4, 1500, 1999]], 0)  # the search that starts the build
    assert got == [[], [(4, 0)], [], [(1999, 0)]]
    assert idx.stats()["mih_indexed"] is None  # built across a removal: thrown away
    got = idx.search(db[[3, 4, 1501, 1999]], 2)  # built now, over the shifted positions
    assert idx.stats()["mih_indexed"] == 1998
    assert got == [[], [(4, 0)], [(1501, 0)], [(1999, 0)]]
    # prepare() builds again until it installs
    idx.add(db[:5] ^ np.uint8(1))
    build_hook.append(lambda: idx.remove([10]))
    idx.prepare()
    assert idx.stats()["mih_indexed"] == len(idx) == 2002
    ids = idx.ids
    codes = idx.codes
    q = np.concatenate([db[:12], db[:5] ^ np.uint8(1)])
    assert idx.search(q, 9) == brute(q, codes, ids, 9)


def test_adds_and_tail_removal_during_build(build_hook):
    rng = np.random.default_rng(12)
    db = rng.integers(0, 256, (2000, 32), dtype=np.uint8)
    extra = rng.integers(0, 256, (60, 32), dtype=np.uint8)
    idx = HashIndex("pdq", kind="mih")
    idx.add(db)
    idx.prepare()
    idx.add(extra[:10])
    build_hook.append(lambda: idx.add(extra[10:]))  # codes added while building: the tail
    idx.prepare()
    assert idx.stats()["mih_indexed"] == 2010 and len(idx) == 2060
    build_hook.append(lambda: idx.remove([2055]))  # a tail code: the build is discarded
    idx.prepare()
    assert idx.stats()["mih_indexed"] == 2059 == len(idx)
    q = np.concatenate([db[::400], extra, extra[::7] ^ np.uint8(16)])
    assert idx.search(q, 12) == brute(q, idx.codes, idx.ids, 12)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.hxi")
        idx.add(extra[:3] ^ np.uint8(2))
        build_hook.append(lambda: idx.add(extra[:2] ^ np.uint8(4)))
        idx.save(path)  # rebuilt for the save; codes added meanwhile stay a tail
        back = HashIndex.load(path)
        assert back.search(q, 12) == idx.search(q, 12) == brute(q, idx.codes, idx.ids, 12)


def test_searches_and_adds_go_on_during_a_blocked_build(build_hook):
    """While one thread's build is stuck, searches (old tables, tail scanned), adds and a
    save waiting for the build all finish or wait without deadlock; the build then lands."""
    rng = np.random.default_rng(13)
    db = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    idx = HashIndex("pdq", kind="mih")
    idx.add(db)
    idx.prepare()
    idx.add(rng.integers(0, 256, (5000, 32), dtype=np.uint8))  # tail past the rebuild rule
    entered, release = threading.Event(), threading.Event()

    def stall() -> None:
        entered.set()
        assert release.wait(JOIN)

    build_hook.append(stall)
    results: dict = {}

    def first() -> None:
        results["first"] = idx.search(db[:3], 0)

    builder = threading.Thread(target=first)
    builder.start()
    assert entered.wait(JOIN)
    # meanwhile, in this thread: searches, adds (ids 8000..), knn
    assert idx.search(db[[7, 8]], 0) == [[(7, 0)], [(8, 0)]]
    new = rng.integers(0, 256, (4, 32), dtype=np.uint8)
    assert idx.add(new).tolist() == [8000, 8001, 8002, 8003]
    assert idx.search(new, 0) == [[(8000 + i, 0)] for i in range(4)]
    assert idx.knn(db[:1], 1) == [[(0, 0)]]
    with tempfile.TemporaryDirectory() as d:
        saver = threading.Thread(target=idx.save, args=(os.path.join(d, "y.hxi"),))
        saver.start()
        time.sleep(0.05)
        assert saver.is_alive()  # waits for the build under way
        assert idx.search(db[[9]], 0) == [[(9, 0)]]
        release.set()
        builder.join(JOIN)
        saver.join(JOIN)
        assert not builder.is_alive() and not saver.is_alive()
        back = HashIndex.load(os.path.join(d, "y.hxi"))
    assert results["first"] == [[(0, 0)], [(1, 0)], [(2, 0)]]
    assert idx.stats()["mih_indexed"] == len(idx) == 8004
    assert back.stats()["mih_indexed"] == 8004
    q = np.concatenate([db[::500], new ^ np.uint8(3)])
    assert back.search(q, 10) == idx.search(q, 10) == brute(q, idx.codes, idx.ids, 10)


def test_concurrent_add_remove_prepare_save_search_stay_exact(monkeypatch):
    """Three search threads against one thread that adds, removes, prepares and saves, with
    the rebuild rule tightened so that tables are rebuilt all the time: every answer holds
    exactly the right distances, and every never-removed code within the threshold."""
    monkeypatch.setattr(index_mod, "TAIL_MIN", 8)
    monkeypatch.setattr(index_mod, "TAIL_FRACTION", 0.001)
    rng = np.random.default_rng(14)
    n = 2500
    stable = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    idx = HashIndex("pdq", kind="mih")
    idx.add(stable)
    by_id = {i: stable[i] for i in range(n)}
    q = np.concatenate([stable[:16], stable[:16] ^ np.uint8(1)])
    t = 24
    qbits = np.unpackbits(q, axis=1)
    must = [set(np.flatnonzero((np.unpackbits(stable, axis=1) != row).sum(1) <= t).tolist())
            for row in qbits]
    stop = threading.Event()
    errors: list = []
    checked = [0]

    def check(res: list) -> None:
        for qi, row in enumerate(res):
            ids = [i for i, _ in row]
            assert len(ids) == len(set(ids)), "a code found twice"
            for i, d in row:
                assert d <= t and hamming(by_id[i], q[qi]) == d, (qi, i, d)
            assert must[qi] <= set(ids), (qi, must[qi] - set(ids))
            assert row == sorted(row, key=lambda p: (p[1], p[0]))

    def searcher() -> None:
        try:
            while not stop.is_set():
                check(idx.search(q, t))
                checked[0] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)
            stop.set()

    def mutator() -> None:
        nid, live = n, []
        try:
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "z.hxi")
                for k in range(1, 121):
                    if stop.is_set():
                        break
                    near = q[rng.integers(0, len(q), 4)] ^ \
                        rng.integers(0, 2, (4, 32), dtype=np.uint8)
                    new = np.concatenate([near, rng.integers(0, 256, (12, 32), dtype=np.uint8)])
                    ids = np.arange(nid, nid + len(new))
                    nid += len(new)
                    for i, c in zip(ids.tolist(), new, strict=True):
                        by_id[i] = c
                    idx.add(new, ids=ids)
                    live.extend(ids.tolist())
                    if k % 3 == 0:
                        idx.remove([live.pop(int(rng.integers(len(live)))) for _ in range(2)])
                    if k % 7 == 0:
                        idx.prepare()
                    if k % 13 == 0:
                        idx.save(path)
                        back = HashIndex.load(path)
                        assert back.search(q[:4], t) == idx.search(q[:4], t)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        stop.set()

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    threads.append(threading.Thread(target=mutator))
    for th in threads:
        th.start()
    for th in threads:
        th.join(JOIN)
    stop.set()
    assert not any(th.is_alive() for th in threads), "hung"
    assert not errors, errors
    assert checked[0] > 0
    assert idx.search(q, t) == brute(q, idx.codes, idx.ids, t)


# -- the search batcher -------------------------------------------------------------------------
class EchoBank:
    """A bank whose search answers each row with (tag, row id, threshold); rows carry their
    request number in bytes 0-1, so a call's requests can be told apart."""

    def __init__(self, tag: str, delay: float = 0.0, fail_on: int | None = None,
                 error: type[BaseException] = ValueError):
        self.tag, self.delay, self.fail_on, self.error = tag, delay, fail_on, error
        self.calls: list[tuple[int, int, int]] = []  # (rows, requests, threshold)
        self.lock = threading.Lock()

    def search(self, codes: np.ndarray, t: int) -> list:
        req = codes[:, 0].astype(int) * 256 + codes[:, 1]
        with self.lock:
            self.calls.append((len(codes), len(set(req.tolist())), t))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and (req == self.fail_on).any():
            raise self.error("bad row")
        return [[(self.tag, int(r), int(c[2]), t)] for r, c in zip(req, codes, strict=True)]


def _rows(req: int, n: int) -> np.ndarray:
    codes = np.zeros((n, 3), np.uint8)
    codes[:, 0], codes[:, 1] = req // 256, req % 256
    codes[:, 2] = np.arange(n) % 256
    return codes


def _want(bank: EchoBank, req: int, codes: np.ndarray, t: int) -> list:
    return [[(bank.tag, req, int(c[2]), t)] for c in codes]


async def _settled(batcher, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with batcher._lock:
            if batcher._running == 0 and not batcher._pending:
                return True
        await asyncio.sleep(0.01)
    return False


@pytest.mark.parametrize("slots", [1, 3])
def test_batcher_mixed_banks_thresholds_sizes_and_cancellations(slots):
    from hashlib_ext.service.batching import MAX_ROWS, SearchBatcher

    rng = np.random.default_rng(slots)
    banks = [EchoBank("A", 0.002), EchoBank("B", 0.002), EchoBank("C")]
    reqs = []
    for r in range(240):
        rows = int(rng.choice([0, 1, 2, 4, 5, 40, 255, 300]))
        reqs.append((banks[r % 3], r, _rows(r, rows), int(rng.integers(0, 3))))

    async def run() -> tuple[list, bool]:
        with ThreadPoolExecutor(slots) as ex:
            b = SearchBatcher(ex, slots)
            futs = [asyncio.ensure_future(b.search(bank, codes, t))
                    for bank, _, codes, t in reqs]
            await asyncio.sleep(0)
            for f in futs[5::9]:
                f.cancel()
            await asyncio.sleep(0.01)
            for f in futs[7::11]:
                f.cancel()
            done, pending = await asyncio.wait(futs, timeout=JOIN)
            assert not pending, f"{len(pending)} requests never answered"
            settled = await _settled(b)
            # the batcher goes on after all that
            more = await asyncio.wait_for(asyncio.gather(
                *(b.search(banks[i % 3], _rows(1000 + i, 3), 1) for i in range(20))), JOIN)
            assert [m for m in more] == [_want(banks[i % 3], 1000 + i, _rows(1000 + i, 3), 1)
                                         for i in range(20)]
            return futs, settled

    futs, settled = asyncio.run(run())
    assert settled, "the batcher kept a thread or a request"
    for f, (bank, r, codes, t) in zip(futs, reqs, strict=True):
        if not f.cancelled():
            assert f.result() == _want(bank, r, codes, t), r
    for bank in banks:
        for rows, nreq, _ in bank.calls:
            assert nreq <= 1 or rows <= MAX_ROWS  # only a lone request may pass MAX_ROWS


def test_batcher_errors_fail_their_call_only_and_inline_errors():
    from hashlib_ext.service.batching import SearchBatcher

    bad = EchoBank("E", 0.005, fail_on=7)

    async def run() -> tuple:
        with ThreadPoolExecutor(2) as ex:
            b = SearchBatcher(ex, 2)
            # a lone small request is searched inline: its error comes back too
            with pytest.raises(ValueError):
                await asyncio.wait_for(b.search(bad, _rows(7, 1), 0), JOIN)
            got = await asyncio.wait_for(asyncio.gather(
                *(b.search(bad, _rows(r, 5), 0) for r in range(20)),
                return_exceptions=True), JOIN)
            ok = await asyncio.wait_for(b.search(bad, _rows(3, 2), 0), JOIN)
            return got, ok, await _settled(b)

    got, ok, settled = asyncio.run(run())
    assert isinstance(got[7], ValueError)
    for r, res in enumerate(got):
        assert isinstance(res, ValueError) or res == _want(bad, r, _rows(r, 5), 0)
    assert sum(isinstance(res, ValueError) for res in got) < 20
    assert ok == _want(bad, 3, _rows(3, 2), 0) and settled


def test_batcher_without_threads_searches_in_the_loop():
    from hashlib_ext.service.batching import SearchBatcher

    bank = EchoBank("N")

    async def run() -> list:
        b = SearchBatcher(None, 0)
        return await asyncio.gather(*(b.search(bank, _rows(r, r % 4), 2) for r in range(10)))

    assert asyncio.run(run()) == [_want(bank, r, _rows(r, r % 4), 2) for r in range(10)]


class _Abort(BaseException):
    """Not an Exception (like SystemExit or an interpreter-level abort)."""


def test_batcher_base_exception_does_not_hang_or_leak_a_slot():
    """A search stopped by a BaseException (not an Exception) fails its requests with an
    error instead of leaving them waiting, and gives its thread's slot back."""
    from hashlib_ext.service.batching import SearchBatcher

    bank = EchoBank("X", 0.0, fail_on=1, error=_Abort)
    good = EchoBank("G")

    async def run() -> None:
        with ThreadPoolExecutor(1) as ex:
            b = SearchBatcher(ex, 1)
            got = await asyncio.wait_for(asyncio.gather(
                *(b.search(bank, _rows(r, 5), 0) for r in range(3)),
                return_exceptions=True), JOIN)
            assert any(isinstance(g, BaseException) for g in got)
            again = await asyncio.wait_for(asyncio.gather(
                *(b.search(good, _rows(r, 5), 0) for r in range(3))), JOIN)
            assert again == [_want(good, r, _rows(r, 5), 0) for r in range(3)]

    asyncio.run(run())


# -- the service: create_app's return value as an ASGI app ----------------------------------------
def test_create_app_is_a_working_asgi_app_in_process(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    import warnings

    from hashlib_ext.service.app import create_app
    from hashlib_ext.service.auth import Token
    from hashlib_ext.service.config import ServiceConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    token = "hostile-test-token-0123456789"
    auth = {"Authorization": f"Bearer {token}"}
    app = create_app(ServiceConfig(root=str(tmp_path / "banks"), token=Token(token),
                                   decode_workers=0))
    assert callable(app) and app.app.state.service is app.service
    rng = np.random.default_rng(21)
    db = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    try:
        with TestClient(app) as c:
            assert app.service.ready
            schema = c.get("/openapi.json").json()
            assert "/v1/match" in schema["paths"] and "requestBody" in \
                schema["paths"]["/v1/match"]["post"]
            docs = c.get("/docs")
            assert docs.status_code == 200 and "swagger" in docs.text.lower()
            assert c.post("/v1/banks", json={"name": "h"}, headers=auth).status_code == 201
            r = c.post("/v1/banks/h/hashes", headers=auth,
                       json={"hashes": [x.tobytes().hex() for x in db]})
            assert r.json()["count"] == 300
            q = np.concatenate([db[:3], db[3:6] ^ np.uint8(1)])
            for t in (0, 8, 40):
                r = c.post("/v1/match", json={"hashes": [x.tobytes().hex() for x in q],
                                              "threshold": t, "max_matches": 100})
                assert r.status_code == 200, r.text
                got = [[(m["id"], m["distance"]) for m in res["matches"]]
                       for res in r.json()["results"]]
                assert got == brute(q, db, np.arange(300), t)
            # hostile fast-path bodies: JSON errors, never a framework page
            for body, ctype in ((b"{", "application/json"), (b"[]", "application/json"),
                                (b'{"hashes": ["zz"]}', "application/json"),
                                (b'{"hashes": ["' + b"0" * 64 + b'"], "threshold": 999}',
                                 "application/vnd.x+json"),
                                (b"", "application/json")):
                r = c.post("/v1/match", content=body, headers={"content-type": ctype})
                assert r.status_code == 400 and set(r.json()) == {"error"}, (body, r.text)
            r = c.post("/v1/match", content=b"{}", headers={
                "content-type": "application/json", "content-length": "-5"})
            assert r.status_code in (400, 422) and "error" in r.json()
            assert c.get("/v1/match").status_code in (404, 405)
            assert "/v1/match" in c.get("/metrics").text
        assert not app.service.ready  # the lifespan's shutdown ran
    finally:
        gc.unfreeze()  # the startup froze this test process's heap; give it back


# -- the service over HTTP -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_served_concurrent_matches_are_exact(tmp_path):
    """A real ``hashlib-ext serve`` (2 lookup threads): 12 client threads send 1- to
    20-hash JSON matches with mixed thresholds and bank selections, interleaved with
    hostile bodies and adds; every answer equals brute force; the server stops cleanly."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    token = "hostile-http-token-9876543210"
    auth = {"Authorization": f"Bearer {token}"}
    tf = tmp_path / "token"
    tf.write_text(token + "\n")
    tf.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "HASHLIB_EXT_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    log_path = tmp_path / "server.log"
    proc = url = None
    for _ in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hashlib_ext", "serve", str(tmp_path / "banks"),
                 "--port", str(port), "--token-file", str(tf), "--decode-workers", "0",
                 "--search-threads", "2"], stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=ROOT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            proc.kill()
            proc.wait(30)
            continue
        break
    assert proc is not None and proc.poll() is None, log_path.read_text()[-3000:]
    rng = np.random.default_rng(31)
    dbs = {"p": rng.integers(0, 256, (1500, 32), dtype=np.uint8),
           "r": rng.integers(0, 256, (700, 32), dtype=np.uint8)}
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get("/openapi.json").status_code == 200
            assert c.get("/docs").status_code == 200
            for name, db in dbs.items():
                assert c.post("/v1/banks", json={"name": name}, headers=auth).status_code == 201
                r = c.post(f"/v1/banks/{name}/hashes", headers=auth,
                           json={"hashes": [x.tobytes().hex() for x in db]})
                assert r.status_code == 200, r.text
        errors: list = []
        done = [0]

        def client(k: int) -> None:
            local = np.random.default_rng(100 + k)
            try:
                with httpx.Client(base_url=url, timeout=30) as c:
                    for i in range(25):
                        if (i + k) % 9 == 0:  # hostile bodies mixed in
                            r = c.post("/v1/match", content=b'{"hashes": ["' + b"g" * 64 +
                                       b'"]}', headers={"content-type": "application/json"})
                            assert r.status_code == 400, r.text
                            continue
                        names = [["p"], ["r"], ["p", "r"]][int(local.integers(3))]
                        nq = int(local.choice([1, 1, 2, 4, 5, 20]))
                        src = dbs[names[0]]
                        q = src[local.integers(0, len(src), nq)] ^ \
                            (local.random((nq, 32)) < 0.02).astype(np.uint8)
                        t = int(local.choice([0, 4, 16, 31]))
                        r = c.post("/v1/match", json={
                            "hashes": [x.tobytes().hex() for x in q], "threshold": t,
                            "banks": names, "max_matches": 1000})
                        assert r.status_code == 200, r.text
                        for row, res in zip(q, r.json()["results"], strict=True):
                            got = sorted((m["bank"], m["id"], m["distance"])
                                         for m in res["matches"])
                            want = sorted((n, i, d) for n in names
                                          for i, d in brute(row, dbs[n],
                                                            np.arange(len(dbs[n])), t)[0])
                            assert got == want, (names, t)
                        done[0] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(12)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(JOIN * 2)
        assert not any(th.is_alive() for th in threads), "requests hung"
        assert not errors, errors[:3]
        assert done[0] > 200
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            raise
    log = log_path.read_text(errors="replace")
    assert rc == 0, log[-3000:]
    assert "Traceback" not in log and token not in log, log[-3000:]
