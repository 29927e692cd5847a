"""Metrics against hand-computed cases and brute-force numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from hashlib_ext.evaluate import metrics
from hashlib_ext.hash import HashArray


def _codes(rows: list[list[int]], nbytes: int = 8) -> np.ndarray:
    out = np.zeros((len(rows), nbytes), dtype=np.uint8)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _brute_pairs(codes: np.ndarray) -> np.ndarray:
    d = HashArray(codes, "x").pairwise()
    iu = np.triu_indices(len(codes), k=1)
    return d[iu]


def _brute_dihedral(codes: np.ndarray, q8: np.ndarray) -> np.ndarray:
    n = len(codes)
    out = []
    for i in range(n):
        for j in range(n):
            if i != j:
                out.append(min(bin(int.from_bytes((q8[i, k] ^ codes[j]).tobytes(), "big"))
                               .count("1") for k in range(q8.shape[1])))
    return np.array(out)


def test_histogram_counts_and_ignores_missing():
    h = metrics.histogram(np.array([0, 1, 1, 3, -1]), bits=4)
    assert h.tolist() == [1, 2, 0, 1, 0]
    with pytest.raises(ValueError, match="exceeds"):
        metrics.histogram(np.array([5]), bits=4)


def test_same_distances_by_hand():
    a = _codes([[0x00], [0xFF], [0x0F]])
    b = _codes([[0x01], [0xFF], [0xF0]])
    assert metrics.same_distances(a, b).tolist() == [1, 0, 8]
    with pytest.raises(ValueError):
        metrics.same_distances(a, b[:2])


def test_distinct_histogram_by_hand():
    # first bytes 0x00, 0x01, 0x03: d(0,1)=1, d(0,2)=2, d(1,2)=1
    h = metrics.distinct_histogram(_codes([[0x00], [0x01], [0x03]]))
    assert h.shape == (65,)
    assert h[:4].tolist() == [0, 2, 1, 0] and h.sum() == 3


@pytest.mark.parametrize("nbytes", [8, 32])
def test_distinct_histogram_matches_brute_force(nbytes, monkeypatch):
    rng = np.random.default_rng(nbytes)
    base = rng.integers(0, 256, (60, nbytes), dtype=np.uint8)
    codes = np.concatenate([base, base[:5], base[:3] ^ 1])  # duplicates and near-duplicates
    expected = np.bincount(_brute_pairs(codes), minlength=nbytes * 8 + 1)
    assert metrics.distinct_histogram(codes).tolist() == expected.tolist()
    monkeypatch.setattr(metrics, "_CHUNK_CELLS", 100)  # many small range-search chunks
    assert metrics.distinct_histogram(HashArray(codes, "x")).tolist() == expected.tolist()


def test_distinct_histogram_tiny_inputs():
    assert metrics.distinct_histogram(_codes([[1]])).sum() == 0
    assert metrics.distinct_histogram(_codes([[1], [1]]))[0] == 1


def test_dihedral_same_distances_is_min_over_queries():
    orig = _codes([[0x00], [0xFF]])
    q8 = np.stack([_codes([[0x07], [0x01], [0x0F]]), _codes([[0x00], [0xFE], [0xFF]])])
    assert metrics.dihedral_same_distances(orig, q8).tolist() == [1, 0]


@pytest.mark.parametrize("chunk", [None, 50])
def test_dihedral_distinct_histogram_matches_brute_force(chunk, monkeypatch):
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (25, 32), dtype=np.uint8)
    q8 = rng.integers(0, 256, (25, 8, 32), dtype=np.uint8)
    q8[:, 0] = codes  # the identity rotation equals the original, as with PDQ
    q8[3, 5] = codes[4]
    q8[3, 5, 0] ^= 2  # a planted near match (1 bit): image 3 rotated looks like image 4
    if chunk:
        monkeypatch.setattr(metrics, "_CHUNK_CELLS", chunk)
    expected = np.bincount(_brute_dihedral(codes, q8), minlength=257)
    got = metrics.dihedral_distinct_histogram(codes, q8)
    assert got.tolist() == expected.tolist()
    assert got.sum() == 25 * 24 and got[1] >= 1
    # min over 8 can only lower distances: the dihedral FPR dominates the plain one
    plain = metrics.distinct_histogram(codes)
    assert np.all(metrics.fpr_curve(got) >= metrics.fpr_curve(plain) - 1e-12)


def test_recall_fpr_and_threshold_by_hand():
    same = np.array([2, 1, 0, 1, 0])      # distances 0,0,1,3 over 4 bits
    diff = np.array([0, 0, 1, 3, 6])      # 10 distinct pairs
    assert metrics.recall_at(same, 0) == 0.5
    assert metrics.recall_at(same, 1) == 0.75
    assert metrics.recall_at(same, 4) == 1.0
    assert metrics.recall_at(same, -1) == 0.0
    assert metrics.fpr_at(diff, 1) == 0.0
    assert metrics.fpr_at(diff, 2) == pytest.approx(0.1)
    assert metrics.fpr_at(diff, 3) == pytest.approx(0.4)
    assert metrics.threshold_for_fpr(diff, 0.0) == 1
    assert metrics.threshold_for_fpr(diff, 0.1) == 2
    assert metrics.threshold_for_fpr(diff, 0.39) == 2
    assert metrics.threshold_for_fpr(np.array([1, 0, 9]), 0.05) == -1  # nothing meets it


def test_roc_and_auc_by_hand():
    same = np.array([1, 1, 0])  # distances 0, 1
    diff = np.array([0, 1, 1])  # distances 1, 2
    fpr, tpr = metrics.roc_curve(same, diff)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    # P(s < d) + ties/2 over the 4 (s, d) pairs: (0,1) (0,2) (1,2) win, (1,1) ties -> 3.5 / 4
    assert metrics.auc(same, diff) == pytest.approx(0.875)
    assert metrics.auc(np.array([3, 0, 0]), np.array([0, 0, 5])) == pytest.approx(1.0)
    assert metrics.auc(np.array([0, 0, 5]), np.array([3, 0, 0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="widths"):
        metrics.roc_curve(np.ones(3), np.ones(4))


def test_auc_equals_mann_whitney_on_random_samples():
    rng = np.random.default_rng(3)
    s = rng.binomial(64, 0.2, 300)
    d = rng.binomial(64, 0.45, 500)
    wins = (s[:, None] < d[None, :]).mean() + 0.5 * (s[:, None] == d[None, :]).mean()
    got = metrics.auc(metrics.histogram(s, 64), metrics.histogram(d, 64))
    assert got == pytest.approx(wins, abs=1e-12)


def test_throughput():
    assert metrics.throughput(100, 2.0) == 50.0
    assert metrics.throughput(0, 1.0) == 0.0
