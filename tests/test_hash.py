"""Hash and HashArray: hex/bytes round trips, parse errors, Hamming distances vs a brute force."""

from __future__ import annotations

import numpy as np
import pytest

import hashlib_ext as hx
from hashlib_ext.hash import popcount


def _hamming(a: bytes, b: bytes) -> int:
    """Reference Hamming distance: popcount of the xor, one Python int at a time."""
    return bin(int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).count("1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _codes(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)


# -- Hash -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm,nbytes", [("phash", 8), ("ahash", 8), ("pdq", 32)])
def test_hex_round_trip(rng, algorithm, nbytes):
    for code in _codes(rng, 20, nbytes):
        h = hx.Hash(code, algorithm)
        assert h.bits == nbytes * 8
        assert h.hex == code.tobytes().hex()
        assert len(h.hex) == nbytes * 2
        back = hx.Hash.from_hex(h.hex, algorithm)
        assert back == h and back.to_bytes() == code.tobytes()
        assert hx.Hash.from_hex(h.hex.upper(), algorithm) == h
        assert hx.Hash.from_hex("0x" + h.hex, algorithm) == h


def test_hex_is_first_bit_most_significant():
    bits = np.zeros(64, dtype=bool)
    bits[0] = True
    h = hx.Hash.from_bits(bits, "phash")
    assert h.hex == "8000000000000000"
    assert np.array_equal(h.to_bits(), bits)
    bits2 = np.zeros((8, 8), dtype=bool)
    bits2[7, 7] = True
    assert hx.Hash.from_bits(bits2, "phash").hex == "0000000000000001"


def test_code_is_read_only(rng):
    h = hx.Hash(_codes(rng, 1, 8)[0], "phash")
    with pytest.raises(ValueError):
        h.code[0] = 1


@pytest.mark.parametrize("text", ["abc", "00" * 7, "00" * 9, "00" * 32, ""])
def test_from_hex_wrong_length(text):
    with pytest.raises(hx.HashFormatError):
        hx.Hash.from_hex(text, "phash")


@pytest.mark.parametrize("text", ["zz" + "00" * 7, "0g" * 8, "00 0000000000000"])
def test_from_hex_non_hex(text):
    with pytest.raises(hx.HashFormatError, match="non-hex"):
        hx.Hash.from_hex(text, "phash")


def test_pdq_hex_length_enforced():
    with pytest.raises(hx.HashFormatError, match="expected 64"):
        hx.Hash.from_hex("ab" * 16, "pdq")  # a 32-character string in a PDQ list


def test_from_bits_needs_whole_bytes():
    with pytest.raises(hx.HashFormatError):
        hx.Hash.from_bits(np.ones(7, dtype=bool), "phash")


def test_subtraction_is_popcount_of_xor(rng):
    a, b = _codes(rng, 2, 32)
    ha, hb = hx.Hash(a, "pdq"), hx.Hash(b, "pdq")
    expected = _hamming(a.tobytes(), b.tobytes())
    assert ha - hb == expected == hb - ha
    assert expected == int(np.unpackbits(a ^ b).sum())
    assert ha - ha == 0
    assert isinstance(ha - hb, int)
    inverted = hx.Hash(~a, "pdq")
    assert ha - inverted == 256


def test_algorithm_mismatch(rng):
    code = _codes(rng, 1, 8)[0]
    with pytest.raises(hx.AlgorithmMismatchError):
        hx.Hash(code, "phash") - hx.Hash(code, "dhash")
    with pytest.raises(hx.AlgorithmMismatchError):
        hx.Hash(code, "phash") - hx.Hash(np.concatenate([code, code]), "phash")
    assert hx.Hash(code, "phash") != hx.Hash(code, "dhash")


def test_equality_and_hashing(rng):
    code = _codes(rng, 1, 8)[0]
    a, b = hx.Hash(code, "phash"), hx.Hash(code.copy(), "phash")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert str(a) == a.hex and "phash" in repr(a)
    assert hx.Hash(code, "pdq", quality=80).quality == 80


def test_empty_hash_rejected():
    with pytest.raises(hx.HashFormatError):
        hx.Hash(b"", "phash")


# -- HashArray ------------------------------------------------------------------------------------

def test_array_rows_match_hex(rng):
    codes = _codes(rng, 50, 8)
    arr = hx.HashArray(codes, "phash")
    assert len(arr) == 50 and arr.bits == 64
    for i, text in enumerate(arr.hex()):
        assert bytes.fromhex(text) == codes[i].tobytes()
        assert arr[i].hex == text and arr[i].algorithm == "phash"
    assert hx.HashArray.from_hex(arr.hex(), "phash") == arr
    assert [h.hex for h in arr] == arr.hex()


def test_array_indexing_and_slicing(rng):
    codes = _codes(rng, 30, 8)
    arr = hx.HashArray(codes, "dhash", qualities=np.arange(30))
    assert arr[-1].to_bytes() == codes[-1].tobytes()
    assert arr[np.int64(3)].quality == 3
    part = arr[5:15:2]
    assert isinstance(part, hx.HashArray) and len(part) == 5
    assert np.array_equal(part.codes, codes[5:15:2])
    assert list(part.qualities) == [5, 7, 9, 11, 13]
    mask = np.arange(30) % 3 == 0
    assert np.array_equal(arr[mask].codes, codes[mask])
    picked = arr[[4, 0, 4]]
    assert picked.hex() == [arr[4].hex, arr[0].hex, arr[4].hex]
    with pytest.raises(IndexError):
        arr[30]


def test_array_from_hex_errors():
    with pytest.raises(hx.HashFormatError, match="item 1"):
        hx.HashArray.from_hex(["00" * 8, "00" * 7], "phash")
    with pytest.raises(hx.HashFormatError, match="item 0"):
        hx.HashArray.from_hex(["xx" * 8], "phash")
    assert len(hx.HashArray.from_hex([], "phash")) == 0


def test_array_rejects_bad_codes():
    with pytest.raises(hx.HashFormatError):
        hx.HashArray(np.zeros((3, 8), dtype=np.int64), "phash")
    with pytest.raises(hx.HashFormatError):
        hx.HashArray(np.zeros(8, dtype=np.uint8), "phash")
    with pytest.raises(hx.HashFormatError):
        hx.HashArray(np.zeros((3, 8), dtype=np.uint8), "phash", qualities=[1, 2])


def test_concat(rng):
    a = hx.HashArray(_codes(rng, 4, 32), "pdq", qualities=[10, 20, 30, 40])
    b = hx.HashArray(_codes(rng, 3, 32), "pdq")
    c = hx.HashArray.concat([a, b])
    assert len(c) == 7
    assert np.array_equal(c.codes, np.concatenate([a.codes, b.codes]))
    assert list(c.qualities) == [10, 20, 30, 40, -1, -1, -1]
    assert c[5].quality is None and c[1].quality == 20
    with pytest.raises(hx.AlgorithmMismatchError):
        hx.HashArray.concat([a, hx.HashArray(_codes(rng, 2, 8), "phash")])
    with pytest.raises(hx.HashFormatError):
        hx.HashArray.concat([])


def test_from_hashes(rng):
    hashes = [hx.Hash(c, "ahash") for c in _codes(rng, 5, 8)]
    arr = hx.HashArray.from_hashes(hashes)
    assert list(arr) == hashes
    with pytest.raises(hx.AlgorithmMismatchError):
        hx.HashArray.from_hashes([hashes[0], hx.Hash(hashes[1].code, "dhash")])


def test_distances_match_brute_force(rng):
    codes = _codes(rng, 40, 32)
    other = _codes(rng, 40, 32)
    arr, arr2 = hx.HashArray(codes, "pdq"), hx.HashArray(other, "pdq")
    q = hx.Hash(other[0], "pdq")
    expected = [_hamming(c.tobytes(), other[0].tobytes()) for c in codes]
    assert (arr.distances(q) == expected).all()
    assert ((arr - q) == expected).all()
    rowwise = [_hamming(a.tobytes(), b.tobytes()) for a, b in zip(codes, other, strict=True)]
    assert (arr.distances(arr2) == rowwise).all()
    assert (popcount(codes ^ other) == rowwise).all()
    with pytest.raises(hx.HashFormatError):
        arr.distances(arr2[:5])
    with pytest.raises(hx.AlgorithmMismatchError):
        arr.distances(hx.Hash(codes[0][:8], "phash"))


@pytest.mark.parametrize("n,m,nbytes", [(0, 5, 8), (1, 1, 8), (37, 53, 8), (64, 20, 32)])
def test_pairwise_matches_brute_force(rng, n, m, nbytes):
    a = hx.HashArray(_codes(rng, n, nbytes), "phash" if nbytes == 8 else "pdq")
    b = hx.HashArray(_codes(rng, m, nbytes), a.algorithm)
    d = a.pairwise(b)
    assert d.shape == (n, m)
    for i in range(n):
        for j in range(m):
            assert d[i, j] == _hamming(a.codes[i].tobytes(), b.codes[j].tobytes())
    self_d = b.pairwise()
    assert (np.diag(self_d) == 0).all() and (self_d == self_d.T).all()


def test_pairwise_large_blocks_match(rng):
    """Enough rows that pairwise works block by block; compare with unpacked-bit arithmetic."""
    a = hx.HashArray(_codes(rng, 700, 32), "pdq")
    b = hx.HashArray(_codes(rng, 900, 32), "pdq")
    ba, bb = a.to_bits().astype(np.int32), b.to_bits().astype(np.int32)
    expected = ba @ (1 - bb).T + (1 - ba) @ bb.T
    assert np.array_equal(a.pairwise(b), expected)


def test_empty_and_equality(rng):
    e = hx.HashArray.empty("pdq", 256)
    assert len(e) == 0 and e.bits == 256 and e.hex() == []
    codes = _codes(rng, 3, 8)
    assert hx.HashArray(codes, "phash") == hx.HashArray(codes.copy(), "phash")
    assert hx.HashArray(codes, "phash") != hx.HashArray(codes, "ahash")
    assert "n=3" in repr(hx.HashArray(codes, "phash"))


@pytest.mark.parametrize("text", ["00 00 0000000000", "0000000000000 00", "00\t0000000000000"])
def test_from_hex_whitespace_is_not_skipped(text):
    """bytes.fromhex skips spaces; a 16-character string with spaces must not give 7 bytes."""
    with pytest.raises(hx.HashFormatError):
        hx.Hash.from_hex(text, "phash")


def test_array_rows_of_different_lengths():
    with pytest.raises(hx.HashFormatError, match="differ in length"):
        hx.HashArray([b"\x00" * 8, b"\x00" * 7], "phash")
    assert hx.HashArray([b"\x01" * 8, bytearray(8)], "phash").codes.shape == (2, 8)
