"""aHash ("ahash"): each pixel of a LANCZOS-shrunk grayscale thumbnail against the mean.

Bit-identical to ``imagehash.average_hash``: the same exact resize (see ``_lanczos``), and the
comparison ``pixel > mean`` done in integers as ``pixel * n > sum`` (exact; imagehash's float
mean cannot round across an integer pixel value).
"""

from __future__ import annotations

import numpy as np

from ..pixels import Pixels
from . import HasherSpec, register
from ._lanczos import check_hash_size, resized_gray

# Starting threshold (bits of 64), measured on COCO photos: docs/choosing-a-threshold.md.
DEFAULT_THRESHOLD = 3


def compute(pixels: Pixels, hash_size: int = 8) -> tuple[np.ndarray, None]:
    hash_size = check_hash_size("ahash", hash_size)
    small = resized_gray(pixels, hash_size, hash_size)
    bits = small * small.size > small.sum()
    return np.packbits(bits.reshape(-1)), None


def bits(hash_size: int = 8) -> int:
    return check_hash_size("ahash", hash_size) ** 2


def draft_size(hash_size: int = 8) -> tuple[int, int]:
    n = 4 * check_hash_size("ahash", hash_size)
    return n, n


SPEC = register(HasherSpec(
    name="ahash",
    compute=compute,
    bits=bits,
    default_threshold=DEFAULT_THRESHOLD,
    draft_size=draft_size,
    description="average hash (imagehash.average_hash compatible)",
    params={"hash_size": 8},
))
