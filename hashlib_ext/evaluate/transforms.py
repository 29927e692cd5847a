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
``hashlib-ext bench`` runs by default. See docs/transforms.md.
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
    "REFERENCE_SUITE",
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


def _crop(image, rng, center, side, edge):
    w, h = image.size
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
    if (params["center"] is None) == (params["side"] is None):
        return "give exactly one of center=F (keep the central F) or side=F (cut F off one edge)"
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
                       fill: tuple[int, int, int], size: int) -> None:
    left, top, right, bottom = box
    font = _font(size)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    while x1 - x0 > (right - left) * 0.95 and size > 6:  # shrink until it fits the width
        size = int(size * 0.85)
        font = _font(size)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    x = left + (right - left - (x1 - x0)) // 2 - x0
    y = top + (bottom - top - (y1 - y0)) // 2 - y0
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
    margin = int(round(min(w, h) * 0.03))
    free_x, free_y = max(0, w - side - 2 * margin), max(0, h - side - 2 * margin)
    if pos == "random":
        x, y = margin + int(rng.integers(free_x + 1)), margin + int(rng.integers(free_y + 1))
    else:
        fx = {"l": 0.0, "c": 0.5, "r": 1.0}["c" if pos == "center" else pos[1]]
        fy = {"t": 0.0, "c": 0.5, "b": 1.0}["c" if pos == "center" else pos[0]]
        x, y = margin + int(round(free_x * fx)), margin + int(round(free_y * fy))
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
    if w / h < ratio:  # too narrow: pad left and right
        cw, ch = max(w, int(round(h * ratio))), h
    else:  # too wide: pad top and bottom
        cw, ch = w, max(h, int(round(w / ratio)))
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
    }, "centre crop (center=F) or one-side crop (side=F,edge=E)", check=_crop_check)
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
