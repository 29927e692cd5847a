"""PDQ: Meta's 256-bit perceptual hash with a 0..100 quality score.

Re-implemented from the published algorithm ("The TMK+PDQF and PDQ hashing algorithms");
output follows the ``pdqhash`` C++ binding (what ThreatExchange deploys):

1. luma ``0.299 R + 0.587 G + 0.114 B`` as float32;
2. a Jarosz filter: two passes of a 1-D box filter along rows then columns, window
   ``ceil(dim / 128)`` per axis, averaging over the shrinking window at the borders;
3. decimation to 64x64 by sampling the filtered image at ``floor((i + 0.5) * dim / 64)``;
4. quality from the quantised gradient sum of the 64x64 buffer;
5. coefficients 1..16 x 1..16 of the 64-point DCT-II (the DC row/column skipped);
6. bit ``16 i + j`` set where coefficient ``(i, j)`` exceeds the median (the 128th smallest)
   of the 256; the hex lists bit 255 first (python-threatexchange's order).

Speed: only the 64x64 samples of the filtered luma are ever used, and the filter is linear
and separable, so the decimated buffer is ``Wr @ L @ Wc.T`` with ``Wr`` (64 x H) and ``Wc``
(64 x W) the composed box-filter rows at the sample positions. ``Wr`` is banded: each output
row needs only ``2 * window - 1`` input rows, so we add those rows up tap by tap (each pixel
read about once) and contract the column band with einsum. The float luma is read in place
from PIL's F image (no full-image copy). Results agree with the reference's float32 running
sums to within float rounding.

Dihedral hashes (:func:`dihedral`): the four mirror images are filtered from the one luma
with mirrored weights, and rotations/diagonal flips are transposes of their 16x16 DCT
coefficients, so row ``k`` equals the PDQ of the transformed pixels.
:func:`dihedral_reference` instead flips coefficient signs of the one buffer, exactly as
``pdqhash.compute_dihedral`` does; that is up to ~100 bits away from hashing the rotated
pixels, because PDQ's filter and sampling are not mirror-symmetric (docs/pdq.md).

Fast mode: a JPEG that PIL decoded at 1/2, 1/4 or 1/8 scale is filtered with the weights
of its full-size axes (see :func:`draft_scale`), which keeps the hash near the exact one.
"""

from __future__ import annotations

import ctypes
import math
from functools import lru_cache

import numpy as np
from PIL import Image, JpegImagePlugin

from ..pixels import Pixels
from . import HasherSpec, register

BITS = 256
OUT = 64  # side of the decimated buffer
NCOEF = 16  # side of the kept DCT block
MIN_DIM = 5  # the reference returns an all-zero hash, quality 0, below this
DEFAULT_THRESHOLD = 31

# Order of the rows of :func:`dihedral` (as ``pdqhash.compute_dihedral`` returns them) and
# the numpy operation on an ``(h, w[, c])`` pixel array whose hash each row equals.
DIHEDRAL_NAMES = (
    "original",
    "rotate90",
    "rotate180",
    "rotate270",
    "flip_x",
    "flip_y",
    "flip_plus1",
    "flip_minus1",
)


def dihedral_transform(pixels: np.ndarray, k: int) -> np.ndarray:
    """Apply dihedral transform ``k`` (row ``k`` of :func:`dihedral`) to an image array."""
    ops = (
        lambda a: a,
        lambda a: np.rot90(a, 1),  # 90 degrees counter-clockwise
        lambda a: np.rot90(a, 2),
        lambda a: np.rot90(a, 3),
        lambda a: a[::-1],  # flip about the horizontal (x) axis: upside down
        lambda a: a[:, ::-1],  # flip about the vertical (y) axis: mirror
        lambda a: np.swapaxes(a, 0, 1),  # transpose (main diagonal)
        lambda a: np.rot90(a, 2).swapaxes(0, 1),  # anti-transpose
    )
    if not 0 <= k < len(ops):
        raise ValueError(f"dihedral transform index must be 0..7, got {k}")
    return np.ascontiguousarray(ops[k](pixels))


# -- filter weights -------------------------------------------------------------------------


def window_size(dim: int) -> int:
    """Jarosz box-filter window along an axis of ``dim`` pixels: ``ceil(dim / 128)``."""
    return (dim + 2 * OUT - 1) // (2 * OUT)


def sample_positions(dim: int) -> np.ndarray:
    """The 64 pixel indices the decimation samples: ``floor((i + 0.5) * dim / 64)``."""
    return ((np.arange(OUT) + 0.5) * dim / OUT).astype(np.int64)


@lru_cache(maxsize=256)
def axis_weights(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the twice-applied box filter at the 64 sample positions of one axis.

    Returns ``(index, weight)``, both ``(64, K)`` with ``K = 2 * window - 1``: sample ``i``
    of the filtered signal is ``sum_k weight[i, k] * x[index[i, k]]``. Padding entries
    beyond the borders have weight 0 and a clipped index. The box filter of window ``w``
    averages ``x[j - a .. j + b]`` (``b = (w + 2) // 2 - 1``, ``a = w - 1 - b``), clipped
    to the signal, dividing by the clipped count, as the reference does.
    """
    w = window_size(dim)
    b = (w + 2) // 2 - 1
    a = w - 1 - b
    pos = np.arange(dim)
    lo, hi = np.maximum(pos - a, 0), np.minimum(pos + b, dim - 1)
    inv = 1.0 / (hi - lo + 1)  # box weight of each output position

    rows = sample_positions(dim)
    k = 2 * w - 1
    start = rows - 2 * a  # leftmost input index any second-pass tap can reach
    # First pass (as seen from sample r): taps j in [lo_r, hi_r], weight inv[r] each; each
    # tap j spreads inv[r] * inv[j] uniformly over [lo_j, hi_j]. Accumulate with a
    # difference array over the K-wide band starting at `start`.
    taps = rows[:, None] + np.arange(-a, b + 1)[None, :]  # (64, w)
    valid = (taps >= 0) & (taps < dim)
    tj = np.clip(taps, 0, dim - 1)
    amp = np.where(valid, inv[rows][:, None] * inv[tj], 0.0)
    diff = np.zeros((OUT, k + 1))
    r_idx = np.repeat(np.arange(OUT)[:, None], w, axis=1)
    np.add.at(diff, (r_idx, lo[tj] - start[:, None]), amp)
    np.add.at(diff, (r_idx, hi[tj] + 1 - start[:, None]), -amp)
    weight = np.cumsum(diff, axis=1)[:, :k]
    index = start[:, None] + np.arange(k)[None, :]
    outside = (index < 0) | (index >= dim)
    weight[outside] = 0.0
    index = np.clip(index, 0, dim - 1)
    index.flags.writeable = weight.flags.writeable = False  # cached: shared by all callers
    return index, weight


@lru_cache(maxsize=256)
def _plan(dim: int, mirrored: bool, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(index, float32 weight)`` for one axis; ``mirrored``: as seen by the flipped axis.

    The mirrored plan samples ``x[::-1]`` exactly as :func:`axis_weights` samples ``x``, so a
    buffer built with it is the buffer of the flipped image (the filter's even windows and
    the sample positions are not symmetric, so this differs slightly from flipping the
    buffer). ``scale > 1``: the axis was JPEG-decoded at ``1/scale``; use the filter of the
    full-size axis (``dim * scale`` pixels), each decoded pixel standing for ``scale``
    full-size ones, so the hash approximates the full-size image's.
    """
    full = dim * scale
    index, weight = axis_weights(full)
    if mirrored:
        index = full - 1 - index
    if scale > 1:
        index, weight = _coarsen(index, weight, scale, dim)
    weight = weight.astype(np.float32)
    index.flags.writeable = weight.flags.writeable = False
    return index, weight


def _coarsen(
    index: np.ndarray, weight: np.ndarray, scale: int, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sum full-size taps into the decoded pixels that cover them (``index // scale``)."""
    coarse = np.minimum(index // scale, dim - 1)
    start = coarse.min(axis=1)
    taps = int((coarse - start[:, None]).max()) + 1
    out = np.zeros((OUT, taps))
    np.add.at(out, (np.arange(OUT)[:, None], coarse - start[:, None]), weight)
    return np.minimum(start[:, None] + np.arange(taps)[None, :], dim - 1), out


@lru_cache(maxsize=256)
def _plans(dim: int, both: bool, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One plan, or the normal and mirrored plans stacked to ``(128, K)``."""
    if not both:
        return _plan(dim, False, scale)
    (i0, w0), (i1, w1) = _plan(dim, False, scale), _plan(dim, True, scale)
    k = max(i0.shape[1], i1.shape[1])  # coarsened plans may differ by a tap

    def widen(index: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pad = ((0, 0), (0, k - index.shape[1]))  # repeat the last index, with weight 0
        return np.pad(index, pad, mode="edge"), np.pad(weight, pad)

    (i0, w0), (i1, w1) = widen(i0, w0), widen(i1, w1)
    return np.concatenate([i0, i1]), np.concatenate([w0, w1])


def draft_scale(image: Image.Image) -> int:
    """1, or the 2/4/8 reduction of a JPEG that PIL decoded in draft mode (``fast``).

    Read from the decoder configuration PIL keeps on the still-open JPEG image; images the
    loader had to rotate or convert lose it and are hashed at their decoded size.
    """
    if not isinstance(image, JpegImagePlugin.JpegImageFile):
        return 1
    config = getattr(image, "decoderconfig", ())
    return config[0] if config and config[0] in (2, 4, 8) else 1


def _dct_matrix() -> np.ndarray:
    """Rows 1..16 of the 64-point orthonormal DCT-II, as float32 like the reference."""
    scale = np.float32(math.sqrt(2.0 / OUT))
    u = np.arange(1, NCOEF + 1)[:, None]
    x = np.arange(OUT)[None, :]
    return (scale * np.cos(math.pi / 2.0 / OUT * u * (2 * x + 1))).astype(np.float32)


_DCT = _dct_matrix()
_DCT64 = _DCT.astype(np.float64)

# -- the hash -------------------------------------------------------------------------------


class _ArrowArray(ctypes.Structure):
    """The Arrow C data interface's ``struct ArrowArray`` (a stable ABI)."""

    _fields_ = [
        ("length", ctypes.c_int64),
        ("null_count", ctypes.c_int64),
        ("offset", ctypes.c_int64),
        ("n_buffers", ctypes.c_int64),
        ("n_children", ctypes.c_int64),
        ("buffers", ctypes.POINTER(ctypes.c_void_p)),
        ("children", ctypes.c_void_p),
        ("dictionary", ctypes.c_void_p),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _FloatImageView:
    """Exposes a mode-F PIL image's memory to numpy without a copy (Arrow export).

    Holds the image and the Arrow capsules, so the memory outlives every numpy view.
    """

    def __init__(self, image: Image.Image):
        schema, array = image.__arrow_c_array__()
        self._keep = (image, schema, array)
        fmt = ctypes.cast(
            _capsule_pointer(schema, b"arrow_schema"), ctypes.POINTER(ctypes.c_char_p)
        )
        arr = _ArrowArray.from_address(_capsule_pointer(array, b"arrow_array"))
        w, h = image.size
        if fmt[0] != b"f" or arr.n_buffers != 2 or arr.length != w * h or arr.null_count:
            raise ValueError("unexpected Arrow layout")
        self.__array_interface__ = {
            "shape": (h, w),
            "typestr": "<f4",
            "data": (arr.buffers[1] + 4 * arr.offset, True),
            "version": 3,
        }


def _float_array(image: Image.Image) -> np.ndarray:
    """``(h, w)`` float32 array of a mode-F image: a zero-copy view where Pillow allows.

    ``np.asarray`` would copy through ``tobytes``; on a 640x480 image that copy and the
    page faults of the fresh memory cost more than all of PDQ's arithmetic. Images Pillow
    stores in several blocks (very large ones) or Pillow without Arrow export fall back to
    the copy.
    """
    try:
        return np.asarray(_FloatImageView(image))
    except (AttributeError, ValueError, TypeError):
        return np.asarray(image)


def luma(pixels: Pixels) -> np.ndarray:
    """``(h, w)`` float32 luma ``0.299 R + 0.587 G + 0.114 B`` (shared via the pixel cache).

    PIL's RGB -> F conversion computes ``(299 R + 587 G + 114 B) / 1000`` in float32, which
    equals pdqhash's float64-then-float32 luma; for mode L it is the grey value itself.
    Read-only.
    """
    return pixels.cached("pdq.luma", lambda: _float_array(pixels.image.convert("F")))


def downsample(lum: np.ndarray, mirrors: bool = False, scale: int = 1) -> np.ndarray:
    """The 64x64 Jarosz-filtered, decimated luma (float32) of a ``(h, w)`` float32 array.

    Computed as ``Wr @ lum @ Wc.T`` touching only the rows and columns the banded weights
    need. With ``mirrors=True`` returns ``(2, 2, 64, 64)``: ``[a, b]`` is the buffer of
    the image flipped upside down if ``a`` and left-right if ``b``.
    Uses numpy loops rather than BLAS on purpose: these products are small, and multithreaded
    BLAS on a busy machine costs far more than it saves.
    """
    h, w = lum.shape
    rindex, rweight = _plans(h, mirrors, scale)
    cindex, cweight = _plans(w, mirrors, scale)
    # Row filter at the sample rows, one tap at a time: small temporaries, each pixel row
    # read about once (a full (rows, taps, w) gather would allocate as much as the image).
    rows = rweight[:, 0, None] * lum[rindex[:, 0]]
    for k in range(1, rindex.shape[1]):
        rows += rweight[:, k, None] * lum[rindex[:, k]]
    buf = np.einsum("ijk,jk->ij", rows[:, cindex], cweight)
    if not mirrors:
        return buf
    return buf.reshape(2, OUT, 2, OUT).transpose(0, 2, 1, 3)


def quality(buf: np.ndarray) -> int:
    """PDQ's quality: quantised gradient sum of the 64x64 buffer / 90, capped at 100."""
    hundred, scale = np.float32(100.0), np.float32(255.0)
    dv = np.trunc((buf[:-1, :] - buf[1:, :]) * hundred / scale)
    dh = np.trunc((buf[:, :-1] - buf[:, 1:]) * hundred / scale)
    total = int(np.abs(dv).sum(dtype=np.float64) + np.abs(dh).sum(dtype=np.float64))
    return min(total // 90, 100)


def dct16(buf: np.ndarray) -> np.ndarray:
    """Coefficients (1..16) x (1..16) of the 2-D DCT of ``(..., 64, 64)`` buffers (float64)."""
    return _DCT64 @ buf.astype(np.float64) @ _DCT64.T


def _bits_to_code(coefs: np.ndarray) -> np.ndarray:
    """Threshold ``(..., 16, 16)`` coefficients at their median; pack to ``(..., 32)`` bytes.

    Bit ``16 i + j`` is coefficient ``(i, j) > median``; the packed code lists bit 255 first.
    """
    flat = coefs.reshape(*coefs.shape[:-2], NCOEF * NCOEF)
    median = np.partition(flat, 127, axis=-1)[..., 127:128]
    return np.packbits((flat > median)[..., ::-1], axis=-1)


def _zero(n: int | None = None) -> np.ndarray:
    return np.zeros((BITS // 8,) if n is None else (n, BITS // 8), dtype=np.uint8)


def _buffer64(pixels: Pixels) -> np.ndarray | None:
    w, h = pixels.size
    if h < MIN_DIM or w < MIN_DIM:
        return None
    scale = draft_scale(pixels.image)
    return pixels.cached("pdq.buffer64", lambda: downsample(luma(pixels), scale=scale))


def compute(pixels: Pixels) -> tuple[np.ndarray, int]:
    """PDQ of one image: (32-byte packed code, quality 0..100)."""
    buf = _buffer64(pixels)
    if buf is None:
        return _zero(), 0
    return _bits_to_code(dct16(buf)), quality(buf)


# Sign patterns for the dihedral transforms in the DCT domain: coefficient (i, j) is for
# frequencies (i + 1, j + 1); mirroring an axis negates the odd frequencies along it.
_FLIP_ROWS = np.where(np.arange(NCOEF) % 2 == 0, -1.0, 1.0)[:, None]
_FLIP_COLS = _FLIP_ROWS.T


def dihedral_coefficients(coefs: np.ndarray) -> np.ndarray:
    """The ``(8, 16, 16)`` DCT coefficients of the 8 transforms of a flipped-in-place buffer.

    Rows in :data:`DIHEDRAL_NAMES` order; pure sign changes and transposes, as the
    reference's ``pdqDihedralHash256es``.
    """
    c, t = coefs, coefs.T
    fr, fc = _FLIP_ROWS, _FLIP_COLS
    return np.stack([c, (c * fc).T, c * fr * fc, (c * fr).T, c * fr, c * fc, t, t * fr * fc])


def dihedral_reference(pixels: Pixels) -> tuple[np.ndarray, np.ndarray]:
    """The 8 hashes exactly as ``pdqhash.compute_dihedral`` makes them.

    Sign changes of the one buffer's DCT. Because the filter and the sampling are not
    mirror-symmetric, these differ from hashing the rotated pixels by up to ~20 bits
    (docs/pdq.md); :func:`dihedral` does not.
    """
    buf = _buffer64(pixels)
    if buf is None:
        return _zero(8), np.zeros(8, dtype=np.int64)
    codes = _bits_to_code(dihedral_coefficients(dct16(buf)))
    return codes, np.full(8, quality(buf), dtype=np.int64)


# For each transform (DIHEDRAL_NAMES order): which mirrored buffer [rows, cols] it starts
# from, and whether it then transposes.
_DIHEDRAL_PLAN = (
    (0, 0, False),  # original
    (0, 1, True),  # rot90 ccw  = transpose(mirror columns)
    (1, 1, False),  # rot180
    (1, 0, True),  # rot270 ccw = transpose(mirror rows)
    (1, 0, False),  # upside down
    (0, 1, False),  # mirror
    (0, 0, True),  # transpose
    (1, 1, True),  # anti-transpose
)


def dihedral(pixels: Pixels) -> tuple[np.ndarray, np.ndarray]:
    """PDQ of all 8 rotations/flips from one decode: ((8, 32) codes, (8,) qualities).

    Row ``k`` equals the PDQ of ``dihedral_transform(pixels, k)`` (within float rounding):
    the four mirror images are filtered from the one luma (the filter is separable, so each
    is two small weighted gathers), and a transpose is a transpose of the DCT coefficients.
    """
    w, h = pixels.size
    if h < MIN_DIM or w < MIN_DIM:
        return _zero(8), np.zeros(8, dtype=np.int64)
    bufs = downsample(luma(pixels), mirrors=True, scale=draft_scale(pixels.image))
    coefs = dct16(bufs)
    stack = np.stack([coefs[a, b].T if t else coefs[a, b] for a, b, t in _DIHEDRAL_PLAN])
    quals = [[quality(bufs[a, b]) for b in (0, 1)] for a in (0, 1)]
    return _bits_to_code(stack), np.array([quals[a][b] for a, b, _ in _DIHEDRAL_PLAN])


def draft_size() -> tuple[int, int]:
    """Smallest JPEG draft-decode size for the ``fast`` mode (see docs/pdq.md)."""
    return (FAST_DRAFT, FAST_DRAFT)


FAST_DRAFT = 128

SPEC = register(
    HasherSpec(
        name="pdq",
        compute=compute,
        bits=lambda: BITS,
        default_threshold=DEFAULT_THRESHOLD,
        draft_size=draft_size,
        dihedral=dihedral,
        description="PDQ (Meta): 256-bit DCT hash of a Jarosz-filtered 64x64 luma, "
        "with quality 0..100; matches the pdqhash package",
    )
)

__all__ = [
    "BITS",
    "DIHEDRAL_NAMES",
    "SPEC",
    "compute",
    "dihedral",
    "dihedral_transform",
    "downsample",
    "quality",
]
