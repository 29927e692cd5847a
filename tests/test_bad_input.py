"""The bad-input list of issue #2: every case gives a correct hash or the right typed error,
through ``load``, ``hash_image`` ("phash", "pdq") and a batch; nothing hangs, nothing leaks an
untyped exception."""

from __future__ import annotations

import io
import os
import signal
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

import hashlib_ext as hx
from hashlib_ext.imageio import load

pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # on purpose

OK = None  # expected outcome: a hash
BITS = {"phash": 64, "pdq": 256}


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """Fail (rather than hang the suite) if one test runs for more than a minute."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise TimeoutError("bad-input test ran for more than 60 s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- building the cases ----------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """Patch the frame header (SOF0) of a real JPEG to declare another size."""
    at = jpeg.index(b"\xff\xc0")
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:]


def gif_declaring(width: int, height: int) -> bytes:
    return (b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00"
            + b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00\x02\x02\x44\x01\x00\x3b")


def jpeg_with_bad_exif(jpeg: bytes) -> bytes:
    """Insert an APP1 'Exif' segment of garbage after SOI."""
    junk = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08\xff\xff" + os.urandom(40)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk + jpeg[2:]


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _animated_gif(path: Path, photo: Image.Image) -> Path:
    """Three photo frames (a natural first frame: flat synthetic frames make PDQ's bits
    float noise, even pdqhash's own under +-1 grey level)."""
    frames = [photo, photo.transpose(Image.Transpose.ROTATE_180), photo.convert("L")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0)
    return path


Builder = Callable[[Path, Image.Image, bytes], "object"]


def _oriented(orientation: int) -> Builder:
    return lambda d, im, j: _save(im, d / f"o{orientation}.jpg", exif=_exif(orientation))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


# name -> (builder(tmp, photo, photo_jpeg_bytes) -> source, expected error type or OK,
#          whether imagehash on the raw oriented image is the reference)
CASES: dict[str, tuple[Builder, type[Exception] | None, bool]] = {
    "zero-byte": (lambda d, im, j: _write(d / "empty.jpg", b""), hx.ImageDecodeError, False),
    "zero-byte-bytes": (lambda d, im, j: b"", hx.ImageDecodeError, False),
    "truncated-jpeg": (lambda d, im, j: _write(d / "t.jpg", j[: len(j) // 2]),
                       hx.ImageDecodeError, False),
    "truncated-jpeg-header": (lambda d, im, j: _write(d / "th.jpg", j[:200]),
                              hx.ImageDecodeError, False),
    "truncated-png": (lambda d, im, j: _write(d / "t.png", _png_of(im)[:700]),
                      hx.ImageDecodeError, False),
    "random-bytes": (lambda d, im, j: _write(d / "r.bin", np.random.default_rng(5).bytes(4096)),
                     hx.ImageDecodeError, False),
    "random-bytes-jpeg-magic": (
        lambda d, im, j: b"\xff\xd8\xff\xe0" + np.random.default_rng(6).bytes(2000),
        hx.ImageDecodeError, False),
    "text-named-jpg": (lambda d, im, j: _write(d / "note.jpg", b"not an image\n" * 20),
                       hx.ImageDecodeError, False),
    "directory": (lambda d, im, j: _mkdir(d / "adir.jpg"), hx.ImageDecodeError, False),
    "missing-path": (lambda d, im, j: d / "nope.jpg", hx.ImageDecodeError, False),
    "missing-path-str": (lambda d, im, j: str(d / "nope" / "x.png"), hx.ImageDecodeError, False),
    "fifo": (lambda d, im, j: _fifo(d / "pipe.jpg"), hx.ImageDecodeError, False),
    "eps-is-refused": (lambda d, im, j: _write(
        d / "x.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
        hx.UnsupportedImageError, False),
    "bomb-png": (lambda d, im, j: _write(d / "bomb.png", png_declaring(100_000, 100_000)),
                 hx.ImageTooLargeError, False),
    "bomb-png-under-pil-limit": (lambda d, im, j: _write(d / "b2.png",
                                                         png_declaring(12_000, 12_000)),
                                 hx.ImageTooLargeError, False),
    "bomb-jpeg": (lambda d, im, j: _write(d / "bomb.jpg", jpeg_declaring(j, 65_000, 65_000)),
                  hx.ImageTooLargeError, False),
    "bomb-gif": (lambda d, im, j: _write(d / "bomb.gif", gif_declaring(65_000, 65_000)),
                 hx.ImageTooLargeError, False),
    "1x1-png": (lambda d, im, j: _save(Image.new("RGB", (1, 1), (10, 200, 30)), d / "1.png"),
                OK, True),
    "1x1-jpeg": (lambda d, im, j: _save(Image.new("L", (1, 1), 77), d / "1.jpg"), OK, True),
    "20000x1": (lambda d, im, j: _save(_stripe(20_000, 1), d / "wide.png"), OK, True),
    "1x20000": (lambda d, im, j: _save(_stripe(1, 20_000), d / "tall.png"), OK, True),
    "animated-gif": (lambda d, im, j: _animated_gif(d / "anim.gif", im), OK, True),
    "cmyk-jpeg": (lambda d, im, j: _save(im.convert("CMYK"), d / "cmyk.jpg"), OK, True),
    "16-bit-png": (lambda d, im, j: _save(_sixteen(im), d / "g16.png"), OK, False),
    "corrupt-exif": (lambda d, im, j: _write(d / "badexif.jpg", jpeg_with_bad_exif(j)), OK, True),
    "bytes-ok": (lambda d, im, j: j, OK, True),
    **{
        f"exif-orientation-{o}": (_oriented(o), OK, True) for o in range(1, 9)
    },
}
ERROR_CASES = [n for n, c in CASES.items() if c[1] is not OK]
GOOD_CASES = [n for n, c in CASES.items() if c[1] is OK]


def _png_of(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _fifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(path)
    return path


def _stripe(w: int, h: int) -> Image.Image:
    n = max(w, h)
    values = (np.arange(n) * 7 % 256).astype(np.uint8)
    return Image.fromarray(values.reshape(h, w))


def _sixteen(im: Image.Image) -> Image.Image:
    g = np.asarray(im.convert("L"), dtype=np.uint16) * 257 + 100
    return Image.fromarray(g.astype(np.uint16))


@pytest.fixture(scope="module")
def built(tmp_path_factory, bundled) -> Callable[[str], object]:
    """name -> the built source, made once per module."""
    d = tmp_path_factory.mktemp("bad")
    with Image.open(bundled[0]) as im:
        photo = im.convert("RGB").resize((120, 80))
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    made: dict[str, object] = {}

    def get(name: str) -> object:
        if name not in made:
            made[name] = CASES[name][0](d, photo, jpeg)
        return made[name]

    return get


def reference_image(src: object) -> Image.Image:
    """What imagehash is given in the conformance contract: the EXIF-oriented raw image."""
    if isinstance(src, bytes):
        src = io.BytesIO(src)
    with Image.open(src) as im:
        return ImageOps.exif_transpose(im)


# --- load ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ERROR_CASES)
def test_load_raises_the_typed_error(built, name):
    src = built(name)
    with pytest.raises(CASES[name][1]) as info:
        load(src)
    if isinstance(src, (str, Path)):
        assert Path(src).name in str(info.value)  # the message names the input


@pytest.mark.parametrize("name", GOOD_CASES)
def test_load_gives_an_image(built, name):
    out = load(built(name))
    assert out.mode in ("RGB", "L") and out.width >= 1 and out.height >= 1


def test_extreme_aspect_ratios_keep_their_size(built):
    assert load(built("20000x1")).size == (20_000, 1)
    assert load(built("1x20000")).size == (1, 20_000)


def test_animated_gif_is_its_first_frame(built):
    p = built("animated-gif")
    with Image.open(p) as im:
        first = np.asarray(im.convert("RGB"))
    assert np.array_equal(np.asarray(load(p)), first)


def test_errors_are_the_common_base(built):
    for name in ERROR_CASES:
        with pytest.raises(hx.HashlibExtError):
            load(built(name))


# --- hash_image ------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["phash", "pdq"])
@pytest.mark.parametrize("name", ERROR_CASES)
def test_hash_image_raises_the_typed_error(built, name, algorithm):
    with pytest.raises(CASES[name][1]):
        hx.hash_image(built(name), algorithm)


@pytest.mark.parametrize("name", GOOD_CASES)
def test_phash_of_good_cases(built, name):
    src = built(name)
    h = hx.hash_image(src, "phash")
    assert h.algorithm == "phash" and h.bits == BITS["phash"]
    assert h.hex == str(imagehash.phash(load(src)))
    if CASES[name][2]:  # no transparency, 8-bit: the raw oriented image is the reference
        assert h.hex == str(imagehash.phash(reference_image(src)))


@pytest.mark.parametrize("name", GOOD_CASES)
def test_pdq_of_good_cases(built, name):
    src = built(name)
    h = hx.hash_image(src, "pdq")
    assert h.algorithm == "pdq" and h.bits == BITS["pdq"] and 0 <= h.quality <= 100
    ref_bits, ref_quality = pdqhash.compute(np.asarray(load(src).convert("RGB")))
    ref = hx.Hash.from_bits(ref_bits.astype(np.uint8), "pdq")
    assert abs(h.quality - ref_quality) <= 1
    if ref_quality > 0:  # a flat image's bits are float noise: only its quality is defined
        assert h - ref <= 2


def test_shared_modes_folder_hashes(pdq_reference):
    paths = sorted(p for p in (pdq_reference / "misc-images" / "modes").iterdir()
                   if p.suffix != ".md")
    assert paths
    for p in paths:
        raw = reference_image(p)
        hashes = hx.hash_image(p, ["phash", "pdq"])
        assert hashes["pdq"].bits == 256
        opaque = not raw.has_transparency_data or raw.getextrema()[-1][0] == 255
        if opaque and raw.mode not in ("I", "F") and not raw.mode.startswith("I;16"):
            assert hashes["phash"].hex == str(imagehash.phash(raw)), p.name


# --- a batch of all of them ------------------------------------------------------------


def test_batch_survives_every_case(built):
    names = [n for n in CASES if n != "fifo" or hasattr(os, "mkfifo")]
    srcs = [built(n) for n in names]
    res = hx.hash_images(srcs, "phash", workers=1, progress=False)
    bad = [n for n in names if CASES[n][1] is not OK]
    assert res.failed == len(bad) and res.ok == len(names) - len(bad)
    assert [e[1] for e in res.errors] == [CASES[n][1].__name__ for n in bad]


# --- fuzzing: corrupt or cut files never leak an untyped exception ---------------------


def _samples() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    im = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    out = {}
    for fmt, kw in [("JPEG", {"exif": _exif(6)}), ("PNG", {}), ("GIF", {}), ("TIFF", {}),
                    ("WEBP", {}), ("BMP", {})]:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[fmt] = buf.getvalue()
    return out


SAMPLES = _samples()
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load_or_typed_error(data: bytes) -> None:
    try:
        out = load(data, max_pixels=4_000_000)
    except hx.HashlibExtError:
        return
    assert out.mode in ("RGB", "L")


@FUZZ
@given(fmt=st.sampled_from(sorted(SAMPLES)), cut=st.floats(0, 1))
def test_fuzz_truncation(fmt, cut):
    data = SAMPLES[fmt]
    _load_or_typed_error(data[: int(len(data) * cut)])


@FUZZ
@given(fmt=st.sampled_from(sorted(SAMPLES)),
       edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_corruption(fmt, edits):
    data = bytearray(SAMPLES[fmt])
    for where, value in edits:
        data[min(int(where * len(data)), len(data) - 1)] = value
    _load_or_typed_error(bytes(data))


@FUZZ
@given(data=st.binary(max_size=512))
def test_fuzz_arbitrary_bytes(data):
    _load_or_typed_error(data)
