"""dHash ("dhash"): is each pixel of a (hash_size+1) x hash_size thumbnail brighter than its
left neighbour. Bit-identical to ``imagehash.dhash`` (same exact LANCZOS resize)."""

from __future__ import annotations

import numpy as np

from ..pixels import Pixels
from . import HasherSpec, register
from ._lanczos import check_hash_size, resized_gray

# Starting threshold (bits of 64), measured on COCO photos: docs/choosing-a-threshold.md.
DEFAULT_THRESHOLD = 9


def compute(pixels: Pixels, hash_size: int = 8) -> tuple[np.ndarray, None]:
    hash_size = check_hash_size("dhash", hash_size)
    small = resized_gray(pixels, hash_size + 1, hash_size)
    bits = small[:, 1:] > small[:, :-1]
    return np.packbits(bits.reshape(-1)), None


def bits(hash_size: int = 8) -> int:
    return check_hash_size("dhash", hash_size) ** 2


def draft_size(hash_size: int = 8) -> tuple[int, int]:
    n = 4 * check_hash_size("dhash", hash_size)
    return n + 4, n


SPEC = register(HasherSpec(
    name="dhash",
    compute=compute,
    bits=bits,
    default_threshold=DEFAULT_THRESHOLD,
    draft_size=draft_size,
    description="horizontal difference hash (imagehash.dhash compatible)",
    params={"hash_size": 8},
))
