"""Hash and HashArray: packed hash bits with hex, bytes and Hamming distance.

A hash of ``bits`` bits is stored as ``bits // 8`` bytes, first bit most significant
(``numpy.packbits`` order). That makes ``h.hex`` equal to imagehash's ``str(hash)`` for
aHash/dHash/pHash/wHash and to python-threatexchange's hex for PDQ.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import numpy as np

from .errors import AlgorithmMismatchError, HashFormatError

# popcount of every byte value, for vectorised Hamming distances.
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _check_algorithm(algorithm: str) -> str:
    if not isinstance(algorithm, str) or not algorithm:
        raise HashFormatError(f"algorithm must be a non-empty string, got {algorithm!r}")
    return algorithm


def _parse_hex(text: str, nbytes: int | None) -> bytes:
    text = text.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    if nbytes is not None and len(text) != 2 * nbytes:
        raise HashFormatError(
            f"hex hash {text[:80]!r} has {len(text)} characters, expected {2 * nbytes}"
        )
    if not text or len(text) % 2:
        raise HashFormatError(f"hex hash {text[:80]!r} has an odd or zero length")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    # bytes.fromhex skips spaces, which would give fewer bytes than the length promised
    if len(raw) * 2 != len(text):
        raise HashFormatError(f"hex hash {text[:80]!r} contains non-hex characters")
    return raw


def popcount(codes: np.ndarray) -> np.ndarray:
    """Number of set bits per row of a ``(..., nbytes)`` uint8 array."""
    return _POPCOUNT8[codes].sum(axis=-1, dtype=np.int64)


class Hash:
    """One perceptual hash: packed bits, the algorithm that made it, and an optional quality.

    ``h - other`` is the Hamming distance. Hashes compare equal when algorithm and bits match.
    """

    __slots__ = ("_code", "algorithm", "quality")

    def __init__(self, code: bytes | np.ndarray, algorithm: str, quality: int | None = None):
        arr = np.frombuffer(bytes(code), dtype=np.uint8) if not isinstance(code, np.ndarray) \
            else np.ascontiguousarray(code, dtype=np.uint8).reshape(-1)
        if arr.size == 0:
            raise HashFormatError("a hash needs at least one byte")
        arr = arr.copy()
        arr.flags.writeable = False
        self._code = arr
        self.algorithm = _check_algorithm(algorithm)
        self.quality = None if quality is None else int(quality)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def from_hex(cls, text: str, algorithm: str, quality: int | None = None) -> Hash:
        """Parse ``text`` (as written by :attr:`hex`). Its length must fit the algorithm."""
        from .hashers import expected_bits

        bits = expected_bits(algorithm)
        return cls(_parse_hex(text, None if bits is None else bits // 8), algorithm, quality)

    @classmethod
    def from_bits(cls, bits: np.ndarray, algorithm: str, quality: int | None = None) -> Hash:
        """Pack a boolean array (any shape, row-major, first element most significant)."""
        flat = np.asarray(bits, dtype=bool).reshape(-1)
        if flat.size % 8:
            raise HashFormatError(f"a hash must have a multiple of 8 bits, got {flat.size}")
        return cls(np.packbits(flat), algorithm, quality)

    # -- views ----------------------------------------------------------------------------
    @property
    def code(self) -> np.ndarray:
        """The packed bits, a read-only ``(bits/8,)`` uint8 array."""
        return self._code

    @property
    def bits(self) -> int:
        """Width of the hash in bits."""
        return self._code.size * 8

    @property
    def hex(self) -> str:
        """Lower-case hex, first bit most significant."""
        return self._code.tobytes().hex()

    def to_bytes(self) -> bytes:
        return self._code.tobytes()

    def to_bits(self) -> np.ndarray:
        """The bits as a flat boolean array."""
        return np.unpackbits(self._code).astype(bool)

    # -- comparison -------------------------------------------------------------------------
    def __sub__(self, other: Hash) -> int:
        if not isinstance(other, Hash):
            return NotImplemented
        if other.algorithm != self.algorithm or other.bits != self.bits:
            raise AlgorithmMismatchError(
                f"cannot compare a {self.algorithm}/{self.bits}-bit hash "
                f"with a {other.algorithm}/{other.bits}-bit hash"
            )
        return int(_POPCOUNT8[np.bitwise_xor(self._code, other._code)].sum())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hash):
            return NotImplemented
        return self.algorithm == other.algorithm and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash((self.algorithm, self.to_bytes()))

    def __str__(self) -> str:
        return self.hex

    def __repr__(self) -> str:
        q = "" if self.quality is None else f", quality={self.quality}"
        return f"Hash({self.hex!r}, {self.algorithm!r}{q})"


class HashArray:
    """A batch of hashes of one algorithm: an ``(n, bits/8)`` uint8 array plus the name.

    Row ``i`` equals ``bytes.fromhex(arr[i].hex)``. ``qualities`` is an optional ``(n,)``
    int array (-1 where unknown). Indexing with an int gives a :class:`Hash`; with a slice,
    mask or index array, a new HashArray.
    """

    __slots__ = ("codes", "algorithm", "qualities")

    def __init__(
        self,
        codes: np.ndarray | Sequence[bytes],
        algorithm: str,
        qualities: np.ndarray | Sequence[int] | None = None,
    ):
        if not isinstance(codes, np.ndarray):
            rows = [bytes(r) for r in codes]
            if len({len(r) for r in rows}) > 1:
                raise HashFormatError(
                    f"hash rows differ in length: {sorted({len(r) for r in rows})} bytes"
                )
            codes = (
                np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), -1)
                if rows else np.zeros((0, 0), dtype=np.uint8)
            )
        if codes.dtype != np.uint8 or codes.ndim != 2:
            raise HashFormatError(
                f"codes must be a 2-D uint8 array (n, bits/8), got {codes.dtype} {codes.shape}"
            )
        self.codes = np.ascontiguousarray(codes)
        self.algorithm = _check_algorithm(algorithm)
        if qualities is not None:
            q = np.asarray(qualities, dtype=np.int16).reshape(-1)
            if q.shape[0] != self.codes.shape[0]:
                raise HashFormatError(f"{q.shape[0]} qualities for {self.codes.shape[0]} hashes")
            self.qualities: np.ndarray | None = q
        else:
            self.qualities = None

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def from_hex(cls, texts: Iterable[str], algorithm: str) -> HashArray:
        """Parse hex strings; every one must have the algorithm's (or the first one's) width."""
        from .hashers import expected_bits

        bits = expected_bits(algorithm)
        nbytes = None if bits is None else bits // 8
        rows = []
        for i, t in enumerate(texts):
            try:
                rows.append(_parse_hex(t, nbytes))
            except HashFormatError as e:
                raise HashFormatError(f"item {i}: {e}") from None
            nbytes = len(rows[0])
        return cls(rows, algorithm) if rows else cls.empty(algorithm, bits or 0)

    @classmethod
    def from_hashes(cls, hashes: Iterable[Hash]) -> HashArray:
        items = list(hashes)
        if not items:
            raise HashFormatError("from_hashes needs at least one Hash (use HashArray.empty)")
        algos = {(h.algorithm, h.bits) for h in items}
        if len(algos) > 1:
            raise AlgorithmMismatchError(f"mixed algorithms/widths: {sorted(algos)}")
        q = None
        if any(h.quality is not None for h in items):
            q = [-1 if h.quality is None else h.quality for h in items]
        return cls(np.stack([h.code for h in items]), items[0].algorithm, q)

    @classmethod
    def empty(cls, algorithm: str, bits: int) -> HashArray:
        return cls(np.zeros((0, bits // 8), dtype=np.uint8), algorithm)

    @classmethod
    def concat(cls, arrays: Sequence[HashArray]) -> HashArray:
        if not arrays:
            raise HashFormatError("concat needs at least one HashArray")
        first = arrays[0]
        for a in arrays[1:]:
            first._check_compatible(a)
        q = None
        if any(a.qualities is not None for a in arrays):
            q = np.concatenate([
                a.qualities if a.qualities is not None else np.full(len(a), -1, np.int16)
                for a in arrays
            ])
        return cls(np.concatenate([a.codes for a in arrays]), first.algorithm, q)

    # -- views ----------------------------------------------------------------------------
    @property
    def bits(self) -> int:
        return self.codes.shape[1] * 8

    def __len__(self) -> int:
        return self.codes.shape[0]

    @overload
    def __getitem__(self, key: int) -> Hash: ...
    @overload
    def __getitem__(self, key: slice | np.ndarray | Sequence[int]) -> HashArray: ...
    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            q = None
            if self.qualities is not None and self.qualities[key] >= 0:
                q = int(self.qualities[key])
            return Hash(self.codes[key], self.algorithm, q)
        q = None if self.qualities is None else self.qualities[key]
        return HashArray(self.codes[key], self.algorithm, q)

    def __iter__(self) -> Iterator[Hash]:
        for i in range(len(self)):
            yield self[i]

    def hex(self) -> list[str]:
        """Hex string of every row."""
        return [row.tobytes().hex() for row in self.codes]

    def to_bits(self) -> np.ndarray:
        """``(n, bits)`` boolean array."""
        return np.unpackbits(self.codes, axis=1).astype(bool)

    # -- distances ------------------------------------------------------------------------
    def _check_compatible(self, other: HashArray | Hash) -> None:
        if other.algorithm != self.algorithm or other.bits != self.bits:
            raise AlgorithmMismatchError(
                f"cannot compare {self.algorithm}/{self.bits}-bit hashes "
                f"with {other.algorithm}/{other.bits}-bit hashes"
            )

    def distances(self, other: Hash | HashArray) -> np.ndarray:
        """Hamming distances: to one Hash -> ``(n,)``; to a HashArray of equal length -> ``(n,)``
        row by row. For all pairs use :meth:`pairwise`."""
        self._check_compatible(other)
        if isinstance(other, Hash):
            return popcount(self.codes ^ other.code[None, :])
        if len(other) != len(self):
            raise HashFormatError(
                f"row-wise distances need equal lengths, got {len(self)} and {len(other)}"
            )
        return popcount(self.codes ^ other.codes)

    def pairwise(self, other: HashArray | None = None) -> np.ndarray:
        """``(n, m)`` int matrix of all Hamming distances (small sets; use HashIndex at scale)."""
        other = self if other is None else other
        self._check_compatible(other)
        out = np.empty((len(self), len(other)), dtype=np.int32)
        step = max(1, (1 << 22) // max(1, len(other) * self.codes.shape[1]))
        for start in range(0, len(self), step):
            block = self.codes[start:start + step]
            out[start:start + step] = popcount(block[:, None, :] ^ other.codes[None, :, :])
        return out

    def __sub__(self, other: Hash | HashArray) -> np.ndarray:
        return self.distances(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HashArray):
            return NotImplemented
        return (self.algorithm == other.algorithm and self.codes.shape == other.codes.shape
                and bool(np.array_equal(self.codes, other.codes)))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"HashArray(n={len(self)}, algorithm={self.algorithm!r}, bits={self.bits})"
