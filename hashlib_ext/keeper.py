"""Which copy of a duplicate cluster to keep.

The suggestion orders a cluster's members by a list of rules, each breaking the ties of
the ones before it; whatever is still tied goes to the member listed first (the smallest
id). Rules:

``resolution``  more pixels first (read from the image header only: no decode)
``size``        larger file first
``oldest``      earlier modification time first
``newest``      later modification time first
``path``        the name that sorts first

A fact that is unknown (a hash-list key that is no file, an image whose header cannot be
read) sorts after every known one, so members without files never win over files on a
rule that needs them. The default, :data:`DEFAULT_KEEP_BY`, keeps the largest image, then
the largest file (less compressed), then the oldest (most likely the original).
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KEEP_RULES = ("resolution", "size", "oldest", "newest", "path")
"""The rules :func:`keeper_order` knows."""
DEFAULT_KEEP_BY = ("resolution", "size", "oldest")
"""The default order of rules."""


@dataclass(frozen=True)
class FileFacts:
    """What the keeper rules look at, each None where unknown."""

    name: str | None = None
    pixels: int | None = None
    size: int | None = None
    mtime: float | None = None


def parse_keep_by(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"resolution,size,oldest"`` (or a sequence of names) as a checked tuple of rules;
    ``ValueError`` names an unknown or repeated rule, or ``oldest`` with ``newest``."""
    names = [x.strip().lower() for x in (text.split(",") if isinstance(text, str) else text)]
    names = [x for x in names if x]
    if not names:
        raise ValueError(f"no keep rule given; known: {', '.join(KEEP_RULES)}")
    for name in names:
        if name not in KEEP_RULES:
            raise ValueError(f"unknown keep rule {name!r}; known: {', '.join(KEEP_RULES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"keep rule repeated in {','.join(names)}")
    if "oldest" in names and "newest" in names:
        raise ValueError("keep rules 'oldest' and 'newest' contradict each other")
    return tuple(names)


def image_pixels(path: str) -> int | None:
    """Width x height from the image header (Pillow reads no pixel data for ``.size``);
    None when the file is not an image Pillow can open."""
    from PIL import Image

    from . import files  # noqa: F401  (registers the optional HEIF/AVIF decoders)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: only the header is read
            with Image.open(path) as im:
                w, h = im.size
    except Exception:  # noqa: BLE001 - any unreadable header just leaves the fact unknown
        return None
    return int(w) * int(h)


def file_facts(path: str | None, *, image: bool = True) -> FileFacts:
    """The facts of ``path``: size and modification time when it is a regular file, and
    (with ``image``) its pixel count from the header. Anything else: just the name."""
    if path is None:
        return FileFacts()
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return FileFacts(name=path)
    if not stat.S_ISREG(st.st_mode):  # never open a FIFO or device (it could block)
        return FileFacts(name=path)
    return FileFacts(name=path, pixels=image_pixels(path) if image else None,
                     size=int(st.st_size), mtime=float(st.st_mtime))


def _key(rule: str, f: FileFacts) -> tuple[bool, Any]:
    """Sort key of one rule: (unknown, value); unknown sorts last."""
    if rule == "resolution":
        return (f.pixels is None, -(f.pixels or 0))
    if rule == "size":
        return (f.size is None, -(f.size or 0))
    if rule == "oldest":
        return (f.mtime is None, f.mtime or 0.0)
    if rule == "newest":
        return (f.mtime is None, -(f.mtime or 0.0))
    if rule == "path":
        return (f.name is None, f.name or "")
    raise ValueError(f"unknown keep rule {rule!r}")


def keeper_order(facts: Sequence[FileFacts], keep_by: Sequence[str] = DEFAULT_KEEP_BY
                 ) -> list[int]:
    """Indices of ``facts``, best to keep first (ties: the earlier index)."""
    rules = parse_keep_by(keep_by)
    return sorted(range(len(facts)),
                  key=lambda i: (tuple(_key(r, facts[i]) for r in rules), i))


def choose_keeper(facts: Sequence[FileFacts], keep_by: Sequence[str] = DEFAULT_KEEP_BY) -> int:
    """Index of the member to keep (see :func:`keeper_order`)."""
    if not facts:
        raise ValueError("no members to choose from")
    return keeper_order(facts, keep_by)[0]
