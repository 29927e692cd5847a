"""Pillow's LANCZOS resize of an 8-bit grayscale image, bit for bit, as banded matrix products.

imagehash resizes with ``Image.resize(size, LANCZOS)``. Pillow computes that as two separable
passes (horizontal over the rows the vertical pass needs, then vertical), each with integer
coefficients of 22 fractional bits and rounding/clipping to uint8 in between. Pillow evaluates
every tap in a scalar loop; here each pass is a few small float64 matrix products over bands of
the input. Every partial sum is an integer below 2**31 times 2**-22, so float64 arithmetic is
exact and the result equals Pillow's byte for byte (tests/test_conformance_imagehash.py checks).

With numba installed (a dependency), the passes run instead in ``_lanczos_kernel``: Pillow's
own int32 arithmetic, compiled, and for RGB images the ``convert("L")`` grey conversion fused
into the x pass (reading the RGB pixels in place through Pillow's Arrow export), which saves
the grey image and its copy; the float64 products remain the path without numba.

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


def _coeffs_row(in_size: int, out_size: int, xx: int) -> tuple[int, np.ndarray]:
    """First input index and integer taps of output ``xx``: Pillow's ``precompute_coeffs`` +
    ``normalize_coeffs_8bpc`` operation by operation in double precision with the C library's
    ``sin`` (through :mod:`math`), so the integers are identical."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    ss = 1.0 / filterscale
    center = (xx + 0.5) * scale
    xmin = max(int(center - support + 0.5), 0)
    xmax = min(int(center + support + 0.5), in_size) - xmin
    weights = [_lanczos(((x + xmin) - center + 0.5) * ss) for x in range(xmax)]
    ww = 0.0
    for w in weights:
        ww += w
    taps = np.empty(xmax, dtype=np.float64)
    for x, w in enumerate(weights):
        if ww != 0.0:
            w = w / ww
        taps[x] = int(-0.5 + w * _SCALE) if w < 0 else int(0.5 + w * _SCALE)
    return xmin, taps


def _coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel: first input index ``(out,)`` and integer taps ``(out, k)`` (zero
    padded), vectorised. Every step is an IEEE operation in Pillow's order except ``np.sin``,
    which may differ from the C library's by an ulp or two; that can only matter for a tap
    whose scaled value lies within rounding distance of the truncation point, and those rows
    are recomputed by :func:`_coeffs_row`. ``np.cumsum`` adds left to right, as Pillow does."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    ss = 1.0 / filterscale
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    count = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64) - xmin
    idx = np.arange(max(int(count.max()), 1), dtype=np.int64)
    x = ((idx[None, :] + xmin[:, None]) - center[:, None] + 0.5) * ss
    valid = idx[None, :] < count[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        px = x * math.pi
        sinc = np.where(x == 0.0, 1.0, np.sin(px) / px)
        x3 = x / 3.0
        px3 = x3 * math.pi
        sinc3 = np.where(x3 == 0.0, 1.0, np.sin(px3) / px3)
        w = np.where(valid & (-3.0 <= x) & (x < 3.0), sinc * sinc3, 0.0)
        ww = np.cumsum(w, axis=1)[:, -1:]
        k = np.where(ww != 0.0, w / ww, w)
    v = np.where(k < 0, -0.5 + k * _SCALE, 0.5 + k * _SCALE)
    taps = np.trunc(v)
    # rows with a value near an integer, where trunc could go either way: the exact path
    near = (np.abs(v - np.round(v)) < 1e-6) & valid
    for xx in np.flatnonzero(near.any(axis=1)):
        _, row = _coeffs_row(in_size, out_size, int(xx))
        taps[xx] = 0.0
        taps[xx, :row.size] = row
    return xmin, np.where(valid, taps, 0.0)


def _run(bands: tuple, src: np.ndarray, out: np.ndarray, offset: int) -> None:
    n = src.shape[0]
    for i0, i1, o0, o1, taps, chunk in bands:
        block = src[:, i0 - offset:i1 - offset]
        if chunk >= n:
            np.matmul(taps, block.T, out=out[o0:o1])
        else:
            for c in range(0, n, chunk):
                np.matmul(taps, block[c:c + chunk].T, out=out[o0:o1, c:c + chunk])


def _bands(xmin: np.ndarray, taps: np.ndarray, starts: np.ndarray, stops: np.ndarray,
           group: int) -> tuple:
    """Outputs in groups of ``group``: ``(in0, in1, out0, out1, taps, chunk)`` per group, the
    taps pre-scaled by ``2**-22`` (exact: a power of two), ``chunk`` rows of the other axis
    per product so that each stays below the multithreading threshold."""
    out_size = xmin.size
    bands = []
    for o0 in range(0, out_size, group):
        o1 = min(o0 + group, out_size)
        i0, i1 = int(starts[o0:o1].min()), int(stops[o0:o1].max())
        mat = np.zeros((o1 - o0, i1 - i0), dtype=np.float64)
        for r in range(o0, o1):
            a, b = int(starts[r]), int(stops[r])
            mat[r - o0, a - i0:b - i0] = taps[r, a - xmin[r]:b - xmin[r]] * _INV_SCALE
        chunk = max(1, _MAX_GEMM_WORK // ((i1 - i0) * (o1 - o0)))
        bands.append((i0, i1, o0, o1, mat, chunk))
    return tuple(bands)


# Fastest output grouping per kind of shape (output size, taps per output, rows, row block).
_GROUPS: dict[tuple, int] = {}


def _fastest_group(candidates: dict[int, tuple], hi: int, other: int, out_size: int,
                   block: int) -> int:
    """Time each grouping once on zeros (wider groups waste multiply-adds on zero taps,
    narrower ones pay more calls; which wins depends on the BLAS and the shape)."""
    rows = min(other, 512)
    src = np.zeros((rows, hi), dtype=np.float64)
    out = np.empty((out_size, rows), dtype=np.float64)
    step = block or rows
    best = (float("inf"), 1)
    for group, bands in candidates.items():
        elapsed = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for r in range(0, rows, step):
                _run(bands, src[r:r + step], out[:, r:r + step], 0)
            elapsed = min(elapsed, time.perf_counter() - t0)
        best = min(best, (elapsed, group))
    return best[1]


@lru_cache(maxsize=256)
def _plan(in_size: int, out_size: int, other: int, block: int = 0) -> tuple[int, int, tuple]:
    """``(lo, hi, bands)`` for one pass: it reads inputs ``lo:hi``; ``bands`` groups the
    outputs as timed fastest for this kind of shape (``other``: length of the untouched axis,
    processed ``block`` rows at a time when given)."""
    xmin, taps = _coeffs(in_size, out_size)
    nz = taps != 0
    has = nz.any(axis=1)
    starts = xmin + np.where(has, nz.argmax(axis=1), 0)
    stops = np.where(has, xmin + taps.shape[1] - nz[:, ::-1].argmax(axis=1), starts + 1)
    stops = np.minimum(stops, in_size)
    lo, hi = int(starts.min()), int(stops.max())
    # shapes alike in output size, taps per output (within a factor of 2**0.5) and rows share
    # one timing, so a stream of images of many sizes is not re-timed image after image
    key = (out_size, int(2 * math.log2(taps.shape[1] + 1)), min(other, 512) // 128, block)
    group = _GROUPS.get(key)
    if group is None:
        candidates: dict[int, tuple] = {}
        g = 1
        while g <= min(64, out_size) or not candidates:
            bands = _bands(xmin, taps, starts, stops, g)
            if not candidates or sum((b[1] - b[0]) * (b[3] - b[2]) for b in bands) < 16384:
                candidates[g] = bands
            g *= 2
        group = _GROUPS[key] = _fastest_group(candidates, hi, other, out_size, block)
    return lo, hi, _bands(xmin, taps, starts, stops, group)


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


@lru_cache(maxsize=256)
def _int_coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's bounds and integer taps for one pass: first input ``(out,)``, tap count
    ``(out,)`` and int32 taps ``(out, k)``, for the compiled kernel."""
    xmin, taps = _coeffs(in_size, out_size)
    scale = float(in_size) / out_size
    support = _LANCZOS_SUPPORT * max(scale, 1.0)
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    count = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64) - xmin
    return xmin, count, np.ascontiguousarray(taps, dtype=np.int32)


@lru_cache(maxsize=1)
def _kernel_module():
    try:
        from . import _lanczos_kernel
    except ImportError:  # numba not installed: the float64 products are exact too
        return None
    return _lanczos_kernel


def _kernel():
    """The compiled passes, or None when numba is missing or ``USE_KERNEL`` is off."""
    return _kernel_module() if USE_KERNEL else None


USE_KERNEL = True
"""Resize with the compiled integer kernel when numba is installed; tests flip this."""


# Up to this many taps per output, a pass along x runs on the transposed rows (vectorised
# across rows) rather than as one short dot product per output pixel.
_FEW_TAPS = 32


def _x_pass(kernel, src: np.ndarray, row0: int, rows: int, grey: bool, width: int
            ) -> np.ndarray:
    """The pass along x over rows ``row0:row0+rows`` of ``src``: uint8 grey ``(h, w)``, or
    RGBX words ``(h, w)`` when ``grey`` (made grey on the way). Few taps per output: on the
    transposed rows, vectorised across rows; many: one vectorised dot product per output."""
    xcoeffs = _int_coeffs(src.shape[1], width)
    if xcoeffs[2].shape[1] <= _FEW_TAPS:
        cols = kernel.columns(src, row0, rows, grey)
        return np.ascontiguousarray(kernel.vertical(cols, 0, *xcoeffs).T)
    if grey:
        return kernel.horizontal_rgbx(src, row0, rows, *xcoeffs)
    return kernel.horizontal(src, row0, rows, *xcoeffs)


def _horizontal_then_vertical(kernel, src: np.ndarray, grey: bool, width: int, height: int
                              ) -> np.ndarray:
    """Pillow's usual order: the x pass over the rows the y pass reads, then the y pass."""
    ycoeffs = _int_coeffs(src.shape[0], height)
    ymin, count, _ = ycoeffs
    lo, hi = int(ymin[0]), int(ymin[-1] + count[-1])  # the rows the y pass reads
    return kernel.vertical(_x_pass(kernel, src, lo, hi - lo, grey, width), lo, *ycoeffs)


def _resize_kernel(kernel, gray: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """Pillow's two passes in its own int32 arithmetic (uint8 in, uint8 out)."""
    in_h, in_w = gray.shape
    if width == in_w and height == in_h:
        return gray.copy()
    if height == in_h:
        return _x_pass(kernel, gray, 0, in_h, False, width)
    ycoeffs = _int_coeffs(in_h, height)
    if width == in_w:
        return kernel.vertical(gray, 0, *ycoeffs)
    if mode == "vertical-first" and _vertical_first(in_w, in_h, width, height):
        return _x_pass(kernel, kernel.vertical(gray, 0, *ycoeffs), 0, height, False, width)
    return _horizontal_then_vertical(kernel, gray, False, width, height)


def resize_l(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    """``Image.fromarray(gray).resize((width, height), LANCZOS)`` as a float64 array of the
    resulting uint8 values. ``gray``: ``(h, w)`` uint8 array (or float64 of 0..255 integers)."""
    mode = _pillow_mode()
    if mode == "pillow":
        im = Image.fromarray(np.asarray(gray, dtype=np.uint8))
        return np.asarray(im.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float64)
    kernel = _kernel()
    if kernel is not None:
        u8 = np.ascontiguousarray(gray, dtype=np.uint8)
        return _resize_kernel(kernel, u8, width, height, mode).astype(np.float64)
    return _resize_ours(gray, width, height, mode)


def _rgbx_words(image: Image.Image) -> np.ndarray | None:
    """The pixels of an RGB image as ``(h, w)`` little-endian uint32 RGBX words, viewed in
    place through Pillow's Arrow export (Pillow >= 11.2, image in one memory block), or None."""
    if not hasattr(image, "__arrow_c_array__") or np.little_endian is False:
        return None
    try:
        import pyarrow as pa

        arr = pa.array(image)  # fixed_size_list<uint8>[4], one entry per pixel
        flat = arr.values.to_numpy(zero_copy_only=True)
    except Exception:  # older Pillow/pyarrow, rows in several blocks: the convert path
        return None
    if arr.offset or flat.dtype != np.uint8 or flat.size != 4 * image.width * image.height:
        return None
    return flat.reshape(image.height, 4 * image.width).view(np.uint32)


def _fused_from_rgb(pixels: Pixels, width: int, height: int, mode: str) -> np.ndarray | None:
    """The resize straight from RGB pixels, the grey conversion done row by row inside the
    horizontal pass (no ``convert("L")`` image, no copy); None where it does not apply: no
    kernel, not RGB, a single pass, or Pillow's vertical-first order."""
    kernel = _kernel()
    image = pixels.image
    in_w, in_h = image.size
    if kernel is None or image.mode != "RGB" or width == in_w or height == in_h or (
            mode == "vertical-first" and _vertical_first(in_w, in_h, width, height)):
        return None
    words = _words(pixels)
    if words is None:
        return None
    return _horizontal_then_vertical(kernel, words, True, width, height)


def _words(pixels: Pixels) -> np.ndarray | None:
    """RGBX words of an RGB image (cached), or None: not RGB, or no in-place view."""
    if pixels.image.mode != "RGB":
        return None
    return pixels.cached("rgbx_words", lambda: _rgbx_words(pixels.image))


def gray_u8(pixels: Pixels) -> np.ndarray:
    """The ``L`` image (``Image.convert("L")``, as imagehash uses) as a uint8 array, cached;
    made by the compiled kernel straight from the RGB pixels where it can (same values)."""

    def make() -> np.ndarray:
        kernel = _kernel()
        words = None if kernel is None else _words(pixels)
        if words is not None:
            return kernel.grey(words)
        return np.asarray(pixels.gray)

    return pixels.cached("gray_u8", make)


def resized_gray(pixels: Pixels, width: int, height: int) -> np.ndarray:
    """``pixels.gray.resize((width, height), LANCZOS)`` as float64 values, cached per image so
    hashers that need the same size share one resize. Images over ``LARGE_PIXELS`` go through
    Pillow itself (same result): the planning and float blocks are sized for photos."""

    def make() -> np.ndarray:
        w, h = pixels.size
        mode = _pillow_mode()
        if w * h > LARGE_PIXELS or mode == "pillow":
            small = pixels.gray.resize((width, height), Image.Resampling.LANCZOS)
            return np.asarray(small, dtype=np.float64)
        fused = _fused_from_rgb(pixels, width, height, mode)
        if fused is not None:
            return fused.astype(np.float64)
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
