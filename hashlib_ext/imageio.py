"""Image loading: any source to one oriented image in mode ``RGB`` or ``L``.

:func:`load` is the only way pixels enter hashlib_ext. It accepts a path, bytes, a binary
file object, a PIL image or a numpy array, and returns a PIL image that the hashers can use
as is (see :class:`hashlib_ext.pixels.Pixels`).

Policy (documented behaviour, relied on by the conformance tests):

- **Orientation.** The EXIF (or XMP) orientation tag is applied exactly as
  ``PIL.ImageOps.exif_transpose`` does, and removed from the result, so loading a loaded
  image does not rotate it twice. Unreadable EXIF data counts as "no orientation".
- **Modes.** ``RGB`` and ``L`` are returned untouched (no copy). Other 8-bit modes are
  converted so that ``load(x).convert("L")`` equals ``x.convert("L")`` pixel for pixel, which
  is what imagehash hashes: ``1`` and ``YCbCr`` become ``L`` (PIL's ``convert("L")`` takes the
  Y plane of YCbCr, which differs from going through RGB); ``P``, ``CMYK``, ``HSV``, ``RGBX``
  become ``RGB``; ``LAB`` (which PIL cannot convert to ``L``) becomes ``RGB`` via ImageCms.
- **Alpha.** Images with transparency (``LA``, ``La``, ``PA``, ``RGBA``, ``RGBa``, a palette
  with alpha, a ``transparency`` colour key) are composited over **white**:
  ``round((c * a + 255 * (255 - a)) / 255)``. Grey sources give ``L``, others ``RGB``. A fully
  opaque image is therefore unchanged.
- **16-bit.** ``I;16*`` images and ``uint16`` arrays are scaled by ``round(v / 257)``, which
  maps 0..65535 onto 0..255 exactly (65535 -> 255, 257*k -> k). 16-bit colour PNGs arrive
  from Pillow's decoder already reduced to their high byte (at most one level from that rule).
  Mode ``I`` images and other integer arrays are taken as 8-bit when every value is in
  0..255, as 16-bit when in 0..65535, and are refused otherwise.
- **Float.** Mode ``F`` images and float arrays are taken to be in [0, 1] when every value
  lies in [0, 1] (scaled by 255), otherwise in 0..255; then clipped to 0..255 and rounded to
  the nearest integer. NaN or infinity is refused.
- **Animation.** Multi-frame files (GIF, APNG, WebP, TIFF, MPO) give their first frame; a PIL
  image is used at the frame it is on.
- **Size limit.** The declared size is read from the header before any pixel is decoded;
  more than ``max_pixels`` (default :data:`MAX_PIXELS`) raises :class:`ImageTooLargeError`.
  PIL's own ``DecompressionBombWarning`` is silenced during the call in favour of this limit
  (``warnings.catch_warnings``; PIL's ``Image.MAX_IMAGE_PIXELS`` is only touched when a caller
  allows more than PIL's hard limit, see ``_pil_limits``).
- **Errors.** Nothing but :mod:`hashlib_ext.errors` types leaves :func:`load`:
  :class:`ImageDecodeError` (missing, not a file, empty, truncated, corrupt, not an image),
  :class:`UnsupportedImageError` (decodes but cannot be used: bad array shape or dtype,
  zero size, unknown mode, EPS, whose decoding would run Ghostscript),
  :class:`ImageTooLargeError`. Each message names the input. (Bad *arguments*, a
  non-positive ``max_pixels`` or ``draft``, are ``ValueError``.) Truncated files are
  refused (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left alone).
- **Files.** Paths are opened and closed here. File objects are read from their start
  (Pillow seeks to 0; a non-seekable stream is read whole) and left open for the caller.
"""

from __future__ import annotations

import io
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import (
    HashlibExtError,
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedImageError,
    describe,
)

MAX_PIXELS: int = 128_000_000
"""Default pixel-count limit of :func:`load` (width * height). Read at each call: set
``hashlib_ext.imageio.MAX_PIXELS`` to change the default, or pass ``max_pixels``."""

Source = Any
"""str | os.PathLike | bytes | bytearray | memoryview | binary file | PIL.Image | np.ndarray"""

_ORIENTATION_TAG = 0x0112
_TRANSPOSES = {2, 3, 4, 5, 6, 7, 8}
_SWAPS_AXES = {5, 6, 7, 8}
_DRAFT_FORMATS = {"JPEG", "MPO"}
# Formats whose decoding runs an external program (Ghostscript): never on untrusted input.
_REFUSED_FORMATS = {"EPS"}
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_GREY_ALPHA_MODES = {"LA", "La", "L", "1"}
_PIL_LIMIT_LOCK = threading.Lock()
# Files up to this size are read into memory in one call before decoding (about 3% less CPU
# than Pillow's buffered reads on 640x480 JPEGs); larger ones are streamed.
_READ_WHOLE_BYTES = 64 << 20


def load(
    src: Source,
    *,
    draft: tuple[int, int] | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode ``src`` into an EXIF-oriented PIL image in mode ``RGB`` or ``L``.

    ``draft=(w, h)`` lets encoded JPEG sources (path, bytes, file) decode at a reduced DCT
    scale (1/2, 1/4 or 1/8) while the oriented result stays at least ``w`` x ``h`` (smaller
    only when the image itself is); other formats, PIL images and arrays ignore it. ``max_pixels``
    overrides :data:`MAX_PIXELS`. The result may be ``src`` itself (a PIL image already in
    RGB or L and upright); treat it as read-only. See the module docstring for the policy.
    """
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if not isinstance(limit, Integral) or limit < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {limit!r}")
    limit = int(limit)
    if draft is not None:
        if len(draft) != 2 or not all(isinstance(v, Integral) and v > 0 for v in draft):
            raise ValueError(f"draft must be a (width, height) of positive ints, got {draft!r}")
        draft = (int(draft[0]), int(draft[1]))

    if isinstance(src, Image.Image):
        return _from_pil(src, limit)
    if isinstance(src, np.ndarray):
        return _from_array(src, limit)
    if isinstance(src, (str, os.PathLike)):
        return _from_path(src, draft, limit)
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise ImageDecodeError(f"{describe(src)}: empty input")
        return _decode(io.BytesIO(src), describe(src), draft, limit)
    if isinstance(src, io.TextIOBase):
        raise UnsupportedImageError(f"{describe(src)}: a text-mode file; open images with 'rb'")
    if callable(getattr(src, "read", None)):
        return _decode(src, describe(src), draft, limit)
    raise UnsupportedImageError(
        f"{describe(src)}: cannot load an image from a {type(src).__name__}; expected a path, "
        "bytes, a binary file object, a PIL image or a numpy array"
    )


# --- sources ---------------------------------------------------------------------------


def _from_path(path: str | os.PathLike, draft: tuple[int, int] | None, limit: int) -> Image.Image:
    name = describe(os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageDecodeError(f"{name}: no such file") from None
    except (OSError, ValueError) as exc:  # permission, bad name, embedded NUL, ...
        raise ImageDecodeError(f"{name}: cannot access ({_reason(exc)})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageDecodeError(f"{name}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):  # FIFOs and devices could block or never end
        raise ImageDecodeError(f"{name}: not a regular file")
    if st.st_size == 0:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    whole = st.st_size <= _READ_WHOLE_BYTES
    try:
        fp = open(path, "rb", buffering=0 if whole else -1)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ImageDecodeError(f"{name}: cannot open ({_reason(exc)})") from exc
    with fp:
        if not whole:
            return _decode(fp, name, draft, limit)
        try:
            data = fp.read()  # one read: decoding from memory beats many small reads
        except OSError as exc:
            raise ImageDecodeError(f"{name}: cannot read ({_reason(exc)})") from exc
    return _decode(io.BytesIO(data), name, draft, limit)


def _decode(
    fp: IO[bytes], name: str, draft: tuple[int, int] | None, limit: int
) -> Image.Image:
    """Identify, size-check, optionally draft, decode, orient and normalise one file."""
    try:
        with _pil_limits(limit):
            im = Image.open(fp)
            if im.format in _REFUSED_FORMATS:
                raise UnsupportedImageError(f"{name}: {im.format} files are not decoded")
            _check_size(im.size, limit, name)
            if draft is not None and im.format in _DRAFT_FORMATS:
                w, h = draft
                if _orientation(im) in _SWAPS_AXES:
                    w, h = h, w
                im.draft("L" if im.mode == "L" else "RGB", (w, h))
            if isinstance(fp, io.BytesIO):
                # all in memory: hand the decoder the whole file in one call, not 64 KiB
                # pieces (the same pixels; fewer decoder re-entries)
                im.decodermaxblock = max(im.decodermaxblock, fp.getbuffer().nbytes)
            im.load()
            return _normalise(_orient(im), name)
    except HashlibExtError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: {_bomb_size(exc)}, over the limit of {limit:,} "
                                 "(raise max_pixels to allow it)") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name}: not a recognised image format") from exc
    except MemoryError as exc:
        raise ImageTooLargeError(f"{name}: out of memory while decoding") from exc
    except Exception as exc:  # corrupt data makes Pillow's plugins raise many kinds
        raise ImageDecodeError(f"{name}: cannot decode ({_reason(exc)})") from exc


def _from_pil(im: Image.Image, limit: int) -> Image.Image:
    name = describe(im)
    _check_size(im.size, limit, name)
    try:
        with _pil_limits(limit):
            im.load()  # no-op when loaded; decodes a lazily opened file
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: {_bomb_size(exc)}, over the limit of {limit:,}") from exc
    except Exception as exc:
        raise ImageDecodeError(f"{name}: cannot decode ({_reason(exc)})") from exc
    return _normalise(_orient(im), name)


def _from_array(a: np.ndarray, limit: int) -> Image.Image:
    name = describe(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (2, 3, 4))):
        raise UnsupportedImageError(
            f"{name}: expected an HxW, HxWx1, HxWx2, HxWx3 or HxWx4 array"
        )
    h, w = a.shape[:2]
    if h == 0 or w == 0:
        raise UnsupportedImageError(f"{name}: zero-size image")
    _check_size((w, h), limit, name)
    return _normalise(Image.fromarray(np.ascontiguousarray(_to_uint8(a, name))), name)


# --- pixel values ----------------------------------------------------------------------


def _to_uint8(a: np.ndarray, name: str) -> np.ndarray:
    """Scale an array to uint8 by the module's 16-bit / integer / float rules."""
    kind = a.dtype.kind
    if a.dtype == np.uint8:
        return a
    if kind == "b":
        return a.astype(np.uint8) * np.uint8(255)
    if a.dtype == np.uint16:
        return _scale16(a)
    if kind in "iu":
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise UnsupportedImageError(
                f"{name}: integer values {lo}..{hi} are outside 0..65535 (8- or 16-bit)"
            )
        return a.astype(np.uint8) if hi <= 255 else _scale16(a)
    if kind == "f":
        a = a.astype(np.float32, copy=False) if a.dtype.itemsize < 4 else a
        if not np.isfinite(a).all():
            raise UnsupportedImageError(f"{name}: float image contains NaN or infinity")
        if a.min() >= 0 and a.max() <= 1:
            a = a * 255
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    raise UnsupportedImageError(f"{name}: unsupported array dtype {a.dtype}")


def _scale16(a: np.ndarray) -> np.ndarray:
    """round(v / 257) for 0 <= v <= 65535 (never a tie: v / 257 is never k + 0.5)."""
    return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _normalise(im: Image.Image, name: str) -> Image.Image:
    """Bring any PIL mode to RGB or L by the module's policy."""
    mode = im.mode
    if im.width == 0 or im.height == 0:
        raise UnsupportedImageError(f"{name}: zero-size image")
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _wide_to_l(im, name)
    if _has_alpha(im):
        return _on_white(im, name)
    if mode in ("RGB", "L"):
        return im
    if mode in ("1", "YCbCr"):
        return im.convert("L")
    try:
        return im.convert("RGB")  # P, CMYK, HSV, RGBX, LAB (through ImageCms), ...
    except Exception as exc:
        raise UnsupportedImageError(f"{name}: unsupported image mode {mode}") from exc


def _has_alpha(im: Image.Image) -> bool:
    """Transparency of any kind (as Pillow >= 10.1's ``has_transparency_data``)."""
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        return True
    return im.mode == "P" and im.palette is not None and im.palette.mode.endswith("A")


def _wide_to_l(im: Image.Image, name: str) -> Image.Image:
    """16-bit, 32-bit integer and float single-channel images to L (transparency -> white)."""
    raw = np.asarray(im)
    out = _scale16(raw) if im.mode.startswith("I;16") else _to_uint8(raw, name)
    key = im.info.get("transparency")
    if isinstance(key, int) and not isinstance(key, bool):
        out = np.where(raw == key, np.uint8(255), out)
    return Image.fromarray(np.ascontiguousarray(out))


def _on_white(im: Image.Image, name: str) -> Image.Image:
    """Composite over white: grey sources give L, colour ones RGB."""
    try:
        if im.mode in _GREY_ALPHA_MODES:
            la = im if im.mode == "LA" else im.convert("LA")
            grey, alpha = la.split()
            out = Image.new("L", im.size, 255)
            out.paste(grey, (0, 0), alpha)
            return out
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        out = Image.new("RGB", im.size, (255, 255, 255))
        out.paste(rgba, (0, 0), rgba)
        return out
    except Exception as exc:
        raise UnsupportedImageError(f"{name}: cannot composite mode {im.mode}") from exc


# --- orientation, limits ---------------------------------------------------------------


def _orientation(im: Image.Image) -> int:
    """The EXIF/XMP orientation (1..8) as ImageOps.exif_transpose reads it; 1 if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data": we treat it as no tag
            value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSES else 1


def _orient(im: Image.Image) -> Image.Image:
    """Apply the orientation; an upright image is returned as is (no copy)."""
    if _orientation(im) == 1:
        return im
    try:
        return ImageOps.exif_transpose(im)  # also drops the tag from the result
    except Exception:  # tag readable but the EXIF block cannot be rewritten
        method = {
            2: Image.Transpose.FLIP_LEFT_RIGHT,
            3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270,
            7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90,
        }[_orientation(im)]
        return im.transpose(method)


def _check_size(size: tuple[int, int], limit: int, name: str) -> None:
    w, h = size
    if w * h > limit:
        raise ImageTooLargeError(
            f"{name}: image is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
            "(raise max_pixels or hashlib_ext.imageio.MAX_PIXELS to allow it)"
        )


@contextmanager
def _pil_limits(limit: int) -> Iterator[None]:
    """Let our limit, not PIL's, decide: silence PIL's bomb warning for this call.

    PIL also *raises* above 2 * ``Image.MAX_IMAGE_PIXELS`` (179 Mpx by default), before we see
    the size. Only when a caller's own limit is above that do we lift PIL's global for the
    duration of the call (under a lock, restored afterwards): that is the one way to decode
    such an image with Pillow, and the caller asked for it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pil = Image.MAX_IMAGE_PIXELS
        if pil is None or limit <= 2 * pil:
            yield
            return
        with _PIL_LIMIT_LOCK:
            Image.MAX_IMAGE_PIXELS = limit
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS = pil


def _bomb_size(exc: Exception) -> str:
    match = re.search(r"\((\d+) pixels\)", str(exc))
    return f"image is {int(match[1]):,} pixels" if match else "image is too large"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
