"""Pixels: one decoded image plus lazily cached derived arrays shared between hashers.

:func:`hashlib_ext.imageio.load` yields an oriented PIL image in mode ``RGB`` or ``L``.
Hashers read what they need from a :class:`Pixels`; the first hasher that needs, say, the
grayscale image pays for it and the others reuse it, so hashing several algorithms costs
one decode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image


class Pixels:
    """An oriented image in mode RGB or L, with a per-image cache of derived data."""

    __slots__ = ("image", "_cache")

    def __init__(self, image: Image.Image):
        if image.mode not in ("RGB", "L"):
            raise ValueError(f"Pixels needs an RGB or L image, got mode {image.mode}")
        self.image = image
        self._cache: dict[Any, Any] = {}

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """Return ``make()``, computed once per image for ``key``."""
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = make()
            return value

    @property
    def gray(self) -> Image.Image:
        """The image in mode L, as ``Image.convert("L")`` makes it (what imagehash uses)."""
        if self.image.mode == "L":
            return self.image
        return self.cached("gray", lambda: self.image.convert("L"))

    def rgb_array(self) -> np.ndarray:
        """``(h, w, 3)`` uint8 RGB pixels (grayscale replicated)."""
        return self.cached("rgb", lambda: np.asarray(self.image.convert("RGB")))
