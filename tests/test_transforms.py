"""The transform catalogue: shapes, pixel effects, determinism, spec parsing and validation."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image, ImageDraw

from hashlib_ext.errors import HashlibExtError, TransformSpecError
from hashlib_ext.evaluate import transforms as T


@pytest.fixture(scope="module")
def image(bundled) -> Image.Image:
    with Image.open(bundled[0]) as im:
        return im.convert("RGB")


def r(x: float) -> int:
    return int(round(x))


def padded(w: int, h: int, ratio: float) -> tuple[int, int]:
    return (max(w, r(h * ratio)), h) if w / h < ratio else (w, max(h, r(w / ratio)))


def framed(w: int, h: int, width: float) -> tuple[int, int]:
    b = max(1, r(min(w, h) * width))
    return w + 2 * b, h + 2 * b


def phoned(w: int, h: int, scale: float = 1.0, ratio: float = 0.4615) -> tuple[int, int]:
    cw = max(48, r(w * scale))
    return cw, max(cw, r(cw / ratio))


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
    "crop:square=true": lambda w, h: (min(w, h), min(w, h)),
    "pad:ratio=0.5625": lambda w, h: padded(w, h, 0.5625),
    "pad:ratio=0.5625,fill=black": lambda w, h: padded(w, h, 0.5625),
    "pad:ratio=1.7778,fill=white,radius=0.1": lambda w, h: padded(w, h, 1.7778),
    "frame:width=0.06": lambda w, h: framed(w, h, 0.06),
    "frame:width=0.05,color=gold,style=double": lambda w, h: framed(w, h, 0.05),
    "frame:width=0.1,color=walnut,style=mat": lambda w, h: framed(w, h, 0.1),
    "meme:top=0.18": lambda w, h: (w, h + r(0.18 * h)),
    "meme:top=0,bottom=0.2,bg=black": lambda w, h: (w, h + r(0.2 * h)),
    "meme:top=0.15,bottom=0.15": lambda w, h: (w, h + 2 * r(0.15 * h)),
    "meme:top=0.2,extend=false,bg=black": lambda w, h: (w, h),
    "meme:top=0.1,bottom=0.1,extend=false": lambda w, h: (w, h),
    "rotzoom:deg=4": lambda w, h: (w, h),
    "rotzoom:deg=-30": lambda w, h: (w, h),
    "phone:theme=light": lambda w, h: phoned(w, h),
    "phone:theme=dark,scale=0.5,ratio=0.5": lambda w, h: phoned(w, h, 0.5, 0.5),
    "sticker:size=0.25": lambda w, h: (w, h),
    "sticker:size=0.4,pos=center,design=3": lambda w, h: (w, h),
}

SPECS = list(SIZES)
RANDOM_SPECS = ["noise:sigma=10", "logo:size=0.15,pos=random", "crop:side=0.2,edge=random",
                "sticker:size=0.2,pos=random"]
SUITE_SPECS = sorted({s for suite in (T.ROBUST_SUITE, T.ROBUST_UNSEEN_SUITE)
                      for specs in suite.values() for s in specs} | set(T.EASY_SUITE))


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


@pytest.mark.parametrize("spec", SPECS + RANDOM_SPECS + T.DEFAULT_SUITE + SUITE_SPECS)
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
    assert T.parse("crop:square=yes").spec == "crop:square=true"
    assert T.parse("pad").spec == "pad:ratio=0.5625"
    assert T.parse("pad:fill=blur,ratio=0.5625").spec == "pad:ratio=0.5625"
    assert T.parse("frame:style=solid,color=black").spec == "frame:width=0.06"
    assert T.parse("meme:bottom=0.2,top=0").spec == "meme:top=0,bottom=0.2"
    assert T.parse("meme:extend=true,bg=white").spec == "meme:top=0.18"
    assert T.parse("rotzoom:deg=-4.0").spec == "rotzoom:deg=-4"
    assert T.parse("phone").spec == "phone:theme=light"
    assert T.parse("sticker:pos=br,design=0").spec == "sticker:size=0.25"


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


# -- re-share edits ---------------------------------------------------------------------------

def _photo(bundled, i: int) -> Image.Image:
    with Image.open(bundled[i]) as im:
        return im.convert("RGB")


def test_square_crop_is_the_centre(image, bundled):
    x = _a(image)
    w, h = image.size
    s = min(w, h)
    assert np.array_equal(_a(T.apply("crop:square=true", image)),
                          x[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s])
    tall = next(p for p in map(lambda i: _photo(bundled, i), range(len(bundled)))
                if p.height > p.width)
    out = T.apply("crop:square=true", tall)
    assert out.size == (tall.width, tall.width)


@pytest.mark.parametrize("spec", ["rotzoom:deg=4", "rotzoom:deg=-3", "rotzoom:deg=17",
                                  "rotzoom:deg=-45", "rotzoom:deg=45", "rotzoom:deg=0.5"])
@pytest.mark.parametrize("size", [(160, 90), (90, 160), (64, 64), (641, 479), (5, 3)])
def test_rotzoom_has_no_filled_corners(spec, size):
    colour = (200, 120, 40)  # a flat picture: any fill (black) would show as a change
    out = _a(T.apply(spec, Image.new("RGB", size, colour)))
    assert out.shape[:2] == size[::-1]
    assert np.abs(out - colour).max() <= 1


def test_rotzoom_rotates_and_zooms(image):
    x = _a(image)
    assert np.array_equal(_a(T.apply("rotzoom:deg=0", image)), x)
    out = _a(T.apply("rotzoom:deg=4", image))
    assert 2 < np.abs(out - x).mean()  # and the picture really moved
    # same direction as rotate: closer to rotate:deg=4 zoomed than to rotate:deg=-4 zoomed
    h, w = x.shape[:2]
    ccw = _a(T.apply("rotate:deg=4+crop:center=0.8+resize:scale=1.25", image))
    cw = _a(T.apply("rotate:deg=-4+crop:center=0.8+resize:scale=1.25", image))
    hh, ww = min(h, ccw.shape[0]), min(w, ccw.shape[1])
    inner = (slice(hh // 4, 3 * hh // 4), slice(ww // 4, 3 * ww // 4))
    assert np.abs(out[inner] - ccw[inner]).mean() < np.abs(out[inner] - cw[inner]).mean()


def test_pad_keeps_the_photo_and_blurs_the_bars(image, bundled):
    x = _a(image)
    w, h = image.size
    for spec in ("pad:ratio=0.5625", "pad:ratio=2.3333", "pad:ratio=0.5625,fill=white"):
        out = _a(T.apply(spec, image))
        ch, cw = out.shape[:2]
        top, left = (ch - h) // 2, (cw - w) // 2
        assert np.array_equal(out[top:top + h, left:left + w], x), spec  # pixel-exact centre
    story = _a(T.apply("pad:ratio=0.5625", image))
    assert story.shape[1] / story.shape[0] == pytest.approx(9 / 16, abs=0.01)
    top = (story.shape[0] - h) // 2
    bar = story[:top]  # above the photo: letterbox on a landscape picture
    assert bar.std() > 3  # picture-coloured, not a flat fill ...

    def detail(a):
        return np.abs(np.diff(a.astype(float), axis=1)).mean()

    assert detail(bar) < 0.2 * detail(x)  # ... and heavily blurred
    assert np.abs(bar.reshape(-1, 3).mean(0) - x.reshape(-1, 3).mean(0)).max() < 60
    assert (_a(T.apply("pad:ratio=0.5625,fill=black", image))[:top] == 0).all()
    wide = _a(T.apply("pad:ratio=2.3333,fill=gray", image))  # pillarbox: bars at the sides
    assert wide.shape[0] == h and (wide[:, :(wide.shape[1] - w) // 2] == 128).all()
    # letterbox keeps its old output exactly
    assert np.array_equal(_a(T.apply("pad:ratio=2,fill=black", image)),
                          _a(T.apply("letterbox:ratio=2", image)))


@pytest.mark.parametrize("style", ["solid", "double", "mat"])
def test_frame_surrounds_the_untouched_photo(image, style):
    x = _a(image)
    w, h = image.size
    out = _a(T.apply(f"frame:width=0.08,color=walnut,style={style}", image))
    b = r(0.08 * min(w, h))
    assert out.shape[:2] == (h + 2 * b, w + 2 * b)
    assert np.array_equal(out[b:b + h, b:b + w], x)
    ring = np.ones(out.shape[:2], bool)
    ring[b:b + h, b:b + w] = False
    colours = {tuple(c) for c in out[ring]}
    assert len(colours) >= 3  # richer than a flat border
    assert (92, 58, 33) in colours  # the moulding colour is there
    assert np.array_equal(out[0, b], out[0, -b - 1])  # symmetric left/right at the top edge


def test_meme_bands(image):
    x = _a(image)
    w, h = image.size
    th = r(0.15 * h)
    both = _a(T.apply("meme:top=0.15,bottom=0.15", image))
    assert np.array_equal(both[th:th + h], x)  # the picture between the bands, untouched
    for band in (both[:th], both[th + h:]):
        white = (band == 255).all(axis=2).mean()
        black = (band < 60).all(axis=2).mean()
        assert white > 0.6 and black > 0.03  # white band with plenty of black text
    top_only = _a(T.apply("meme:top=0.15", image))
    assert np.array_equal(top_only[th:], x)
    bottom_only = _a(T.apply("meme:top=0,bottom=0.15", image))
    assert np.array_equal(bottom_only[:h], x)
    cover = _a(T.apply("meme:top=0.15,bottom=0.15,extend=false,bg=black", image))
    assert cover.shape == x.shape
    assert np.array_equal(cover[th:h - th], x[th:h - th])
    assert (cover[:th] == 0).all(axis=2).mean() > 0.6
    assert (cover[:th] > 200).all(axis=2).mean() > 0.03  # white text
    # the text is bold: thicker strokes than the same text drawn plainly
    plain = Image.new("RGB", (w, th), (255, 255, 255))
    T._draw_caption(ImageDraw.Draw(plain), (0, 0, w, th), "WHEN THE PHOTO GETS RESHARED",
                    (0, 0, 0), stroke=0)
    assert (both[:th] < 60).all(axis=2).sum() > 1.2 * (_a(plain) < 60).all(axis=2).sum()
    # text fills the band: its dark pixels span most of the width and height
    rows, cols = np.nonzero((both[:th] < 60).all(axis=2))
    assert cols.max() - cols.min() > 0.6 * w and rows.max() - rows.min() > 0.3 * th


def test_meme_wraps_a_long_caption_on_a_narrow_picture():
    narrow = Image.new("RGB", (200, 400), (90, 140, 200))
    out = _a(T.apply("meme:top=0.25,text=A RATHER LONG CAPTION FOR A NARROW PICTURE", narrow))
    band = (out[:100] < 60).all(axis=2)
    ink_rows = np.nonzero(band.any(axis=1))[0]
    gaps = np.diff(ink_rows)
    assert (gaps > 1).sum() == 1  # two lines of text, one blank gap between them
    assert band.any(axis=0).mean() > 0.6


def test_phone_is_portrait_and_holds_the_photo(image):
    for theme in ("light", "dark"):
        shot = T.apply(f"phone:theme={theme}", image)
        assert shot.height / shot.width == pytest.approx(19.5 / 9, abs=0.01)
    light = _a(T.apply("phone:theme=light", image))
    dark = _a(T.apply("phone:theme=dark", image))
    assert light.mean() > dark.mean() + 60
    # a landscape photo is shown at screen width: find it, exact, below the header
    cw = light.shape[1]
    ph = r(image.height * cw / image.width)
    small = _a(image.resize((cw, ph), Image.Resampling.BICUBIC))
    rows = [y for y in range(light.shape[0] - ph) if np.array_equal(light[y], small[0])]
    assert len(rows) == 1
    y = rows[0]
    assert np.array_equal(light[y:y + ph], small)
    assert 0.1 * cw < y < 0.4 * cw  # status and header bars above it
    below = light[y + ph:]
    assert (np.abs(below - below[0, 0]) > 100).any(axis=2).mean() > 0.01  # UI drawn below


def test_phone_fits_a_tall_photo():
    tall = Image.new("RGB", (100, 400), (10, 200, 30))
    shot = _a(T.apply("phone:theme=light", tall))
    assert shot.shape[:2] == (r(100 / 0.4615), 100)
    green = (np.abs(shot - (10, 200, 30)) < 3).all(axis=2)
    rows, cols = np.nonzero(green)
    assert cols.min() > 0 and cols.max() < 99  # scaled down to leave room for the UI
    assert rows.max() < shot.shape[0] - 0.25 * 100


def test_sticker_is_identical_on_different_photos(bundled):
    a, b = _photo(bundled, 0), _photo(bundled, 4)  # 640x480 and 481x640
    assert a.size != b.size
    side = r(0.25 * min(a.size))
    assert side == r(0.25 * min(b.size))
    patches = []
    for photo in (a, b):
        out = _a(T.apply("sticker:size=0.25,pos=br", photo))
        x = _a(photo)
        w, h = photo.size
        m = r(0.03 * min(w, h))
        x0, y0 = w - side - m, h - side - m
        changed = (out != x).any(axis=2)
        assert not changed[:y0].any() and not changed[:, :x0].any()
        assert not changed[y0 + side:].any() and not changed[:, x0 + side:].any()
        patches.append(out[y0:y0 + side, x0:x0 + side])
    assert np.array_equal(patches[0], patches[1])  # pixel for pixel the same sticker
    p = patches[0]
    assert len({tuple(c) for c in p.reshape(-1, 3)}) > 50 and p.std() > 50  # textured, contrasty
    other = _a(T.apply("sticker:size=0.25,pos=br,design=1", a))
    assert not np.array_equal(other, _a(T.apply("sticker:size=0.25,pos=br", a)))


@pytest.mark.parametrize("spec", SUITE_SPECS)
def test_suites_parse_and_run(spec, image):
    small = image.resize((64, 48), Image.Resampling.BILINEAR)
    for im in (small, small.transpose(Image.Transpose.ROTATE_90)):
        out = T.apply(spec, im, seed=1)
        assert out.mode == "RGB" and min(out.size) >= 1


def test_suite_shapes():
    for suite in (T.ROBUST_SUITE, T.ROBUST_UNSEEN_SUITE):
        assert set(suite) == {"crop", "pad", "frame", "caption", "rotzoom", "screenshot",
                              "combo"}
        for family, specs in suite.items():
            assert 3 <= len(specs) <= 5 and len(set(specs)) == len(specs), family
            assert all(T.parse(s).spec == s for s in specs)
    seen = {s for specs in T.ROBUST_SUITE.values() for s in specs}
    unseen = {s for specs in T.ROBUST_UNSEEN_SUITE.values() for s in specs}
    assert not seen & unseen  # unseen settings really are different
    assert {"crop:square=true", "pad:ratio=0.5625", "pad:ratio=0.5625,fill=black",
            "phone:theme=light", "phone:theme=dark", "screenshot:scale=0.8",
            "crop:side=0.15+jpeg:q=50", "hflip+crop:side=0.2"} <= seen
    assert any(s.startswith("rotzoom:deg=-") for s in seen)
    assert "jpeg:q=30" in T.EASY_SUITE and "rotate90:k=3" in T.EASY_SUITE
    assert all(T.parse(s).spec == s for s in T.EASY_SUITE)
    assert {"ROBUST_SUITE", "ROBUST_UNSEEN_SUITE", "EASY_SUITE"} <= set(T.__all__)


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
    ("crop:square=true,center=0.9", "exactly one of center"),
    ("crop:square=true,side=0.1", "or square=true"),
    ("crop:square=maybe", "true|false"),
    ("pad:ratio=0", "[0.1, 10]"),
    ("pad:fill=red", "blur|black|white|gray"),
    ("pad:radius=0", "(0, 0.5]"),
    ("frame:width=0", "(0, 0.5]"),
    ("frame:style=triple", "solid|double|mat"),
    ("frame:color=pink", "black|white|gray|gold|walnut|navy|red"),
    ("meme:top=0", "top>0 and/or bottom>0"),
    ("meme:top=0.5,bottom=0.4,extend=false", "top+bottom < 0.9"),
    ("meme:top=0.95", "[0, 0.9]"),
    ("meme:bg=gray", "white|black"),
    ("meme:text=a:b", "bad value 'a:b'"),
    ("rotzoom:deg=46", "[-45, 45]"),
    ("rotzoom:deg=-45.5", "[-45, 45]"),
    ("phone:theme=blue", "light|dark"),
    ("phone:ratio=1.5", "[0.2, 1]"),
    ("sticker:size=0", "(0, 1]"),
    ("sticker:pos=middle", "br|bl|tr|tl|center|random"),
    ("sticker:design=4", "[0, 3]"),
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
