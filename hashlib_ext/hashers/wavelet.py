"""wHash ("whash"): Haar wavelet LL band of a square grayscale image vs its median.

Bit-identical to ``imagehash.whash``. With the Haar wavelet the level-k LL band is a positive
multiple of k-level block sums, and removing the coarsest LL only subtracts the image mean, so
the bits are ``block_sum > median(block_sums)`` in exact integers. Where a block sum equals that
median exactly, imagehash's bits are decided by float rounding inside PyWavelets, so those
images (flat ones, e.g. a constant image) run the reference PyWavelets computation on the same
(exactly resized) pixels. Only the Haar wavelet is offered (see ``_check``).
"""

from __future__ import annotations

import numpy as np

from ..pixels import Pixels
from . import HasherSpec, register
from ._lanczos import check_hash_size, resized_gray

# Starting threshold (bits of 64), measured on COCO photos: docs/choosing-a-threshold.md.
DEFAULT_THRESHOLD = 2


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _check(hash_size: int, image_scale: int | None, mode: str) -> int:
    hash_size = check_hash_size("whash", hash_size)
    if not _is_pow2(hash_size):
        raise ValueError(f"whash: hash_size must be a power of 2, got {hash_size}")
    if image_scale is not None:
        if isinstance(image_scale, bool) or not isinstance(image_scale, (int, np.integer)) \
                or not _is_pow2(int(image_scale)):
            raise ValueError(f"whash: image_scale must be a power of 2, got {image_scale!r}")
        if image_scale < hash_size:
            raise ValueError(
                f"whash: image_scale={image_scale} is smaller than hash_size={hash_size}"
            )
    if mode != "haar":
        # imagehash accepts other PyWavelets modes, but e.g. 'db4' pads the signal, so its LL
        # band is larger than hash_size**2 and its size depends on the image: not a fixed-width
        # hash that can be stored, indexed or compared.
        raise ValueError(
            f"whash: mode {mode!r} is not supported; only 'haar' gives a fixed "
            "hash_size**2-bit hash"
        )
    return hash_size


def _scale(size: tuple[int, int], hash_size: int, image_scale: int | None) -> int:
    if image_scale is not None:
        return int(image_scale)
    # imagehash: 2**int(log2(min(size))), at least hash_size
    natural = 1 << (min(size).bit_length() - 1)
    return max(natural, hash_size)


def _reference_bits(small: np.ndarray, hash_size: int, remove_max_haar_ll: bool) -> np.ndarray:
    """imagehash.whash's own computation on the resized pixels."""
    import pywt

    pixels = small / 255.0
    ll_max_level = int(np.log2(small.shape[0]))
    if remove_max_haar_ll:
        coeffs = list(pywt.wavedec2(pixels, "haar", level=ll_max_level))
        coeffs[0] *= 0
        pixels = pywt.waverec2(coeffs, "haar")
    dwt_low = pywt.wavedec2(pixels, "haar", level=ll_max_level - int(np.log2(hash_size)))[0]
    return dwt_low > np.median(dwt_low)


def compute(pixels: Pixels, hash_size: int = 8, image_scale: int | None = None,
            mode: str = "haar", remove_max_haar_ll: bool = True) -> tuple[np.ndarray, None]:
    hash_size = _check(hash_size, image_scale, mode)
    scale = _scale(pixels.size, hash_size, image_scale)
    small = resized_gray(pixels, scale, scale)
    block = scale // hash_size
    # block sums in two steps (rows of a block, then columns): 3x faster than one 2-axis sum
    rows = small.reshape(hash_size, block, scale).sum(axis=1)
    sums = rows.reshape(hash_size, hash_size, block).sum(axis=2)
    flat = np.sort(sums, axis=None)
    half = flat.size // 2
    twice_median = flat[half - 1] + flat[half]
    if np.any(2.0 * sums == twice_median):
        bits = _reference_bits(small, hash_size, remove_max_haar_ll)
    else:
        bits = 2.0 * sums > twice_median
    return np.packbits(bits.reshape(-1)), None


def bits(hash_size: int = 8, image_scale: int | None = None, mode: str = "haar",
         remove_max_haar_ll: bool = True) -> int:
    return _check(hash_size, image_scale, mode) ** 2


def draft_size(hash_size: int = 8, image_scale: int | None = None, mode: str = "haar",
               remove_max_haar_ll: bool = True) -> tuple[int, int]:
    hash_size = _check(hash_size, image_scale, mode)
    n = max(4 * hash_size, image_scale or 0)
    return n, n


SPEC = register(HasherSpec(
    name="whash",
    compute=compute,
    bits=bits,
    default_threshold=DEFAULT_THRESHOLD,
    draft_size=draft_size,
    description="Haar wavelet hash (imagehash.whash compatible)",
    params={"hash_size": 8, "image_scale": None, "mode": "haar", "remove_max_haar_ll": True},
))
