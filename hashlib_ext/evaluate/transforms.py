"""A named, parameterised, seeded catalogue of image edits, for measuring what hashes survive.

A transform is written as a spec string, usable on the command line::

    jpeg:q=30            name, then ``:`` and comma-separated ``key=value`` parameters
    hflip                a transform with no (or only default) parameters
    jpeg:q=50+crop:center=0.9    ``+`` composes: left to right

:func:`parse` validates a spec (unknown name, unknown key, wrong type, out-of-range value ->
:class:`~hashlib_ext.errors.TransformSpecError` naming the spec and what is allowed) and returns
a :class:`Transform`: ``t(image, rng) -> image``, RGB in and RGB out, with ``t.spec`` its
canonical spec (``parse(t.spec).spec == t.spec``). Randomness (noise, random positions) comes
only from the ``numpy.random.Generator`` passed in, so the same image, spec and seed give the
same output bytes. :func:`register` adds user transforms; :data:`DEFAULT_SUITE` is what
``hashlib-ext bench`` runs by default; :data:`ROBUST_SUITE`, :data:`ROBUST_UNSEEN_SUITE` and
:data:`EASY_SUITE` group everyday re-share edits by family. See docs/transforms.md.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from ..errors import TransformSpecError

__all__ = [
    "DEFAULT_SUITE",
    "EASY_SUITE",
    "REFERENCE_SUITE",
    "ROBUST_SUITE",
    "ROBUST_UNSEEN_SUITE",
    "Param",
    "Transform",
    "apply",
    "catalogue",
    "contact_sheet",
    "parse",
    "register",
]

TransformFunc = Callable[..., Image.Image]
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_RESERVED = set(",+:=")


# -- parameter schema ---------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """One parameter of a transform: its type, default and allowed values.

    ``lo``/``hi`` bound numbers (inclusive unless ``lo_open``/``hi_open``); ``choices``
    restricts strings. A default of ``None`` means "not set" (the transform decides).
    """

    kind: type
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    lo_open: bool = False
    hi_open: bool = False
    help: str = ""

    def describe(self) -> str:
        """Human-readable allowed values, e.g. ``int in [1, 100], default 75``."""
        if self.choices:
            text = "one of " + "|".join(self.choices)
        elif self.kind is bool:
            text = "true|false"
        else:
            text = self.kind.__name__
            if self.lo is not None or self.hi is not None:
                lo = "-inf" if self.lo is None else _fmt(self.lo)
                hi = "inf" if self.hi is None else _fmt(self.hi)
                text += (f" in {'(' if self.lo_open else '['}{lo}, {hi}"
                         f"{')' if self.hi_open else ']'}")
        if self.default is not None:
            text += f", default {_fmt(self.default)}"
        return text

    def convert(self, text: str) -> Any:
        """Parse ``text`` to this parameter's type and check its range; ValueError if bad."""
        if self.kind is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true|false")
        if self.kind is int:
            value: Any = int(text)
        elif self.kind is float:
            value = float(text)
            if not np.isfinite(value):
                raise ValueError("expected a finite number")
        else:
            value = text
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        """Raise ValueError when ``value`` is outside the allowed range or choices."""
        if self.choices is not None and value not in self.choices:
            raise ValueError("not an allowed value")
        if isinstance(value, str):
            if not value or _RESERVED & set(value):
                raise ValueError("text must be non-empty and free of , + : =")
            return
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            raise ValueError("out of range")
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            raise ValueError("out of range")


def _fmt(value: Any) -> str:
    """Canonical text of a parameter value (shortest round-tripping form)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


@dataclass(frozen=True)
class _Def:
    name: str
    func: TransformFunc
    params: Mapping[str, Param]
    description: str
    primary: bool  # the first parameter is always written in the canonical spec
    check: Callable[[dict[str, Any]], str | None] | None = None

    def allowed(self) -> str:
        if not self.params:
            return f"{self.name} takes no parameters"
        return "; ".join(f"{k}: {p.describe()}" for k, p in self.params.items())


_REGISTRY: dict[str, _Def] = {}


def register(
    name: str,
    func: TransformFunc,
    params_schema: Mapping[str, Param | Any] | None = None,
    description: str = "",
    *,
    primary: bool = True,
    check: Callable[[dict[str, Any]], str | None] | None = None,
    replace: bool = False,
) -> None:
    """Add a transform to the catalogue.

    ``func(image, rng, **params) -> image`` gets an RGB PIL image and a
    ``numpy.random.Generator`` (its only source of randomness). ``params_schema`` maps each
    parameter name to a :class:`Param`, or to a plain default value whose type is used.
    ``primary``: write the first parameter in canonical specs even at its default
    (``rotate:deg=5`` rather than ``rotate``). ``check(params)`` may return an error message
    for combinations a single :class:`Param` cannot express.
    """
    if not _NAME.match(name):
        raise TransformSpecError(f"transform name {name!r} must match {_NAME.pattern}")
    if name in _REGISTRY and not replace:
        raise TransformSpecError(f"transform {name!r} is already registered (replace=True)")
    params: dict[str, Param] = {}
    for key, p in (params_schema or {}).items():
        if not _NAME.match(key):
            raise TransformSpecError(f"parameter name {key!r} of {name!r} is not valid")
        if not isinstance(p, Param):
            if p is None:
                raise TransformSpecError(f"parameter {key!r} of {name!r}: give a Param or a "
                                         "default value of type bool, int, float or str")
            p = Param(type(p), p)
        if p.kind not in (bool, int, float, str):
            raise TransformSpecError(f"parameter {key!r} of {name!r}: type {p.kind} unsupported")
        params[key] = p
    _REGISTRY[name] = _Def(name, func, params, description, primary, check)


def catalogue() -> dict[str, dict[str, Any]]:
    """Every registered transform: ``{name: {"description", "params": {key: {...}}}}``."""
    out: dict[str, dict[str, Any]] = {}
    for name, d in _REGISTRY.items():
        params = {}
        for key, p in d.params.items():
            entry: dict[str, Any] = {"type": p.kind.__name__, "default": p.default,
                                     "allowed": p.describe(), "help": p.help}
            if p.choices:
                entry["choices"] = list(p.choices)
            params[key] = entry
        out[name] = {"description": d.description, "params": params}
    return out


# -- parsed transforms --------------------------------------------------------------------

@dataclass(frozen=True)
class _Step:
    defn: _Def
    params: tuple[tuple[str, Any], ...]  # every parameter, schema order, defaults filled in

    @property
    def spec(self) -> str:
        shown = []
        for i, (key, value) in enumerate(self.params):
            if value is None:
                continue
            if value != self.defn.params[key].default or (i == 0 and self.defn.primary):
                shown.append(f"{key}={_fmt(value)}")
        return self.defn.name + (":" + ",".join(shown) if shown else "")

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        out = self.defn.func(image, rng, **dict(self.params))
        return out if out.mode == "RGB" else out.convert("RGB")


class Transform:
    """A parsed spec: one step or a left-to-right composition. Call as ``t(image, rng)``."""

    __slots__ = ("steps",)

    def __init__(self, steps: Sequence[_Step]):
        if not steps:
            raise TransformSpecError("a transform needs at least one step")
        self.steps = tuple(steps)

    @property
    def spec(self) -> str:
        """Canonical spec: parameters in schema order, defaults left out (but the primary one)."""
        return "+".join(s.spec for s in self.steps)

    @property
    def name(self) -> str:
        return "+".join(s.defn.name for s in self.steps)

    def __call__(self, image: Any, rng: np.random.Generator | None = None) -> Image.Image:
        img = _as_rgb(image)
        if rng is None:
            rng = np.random.default_rng(0)
        for step in self.steps:
            img = step(img, rng)
        return img

    def __add__(self, other: Transform | str) -> Transform:
        other = parse(other) if isinstance(other, str) else other
        return Transform(self.steps + other.steps)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"Transform({self.spec!r})"

    def __reduce__(self):  # picklable by spec, for process pools
        return (parse, (self.spec,))


def parse(spec: str | Transform) -> Transform:
    """Parse and validate a spec string (``name[:k=v,...][+name...]``) into a Transform."""
    if isinstance(spec, Transform):
        return spec
    if not isinstance(spec, str):
        raise TransformSpecError(f"a transform spec is a string, got {type(spec).__name__}")
    parts = spec.strip().split("+")
    if not spec.strip() or any(not p.strip() for p in parts):
        raise TransformSpecError(f"transform spec {spec!r} is empty or has an empty step "
                                 "(write name[:key=value,...], joined with +)")
    return Transform([_parse_step(p.strip(), spec) for p in parts])


def _parse_step(text: str, spec: str) -> _Step:
    name, _, args = text.partition(":")
    name = name.strip()
    defn = _REGISTRY.get(name)
    if defn is None:
        raise TransformSpecError(f"unknown transform {name!r} in spec {spec!r}; known: "
                                 + ", ".join(sorted(_REGISTRY)))
    given: dict[str, Any] = {}
    if args.strip():
        for item in args.split(","):
            key, eq, raw = item.partition("=")
            key = key.strip()
            if not eq or not key:
                raise TransformSpecError(f"{spec!r}: expected key=value, got {item!r} "
                                         f"({defn.allowed()})")
            if key not in defn.params:
                raise TransformSpecError(f"{spec!r}: {name} has no parameter {key!r} "
                                         f"({defn.allowed()})")
            if key in given:
                raise TransformSpecError(f"{spec!r}: parameter {key!r} given twice")
            p = defn.params[key]
            try:
                given[key] = p.convert(raw.strip())
            except ValueError:
                raise TransformSpecError(f"{spec!r}: bad value {raw.strip()!r} for "
                                         f"{name}:{key}, expected {p.describe()}") from None
    elif args or text.endswith(":"):
        raise TransformSpecError(f"{spec!r}: nothing after ':' ({defn.allowed()})")
    params = {k: given.get(k, p.default) for k, p in defn.params.items()}
    if defn.check is not None:
        problem = defn.check(params)
        if problem:
            raise TransformSpecError(f"{spec!r}: {problem} ({defn.allowed()})")
    return _Step(defn, tuple(params.items()))


def apply(spec: str | Transform, image: Any, seed: int = 0) -> Image.Image:
    """Apply ``spec`` to ``image`` (PIL image, HxW[xC] uint8 array, path or bytes) with a
    generator seeded by ``seed``; returns an RGB PIL image."""
    return parse(spec)(image, np.random.default_rng(seed))


def _as_rgb(image: Any) -> Image.Image:
    """An RGB PIL image from a PIL image, array, Pixels-like object, path or bytes."""
    inner = getattr(image, "image", None)  # hashlib_ext.pixels.Pixels
    if isinstance(inner, Image.Image):
        image = inner
    if isinstance(image, (str, Path, bytes, bytearray)):
        src = io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else image
        with Image.open(src) as im:
            image = ImageOps.exif_transpose(im)
            image.load()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise TypeError(f"expected an HxW or HxWxC uint8 array, got shape {image.shape} "
                            f"dtype {image.dtype}")
        image = Image.fromarray(image[..., :3] if image.ndim == 3 else image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"cannot transform a {type(image).__name__}; give a PIL image or array")
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def contact_sheet(image: Any, specs: Sequence[str | Transform], *, seed: int = 0,
                  cell: int = 240, columns: int = 5) -> Image.Image:
    """A grid of thumbnails: the original, then each transform of it, labelled with its
    canonical spec and output size. For eyeballing the catalogue (docs/transforms.md)."""
    base = _as_rgb(image)
    tiles = [("original", base)] + [(parse(s).spec, apply(s, base, seed)) for s in specs]
    label_h = 14
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * cell, rows * (cell + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(11)
    for i, (label, img) in enumerate(tiles):
        x, y = (i % columns) * cell, (i // columns) * (cell + label_h)
        thumb = img.copy()
        thumb.thumbnail((cell - 6, cell - 6), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x + 3, y + 3 + (cell - 6 - thumb.height) // 2))
        text = f"{label}  {img.width}x{img.height}"
        while len(text) > 8 and draw.textlength(text, font=font) > cell - 6:
            text = text[:-2] + "\u2026"
        draw.text((x + 3, y + cell), text, fill=(0, 0, 0), font=font)
    return sheet


# -- the catalogue ------------------------------------------------------------------------

_COLOURS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


def _reencode(image: Image.Image, fmt: str, **options: Any) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def _jpeg(image, rng, q):
    return _reencode(image, "JPEG", quality=q)


def _webp(image, rng, q):
    return _reencode(image, "WEBP", quality=q, method=4)


def _scaled(n: int, f: float) -> int:
    return max(1, int(round(n * f)))


def _resize(image, rng, scale, resample):
    w, h = image.size
    return image.resize((_scaled(w, scale), _scaled(h, scale)), _RESAMPLE[resample])


def _aspect(image, rng, x, resample):
    w, h = image.size
    return image.resize((_scaled(w, x), h), _RESAMPLE[resample])


def _crop(image, rng, center, side, edge, square):
    w, h = image.size
    if square:  # the largest centred square
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return image.crop((left, top, left + s, top + s))
    if center is not None:
        cw, ch = _scaled(w, center), _scaled(h, center)
        left, top = (w - cw) // 2, (h - ch) // 2
        return image.crop((left, top, left + cw, top + ch))
    if edge == "random":
        edge = ("left", "right", "top", "bottom")[int(rng.integers(4))]
    dx, dy = min(w - 1, int(round(w * side))), min(h - 1, int(round(h * side)))
    box = {"left": (dx, 0, w, h), "right": (0, 0, w - dx, h),
           "top": (0, dy, w, h), "bottom": (0, 0, w, h - dy)}[edge]
    return image.crop(box)


def _crop_check(params: dict[str, Any]) -> str | None:
    given = (params["center"] is not None) + (params["side"] is not None) + bool(params["square"])
    if given != 1:
        return ("give exactly one of center=F (keep the central F), side=F (cut F off one "
                "edge) or square=true (centre crop to a square)")
    return None


def _rotate(image, rng, deg, expand, fill):
    return image.rotate(deg, resample=Image.Resampling.BICUBIC, expand=expand,
                        fillcolor=_COLOURS[fill])


_QUARTER = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180,
            3: Image.Transpose.ROTATE_270}


def _rotate90(image, rng, k):
    return image.transpose(_QUARTER[k])


def _hflip(image, rng):
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _vflip(image, rng):
    return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)


def _brightness(image, rng, f):
    return ImageEnhance.Brightness(image).enhance(f)


def _contrast(image, rng, f):
    return ImageEnhance.Contrast(image).enhance(f)


def _saturation(image, rng, f):
    return ImageEnhance.Color(image).enhance(f)


def _gamma(image, rng, g):
    lut = np.rint(255.0 * (np.arange(256) / 255.0) ** (1.0 / g)).astype(np.uint8)
    return image.point(lut.tolist() * 3)


def _grayscale(image, rng):
    return image.convert("L").convert("RGB")


def _blur(image, rng, radius):
    return image.filter(ImageFilter.GaussianBlur(radius))


def _sharpen(image, rng, percent, radius, threshold):
    return image.filter(ImageFilter.UnsharpMask(radius=radius, percent=percent,
                                                threshold=threshold))


def _noise(image, rng, sigma):
    arr = np.asarray(image, dtype=np.float32)
    noisy = arr + rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(sigma)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's bundled default font at ``size`` px (bitmap fallback without FreeType)."""
    try:
        return ImageFont.load_default(size=max(6, size))
    except (TypeError, ValueError, OSError, ImportError):  # old Pillow or no FreeType
        return ImageFont.load_default()


def _draw_text_centred(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], text: str,
                       fill: tuple[int, int, int], size: int, stroke: float = 0.0) -> None:
    """Draw ``text`` centred in ``box``, shrunk until it fits the width. ``stroke`` > 0
    thickens the letters (an outline of that fraction of the font size, in the text colour),
    for a bold look with PIL's one default face."""
    left, top, right, bottom = box

    def measure(size: int) -> tuple[Any, int, tuple[float, float, float, float]]:
        font = _font(size)
        sw = int(round(size * stroke)) if isinstance(font, ImageFont.FreeTypeFont) else 0
        return font, sw, draw.textbbox((0, 0), text, font=font, stroke_width=sw)

    font, sw, (x0, y0, x1, y1) = measure(size)
    while x1 - x0 > (right - left) * 0.95 and size > 6:  # shrink until it fits the width
        size = int(size * 0.85)
        font, sw, (x0, y0, x1, y1) = measure(size)
    x = left + (right - left - (x1 - x0)) // 2 - x0
    y = top + (bottom - top - (y1 - y0)) // 2 - y0
    if sw:
        draw.text((x, y), text, fill=fill, font=font, stroke_width=sw, stroke_fill=fill)
    else:
        draw.text((x, y), text, fill=fill, font=font)


def _banner(image, rng, height, text, pos, bg, extend):
    w, h = image.size
    bh = max(1, int(round(h * height)))
    if extend:
        canvas = Image.new("RGB", (w, h + bh), _COLOURS[bg])
        canvas.paste(image, (0, bh if pos == "top" else 0))
        image = canvas
    else:
        image = image.copy()
    top = 0 if pos == "top" else image.size[1] - bh
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, top, w - 1, top + bh - 1), fill=_COLOURS[bg])
    ink = (0, 0, 0) if bg == "white" else (255, 255, 255)
    _draw_text_centred(draw, (0, top, w, top + bh), text, ink, int(bh * 0.5))
    return image


@lru_cache(maxsize=32)
def _logo_rgba(size: int) -> Image.Image:
    """A synthetic watermark logo: a coloured rounded badge with a ring and the letters 'hx'."""
    s = 4 * size  # draw large, then downsample for smooth edges
    logo = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(logo)
    d.rounded_rectangle((0, 0, s - 1, s - 1), radius=s // 5, fill=(220, 40, 60, 255))
    d.ellipse((s * 0.12, s * 0.12, s * 0.88, s * 0.88), outline=(255, 255, 255, 255),
              width=max(1, s // 14))
    _draw_text_centred(d, (0, 0, s, s), "hx", (255, 220, 0), int(s * 0.45))
    return logo.resize((size, size), Image.Resampling.LANCZOS)


def _logo(image, rng, size, pos, opacity):
    w, h = image.size
    side = max(1, min(w, h, int(round(min(w, h) * size))))
    logo = _logo_rgba(side)
    x, y = _corner_xy(w, h, side, pos, rng)
    alpha = logo.getchannel("A").point(lambda a: int(round(a * opacity)))
    out = image.copy()
    out.paste(logo.convert("RGB"), (x, y), alpha)
    return out


def _border(image, rng, width, color):
    w, h = image.size
    px, py = int(round(w * width)), int(round(h * width))
    canvas = Image.new("RGB", (w + 2 * px, h + 2 * py), _COLOURS[color])
    canvas.paste(image, (px, py))
    return canvas


def _letterbox(image, rng, ratio, color):
    w, h = image.size
    cw, ch = _pad_size(w, h, ratio)
    canvas = Image.new("RGB", (cw, ch), _COLOURS[color])
    canvas.paste(image, ((cw - w) // 2, (ch - h) // 2))
    return canvas


_THEMES = {
    "light": {"bg": (236, 236, 240), "bar": (210, 212, 218), "side": (246, 246, 248),
              "line": (196, 198, 204), "page": (255, 255, 255)},
    "dark": {"bg": (32, 33, 36), "bar": (53, 54, 58), "side": (41, 42, 45),
             "line": (90, 92, 98), "page": (24, 24, 26)},
}


def _screenshot(image, rng, scale, canvas, theme):
    """The image rescaled inside a window-like frame: title bar, sidebar, content pane."""
    w, h = image.size
    cw, ch = max(16, int(round(w * canvas))), max(16, int(round(h * canvas)))
    t = _THEMES[theme]
    shot = Image.new("RGB", (cw, ch), t["bg"])
    d = ImageDraw.Draw(shot)
    bar = max(4, int(round(ch * 0.06)))
    side = int(round(cw * 0.14))
    d.rectangle((0, 0, cw - 1, bar - 1), fill=t["bar"])
    r = max(1, bar // 4)
    for i, colour in enumerate(((237, 106, 94), (245, 191, 79), (98, 197, 84))):
        cx = bar // 2 + i * 3 * r
        d.ellipse((cx - r, bar // 2 - r, cx + r, bar // 2 + r), fill=colour)
    d.rectangle((0, bar, side - 1, ch - 1), fill=t["side"])
    step = max(4, int(round(ch * 0.05)))
    for k, y in enumerate(range(bar + step, ch - step, step)):
        d.rectangle((int(side * 0.12), y, int(side * (0.55 + 0.3 * ((k * 7) % 5) / 4)),
                     y + max(1, step // 4)), fill=t["line"])
    pane = (side, bar, cw, ch)
    d.rectangle((pane[0], pane[1], pane[2] - 1, pane[3] - 1), fill=t["page"])
    pw, ph = pane[2] - pane[0], pane[3] - pane[1]
    f = min(scale, 0.96 * pw / w, 0.96 * ph / h)
    tw, th = _scaled(w, f), _scaled(h, f)
    content = image.resize((tw, th), Image.Resampling.BICUBIC)
    shot.paste(content, (pane[0] + (pw - tw) // 2, pane[1] + (ph - th) // 2))
    return shot


# -- re-share edits: square crop, story padding, frames, memes, straighten, phone, stickers --

def _pad_size(w: int, h: int, ratio: float) -> tuple[int, int]:
    """The smallest canvas of width/height ``ratio`` that holds a ``w`` x ``h`` image."""
    if w / h < ratio:  # too narrow: pad left and right
        return max(w, int(round(h * ratio))), h
    return w, max(h, int(round(w / ratio)))  # too wide: pad top and bottom


def _blurred_cover(image: Image.Image, cw: int, ch: int, radius: float) -> Image.Image:
    """``image`` enlarged to cover ``cw`` x ``ch`` (centre-cropped), then heavily blurred.

    The blur is done on a small copy (long side about 4/radius px) and scaled up, so its cost
    does not grow with the blur radius; the result is smooth either way.
    """
    long_side = max(cw, ch)
    small_long = min(long_side, max(32, int(np.ceil(4.0 / radius))))
    k = small_long / long_side
    sw, sh = max(1, int(round(cw * k))), max(1, int(round(ch * k)))
    small = ImageOps.fit(image, (sw, sh), Image.Resampling.BICUBIC)
    small = small.filter(ImageFilter.GaussianBlur(radius * small_long))
    return small.resize((cw, ch), Image.Resampling.BICUBIC)


def _pad(image, rng, ratio, fill, radius):
    """Pad to width/height ``ratio`` with the photo centred, unscaled and untouched; the
    bars are a solid colour or (``fill=blur``) a blurred, enlarged copy of the photo."""
    w, h = image.size
    cw, ch = _pad_size(w, h, ratio)
    if fill == "blur":
        canvas = _blurred_cover(image, cw, ch, radius)
    else:
        canvas = Image.new("RGB", (cw, ch), _COLOURS[fill])
    canvas.paste(image, ((cw - w) // 2, (ch - h) // 2))
    return canvas


_FRAME_COLOURS = {
    "black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128),
    "gold": (191, 155, 48), "walnut": (92, 58, 33), "navy": (28, 40, 84),
    "red": (150, 30, 36),
}
_MAT = (243, 239, 228)  # off-white mat board


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, int, int]:
    """``a`` blended towards ``b`` by ``t`` (0 = a, 1 = b)."""
    return (int(round(a[0] + (b[0] - a[0]) * t)), int(round(a[1] + (b[1] - a[1]) * t)),
            int(round(a[2] + (b[2] - a[2]) * t)))


def _contrast_ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """A light line on dark colours, a dark line on light ones."""
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (235, 225, 200) if luma < 140 else (45, 45, 45)


def _frame(image, rng, width, color, style):
    """A picture frame around the full image, ``width`` x the shorter side on every side.

    ``solid``: a moulding band with a darker outer edge and a thin contrasting inner line;
    ``double``: two bands with a contrasting gap between them (and the darker outer edge);
    ``mat``: a narrow moulding around a wide off-white mat, with the moulding's shadow on
    the mat and a white bevel at the opening. The photo itself is pasted unchanged in the
    middle.
    """
    w, h = image.size
    b = max(1, int(round(min(w, h) * width)))
    cw, ch = w + 2 * b, h + 2 * b
    base = _FRAME_COLOURS[color]
    canvas = Image.new("RGB", (cw, ch), base)
    d = ImageDraw.Draw(canvas)

    def band(inset: int, fill: tuple[int, int, int]) -> None:
        inset = min(inset, b)  # never inside the photo; keeps tiny images drawable
        d.rectangle((inset, inset, cw - 1 - inset, ch - 1 - inset), fill=fill)

    line = max(1, b // 10)
    if style == "solid":
        band(0, _mix(base, (0, 0, 0), 0.35))  # outer edge, darker
        band(line, base)
        band(b - line, _contrast_ink(base))  # thin inner line at the photo
    elif style == "double":
        band(0, _mix(base, (0, 0, 0), 0.35))
        band(line, base)
        band(int(round(0.4 * b)), _contrast_ink(base))
        band(int(round(0.6 * b)), base)
    else:  # mat
        band(0, _mix(base, (0, 0, 0), 0.35))
        band(line, base)
        m = max(line + 1, int(round(0.3 * b)))
        band(m, _MAT)
        shadow = max(1, int(round(0.12 * b)))
        for k in reversed(range(shadow)):  # light from the top left: shadow on top and left
            if m + k >= b:
                continue
            shade = _mix(_MAT, (0, 0, 0), 0.3 * (1 - k / shadow) ** 2)
            d.line((m, m + k, cw - 1 - m, m + k), fill=shade)
            d.line((m + k, m, m + k, ch - 1 - m), fill=shade)
        bevel = max(1, b // 25)
        band(b - bevel, (255, 255, 255))
    canvas.paste(image, (b, b))
    return canvas


def _meme(image, rng, top, bottom, extend, bg, text, text2):
    """Caption bands above and/or below, meme style: big bold capitals, black on white or
    white on black, added outside the picture (``extend``) or covering its edges."""
    w, h = image.size
    th = max(1, int(round(h * top))) if top > 0 else 0
    bh = max(1, int(round(h * bottom))) if bottom > 0 else 0
    paper = _COLOURS[bg]
    ink = (0, 0, 0) if bg == "white" else (255, 255, 255)
    if extend:
        out = Image.new("RGB", (w, h + th + bh), paper)
        out.paste(image, (0, th))
    else:
        out = image.copy()
    d = ImageDraw.Draw(out)
    height = out.size[1]
    for y0, y1, words in ((0, th, text), (height - bh, height, text2)):
        if y1 <= y0:
            continue
        d.rectangle((0, y0, w - 1, y1 - 1), fill=paper)
        _draw_caption(d, (0, y0, w, y1), words, ink)
    return out


def _draw_caption(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], text: str,
                  fill: tuple[int, int, int], stroke: float = 0.06) -> None:
    """Meme text in ``box``: one line, or two balanced lines when that allows a bigger font
    (long captions on narrow pictures), as large as the band allows, thickened by ``stroke``."""
    left, top, right, bottom = box
    bw, bh = right - left, bottom - top
    ref = 100  # measure at a reference size; text width scales about linearly with size

    def width(line: str) -> float:
        x0, _, x1, _ = draw.textbbox((0, 0), line, font=_font(ref),
                                     stroke_width=int(round(ref * stroke)))
        return max(1, x1 - x0)

    words = text.split()
    best_lines, best = [text], min(0.6 * bh, ref * 0.92 * bw / width(text))
    if len(words) > 1:  # the most balanced two-line split
        two = min(([" ".join(words[:i]), " ".join(words[i:])] for i in range(1, len(words))),
                  key=lambda lines: max(width(s) for s in lines))
        size = min(0.36 * bh, ref * 0.92 * bw / max(width(s) for s in two))
        if size > 1.15 * best:
            best_lines, best = two, size
    size = max(6, int(best))
    font = _font(size)
    sw = int(round(size * stroke)) if isinstance(font, ImageFont.FreeTypeFont) else 0
    step = size * 1.1
    y_first = top + bh / 2 - step * (len(best_lines) - 1) / 2
    for k, line in enumerate(best_lines):
        x0, y0, x1, y1 = draw.textbbox((0, 0), line, font=font, stroke_width=sw)
        x = left + (bw - (x1 - x0)) / 2 - x0
        y = y_first + k * step - (y1 + y0) / 2
        if sw:
            draw.text((x, y), line, fill=fill, font=font, stroke_width=sw, stroke_fill=fill)
        else:
            draw.text((x, y), line, fill=fill, font=font)


def _meme_check(params: dict[str, Any]) -> str | None:
    if params["top"] <= 0 and params["bottom"] <= 0:
        return "give a caption band: top>0 and/or bottom>0"
    if not params["extend"] and params["top"] + params["bottom"] >= 0.9:
        return "covering bands (extend=false) must leave some picture: top+bottom < 0.9"
    return None


def _rotzoom(image, rng, deg):
    """Rotate by ``deg`` and zoom in just enough that the frame holds only picture: same
    size as the input, no filled corners (one bicubic resampling)."""
    if deg == 0:
        return image.copy()
    w, h = image.size
    a = np.radians(abs(deg))
    cos, sin = float(np.cos(a)), float(np.sin(a))
    m = min(1.0, min(w, h) / 8)  # keep the corner samples a pixel inside the source
    s = max((w * cos + h * sin) / (w - 2 * m), (w * sin + h * cos) / (h - 2 * m))
    t = -np.radians(deg)
    c, sn = float(np.cos(t)) / s, float(np.sin(t)) / s
    matrix = [c, sn, 0.0, -sn, c, 0.0]
    matrix[2] = w / 2 - (matrix[0] * w / 2 + matrix[1] * h / 2)
    matrix[5] = h / 2 - (matrix[3] * w / 2 + matrix[4] * h / 2)
    return image.transform((w, h), Image.Transform.AFFINE, matrix,
                           resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))


_PHONE_THEMES = {
    "light": {"bg": (255, 255, 255), "ink": (20, 20, 20), "dim": (142, 142, 142),
              "line": (219, 219, 219), "accent": (237, 73, 86), "link": (0, 149, 246)},
    "dark": {"bg": (0, 0, 0), "ink": (245, 245, 245), "dim": (168, 168, 168),
             "line": (54, 54, 54), "accent": (255, 48, 64), "link": (0, 149, 246)},
}


def _text_at(d: ImageDraw.ImageDraw, x: float, ymid: float, text: str,
             fill: tuple[int, int, int], size: int, *, right: bool = False,
             stroke: float = 0.0) -> None:
    """Draw ``text`` vertically centred on ``ymid``, starting at ``x`` (or ending there)."""
    font = _font(max(6, size))
    sw = int(round(size * stroke)) if isinstance(font, ImageFont.FreeTypeFont) else 0
    x0, y0, x1, y1 = d.textbbox((0, 0), text, font=font, stroke_width=sw)
    px = x - (x1 - x0) - x0 if right else x - x0
    py = ymid - (y1 - y0) / 2 - y0
    if sw:
        d.text((px, py), text, fill=fill, font=font, stroke_width=sw, stroke_fill=fill)
    else:
        d.text((px, py), text, fill=fill, font=font)


def _heart(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float,
           fill: tuple[int, int, int]) -> None:
    d.ellipse((cx - r, cy - r * 0.75, cx, cy + r * 0.25), fill=fill)
    d.ellipse((cx, cy - r * 0.75, cx + r, cy + r * 0.25), fill=fill)
    d.polygon([(cx - r * 0.97, cy - r * 0.1), (cx + r * 0.97, cy - r * 0.1),
               (cx, cy + r * 0.95)], fill=fill)


def _phone(image, rng, theme, scale, ratio):
    """The photo in a phone app's feed post: status bar (time, signal, wifi, battery), app
    header (avatar, account name, menu), the photo at screen width, an action row (like,
    comment, share, save), likes and caption lines, and the bottom tab bar. Portrait canvas
    ``ratio`` = width/height (9:19.5 by default), ``scale`` x the photo width wide."""
    w, h = image.size
    cw = max(48, int(round(w * scale)))
    ch = max(cw, int(round(cw / ratio)))
    t = _PHONE_THEMES[theme]
    shot = Image.new("RGB", (cw, ch), t["bg"])
    d = ImageDraw.Draw(shot)
    u = cw / 100.0  # layout unit: 1% of the screen width
    stroke = max(1, int(round(0.55 * u)))
    ink, dim = t["ink"], t["dim"]

    # status bar: time on the left; signal bars, wifi fan and battery on the right
    status = int(round(11 * u))
    sy = status / 2
    _text_at(d, 6 * u, sy, "9:41", ink, int(4.2 * u), stroke=0.05)
    bx0, bx1 = cw - 10 * u, cw - 4 * u
    d.rounded_rectangle((bx0, sy - 1.5 * u, bx1, sy + 1.5 * u), radius=0.6 * u, outline=ink,
                        width=max(1, int(round(0.35 * u))))
    d.rectangle((bx0 + 0.7 * u, sy - 0.8 * u, bx0 + 0.7 * u + 3.6 * u, sy + 0.8 * u), fill=ink)
    d.rectangle((bx1 + 0.2 * u, sy - 0.6 * u, bx1 + 0.8 * u, sy + 0.6 * u), fill=ink)
    wx = cw - 15 * u
    d.pieslice((wx - 2.6 * u, sy - 1.6 * u, wx + 2.6 * u, sy + 3.6 * u), 225, 315, fill=ink)
    for i in range(4):
        x = cw - 25 * u + i * 1.6 * u
        d.rectangle((x, sy + 1.5 * u - (1.0 + 0.65 * i) * u, x + 1.0 * u, sy + 1.5 * u),
                    fill=ink)

    # app header: avatar with a ring, account name, "more" dots
    header = int(round(13 * u))
    hy = status + header / 2
    d.ellipse((4 * u, hy - 4 * u, 12 * u, hy + 4 * u), outline=t["accent"], width=stroke)
    d.ellipse((5.3 * u, hy - 2.7 * u, 10.7 * u, hy + 2.7 * u), fill=dim)
    _text_at(d, 15 * u, hy, "hashlib.ext", ink, int(3.8 * u), stroke=0.04)
    for i in range(3):
        x = cw - 6 * u - i * 1.8 * u
        d.ellipse((x - 0.55 * u, hy - 0.55 * u, x + 0.55 * u, hy + 0.55 * u), fill=ink)

    # the photo at screen width (or smaller, centred, when a tall one would not leave room)
    nav = int(round(14 * u))
    actions = int(round(12 * u))
    y0 = status + header
    room = ch - y0 - actions - nav - int(round(14 * u))
    pw, ph = cw, max(1, int(round(h * cw / w)))
    if ph > room:
        ph = max(1, room)
        pw = max(1, min(cw, int(round(w * ph / h))))
    shot.paste(image.resize((pw, ph), Image.Resampling.BICUBIC), ((cw - pw) // 2, y0))

    # action row: heart (liked), comment bubble, share arrow; page dots; bookmark
    ay = y0 + ph + actions / 2
    _heart(d, 7 * u, ay, 2.9 * u, t["accent"])
    d.ellipse((13.5 * u, ay - 2.7 * u, 19 * u, ay + 2.7 * u), outline=ink, width=stroke)
    d.polygon([(14 * u, ay + 1.5 * u), (13.2 * u, ay + 3.2 * u), (15.6 * u, ay + 2.4 * u)],
              fill=ink)
    d.polygon([(23 * u, ay - 2.4 * u), (29.5 * u, ay - 2.4 * u), (25.5 * u, ay + 3 * u)],
              outline=ink, width=stroke)
    for i, colour in enumerate((t["link"], dim, dim)):
        x = cw / 2 + (i - 1) * 2 * u
        d.ellipse((x - 0.6 * u, ay - 0.6 * u, x + 0.6 * u, ay + 0.6 * u), fill=colour)
    d.polygon([(cw - 9 * u, ay - 2.8 * u), (cw - 4.5 * u, ay - 2.8 * u),
               (cw - 4.5 * u, ay + 2.8 * u), (cw - 6.75 * u, ay + 1 * u),
               (cw - 9 * u, ay + 2.8 * u)], outline=ink, width=stroke)

    # likes and caption lines, as many as fit above the tab bar
    lines = [("1,024 likes", ink, 0.06), ("hashlib.ext  a day by the sea", ink, 0.0),
             ("View all 48 comments", dim, 0.0), ("2 HOURS AGO", dim, 0.0)]
    y = y0 + ph + actions + 3 * u
    for text, colour, bold in lines:
        if y + 3 * u > ch - nav:
            break
        _text_at(d, 4 * u, y, text, colour, int(3.6 * u), stroke=bold)
        y += 6 * u

    # the next post starts below: its header and the top of its (placeholder) picture
    y += 2 * u
    if y + header + 4 * u < ch - nav:
        hy = y + header / 2
        d.ellipse((4 * u, hy - 4 * u, 12 * u, hy + 4 * u), fill=dim)
        _text_at(d, 15 * u, hy, "another.account", ink, int(3.8 * u), stroke=0.04)
        for i in range(3):
            x = cw - 6 * u - i * 1.8 * u
            d.ellipse((x - 0.55 * u, hy - 0.55 * u, x + 0.55 * u, hy + 0.55 * u), fill=ink)
        top0, top1 = int(round(y + header)), ch - nav
        lo, hi = t["line"], dim
        for yy in range(top0, top1):  # a plain vertical gradient, no picture content
            d.line((0, yy, cw - 1, yy), fill=_mix(lo, hi, (yy - top0) / max(1, top1 - top0)))

    # bottom tab bar: home, search, new post, clips, profile; home indicator
    top = ch - nav
    d.rectangle((0, top, cw - 1, ch - 1), fill=t["bg"])
    d.line((0, top, cw - 1, top), fill=t["line"], width=max(1, int(round(0.2 * u))))
    ny = top + nav * 0.42
    r = 2.6 * u
    xs = [cw * (i + 0.5) / 5 for i in range(5)]
    d.polygon([(xs[0] - r, ny), (xs[0], ny - r), (xs[0] + r, ny), (xs[0] + r * 0.75, ny),
               (xs[0] + r * 0.75, ny + r), (xs[0] - r * 0.75, ny + r), (xs[0] - r * 0.75, ny)],
              fill=ink)
    d.ellipse((xs[1] - r, ny - r, xs[1] + r * 0.5, ny + r * 0.5), outline=ink, width=stroke)
    d.line((xs[1] + r * 0.3, ny + r * 0.3, xs[1] + r, ny + r), fill=ink, width=stroke)
    d.rounded_rectangle((xs[2] - r, ny - r, xs[2] + r, ny + r), radius=0.8 * u, outline=ink,
                        width=stroke)
    d.line((xs[2] - r * 0.5, ny, xs[2] + r * 0.5, ny), fill=ink, width=stroke)
    d.line((xs[2], ny - r * 0.5, xs[2], ny + r * 0.5), fill=ink, width=stroke)
    d.rounded_rectangle((xs[3] - r, ny - r, xs[3] + r, ny + r), radius=0.8 * u, outline=ink,
                        width=stroke)
    d.polygon([(xs[3] - r * 0.35, ny - r * 0.45), (xs[3] + r * 0.5, ny),
               (xs[3] - r * 0.35, ny + r * 0.45)], fill=ink)
    d.ellipse((xs[4] - r, ny - r, xs[4] + r, ny + r), fill=dim)
    d.rounded_rectangle((cw / 2 - 17 * u, ch - 2.2 * u, cw / 2 + 17 * u, ch - 1.2 * u),
                        radius=0.5 * u, fill=ink)
    return shot


_STICKERS = (  # (badge, stripes, disc, star, text colour, text)
    ((255, 214, 0), (25, 25, 25), (230, 30, 60), (255, 255, 255), (25, 25, 25), "WOW"),
    ((20, 160, 220), (255, 255, 255), (255, 90, 30), (255, 230, 0), (20, 20, 60), "NEW"),
    ((120, 40, 200), (255, 120, 200), (30, 30, 30), (0, 230, 180), (255, 255, 255), "LOL"),
    ((40, 180, 70), (250, 250, 250), (250, 250, 250), (240, 40, 40), (20, 20, 20), "HOT"),
)


@lru_cache(maxsize=32)
def _sticker_rgb(side: int, design: int) -> Image.Image:
    """A synthetic opaque sticker, ``side`` px square: a white die-cut edge around a badge
    with diagonal stripes, a disc, a starburst and bold text. The same (side, design) always
    gives the same pixels."""
    badge, stripes, disc, star, ink, word = _STICKERS[design]
    s = 4 * side  # draw large, then downsample for smooth edges
    art = Image.new("RGB", (s, s), (255, 255, 255))
    mask = Image.new("L", (s, s), 0)
    edge = 0.05 * s
    ImageDraw.Draw(mask).rounded_rectangle((edge, edge, s - 1 - edge, s - 1 - edge),
                                           radius=0.16 * s, fill=255)
    texture = Image.new("RGB", (s, s), badge)
    td = ImageDraw.Draw(texture)
    step = max(2, s // 9)
    for x in range(-s, s, step):  # diagonal stripes
        td.polygon([(x, 0), (x + step // 2, 0), (x + step // 2 + s, s), (x + s, s)], fill=stripes)
    art.paste(texture, (0, 0), mask)
    d = ImageDraw.Draw(art)
    c = s / 2
    d.ellipse((c - 0.36 * s, c - 0.36 * s, c + 0.36 * s, c + 0.36 * s), fill=disc,
              outline=(255, 255, 255), width=max(1, s // 40))
    points = []
    for i in range(32):  # a 16-point starburst
        rad = (0.31 if i % 2 == 0 else 0.24) * s
        ang = np.pi * i / 16
        points.append((c + rad * float(np.cos(ang)), c + rad * float(np.sin(ang))))
    d.polygon(points, fill=star)
    _draw_text_centred(d, (int(0.2 * s), int(0.2 * s), int(0.8 * s), int(0.8 * s)), word, ink,
                       int(0.22 * s), stroke=0.08)
    return art.resize((side, side), Image.Resampling.LANCZOS)


def _corner_xy(w: int, h: int, side: int, pos: str, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner for a ``side`` px square at ``pos``, with a 3% margin."""
    margin = int(round(min(w, h) * 0.03))
    free_x, free_y = max(0, w - side - 2 * margin), max(0, h - side - 2 * margin)
    if pos == "random":
        return margin + int(rng.integers(free_x + 1)), margin + int(rng.integers(free_y + 1))
    fx = {"l": 0.0, "c": 0.5, "r": 1.0}["c" if pos == "center" else pos[1]]
    fy = {"t": 0.0, "c": 0.5, "b": 1.0}["c" if pos == "center" else pos[0]]
    return margin + int(round(free_x * fx)), margin + int(round(free_y * fy))


def _sticker(image, rng, size, pos, design):
    """Paste an opaque synthetic sticker: identical pixels on any photo at the same size."""
    w, h = image.size
    side = max(1, min(w, h, int(round(min(w, h) * size))))
    out = image.copy()
    out.paste(_sticker_rgb(side, design), _corner_xy(w, h, side, pos, rng))
    return out


def _f(default: float | None, lo: float | None, hi: float | None, help: str = "", *,
       lo_open: bool = False, hi_open: bool = False) -> Param:
    return Param(float, default, lo, hi, lo_open=lo_open, hi_open=hi_open, help=help)


def _choice(default: str, *choices: str, help: str = "") -> Param:
    return Param(str, default, choices=choices, help=help)


_RESAMPLE_PARAM = _choice("bicubic", *_RESAMPLE, help="PIL resampling filter")
_COLOUR_PARAM = _choice("black", *_COLOURS, help="fill colour")


def _register_builtins() -> None:
    reg = register
    reg("jpeg", _jpeg, {"q": Param(int, 75, 1, 100, help="JPEG quality")},
        "re-encode as JPEG (PIL/libjpeg, 4:2:0 chroma subsampling)")
    reg("webp", _webp, {"q": Param(int, 75, 0, 100, help="WebP quality (lossy)")},
        "re-encode as lossy WebP")
    reg("resize", _resize, {"scale": _f(0.5, 0.01, 8.0, "size factor, <1 shrinks, >1 enlarges"),
                            "resample": _RESAMPLE_PARAM},
        "resize both sides by a factor (aspect ratio kept)")
    reg("aspect", _aspect, {"x": _f(1.3, 0.1, 10.0, "width factor; height is kept"),
                            "resample": _RESAMPLE_PARAM},
        "change the aspect ratio by stretching (x>1) or squeezing (x<1) the width")
    reg("crop", _crop, {
        "center": _f(None, 0.05, 1.0, "keep this central fraction of width and height"),
        "side": _f(None, 0.0, 0.95, "cut this fraction of the width/height off one edge"),
        "edge": _choice("left", "left", "right", "top", "bottom", "random",
                        help="which edge side= cuts (random: drawn from the seed)"),
        "square": Param(bool, False, help="centre crop to the largest square"),
    }, "centre crop (center=F), one-side crop (side=F,edge=E) or square centre crop "
       "(square=true)", check=_crop_check)
    reg("rotate", _rotate, {"deg": _f(5.0, -180.0, 180.0, "degrees counter-clockwise"),
                            "expand": Param(bool, False, help="grow the canvas to fit"),
                            "fill": _COLOUR_PARAM},
        "rotate by an arbitrary angle about the centre (same size; corners filled)")
    reg("rotate90", _rotate90, {"k": Param(int, 1, 1, 3, help="quarter turns counter-clockwise")},
        "rotate by 90, 180 or 270 degrees")
    reg("hflip", _hflip, {}, "mirror left-right")
    reg("vflip", _vflip, {}, "mirror top-bottom")
    reg("brightness", _brightness, {"f": _f(1.3, 0.0, 10.0, "1 = unchanged")},
        "scale brightness (PIL ImageEnhance.Brightness)")
    reg("contrast", _contrast, {"f": _f(0.7, 0.0, 10.0, "1 = unchanged")},
        "scale contrast about the mean grey (PIL ImageEnhance.Contrast)")
    reg("gamma", _gamma, {"g": _f(1.5, 0.05, 20.0, "out = in^(1/g); g>1 brightens midtones")},
        "gamma curve on each channel")
    reg("saturation", _saturation, {"f": _f(0.5, 0.0, 10.0, "1 = unchanged, 0 = grey")},
        "scale colour saturation (PIL ImageEnhance.Color)")
    reg("grayscale", _grayscale, {}, "drop colour (ITU-R 601 luma), stored as RGB")
    reg("blur", _blur, {"radius": _f(2.0, 0.0, 100.0, "Gaussian sigma in pixels",
                                     lo_open=True)},
        "Gaussian blur")
    reg("sharpen", _sharpen, {"percent": Param(int, 150, 1, 1000, help="strength"),
                              "radius": _f(2.0, 0.0, 50.0, "blur radius of the mask",
                                           lo_open=True),
                              "threshold": Param(int, 3, 0, 255, help="minimum change")},
        "unsharp-mask sharpening", primary=False)
    reg("noise", _noise, {"sigma": _f(10.0, 0.0, 128.0, "standard deviation, 0..255 scale")},
        "additive Gaussian noise per pixel and channel (drawn from the seed)")
    reg("banner", _banner, {
        "height": _f(0.2, 0.0, 1.0, "bar height as a fraction of image height",
                     lo_open=True, hi_open=True),
        "text": Param(str, "SAMPLE CAPTION TEXT", help="caption (no , + : =)"),
        "pos": _choice("bottom", "bottom", "top"),
        "bg": _choice("white", *_COLOURS, help="bar colour (text is black on white)"),
        "extend": Param(bool, False, help="add the bar below/above instead of covering"),
    }, "caption bar with text across the image (covering it, or added with extend=true)")
    reg("logo", _logo, {
        "size": _f(0.15, 0.0, 1.0, "logo side as a fraction of the shorter image side",
                   lo_open=True),
        "pos": _choice("br", "br", "bl", "tr", "tl", "center", "random"),
        "opacity": _f(0.6, 0.0, 1.0, "0 = invisible, 1 = opaque"),
    }, "watermark logo overlay, alpha-blended")
    reg("border", _border, {"width": _f(0.05, 0.0, 2.0, "padding on each side, as a fraction "
                                        "of that dimension"),
                            "color": _COLOUR_PARAM},
        "uniform border padding around the image")
    reg("letterbox", _letterbox, {"ratio": _f(1.7778, 0.1, 10.0, "target width/height"),
                                  "color": _COLOUR_PARAM},
        "pad with bars to a target aspect ratio (letterbox/pillarbox)")
    reg("screenshot", _screenshot, {
        "scale": _f(0.8, 0.05, 4.0, "image size factor inside the window (capped to fit)"),
        "canvas": _f(1.25, 0.5, 4.0, "window size as a factor of the image size"),
        "theme": _choice("light", *_THEMES),
    }, "the image rescaled inside a window-like frame (title bar, sidebar), as a screenshot")
    reg("pad", _pad, {
        "ratio": _f(0.5625, 0.1, 10.0, "target width/height (0.5625 = 9:16 story)"),
        "fill": _choice("blur", "blur", *_COLOURS,
                        help="bars: a blurred, enlarged copy of the photo, or a colour"),
        "radius": _f(0.04, 0.0, 0.5, "blur sigma as a fraction of the canvas's longer side",
                     lo_open=True),
    }, "pad to an aspect ratio, photo centred and unscaled; blurred-photo or solid bars")
    reg("frame", _frame, {
        "width": _f(0.06, 0.0, 0.5, "frame width on each side, fraction of the shorter side",
                    lo_open=True),
        "color": _choice("black", *_FRAME_COLOURS, help="moulding colour"),
        "style": _choice("solid", "solid", "double", "mat",
                         help="solid band + inner line, two bands, or moulding + mat"),
    }, "decorative picture frame around the full image")
    reg("meme", _meme, {
        "top": _f(0.18, 0.0, 0.9, "top band height, fraction of the image height (0 = none)"),
        "bottom": _f(0.0, 0.0, 0.9, "bottom band height (0 = none)"),
        "extend": Param(bool, True, help="add the bands outside the picture (false: cover)"),
        "bg": _choice("white", "white", "black", help="band colour; text in the other"),
        "text": Param(str, "WHEN THE PHOTO GETS RESHARED", help="top caption (no , + : =)"),
        "text2": Param(str, "AND STILL MATCHES", help="bottom caption (no , + : =)"),
    }, "meme caption bands, top and/or bottom, big bold text", check=_meme_check)
    reg("rotzoom", _rotzoom, {"deg": _f(4.0, -45.0, 45.0, "degrees counter-clockwise")},
        "rotate and zoom in to fill the frame (same size, no empty corners), like straightening")
    reg("phone", _phone, {
        "theme": _choice("light", *_PHONE_THEMES),
        "scale": _f(1.0, 0.05, 4.0, "screen width as a fraction of the photo width"),
        "ratio": _f(0.4615, 0.2, 1.0, "screen width/height (0.4615 = 9:19.5)"),
    }, "the photo in a phone app's feed post (status bar, header, action row, captions, tabs)")
    reg("sticker", _sticker, {
        "size": _f(0.25, 0.0, 1.0, "sticker side as a fraction of the shorter image side",
                   lo_open=True),
        "pos": _choice("br", "br", "bl", "tr", "tl", "center", "random"),
        "design": Param(int, 0, 0, len(_STICKERS) - 1, help="which synthetic sticker"),
    }, "opaque synthetic sticker pasted on the photo (same pixels on every photo)")


_register_builtins()

# The reference set (recall figures of peers are quoted for exactly these).
REFERENCE_SUITE: list[str] = [
    "jpeg:q=30",
    "resize:scale=0.25",
    "crop:center=0.9",
    "crop:side=0.2",
    "rotate:deg=5",
    "rotate90:k=1",
    "hflip",
    "banner:height=0.2",
    "border:width=0.05",
]

# What `hashlib-ext bench` runs by default: the reference set plus a few more families.
DEFAULT_SUITE: list[str] = REFERENCE_SUITE + [
    "webp:q=50",
    "blur:radius=2",
    "brightness:f=1.3",
    "gamma:g=1.5",
    "noise:sigma=10",
    "logo:size=0.15",
    "screenshot:scale=0.8",
    "jpeg:q=50+crop:center=0.9",
]

# Everyday re-share edits, by family: what a photo goes through when it is reposted, cropped
# for a feed, turned into a story or a meme, or screenshotted. A method can be tuned on these
# settings; ROBUST_UNSEEN_SUITE holds the same families at other settings, for measuring on
# edits it was not tuned on. Where the bars of `pad` go depends on the photo: 9:16 letterboxes
# a landscape photo (bars above and below); 16:9 and 21:9 pillarbox it (bars at the sides).
ROBUST_SUITE: dict[str, list[str]] = {
    "crop": [
        "crop:side=0.1",
        "crop:side=0.15,edge=top",
        "crop:side=0.2,edge=right",
        "crop:side=0.25,edge=bottom",
        "crop:square=true",
    ],
    "pad": [
        "pad:ratio=0.5625",
        "pad:ratio=0.5625,fill=black",
        "letterbox:ratio=1.7778,color=white",
        "pad:ratio=2.3333,fill=gray",
    ],
    "frame": [
        "frame:width=0.06",
        "frame:width=0.1,color=white,style=mat",
        "frame:width=0.05,color=gold,style=double",
    ],
    "caption": [
        "meme:top=0.18",
        "meme:top=0,bottom=0.18",
        "meme:top=0.15,bottom=0.15",
        "meme:top=0.2,extend=false,bg=black",
        "meme:top=0,bottom=0.15,extend=false",
    ],
    "rotzoom": [
        "rotzoom:deg=3",
        "rotzoom:deg=-5",
        "rotzoom:deg=10",
    ],
    "screenshot": [
        "phone:theme=light",
        "phone:theme=dark",
        "screenshot:scale=0.8",
    ],
    "combo": [
        "crop:side=0.15+jpeg:q=50",
        "hflip+crop:side=0.2",
        "pad:ratio=0.5625+meme:top=0.12,extend=false",
        "rotzoom:deg=3+jpeg:q=60",
    ],
}

# The same families at settings ROBUST_SUITE does not use (other fractions, edges, angles,
# ratios, colours, themes and band heights).
ROBUST_UNSEEN_SUITE: dict[str, list[str]] = {
    "crop": [
        "crop:side=0.12,edge=bottom",
        "crop:side=0.18",
        "crop:side=0.22,edge=top",
        "crop:side=0.24,edge=right",
        "crop:center=0.8",
    ],
    "pad": [
        "pad:ratio=0.8",
        "pad:ratio=0.5625,fill=white",
        "pad:ratio=1,fill=black",
        "pad:ratio=1.7778,radius=0.08",
        "letterbox:ratio=0.5625,color=gray",
    ],
    "frame": [
        "frame:width=0.04,color=walnut",
        "frame:width=0.08,color=navy,style=mat",
        "frame:width=0.03,color=red,style=double",
    ],
    "caption": [
        "meme:top=0.12",
        "meme:top=0,bottom=0.25,bg=black",
        "meme:top=0.1,bottom=0.1,bg=black",
        "meme:top=0,bottom=0.22,extend=false",
        "meme:top=0.12,bottom=0.12,extend=false,bg=black",
    ],
    "rotzoom": [
        "rotzoom:deg=-2",
        "rotzoom:deg=6",
        "rotzoom:deg=-8",
    ],
    "screenshot": [
        "phone:theme=dark,scale=0.75",
        "phone:theme=light,scale=1.5,ratio=0.5",
        "screenshot:scale=0.6,theme=dark",
    ],
    "combo": [
        "crop:side=0.1,edge=top+webp:q=40",
        "hflip+crop:side=0.12,edge=bottom",
        "pad:ratio=0.8,fill=white+meme:top=0,bottom=0.1",
        "rotzoom:deg=-4+jpeg:q=40",
    ],
}

# The edits most hashes already survive: recompression, rescaling, colour, blur, noise, a
# small overlay, mirroring and quarter turns.
EASY_SUITE: list[str] = [
    "jpeg:q=30",
    "webp:q=50",
    "resize:scale=0.5",
    "resize:scale=0.25",
    "brightness:f=1.3",
    "saturation:f=0.5",
    "gamma:g=1.5",
    "blur:radius=2",
    "noise:sigma=10",
    "logo:size=0.15",
    "hflip",
    "rotate90:k=1",
    "rotate90:k=2",
    "rotate90:k=3",
]
