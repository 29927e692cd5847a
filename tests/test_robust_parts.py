"""The robust matcher's parts: word retrieval, keypoint spreading, verification tests,
the score tail model."""

from __future__ import annotations

import numpy as np
import pytest

from hashlib_ext import features, verify, wordindex
from hashlib_ext.evaluate import tailmodel

pytest.importorskip("cv2")


def test_word_keys_take_the_listed_bits():
    desc = np.zeros((2, 32), np.uint8)
    b = wordindex.WORD_BITS[5]
    desc[1, b // 8] = 0x80 >> (b % 8)  # np.unpackbits order
    assert wordindex.word_keys(desc).tolist() == [0, 1 << 5]


def test_votes_match_a_brute_force_count_across_merged_segments():
    rng = np.random.default_rng(0)
    idx = wordindex.WordIndex()
    all_keys: list[int] = []
    all_owners: list[int] = []
    first = 0
    for n in (50, 7, 300, 1, 64):  # several adds: segments merge like a binary counter
        desc = rng.integers(0, 256, (n * 5, 32), dtype=np.uint8)
        owners = np.repeat(np.arange(first, first + n), 5)
        first += n
        keys = wordindex.word_keys(desc)
        idx.add(keys, owners.astype(np.uint32))
        all_keys += keys.tolist()
        all_owners += owners.tolist()
    assert len(idx) == len(all_keys)
    q = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    q[:10] = 0  # identical descriptors: each still votes on its own
    idx.add(wordindex.word_keys(np.zeros((3, 32), np.uint8)), np.full(3, 7, np.uint32))
    all_keys += [0, 0, 0]
    all_owners += [7, 7, 7]
    images, counts = idx.votes(q)
    probes = wordindex.probes(wordindex.word_keys(q), len(wordindex.WORD_BITS))
    expect: dict[int, int] = {}
    posted = np.array(all_keys, np.uint32)
    owners = np.array(all_owners)
    for row in probes.tolist():  # one vote per (query descriptor, image)
        for o in set(owners[np.isin(posted, row)].tolist()):
            expect[o] = expect.get(o, 0) + 1
    assert dict(zip(images.tolist(), counts.tolist(), strict=True)) == expect
    # top() sums the sets and keeps the best; per-set votes come with it
    best, per_set = idx.top([q, q[:20]], 3)
    total = {i: c for i, c in zip(images.tolist(), counts.tolist(), strict=True)}
    assert per_set[:, 0].tolist() == [total[i] for i in best.tolist()]
    assert sorted(total.values(), reverse=True)[:1] <= [int(per_set[0, 0])]


def test_spread_takes_every_cell_before_any_second():
    rng = np.random.default_rng(1)
    # 500 strong points in one corner cell, 63 weak ones, one per other cell
    corner = rng.uniform(0, 10, (500, 2))
    cells = np.array([[(i % 8) * 80 + 40, (i // 8) * 60 + 30] for i in range(1, 64)], float)
    xy = np.concatenate([corner, cells]).astype(np.float32)
    response = np.concatenate([np.full(500, 10.0), np.full(63, 1.0)]).astype(np.float32)
    keep = features.spread(xy, response, (480, 640), 100)
    assert len(keep) == 100
    assert set(range(500, 563)) <= set(keep.tolist())  # every weak cell point is kept
    assert response[keep[0]] == 10.0  # strongest first


def test_verification_scores_a_moved_copy_and_not_noise():
    rng = np.random.default_rng(2)
    xy = rng.uniform(20, 620, (200, 2)).astype(np.float32)
    xy[:, 1] *= 0.75
    desc = rng.integers(0, 256, (200, 32), dtype=np.uint8)
    thumb = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    # the query: the same points and descriptors, shifted by (10, 5)
    q_xy = xy + np.float32([10, 5])
    q_thumb = np.kron(thumb, np.ones((3, 3), np.uint8))  # 48x48 of the same picture
    s = verify.score(q_xy, desc, (640, 480), q_thumb, xy, desc, (640, 480), thumb)
    assert s >= 60
    other = rng.integers(0, 256, (200, 32), dtype=np.uint8)
    assert verify.score(q_xy, other, (640, 480), q_thumb, xy, desc, (640, 480), thumb) == 0


def test_within_is_an_exact_scan():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (20, 32), dtype=np.uint8)
    b = np.concatenate([a[:5] ^ np.uint8(1), rng.integers(0, 256, (30, 32), dtype=np.uint8)])
    qi, ci, d = verify.within(a, b, 40)
    full = np.unpackbits(a[:, None] ^ b[None], axis=2).sum(axis=2)
    assert sorted(zip(qi.tolist(), ci.tolist(), d.tolist(), strict=True)) == sorted(
        (i, j, int(full[i, j])) for i, j in zip(*np.nonzero(full <= 40), strict=True))


def test_geometric_tail_recovers_its_decay():
    rng = np.random.default_rng(4)
    scores = np.concatenate([np.zeros(90_000, int), 2 + rng.geometric(0.6, 10_000) - 1])
    hist = np.bincount(scores)
    model = tailmodel.fit_tail(hist, min_tail=100)
    assert abs(model.decay - 0.4) < 0.03
    assert model.fpr(model.s0) == pytest.approx((scores >= model.s0).mean())
    t = model.threshold_for(1e-9)
    assert model.fpr(t) <= 1e-9 < model.fpr(t - 1)
    assert tailmodel.union_fpr(1e-6, 10) == pytest.approx(1e-5, rel=1e-4)


def test_votes_when_no_probe_hits():
    idx = wordindex.WordIndex()
    idx.add(np.array([1, 2, 3], np.uint32), np.array([0, 1, 2], np.uint32))
    far = np.full((4, 32), 0xFF, np.uint8)  # its words and their neighbours are not posted
    images, counts = idx.votes(far)
    assert images.tolist() == [] and counts.tolist() == []
    best, per_set = idx.top([far, far[:0]], 5)
    assert best.tolist() == [] and per_set.shape == (0, 2)
