"""Safe dedup in the library: duplicate_forest, dedup_graph (edges, diameters, chaining
guard), the keeper rules and dihedral hashing of many images, checked against brute force."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from PIL import Image, ImageOps

import hashlib_ext as hx
from hashlib_ext.clusters import (
    DuplicateCluster,
    dedup_graph,
    default_max_diameter,
    distances_to,
)
from hashlib_ext.dedup import duplicate_forest, duplicate_labels
from hashlib_ext.dihedral_batch import hash_images_dihedral
from hashlib_ext.hash import popcount
from hashlib_ext.keeper import (
    FileFacts,
    choose_keeper,
    file_facts,
    image_pixels,
    keeper_order,
    parse_keep_by,
)


def flip(rng, code: np.ndarray, k: int) -> np.ndarray:
    bits = np.unpackbits(code)
    bits[rng.choice(bits.size, k, replace=False)] ^= 1
    return np.packbits(bits)


def dist_matrix(codes: np.ndarray) -> np.ndarray:
    return popcount(codes[:, None, :] ^ codes[None, :, :])


def planted(seed: int, n_base=120, nbytes=32, max_flip=20, size=(2, 7)) -> np.ndarray:
    """Random codes plus groups of near copies of some of them, shuffled, with a few exact
    repeats."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n_base, nbytes), dtype=np.uint8)
    rows = [base]
    for i in rng.choice(n_base, n_base // 3, replace=False):
        for _ in range(rng.integers(*size)):
            rows.append(flip(rng, base[i], int(rng.integers(0, max_flip + 1)))[None])
    codes = np.concatenate(rows)
    codes = np.concatenate([codes, codes[rng.choice(len(codes), 10)]])
    return codes[rng.permutation(len(codes))]


def chain(rng, length: int, step: int, nbytes=32) -> np.ndarray:
    """A walk: each code ``step`` bits from the previous one, never back over a bit."""
    bits = np.unpackbits(rng.integers(0, 256, nbytes, dtype=np.uint8))
    order = rng.permutation(bits.size)
    rows = [bits.copy()]
    for k in range(1, length):
        bits[order[(k - 1) * step:k * step]] ^= 1
        rows.append(bits.copy())
    return np.packbits(np.array(rows), axis=1)


def check_cluster(c: DuplicateCluster, codes: np.ndarray, t: int) -> None:
    """Edges are true links forming a spanning tree; links and diameter as brute force."""
    m = np.asarray(c.members)
    d = dist_matrix(codes[m])
    assert len(c.edges) == len(m) - 1
    parent = list(range(len(m)))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for i, j, dist in c.edges:
        assert 0 <= i < j < len(m)
        assert dist == d[i, j] <= t
        parent[find(i)] = find(j)
    assert len({find(i) for i in range(len(m))}) == 1  # spans the cluster
    if c.diameter_exact:
        assert c.diameter == d.max()
        assert c.links == int(np.triu(d <= t, 1).sum())
    else:
        assert c.diameter <= d.max()
        assert c.diameter in d  # attained by a real pair
        assert c.diameter_bound is None or c.diameter_bound >= d.max()


# -- duplicate_forest ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_forest_spans_the_components_with_true_links(seed):
    codes = planted(seed)
    t = 31
    f = duplicate_forest(codes, t, batch_size=40)
    labels = duplicate_labels(codes, t)
    assert np.array_equal(f.labels[f.inverse], labels)
    distinct = codes[f.first]
    assert np.array_equal(distinct[f.inverse], codes)
    assert len({bytes(r) for r in distinct}) == len(distinct)
    assert len(f.edges) == len(distinct) - np.unique(f.labels).size
    u, v, dist = f.edges.T
    assert (dist == popcount(distinct[u] ^ distinct[v])).all() and (dist <= t).all()
    assert (f.labels[u] == f.labels[v]).all()


def test_forest_prefers_short_links_within_a_batch():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, 32, dtype=np.uint8)
    b = flip(rng, a, 3)
    c = flip(rng, a, 30)  # 30 from a; b-c is 27 or more
    f = duplicate_forest(np.stack([a, b, c]), 31)
    d = dist_matrix(np.stack([a, b, c]))
    # a minimum spanning tree of the triangle drops its longest side
    assert sorted(f.edges[:, 2].tolist()) == sorted(sorted([d[0, 1], d[0, 2], d[1, 2]])[:2])


# -- dedup_graph: the find_duplicates contract, edges, links, diameters --------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_members_equal_find_duplicates_when_the_guard_is_off(seed):
    codes = planted(seed)
    rng = np.random.default_rng(seed)
    ids = rng.choice(10**9, len(codes), replace=False)
    got = dedup_graph(codes, 31, ids=ids, chaining="off")
    assert [c.members for c in got] == hx.find_duplicates(codes, 31, ids=ids)
    assert not any(c.chained or c.split for c in got)
    for c in dedup_graph(codes, 31, chaining="off"):
        check_cluster(c, codes, 31)
    assert {c.component for c in got} == set(range(len(got)))


def test_identical_hashes_give_a_star_of_zero_edges_not_all_pairs():
    one = np.arange(32, dtype=np.uint8)[None]
    codes = np.concatenate([np.repeat(one, 5000, axis=0), ~one])
    (c,) = dedup_graph(codes, 31)
    assert c.members == list(range(5000))
    assert len(c.edges) == 4999 and all(d == 0 for _, _, d in c.edges)
    assert c.links == 5000 * 4999 // 2 and c.diameter == 0 and not c.chained


# -- the chaining guard ----------------------------------------------------------------------
def test_a_planted_chain_is_split_or_flagged_and_a_real_cluster_is_not():
    rng = np.random.default_rng(7)
    t = 31
    walk = chain(rng, 26, 24)  # A~B~...~Z, 24 bits a step: A and Z are 600 bits apart
    original = rng.integers(0, 256, 32, dtype=np.uint8)
    copies = np.stack([original] + [flip(rng, original, int(k)) for k in
                                    rng.integers(10, t + 1, 12)])  # all within t of it
    noise = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    codes = np.concatenate([walk, copies, noise])
    walk_ids, copy_ids = set(range(26)), set(range(26, 26 + len(copies)))
    single = hx.find_duplicates(codes, t)
    assert sorted(map(sorted, single)) == sorted([sorted(walk_ids), sorted(copy_ids)])
    d_copies = dist_matrix(copies)
    assert d_copies.max() > t  # a real cluster is not a clique either

    flagged = dedup_graph(codes, t, chaining="flag")
    by_members = {frozenset(c.members): c for c in flagged}
    assert by_members[frozenset(walk_ids)].chained
    assert by_members[frozenset(walk_ids)].diameter == dist_matrix(walk).max() > 2 * t
    assert not by_members[frozenset(copy_ids)].chained

    split = dedup_graph(codes, t)  # the default: split
    real = [c for c in split if set(c.members) & copy_ids]
    assert len(real) == 1 and set(real[0].members) == copy_ids and not real[0].split
    pieces = [c for c in split if set(c.members) & walk_ids]
    assert len(pieces) > 1 and all(c.split and not c.chained for c in pieces)
    assert sorted(i for c in pieces for i in c.members) == sorted(walk_ids)
    assert len({c.component for c in pieces}) == 1
    for c in pieces:
        check_cluster(c, codes, t)
        assert c.diameter <= default_max_diameter(t)
        # a star: some member is within t of every other member
        d = dist_matrix(codes[c.members])
        assert (d <= t).all(axis=1).any()


def test_max_diameter_decides_what_is_chained():
    rng = np.random.default_rng(8)
    walk = chain(rng, 4, 10)  # diameter 30 at threshold 10
    (c,) = dedup_graph(walk, 10, chaining="flag")
    assert c.diameter == 30 and c.chained  # > 2 x 10
    (c,) = dedup_graph(walk, 10, chaining="flag", max_diameter=30)
    assert not c.chained
    (c,) = dedup_graph(walk, 10, chaining="off")
    assert not c.chained and c.diameter == 30
    with pytest.raises(ValueError, match="below the threshold"):
        dedup_graph(walk, 10, max_diameter=9)
    with pytest.raises(ValueError, match="chaining"):
        dedup_graph(walk, 10, chaining="maybe")


def test_large_clusters_get_bounds_and_are_flagged_not_split():
    rng = np.random.default_rng(9)
    walk = chain(rng, 30, 20)
    codes = np.concatenate([walk, walk[:3]])
    (c,) = dedup_graph(codes, 31, exact_limit=8)
    check_cluster(c, codes, 31)
    assert not c.diameter_exact and c.links is None
    assert c.diameter > 62 and c.chained and not c.split
    assert c.diameter_bound is not None and c.diameter_bound >= dist_matrix(walk).max()


# -- dihedral variants ---------------------------------------------------------------------
def test_variants_link_a_hash_to_a_rotation_of_another():
    rng = np.random.default_rng(10)
    n = 6
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    variants = rng.integers(0, 256, (n, 8, 32), dtype=np.uint8)
    variants[:, 0] = codes  # row 0: the hash itself
    codes[4] = flip(rng, variants[1, 3], 5)  # 4 is near "rotation 3" of 1
    variants[4, 0] = codes[4]
    assert hx.find_duplicates(codes, 31) == []
    (c,) = dedup_graph(codes, 31, variants=variants.reshape(-1, 32))
    assert c.members == [1, 4] and c.edges == [(0, 1, 5)] and c.diameter == 5
    assert distances_to(codes, [1, 4], 1, variants=variants).tolist() == [0, 5]
    assert distances_to(codes, [1, 4], 1).tolist()[1] > 31
    with pytest.raises(hx.HashFormatError, match="8 rows"):
        dedup_graph(codes, 31, variants=variants[:, :4])


@pytest.fixture(scope="module")
def turned(bundled, tmp_path_factory):
    """Five bundled images, each with a mirrored and a 90-degree-turned copy."""
    d = tmp_path_factory.mktemp("turned")
    paths = []
    for k, p in enumerate(bundled[:5]):
        with Image.open(p) as im:
            im = im.convert("RGB")
            for name, img in (("orig", im), ("mirror", ImageOps.mirror(im)),
                              ("rot90", im.transpose(Image.Transpose.ROTATE_90))):
                out = d / f"{k}_{name}.png"
                img.save(out)
                paths.append(str(out))
    return paths


def test_hash_images_dihedral_on_real_images(turned, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    srcs = [*turned[:3], str(broken)]
    got = hash_images_dihedral(srcs, "pdq", workers=2)
    assert len(got) == 3 and got.ids == turned[:3] and got.positions.tolist() == [0, 1, 2]
    assert len(got.variants) == 24
    assert [(e[0], e[1]) for e in got.errors] == [(str(broken), "ImageDecodeError")]
    plain = hx.hash_images(turned[:3], "pdq", workers=1).hashes
    assert got.hashes == plain
    with pytest.raises(ValueError, match="dihedral"):
        hash_images_dihedral(srcs, "phash")


def test_dihedral_dedup_finds_mirrored_and_turned_copies(turned):
    got = hash_images_dihedral(turned, "pdq", workers=2)
    t = hx.default_threshold("pdq")
    expected = [[3 * k, 3 * k + 1, 3 * k + 2] for k in range(5)]
    with_turns = dedup_graph(got.hashes, t, variants=got.variants)
    assert [c.members for c in with_turns] == expected
    plain = hx.find_duplicates(got.hashes, t)
    assert not any(3 * k + 1 in c or 3 * k + 2 in c for c in plain for k in range(5))


# -- keeper ----------------------------------------------------------------------------------
def test_keeper_rules_in_order_with_unknowns_last():
    a = FileFacts("a.jpg", pixels=100, size=50, mtime=3.0)
    b = FileFacts("b.jpg", pixels=400, size=10, mtime=2.0)
    c = FileFacts("c.jpg", pixels=400, size=20, mtime=1.0)
    none = FileFacts()
    facts = [none, a, b, c]
    assert keeper_order(facts) == [3, 2, 1, 0]  # resolution, then size, then oldest
    assert choose_keeper(facts, ("size",)) == 1
    assert choose_keeper(facts, ("oldest",)) == 3
    assert choose_keeper(facts, ("newest",)) == 1
    assert choose_keeper(facts, ("path",)) == 1
    assert choose_keeper([none, FileFacts()]) == 0  # nothing known: the first member
    assert choose_keeper(facts, parse_keep_by("resolution,newest")) == 2
    for bad in ("colour", "size,size", "oldest,newest", ""):
        with pytest.raises(ValueError):
            parse_keep_by(bad)


def test_file_facts_read_the_header_size_and_times(tmp_path):
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(big)
    Image.new("RGB", (32, 24), (10, 200, 30)).save(small)
    os.utime(small, (1_000_000, 1_000_000))
    fb, fs = file_facts(str(big)), file_facts(str(small))
    assert (fb.pixels, fs.pixels) == (64 * 48, 32 * 24)
    assert fb.size == big.stat().st_size and fs.mtime == 1_000_000
    assert choose_keeper([fs, fb]) == 1
    assert choose_keeper([fs, fb], ("oldest",)) == 0
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    ft = file_facts(str(text))
    assert ft.pixels is None and ft.size == 12
    assert image_pixels(str(tmp_path / "missing.png")) is None
    assert file_facts(str(tmp_path / "missing.png")) == FileFacts(str(tmp_path / "missing.png"))
    assert file_facts(str(tmp_path)).size is None  # a folder is not a file


def test_every_pair_of_a_clique_is_within_the_threshold_in_no_split():
    # A clique of near copies never trips the guard, whatever the mode.
    rng = np.random.default_rng(11)
    base = rng.integers(0, 256, 32, dtype=np.uint8)
    codes = np.stack([base] + [flip(rng, base, 7) for _ in range(6)])
    assert all(popcount(a ^ b) <= 31 for a, b in itertools.combinations(codes, 2))
    for mode in ("split", "flag", "off"):
        (c,) = dedup_graph(codes, 31, chaining=mode)
        assert c.members == list(range(7)) and not c.chained and not c.split
