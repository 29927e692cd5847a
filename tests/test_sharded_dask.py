"""Sharded search, dedup and the Parquet pipeline on a 2-worker dask LocalCluster: exact
answers, shards kept loaded, recovery from a worker killed mid-task, checksum errors."""

from __future__ import annotations

import os
import signal
import sys

import pytest

import hashlib_ext as hx
from hashlib_ext.dask_pipeline import (
    build_sharded_from_parquet,
    hash_to_parquet,
    iter_partitions,
    partition_files,
    read_errors,
)
from hashlib_ext.distributed import hash_images_dask
from hashlib_ext.errors import ShardChecksumError
from hashlib_ext.formats import concat_lists, write_hash_list
from hashlib_ext.sharded import INLINE_QUERY_BYTES
from hashlib_ext.sharded_dedup import find_duplicates_sharded

distributed = pytest.importorskip("distributed")  # the test extra installs it

from test_sharded import planted  # noqa: E402  (same folder; pytest puts it on sys.path)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", memory_limit="2GiB") as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(autouse=True)
def two_workers(client):
    client.wait_for_workers(2, timeout=60)


@pytest.fixture(scope="module")
def data():
    codes, ids = planted(8000, 800, seed=11, exact=15)
    keys = [f"k{i}" if i % 4 else None for i in ids.tolist()]
    return codes, ids, keys


@pytest.fixture(scope="module")
def union(data):
    codes, ids, keys = data
    idx = hx.HashIndex("pdq")
    idx.add(codes, ids, keys=keys)
    return idx


@pytest.fixture(scope="module")
def sharded(data, tmp_path_factory):
    codes, ids, keys = data
    folder = tmp_path_factory.mktemp("dask") / "idx"
    return hx.ShardedIndex.build(hx.HashArray(codes, "pdq"), folder, shards=4, ids=ids,
                                 keys=keys)


def test_search_on_the_cluster_is_the_union_answer(client, data, union, sharded):
    codes, ids, _ = data
    small = codes[:3]  # travels inside the shard tasks
    large = codes[::2]  # scattered once, shared by the shard tasks
    assert small.nbytes <= INLINE_QUERY_BYTES < large.nbytes
    for q in (small, large):
        for t in (0, 31):
            assert sharded.search(q, t, client=client) == union.search(q, t)
    assert sharded.knn(codes[:200], 5, client=client) == union.knn(codes[:200], 5)
    assert sharded.search_dihedral(codes[:80], 31, client=client) == \
        union.search_dihedral(codes[:80], 31)
    assert sharded.keys(ids[:40], client=client) == union.keys(ids[:40])
    assert sharded.metadata(ids[:3], client=client) == [{}, {}, {}]


def test_shards_stay_loaded_and_queries_go_once_per_batch(client, data, sharded):
    codes, _, _ = data
    futures = sharded.shard_futures(client)
    sharded.search(codes[:5], 31, client=client)
    where = client.who_has(futures)
    assert {len(w) for w in where.values()} == {1}  # each shard on one worker only
    assert len({w[0] for w in where.values()}) == 2  # spread over both workers
    with distributed.get_task_stream(client) as ts:
        sharded.search(codes[::2], 31, client=client)
        sharded.search(codes[1::2], 31, client=client)
        sharded.search(codes[:5], 31, client=client)
    ran = [str(t["key"]) for t in ts.data]
    assert sum(k.startswith("query_batch") for k in ran) == 2  # once per large batch
    assert sum(k.startswith("search_shard") for k in ran) == 12
    assert not any(k.startswith("hashlib_ext-shard-") for k in ran)  # no shard reloaded
    assert client.who_has(futures) == where  # and none moved or copied
    assert sharded.shard_futures(client) is futures
    again = hx.ShardedIndex.open(sharded.folder)  # opened twice: the same loaded shards
    assert [f.key for f in again.shard_futures(client)] == [f.key for f in futures]


def test_dedup_on_the_cluster_is_find_duplicates_on_the_union(client, data, sharded):
    codes, ids, _ = data
    assert find_duplicates_sharded(sharded, 31, client=client) == \
        hx.find_duplicates(codes, 31, ids=ids)
    assert find_duplicates_sharded(sharded, 12, client=client, include_singletons=True,
                                   window=1) == \
        hx.find_duplicates(codes, 12, ids=ids, include_singletons=True)


# -- faults -----------------------------------------------------------------------------------
class KillOnce(distributed.WorkerPlugin):
    """Kills its worker process (SIGKILL) when a task whose key starts with ``prefix``
    begins executing there, once per test (a marker file remembers, also across the
    worker the nanny starts in its place)."""

    def __init__(self, marker: str, prefix: str):
        self.marker, self.prefix = marker, prefix

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith(self.prefix) and \
                not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture
def kill_once(client, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    names = []

    def arm(prefix: str) -> str:
        marker = str(tmp_path / f"killed-{prefix}")
        name = f"kill-{prefix}"
        client.register_plugin(KillOnce(marker, prefix), name=name)
        names.append(name)
        return marker

    yield arm
    for name in names:
        client.unregister_worker_plugin(name)
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_a_worker_killed_mid_query_is_recovered_exactly(client, data, union, sharded,
                                                        kill_once):
    codes, _, _ = data
    sharded.shard_futures(client)
    client.gather(sharded.shard_futures(client))  # shards loaded on both workers
    pids = set(client.run(os.getpid).values())
    marker = kill_once("search_shard")
    q = codes[::2]
    got = sharded.search(q, 31, client=client)
    assert os.path.exists(marker) and int(open(marker).read()) in pids  # a worker died
    assert got == union.search(q, 31)
    assert all(f.status == "finished" for f in sharded.shard_futures(client))  # reloaded
    assert sharded.search(codes[:50], 31, client=client) == union.search(codes[:50], 31)


def test_a_worker_killed_mid_dedup_is_recovered_exactly(client, data, sharded, kill_once):
    codes, ids, _ = data
    client.gather(sharded.shard_futures(client))
    marker = kill_once("hashlib_ext-dedup-")
    got = find_duplicates_sharded(sharded, 31, client=client)
    assert os.path.exists(marker)
    assert got == hx.find_duplicates(codes, 31, ids=ids)


def test_a_bad_shard_is_named_by_the_cluster(client, data, tmp_path):
    codes, ids, _ = data
    idx = hx.ShardedIndex.build(codes[:500], tmp_path / "b", shards=3, ids=ids[:500],
                                algorithm="pdq")
    victim = idx.shard_location(1)
    with open(victim, "r+b") as f:
        f.seek(200)
        f.write(b"\0\1\2\3")
    with pytest.raises(ShardChecksumError, match=os.path.basename(victim)) as e:
        idx.search(codes[:2], 31, client=client)
    assert e.value.shard == victim
    with pytest.raises(ShardChecksumError, match=os.path.basename(victim)):
        find_duplicates_sharded(hx.ShardedIndex.open(tmp_path / "b"), 31, client=client)


# -- images -> Parquet -> sharded index -> match / dedup ----------------------------------
def test_images_to_parquet_to_sharded_index(client, bundled, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    copy = tmp_path / "again.jpg"
    copy.write_bytes(bundled[0].read_bytes())  # a duplicate image
    inputs = [str(p) for p in bundled] + [str(bad), str(tmp_path / "missing.jpg"), str(copy)]
    parts = tmp_path / "parts"
    got = hash_to_parquet(inputs, parts, "pdq", client=client, partition_size=5)
    local = hx.hash_images(inputs, "pdq", workers=1)
    assert (got.ok, got.failed) == (local.ok, local.failed) == (len(inputs) - 2, 2)
    assert len(got.parts) == -(-len(inputs) // 5) and len(partition_files(parts)) == len(got.parts)
    back = concat_lists(list(iter_partitions(parts)), "pdq")
    assert back.hashes == local.hashes  # codes and qualities
    assert back.ids.tolist() == local.positions.tolist() and back.keys.tolist() == local.ids
    assert [(e[1], e[2]) for e in read_errors(parts)] == [(e[0], e[1]) for e in local.errors]
    import pyarrow.dataset as ds

    assert ds.dataset(str(parts), format="parquet").count_rows() == local.ok
    with pytest.raises(FileExistsError):
        hash_to_parquet(inputs, parts, "pdq", client=client)

    idx = build_sharded_from_parquet(parts, tmp_path / "idx", 3, client=client)
    assert len(idx) == local.ok and idx.algorithm == "pdq" and idx.has_keys
    one = hx.HashIndex("pdq")
    one.add(local.hashes, local.positions, keys=local.ids)
    assert idx.search(local.hashes, 31, client=client) == one.search(local.hashes, 31)
    assert idx.keys(local.positions, client=client) == local.ids
    clusters = find_duplicates_sharded(idx, 31, client=client)
    assert clusters == hx.find_duplicates(local.hashes, 31, ids=local.positions)
    assert [0, len(inputs) - 1] in clusters


def test_sharded_build_from_hash_list_files(client, data, union, tmp_path):
    codes, ids, keys = data
    files = []
    for i, lo in enumerate(range(0, len(codes), 3000)):
        f = tmp_path / f"list{i}.{'csv' if i % 2 else 'parquet'}"
        write_hash_list(f, hx.HashArray(codes[lo:lo + 3000], "pdq"), ids[lo:lo + 3000],
                        keys[lo:lo + 3000])
        files.append(str(f))
    idx = build_sharded_from_parquet(files, tmp_path / "idx", 5, client=client)
    assert idx.search(codes[::9], 31, client=client) == union.search(codes[::9], 31)
    te = tmp_path / "te.csv"  # a ThreatExchange export: its columns become metadata
    te.write_text("signal_type,signal_str,collab,category,tags\n" + "".join(
        f"pdq,{codes[i].tobytes().hex()},c{i},cat,t{i % 2}\n" for i in range(5)))
    idx = build_sharded_from_parquet([str(te)], tmp_path / "te-idx", 2, client=client)
    assert idx.metadata([0, 4], ["collab", "tags"], client=client) == \
        [{"collab": "c0", "tags": "t0"}, {"collab": "c4", "tags": "t0"}]
    dup = tmp_path / "dup.csv"
    write_hash_list(dup, hx.HashArray(codes[:3], "pdq"), ids[:3])
    with pytest.raises(hx.HashFormatError, match="unique"):
        build_sharded_from_parquet(files + [str(dup)], tmp_path / "idx2", 2, client=client)


def test_hash_images_dask_on_a_distributed_client(client, bundled):
    paths = [str(p) for p in bundled[:9]] + ["/nonexistent.jpg"]
    res = hash_images_dask(paths, "pdq", partition_size=4, scheduler=client)
    local = hx.hash_images(paths, "pdq", workers=1)
    assert res.hashes == local.hashes and res.errors == local.errors


@pytest.mark.slow
def test_bigger_index_on_the_cluster(client, tmp_path):
    codes, ids = planted(300_000, 3000, seed=5)
    idx = hx.ShardedIndex.build(codes, tmp_path / "big", shards=6, ids=ids, algorithm="pdq")
    one = hx.HashIndex("pdq")
    one.add(codes, ids)
    q = codes[::50]
    assert idx.search(q, 31, client=client) == one.search(q, 31)
    assert find_duplicates_sharded(idx, 31, client=client) == \
        hx.find_duplicates(codes, 31, ids=ids)


def test_urls_end_to_end_on_an_in_process_cluster(bundled):
    """Image URLs in, partitions and shards out to URLs (fsspec's in-memory file system,
    which only threads of this process share; s3:// or gs:// go the same way)."""
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"memory://hx-urls-{os.getpid()}"
    urls = []
    for p in bundled[:6]:
        fs.pipe_file(f"{root}/in/{p.name}", p.read_bytes())
        urls.append(f"{root}/in/{p.name}")
    urls.append(f"{root}/in/missing.jpg")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        got = hash_to_parquet(urls, f"{root}/parts", "pdq", client=c, partition_size=4)
        assert (got.ok, got.failed) == (6, 1)
        assert [e[1] for e in read_errors(f"{root}/parts")] == [urls[-1]]
        idx = build_sharded_from_parquet(f"{root}/parts", f"{root}/idx", 2, client=c)
        local = hx.hash_images([str(p) for p in bundled[:6]], "pdq", workers=1)
        assert idx.search(local.hashes, 0, client=c) == [[(i, 0)] for i in range(6)]
        assert hx.ShardedIndex.open(f"{root}/idx").keys(range(6)) == urls[:6]


def test_connect_to_a_scheduler_address(client, data, union, sharded):
    from hashlib_ext.distributed import connect

    codes, _, _ = data
    with connect(client.scheduler.address) as other:  # what --scheduler ADDRESS does
        assert other.scheduler.address == client.scheduler.address
        assert sharded.search(codes[:20], 31, client=other) == union.search(codes[:20], 31)
