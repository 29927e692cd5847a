"""pHash ("phash"): signs of the low-frequency 2-D DCT of a grayscale thumbnail vs their median.

Bit-identical to ``imagehash.phash``: the same exact LANCZOS resize (see ``_lanczos``), then only
the ``hash_size x hash_size`` low-frequency block of scipy's unnormalised DCT-II, computed as two
small products with a precomputed cosine matrix instead of two full 1-D DCTs. Only comparisons
with the median matter; when a coefficient lies so close to the median that float rounding
could decide the bit (flat images), the bits are taken from scipy's DCT itself, as imagehash does.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..pixels import Pixels
from . import HasherSpec, register
from ._lanczos import check_hash_size, resized_gray

# Starting threshold (bits of 64), measured on COCO photos: docs/choosing-a-threshold.md.
DEFAULT_THRESHOLD = 10
# Relative distance to the median below which the reference DCT decides the bits.
_TIE_TOLERANCE = 1e-9


@lru_cache(maxsize=32)
def _dct_matrix(hash_size: int, n: int) -> np.ndarray:
    """Rows 0..hash_size-1 of scipy.fftpack's unnormalised DCT-II: 2*cos(pi*k*(2i+1)/(2n))."""
    k = np.arange(hash_size, dtype=np.float64)[:, None]
    i = np.arange(n, dtype=np.float64)[None, :]
    return 2.0 * np.cos(np.pi * k * (2.0 * i + 1.0) / (2.0 * n))


def _check(hash_size: int, highfreq_factor: int) -> tuple[int, int]:
    hash_size = check_hash_size("phash", hash_size)
    if isinstance(highfreq_factor, bool) or not isinstance(highfreq_factor, (int, np.integer)) \
            or highfreq_factor < 1:
        raise ValueError(f"phash: highfreq_factor must be an int >= 1, got {highfreq_factor!r}")
    return hash_size, int(highfreq_factor)


def low_frequencies(small: np.ndarray, hash_size: int) -> np.ndarray:
    """The top-left ``hash_size x hash_size`` block of ``dct(dct(small, axis=0), axis=1)``."""
    d = _dct_matrix(hash_size, small.shape[0])
    return d @ small @ d.T


def compute(pixels: Pixels, hash_size: int = 8, highfreq_factor: int = 4
            ) -> tuple[np.ndarray, None]:
    hash_size, highfreq_factor = _check(hash_size, highfreq_factor)
    size = hash_size * highfreq_factor
    small = resized_gray(pixels, size, size)
    low = low_frequencies(small, hash_size)
    med = np.median(low)
    if np.abs(low - med).min() <= _TIE_TOLERANCE * (np.abs(low).max() + 1.0):
        import scipy.fftpack

        low = scipy.fftpack.dct(scipy.fftpack.dct(small, axis=0), axis=1)[:hash_size, :hash_size]
        med = np.median(low)
    return np.packbits((low > med).reshape(-1)), None


def bits(hash_size: int = 8, highfreq_factor: int = 4) -> int:
    return _check(hash_size, highfreq_factor)[0] ** 2


def draft_size(hash_size: int = 8, highfreq_factor: int = 4) -> tuple[int, int]:
    hash_size, highfreq_factor = _check(hash_size, highfreq_factor)
    return hash_size * highfreq_factor, hash_size * highfreq_factor


SPEC = register(HasherSpec(
    name="phash",
    compute=compute,
    bits=bits,
    default_threshold=DEFAULT_THRESHOLD,
    draft_size=draft_size,
    description="DCT perceptual hash (imagehash.phash compatible)",
    params={"hash_size": 8, "highfreq_factor": 4},
))
