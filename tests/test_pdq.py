"""PDQ: conformance with the pdqhash package (live), dihedral hashes, fast mode, edge sizes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import hashlib_ext as hx
from hashlib_ext.hashers import pdq
from hashlib_ext.imageio import load
from hashlib_ext.pixels import Pixels

pdqhash = pytest.importorskip("pdqhash")

TOL_BITS = 2  # float rounding may flip a bit pair; never more
TOL_QUALITY = 1
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def ref_hash(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """pdqhash's bits, packed first bit most significant (python-threatexchange's hex)."""
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb, dtype=np.uint8))
    return np.packbits(np.asarray(bits, dtype=np.uint8)), int(quality)


def dist(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())


def pil_rgb(path: Path) -> np.ndarray:
    """Pixels decoded by PIL alone (EXIF-oriented), independent of our loader."""
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def assert_conforms(results: Iterable[tuple[str, int, int]], min_identical: float = 0.9) -> None:
    """Every (name, bit distance, quality difference) within tolerance; most identical."""
    results = list(results)
    assert results
    bad = [r for r in results if r[1] > TOL_BITS or abs(r[2]) > TOL_QUALITY]
    assert not bad, f"beyond tolerance (name, bits, quality diff): {bad}"
    identical = sum(r[1] == 0 for r in results) / len(results)
    assert identical >= min_identical, f"only {identical:.0%} identical: {results}"


def conformance(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        h = hx.hash_image(p, "pdq")
        code, quality = ref_hash(pil_rgb(p))
        out.append((p.name, dist(h.code, code), h.quality - quality))
    return out


# -- API ------------------------------------------------------------------------------------


def test_registered_with_contract_values():
    assert "pdq" in hx.algorithms()
    assert hx.default_threshold("pdq") == 31
    spec = pdq.SPEC
    assert spec.bits() == 256
    assert spec.dihedral is not None and spec.draft_size is not None


def test_hash_shape_hex_and_round_trip(bundled):
    h = hx.hash_image(bundled[0], "pdq")
    assert h.algorithm == "pdq" and h.bits == 256 and len(h.hex) == 64
    assert isinstance(h.quality, int) and 0 <= h.quality <= 100
    assert hx.Hash.from_hex(h.hex, "pdq") == h
    assert h - hx.Hash.from_hex(h.hex, "pdq") == 0


def test_hex_order_is_threatexchange(bundled):
    """hex = the 256 bits in pdqhash's order, first bit most significant."""
    for p in bundled[:4]:
        bits, _ = pdqhash.compute(pil_rgb(p))
        expected = format(int("".join(str(int(b)) for b in bits), 2), "064x")
        assert hx.hash_image(p, "pdq").hex == expected


# -- conformance ----------------------------------------------------------------------------


def test_bundled_match_pdqhash(bundled):
    assert_conforms(conformance(bundled))


def test_coco_sample_head_match_pdqhash(coco_sample):
    assert_conforms(conformance(coco_sample[:48]))


@pytest.mark.slow
def test_coco_sample_match_pdqhash(coco_sample):
    assert_conforms(conformance(coco_sample))


def reference_images(root: Path, large: bool) -> list[Path]:
    """PDQ test images under ``root``, split at 2 megapixels to keep the default suite fast."""
    paths = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in IMAGE_EXT:
            with Image.open(p) as im:
                if (im.size[0] * im.size[1] > 2_000_000) == large:
                    paths.append(p)
    return paths


@pytest.mark.parametrize(
    "large", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["small", "large"]
)
def test_pdq_reference_images_match_pdqhash(pdq_reference, large):
    """Every PDQ test image, the odd PIL modes included, through our loader."""
    paths = reference_images(pdq_reference, large)
    assert len(paths) >= (4 if large else 30)
    results, refused = [], []
    for p in paths:
        try:
            im = load(p)
        except hx.HashlibExtError as exc:  # the loader's documented policy, not PDQ's
            refused.append((p.name, type(exc).__name__))
            continue
        h = hx.hash_image(p, "pdq")
        code, quality = ref_hash(np.asarray(im.convert("RGB")))
        results.append((str(p.relative_to(pdq_reference)), dist(h.code, code), h.quality - quality))
    assert len(refused) <= 2, refused
    assert_conforms(results)


SIZES = [(1, 1), (4, 4), (4, 300), (300, 4), (5, 5), (6, 9), (63, 64), (64, 64), (65, 64),
         (127, 129), (128, 128), (256, 384), (1000, 7), (7, 1000), (333, 517)]


@pytest.mark.parametrize("h,w", SIZES)
def test_edge_sizes_match_pdqhash(h, w):
    """Tiny (all-zero, quality 0 below 5 px), thin, exactly 64x64 and multiple-of-128 sizes."""
    rng = np.random.default_rng(h * 10007 + w)
    smooth = np.asarray(
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
            (w, h), Image.BILINEAR
        )
    )
    noisy = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    h_ours = hx.hash_image(noisy, "pdq")
    code, quality = ref_hash(noisy)
    assert dist(h_ours.code, code) <= TOL_BITS
    assert abs(h_ours.quality - quality) <= TOL_QUALITY
    if min(h, w) < pdq.MIN_DIM:
        assert not h_ours.code.any() and h_ours.quality == 0


def test_random_images_match_pdqhash():
    rng = np.random.default_rng(2)
    results = []
    for i in range(24):
        h, w = rng.integers(5, 700, size=2)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if i % 2:  # smooth content, the usual case for photos
            img = np.asarray(Image.fromarray(img[:6, :6]).resize((w, h), Image.BICUBIC))
        ours = hx.hash_image(img, "pdq")
        code, quality = ref_hash(img)
        results.append((f"{h}x{w}", dist(ours.code, code), ours.quality - quality))
    assert_conforms(results)


def test_grayscale_array_equals_replicated_rgb(bundled):
    gray = np.asarray(Image.open(bundled[1]).convert("L"))
    ours = hx.hash_image(gray, "pdq")
    code, quality = ref_hash(np.repeat(gray[:, :, None], 3, axis=2))
    assert dist(ours.code, code) <= TOL_BITS and abs(ours.quality - quality) <= TOL_QUALITY


# -- the filter weights against a literal running-sum box filter ---------------------------


def reference_box(x: np.ndarray, window: int) -> np.ndarray:
    """The 1-D box filter along axis 0 as the PDQ reference describes it: a running sum
    over four phases (fill, grow, slide, shrink), dividing by the current window count."""
    n = x.shape[0]
    half = (window + 2) // 2
    out = np.zeros_like(x)
    total = np.zeros_like(x[0])
    count, li, ri, oi = 0, 0, 0, 0
    for _ in range(half - 1):
        total, count, ri = total + x[ri], count + 1, ri + 1
    for _ in range(window - half + 1):
        total, count = total + x[ri], count + 1
        out[oi] = total / count
        ri, oi = ri + 1, oi + 1
    for _ in range(n - window):
        total = total + x[ri] - x[li]
        out[oi] = total / count
        li, ri, oi = li + 1, ri + 1, oi + 1
    for _ in range(half - 1):
        total, count = total - x[li], count - 1
        out[oi] = total / count
        li, oi = li + 1, oi + 1
    return out


@pytest.mark.parametrize("dim", [5, 6, 64, 100, 128, 129, 255, 256, 257, 480, 640, 1004, 1601])
def test_axis_weights_equal_twice_box_filtered_rows(dim):
    w = pdq.window_size(dim)
    assert w == -(-dim // 128)
    twice = reference_box(reference_box(np.eye(dim), w), w)  # column c: response to pixel c
    expected = twice[pdq.sample_positions(dim)]  # (64, dim)
    index, weight = pdq.axis_weights(dim)
    dense = np.zeros((64, dim))
    np.add.at(dense, (np.arange(64)[:, None].repeat(index.shape[1], 1), index), weight)
    np.testing.assert_allclose(dense, expected, atol=1e-12)
    np.testing.assert_allclose(dense.sum(axis=1), 1.0)


def test_float_view_is_zero_copy_and_falls_back():
    """The luma is read in place where Pillow allows, and copied where it does not."""
    small = Image.fromarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    view = pdq._float_array(small)
    np.testing.assert_array_equal(view, np.asarray(small))
    assert not view.flags.writeable and not view.flags.owndata
    big = Image.new("F", (4500, 4500), 7.0)  # several Pillow blocks: no single buffer
    copied = pdq._float_array(big)
    assert copied.shape == (4500, 4500) and float(copied[-1, -1]) == 7.0


def test_sample_positions_are_pixel_centres():
    assert list(pdq.sample_positions(640)[:3]) == [5, 15, 25]
    assert list(pdq.sample_positions(64)) == list(range(64))


# -- dihedral -------------------------------------------------------------------------------


def test_dihedral_transform_ops():
    a = np.arange(6).reshape(2, 3)
    ops = [a, np.rot90(a), np.rot90(a, 2), np.rot90(a, 3), np.flipud(a), np.fliplr(a), a.T,
           np.rot90(a, 2).T]
    for k, op in enumerate(ops):
        np.testing.assert_array_equal(pdq.dihedral_transform(a, k), op)
    assert len(pdq.DIHEDRAL_NAMES) == 8
    with pytest.raises(ValueError):
        pdq.dihedral_transform(a, 8)


def dihedral_results(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        rgb = pil_rgb(p)
        arr = hx.hash_image(p, "pdq", dihedral=True)
        assert isinstance(arr, hx.HashArray) and len(arr) == 8 and arr.algorithm == "pdq"
        for k in range(8):
            code, quality = ref_hash(pdq.dihedral_transform(rgb, k))
            out.append((f"{p.name}/{pdq.DIHEDRAL_NAMES[k]}", dist(arr.codes[k], code),
                        int(arr.qualities[k]) - quality))
    return out


def test_dihedral_equals_pdqhash_of_transformed_pixels(bundled):
    assert_conforms(dihedral_results(bundled[:12]))


@pytest.mark.slow
def test_dihedral_coco_sample(coco_sample):
    assert_conforms(dihedral_results(coco_sample))


def test_dihedral_row0_is_the_plain_hash(bundled):
    for p in bundled[:4]:
        assert hx.hash_image(p, "pdq", dihedral=True)[0] == hx.hash_image(p, "pdq")


def test_dihedral_reference_equals_pdqhash_compute_dihedral(bundled):
    """The DCT-sign-only variant reproduces pdqhash.compute_dihedral, in the same order."""
    results = []
    for p in bundled:
        rgb = pil_rgb(p)
        codes, quals = pdq.dihedral_reference(Pixels(Image.fromarray(rgb)))
        vecs, quality = pdqhash.compute_dihedral(rgb)
        for k in range(8):
            ref = np.packbits(np.asarray(vecs[k], dtype=np.uint8))
            results.append((f"{p.name}/{k}", dist(codes[k], ref), int(quals[k]) - quality))
    assert_conforms(results)


def test_dih_folder_matches_dihedral_set_of_original(pdq_reference):
    """The reference's 8 rotated/flipped JPEGs each match their row of the original's set."""
    files = sorted((pdq_reference / "reg-test-input" / "dih").glob("bridge-*.jpg"))
    assert len(files) == 8
    dihedral = hx.hash_image(files[0], "pdq", dihedral=True)
    for k, f in enumerate(files):
        d = dihedral.distances(hx.hash_image(f, "pdq"))
        assert int(np.argmin(d)) == k, (f.name, d)
        assert d[k] <= 8 and np.delete(d, k).min() > 64, (f.name, d)


def test_dihedral_tiny_image_is_all_zero():
    arr = hx.hash_image(np.zeros((3, 40, 3), np.uint8), "pdq", dihedral=True)
    assert len(arr) == 8 and not arr.codes.any() and not arr.qualities.any()


# -- fast mode ------------------------------------------------------------------------------


def test_fast_mode_decodes_smaller_and_stays_close(bundled):
    """JPEG draft decoding at the documented size: not bit-exact, close (docs/pdq.md)."""
    draft = pdq.SPEC.draft_size()
    ds, reduced = [], 0
    for p in bundled:
        small, full = load(p, draft=draft), load(p)
        reduced += small.size[0] < full.size[0]
        assert min(small.size) >= min(draft)
        ds.append(hx.hash_image(p, "pdq", fast=True) - hx.hash_image(p, "pdq"))
    assert reduced >= len(bundled) // 2
    assert np.mean(ds) <= 8 and np.percentile(ds, 90) <= 16, ds


def test_fast_mode_uses_full_size_filter_geometry(bundled):
    """A draft-decoded JPEG is filtered as its full-size original would be: much closer to
    the exact hash than plain PDQ of the small pixels."""
    p = bundled[0]
    small = load(p, draft=pdq.SPEC.draft_size())
    assert pdq.draft_scale(small) == 2 and pdq.draft_scale(load(p)) == 1
    ds_geometry, ds_plain = [], []
    for q in bundled:
        small = load(q, draft=pdq.SPEC.draft_size())
        exact = hx.hash_image(q, "pdq")
        ds_geometry.append(hx.hash_image(q, "pdq", fast=True) - exact)
        # a converted copy carries no draft information: plain PDQ of the small pixels
        plain = hx.Hash(pdq.compute(Pixels(small.convert("RGB")))[0], "pdq")
        ds_plain.append(plain - exact)
    assert np.mean(ds_geometry) < 0.6 * np.mean(ds_plain), (ds_geometry, ds_plain)


def test_fast_dihedral_row0_is_the_fast_hash(bundled):
    for p in bundled[:4]:
        fast = hx.hash_image(p, "pdq", fast=True, dihedral=True)
        assert fast[0] == hx.hash_image(p, "pdq", fast=True)
        assert fast.distances(hx.hash_image(p, "pdq")).min() <= 31


# -- the pure-Python reference tool ---------------------------------------------------------


def test_python_reference_vectors_differ_by_its_thumbnailing(pdq_reference):
    """Meta's pure-Python tool thumbnails first; we follow pdqhash, a few bits away."""
    lines = (pdq_reference / "python-reference-vectors.txt").read_text().split("\n")
    ds = []
    for line in filter(str.strip, lines):
        text, rel = line.split(maxsplit=1)
        path = pdq_reference / ("bridge-mods/aaa-orig.jpg" if rel == "misc-images/b.jpg" else rel)
        ours = hx.hash_image(path, "pdq")
        code, _ = ref_hash(np.asarray(load(path).convert("RGB")))
        assert dist(ours.code, code) <= TOL_BITS
        ds.append(ours - hx.Hash.from_hex(text, "pdq"))
    assert len(ds) >= 15 and max(ds) <= 16 and sum(d == 0 for d in ds) >= 5, ds
