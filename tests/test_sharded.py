"""ShardedIndex in one process: answers identical to one HashIndex over the union, the
manifest and its checks, adding, streaming builds, URLs, and sharded dedup."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import hashlib_ext as hx
from hashlib_ext import shard_manifest as sm
from hashlib_ext.errors import HashFormatError, IndexFileError, ShardChecksumError
from hashlib_ext.formats import HashList
from hashlib_ext.shard_manifest import shard_of
from hashlib_ext.sharded_dedup import find_duplicates_sharded


def planted(n: int, copies: int, seed: int, max_flips: int = 24,
            exact: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random 256-bit codes, ``copies`` of which are near copies of others (a few bits
    flipped: random codes are ~128 bits apart and never match at 31), ``exact`` of which
    repeat one code; ids are shuffled and non-contiguous."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    src = rng.integers(0, n, copies)
    dst = rng.choice(n, copies, replace=False)
    for s, d in zip(src.tolist(), dst.tolist(), strict=True):
        c = codes[s].copy()
        for b in rng.choice(256, int(rng.integers(0, max_flips + 1)), replace=False).tolist():
            c[b // 8] ^= np.uint8(1 << (b % 8))
        codes[d] = c
    if exact:
        codes[dst[:exact]] = codes[src[0]]
    ids = rng.choice(10 * n, n, replace=False).astype(np.int64) - 3 * n  # negatives too
    return codes, ids


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    codes, ids = planted(6000, 600, seed=7, exact=20)
    keys = [None if i % 5 == 0 else f"img/{i}.jpg" for i in ids.tolist()]
    return codes, ids, keys


@pytest.fixture(scope="module")
def union(data) -> hx.HashIndex:
    codes, ids, keys = data
    idx = hx.HashIndex("pdq")
    idx.add(hx.HashArray(codes, "pdq"), ids, keys=keys)
    return idx


@pytest.fixture(scope="module")
def sharded(data, tmp_path_factory) -> hx.ShardedIndex:
    codes, ids, keys = data
    folder = tmp_path_factory.mktemp("sharded") / "idx"
    return hx.ShardedIndex.build(hx.HashArray(codes, "pdq"), folder, shards=4, ids=ids,
                                 keys=keys)


@pytest.mark.parametrize("threshold", [0, 8, 31, 60])
def test_search_is_the_union_answer_pair_for_pair(data, union, sharded, threshold):
    codes, _, _ = data
    queries = hx.HashArray(codes[::3], "pdq")
    got = sharded.search(queries, threshold)
    assert got == union.search(queries, threshold)
    if threshold == 31:
        assert sum(len(r) > 1 for r in got) > 100  # the planted copies are found
    for a, b in zip(sharded.search_arrays(queries, threshold),
                    union.search_arrays(queries, threshold), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_reopened_index_answers_the_same(data, union, sharded):
    codes, ids, keys = data
    again = hx.ShardedIndex.open(sharded.folder)
    assert (len(again), again.algorithm, again.bits, again.shards) == (len(codes), "pdq", 256, 4)
    assert again.has_keys
    q = codes[:500]
    assert again.search(q, 31) == union.search(q, 31)
    some = ids[::97]
    assert again.keys(some) == union.keys(some)
    assert again.keys([10 ** 12]) == [None]


def test_ties_are_ordered_by_id_across_shards(tmp_path):
    """Many codes at the same distance from the query, their ids spread over shards: the
    merge orders them as one HashIndex does (by distance, then id)."""
    rng = np.random.default_rng(3)
    codes = np.zeros((300, 32), np.uint8)
    for row in range(300):  # each code: 3 bits set, so distance 3 from zero
        for b in rng.choice(256, 3, replace=False).tolist():
            codes[row, b // 8] |= np.uint8(1 << (b % 8))
    codes[:40] = 0  # distance 0, equal codes
    ids = rng.permutation(10_000)[:300].astype(np.int64)
    one = hx.HashIndex("pdq")
    one.add(codes, ids)
    idx = hx.ShardedIndex.build(hx.HashArray(codes, "pdq"), tmp_path / "t", shards=7, ids=ids)
    got = idx.search(np.zeros((1, 32), np.uint8), 3)
    assert got == one.search(np.zeros((1, 32), np.uint8), 3)
    assert len(got[0]) == 300 and [d for _, d in got[0]][:40] == [0] * 40
    assert idx.knn(np.zeros((2, 32), np.uint8), 55) == one.knn(np.zeros((2, 32), np.uint8), 55)


def test_knn_is_the_union_answer(data, union, sharded):
    codes, _, _ = data
    q = codes[::11]
    for k in (1, 4, 30):
        assert sharded.knn(q, k) == union.knn(q, k)


def test_dihedral_search_is_the_union_answer(data, union, sharded):
    codes, _, _ = data
    variants = codes[:400]  # 50 queries of 8 rows
    assert sharded.search_dihedral(variants, 31) == union.search_dihedral(variants, 31)
    with pytest.raises(HashFormatError):
        sharded.search_dihedral(codes[:7], 31)


def test_mih_shards_answer_exactly(data, union, tmp_path):
    codes, ids, _ = data
    idx = hx.ShardedIndex.build(codes, tmp_path / "m", shards=3, ids=ids, algorithm="pdq",
                                kind="mih")
    assert idx.load_shard(0).stats()["mih_widths"]  # tables were built and saved
    q = codes[1::4]
    assert idx.search(q, 31) == union.search(q, 31)


def test_wrong_queries_are_refused(sharded):
    with pytest.raises(hx.AlgorithmMismatchError):
        sharded.search(hx.HashArray(np.zeros((1, 8), np.uint8), "phash"), 4)
    with pytest.raises(HashFormatError):
        sharded.search(np.zeros((1, 8), np.uint8), 4)
    with pytest.raises(ValueError):
        sharded.search(np.zeros((1, 32), np.uint8), -1)
    assert sharded.search(np.zeros((0, 32), np.uint8), 31) == []


def test_each_shard_holds_the_ids_its_partition_gives(sharded, data):
    _, ids, _ = data
    seen = []
    for k in range(sharded.shards):
        got = sharded.load_shard(k).ids
        assert np.all(shard_of(got, sharded.shards) == k)
        entry = sharded.manifest.shards[k]
        assert (entry.count, entry.min_id, entry.max_id) == (got.size, got.min(), got.max())
        seen.append(got)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.sort(ids))


@pytest.mark.parametrize("ids", [np.arange(100_000), np.arange(0, 800_000, 8),
                                 np.arange(-50_000, 50_000) * 1024])
def test_partition_spreads_any_id_pattern_evenly(ids):
    counts = np.bincount(shard_of(ids, 8), minlength=8)
    assert counts.min() > 0.95 * ids.size / 8 and counts.max() < 1.05 * ids.size / 8


def test_add_goes_to_the_right_shards_and_keeps_ids_global(data, tmp_path):
    codes, ids, keys = data
    base = hx.HashArray(codes[:4000], "pdq")
    idx = hx.ShardedIndex.build(base, tmp_path / "a", shards=3, ids=ids[:4000], keys=keys[:4000])
    before = set(os.listdir(tmp_path / "a"))
    new = idx.add(hx.HashArray(codes[4000:], "pdq"), ids[4000:], keys=keys[4000:])
    assert np.array_equal(new, ids[4000:])
    files = set(os.listdir(tmp_path / "a"))
    assert files == {"manifest.json", *(e.file for e in idx.manifest.shards)}
    assert not (before - {"manifest.json"}) & files  # the replaced shard files are gone
    default = idx.add(hx.HashArray(codes[:5], "pdq"))  # default ids continue after the largest
    assert default.tolist() == list(range(int(ids.max()) + 1, int(ids.max()) + 6))
    one = hx.HashIndex("pdq")
    one.add(codes, ids, keys=keys)
    one.add(codes[:5], default)
    again = hx.ShardedIndex.open(tmp_path / "a")
    assert again.search(codes[::5], 31) == one.search(codes[::5], 31)
    assert again.keys(ids[4000::50]) == one.keys(ids[4000::50])
    for k in range(again.shards):
        assert np.all(shard_of(again.load_shard(k).ids, again.shards) == k)


def test_add_refuses_ids_already_there_or_repeated(sharded, data, tmp_path):
    codes, ids, _ = data
    idx = hx.ShardedIndex.build(codes[:100], tmp_path / "d", shards=2, algorithm="pdq")
    manifest = (tmp_path / "d" / "manifest.json").read_bytes()
    with pytest.raises(HashFormatError, match="already in the index"):
        idx.add(codes[:3], [500, 7, 501])
    with pytest.raises(HashFormatError, match="unique"):
        idx.add(codes[:2], [900, 900])
    assert (tmp_path / "d" / "manifest.json").read_bytes() == manifest  # nothing changed
    assert len(hx.ShardedIndex.open(tmp_path / "d")) == 100
    with pytest.raises(HashFormatError, match="unique"):
        hx.ShardedIndex.build(codes[:3], tmp_path / "e", shards=2, ids=[1, 2, 1],
                              algorithm="pdq")


def test_metadata_is_kept_per_id(tmp_path):
    codes, ids = planted(300, 0, seed=4)
    meta = {"collab": [f"c{i % 3}" for i in range(300)],
            "tags": [None if i % 2 else "x" for i in range(300)]}
    idx = hx.ShardedIndex.build(codes, tmp_path / "md", shards=3, ids=ids, metadata=meta,
                                algorithm="pdq")
    one = hx.HashIndex("pdq")
    one.add(codes, ids, metadata=meta)
    assert idx.metadata(ids[:50]) == one.metadata(ids[:50])
    idx.add(codes[:2], [10 ** 9, 10 ** 9 + 1], metadata=[{"collab": "new"}, None])
    assert hx.ShardedIndex.open(tmp_path / "md").metadata([10 ** 9, 10 ** 9 + 1]) == \
        [{"collab": "new"}, {}]


def test_streaming_build_equals_build(data, union, tmp_path):
    codes, ids, keys = data
    karr = np.array(keys, dtype=object)
    chunks = [HashList(hx.HashArray(codes[i:i + 1000], "pdq"), ids[i:i + 1000],
                       karr[i:i + 1000]) for i in range(0, len(codes), 1000)]
    idx = hx.ShardedIndex.build_from_chunks(iter(chunks), tmp_path / "s", shards=5)
    assert idx.search(codes[::7], 31) == union.search(codes[::7], 31)
    assert idx.keys(ids[::13]) == union.keys(ids[::13])
    # HashArray chunks: ids continue 0, 1, 2, ...; keys only in some chunks
    parts = [hx.HashArray(codes[:10], "pdq"),
             HashList(hx.HashArray(codes[10:20], "pdq"), np.arange(10, 20),
                      np.array([f"k{i}" for i in range(10)], dtype=object))]
    small = hx.ShardedIndex.build_from_chunks(parts, tmp_path / "s2", shards=2)
    assert small.keys(range(20)) == [None] * 10 + [f"k{i}" for i in range(10)]
    with pytest.raises(HashFormatError, match="unique"):
        hx.ShardedIndex.build_from_chunks([hx.HashArray(codes[:5], "pdq"),
                                           HashList(hx.HashArray(codes[:5], "pdq"),
                                                    np.arange(5))], tmp_path / "s3", shards=2)
    with pytest.raises(hx.AlgorithmMismatchError):
        hx.ShardedIndex.build_from_chunks([hx.HashArray(codes[:5], "pdq"),
                                           hx.HashArray(codes[:5, :8], "phash")],
                                          tmp_path / "s4", shards=2)


def test_more_shards_than_hashes(tmp_path):
    codes, _ = planted(3, 0, seed=1)
    idx = hx.ShardedIndex.build(hx.HashArray(codes, "pdq"), tmp_path / "few", shards=16)
    assert sum(e.count == 0 for e in idx.manifest.shards) >= 13
    assert hx.ShardedIndex.open(tmp_path / "few").search(codes, 0) == [[(0, 0)], [(1, 0)],
                                                                      [(2, 0)]]
    empty = hx.ShardedIndex.build(np.zeros((0, 8), np.uint8), tmp_path / "none", shards=2)
    assert len(empty) == 0 and empty.search(np.zeros((1, 8), np.uint8), 3) == [[]]


def test_build_refuses_to_replace_unless_asked(data, tmp_path):
    codes, _, _ = data
    first = hx.ShardedIndex.build(codes[:50], tmp_path / "o", shards=2, algorithm="pdq")
    with pytest.raises(FileExistsError):
        hx.ShardedIndex.build(codes[:50], tmp_path / "o", shards=2, algorithm="pdq")
    second = hx.ShardedIndex.build(codes[50:80], tmp_path / "o", shards=3, algorithm="pdq",
                                   overwrite=True)
    assert len(hx.ShardedIndex.open(tmp_path / "o")) == 30
    names = set(os.listdir(tmp_path / "o"))
    assert names == {"manifest.json", *(e.file for e in second.manifest.shards)}
    assert not names & {e.file for e in first.manifest.shards}


# -- checksums and the manifest -----------------------------------------------------------
def _copy(src, dst) -> hx.ShardedIndex:
    import shutil

    shutil.copytree(src, dst)
    return hx.ShardedIndex.open(dst)


def test_a_modified_shard_is_reported_by_name(sharded, tmp_path):
    idx = _copy(sharded.folder, tmp_path / "bad")
    victim = idx.shard_location(2)
    with open(victim, "r+b") as f:  # one flipped byte in the codes
        f.seek(os.path.getsize(victim) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(ShardChecksumError) as e:
        idx.search(np.zeros((1, 32), np.uint8), 31)
    assert e.value.shard == victim and os.path.basename(victim) in str(e.value)
    with pytest.raises(ShardChecksumError, match=os.path.basename(victim)):
        hx.ShardedIndex.open(tmp_path / "bad").verify()
    assert isinstance(e.value, IndexFileError) and isinstance(e.value, hx.HashlibExtError)


def test_a_swapped_or_missing_shard_is_reported_by_name(sharded, tmp_path):
    idx = _copy(sharded.folder, tmp_path / "swap")
    a, b = idx.shard_location(0), idx.shard_location(1)
    os.replace(b, a)  # a valid index file, but not the one the manifest names
    with pytest.raises(ShardChecksumError, match=os.path.basename(a)):
        idx.load_shard(0)
    with pytest.raises(ShardChecksumError, match=f"{os.path.basename(b)} is missing"):
        idx.load_shard(1)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(version=9), "version"),
    (lambda d: d["shards"][0].update(file="../escape.hxi"), "plain name"),
    (lambda d: d["shards"][1].update(sha256="xyz"), "sha256"),
    (lambda d: d.update(count=d["count"] + 1), "count"),
    (lambda d: d["shards"][0].update(count=-1), "count"),
    (lambda d: d.update(next_id=0), "next_id"),
    (lambda d: d.update(partition="range"), "partition"),
    (lambda d: d.update(shards=[]), "shards"),
    (lambda d: d.update(format="other"), "not a hashlib_ext"),
])
def test_a_bad_manifest_is_refused(sharded, tmp_path, edit, message):
    idx = _copy(sharded.folder, tmp_path / "m")
    path = tmp_path / "m" / sm.MANIFEST
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(IndexFileError, match=message):
        hx.ShardedIndex.open(idx.folder)


def test_is_sharded_index(sharded, tmp_path):
    assert sm.is_sharded_index(sharded.folder)
    assert not sm.is_sharded_index(str(tmp_path))
    one = tmp_path / "one.hidx"
    hx.HashIndex("pdq").save(one)
    assert not sm.is_sharded_index(str(one))


def test_unreadable_manifests(tmp_path):
    with pytest.raises(IndexFileError, match="manifest missing"):
        hx.ShardedIndex.open(tmp_path)
    (tmp_path / sm.MANIFEST).write_text("{not json")
    with pytest.raises(IndexFileError, match="JSON"):
        hx.ShardedIndex.open(tmp_path)
    (tmp_path / sm.MANIFEST).unlink()
    os.mkfifo(tmp_path / sm.MANIFEST)  # never blocks on a FIFO
    with pytest.raises(IndexFileError):
        hx.ShardedIndex.open(tmp_path)


def test_fsspec_urls(data, union):
    """A folder given as an fsspec URL (the in-memory file system here; s3:// and gs://
    go the same way): build, open, search, add."""
    codes, ids, keys = data
    url = f"memory://hx-test-{os.getpid()}/idx"
    idx = hx.ShardedIndex.build(hx.HashArray(codes, "pdq"), url, shards=3, ids=ids, keys=keys)
    again = hx.ShardedIndex.open(url)
    assert again.search(codes[:300], 31) == union.search(codes[:300], 31)
    again.add(hx.HashArray(codes[:1], "pdq"), [10 ** 10])
    assert hx.ShardedIndex.open(url).search(codes[:1], 0)[0][-1] == (10 ** 10, 0)
    assert idx.shard_location(0).startswith(url)


# -- dedup ----------------------------------------------------------------------------------
def test_sharded_dedup_is_find_duplicates_on_the_union(data, sharded):
    codes, ids, _ = data
    for t in (0, 10, 31):
        want = hx.find_duplicates(codes, t, ids=ids)
        assert find_duplicates_sharded(sharded, t) == want
    got = find_duplicates_sharded(sharded, 31, include_singletons=True)
    assert got == hx.find_duplicates(codes, 31, ids=ids, include_singletons=True)
    assert any(len(c) >= 20 for c in got)  # the exact duplicates form one cluster


def test_dedup_of_dense_blobs_and_chains(tmp_path):
    """Edit chains (a~b~c with a, c far apart) join one cluster across shards, as
    single-linkage does; a dense blob of near copies stays one cluster."""
    rng = np.random.default_rng(9)
    base = rng.integers(0, 256, 32, dtype=np.uint8)
    chain = [base.copy()]
    for step in range(12):  # each link 20 bits from the previous one
        c = chain[-1].copy()
        for b in range(step * 20, step * 20 + 20):
            c[b // 8] ^= np.uint8(1 << (b % 8))
        chain.append(c)
    blob = np.repeat(rng.integers(0, 256, (1, 32), dtype=np.uint8), 300, axis=0)
    blob[:, 0] ^= rng.integers(0, 4, 300, dtype=np.uint8)
    other = rng.integers(0, 256, (200, 32), dtype=np.uint8)
    codes = np.concatenate([np.array(chain), blob, other])
    ids = rng.permutation(codes.shape[0]).astype(np.int64) * 3
    idx = hx.ShardedIndex.build(codes, tmp_path / "c", shards=4, ids=ids, algorithm="pdq")
    got = find_duplicates_sharded(idx, 25)
    assert got == hx.find_duplicates(codes, 25, ids=ids)
    assert sorted(len(c) for c in got)[-2:] == [13, 300]


def test_streaming_build_carries_metadata_columns(tmp_path):
    codes, ids = planted(500, 0, seed=6)
    first = {"collab": np.array([f"c{i % 4}" for i in range(250)], dtype=object)}
    second = {"tags": np.array([None if i % 2 else "t" for i in range(250)], dtype=object)}
    chunks = [HashList(hx.HashArray(codes[:250], "pdq"), ids[:250], metadata=first),
              HashList(hx.HashArray(codes[250:], "pdq"), ids[250:], metadata=second)]
    idx = hx.ShardedIndex.build_from_chunks(chunks, tmp_path / "meta", shards=3)
    one = hx.HashIndex("pdq")
    one.add(codes[:250], ids[:250], metadata=first)
    one.add(codes[250:], ids[250:], metadata=second)
    assert idx.metadata(ids) == one.metadata(ids)
    assert idx.metadata(ids[:2], ["collab"]) == [{"collab": "c0"}, {"collab": "c1"}]


def test_a_loaded_shard_travels_as_its_recipe(sharded):
    """Should dask ever move or spill a loaded shard, it pickles to its location and
    manifest entry and is loaded (and checked) again from its file."""
    import pickle

    from hashlib_ext.shard_tasks import load_shard

    handle = load_shard(sharded.shard_location(1), sharded.manifest.shards[1], "pdq", 256)
    blob = pickle.dumps(handle)
    assert len(blob) < 2000 < handle.__sizeof__()  # dask sizes it by its memory
    back = pickle.loads(blob)
    assert np.array_equal(back.index.codes, handle.index.codes)
    assert np.array_equal(back.index.ids, handle.index.ids)


def test_missing_dask_is_named_with_its_extra(monkeypatch):
    import sys

    from hashlib_ext.distributed import connect

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(hx.MissingDependencyError, match=r"hashlib-ext\[dask\]"):
        with connect():
            pass
