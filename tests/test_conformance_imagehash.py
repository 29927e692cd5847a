"""ahash/dhash/phash/whash against imagehash itself, live: same bits on every image we have.

``img`` is the EXIF-oriented image, as the issue states; images with odd modes are also
compared after our loader's normalisation (alpha policy), which is what we hash.
"""

from __future__ import annotations

from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageOps

import hashlib_ext as hx
from hashlib_ext.hashers import _lanczos, hash_pixels
from hashlib_ext.pixels import Pixels

REFERENCE = {
    "ahash": imagehash.average_hash,
    "dhash": imagehash.dhash,
    "phash": imagehash.phash,
    "whash": imagehash.whash,
}
ALGOS = sorted(REFERENCE)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}


def _reference(path: Path, algo: str, **params) -> str:
    with Image.open(path) as im:
        return str(REFERENCE[algo](ImageOps.exif_transpose(im), **params))


def _mismatches(paths, algo: str, **params) -> list[str]:
    bad = []
    for p in paths:
        ours = hx.hash_image(p, algo, **params).hex
        ref = _reference(p, algo, **params)
        if ours != ref:
            bad.append(f"{p.name}: ours {ours} imagehash {ref}")
    return bad


@pytest.mark.parametrize("algo", ALGOS)
def test_bundled_images_default_params(bundled, algo):
    assert _mismatches(bundled, algo) == []


@pytest.mark.parametrize("algo", ALGOS)
def test_bundled_images_hash_size_16(bundled, algo):
    out = _mismatches(bundled[:10], algo, hash_size=16)
    assert out == []
    assert hx.hash_image(bundled[0], algo, hash_size=16).bits == 256


@pytest.mark.parametrize("algo", ALGOS)
def test_hash_size_4(bundled, algo):
    assert _mismatches(bundled[:6], algo, hash_size=4) == []


def _synthetic() -> list[tuple[str, Image.Image]]:
    rng = np.random.default_rng(7)
    out = []
    for w, h in [(1, 1), (20000, 1), (1, 20000), (7, 3), (33, 17), (17, 33), (64, 64), (300, 41)]:
        out.append((f"noise-rgb-{w}x{h}", Image.fromarray(
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8))))
        ramp = (np.add.outer(np.arange(h), np.arange(w)) * 255 // max(1, w + h - 2))
        out.append((f"ramp-l-{w}x{h}", Image.fromarray(ramp.astype(np.uint8))))
        # flat images: every coefficient ties with the median and float rounding decides
        for value in (0, 77, 255):
            out.append((f"flat-l-{value}-{w}x{h}", Image.new("L", (w, h), value)))
        out.append((f"flat-rgb-{w}x{h}", Image.new("RGB", (w, h), (200, 30, 90))))
    two = np.zeros((40, 60), dtype=np.uint8)
    two[:, 30:] = 255
    out.append(("two-halves", Image.fromarray(two)))
    return out


SYNTHETIC = _synthetic()


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("hash_size", [8, 16])
def test_odd_sizes_and_flat_images(algo, hash_size):
    bad = []
    for name, im in SYNTHETIC:
        ours = hx.hash_image(im, algo, hash_size=hash_size).hex
        ref = str(REFERENCE[algo](im, hash_size=hash_size))
        if ours != ref:
            bad.append(f"{name}: ours {ours} imagehash {ref}")
    assert bad == []


@pytest.mark.parametrize("params", [
    {"image_scale": 16}, {"image_scale": 64}, {"image_scale": 512},
    {"remove_max_haar_ll": False}, {"hash_size": 16, "image_scale": 128},
    {"hash_size": 4, "image_scale": 4},
])
def test_whash_parameters(bundled, params):
    assert _mismatches(bundled[:4], "whash", **params) == []
    flat = Image.new("L", (90, 70), 128)
    assert hx.hash_image(flat, "whash", **params).hex == str(imagehash.whash(flat, **params))


@pytest.mark.parametrize("highfreq_factor", [1, 2, 8])
def test_phash_highfreq_factor(bundled, highfreq_factor):
    assert _mismatches(bundled[:4], "phash", highfreq_factor=highfreq_factor) == []


def test_array_input_matches_pil_input(bundled):
    rgb = np.asarray(Image.open(bundled[3]).convert("RGB"))
    for algo in ALGOS:
        assert hx.hash_image(rgb, algo).hex == str(REFERENCE[algo](Image.fromarray(rgb)))


def test_several_algorithms_from_one_decode(bundled):
    for p in bundled[:5]:
        many = hx.hash_image(p, ALGOS)
        assert sorted(many) == ALGOS
        for algo in ALGOS:
            assert many[algo] == hx.hash_image(p, algo)
            assert many[algo].hex == _reference(p, algo)


def test_hashers_share_the_grayscale_decode(bundled):
    pixels = Pixels(hx.load(bundled[0]))
    for algo in ALGOS:
        hash_pixels(pixels, algo)
    cached = pixels._cache
    # one grey source for all four: Pillow's grey image, or the RGB pixels read in place
    assert ("gray" in cached) != (cached.get("rgbx_words") is not None)
    # a second hasher needing the same thumbnail reuses it
    before = len(cached)
    hash_pixels(pixels, "phash")
    assert len(cached) == before


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("bad", [3, 2, 0, -8, 8.0, "8", True])
def test_hash_size_validation(algo, bad):
    with pytest.raises(ValueError, match="hash_size"):
        hx.hash_image(Image.new("L", (40, 40)), algo, hash_size=bad)


def test_whash_validation():
    im = Image.new("L", (40, 40))
    with pytest.raises(ValueError, match="power of 2"):
        hx.hash_image(im, "whash", hash_size=12)
    with pytest.raises(ValueError, match="image_scale"):
        hx.hash_image(im, "whash", image_scale=100)
    with pytest.raises(ValueError, match="smaller than hash_size"):
        hx.hash_image(im, "whash", image_scale=4)
    for mode in ("db4", "nope"):
        with pytest.raises(ValueError, match="only 'haar'"):
            hx.hash_image(im, "whash", mode=mode)
    with pytest.raises(TypeError):
        hx.hash_image(im, "phash", image_scale=64)


def test_bits_and_thresholds():
    for algo in ALGOS:
        assert hx.hash_image(Image.new("L", (9, 9)), algo).bits == 64
        assert 0 < hx.default_threshold(algo) < 64
    assert set(ALGOS) <= set(hx.algorithms())


@pytest.mark.parametrize("seed", range(3))
def test_resize_is_pillows_lanczos(seed):
    """The exact resize behind all four hashers equals Pillow's, including the shapes where
    Pillow runs the vertical pass first, upscaling, and 1-pixel-wide inputs."""
    rng = np.random.default_rng(seed)
    shapes = [(31, 33, 32, 32), (40, 80, 20, 39), (40, 80, 20, 40), (64, 64, 63, 61),
              (64, 64, 63, 62), (7, 3, 32, 32), (1, 1, 9, 8), (200, 1, 8, 8), (1, 300, 32, 32)]
    shapes += [tuple(int(v) for v in rng.integers(1, 150, 4)) for _ in range(60)]
    for w, h, ow, oh in shapes:
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        ref = np.asarray(Image.fromarray(a).resize((ow, oh), Image.Resampling.LANCZOS))
        got = _lanczos.resize_l(a.astype(np.float64), ow, oh)
        assert np.array_equal(got, ref), (w, h, ow, oh)


def test_fast_mode_is_close_and_exact_without_jpeg(bundled, tmp_path):
    """fast=True decodes JPEGs at a reduced scale: close to, not equal to, the exact bits.
    Non-JPEG files have no draft mode, so their fast hashes are the exact ones."""
    png = tmp_path / "a.png"
    Image.open(bundled[0]).save(png)
    for algo in ALGOS:
        assert hx.hash_image(png, algo, fast=True) == hx.hash_image(png, algo)
        d = [hx.hash_image(p, algo, fast=True) - hx.hash_image(p, algo) for p in bundled]
        assert np.mean(d) <= 12, (algo, d)


# -- the shared datasets (skipped when ../shared is absent) ---------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("algo", ALGOS)
def test_coco_sample(coco_sample, algo):
    assert len(coco_sample) >= 200
    assert _mismatches(coco_sample, algo) == []


@pytest.mark.slow
@pytest.mark.parametrize("algo", ALGOS)
def test_pdq_reference_images(pdq_reference, algo):
    paths = sorted(p for p in pdq_reference.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    assert len(paths) >= 30
    assert _mismatches(paths, algo) == []
    # odd PIL modes: also equal to imagehash on what our loader hands the hashers
    for p in paths:
        if "modes" in p.parts:
            assert hx.hash_image(p, algo).hex == str(REFERENCE[algo](hx.load(p))), p


def test_large_images_take_the_pillow_path(bundled, monkeypatch):
    """Images over LARGE_PIXELS are resized by Pillow itself; the bits must not change."""
    expected = {a: [hx.hash_image(p, a).hex for p in bundled[:3]] for a in ALGOS}
    monkeypatch.setattr(_lanczos, "LARGE_PIXELS", 1000)
    for a in ALGOS:
        assert [hx.hash_image(p, a).hex for p in bundled[:3]] == expected[a]
        assert expected[a] == [_reference(p, a) for p in bundled[:3]]


def test_pillow_pass_order_is_recognised(bundled, monkeypatch):
    """The installed Pillow's resize is reproduced by our port (not the Pillow fallback), and
    the fallback, used when a Pillow version resizes differently, gives the same bits."""
    assert _lanczos._pillow_mode() in ("vertical-first", "horizontal")
    expected = {a: hx.hash_image(bundled[1], a).hex for a in ALGOS}
    monkeypatch.setattr(_lanczos, "_pillow_mode", lambda: "pillow")
    assert {a: hx.hash_image(bundled[1], a).hex for a in ALGOS} == expected
    a = np.random.default_rng(3).integers(0, 256, (50, 70), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(a).resize((9, 8), Image.Resampling.LANCZOS))
    assert np.array_equal(_lanczos.resize_l(a.astype(np.float64), 9, 8), ref)


@pytest.mark.parametrize("path", ["fused", "grey image", "float64 products"])
def test_every_resize_path_matches_imagehash(bundled, monkeypatch, path):
    """The compiled resize straight from RGB (grey conversion fused into the x pass), from the
    ``convert("L")`` image, and the float64 products used without numba give the same bits."""
    if path != "fused":
        monkeypatch.setattr(_lanczos, "_rgbx_words", lambda image: None)
    if path == "float64 products":
        monkeypatch.setattr(_lanczos, "USE_KERNEL", False)
    for p in bundled[:8]:
        for algo in ALGOS:
            pixels = Pixels(hx.load(p))
            assert hash_pixels(pixels, algo).hex == _reference(p, algo), (p.name, algo, path)
            fused = pixels._cache.get("rgbx_words") is not None
            assert fused == (path == "fused")


def test_fused_grey_conversion_is_pillows():
    """The grey conversion inside the compiled x pass equals ``convert("L")`` on random
    colours and on the extremes of each channel."""
    from hashlib_ext.hashers import _lanczos_kernel

    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (512, 1024, 3), dtype=np.uint8)
    rgb[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                  [255, 255, 0], [0, 255, 255], [255, 0, 255]]
    im = Image.fromarray(rgb)
    rgbx = np.concatenate([rgb, np.full((512, 1024, 1), 255, np.uint8)], axis=2)
    words = rgbx.reshape(512, 4096).view("<u4")
    grey = np.asarray(im.convert("L"))
    assert np.array_equal(_lanczos_kernel.grey(words), grey)
    assert np.array_equal(_lanczos_kernel.columns(words, 0, 512, True).T, grey)
    one = (np.arange(1024), np.ones(1024, dtype=np.int64), np.full((1024, 1), 1 << 22, np.int32))
    assert np.array_equal(_lanczos_kernel.horizontal_rgbx(words, 0, 512, *one), grey)


def test_vectorised_taps_equal_the_scalar_port():
    """The numpy-vectorised coefficients equal the operation-by-operation port of Pillow's
    (C library sin, sequential sums) on many size pairs, down- and upscaling."""
    rng = np.random.default_rng(11)
    pairs = [(640, 32), (480, 9), (20000, 32), (1, 32), (7, 256), (427, 256)]
    pairs += [tuple(int(v) for v in rng.integers(1, 2500, 2)) for _ in range(60)]
    for in_size, out_size in pairs:
        xmin, taps = _lanczos._coeffs(in_size, out_size)
        for xx in range(out_size):
            first, row = _lanczos._coeffs_row(in_size, out_size, xx)
            assert first == xmin[xx], (in_size, out_size, xx)
            assert np.array_equal(taps[xx, :row.size], row), (in_size, out_size, xx)
            assert not taps[xx, row.size:].any()
