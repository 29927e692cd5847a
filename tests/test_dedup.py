"""find_duplicates against a brute-force numpy + union-find reference."""

from __future__ import annotations

import numpy as np
import pytest

import hashlib_ext as hx
from hashlib_ext.dedup import duplicate_labels
from hashlib_ext.errors import HashFormatError
from hashlib_ext.hash import popcount


def brute_force_clusters(codes: np.ndarray, threshold: int, ids=None) -> list[list[int]]:
    """All-pairs distances, then plain union-find."""
    n = len(codes)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    dist = popcount(codes[:, None, :] ^ codes[None, :, :])
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in zip(*np.nonzero(dist <= threshold), strict=True):
        parent[find(int(i))] = find(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(int(ids[i]))
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def flip_bits(rng, code: np.ndarray, k: int) -> np.ndarray:
    bits = np.unpackbits(code)
    bits[rng.choice(bits.size, k, replace=False)] ^= 1
    return np.packbits(bits)


def planted(n_base: int, nbytes: int, seed: int, max_flip: int, cluster_size=(2, 6)):
    """Random codes plus clusters of near copies (each within max_flip bits of its seed)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n_base, nbytes), dtype=np.uint8)
    rows = [base]
    for i in rng.choice(n_base, n_base // 4, replace=False):
        for _ in range(rng.integers(*cluster_size)):
            rows.append(flip_bits(rng, base[i], int(rng.integers(0, max_flip + 1)))[None])
    codes = np.concatenate(rows)
    return codes[rng.permutation(len(codes))]


@pytest.mark.parametrize("nbytes,threshold,max_flip", [(32, 31, 20), (8, 10, 6), (8, 4, 6)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_on_planted_clusters(nbytes, threshold, max_flip, seed):
    codes = planted(300, nbytes, seed, max_flip)
    expected = brute_force_clusters(codes, threshold)
    assert len(expected) > 10  # the planted clusters are there
    got = hx.find_duplicates(codes, threshold, batch_size=64)
    assert got == expected
    assert got == hx.find_duplicates(hx.HashArray(codes, "pdq" if nbytes == 32 else "phash"),
                                     threshold)


def test_uniform_random_64_bit_matches_brute_force():
    # 64-bit codes at threshold 20 link many pairs by chance: long chains, merged clusters.
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (400, 8), dtype=np.uint8)
    expected = brute_force_clusters(codes, 20)
    assert any(len(c) > 2 for c in expected)
    assert hx.find_duplicates(codes, 20, batch_size=50) == expected


@pytest.mark.parametrize("kind", ["auto", "flat", "mih"])
def test_distance_exactly_threshold_joins(kind):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, 32, dtype=np.uint8)
    b = flip_bits(rng, a, 31)
    c = flip_bits(rng, a, 32)
    far = np.bitwise_not(a)  # all 256 bits flipped
    codes = np.stack([a, b, far, c])
    assert hx.find_duplicates(codes, kind=kind, threshold=31) == [[0, 1]]
    assert hx.find_duplicates(codes, kind=kind, threshold=30) == []
    # c is 32 from a; at 32 it joins, and b joins through a (single linkage).
    assert hx.find_duplicates(codes, kind=kind, threshold=32) == [[0, 1, 3]]
    assert hx.find_duplicates(codes, kind=kind, threshold=256) == [[0, 1, 2, 3]]


def test_empty_single_and_exact_duplicates():
    assert hx.find_duplicates(np.zeros((0, 32), np.uint8), 31) == []
    assert hx.find_duplicates(hx.HashArray.empty("pdq", 256), 31) == []
    one = np.arange(32, dtype=np.uint8)[None]
    assert hx.find_duplicates(one, 31) == []
    assert hx.find_duplicates(one, 31, include_singletons=True) == [[0]]
    many = np.repeat(one, 1000, axis=0)  # many identical hashes: collapsed before the join
    assert hx.find_duplicates(many, 0) == [list(range(1000))]


def test_ids_name_the_members_and_order():
    codes = planted(120, 32, 9, 10)
    rng = np.random.default_rng(0)
    ids = rng.choice(10**12, len(codes), replace=False).astype(np.int64)
    got = hx.find_duplicates(codes, 31, ids=ids)
    assert got == brute_force_clusters(codes, 31, ids)
    assert all(c == sorted(c) for c in got)
    assert [c[0] for c in got] == sorted(c[0] for c in got)


def test_include_singletons_partitions_all_ids():
    codes = planted(100, 8, 2, 3)
    got = hx.find_duplicates(codes, 3, include_singletons=True)
    assert sorted(i for c in got for i in c) == list(range(len(codes)))
    assert [c for c in got if len(c) > 1] == brute_force_clusters(codes, 3)


def test_labels_with_tiny_batches_and_constant_compression(monkeypatch):
    # One query per batch and a full union-find compression after every batch: the
    # results must not change.
    from hashlib_ext import dedup

    codes = planted(200, 8, 4, 8, cluster_size=(10, 30))
    expected = brute_force_clusters(codes, 8)
    monkeypatch.setattr(dedup, "RESULT_BUDGET", 5)
    monkeypatch.setattr(dedup, "_COMPRESS_EVERY", 1)
    assert hx.find_duplicates(codes, 8, batch_size=64) == expected
    labels = duplicate_labels(codes, 8, batch_size=64)
    assert labels.shape == (len(codes),)


def test_bad_arguments():
    with pytest.raises(HashFormatError):
        hx.find_duplicates(np.zeros((3, 4), np.int32), 3)
    with pytest.raises(HashFormatError, match="ids"):
        hx.find_duplicates(np.zeros((3, 4), np.uint8), 3, ids=[1, 2])
    with pytest.raises(ValueError, match="threshold"):
        hx.find_duplicates(np.zeros((3, 4), np.uint8), -1)


@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_every_index_kind_gives_the_same_clusters(kind):
    # "mih" forces HashIndex's multi-index-hashing path even at this small size.
    codes = planted(400, 32, 11, 28)
    assert hx.find_duplicates(codes, 31, kind=kind, batch_size=100) == \
        brute_force_clusters(codes, 31)
    codes64 = planted(400, 8, 12, 9)
    assert hx.find_duplicates(codes64, 10, kind=kind) == brute_force_clusters(codes64, 10)


def test_progress_bar_goes_to_stderr(capsys):
    codes = planted(50, 8, 0, 3)
    hx.find_duplicates(codes, 3, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "dedup" in err


@pytest.mark.slow
def test_auto_index_at_mih_size_matches_flat():
    # Above HashIndex's AUTO_MIH_MIN, "auto" switches to MIH tables; clusters must not change.
    rng = np.random.default_rng(21)
    n = 60_000
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    src = rng.integers(0, n, 3000)
    dst = rng.choice(n, 3000, replace=False)
    bits = np.unpackbits(codes[src], axis=1)
    for _ in range(31):
        bits[np.arange(3000), rng.integers(0, 256, 3000)] ^= 1
    codes[dst] = np.packbits(bits, axis=1)
    auto = hx.find_duplicates(codes, 31)
    assert len(auto) > 1000
    assert auto == hx.find_duplicates(codes, 31, kind="flat")


# -- bounded memory on dense inputs ---------------------------------------------------------

def dense_blob(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct 256-bit codes, each 3 bits from one centre (all pairs within 6 bits)."""
    rng = np.random.default_rng(seed)
    centre = np.unpackbits(rng.integers(0, 256, 32, dtype=np.uint8))
    flips: set[tuple[int, ...]] = set()
    while len(flips) < n:
        flips.add(tuple(sorted(rng.choice(256, 3, replace=False).tolist())))
    bits = np.tile(centre, (n, 1))
    for i, f in enumerate(sorted(flips)):
        bits[i, list(f)] ^= 1
    return np.packbits(bits, axis=1)


def _recording_searches(monkeypatch) -> list[tuple[int, int]]:
    """Record (queries, matches) of every range search dedup runs."""
    from hashlib_ext import dedup

    calls: list[tuple[int, int]] = []
    real = dedup._range_searcher

    def wrapped(codes, threshold, kind):
        search, threaded = real(codes, threshold, kind)

        def recorded(queries):
            lims, found, dist = search(queries)
            calls.append((len(queries), int(found.size)))
            return lims, found, dist

        return recorded, threaded

    monkeypatch.setattr(dedup, "_range_searcher", wrapped)
    return calls


@pytest.mark.parametrize("kind", ["auto", "flat"])
def test_dense_blob_searches_stay_within_the_result_budget(monkeypatch, kind):
    """Every pair of 2,000 hashes (plus two far outliers) matches: 4M pairs. With a budget
    of 20,000 matches, no search may return much more than that, and the clusters are
    exact."""
    from hashlib_ext import dedup

    monkeypatch.setattr(dedup, "RESULT_BUDGET", 20_000)
    calls = _recording_searches(monkeypatch)
    blob = dense_blob(2000)
    codes = np.concatenate([blob, ~blob[:1], ~blob[1:2] ^ np.uint8(0xF0)])
    got = hx.find_duplicates(codes, 31, kind=kind)
    assert got == [list(range(2000))]
    n = len(codes)
    assert sum(q for q, _ in calls) == n  # the outliers keep every query necessary
    assert max(found for _, found in calls) <= 20_000 + n  # one query may match everything
    assert got == brute_force_clusters(codes, 31)


def test_one_cluster_ends_the_search_early(monkeypatch):
    calls = _recording_searches(monkeypatch)
    codes = dense_blob(3000, seed=1)
    assert hx.find_duplicates(codes, 31) == [list(range(3000))]
    assert sum(q for q, _ in calls) < 1000  # the first batch joined everything


def test_union_find_matches_scipy_on_random_edges():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from hashlib_ext.dedup import _Components

    rng = np.random.default_rng(3)
    n = 5000
    uf = _Components(n)
    rows, cols = [], []
    for _ in range(40):
        r, c = rng.integers(0, n, 150), rng.integers(0, n, 150)
        uf.add(r, c)
        rows.append(r)
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    ncomp, lab = connected_components(coo_matrix((np.ones(r.size), (r, c)), shape=(n, n)),
                                      directed=False)
    got = uf.labels()
    assert uf.count == ncomp == np.unique(got).size
    # same partition: labels map one to one
    pairs = np.unique(np.stack([got, lab]), axis=1)
    assert pairs.shape[1] == ncomp
    assert (got <= np.arange(n)).all()  # each label is the smallest member


@pytest.mark.slow
def test_forty_thousand_hashes_within_three_bits_in_bounded_memory():
    """The case that ran out of memory: 40,000 distinct hashes, all pairs within the
    threshold (800M pairs), plus one outlier so that no early exit helps."""
    import tracemalloc

    codes = dense_blob(40_000, seed=2)
    codes = np.concatenate([codes, ~codes[:1]])
    tracemalloc.start()
    got = hx.find_duplicates(codes, 31)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert got == [list(range(40_000))]
    assert peak < 600 << 20, peak
