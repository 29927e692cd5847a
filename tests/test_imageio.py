"""imageio.load: sources, every PIL mode, EXIF orientation, alpha, 16-bit/float scaling,
animation, JPEG draft and the pixel limit — checked against Pillow's own operations."""

from __future__ import annotations

import gc
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from hashlib_ext import imageio
from hashlib_ext.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from hashlib_ext.imageio import load

TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# 8-bit modes without transparency: load(x).convert("L") must equal x.convert("L").
OPAQUE_MODES = ["1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "HSV"]
GREY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def opened(path: Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """Image.open(path), decoded (optionally drafted) and its file closed."""
    with Image.open(path) as im:
        if draft:
            im.draft("RGB", draft)
        im.load()
        return im


def oriented(path: Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """The reference: oriented(path), file closed."""
    return ImageOps.exif_transpose(opened(path, draft))


def arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im)


def grey(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("L"))


@pytest.fixture(scope="module")
def photo(bundled) -> Image.Image:
    """A small RGB photo, wider than tall (so transposes are visible)."""
    with Image.open(bundled[0]) as im:
        return im.convert("RGB").resize((64, 40))


def in_mode(photo: Image.Image, mode: str) -> Image.Image:
    try:
        return photo.convert(mode)
    except ValueError:
        return photo.convert("L").convert(mode)


def save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


# --- sources ---------------------------------------------------------------------------


def test_every_source_type_gives_the_same_pixels(bundled, tmp_path):
    path = bundled[1]
    data = path.read_bytes()
    ref = arr(oriented(path))
    for src in (str(path), path, data, bytearray(data), memoryview(data), io.BytesIO(data)):
        out = load(src)
        assert out.mode == "RGB"
        assert np.array_equal(arr(out), ref), type(src)
    with open(path, "rb") as f:
        assert np.array_equal(arr(load(f)), ref)
        assert not f.closed  # the caller's file stays open
    with Image.open(path) as im:
        assert np.array_equal(arr(load(im)), ref)
    assert np.array_equal(arr(load(ref)), ref)


def test_rgb_jpeg_is_returned_without_conversion(bundled):
    out = load(bundled[0])
    assert out.mode == "RGB" and out.format == "JPEG"  # the decoded image itself, no copy


def test_upright_rgb_pil_image_is_not_copied(photo):
    assert load(photo) is photo


def test_non_seekable_stream(bundled):
    data = bundled[2].read_bytes()

    class Stream(io.RawIOBase):
        def __init__(self):
            self._b = io.BytesIO(data)

        def readable(self):
            return True

        def seekable(self):
            return False

        def readinto(self, buf):
            n = self._b.readinto(buf)
            return n

    assert np.array_equal(arr(load(Stream())), arr(load(data)))


@pytest.mark.parametrize(
    "shape,mode", [((5, 7), "L"), ((5, 7, 1), "L"), ((5, 7, 3), "RGB"), ((5, 7, 4), "RGB")]
)
def test_uint8_arrays(shape, mode):
    a = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    if len(shape) == 3 and shape[2] == 4:
        a[..., 3] = 255  # opaque: compositing must be the identity
    out = load(a)
    assert out.mode == mode and out.size == (7, 5)
    expected = a[..., 0] if shape == (5, 7, 1) else a[..., :3] if len(shape) == 3 else a
    assert np.array_equal(arr(out), expected)


def test_non_contiguous_array():
    a = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    view = a[::2, ::3]
    assert np.array_equal(arr(load(view)), view)


def test_uint16_array_scaling():
    v = np.array([[0, 128, 129, 257, 385, 386, 32767, 32896, 65534, 65535]], dtype=np.uint16)
    expected = np.floor(v / 257 + 0.5).astype(np.uint8)
    assert np.array_equal(arr(load(v)), expected)
    assert np.array_equal(arr(load(v.astype(">u2"))), expected)  # byte order does not matter


def test_float_array_rules():
    unit = np.array([[0.0, 0.2, 0.5, 1.0]], dtype=np.float32)
    assert arr(load(unit)).tolist() == [[0, 51, 128, 255]]  # [0, 1] -> x255, rounded
    wide = np.array([[-3.0, 0.4, 0.6, 1.5, 254.4, 300.0]], dtype=np.float64)
    assert arr(load(wide)).tolist() == [[0, 0, 1, 2, 254, 255]]  # 0..255, clipped, rounded
    assert arr(load(unit.astype(np.float16))).tolist() == [[0, 51, 128, 255]]


def test_wide_integer_and_bool_arrays():
    assert arr(load(np.array([[0, 7, 255]], dtype=np.int64))).tolist() == [[0, 7, 255]]
    sixteen = np.array([[0, 257, 65535]], dtype=np.int32)
    assert arr(load(sixteen)).tolist() == [[0, 1, 255]]
    assert arr(load(np.array([[True, False]]))).tolist() == [[255, 0]]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 5), np.uint8),
        np.zeros((5, 0, 3), np.uint8),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((2, 4, 4, 3), np.uint8),
        np.zeros(7, np.uint8),
        np.array([[1.0, np.nan]]),
        np.array([[0.0, np.inf]]),
        np.array([[-1, 5]], dtype=np.int16),
        np.array([[70000]], dtype=np.int64),
        np.zeros((2, 2), dtype=np.complex64),
        np.array([["a", "b"]]),
    ],
    ids=lambda a: f"{a.dtype}{a.shape}",
)
def test_unusable_arrays_are_unsupported(bad):
    with pytest.raises(UnsupportedImageError, match="array"):
        load(bad)


@pytest.mark.parametrize("bad", [42, None, [[0, 1]], 3.5, object()])
def test_unknown_source_types(bad):
    with pytest.raises(UnsupportedImageError):
        load(bad)


def test_text_mode_file_is_refused(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_text("hello")
    with open(p) as f, pytest.raises(UnsupportedImageError, match="text-mode"):
        load(f)


@pytest.mark.parametrize("draft", [(0, 5), (5,), (5, -1), (1.5, 2)])
def test_bad_draft_argument(bundled, draft):
    with pytest.raises(ValueError):
        load(bundled[0], draft=draft)


# --- modes -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", OPAQUE_MODES)
def test_opaque_modes_in_memory_keep_convert_l_identity(photo, mode):
    src = in_mode(photo, mode)
    out = load(src)
    assert out.mode in ("RGB", "L")
    assert np.array_equal(grey(out), grey(src)), mode
    assert out.mode == ("L" if mode in GREY_MODES or mode == "YCbCr" else "RGB")


@pytest.mark.parametrize(
    "mode,fmt",
    [("1", "png"), ("L", "png"), ("P", "png"), ("P", "gif"), ("RGB", "png"), ("RGB", "jpg"),
     ("CMYK", "jpg"), ("CMYK", "tif"), ("YCbCr", "tif"), ("L", "jpg"), ("1", "bmp")],
)
def test_opaque_mode_files_keep_convert_l_identity(photo, tmp_path, mode, fmt):
    p = save(in_mode(photo, mode), tmp_path / f"{mode}.{fmt}")
    raw = oriented(p)
    out = load(p)
    assert out.mode in ("RGB", "L")
    assert np.array_equal(grey(out), grey(raw))
    if raw.mode not in ("1", "L", "YCbCr"):  # colour sources keep their colour
        assert np.array_equal(arr(out), arr(raw.convert("RGB")))


def test_cmyk_jpeg(photo, tmp_path):
    p = save(photo.convert("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    assert opened(p).mode == "CMYK"
    out = load(p)
    assert out.mode == "RGB"
    assert np.array_equal(arr(out), arr(opened(p).convert("RGB")))
    assert np.abs(arr(out).astype(int) - arr(photo)).mean() < 8  # still the same picture


def test_ycbcr_gives_the_luma_plane(photo):
    ycc = photo.convert("YCbCr")
    out = load(ycc)
    assert out.mode == "L"
    assert np.array_equal(arr(out), arr(ycc)[..., 0])


@pytest.mark.parametrize("fmt", ["tif", None])
def test_lab(photo, tmp_path, fmt):
    lab = photo.convert("LAB")
    src = save(lab, tmp_path / "lab.tif") if fmt else lab
    out = load(src)
    assert out.mode == "RGB"
    assert np.abs(arr(out).astype(int) - arr(photo)).mean() < 3


@pytest.mark.parametrize("mode", ["I;16", "I;16L", "I;16B", "I;16N"])
def test_16bit_modes_scale_by_257(mode):
    v = np.array([[0, 128, 129, 257, 1000, 32896, 40000, 65535]], dtype=np.uint16)
    order = ">u2" if mode == "I;16B" else "<u2"  # (PIL's convert between them clips at 255)
    im = Image.frombytes(mode, (v.shape[1], 1), v.astype(order).tobytes())
    assert im.mode == mode
    out = load(im)
    assert out.mode == "L"
    assert arr(out).tolist() == np.floor(v / 257 + 0.5).astype(int).tolist()


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_16bit_grey_file(tmp_path, fmt):
    v = (np.arange(40 * 64, dtype=np.uint32).reshape(40, 64) * 25).astype(np.uint16)
    p = save(Image.fromarray(v), tmp_path / f"g16.{fmt}")
    assert opened(p).mode.startswith("I;16")
    out = load(p)
    assert out.mode == "L" and out.size == (64, 40)
    assert np.array_equal(arr(out), ((v.astype(np.uint32) + 128) // 257).astype(np.uint8))
    assert arr(out).max() > 200  # PIL's own convert("L") would clip almost everything to 255


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A minimal PNG (Pillow cannot write 16-bit colour)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def test_16bit_colour_png_within_one_level(tmp_path):
    rng = np.random.default_rng(3)
    v = rng.integers(0, 65536, (6, 9, 3)).astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in v)
    p = tmp_path / "rgb16.png"
    p.write_bytes(png_bytes(9, 6, 16, 2, rows))
    out = load(p)
    assert out.mode == "RGB" and out.size == (9, 6)
    ideal = np.floor(v.astype(np.float64) / 257 + 0.5)
    assert np.abs(arr(out).astype(int) - ideal).max() <= 1


def test_mode_i_rules(photo, tmp_path):
    eight = photo.convert("L").convert("I")  # 0..255 in a 32-bit image: the 8-bit values
    assert np.array_equal(arr(load(eight)), grey(photo))
    p = save(eight, tmp_path / "i.tif")
    assert np.array_equal(arr(load(p)), grey(oriented(p)))
    sixteen = Image.fromarray(np.array([[0, 256, 65535]], dtype=np.int32))
    assert sixteen.mode == "I" and arr(load(sixteen)).tolist() == [[0, 1, 255]]
    with pytest.raises(UnsupportedImageError, match="outside"):
        load(Image.fromarray(np.array([[-5, 10]], dtype=np.int32)))


def test_mode_f_rules(photo, tmp_path):
    f = photo.convert("L").convert("F")  # integral 0..255: same as PIL's convert("L")
    assert np.array_equal(arr(load(f)), grey(photo))
    assert np.array_equal(arr(load(save(f, tmp_path / "f.tif"))), grey(photo))
    unit = Image.fromarray(np.array([[0.0, 0.25, 1.0]], dtype=np.float32))
    assert arr(load(unit)).tolist() == [[0, 64, 255]]


# --- alpha -----------------------------------------------------------------------------


def on_white(c: np.ndarray, a: np.ndarray) -> np.ndarray:
    c, a = c.astype(np.int64), a.astype(np.int64)
    return np.floor((c * a + 255 * (255 - a)) / 255 + 0.5).astype(np.uint8)


def test_rgba_every_alpha_level_on_white():
    c, a = np.meshgrid(np.arange(256), np.arange(256))
    rgba = np.dstack([c, 255 - c, c // 2, a]).astype(np.uint8)
    out = load(rgba)
    assert out.mode == "RGB"
    assert np.array_equal(arr(out), on_white(rgba[..., :3], rgba[..., 3:]))


def test_la_on_white_stays_grey():
    c, a = np.meshgrid(np.arange(256), np.arange(256))
    la = np.dstack([c, a]).astype(np.uint8)
    out = load(la)
    assert out.mode == "L"
    assert np.array_equal(arr(out), on_white(la[..., 0], la[..., 1]))


def _alpha_photo(photo: Image.Image) -> Image.Image:
    rgba = photo.convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, photo.width).astype(np.uint8), (photo.height, 1))
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


@pytest.mark.parametrize("mode", ["RGBA", "RGBa", "PA", "LA", "La"])
def test_alpha_modes_composite_on_white(photo, mode):
    rgba = _alpha_photo(photo)
    # (PIL's direct RGBA -> La conversion drops the alpha; go through LA)
    src = rgba.convert("LA").convert("La") if mode == "La" else rgba.convert(mode)
    out = load(src)
    assert out.mode == ("L" if mode in GREY_MODES else "RGB")
    plain = src.convert("LA" if mode in ("LA", "La") else "RGBA")
    bands = arr(plain)
    assert np.array_equal(arr(out), on_white(bands[..., :-1], bands[..., -1:]).squeeze())
    assert arr(out)[:, 0].min() == 255  # alpha 0 column is white


@pytest.mark.parametrize("mode,fmt", [("RGBA", "png"), ("LA", "png"), ("PA", "tif")])
def test_alpha_files(photo, tmp_path, mode, fmt):
    p = save(_alpha_photo(photo).convert(mode), tmp_path / f"{mode}.{fmt}")
    out = load(p)
    raw = opened(p)
    bands = arr(raw.convert("LA" if mode == "LA" else "RGBA"))
    assert np.array_equal(arr(out), on_white(bands[..., :-1], bands[..., -1:]).squeeze())


def test_palette_transparency_is_alpha(tmp_path):
    p_img = Image.new("P", (4, 2), 0)
    p_img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    p_img.putpixel((1, 0), 1)
    p = save(p_img, tmp_path / "t.png", transparency=0)
    out = load(p)
    assert out.mode == "RGB"
    assert arr(out)[0, 1].tolist() == [200, 100, 50]
    assert (arr(out)[1] == 255).all()  # index 0 is transparent -> white
    g = save(p_img, tmp_path / "t.gif", transparency=0)
    assert np.array_equal(arr(load(g)), arr(out))


def test_palette_with_alpha_entries():
    p_img = Image.new("P", (2, 1), 0)
    p_img.putpalette(bytes([100, 0, 0, 0, 0, 100, 0, 255]), "RGBA")  # entry 0 fully transparent
    p_img.putpixel((1, 0), 1)
    assert arr(load(p_img)).tolist() == [[[255, 255, 255], [0, 100, 0]]]


ALL_MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
             "LAB", "HSV", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"]


@pytest.mark.parametrize("mode", ALL_MODES)
def test_every_pil_mode_gives_rgb_or_l(photo, mode):
    src = in_mode(photo, mode)
    assert src.mode == mode
    out = load(src)
    luma_only = mode in GREY_MODES or mode == "YCbCr"
    assert out.mode == ("L" if luma_only else "RGB") and out.size == photo.size


def test_colour_key_transparency(tmp_path):
    rgb = Image.new("RGB", (3, 1), (1, 2, 3))
    rgb.putpixel((2, 0), (9, 9, 9))
    p = save(rgb, tmp_path / "key.png", transparency=(1, 2, 3))
    assert arr(load(p)).tolist() == [[[255, 255, 255]] * 2 + [[9, 9, 9]]]


def test_opaque_alpha_keeps_identity(photo):
    rgba = photo.convert("RGBA")
    assert np.array_equal(arr(load(rgba)), arr(photo))


# --- animation -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["gif", "png", "webp"])
def test_animated_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (16, 8), c) for c in [(200, 30, 30), (30, 200, 30), (0, 0, 220)]]
    frames[0].paste((250, 250, 250), (0, 0, 4, 4))
    p = tmp_path / f"anim.{fmt}"
    kw = {"lossless": True} if fmt == "webp" else {}
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0, **kw)
    with Image.open(p) as im:
        assert getattr(im, "n_frames", 1) == 3
        first = arr(im.convert("RGB"))
    out = load(p)
    assert out.mode == "RGB" and np.array_equal(arr(out), first)
    assert np.abs(arr(out)[6, 10].astype(int) - [200, 30, 30]).max() <= 3


# --- orientation -----------------------------------------------------------------------


def with_orientation(im: Image.Image, path: Path, orientation: int, **kw) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, **kw)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_exif_orientation_matches_exif_transpose(photo, tmp_path, orientation, fmt):
    p = with_orientation(photo, tmp_path / f"o{orientation}.{fmt}", orientation)
    ref = oriented(p)
    out = load(p)
    assert out.size == ref.size
    assert np.array_equal(arr(out), arr(ref))
    expected = photo if orientation == 1 else photo.transpose(TRANSPOSE[orientation])
    if fmt == "png":  # lossless: exactly the transposed pixels
        assert np.array_equal(arr(out), arr(expected))
    assert out.size == expected.size
    # the tag is consumed: loading the result again does not rotate it twice
    assert np.array_equal(arr(load(out)), arr(out))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_of_pil_and_bytes_sources(photo, tmp_path, orientation):
    p = with_orientation(photo, tmp_path / "o.png", orientation)
    expected = arr(photo.transpose(TRANSPOSE[orientation]))
    assert np.array_equal(arr(load(p.read_bytes())), expected)
    with Image.open(p) as im:
        assert np.array_equal(arr(load(im)), expected)


@pytest.mark.parametrize("value", [0, 9, 255])
def test_invalid_orientation_is_ignored(photo, tmp_path, value):
    p = with_orientation(photo, tmp_path / "bad.jpg", value)
    assert np.array_equal(arr(load(p)), arr(opened(p).convert("RGB")))


def test_shared_exif_rotation_photos(pdq_reference):
    d = pdq_reference / "reg-test-input" / "exif-rotn"
    paths = sorted(d.glob("*.jpg"))
    assert paths
    sizes = set()
    for p in paths:
        out = load(p, draft=(256, 256))
        ref = oriented(p, draft=(256, 256))  # square request: orientation cannot matter
        assert out.size == ref.size and np.array_equal(arr(out), arr(ref)), p.name
        sizes.add(out.size)
    assert len(sizes) == 2  # same stored pixels; tags 6 and 8 make them portrait


@pytest.mark.slow
def test_shared_exif_rotation_photos_full_decode(pdq_reference):
    for p in sorted((pdq_reference / "reg-test-input" / "exif-rotn").glob("*.jpg")):
        assert np.array_equal(arr(load(p)), arr(oriented(p)))


# --- the shared modes folder -----------------------------------------------------------


def test_shared_modes_folder(pdq_reference):
    paths = sorted(p for p in (pdq_reference / "misc-images" / "modes").iterdir()
                   if p.suffix != ".md")
    assert len(paths) >= 13
    for p in paths:
        raw = oriented(p)
        out = load(p)
        assert out.mode in ("RGB", "L") and out.size == raw.size, p.name
        if not raw.has_transparency_data or raw.getextrema()[-1][0] == 255:
            assert np.array_equal(grey(out), grey(raw)), p.name


# --- JPEG draft ------------------------------------------------------------------------


@pytest.mark.parametrize("want", [(32, 32), (80, 60), (100, 40), (640, 480), (5000, 5000)])
def test_draft_is_smaller_but_at_least_requested(bundled, want):
    p = bundled[3]
    full = load(p)
    out = load(p, draft=want)
    assert out.mode == "RGB"
    if want[0] <= full.width and want[1] <= full.height:
        assert out.width >= want[0] and out.height >= want[1]
    assert np.array_equal(arr(out), arr(oriented(p, draft=want)))
    if full.width >= 2 * want[0] and full.height >= 2 * want[1]:
        assert out.width < full.width


@pytest.mark.parametrize("orientation", range(1, 9))
def test_draft_respects_orientation(tmp_path, orientation):
    raw = Image.radial_gradient("L").convert("RGB").resize((128, 64))
    p = with_orientation(raw, tmp_path / "o.jpg", orientation)
    out = load(p, draft=(64, 16))
    assert out.width >= 64 and out.height >= 16
    upright = load(p)
    assert (out.width >= out.height) == (upright.width >= upright.height)


def test_draft_grey_jpeg_and_non_jpeg(photo, tmp_path):
    g = save(photo.convert("L").resize((256, 160)), tmp_path / "g.jpg")
    out = load(g, draft=(32, 20))
    assert out.mode == "L" and out.size == (32, 20)
    png = save(photo, tmp_path / "p.png")
    assert load(png, draft=(8, 8)).size == photo.size  # draft only applies to JPEG


# --- pixel limit -----------------------------------------------------------------------


def test_max_pixels(photo, tmp_path):
    p = save(photo, tmp_path / "p.png")
    n = photo.width * photo.height
    assert load(p, max_pixels=n).size == photo.size
    with pytest.raises(ImageTooLargeError, match=r"p\.png.*64x40"):
        load(p, max_pixels=n - 1)
    for src in (p.read_bytes(), photo, np.zeros((40, 64), np.uint8)):
        with pytest.raises(ImageTooLargeError):
            load(src, max_pixels=n - 1)


def test_module_default_limit(photo, tmp_path, monkeypatch):
    p = save(photo, tmp_path / "p.png")
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100)
    with pytest.raises(ImageTooLargeError):
        load(p)
    assert load(p, max_pixels=10**6).size == photo.size


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header declaring width x height pixels, with almost no data behind it."""
    return png_bytes(width, height, 8, 2, b"\x00" * 16)


@pytest.mark.parametrize("size", [(12_000, 12_000), (100_000, 100_000), (2**31 - 1, 2**31 - 1)])
def test_declared_size_is_refused_before_decoding(tmp_path, size):
    p = tmp_path / "bomb.png"
    p.write_bytes(bomb_png(*size))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning leaks
        with pytest.raises(ImageTooLargeError, match="bomb.png"):
            load(p)


def test_pil_warning_is_ours_to_decide(tmp_path):
    """Above PIL's warning level but under our limit: no PIL warning, decoded as usual."""
    p = tmp_path / "big.png"
    p.write_bytes(bomb_png(10_000, 10_000))  # 100 Mpx declared, truncated data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageDecodeError):
            load(p, max_pixels=100_000_000)


def test_high_caller_limit_restores_pil_global(tmp_path):
    p = tmp_path / "huge.png"
    p.write_bytes(bomb_png(20_000, 20_000))  # 400 Mpx: above PIL's own hard limit
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageDecodeError):  # allowed by the caller, then truncated data
        load(p, max_pixels=500_000_000)
    assert Image.MAX_IMAGE_PIXELS == before
    with pytest.raises(ImageTooLargeError):
        load(p, max_pixels=300_000_000)


@pytest.mark.parametrize("limit", [0, -1, 2.5])
def test_bad_limit_argument(photo, limit):
    with pytest.raises(ValueError):
        load(photo, max_pixels=limit)


# --- resources -------------------------------------------------------------------------


def test_files_are_closed(bundled, tmp_path):
    bad = tmp_path / "trunc.jpg"
    bad.write_bytes(bundled[0].read_bytes()[:3000])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(100_000, 100_000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        load(bundled[0])
        load(bundled[0], draft=(64, 64))
        for p in (bad, bomb):
            with pytest.raises((ImageDecodeError, ImageTooLargeError)):
                load(p)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.slow
def test_coco_sample_matches_the_reference_image(coco_sample):
    for p in coco_sample:
        raw = oriented(p)
        out = load(p)
        assert out.mode in ("RGB", "L") and out.size == raw.size, p.name
        assert np.array_equal(grey(out), grey(raw)), p.name
        if raw.mode in ("RGB", "L"):
            assert np.array_equal(arr(out), arr(raw)), p.name


def test_large_files_are_streamed(bundled, tmp_path, monkeypatch):
    monkeypatch.setattr(imageio, "_READ_WHOLE_BYTES", 0)  # every file counts as large
    bad = tmp_path / "trunc.jpg"
    bad.write_bytes(bundled[0].read_bytes()[:3000])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert np.array_equal(arr(load(bundled[0])), arr(oriented(bundled[0])))
        assert load(bundled[0], draft=(64, 64)).width < 640
        with pytest.raises(ImageDecodeError):
            load(bad)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
