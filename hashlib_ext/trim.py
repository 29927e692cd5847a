"""Content boxes: the photo inside padding, frames, caption bands and screenshot chrome.

A re-shared copy often wraps the original in a letterbox, a blurred 9:16 "story" fill, a
frame, a meme caption band or an app's chrome. PDQ tolerates only about 3% of crop per side,
so :func:`content_boxes` finds the photo to a couple of pixels and the matcher hashes the
full image and each box.

Method. Each side is scanned line by line inwards (rows from the top and bottom, columns
from the left and right), each line restricted to the current box, on grey levels (R+G+B).
A line is *clean* when it is uniform (nearly all pixels at its median level) or smooth
(nearly no steep steps along it: a blurred fill, or a few flat colours side by side).
A run of clean lines is background only where it ends at a *straight edge*: the next line
(or one a few lines on, past JPEG ringing and resampling blur) differs from its neighbour
in most of its pixels, as a pasted photo does and a sky fading into trees does not. So
photos whose own borders are smooth (sky, studio white) keep them. Sides are trimmed in
turn until none moves, so chrome in layers (status bar, header, side bar, margin) comes off
a layer per pass, and each trimmed side is inset by 2 px. Two tiers give two boxes:

1. conservative: clean runs ending at a straight edge across at least half the line;
2. aggressive: also runs of *marks* (caption text, status-bar glyphs, icons, menu items)
   short enough to be text and bounded by clean lines of the band's level, clean runs after
   such a band, and straight edges across a quarter of the line.

Only line statistics are computed (vectorised per block of lines, growing only as far as
a scan needs), so an unedited photo costs a few lines per side.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]
"""``(left, top, right, bottom)``, right and bottom exclusive."""

# Levels are sums of R, G and B (0..765); a grey input counts three times.
COLOR_TOL = 30
"""Max distance from a colour for a pixel to count as that colour."""
STEP_TOL = 15
"""Max step between neighbours along a line for a pixel to count as smooth."""
JUMP_TOL = 24
"""Min step between neighbouring lines for a pixel to count towards a jump."""
UNIFORM_FRAC = 0.01
"""A uniform line has at most this fraction of pixels off its median."""
SMOOTH_FRAC = 0.01
"""A smooth line has at most this fraction of steps above STEP_TOL."""
RING, RING_FRAC = 8, 0.45
"""A straight edge may follow a clean run by up to RING lines (JPEG ringing, resampling
blur); all but the last of them with at most RING_FRAC steep steps."""
JUMP_FRAC, JUMP_LOOSE = 0.5, 0.25
"""A smooth run ends at a photo's straight edge when this fraction of the next line jumps
(conservative tier, aggressive tier)."""
BAND_FRAC = 0.1
"""Lines of marks on a band keep at least this fraction of pixels of the band's colour."""
MAX_RUN = 0.25
"""Longest run of marked lines (text, icons), as a fraction of the image's side."""
INSET = 2
"""Pixels taken off each trimmed side."""
MIN_FRAC, MIN_PX = 0.2, 32
"""A box keeps at least this fraction of each side of the image, and this many pixels."""
SAME_FRAC = 0.01
"""A box whose sides all lie within this fraction of another box (or the frame) is dropped."""

_TOP, _BOTTOM, _LEFT, _RIGHT = range(4)
Stats = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _lines(img: np.ndarray, box: Box, side: int) -> np.ndarray:
    """The box's lines ``(n, length, channels)``, ordered from ``side`` inwards (a view)."""
    left, top, right, bottom = box
    sub = img[top:bottom, left:right]
    return (sub, sub[::-1], sub.transpose(1, 0, 2), sub[:, ::-1].transpose(1, 0, 2))[side]


def _grey(lines: np.ndarray) -> np.ndarray:
    """Levels 0..765: the sum of R, G and B, or three times a grey level."""
    first = lines[:, :, 0].astype(np.int16)
    if lines.shape[2] < 3:
        return first * 3
    return first + lines[:, :, 1] + lines[:, :, 2]


def _stats(lines: np.ndarray) -> Stats:
    """Per line: uniform?, smooth?, median level, jump (fraction of pixels that step from
    the previous line; 0 for the first line)."""
    a = _grey(lines)
    ref = np.median(a[:, :: max(1, a.shape[1] // 64)], axis=1).astype(np.int16)
    uni = (np.abs(a - ref[:, None]) > COLOR_TOL).mean(axis=1) <= UNIFORM_FRAC
    steep = (np.abs(np.diff(a, axis=1)) > STEP_TOL).mean(axis=1)
    jump = np.zeros(len(a))
    jump[1:] = (np.abs(np.diff(a, axis=0)) > JUMP_TOL).mean(axis=1)
    return uni, steep, ref, jump


def _run_end(mask: np.ndarray, p: int, end: int) -> int:
    """The first index from ``p`` where ``mask`` (indexed from ``p``) is false, or ``end``."""
    return p + int(np.argmin(mask)) if not mask.all() else end


def _walk(lines: np.ndarray, stats: Stats, limit: int, max_run: int, aggressive: bool) -> int:
    """Lines of background from the edge, from the stats of the first few lines.

    Returns -1 when the answer needs more lines, 0 when the walk reaches ``limit`` (no
    content found: no trim).
    """
    uni, steep, ref, jump = stats
    clean = uni | (steep <= SMOOTH_FRAC)
    thr = JUMP_LOOSE if aggressive else JUMP_FRAC
    n = len(uni)
    end = min(n, limit)
    p = safe = 0  # lines before ``safe`` are confirmed background
    last, band = None, False  # the last clean line's level; marks seen on a band?
    while p < end:
        if clean[p]:  # a pad, a fill or a band of a few flat colours
            e = _run_end(clean[p:end], p, end)
            stop = min(e + RING, end)
            if e == end or (stop < e + RING and n <= limit):
                break
            # a straight edge, perhaps after a few ringing lines (JPEG, resampling)
            edge = jump[p + 1 : stop] >= thr
            edge[e - p + 1 :] &= np.minimum.accumulate(steep[e : stop - 2] <= RING_FRAC)
            if edge.any():  # a photo starts here
                p = safe = p + 1 + int(np.argmax(edge))
                last = ref[p - 1]
                continue
            last = ref[e - 1]
            if band and uni[p:e].all():  # a band with marks ends
                p = safe = e
                continue
            if not aggressive:
                return safe
            p = e
        if not aggressive:
            return safe
        # marks (text, icons) on a band of the last clean line's level, then a clean line;
        # marks at the very edge get a shorter run and the level of their first line
        run = max_run if last is not None else max(RING, max_run // 5)
        level = ref[p] if last is None else last
        e = _run_end(~clean[p : min(end, p + run + 1)], p, min(end, p + run + 1))
        frac = np.sort((np.abs(_grey(lines[p:e]) - level) <= COLOR_TOL).mean(axis=1))
        if e - p > run or frac[0 if last is None else min(3, e - p - 1)] < (
                0.5 if last is None else BAND_FRAC):  # a thin rule may end a band
            return safe
        if e == end:
            break
        if not uni[e] and (last is None or abs(int(ref[e]) - int(last)) > COLOR_TOL):
            return safe  # marks end at a smooth line of another level: not a band
        if uni[e] and p > 0 and uni[p - 1]:  # marks between uniform lines: a band
            safe, band = e, True
        p = e
    return -1 if n <= limit else 0


def _scan(img: np.ndarray, box: Box, side: int, limit: int, aggressive: bool,
          cache: dict[tuple[Box, int], Stats]) -> int:
    """How many lines to trim from ``side`` of ``box``; stats grow only as far as needed."""
    lines = _lines(img, box, side)
    limit = min(limit, lines.shape[0] - 1)
    if limit <= 0 or lines.shape[1] < 2:
        return 0
    max_run = max(4, int(MAX_RUN * img.shape[side // 2]))
    stats = cache.get((box, side))
    while True:
        n = 0 if stats is None else len(stats[0])
        p = -1 if stats is None else _walk(lines, stats, limit, max_run, aggressive)
        if p >= 0:
            return p
        more = _stats(lines[max(0, n - 1) : min(max(8, 2 * n), limit + 1)])
        stats = more if stats is None else _join(stats, more)
        cache[(box, side)] = stats


def _join(a: Stats, b: Stats) -> Stats:
    """Stats of consecutive chunks; ``b`` starts with a repeat of ``a``'s last line."""
    return tuple(np.concatenate((x, y[1:])) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _trim(img: np.ndarray, aggressive: bool, cache: dict[tuple[Box, int], Stats]) -> Box:
    """Trim lines from the four sides until no side moves."""
    h, w = img.shape[:2]
    min_h, min_w = max(MIN_PX, int(MIN_FRAC * h)), max(MIN_PX, int(MIN_FRAC * w))
    b = [0, 0, w, h]
    moved = True
    while moved:
        moved = False
        for side in (_TOP, _BOTTOM, _LEFT, _RIGHT):
            room = (b[3] - b[1] - min_h if side < 2 else b[2] - b[0] - min_w) - 2 * INSET
            n = _scan(img, (b[0], b[1], b[2], b[3]), side, room, aggressive, cache)
            if n:
                b[(1, 3, 0, 2)[side]] += n if side in (_TOP, _LEFT) else -n
                moved = True
    return b[0], b[1], b[2], b[3]


def _inset(box: Box, w: int, h: int) -> Box:
    """Take INSET px off each side that was trimmed."""
    left, top, right, bottom = box
    return (left + INSET if left else 0, top + INSET if top else 0,
            right - INSET if right < w else w, bottom - INSET if bottom < h else h)


def _same(a: Box, b: Box, w: int, h: int) -> bool:
    tol = (SAME_FRAC * w, SAME_FRAC * h) * 2
    return all(abs(x - y) <= t for x, y, t in zip(a, b, tol, strict=True))


def content_boxes(rgb: np.ndarray, max_boxes: int = 2) -> list[Box]:
    """Up to ``max_boxes`` content boxes ``(left, top, right, bottom)`` inside ``rgb``.

    ``rgb`` is an ``(h, w, 3)`` or ``(h, w)`` uint8 array (``(h, w, 1)`` and RGBA work
    too). Boxes come in tier order: the conservative box (pads, frames and fills that end
    at a straight edge), then the aggressive one (also text bands and app chrome). A box
    within 1% of the full frame or of the box before it is dropped, so an unedited photo
    usually gets ``[]``; so do images under 32 px a side. Each box keeps at least 20% and
    32 px of each side.
    """
    img = np.asarray(rgb)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or min(img.shape) < 1 or min(img.shape[:2]) < MIN_PX or max_boxes < 1:
        return []
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    full: Box = (0, 0, w, h)
    out: list[Box] = []
    cache: dict[tuple[Box, int], Stats] = {}
    for aggressive in (False, True):
        box = _inset(_trim(img, aggressive, cache), w, h)
        if not any(_same(box, b, w, h) for b in (full, *out)):
            out.append(box)
    return out[:max_boxes]
