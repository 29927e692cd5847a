"""Compiled (numba) passes of Pillow's 8-bit resample, in Pillow's own integer arithmetic.

Each output pixel is ``clip8(2**21 + sum(pixel * tap))``, with the int32 taps of
``_lanczos._int_coeffs`` (22 fractional bits), exactly as Pillow's ``ImagingResample*_8bpc``
computes it, so the result is Pillow's byte for byte by construction. Imported only when numba
is present; ``_lanczos`` falls back to its float64 matrix products otherwise.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_HALF = np.int32(1 << 21)


@njit(cache=True, inline="always")
def _clip8(ss):
    v = ss >> 22
    if v < 0:
        return np.uint8(0)
    if v > 255:
        return np.uint8(255)
    return np.uint8(v)


@njit(cache=True, inline="always")
def _taps_row(line, out_row, xmin, count, taps):
    """One row of the horizontal pass: ``line`` (uint8 pixels) into ``out_row``."""
    for o in range(xmin.shape[0]):
        n = count[o]
        seg = line[xmin[o]:xmin[o] + n]  # a slice: non-negative indices, so the loop vectorises
        tap = taps[o]
        ss = _HALF
        for k in range(n):
            ss = np.int32(ss + np.int32(np.int32(seg[k]) * tap[k]))  # int32 throughout
        out_row[o] = _clip8(ss)


@njit(cache=True)
def horizontal(src, row0, rows, xmin, count, taps):
    """Rows ``row0:row0+rows`` of ``src`` (uint8, (h, w)) resampled along x: (rows, out)."""
    out = np.empty((rows, xmin.shape[0]), dtype=np.uint8)
    for y in range(rows):
        _taps_row(src[row0 + y], out[y], xmin, count, taps)
    return out


_U8 = np.uint32(255)
_WR, _WG, _WB, _ROUND = np.uint32(19595), np.uint32(38470), np.uint32(7471), np.uint32(32768)
_S8, _S16 = np.uint32(8), np.uint32(16)


@njit(cache=True, inline="always")
def _grey_row(px, line):
    """RGBX words (little-endian uint32) to grey exactly as Pillow's ``convert("L")``:
    ``(19595 R + 38470 G + 7471 B + 2**15) >> 16`` (checked on all 2**24 colours), in uint32
    arithmetic so that the loop vectorises."""
    for x in range(px.shape[0]):
        p = px[x]
        line[x] = np.uint8((np.uint32(p & _U8) * _WR
                            + np.uint32((p >> _S8) & _U8) * _WG
                            + np.uint32((p >> _S16) & _U8) * _WB + _ROUND) >> _S16)


@njit(cache=True)
def grey(src):
    """RGBX words ``(h, w)`` to the ``(h, w)`` uint8 image of Pillow's ``convert("L")``."""
    out = np.empty(src.shape, dtype=np.uint8)
    for y in range(src.shape[0]):
        _grey_row(src[y], out[y])
    return out


@njit(cache=True)
def horizontal_rgbx(src, row0, rows, xmin, count, taps):
    """As :func:`horizontal`, from RGBX words ``(h, w)`` made grey row by row: one pass over
    the colour pixels instead of a ``convert("L")`` and a copy."""
    out = np.empty((rows, xmin.shape[0]), dtype=np.uint8)
    line = np.empty(src.shape[1], dtype=np.uint8)
    for y in range(rows):
        _grey_row(src[row0 + y], line)
        _taps_row(line, out[y], xmin, count, taps)
    return out


@njit(cache=True, inline="always")
def _source_row(src, y, grey, line):
    """Row ``y`` of ``src`` as uint8 grey pixels in ``line``."""
    if grey:
        _grey_row(src[y], line)
    else:
        line[:] = src[y]


@njit(cache=True)
def columns(src, row0, rows, grey):
    """Rows ``row0:row0+rows`` of ``src`` transposed to ``(w, rows)`` uint8, so that a pass
    along x can run as :func:`vertical` (vectorised across rows: the fast layout when each
    output has few taps). ``grey``: ``src`` holds RGBX words, made grey on the way. Eight
    rows at a time, stored with eight explicit writes per column (twice as fast as a loop)."""
    w = src.shape[1]
    out = np.empty((w, rows), dtype=np.uint8)
    b = np.empty((8, w), dtype=np.uint8)
    whole = rows - rows % 8
    for r in range(0, whole, 8):
        for i in range(8):
            _source_row(src, row0 + r + i, grey, b[i])
        for x in range(w):
            col = out[x]
            col[r], col[r + 1], col[r + 2], col[r + 3] = b[0, x], b[1, x], b[2, x], b[3, x]
            col[r + 4], col[r + 5], col[r + 6], col[r + 7] = b[4, x], b[5, x], b[6, x], b[7, x]
    for r in range(whole, rows):
        _source_row(src, row0 + r, grey, b[0])
        for x in range(w):
            out[x, r] = b[0, x]
    return out


@njit(cache=True)
def vertical(src, offset, ymin, count, taps):
    """``src`` (uint8, (h, w), holding input rows from ``offset`` on) resampled along y."""
    out_h = ymin.shape[0]
    w = src.shape[1]
    out = np.empty((out_h, w), dtype=np.uint8)
    acc = np.empty(w, dtype=np.int32)
    for o in range(out_h):
        acc[:] = _HALF
        y0 = ymin[o] - offset
        for k in range(count[o]):
            line = src[y0 + k]
            t = taps[o, k]
            for x in range(w):
                acc[x] += np.int32(np.int32(line[x]) * t)
        for x in range(w):
            out[o, x] = _clip8(acc[x])
    return out
