"""HashIndex under hostile conditions: SIGKILL during save, concurrent savers and loaders,
threads searching while others add and remove, stale temp files, old two-file indexes with
hostile key databases."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from hashlib_ext import container, dedup
from hashlib_ext.errors import IndexFileError
from hashlib_ext.index import LEGACY_KEYS_SUFFIX, MAGIC, HashIndex

ROOT = Path(__file__).resolve().parent.parent


# -- brute-force oracle ---------------------------------------------------------------------
def distances(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    """(nq, n) Hamming distances by unpacking bits (independent of the index's popcount)."""
    if db.shape[0] == 0:
        return np.zeros((q.shape[0], 0), np.int64)
    qb = np.unpackbits(q, axis=1).astype(bool)
    out = np.empty((q.shape[0], db.shape[0]), np.int64)
    for lo in range(0, db.shape[0], 8192):
        dbb = np.unpackbits(db[lo:lo + 8192], axis=1).astype(bool)
        out[:, lo:lo + 8192] = (qb[:, None, :] != dbb[None, :, :]).sum(axis=2)
    return out


def oracle_search(d: np.ndarray, ids: np.ndarray, t: int) -> list[list[tuple[int, int]]]:
    out = []
    for row in d:
        hit = np.flatnonzero(row <= t)
        out.append(sorted(((int(ids[i]), int(row[i])) for i in hit), key=lambda p: (p[1], p[0])))
    return out


def oracle_knn(d: np.ndarray, ids: np.ndarray, k: int) -> list[list[tuple[int, int]]]:
    out = []
    for row in d:
        order = np.lexsort((ids, row))[:k]
        out.append([(int(ids[i]), int(row[i])) for i in order])
    return out


def oracle_dihedral(d: np.ndarray, ids: np.ndarray, t: int) -> list[list[tuple[int, int, int]]]:
    out = []
    for g in range(d.shape[0] // 8):
        best: dict[int, tuple[int, int]] = {}
        for v in range(8):
            for i in np.flatnonzero(d[8 * g + v] <= t).tolist():
                key = int(ids[i])
                cand = (int(d[8 * g + v, i]), v)
                if key not in best or cand < best[key]:
                    best[key] = cand
        out.append(sorted(((i, dv[0], dv[1]) for i, dv in best.items()),
                          key=lambda r: (r[1], r[0])))
    return out


# -- threads: searches while another thread adds and removes ---------------------------------
@pytest.mark.parametrize("kind", ["mih", "auto", "flat"])
def test_threaded_search_during_add_and_remove_is_exact(kind, monkeypatch):
    """Three threads search (range, k-NN, dihedral) while a writer adds and removes; each
    result must equal the brute-force answer of one state the index passed through while
    that search ran (no crash, no mix of states)."""
    from hashlib_ext import index as index_mod

    monkeypatch.setattr(index_mod, "AUTO_MIH_MIN", 3000)  # "auto" switches to MIH midway
    monkeypatch.setattr(index_mod, "TAIL_MIN", 700)  # tails rebuilt now and then
    rng = np.random.default_rng(5)
    nb, t, k = 32, 40, 5
    base = rng.integers(0, 256, (2000, nb), dtype=np.uint8)
    q = np.concatenate([base[:12] ^ (rng.random((12, nb)) < 0.04).astype(np.uint8),
                        rng.integers(0, 256, (4, nb), dtype=np.uint8)])
    qd = np.repeat(base[20:22], 8, axis=0)  # two dihedral queries of 8 rows each
    qd = qd ^ (rng.random(qd.shape) < 0.03).astype(np.uint8)
    ix = HashIndex(bits=nb * 8, kind=kind)
    ix.add(base)

    # The writer's operations, and the (codes, ids) state after each, prepared up front.
    ops: list[tuple[str, np.ndarray]] = []
    codes, ids = base.copy(), np.arange(2000, dtype=np.int64)
    states = [(codes, ids)]
    next_id = 2000
    for step in range(40):
        if step % 4 == 3:
            gone = rng.choice(ids, 150, replace=False)
            keep = ~np.isin(ids, gone)
            codes, ids = codes[keep], ids[keep]
            ops.append(("remove", gone))
        else:
            new = np.concatenate([base[rng.integers(0, 2000, 150)]
                                  ^ (rng.random((150, nb)) < 0.05).astype(np.uint8),
                                  rng.integers(0, 256, (150, nb), dtype=np.uint8)])
            codes = np.concatenate([codes, new])
            ids = np.concatenate([ids, np.arange(next_id, next_id + 300)])
            next_id += 300
            ops.append(("add", new))
        states.append((codes, ids))
    answers = []
    for c, i in states:
        d, dd = distances(q, c), distances(qd, c)
        answers.append((oracle_search(d, i, t), oracle_knn(d, i, k), oracle_dihedral(dd, i, t)))

    version = [0]
    stop = threading.Event()
    failures: list[str] = []
    checked = {"search": 0, "knn": 0, "dihedral": 0}

    def writer() -> None:
        try:
            for n, (op, arg) in enumerate(ops, 1):
                if op == "add":
                    ix.add(arg)
                else:
                    ix.remove(arg)
                version[0] = n
                time.sleep(0.002)
        except Exception as e:  # pragma: no cover - reported below
            failures.append(f"writer: {e!r}")
        finally:
            stop.set()

    def searcher(what: str) -> None:
        try:
            while not stop.is_set() or checked[what] < 5:
                v0 = version[0]
                if what == "search":
                    got = ix.search(q, t)
                elif what == "knn":
                    got = ix.knn(q, k)
                else:
                    got = ix.search_dihedral(qd, t)
                v1 = min(version[0] + 1, len(ops))
                slot = {"search": 0, "knn": 1, "dihedral": 2}[what]
                if not any(got == answers[j][slot] for j in range(v0, v1 + 1)):
                    failures.append(f"{what}: result matches no state in {v0}..{v1}")
                    return
                checked[what] += 1
        except Exception as e:  # pragma: no cover - reported below
            failures.append(f"{what}: {e!r}")

    threads = [threading.Thread(target=searcher, args=(w,)) for w in checked]
    threads.append(threading.Thread(target=writer))
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert failures == []
    assert min(checked.values()) >= 5, checked
    print(f"threaded {kind}: {len(ops)} adds/removes, searches checked {checked}")
    # after the writer: the final state, exactly
    assert ix.search(q, t) == answers[-1][0] and ix.knn(q, k) == answers[-1][1]


def test_table_build_does_not_hold_back_searches_or_adds(monkeypatch):
    """While one thread builds the MIH tables, searches answer (exactly, from the old
    state) and adds go through; tables built before a removal are thrown away, not
    installed over shifted positions."""
    from hashlib_ext import mih

    rng = np.random.default_rng(11)
    nb, t = 32, 30
    base = rng.integers(0, 256, (5000, nb), dtype=np.uint8)
    q = base[:6] ^ (rng.random((6, nb)) < 0.03).astype(np.uint8)
    ix = HashIndex(bits=nb * 8, kind="mih")
    ix.add(base)
    ix.prepare()
    real_build = mih.MIHTables.build
    started, release = threading.Event(), threading.Event()

    def slow_build(*a, **k):
        started.set()
        assert release.wait(30)
        return real_build(*a, **k)

    monkeypatch.setattr(mih.MIHTables, "build", slow_build)
    more = rng.integers(0, 256, (3000, nb), dtype=np.uint8)
    ix.add(more)  # a tail to fold in
    builder = threading.Thread(target=ix.prepare)
    builder.start()
    try:
        assert started.wait(30)
        # the build is running: a search, an add and a removal do not wait for it
        all_codes = np.concatenate([base, more])
        extra = q[:2].copy()
        got: dict[str, object] = {}

        def meanwhile() -> None:
            got["search"] = ix.search(q, t)
            got["add"] = ix.add(extra).tolist()
            got["remove"] = ix.remove([3])  # positions shift: the build's tables are stale

        other = threading.Thread(target=meanwhile, daemon=True)
        other.start()
        other.join(20)
        assert not other.is_alive(), "a search or change waited for the table build"
        assert got["search"] == oracle_search(distances(q, all_codes), np.arange(8000), t)
        assert got["add"] == [8000, 8001] and got["remove"] == 1
    finally:
        release.set()
        builder.join(60)
    assert not builder.is_alive()
    codes = np.concatenate([np.delete(all_codes, 3, axis=0), extra])
    ids = np.concatenate([np.delete(np.arange(8000), 3), [8000, 8001]])
    assert ix.search(q, t) == oracle_search(distances(q, codes), ids, t)
    assert ix.stats()["mih_indexed"] == len(ix)  # prepare built again after the removal


def test_builds_voided_by_removals_end_in_a_build_under_the_lock(monkeypatch):
    """When removals void every build made outside the lock, ``prepare`` ends with one
    build holding the lock: it finishes, and the tables cover every code."""
    from hashlib_ext import index as index_mod
    from hashlib_ext import mih

    monkeypatch.setattr(index_mod, "BUILD_ATTEMPTS", 2)
    rng = np.random.default_rng(12)
    base = rng.integers(0, 256, (4000, 32), dtype=np.uint8)
    ix = HashIndex(bits=256, kind="mih")
    ix.add(base)
    real_build = mih.MIHTables.build
    calls = []

    def voiding_build(*a, **k):
        calls.append(len(calls))
        if len(calls) <= 2:  # the two tries outside the lock: a removal lands meanwhile
            ix.remove([len(calls)])
        return real_build(*a, **k)

    monkeypatch.setattr(mih.MIHTables, "build", voiding_build)
    ix.prepare()
    assert len(calls) == 3 and ix.stats()["mih_indexed"] == len(ix) == 3998
    q = base[:5]
    ids = np.delete(np.arange(4000), [1, 2])
    assert ix.search(q, 30) == oracle_search(distances(q, np.delete(base, [1, 2], axis=0)),
                                             ids, 30)


def test_threaded_dedup_equals_one_thread(monkeypatch):
    rng = np.random.default_rng(8)
    base = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    near = base[:800] ^ (rng.random((800, 32)) < 0.03).astype(np.uint8)
    codes = np.concatenate([base, near])
    monkeypatch.setattr(dedup, "MAX_THREADS", 1)
    one = dedup.find_duplicates(codes, 31, kind="mih", batch_size=256)
    monkeypatch.setattr(dedup, "MAX_THREADS", 4)
    monkeypatch.setattr(dedup, "_threads", lambda batches: min(4, batches))
    many = dedup.find_duplicates(codes, 31, kind="mih", batch_size=256)
    assert one == many and len(one) >= 700


# -- one file, saved by processes that are killed or race -----------------------------------
N_CODES = 200_000
CHILD = textwrap.dedent("""
    import sys
    import time
    import numpy as np
    from hashlib_ext.index import HashIndex

    path, tag, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    n = int(sys.argv[4])
    rng = np.random.default_rng(tag)
    ix = HashIndex("pdq")
    ix.add(rng.integers(0, 256, (n, 32), dtype=np.uint8),
           keys=[f"{tag}/{i}" for i in range(n)],
           metadata={"collab": [str(tag)] * n})
    ix.prepare()
    print("ready", flush=True)
    if sys.argv[5] == "wait":
        sys.stdin.readline()
    t0 = time.perf_counter()
    for _ in range(rounds):
        ix.save(path)
    print(f"saved {(time.perf_counter() - t0) / rounds:.4f}", flush=True)
""")


def version_codes(tag: int, n: int = N_CODES) -> np.ndarray:
    return np.random.default_rng(tag).integers(0, 256, (n, 32), dtype=np.uint8)


def check_whole(path: Path, allowed: set[int], cache: dict[int, np.ndarray]) -> int:
    """Load ``path``; it must be exactly one version (codes, keys, metadata agree); returns
    its tag."""
    ix = HashIndex.load(path)
    first = ix.keys([0])[0]
    assert first is not None
    tag = int(first.split("/")[0])
    assert tag in allowed, (tag, allowed)
    if tag not in cache:
        cache[tag] = version_codes(tag)
    assert len(ix) == N_CODES and np.array_equal(ix.codes, cache[tag])
    ids = ix.ids
    assert ix.keys(ids) == [f"{tag}/{i}" for i in ids.tolist()]
    assert ix.metadata(ids[::997]) == [{"collab": str(tag)}] * len(ids[::997])
    return tag


def temps(path: Path) -> list[str]:
    return sorted(p for p in os.listdir(path.parent) if p.startswith(f".{path.name}."))


def spawn(path: Path, tag: int, rounds: int, wait: bool) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(tag), str(rounds), str(N_CODES),
         "wait" if wait else "go"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)


def kill_trials(tmp_path: Path, trials: int, seed: int) -> dict[str, int]:
    """``trials`` saves of a 200k-code index with keys and metadata, each SIGKILLed after a
    random delay (before, during or after the write); every load must be exactly the old or
    the new version, and the killed save's temp file gone once that load has run."""
    path = tmp_path / "idx #1?%41.hxidx"  # characters a URI would misread
    cache: dict[int, np.ndarray] = {}
    p = spawn(path, 1, 1, wait=False)
    out = p.communicate(timeout=120)[0].split()
    assert out[:2] == ["ready", "saved"]
    save_time = float(out[2])
    assert check_whole(path, {1}, cache) == 1
    current, outcomes = 1, {"old": 0, "new": 0, "killed_mid_write": 0}
    rnd = random.Random(seed)
    for trial in range(trials):
        tag = trial + 2
        p = spawn(path, tag, 1, wait=False)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(rnd.uniform(0, 1.5 * save_time))
        p.kill()
        p.wait(30)
        outcomes["killed_mid_write"] += bool(temps(path))
        got = check_whole(path, {current, tag}, cache)
        outcomes["old" if got == current else "new"] += 1
        current = got
        assert temps(path) == [], temps(path)  # the load removed what the kill left
        cache.pop(tag - 2, None)
    print(f"kill trials: {trials}, {outcomes} (a save takes {save_time:.2f} s)")
    return outcomes


def test_sigkill_during_save_leaves_old_or_new(tmp_path):
    outcomes = kill_trials(tmp_path, 20, seed=11)
    assert outcomes["old"] + outcomes["new"] == 20
    assert outcomes["killed_mid_write"] >= 1  # the delays do reach into the write


@pytest.mark.slow
def test_sigkill_during_save_many_trials(tmp_path):
    outcomes = kill_trials(tmp_path, 200, seed=12)
    assert outcomes["old"] + outcomes["new"] == 200


def test_concurrent_savers_and_a_loader_see_whole_versions(tmp_path):
    """Two processes save their own version of one path three times each, at once, while
    this process loads it over and over: every load, and the final file, is one whole
    version."""
    path = tmp_path / "shared.hxidx"
    cache: dict[int, np.ndarray] = {}
    p = spawn(path, 100, 1, wait=False)
    p.communicate(timeout=120)
    loads = 0
    for rnd in range(3):
        a, b = 101 + 2 * rnd, 102 + 2 * rnd
        kids = [spawn(path, a, 3, wait=True), spawn(path, b, 3, wait=True)]
        for k in kids:
            assert k.stdout is not None and k.stdout.readline().strip() == "ready"
        before = check_whole(path, {100, a - 2, a - 1}, cache)
        for k in kids:
            assert k.stdin is not None
            k.stdin.write("go\n")
            k.stdin.flush()
        while any(k.poll() is None for k in kids):
            check_whole(path, {before, a, b}, cache)
            loads += 1
        assert all(k.wait() == 0 for k in kids)
        assert check_whole(path, {a, b}, cache) in (a, b)
        assert temps(path) == []
    assert loads >= 3
    print(f"concurrent-save rounds: 3, loads during saves: {loads}")


# -- stale temp files -------------------------------------------------------------------------
def test_stale_temps_are_removed_but_live_ones_kept(tmp_path):
    path = tmp_path / "a.hxidx"
    ix = HashIndex(bits=64)
    ix.add(np.arange(80, dtype=np.uint8).reshape(10, 8), keys=[str(i) for i in range(10)])
    stale = [tmp_path / ".a.hxidx.k2j4_x9q.tmp", tmp_path / ".a.hxidx.keys.sqlite.abcdefgh.tmp"]
    for s in stale:
        s.write_bytes(b"left by a killed save")
    live = tmp_path / ".a.hxidx.live0000.tmp"
    live.write_bytes(b"a save in progress")
    others = [tmp_path / ".a.hxidx.bak.abcdefgh.tmp", tmp_path / ".b.hxidx.abcdefgh.tmp",
              tmp_path / ".a.hxidx.ABCDEFGH.tmp"]
    for o in others:
        o.write_bytes(b"not ours")
    fifo = tmp_path / ".a.hxidx.fifo0000.tmp"
    os.mkfifo(fifo)
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        ix.save(path)
        assert all(not s.exists() for s in stale)
        assert live.exists() and all(o.exists() for o in others) and fifo.exists()
        stale[0].write_bytes(b"again")
        assert HashIndex.load(path).keys([3]) == ["3"]
        assert not stale[0].exists() and live.exists()
    assert container.remove_stale_temps(path) == [live.name]


def test_failed_save_leaves_no_temp_and_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.hxidx"
    ix = HashIndex(bits=64)
    ix.add(np.zeros((4, 8), np.uint8), keys=["a", "b", "c", "d"])
    ix.save(path)
    ix.add(np.ones((4, 8), np.uint8), keys=["e", "f", "g", "h"])

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(container, "_chunks", full)
    with pytest.raises(OSError):
        ix.save(path)
    assert os.listdir(tmp_path) == ["a.hxidx"]
    back = HashIndex.load(path)
    assert len(back) == 4 and back.keys([0, 3, 4]) == ["a", "d", None]


# -- old two-file indexes (format version 1) ------------------------------------------------
def write_v1(ix: HashIndex, path: Path, keys: dict[int, str] | None = None) -> None:
    """An index file exactly as format version 1 wrote it, keys in the SQLite side file."""
    tb = ix._tables
    sections = [("faiss", "u1", faiss.serialize_index_binary(ix._flat))]
    if ix._ids is not None:
        sections.append(("ids", "<i8", ix._ids))
    if tb is not None:
        sections.append(("entries", "<u8" if tb.inline else "<u4", tb.entries))
        if tb.positions is not None:
            sections.append(("positions", "<i4", tb.positions))
        sections.append(("offsets", "<i4", tb.offsets))
    header = {
        "format": "hashlib_ext.HashIndex", "version": 1, "algorithm": ix.algorithm,
        "bits": ix.bits, "count": len(ix), "kind": ix.kind,
        "design_threshold": ix._design_t, "next_id": ix._next_id,
        "mih_widths": None if tb is None else list(tb.widths),
        "mih_slack": None if tb is None else tb.slack,
        "mih_inline": None if tb is None else tb.inline,
        "sections": [{"name": nm, "dtype": dt, "nbytes": int(a.nbytes)} for nm, dt, a in sections],
    }
    head = json.dumps(header, sort_keys=True).encode()
    body = MAGIC + len(head).to_bytes(8, "little") + head + b"".join(
        np.ascontiguousarray(a, dtype=dt).tobytes() for _, dt, a in sections)
    path.write_bytes(body + hashlib.sha256(body).digest())
    if keys:
        con = sqlite3.connect(str(path) + LEGACY_KEYS_SUFFIX)
        con.execute("CREATE TABLE keys (id INTEGER PRIMARY KEY, key TEXT NOT NULL)")
        con.executemany("INSERT INTO keys VALUES (?, ?)", keys.items())
        con.commit()
        con.close()


def legacy(tmp_path: Path, name: str = "old #1?%41.hxidx", n: int = 500):
    rng = np.random.default_rng(3)
    db = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    ix = HashIndex("pdq", kind="mih")
    ids = np.arange(10, 10 + 2 * n, 2)
    ix.add(db, ids)
    ix.prepare()
    path = tmp_path / name
    keys = {int(i): f"img/{i}.jpg" for i in ids[: n // 2]}
    write_v1(ix, path, keys)
    return ix, path, keys, db


def test_version_1_file_with_side_keys_loads_and_converts(tmp_path):
    ix, path, keys, db = legacy(tmp_path)
    side = Path(str(path) + LEGACY_KEYS_SUFFIX)
    side_bytes = side.read_bytes()
    back = HashIndex.load(path)
    assert side.read_bytes() == side_bytes  # read, never written
    assert np.array_equal(back.codes, db) and np.array_equal(back.ids, ix.ids)
    assert back.keys(list(keys)) == list(keys.values()) and back.keys([11]) == [None]
    assert back.search(db[:5], 31) == ix.search(db[:5], 31)
    assert back.stats()["mih_widths"] == ix.stats()["mih_widths"]
    back.save(path)  # converts: one file, the side file is gone
    assert not side.exists() and os.listdir(tmp_path) == [path.name]
    again = HashIndex.load(path)
    assert again.keys(list(keys)) == list(keys.values())
    assert container.read(path, "hashlib_ext.HashIndex", 2)[0] == 2


def test_version_1_without_keys_and_new_file_ignores_a_stray_side_file(tmp_path):
    ix, path, keys, db = legacy(tmp_path)
    side = Path(str(path) + LEGACY_KEYS_SUFFIX)
    side.unlink()
    assert HashIndex.load(path).keys(list(keys)) == [None] * len(keys)
    # a version 2 file never reads a side file, even one that is there
    ix.save(path)
    write_v1(ix, tmp_path / "other.hxidx", {0: "x"})
    os.replace(str(tmp_path / "other.hxidx") + LEGACY_KEYS_SUFFIX, side)
    assert HashIndex.load(path).keys([10]) == [None]


def _side_db(path: Path, statements: list[str]) -> None:
    side = Path(str(path) + LEGACY_KEYS_SUFFIX)
    side.unlink(missing_ok=True)
    con = sqlite3.connect(side)
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()


@pytest.mark.parametrize("statements,match", [
    (["CREATE TABLE t (a)", "CREATE VIEW keys AS SELECT 1 AS id, 'x' AS key"], "only a table"),
    (["CREATE TABLE keys (id INTEGER PRIMARY KEY, key TEXT)", "CREATE TABLE extra (a)"],
     "only a table"),
    (["CREATE TABLE keys (id INTEGER PRIMARY KEY, key TEXT, more TEXT)"], "columns"),
    (["CREATE TABLE keys (id INTEGER PRIMARY KEY, key TEXT)",
      "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) "
      "INSERT INTO keys SELECT 10 + 2 * x, 'k' FROM c"], "more keys"),
    (["CREATE TABLE keys (id INTEGER PRIMARY KEY, key TEXT)",
      "INSERT INTO keys VALUES (10, x'00ff')"], "integer ids and text"),
    (["CREATE TABLE keys (id INTEGER PRIMARY KEY, key TEXT)",
      "INSERT INTO keys VALUES (11, 'not an id of the index')"], "does not hold"),
    (["CREATE TABLE keys (id INTEGER PRIMARY KEY, key TEXT)",
      "CREATE TRIGGER tr AFTER INSERT ON keys BEGIN SELECT 1; END"], "only a table"),
])
def test_hostile_version_1_key_databases_are_refused(tmp_path, statements, match):
    _, path, _, _ = legacy(tmp_path)
    _side_db(path, statements)
    with pytest.raises(IndexFileError, match=match) as info:
        HashIndex.load(path)
    assert "Move it aside" in str(info.value)


def test_version_1_null_keys_are_no_keys(tmp_path):
    _, path, _, _ = legacy(tmp_path)
    _side_db(path, ["CREATE TABLE keys (id INTEGER PRIMARY KEY, key TEXT)",
                    "INSERT INTO keys VALUES (10, NULL)", "INSERT INTO keys VALUES (12, 'b')"])
    assert HashIndex.load(path).keys([10, 12]) == [None, "b"]


def test_version_1_recursive_view_does_not_run(tmp_path):
    _, path, _, _ = legacy(tmp_path)
    _side_db(path, [
        "CREATE VIEW keys AS WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c) "
        "SELECT x AS id, 'k' AS key FROM c"])
    with pytest.raises(IndexFileError, match="only a table"):  # refused, never queried
        HashIndex.load(path)


def test_version_1_side_file_that_is_not_a_regular_file(tmp_path):
    _, path, _, _ = legacy(tmp_path)
    side = Path(str(path) + LEGACY_KEYS_SUFFIX)
    side.unlink()
    os.mkfifo(side)  # opening it for reading the plain way would block
    with pytest.raises(IndexFileError, match="regular file"):
        HashIndex.load(path)
    side.unlink()
    side.write_bytes(b"\0" * ((1 << 20) + 8192 * 500 + 1))
    with pytest.raises(IndexFileError, match="too large"):
        HashIndex.load(path)
    side.write_bytes(b"not a database at all" * 10)
    with pytest.raises(IndexFileError, match="unreadable"):
        HashIndex.load(path)


def test_version_1_crafted_faiss_section_is_refused_before_parsing(tmp_path):
    """A FAISS section claiming another size (valid checksum) never reaches FAISS."""
    _, path, _, _ = legacy(tmp_path)
    data = path.read_bytes()
    hlen = int.from_bytes(data[8:16], "little")
    start = 16 + hlen  # the faiss section comes first
    b = bytearray(data[:-32])
    b[start + 12:start + 20] = (2**40).to_bytes(8, "little")  # ntotal
    path.write_bytes(bytes(b) + hashlib.sha256(bytes(b)).digest())
    with pytest.raises(IndexFileError, match="FAISS section"):
        HashIndex.load(path)


@pytest.mark.parametrize("field,value", [
    ("bits", 10**40), ("count", -1), ("next_id", 2**70), ("design_threshold", "x"),
    ("bits", True), ("algorithm", 5), ("kind", "ivf"), ("mih_slack", 9)])
def test_version_1_crafted_header_fields_are_index_file_errors(tmp_path, field, value):
    _, path, _, _ = legacy(tmp_path)
    data = path.read_bytes()
    hlen = int.from_bytes(data[8:16], "little")
    head = json.loads(data[16:16 + hlen])
    head[field] = value
    raw = json.dumps(head).encode()
    body = data[:8] + len(raw).to_bytes(8, "little") + raw + data[16 + hlen:-32]
    path.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(IndexFileError):
        HashIndex.load(path)
