"""The transform catalogue: shapes, pixel effects, determinism, spec parsing and validation."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from hashlib_ext.errors import HashlibExtError, TransformSpecError
from hashlib_ext.evaluate import transforms as T


@pytest.fixture(scope="module")
def image(bundled) -> Image.Image:
    with Image.open(bundled[0]) as im:
        return im.convert("RGB")


def r(x: float) -> int:
    return int(round(x))


# spec -> expected output size from the input size (w, h); one row at least per built-in
SIZES = {
    "jpeg:q=30": lambda w, h: (w, h),
    "jpeg:q=90": lambda w, h: (w, h),
    "webp:q=50": lambda w, h: (w, h),
    "resize:scale=0.25": lambda w, h: (r(w / 4), r(h / 4)),
    "resize:scale=2,resample=lanczos": lambda w, h: (2 * w, 2 * h),
    "aspect:x=1.3": lambda w, h: (r(1.3 * w), h),
    "aspect:x=0.5": lambda w, h: (r(0.5 * w), h),
    "crop:center=0.9": lambda w, h: (r(0.9 * w), r(0.9 * h)),
    "crop:side=0.2": lambda w, h: (w - r(0.2 * w), h),
    "crop:side=0.2,edge=bottom": lambda w, h: (w, h - r(0.2 * h)),
    "rotate:deg=5": lambda w, h: (w, h),
    "rotate90:k=1": lambda w, h: (h, w),
    "rotate90:k=2": lambda w, h: (w, h),
    "rotate90:k=3": lambda w, h: (h, w),
    "hflip": lambda w, h: (w, h),
    "vflip": lambda w, h: (w, h),
    "brightness:f=1.3": lambda w, h: (w, h),
    "contrast:f=0.7": lambda w, h: (w, h),
    "gamma:g=1.5": lambda w, h: (w, h),
    "saturation:f=0.5": lambda w, h: (w, h),
    "grayscale": lambda w, h: (w, h),
    "blur:radius=2": lambda w, h: (w, h),
    "sharpen": lambda w, h: (w, h),
    "noise:sigma=10": lambda w, h: (w, h),
    "banner:height=0.2": lambda w, h: (w, h),
    "banner:height=0.2,pos=top,bg=white,extend=true": lambda w, h: (w, h + r(0.2 * h)),
    "logo:size=0.15": lambda w, h: (w, h),
    "border:width=0.05": lambda w, h: (w + 2 * r(0.05 * w), h + 2 * r(0.05 * h)),
    "letterbox": lambda w, h: (max(w, r(h * 1.7778)), h),
    "screenshot:scale=0.8": lambda w, h: (r(1.25 * w), r(1.25 * h)),
    "jpeg:q=50+crop:center=0.9": lambda w, h: (r(0.9 * w), r(0.9 * h)),
}

SPECS = list(SIZES)
RANDOM_SPECS = ["noise:sigma=10", "logo:size=0.15,pos=random", "crop:side=0.2,edge=random"]


def test_every_builtin_is_tested():
    tested = {step.defn.name for s in SPECS for step in T.parse(s).steps}
    assert tested == set(T.catalogue())


@pytest.mark.parametrize("spec", SPECS)
def test_size_mode_and_visible_effect(image, spec):
    out = T.parse(spec)(image, np.random.default_rng(0))
    assert out.mode == "RGB"
    assert out.size == SIZES[spec](*image.size)
    if out.size == image.size:  # same geometry: the pixels must have changed
        diff = np.abs(np.asarray(out, np.int16) - np.asarray(image, np.int16))
        assert diff.mean() > 0.5, f"{spec} left the image (almost) unchanged"


@pytest.mark.parametrize("spec", SPECS + RANDOM_SPECS)
def test_deterministic_for_a_seed(image, spec):
    t = T.parse(spec)
    a = t(image, np.random.default_rng(7)).tobytes()
    b = t(image, np.random.default_rng(7)).tobytes()
    assert a == b
    assert T.apply(spec, image, seed=7).tobytes() == a


@pytest.mark.parametrize("spec", RANDOM_SPECS)
def test_randomness_comes_from_the_seed(image, spec):
    outs = {T.apply(spec, image, seed=s).tobytes() for s in range(8)}
    assert len(outs) > 1


@pytest.mark.parametrize("spec", SPECS + RANDOM_SPECS + T.DEFAULT_SUITE)
def test_spec_round_trip(spec):
    t = T.parse(spec)
    assert T.parse(t.spec).spec == t.spec
    assert T.parse(t.spec) == t
    assert pickle.loads(pickle.dumps(t)).spec == t.spec


def test_canonical_forms():
    assert T.parse(" jpeg : q = 30 ").spec == "jpeg:q=30"
    assert T.parse("jpeg").spec == "jpeg:q=75"  # the primary parameter is always written
    assert T.parse("crop:side=0.2,edge=left").spec == "crop:side=0.2"  # default dropped
    assert T.parse("crop:edge=top,side=0.20").spec == "crop:side=0.2,edge=top"
    assert T.parse("sharpen").spec == "sharpen"
    assert T.parse("sharpen:percent=150").spec == "sharpen"
    assert T.parse("rotate:deg=5.0").spec == "rotate:deg=5"
    assert T.parse("banner:extend=yes").spec == "banner:height=0.2,extend=true"
    assert (T.parse("jpeg:q=30") + "hflip").spec == "jpeg:q=30+hflip"


def test_default_suite_holds_the_reference_set():
    ref = ["jpeg:q=30", "resize:scale=0.25", "crop:center=0.9", "crop:side=0.2",
           "rotate:deg=5", "rotate90:k=1", "hflip", "banner:height=0.2", "border:width=0.05"]
    assert T.REFERENCE_SUITE == ref
    assert T.DEFAULT_SUITE[: len(ref)] == ref
    assert len(set(T.DEFAULT_SUITE)) == len(T.DEFAULT_SUITE)
    assert all(T.parse(s).spec == s for s in T.DEFAULT_SUITE)
    assert any("+" in s for s in T.DEFAULT_SUITE)


# -- exact pixel effects ---------------------------------------------------------------------

def _a(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


def test_geometry_is_pixel_exact(image):
    x = _a(image)
    assert np.array_equal(_a(T.apply("hflip", image)), x[:, ::-1])
    assert np.array_equal(_a(T.apply("vflip", image)), x[::-1])
    for k in (1, 2, 3):  # counter-clockwise quarter turns
        assert np.array_equal(_a(T.apply(f"rotate90:k={k}", image)), np.rot90(x, k))
    w, h = image.size
    cw, ch = r(0.9 * w), r(0.9 * h)
    left, top = (w - cw) // 2, (h - ch) // 2
    assert np.array_equal(_a(T.apply("crop:center=0.9", image)),
                          x[top:top + ch, left:left + cw])
    assert np.array_equal(_a(T.apply("crop:side=0.2", image)), x[:, r(0.2 * w):])
    assert np.array_equal(_a(T.apply("crop:side=0.2,edge=right", image)), x[:, : w - r(0.2 * w)])
    assert np.array_equal(_a(T.apply("crop:side=0.2,edge=top", image)), x[r(0.2 * h):])


def test_border_letterbox_and_banner_keep_the_picture(image):
    x = _a(image)
    w, h = image.size
    px, py = r(0.05 * w), r(0.05 * h)
    b = _a(T.apply("border:width=0.05,color=white", image))
    assert np.array_equal(b[py:py + h, px:px + w], x)
    frame = np.ones(b.shape[:2], bool)
    frame[py:py + h, px:px + w] = False
    assert (b[frame] == 255).all()
    lb = _a(T.apply("letterbox:ratio=2", image))
    assert lb.shape[1] / lb.shape[0] == pytest.approx(2, abs=0.01)
    off = (lb.shape[1] - w) // 2
    assert np.array_equal(lb[:, off:off + w], x) and (lb[:, :off] == 0).all()
    bh = r(0.2 * h)
    for bg, ink in (("black", 255), ("white", 0)):
        banner = _a(T.apply(f"banner:height=0.2,bg={bg}", image))
        assert np.array_equal(banner[: h - bh], x[: h - bh])  # above the bar: untouched
        bar = banner[h - bh:]
        assert (bar == 255 - ink).all(axis=2).mean() > 0.6  # mostly the bar colour ...
        assert (np.abs(bar - ink) < 50).all(axis=2).sum() > 50  # ... with text on it
    ext = _a(T.apply("banner:height=0.2,pos=top,extend=true", image))
    assert np.array_equal(ext[bh:], x)


def test_logo_only_touches_its_corner(image):
    x = _a(image)
    w, h = image.size
    out = _a(T.apply("logo:size=0.15,pos=br,opacity=1", image))
    changed = np.argwhere((out != x).any(axis=2))
    side = r(0.15 * min(w, h))
    assert changed[:, 0].min() >= h - side - r(0.03 * min(w, h)) - 1
    assert changed[:, 1].min() >= w - side - r(0.03 * min(w, h)) - 1
    assert len(changed) > side * side * 0.5
    faint = _a(T.apply("logo:size=0.15,pos=br,opacity=0.2", image))
    assert np.abs(faint - x).sum() < np.abs(out - x).sum()


def test_photometric_effects_go_the_right_way(image):
    x = _a(image).astype(float)
    assert _a(T.apply("brightness:f=1.3", image)).mean() > x.mean() + 5
    assert _a(T.apply("brightness:f=0.7", image)).mean() < x.mean() - 5
    assert _a(T.apply("contrast:f=0.7", image)).std() < 0.8 * x.std()
    assert _a(T.apply("gamma:g=1.5", image)).mean() > x.mean() + 5
    assert _a(T.apply("gamma:g=0.5", image)).mean() < x.mean() - 5

    def spread(a):  # per-pixel colourfulness
        return (a.max(axis=2) - a.min(axis=2)).mean()

    assert spread(_a(T.apply("saturation:f=0.5", image))) < 0.7 * spread(x)
    g = _a(T.apply("grayscale", image))
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()

    def detail(a):  # mean absolute horizontal gradient
        return np.abs(np.diff(a.astype(float), axis=1)).mean()

    assert detail(_a(T.apply("blur:radius=2", image))) < 0.6 * detail(x)
    assert detail(_a(T.apply("sharpen", image))) > 1.1 * detail(x)
    noise = _a(T.apply("noise:sigma=10", image)) - x
    assert abs(noise.mean()) < 0.5 and 8 < noise.std() < 10.5  # clipping trims a little


def test_jpeg_quality_orders_the_error(image):
    x = _a(image)
    err = {q: np.abs(_a(T.apply(f"jpeg:q={q}", image)) - x).mean() for q in (10, 50, 90)}
    assert err[10] > err[50] > err[90] > 0


def test_composition_applies_left_to_right(image):
    both = T.apply("jpeg:q=50+crop:center=0.9", image)
    step = T.apply("crop:center=0.9", T.apply("jpeg:q=50", image))
    assert both.tobytes() == step.tobytes()


def test_screenshot_contains_the_rescaled_image(image):
    shot = T.apply("screenshot:scale=0.5", image)
    assert shot.size == (r(1.25 * image.width), r(1.25 * image.height))
    small = np.asarray(image.resize((r(0.5 * image.width), r(0.5 * image.height)),
                                    Image.Resampling.BICUBIC))
    a = np.asarray(shot)
    # find the pasted image: its top-left pixel row appears exactly somewhere in the pane
    sh, sw = small.shape[:2]
    candidates = np.argwhere((a[: a.shape[0] - sh + 1, : a.shape[1] - sw + 1]
                              == small[0, 0]).all(axis=2))
    hits = [(y, x) for y, x in candidates if np.array_equal(a[y, x:x + sw], small[0])]
    assert len(hits) == 1
    y, x = hits[0]
    assert np.array_equal(a[y:y + sh, x:x + sw], small)
    assert x > 0.1 * shot.width and y > 0.05 * shot.height  # beside the sidebar, under the bar


# -- inputs ----------------------------------------------------------------------------------

def test_accepts_arrays_modes_paths_and_bytes(image, bundled):
    arr = np.asarray(image)
    ref = T.apply("hflip", image).tobytes()
    assert T.apply("hflip", arr).tobytes() == ref
    assert T.apply("hflip", bundled[0]).tobytes() == ref
    assert T.apply("hflip", bundled[0].read_bytes()).tobytes() == ref
    gray = T.apply("hflip", image.convert("L"))
    assert gray.mode == "RGB" and gray.size == image.size
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert T.apply("vflip", rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    with pytest.raises(TypeError):
        T.apply("hflip", np.zeros((4, 4), np.float32))


def test_tiny_images_survive():
    tiny = Image.new("RGB", (1, 1), (10, 20, 30))
    for spec in SPECS:
        out = T.apply(spec, tiny)
        assert out.mode == "RGB" and min(out.size) >= 1


# -- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, fragment", [
    ("", "empty"),
    ("jpeg+", "empty step"),
    ("jpg:q=30", "known: aspect"),
    ("jpeg:z=1", "no parameter 'z'"),
    ("jpeg:q", "expected key=value"),
    ("jpeg:", "nothing after"),
    ("jpeg:q=abc", "expected int in [1, 100]"),
    ("jpeg:q=30.5", "expected int"),
    ("jpeg:q=0", "[1, 100]"),
    ("jpeg:q=101", "[1, 100]"),
    ("jpeg:q=30,q=40", "given twice"),
    ("resize:scale=0", "[0.01, 8]"),
    ("resize:scale=nan", "expected float"),
    ("resize:scale=0.5,resample=cubic", "nearest|bilinear|bicubic"),
    ("crop", "exactly one of center"),
    ("crop:center=0.9,side=0.1", "exactly one of center"),
    ("crop:side=0.2,edge=middle", "left|right|top|bottom|random"),
    ("rotate90:k=4", "[1, 3]"),
    ("blur:radius=0", "(0, 100]"),
    ("hflip:x=1", "takes no parameters"),
    ("banner:text=a,b", "expected key=value"),
    ("banner:extend=maybe", "true|false"),
    ("logo:pos=middle", "br|bl|tr|tl|center|random"),
])
def test_bad_specs_are_clear_errors(spec, fragment):
    with pytest.raises(TransformSpecError) as err:
        T.parse(spec)
    assert isinstance(err.value, ValueError) and isinstance(err.value, HashlibExtError)
    assert fragment in str(err.value)
    if spec:
        assert repr(spec) in str(err.value) or spec.split(":")[0] in str(err.value)


def test_not_a_string():
    with pytest.raises(TransformSpecError):
        T.parse(30)  # type: ignore[arg-type]


# -- user transforms -------------------------------------------------------------------------

@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(T, "_REGISTRY", dict(T._REGISTRY))


def test_register_user_transform(registry, image):
    def invert(img, rng, amount):
        a = np.asarray(img, np.float32)
        return Image.fromarray(np.rint(a + amount * (255 - 2 * a)).astype(np.uint8))

    T.register("invert", invert, {"amount": T.Param(float, 1.0, 0.0, 1.0)}, "negative")
    assert T.catalogue()["invert"]["params"]["amount"]["default"] == 1.0
    out = T.apply("invert+hflip", image)
    assert np.array_equal(np.asarray(out), 255 - np.asarray(image)[:, ::-1])
    assert T.parse("invert:amount=0.5").spec == "invert:amount=0.5"
    with pytest.raises(TransformSpecError, match=r"\[0, 1\]"):
        T.parse("invert:amount=2")
    with pytest.raises(TransformSpecError, match="already registered"):
        T.register("invert", invert)
    T.register("invert", invert, {"amount": 0.5}, replace=True)  # plain default -> float param
    assert T.parse("invert").spec == "invert:amount=0.5"
    with pytest.raises(TransformSpecError, match="must match"):
        T.register("Bad Name", invert)


def test_catalogue_describes_every_parameter():
    cat = T.catalogue()
    assert {"jpeg", "webp", "resize", "crop", "rotate", "banner", "logo", "screenshot"} <= set(cat)
    for name, entry in cat.items():
        assert entry["description"], name
        for key, p in entry["params"].items():
            assert p["type"] in ("int", "float", "str", "bool") and p["allowed"], (name, key)


def test_jpeg_output_is_a_real_reencode(image):
    out = T.apply("jpeg:q=30", image)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=30)
    assert out.tobytes() == Image.open(io.BytesIO(buf.getvalue())).convert("RGB").tobytes()


def test_contact_sheet_grid(image):
    sheet = T.contact_sheet(image, ["hflip", "jpeg:q=30", "rotate90:k=1"], cell=100, columns=2)
    assert sheet.size == (200, 2 * (100 + 14))
    assert np.asarray(sheet)[:100, :100].std() > 10  # the original's thumbnail is drawn
