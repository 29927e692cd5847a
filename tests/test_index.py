"""HashIndex: exactness against a brute-force numpy reference, ids, errors, persistence."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashlib_ext import index as index_mod
from hashlib_ext import mih
from hashlib_ext.errors import (
    AlgorithmMismatchError,
    HashFormatError,
    IndexFileError,
    UnknownAlgorithmError,
)
from hashlib_ext.hash import Hash, HashArray
from hashlib_ext.index import HashIndex

KINDS = ["flat", "mih"]


# -- reference ------------------------------------------------------------------------------
def ref_distances(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    """(nq, n) Hamming distances by unpacking bits: independent of the index's popcount."""
    qb = np.unpackbits(q, axis=1).astype(np.int16)
    db_ = np.unpackbits(db, axis=1).astype(np.int16)
    return (qb[:, None, :] != db_[None, :, :]).sum(axis=2)


def ref_search(q, db, ids, t):
    d = ref_distances(q, db)
    out = []
    for row in d:
        hit = np.flatnonzero(row <= t)
        out.append(sorted(((int(ids[i]), int(row[i])) for i in hit), key=lambda p: (p[1], p[0])))
    return out


def ref_knn(q, db, ids, k):
    d = ref_distances(q, db)
    return [sorted(((int(ids[i]), int(r[i])) for i in range(len(ids))),
                   key=lambda p: (p[1], p[0]))[:k] for r in d]


def flip(code: np.ndarray, bits: list[int] | np.ndarray) -> np.ndarray:
    out = code.copy()
    for b in bits:
        out[b // 8] ^= np.uint8(1 << (7 - b % 8))
    return out


def planted(rng, n, nbytes, nq, max_flips):
    """Random codes, plus queries that are stored codes with up to max_flips flipped bits."""
    db = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    src = rng.integers(0, n, nq)
    q = np.stack([flip(db[s], rng.choice(nbytes * 8, rng.integers(0, max_flips + 1),
                                         replace=False)) for s in src])
    return db, q


def clustered(rng, nbytes, centres, per, spread):
    """Near-duplicate clusters: each centre plus `per` variants within `spread` bits."""
    c = rng.integers(0, 256, (centres, nbytes), dtype=np.uint8)
    rows = [c]
    for _ in range(per):
        rows.append(np.stack([flip(x, rng.choice(nbytes * 8, rng.integers(0, spread + 1),
                                                 replace=False)) for x in c]))
    return np.concatenate(rows)


def make(kind, bits, db=None, ids=None):
    ix = HashIndex(bits=bits, kind=kind)
    if db is not None:
        ix.add(db, ids)
    return ix


@pytest.fixture(params=[True, False], ids=["kernel", "numpy"])
def mih_path(request, monkeypatch):
    """Run MIH searches through the compiled kernel (when installed) and the numpy path."""
    monkeypatch.setattr(mih, "USE_KERNEL", request.param)
    return request.param


# -- exactness ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bits", [64, 72, 128, 256])
def test_search_matches_bruteforce(kind, bits, mih_path):
    rng = np.random.default_rng(bits)
    nb = bits // 8
    db, q = planted(rng, 3000, nb, 60, bits // 4)
    db[100:110] = db[5]  # duplicates
    ix = make(kind, bits, db)
    for t in [0, 1, bits // 16, bits // 8, bits // 4]:
        assert ix.search(q, t) == ref_search(q, db, np.arange(len(db)), t), (kind, bits, t)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bits", [64, 256])
def test_boundary_is_inclusive_for_every_spread(kind, bits, mih_path):
    """Codes at exactly t and t+1 bits, with the flips spread every way across the parts:
    evenly (the pigeonhole worst case), concentrated in one part, and at random."""
    rng = np.random.default_rng(7)
    nb = bits // 8
    base = rng.integers(0, 256, nb, dtype=np.uint8)
    noise = rng.integers(0, 256, (2000, nb), dtype=np.uint8)
    ix = make(kind, bits, noise)
    ix.search(base, 1)  # builds the tables, so the layout is known
    widths = ix.stats()["mih_widths"] or [bits]
    starts = np.cumsum([0] + widths[:-1])
    for t in [bits // 8, bits // 8 + 3, bits // 6]:
        variants = []
        for d in (t, t + 1):
            even = [starts[i % len(widths)] + i // len(widths) for i in range(d)]
            variants += [flip(base, even), flip(base, range(d)),
                         flip(base, rng.choice(bits, d, replace=False))]
        v = np.stack(variants)
        ix2 = make(kind, bits, np.concatenate([noise, v]))
        got = ix2.search(base, t)[0]
        ids = {i for i, _ in got}
        at_t = set(range(2000, 2003))
        over = set(range(2003, 2006))
        assert at_t <= ids and not (over & ids), (t, got)
        assert all(d == t for i, d in got if i in at_t)


@pytest.mark.parametrize("kind", KINDS)
def test_all_bits_flipped_and_threshold_at_width(kind, mih_path):
    rng = np.random.default_rng(3)
    db = rng.integers(0, 256, (500, 8), dtype=np.uint8)
    ix = make(kind, 64, db)
    q = ~db[:3]
    assert all(r[-1] == (i, 64) for i, r in enumerate(ix.search(q, 64)))
    assert all((i, 64) not in r for i, r in enumerate(ix.search(q, 63)))
    for t in (64, 100, 10**12):  # threshold >= width returns everything, sorted
        res = ix.search(db[:2], t)
        assert res == ref_search(db[:2], db, np.arange(500), t)
        assert all(len(r) == 500 for r in res)


@pytest.mark.parametrize("kind", KINDS)
def test_duplicates_keep_all_ids(kind, mih_path):
    code = np.arange(32, dtype=np.uint8)
    ix = HashIndex("pdq", kind=kind)
    ix.add(np.stack([code] * 5), ids=[10, 11, 12, 13, 14])
    ix.add(code)
    assert ix.search(code, 0) == [[(10, 0), (11, 0), (12, 0), (13, 0), (14, 0), (15, 0)]]


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index(kind):
    ix = HashIndex("pdq", kind=kind)
    q = np.zeros((3, 32), dtype=np.uint8)
    assert len(ix) == 0
    assert ix.search(q, 31) == [[], [], []]
    assert ix.knn(q, 5) == [[], [], []]
    lims, ids, dist = ix.search_arrays(q, 31)
    assert lims.tolist() == [0, 0, 0, 0] and ids.size == 0 and dist.size == 0
    assert ix.search(np.zeros((0, 32), np.uint8), 3) == []


@pytest.mark.parametrize("kind", KINDS)
def test_single_hash_index(kind, mih_path):
    h = Hash(bytes(range(8)), "phash")
    ix = HashIndex(bits=64, kind=kind)
    ix.add(HashArray(h.code[None, :], "phash"))
    assert len(ix) == 1
    assert ix.search(h, 0) == [[(0, 0)]]
    far = Hash(bytes(255 - b for b in range(8)), "phash")
    assert ix.search(far, 10) == [[]]
    assert ix.knn(far, 3) == [[(0, 64)]]


@pytest.mark.parametrize("kind", KINDS)
def test_clustered_data(kind, mih_path):
    rng = np.random.default_rng(11)
    db = clustered(rng, 32, centres=40, per=25, spread=40)
    q = np.stack([flip(db[i], rng.choice(256, 5, replace=False))
                  for i in rng.integers(0, len(db), 50)])
    ix = make(kind, 256, db)
    for t in (8, 31, 45):
        assert ix.search(q, t) == ref_search(q, db, np.arange(len(db)), t)


def test_many_queries(mih_path):
    rng = np.random.default_rng(5)
    db, q = planted(rng, 2000, 8, 2500, 12)
    ix = make("mih", 64, db)
    assert ix.search(q, 10) == ref_search(q, db, np.arange(2000), 10)


@settings(max_examples=40, deadline=None)
@given(
    nbytes=st.sampled_from([1, 2, 3, 8, 9, 16]),
    n=st.integers(1, 60),
    t=st.integers(0, 80),
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_exact(nbytes, n, t, kind, seed):
    rng = np.random.default_rng(seed)
    db = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    db[rng.integers(0, n, n // 3)] = db[0]
    q = np.concatenate([db[:3], rng.integers(0, 256, (3, nbytes), dtype=np.uint8)])
    ids = rng.permutation(10 * n)[:n]
    ix = make(kind, nbytes * 8, db, ids)
    assert ix.search(q, t) == ref_search(q, db, ids, t)


def test_search_arrays_layout():
    rng = np.random.default_rng(2)
    db, q = planted(rng, 500, 8, 20, 6)
    ix = make("mih", 64, db)
    lims, ids, dist = ix.search_arrays(q, 6)
    assert lims.dtype == np.int64 and ids.dtype == np.int64 and dist.dtype == np.int32
    ref = ref_search(q, db, np.arange(500), 6)
    for i, r in enumerate(ref):
        assert list(zip(ids[lims[i]:lims[i + 1]].tolist(),
                        dist[lims[i]:lims[i + 1]].tolist(), strict=True)) == r


def test_plan_satisfies_pigeonhole():
    for widths in [(16,) * 16, (22,) * 4 + (21,) * 8, (9, 9, 9, 9, 9, 9, 9, 9), (3, 3, 2)]:
        for t in range(0, 60):
            plan = mih.plan_radii(widths, t, 10**6, sum(widths) // 8)
            if plan.probes:
                assert sum(p.radius + 1 for p in plan.probes) > t
                assert len({p.table for p in plan.probes}) == len(plan.probes)


# -- knn ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_knn_matches_bruteforce_with_ties_by_id(kind, mih_path):
    rng = np.random.default_rng(9)
    db, q = planted(rng, 800, 8, 30, 8)
    db[200:230] = db[0]  # many ties
    q[0] = db[0]
    ix = make(kind, 64, db)
    for k in (1, 5, 40):
        assert ix.knn(q, k) == ref_knn(q, db, np.arange(800), k)
    assert len(ix.knn(q[:1], 5000)[0]) == 800
    with pytest.raises(ValueError):
        ix.knn(q, 0)


# -- ids, add, remove ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_ids_and_remove(kind, mih_path):
    rng = np.random.default_rng(4)
    db, q = planted(rng, 1000, 8, 40, 8)
    ix = HashIndex(bits=64, kind=kind)
    assert ix.add(db[:500]).tolist() == list(range(500))
    assert ix.add(db[500:]).tolist() == list(range(500, 1000))
    ix.search(q, 8)  # build tables, then invalidate them by removing
    gone = rng.choice(1000, 300, replace=False)
    assert ix.remove(gone) == 300
    assert ix.remove(gone) == 0
    keep = np.setdiff1d(np.arange(1000), gone)
    assert len(ix) == 700
    assert ix.search(q, 8) == ref_search(q, db[keep], keep, 8)
    assert ix.add(db[:2]).tolist() == [1000, 1001]  # default ids continue after the last
    custom = ix.add(db[:1], ids=[5_000_000_000])
    assert custom.tolist() == [5_000_000_000]
    assert (5_000_000_000, 0) in ix.search(db[0], 0)[0]


def test_add_validates_ids_and_keys():
    ix = HashIndex(bits=64)
    codes = np.zeros((3, 8), np.uint8)
    with pytest.raises(HashFormatError):
        ix.add(codes, ids=[1, 2])
    with pytest.raises(HashFormatError):
        ix.add(codes, ids=np.array([0.5, 1, 2]))
    with pytest.raises(HashFormatError):
        ix.add(codes, keys=["a"])
    assert len(ix) == 0


def test_keys_lookup():
    ix = HashIndex(bits=64)
    ix.add(np.eye(8, dtype=np.uint8)[:3] * 255, keys=["a.jpg", "b.jpg", "c.jpg"])
    ix.add(np.zeros((1, 8), np.uint8))
    assert ix.keys([2, 0, 3, 99]) == ["c.jpg", "a.jpg", None, None]
    ix.remove([0])
    assert ix.keys([0]) == [None]


def test_metadata_columns_and_rows():
    ix = HashIndex(bits=64)
    codes = np.arange(32, dtype=np.uint8).reshape(4, 8)
    ix.add(codes[:2], metadata={"collab": ["c1", None], "tags": ["a b", "c"]})
    ix.add(codes[2:], [10, 11], metadata=[{"category": "x", "tags": "t"}, None])
    assert ix.metadata_columns == ["collab", "tags", "category"]
    assert ix.metadata([0, 1, 10, 11, 99]) == [
        {"collab": "c1", "tags": "a b"}, {"tags": "c"}, {"tags": "t", "category": "x"}, {}, {}]
    assert ix.metadata([0, 10], columns=["tags", "nope"]) == [{"tags": "a b"}, {"tags": "t"}]
    ix.add(codes[:1], [0], metadata={"collab": [None]})  # None clears an id's value
    assert ix.metadata([0]) == [{"tags": "a b"}]
    ix.remove([10])
    assert ix.metadata([10]) == [{}]
    for bad in ({"c": "one string"}, {"c": ["a"]}, {"": ["a", "b"]}, {"c": [1, 2]},
                [{"c": "a"}], ["row", "row"], "text", {5: ["a", "b"]}):
        with pytest.raises(HashFormatError):
            ix.add(codes[:2], metadata=bad)
    assert len(ix) == 4  # 4 added, 1 more, 1 removed, none of the refused adds


def test_keys_and_metadata_round_trip_in_one_file(tmp_path):
    rng = np.random.default_rng(4)
    db = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    ix = HashIndex("pdq")
    ids = np.arange(1000, 1300)
    ix.add(HashArray(db, "pdq"), ids, keys=[f"dir/{i} \udcff\u00e9.jpg" for i in ids],
           metadata={"collab": [None if i % 3 else f"c{i}" for i in ids],
                     "tags": ["" for _ in ids]})
    ix.add(HashArray(db[:2], "pdq"), metadata=[{"payload": '{"a": [1]}'}, None])
    path = tmp_path / "a #b?c%41.hxidx"
    ix.save(path)
    assert os.listdir(tmp_path) == [path.name]  # one file: no side database
    back = HashIndex.load(path)
    assert np.array_equal(back.ids, ix.ids) and np.array_equal(back.codes, ix.codes)
    assert back.keys(ix.ids) == ix.keys(ix.ids)
    assert back.metadata_columns == ["collab", "tags", "payload"]
    assert back.metadata(ix.ids) == ix.metadata(ix.ids)
    assert back.add(db[:1]).tolist() == [1302]


def test_extreme_ids_and_names_round_trip(tmp_path):
    ix = HashIndex("x" * 256, bits=64, design_threshold=3)
    ix.add(np.zeros((2, 8), np.uint8), ids=[-(2**63), 2**63 - 1], keys=["lo", "hi"])
    ix.save(tmp_path / "e.hxidx")
    back = HashIndex.load(tmp_path / "e.hxidx")
    assert back.keys([2**63 - 1, -(2**63)]) == ["hi", "lo"] and back.algorithm == "x" * 256
    with pytest.raises(HashFormatError):
        HashIndex("x" * 257, bits=64)
    with pytest.raises(ValueError):
        HashIndex(bits=64, design_threshold=-1)


def test_index_file_that_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo.hxidx"
    os.mkfifo(fifo)  # a plain open() for reading would block
    with pytest.raises(IndexFileError, match="regular file"):
        HashIndex.load(fifo)
    with pytest.raises(IndexFileError):
        HashIndex.load(tmp_path)


def _rewrite(path, edit) -> None:
    """Apply ``edit(header)`` to a saved file and re-checksum it (a crafted file)."""
    import hashlib

    data = path.read_bytes()
    hlen = int.from_bytes(data[8:16], "little")
    head = json.loads(data[16:16 + hlen])
    edit(head)
    raw = json.dumps(head).encode()
    body = data[:8] + len(raw).to_bytes(8, "little") + raw + data[16 + hlen:-32]
    path.write_bytes(body + hashlib.sha256(body).digest())


@pytest.mark.parametrize("edit", [
    lambda h: h["meta"].update(bits=10**40),
    lambda h: h["meta"].update(bits=12),
    lambda h: h["meta"].update(count=True),
    lambda h: h["meta"].update(next_id=2**64),
    lambda h: h["meta"].update(design_threshold=-1),
    lambda h: h["meta"].update(algorithm=["pdq"]),
    lambda h: h["meta"].update(algorithm="phash"),
    lambda h: h["meta"].update(kind="ivf"),
    lambda h: h["meta"].update(metadata_columns=["a", "a"]),
    lambda h: h["meta"].update(metadata_columns=["a"] * 300),
    lambda h: h["meta"].update(mih=[]),
    lambda h: h["meta"]["mih"].update(inline=True),
    lambda h: h["meta"]["mih"].update(indexed=10**6),
    lambda h: h["meta"]["mih"].update(slack=7),
    lambda h: h["meta"]["mih"].update(widths=[256]),
    lambda h: h["sections"][0].update(name="other"),
    lambda h: h["sections"].reverse(),
    lambda h: h.update(meta=None),
    lambda h: h.update(version=True),
], ids=lambda e: "")
def test_crafted_headers_are_index_file_errors(tmp_path, edit):
    _, path = _saved(tmp_path)
    _rewrite(path, edit)
    with pytest.raises(IndexFileError, match=path.name):
        HashIndex.load(path)


def test_keys_sections_must_match_the_ids(tmp_path):
    from hashlib_ext import container

    ix = HashIndex(bits=64)
    ix.add(np.zeros((3, 8), np.uint8), keys=["a", "b", "c"])
    path = tmp_path / "k.hxidx"
    ix.save(path)
    version, meta, arrays = container.read(path, "hashlib_ext.HashIndex", 2)
    for ids in ([0, 0, 1], [0, 1, 7], [2, 1, 0]):
        arrays["keys.ids"] = np.array(ids, "<i8")
        container.write(path, "hashlib_ext.HashIndex", 2, meta, arrays)
        with pytest.raises(IndexFileError, match="keys sections"):
            HashIndex.load(path)


# -- errors ---------------------------------------------------------------------------------
def test_wrong_width_and_algorithm_are_clear_errors():
    ix = HashIndex("pdq")
    assert ix.bits == 256
    with pytest.raises(HashFormatError, match="32"):
        ix.add(np.zeros((2, 8), np.uint8))
    with pytest.raises(AlgorithmMismatchError, match="phash"):
        ix.search(Hash(bytes(8), "phash"), 3)
    with pytest.raises(AlgorithmMismatchError, match="pdq"):
        ix.search(HashArray(np.zeros((1, 32), np.uint8), "otheralgo"), 3)
    with pytest.raises(HashFormatError):
        ix.search([b"\x00" * 32], 3)
    with pytest.raises(ValueError):
        ix.search(np.zeros(32, np.uint8), -1)
    with pytest.raises(AlgorithmMismatchError):
        HashIndex("pdq", bits=64)
    with pytest.raises(UnknownAlgorithmError, match="pass bits="):
        HashIndex("no-such-algorithm")
    with pytest.raises(HashFormatError):
        HashIndex(bits=12)
    with pytest.raises(ValueError):
        HashIndex(bits=64, kind="ivf")


def test_raw_index_accepts_any_algorithm_of_its_width():
    ix = HashIndex(bits=64)
    ix.add(HashArray(np.zeros((1, 8), np.uint8), "dhash"))
    assert ix.search(Hash(bytes(8), "phash"), 0) == [[(0, 0)]]
    with pytest.raises(AlgorithmMismatchError):
        ix.search(Hash(bytes(32), "pdq"), 0)


# -- dihedral -------------------------------------------------------------------------------
def test_search_dihedral_reports_variant():
    rng = np.random.default_rng(8)
    db = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    ix = HashIndex("pdq")
    ix.add(HashArray(db, "pdq"))
    variants = rng.integers(0, 256, (16, 32), dtype=np.uint8)
    variants[5] = flip(db[42], [1, 2, 3])  # query 0, variant 5 is near id 42
    variants[3] = flip(db[42], range(20))  # a worse match of the same id
    variants[8 + 6] = db[7]  # query 1, variant 6 is exactly id 7
    res = ix.search_dihedral(HashArray(variants, "pdq"), 31)
    assert res[0] == [(42, 3, 5)]
    assert res[1] == [(7, 0, 6)]
    with pytest.raises(HashFormatError):
        ix.search_dihedral(HashArray(variants[:7], "pdq"), 31)


# -- persistence ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(tmp_path, kind):
    rng = np.random.default_rng(12)
    db, q = planted(rng, 1500, 32, 30, 30)
    ids = rng.permutation(10_000)[:1500]
    ix = HashIndex("pdq", kind=kind)
    ix.add(HashArray(db, "pdq"), ids, keys=[f"img/{i}.jpg" for i in ids])
    before = ix.search(q, 31)
    path = tmp_path / "a.hxidx"
    ix.save(path)
    back = HashIndex.load(path)
    assert (back.algorithm, back.bits, back.kind, len(back)) == ("pdq", 256, kind, 1500)
    assert back.search(q, 31) == before
    assert back.stats()["mih_widths"] == ix.stats()["mih_widths"]
    assert np.array_equal(back.codes, db) and np.array_equal(back.ids, ids)
    assert back.keys(ids[:2]) == [f"img/{ids[0]}.jpg", f"img/{ids[1]}.jpg"]
    assert back.add(db[:1]).tolist() == [int(ids.max()) + 1]


def test_save_load_empty_and_raw(tmp_path):
    ix = HashIndex(bits=72)
    ix.save(tmp_path / "e.hxidx")
    back = HashIndex.load(tmp_path / "e.hxidx")
    assert len(back) == 0 and back.bits == 72 and back.algorithm is None


def test_crash_during_save_keeps_old_file(tmp_path, monkeypatch):
    from hashlib_ext import container

    path = tmp_path / "a.hxidx"
    ix = HashIndex(bits=64)
    ix.add(np.zeros((10, 8), np.uint8), keys=[f"k{i}" for i in range(10)])
    ix.save(path)
    old = path.read_bytes()
    ix.add(np.ones((10, 8), np.uint8))
    real = container._chunks

    def failing(head, arrays):
        for i, chunk in enumerate(real(head, arrays)):
            if i == 4:
                raise OSError("disk full")
            yield chunk

    monkeypatch.setattr(container, "_chunks", failing)
    with pytest.raises(OSError, match="disk full"):
        ix.save(path)
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["a.hxidx"]  # no temp file left behind
    back = HashIndex.load(path)
    assert len(back) == 10 and back.keys([9]) == ["k9"]


def _saved(tmp_path) -> tuple[bytes, os.PathLike]:
    ix = HashIndex("pdq", kind="mih")
    ix.add(np.random.default_rng(0).integers(0, 256, (300, 32), dtype=np.uint8))
    ix.search(np.zeros(32, np.uint8), 31)
    path = tmp_path / "x.hxidx"
    ix.save(path)
    return path.read_bytes(), path


@pytest.mark.parametrize("damage", ["truncate", "truncate_header", "flip_payload",
                                    "flip_header", "flip_checksum", "bad_magic", "empty",
                                    "extend"])
def test_corrupted_files_are_refused(tmp_path, damage):
    data, path = _saved(tmp_path)
    hlen = int.from_bytes(data[8:16], "little")
    b = bytearray(data)
    if damage == "truncate":
        b = b[:len(b) // 2]
    elif damage == "truncate_header":
        b = b[:16 + hlen // 2]
    elif damage == "flip_payload":
        b[16 + hlen + 200] ^= 0x01
    elif damage == "flip_header":
        b[16 + hlen // 2] ^= 0x01
    elif damage == "flip_checksum":
        b[-1] ^= 0x80
    elif damage == "bad_magic":
        b[:8] = b"PK\x03\x04xxxx"
    elif damage == "empty":
        b = bytearray()
    elif damage == "extend":
        b += b"\x00" * 16
    path.write_bytes(bytes(b))
    with pytest.raises(IndexFileError, match=str(path.name)):
        HashIndex.load(path)


def test_newer_version_is_refused(tmp_path):
    import hashlib

    data, path = _saved(tmp_path)
    hlen = int.from_bytes(data[8:16], "little")
    head = json.loads(data[16:16 + hlen])
    head["version"] = 99
    new_head = json.dumps(head).encode()
    body = data[:8] + len(new_head).to_bytes(8, "little") + new_head + data[16 + hlen:-32]
    path.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(IndexFileError, match="version 99"):
        HashIndex.load(path)


def test_tampered_tables_with_valid_checksum_are_refused(tmp_path):
    """A crafted file whose checksum matches but whose tables point out of range."""
    import hashlib

    data, path = _saved(tmp_path)
    hlen = int.from_bytes(data[8:16], "little")
    head = json.loads(data[16:16 + hlen])
    offset = 16 + hlen
    for s in head["sections"]:
        if s["name"] == "mih.entries":
            break
        offset += int(np.prod(s["shape"])) * np.dtype(s["dtype"]).itemsize
    b = bytearray(data[:-32])
    b[offset:offset + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(b) + hashlib.sha256(bytes(b)).digest())
    with pytest.raises(IndexFileError, match="out of range"):
        HashIndex.load(path)


def test_missing_file_is_index_file_error(tmp_path):
    with pytest.raises(IndexFileError):
        HashIndex.load(tmp_path / "nope.hxidx")


@pytest.mark.parametrize("inline", [False, True])
@pytest.mark.parametrize("slack", mih.SLACKS)
@pytest.mark.parametrize("widths", [(16,) * 4, (22, 21, 21), (6, 6, 6, 6), (9,) * 8 + (8,) * 8])
def test_mih_tables_every_layout(slack, widths, inline, mih_path):
    """Every (widths, slack, inline) layout the planner may choose answers exactly."""
    if inline and sum(widths) > 64:
        pytest.skip("inline tables hold codes of at most 64 bits")
    rng = np.random.default_rng(sum(widths) + slack)
    nb = sum(widths) // 8
    db, q = planted(rng, 1500, nb, 40, 12)
    db[700:720] = db[3]
    tables = mih.MIHTables.build(db, widths, slack, inline)
    assert tables.check() is None and tables.inline == inline
    for t in (0, 5, 12):
        plan = mih.plan_radii(widths, t, len(db), nb, slack, inline)
        qi, pos, dist = tables.range_search(db, q, t, plan)
        got = [[] for _ in range(len(q))]
        for a, b, c in zip(qi.tolist(), pos.tolist(), dist.tolist(), strict=True):
            got[a].append((b, c))
        got = [sorted(g, key=lambda p: (p[1], p[0])) for g in got]
        assert got == ref_search(q, db, np.arange(len(db)), t)


def test_query_keys_kernel_equals_numpy_extraction():
    """The compiled per-query key extraction gives, for parts at any bit offset and width,
    the prefix and tag that the numpy extraction of the tables' keys gives."""
    kernel = pytest.importorskip("hashlib_ext._mih_kernel")
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    starts, widths, shifts = [0, 3, 24, 100, 224, 250], [24, 23, 32, 17, 32, 6], [3, 0, 8, 5, 11, 6]
    pre, tag = kernel.part_keys(codes, *(np.array(v, dtype=np.int64)
                                         for v in (starts, widths, shifts)))
    for j, (s, w, sh) in enumerate(zip(starts, widths, shifts, strict=True)):
        keys = mih.extract_keys(codes, s, w).astype(np.int64)
        assert (pre[:, j] == keys >> sh).all() and (tag[:, j] == keys & ((1 << sh) - 1)).all()


def test_read_only_and_strided_queries_are_searched(mih_path):
    """Queries straight from a bytes buffer (read-only) or a strided view answer like a
    fresh array."""
    rng = np.random.default_rng(8)
    db, q = planted(rng, 40_000, 32, 30, 20)
    ix = HashIndex("pdq", kind="mih")
    ix.add(HashArray(db, "pdq"))
    want = ix.search(q.copy(), 20)
    assert any(want)
    assert ix.search(np.frombuffer(q.tobytes(), np.uint8).reshape(q.shape), 20) == want
    wide = np.zeros((len(q), 64), dtype=np.uint8)
    wide[:, ::2] = q
    assert ix.search(wide[:, ::2], 20) == want


def test_save_load_inline_tables(tmp_path, monkeypatch):
    """64-bit codes at scale use inline tables; force them at small n and round-trip."""
    rng = np.random.default_rng(21)
    db, q = planted(rng, 3000, 8, 50, 10)
    ix = HashIndex("phash", kind="mih")
    monkeypatch.setattr(mih, "choose_layout", lambda *a: ((22, 21, 21), 2, True))
    ix.add(HashArray(db, "phash"))
    before = ix.search(q, 10)
    assert before == ref_search(q, db, np.arange(3000), 10)
    assert ix.stats()["mih_inline"] is True
    ix.save(tmp_path / "p.hxidx")
    back = HashIndex.load(tmp_path / "p.hxidx")
    assert back.stats()["mih_inline"] is True and back.search(q, 10) == before


def test_auto_kind_switches_to_mih_and_stays_exact(monkeypatch):
    monkeypatch.setattr(index_mod, "AUTO_MIH_MIN", 1000)
    rng = np.random.default_rng(13)
    db, q = planted(rng, 5000, 32, 30, 35)
    ix = HashIndex("pdq")
    ix.add(db[:500])
    assert ix.search(q, 31) == ref_search(q, db[:500], np.arange(500), 31)
    assert ix.stats()["mih_widths"] is None  # below the size rule: scan, no tables
    ix.add(db[500:])
    assert ix.search(q, 31) == ref_search(q, db, np.arange(5000), 31)
    assert ix.stats()["mih_widths"] is not None
    # a threshold where probing would cost more than a scan still answers exactly
    assert ix.search(q[:3], 120) == ref_search(q[:3], db, np.arange(5000), 120)


def test_prepare_builds_tables_before_save(tmp_path, monkeypatch):
    monkeypatch.setattr(index_mod, "AUTO_MIH_MIN", 100)
    ix = HashIndex("pdq")
    ix.add(np.random.default_rng(1).integers(0, 256, (500, 32), dtype=np.uint8))
    assert ix.stats()["mih_widths"] is None
    ix.prepare()
    assert ix.stats()["mih_widths"] is not None
    ix.save(tmp_path / "p.hxidx")
    assert HashIndex.load(tmp_path / "p.hxidx").stats()["mih_widths"] is not None
    small = HashIndex("pdq")
    small.add(np.zeros((5, 32), np.uint8))
    small.prepare()  # below the size rule: nothing to build
    assert small.stats()["mih_widths"] is None


# -- incremental add: MIH tables plus an exactly scanned tail -------------------------------
def _at_distance(rng, code: np.ndarray, d: int) -> np.ndarray:
    return flip(code, rng.choice(code.size * 8, d, replace=False))


@pytest.mark.parametrize("bits", [64, 256])
def test_incremental_add_search_remove_matches_bruteforce(bits, mih_path):
    """Interleaved add/search/remove with forced MIH: results equal the brute-force
    reference whether a code sits in the tables or in the tail."""
    rng = np.random.default_rng(bits + 7)
    nb, t = bits // 8, (10 if bits == 64 else 31)
    ix = HashIndex(bits=bits, kind="mih")
    db = np.zeros((0, nb), np.uint8)
    ids = np.zeros(0, np.int64)

    def check(q):
        assert ix.search(q, t) == ref_search(q, db, ids, t)
        lims, got_ids, got_d = ix.search_arrays(q, t)
        ref = ref_search(q, db, ids, t)
        assert np.array_equal(np.diff(lims), [len(r) for r in ref])
        assert got_ids.tolist() == [i for r in ref for i, _ in r]
        assert got_d.tolist() == [d for r in ref for _, d in r]

    def add(codes, new_ids=None):
        nonlocal db, ids
        got = ix.add(codes, new_ids)
        db, ids = np.concatenate([db, codes]), np.concatenate([ids, got])

    add(rng.integers(0, 256, (800, nb), dtype=np.uint8))
    q0 = np.stack([_at_distance(rng, db[i], d) for i, d in [(3, t), (5, t + 1), (9, 0)]])
    check(q0)  # builds the tables over 800 codes
    assert ix.stats()["mih_indexed"] == 800
    # A tail holding duplicates of indexed codes, codes at exactly t and t + 1, custom ids.
    tail = np.stack([db[3], db[3], _at_distance(rng, db[10], t),
                     _at_distance(rng, db[11], t + 1)])
    add(tail)
    add(rng.integers(0, 256, (30, nb), dtype=np.uint8), np.arange(30) * 7 + 10**10)
    assert ix.stats()["mih_indexed"] == 800 and len(ix) == 834
    q1 = np.concatenate([q0, db[[3, 10, 11, 820, 833]],
                         np.stack([_at_distance(rng, db[830], t)])])
    check(q1)
    assert ix.stats()["mih_indexed"] == 800  # no rebuild for a small tail
    # Removing tail codes keeps the tables; removing an indexed code drops them.
    assert ix.remove([int(ids[801]), int(ids[833])]) == 2
    keep = ~np.isin(ids, [ids[801], ids[833]])
    db, ids = db[keep], ids[keep]
    assert ix.stats()["mih_indexed"] == 800
    check(q1)
    add(rng.integers(0, 256, (5, nb), dtype=np.uint8))
    check(q1)
    assert ix.remove([3]) == 1
    db, ids = db[ids != 3], ids[ids != 3]
    assert ix.stats()["mih_widths"] is None
    check(q1)  # rebuilt over everything
    assert ix.stats()["mih_indexed"] == len(ix)
    add(db[:2])  # duplicates of indexed codes, new default ids
    check(q1)
    assert ix.search_dihedral(np.repeat(db[-1:], 8, axis=0), t)[0][0][1] == 0
    assert ix.knn(q1, 3) == ref_knn(q1, db, ids, 3)


def test_tail_rebuild_rule(monkeypatch):
    monkeypatch.setattr(index_mod, "TAIL_MIN", 10)
    monkeypatch.setattr(index_mod, "TAIL_FRACTION", 0.1)
    rng = np.random.default_rng(3)
    db, q = planted(rng, 400, 32, 20, 31)
    ix = HashIndex("pdq", kind="mih")
    ix.add(db[:200])
    ix.search(q, 31)
    ix.add(db[200:220])  # tail 20 <= max(10, 0.1 * 200): kept
    assert ix.search(q, 31) == ref_search(q, db[:220], np.arange(220), 31)
    assert ix.stats()["mih_indexed"] == 200
    ix.add(db[220:])  # tail 200 > 20: the next search rebuilds
    assert ix.search(q, 31) == ref_search(q, db, np.arange(400), 31)
    assert ix.stats()["mih_indexed"] == 400
    ix.add(db[:3])
    ix.prepare()  # prepare indexes the tail too
    assert ix.stats()["mih_indexed"] == 403
    monkeypatch.setattr(index_mod, "TAIL_MAX", 25)  # the cap wins over 10% of 403
    ix.add(db[:25])
    ix.search(q, 31)
    assert ix.stats()["mih_indexed"] == 403
    ix.add(db[:1])
    assert ix.search(q, 31) == ref_search(q, np.concatenate([db, db[:3], db[:26]]),
                                          np.arange(429), 31)
    assert ix.stats()["mih_indexed"] == 429


@pytest.mark.parametrize("kind", ["mih", "auto"])
def test_save_load_with_a_tail(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(index_mod, "AUTO_MIH_MIN", 100)
    rng = np.random.default_rng(21)
    db, q = planted(rng, 700, 32, 30, 33)
    ids = rng.permutation(10**6)[:700]
    ix = HashIndex("pdq", kind=kind)
    ix.add(db[:600], ids[:600], keys=[f"k{i}" for i in ids[:600]])
    ix.search(q, 31)
    ix.add(db[600:], ids[600:], keys=[f"k{i}" for i in ids[600:]])
    assert ix.stats()["mih_indexed"] == 600
    expected = ref_search(q, db, ids, 31)
    assert ix.search(q, 31) == expected
    path = tmp_path / "tail.hxidx"
    ix.save(path)
    back = HashIndex.load(path)
    assert back.stats()["mih_indexed"] == 700 and len(back) == 700
    assert back.search(q, 31) == expected
    assert np.array_equal(back.codes, db) and np.array_equal(back.ids, ids)
    assert back.keys(ids[-1:]) == [f"k{ids[-1]}"]
    back.add(db[:4])
    assert back.search(q, 31) == ref_search(
        q, np.concatenate([db, db[:4]]), np.concatenate([ids, np.arange(4) + ids.max() + 1]), 31)
