"""Pillow's LANCZOS resize of an 8-bit grayscale image, bit for bit, as banded matrix products.

imagehash resizes with ``Image.resize(size, LANCZOS)``. Pillow computes that as two separable
passes (horizontal over the rows the vertical pass needs, then vertical), each with integer
coefficients of 22 fractional bits and rounding/clipping to uint8 in between. Pillow evaluates
every tap in a scalar loop; here each pass is a few small float64 matrix products over bands of
the input. Every partial sum is an integer below 2**31 times 2**-22, so float64 arithmetic is
exact and the result equals Pillow's byte for byte (tests/test_conformance_imagehash.py checks).

Each product is kept under OpenBLAS's multithreading threshold so hashing stays on one core.
Pillow 13 runs the vertical pass first for some shapes (see :func:`_vertical_first`); the
behaviour of the installed Pillow is probed once, with Pillow itself as the fallback.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

import numpy as np
from PIL import Image

from ..pixels import Pixels

_PRECISION_BITS = 32 - 8 - 2
_SCALE = float(1 << _PRECISION_BITS)
_INV_SCALE = 1.0 / _SCALE
_LANCZOS_SUPPORT = 3.0
# Above this many pixels, resize with Pillow (no float64 copy of the whole image).
LARGE_PIXELS = 6_000_000
# Rows per block of the horizontal pass (converted to float64 just before use).
_ROW_BLOCK = 256
# OpenBLAS runs a gemm single-threaded when m*n*k is below 65536 * 4.
_MAX_GEMM_WORK = 65536 * 4 - 1


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    if -3.0 <= x < 3.0:
        return _sinc(x) * _sinc(x / 3.0)
    return 0.0


@lru_cache(maxsize=512)
def _coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel: first input index, and the integer taps (a dense ``(out, in)`` matrix).

    Follows Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` operation by operation
    (double arithmetic in the same order, C truncation), so the integers are identical.
    """
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    ss = 1.0 / filterscale
    dense = np.zeros((out_size, in_size), dtype=np.float64)
    first = np.empty(out_size, dtype=np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [_lanczos(((x + xmin) - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for w in weights:
            ww += w
        row = dense[xx]
        for x, w in enumerate(weights):
            if ww != 0.0:
                w = w / ww
            row[xmin + x] = int(-0.5 + w * _SCALE) if w < 0 else int(0.5 + w * _SCALE)
        first[xx] = xmin
    return first, dense


@lru_cache(maxsize=512)
def _extent(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last input with a non-zero tap, per output."""
    _, dense = _coeffs(in_size, out_size)
    nz = dense != 0
    has = nz.any(axis=1)
    starts = np.where(has, nz.argmax(axis=1), 0)
    stops = np.where(has, in_size - nz[:, ::-1].argmax(axis=1), 1)
    return starts, stops


def _bands(in_size: int, out_size: int, other: int, group: int) -> tuple:
    """Outputs in groups of ``group``: ``(in0, in1, out0, out1, taps, chunk)`` per group, the
    taps pre-scaled by ``2**-22`` (exact: a power of two), ``chunk`` rows of the other axis
    per product so that each stays below the multithreading threshold."""
    _, dense = _coeffs(in_size, out_size)
    starts, stops = _extent(in_size, out_size)
    bands = []
    for o0 in range(0, out_size, group):
        o1 = min(o0 + group, out_size)
        i0, i1 = int(starts[o0:o1].min()), int(stops[o0:o1].max())
        chunk = max(1, _MAX_GEMM_WORK // ((i1 - i0) * (o1 - o0)))
        taps = np.ascontiguousarray(dense[o0:o1, i0:i1] * _INV_SCALE)
        bands.append((i0, i1, o0, o1, taps, chunk))
    return tuple(bands)


def _run(bands: tuple, src: np.ndarray, out: np.ndarray, offset: int) -> None:
    n = src.shape[0]
    for i0, i1, o0, o1, taps, chunk in bands:
        block = src[:, i0 - offset:i1 - offset]
        if chunk >= n:
            np.matmul(taps, block.T, out=out[o0:o1])
        else:
            for c in range(0, n, chunk):
                np.matmul(taps, block[c:c + chunk].T, out=out[o0:o1, c:c + chunk])


@lru_cache(maxsize=512)
def _plan(in_size: int, out_size: int, other: int, block: int = 0) -> tuple[int, int, tuple]:
    """``(lo, hi, bands)``: the pass reads inputs ``lo:hi``; ``bands`` is the fastest grouping
    of outputs for this shape, run ``block`` rows at a time when given, timed once (wider
    groups waste multiply-adds on zero taps, narrower ones pay more calls; which wins depends
    on the BLAS and the shape)."""
    starts, stops = _extent(in_size, out_size)
    lo, hi = int(starts.min()), int(stops.max())
    rows = min(other, 512)  # the grouping does not depend on the row count; time a sample
    src = np.zeros((rows, hi), dtype=np.float64)
    out = np.empty((out_size, rows), dtype=np.float64)
    best: tuple[float, tuple] | None = None
    group = 1
    while group <= 64:
        bands = _bands(in_size, out_size, other, group)
        macs = sum((b[1] - b[0]) * (b[3] - b[2]) for b in bands) * rows
        if best is None or macs < 8_000_000:
            elapsed = float("inf")
            step = block or rows
            for _ in range(3):
                t0 = time.perf_counter()
                for r in range(0, rows, step):
                    _run(bands, src[r:r + step], out[:, r:r + step], 0)
                elapsed = min(elapsed, time.perf_counter() - t0)
            if best is None or elapsed < best[0]:
                best = (elapsed, bands)
        if group >= out_size:
            break
        group *= 2
    assert best is not None
    return lo, hi, best[1]


def _pass(src: np.ndarray, in_size: int, out_size: int, offset: int = 0) -> np.ndarray:
    """One resampling pass along the second axis of ``src`` (``(n, in)``, input positions
    shifted by ``offset``), returning the ``(out_size, n)`` rounded result (transposed)."""
    n = src.shape[0]
    _, _, bands = _plan(in_size, out_size, n)
    out = np.empty((out_size, n), dtype=np.float64)
    _run(bands, src, out, offset)
    # Pillow's clip8: add half, drop the fraction, clamp to 0..255
    np.add(out, 0.5, out=out)
    np.floor(out, out=out)
    return np.clip(out, 0.0, 255.0, out=out)


def _vertical_first(in_w: int, in_h: int, width: int, height: int) -> bool:
    """Pillow 13 runs the vertical pass first when the height shrinks by more than twice as
    many pixels as the width does (older Pillow: never); the pass order changes the rounded
    intermediate image. Which behaviour this Pillow has is probed once (:func:`_pillow_mode`)."""
    return height < in_h and in_h - height > 2 * (in_w - width)


# Shapes (w, h, out_w, out_h) that tell the pass orders apart and cover up- and downscaling.
_PROBES = ((31, 33, 32, 32), (40, 80, 20, 39), (40, 80, 20, 40), (64, 64, 63, 61),
           (7, 3, 32, 32), (100, 50, 40, 60), (161, 120, 32, 32), (90, 70, 9, 8))


@lru_cache(maxsize=1)
def _pillow_mode() -> str:
    """How the installed Pillow orders its passes: "vertical-first" (Pillow 13), "horizontal"
    (older), or "pillow" when neither reproduces it, in which case :func:`resize_l` calls
    Pillow itself, so the hashes stay exact on any Pillow version."""
    rng = np.random.default_rng(0)
    cases = []
    for w, h, ow, oh in _PROBES:
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        ref = np.asarray(Image.fromarray(a).resize((ow, oh), Image.Resampling.LANCZOS))
        cases.append((a.astype(np.float64), ow, oh, ref))
    for mode in ("vertical-first", "horizontal"):
        if all(np.array_equal(_resize_ours(a, ow, oh, mode), ref) for a, ow, oh, ref in cases):
            return mode
    return "pillow"


def _horizontal_blocks(gray: np.ndarray, lo: int, hi: int, width: int) -> np.ndarray:
    """The horizontal pass over rows ``lo:hi``, ``_ROW_BLOCK`` rows at a time: each block is
    converted to float64 just before use, so the data stays in cache (a whole 640x480 image in
    float64 does not fit in L2, and overlapping bands read it several times)."""
    in_w = gray.shape[1]
    rows = hi - lo
    _, _, bands = _plan(in_w, width, rows, _ROW_BLOCK)
    out = np.empty((width, rows), dtype=np.float64)
    for r0 in range(lo, hi, _ROW_BLOCK):
        r1 = min(r0 + _ROW_BLOCK, hi)
        _run(bands, np.asarray(gray[r0:r1], dtype=np.float64), out[:, r0 - lo:r1 - lo], 0)
    np.add(out, 0.5, out=out)
    np.floor(out, out=out)
    return np.clip(out, 0.0, 255.0, out=out)


def _resize_ours(gray: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    in_h, in_w = gray.shape
    need_h = width != in_w
    need_v = height != in_h
    if need_h and need_v and not (
            mode == "vertical-first" and _vertical_first(in_w, in_h, width, height)):
        lo, hi, _ = _plan(in_h, height, width)
        tmp_t = _horizontal_blocks(gray, lo, hi, width)  # (width, rows lo:hi)
        return _pass(tmp_t, in_h, height, offset=lo)
    gray = np.asarray(gray, dtype=np.float64)
    if not need_h:
        if not need_v:
            return gray.copy()
        return _pass(gray.T, in_h, height)
    if not need_v:
        return np.ascontiguousarray(_pass(gray, in_w, width).T)
    tmp = _pass(gray.T, in_h, height)  # vertical first: (height, in_w)
    return np.ascontiguousarray(_pass(tmp, in_w, width).T)


def resize_l(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    """``Image.fromarray(gray).resize((width, height), LANCZOS)`` as a float64 array of the
    resulting uint8 values. ``gray``: ``(h, w)`` uint8 array (or float64 of 0..255 integers)."""
    mode = _pillow_mode()
    if mode == "pillow":
        im = Image.fromarray(np.asarray(gray, dtype=np.uint8))
        return np.asarray(im.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float64)
    return _resize_ours(gray, width, height, mode)


def gray_u8(pixels: Pixels) -> np.ndarray:
    """The ``L`` image (``Image.convert("L")``, as imagehash uses) as a uint8 array, cached."""
    return pixels.cached("gray_u8", lambda: np.asarray(pixels.gray))


def resized_gray(pixels: Pixels, width: int, height: int) -> np.ndarray:
    """``pixels.gray.resize((width, height), LANCZOS)`` as float64 values, cached per image so
    hashers that need the same size share one resize. Images over ``LARGE_PIXELS`` go through
    Pillow itself (same result): the planning and float blocks are sized for photos."""

    def make() -> np.ndarray:
        w, h = pixels.size
        if w * h > LARGE_PIXELS or _pillow_mode() == "pillow":
            small = pixels.gray.resize((width, height), Image.Resampling.LANCZOS)
            return np.asarray(small, dtype=np.float64)
        return resize_l(gray_u8(pixels), width, height)

    return pixels.cached(("lanczos_l", width, height), make)


def check_hash_size(name: str, hash_size: object) -> int:
    """``hash_size`` as an int >= 2 whose square is a whole number of bytes."""
    if isinstance(hash_size, bool) or not isinstance(hash_size, (int, np.integer)):
        raise ValueError(f"{name}: hash_size must be an int, got {hash_size!r}")
    hash_size = int(hash_size)
    if hash_size < 2 or (hash_size * hash_size) % 8:
        raise ValueError(
            f"{name}: hash_size={hash_size} gives {hash_size * hash_size} bits; need "
            "hash_size >= 2 with hash_size**2 a multiple of 8 (e.g. 4, 8, 12, 16)"
        )
    return hash_size
