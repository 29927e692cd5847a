"""Descriptors for robust matching: what :class:`~hashlib_ext.robust.RobustIndex` stores
and queries with.

A :class:`Descriptor` has two parts, one per stage of the robust cascade:

* **global**: PDQ codes of the whole image and of up to two *content boxes* found by border
  trimming (:func:`hashlib_ext.trim.content_boxes`: padding, letterbox, frames, caption
  bands, screenshot chrome removed); on the query side each with its 8 rotations/flips;
* **local**: ORB keypoints (position and 256-bit descriptor) of a normalised grey frame
  (:mod:`hashlib_ext.features`). The index side keeps the :data:`INDEX_FEATURES` strongest;
  the query side takes :data:`QUERY_FEATURES` from the frame, from its mirror image and from
  each content box (a caption band or a phone's chrome otherwise takes most keypoints).

:func:`describe` computes both; :func:`describe_global` and :func:`describe_local` compute
one part from a loaded image, so a query can stop after the cheap global part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from . import features, trim
from .hashers import get as get_hasher
from .imageio import load
from .pixels import Pixels

INDEX_FEATURES = 200
"""Keypoints stored per indexed image (the stored size is about 40 bytes each; see
docs/robust.md for recall against this count)."""
QUERY_FEATURES = 500
"""Keypoints taken from each query frame (the full frame, its mirror, each content box)."""
INDEX_THUMB = 16
"""Side of the thumbnail stored per indexed image (256 bytes)."""
QUERY_THUMB = 48
"""Side of the thumbnail of each query frame (sampled after alignment)."""
MIN_QUALITY = 50
"""PDQ codes below this quality (flat, low-texture boxes) are not used for matching."""

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FeatureSet:
    """Keypoints of one grey frame: ``xy`` ``(k, 2)`` float32 pixel positions, ``desc``
    ``(k, 32)`` uint8 ORB descriptors, ``size`` the frame's ``(w, h)``, ``thumb`` the frame
    shrunk to a square uint8 thumbnail (:data:`INDEX_THUMB` or :data:`QUERY_THUMB` px)."""

    xy: np.ndarray
    desc: np.ndarray
    size: tuple[int, int]
    thumb: np.ndarray

    def __len__(self) -> int:
        return len(self.desc)


@dataclass(frozen=True)
class Descriptor:
    """One image, described for robust matching.

    ``pdq``: ``(m, 8, 32)`` uint8 PDQ codes of the full image (row 0) and of each content
    box, each with its 8 dihedral variants on the query side (index side: ``(m, 1, 32)``);
    ``quality``: ``(m,)`` PDQ quality of each row; ``boxes``: the content boxes in the
    source's pixels; ``local``: feature sets (index side: the full frame; query side: full
    frame, mirrored frame, then one per content box), empty until computed.
    """

    size: tuple[int, int]
    pdq: np.ndarray
    quality: np.ndarray
    boxes: tuple[Box, ...]
    local: tuple[FeatureSet, ...]
    query: bool

    @property
    def nbytes(self) -> int:
        return int(self.pdq.nbytes + sum(s.xy.nbytes + s.desc.nbytes + s.thumb.nbytes
                                         for s in self.local))


def describe(src: Any, *, query: bool = False, max_pixels: int | None = None) -> Descriptor:
    """Describe ``src`` (anything :func:`hashlib_ext.load` takes) for robust matching.

    ``query=False`` gives what an index stores; ``query=True`` what a query uses (more
    keypoints, the mirror image, dihedral PDQ). Bad input raises the typed errors of
    :func:`hashlib_ext.load`.
    """
    image = load(src, max_pixels=max_pixels)
    d = describe_global(image, query=query)
    return with_local(d, image)


def describe_pair(src: Any, *, max_pixels: int | None = None
                  ) -> tuple[Descriptor, Descriptor]:
    """``(describe(src), describe(src, query=True))`` from one decode: the index side's
    PDQ codes are the query side's unturned variants, so boxes and PDQ are computed once."""
    image = load(src, max_pixels=max_pixels)
    query = with_local(describe_global(image, query=True), image)
    index = Descriptor(query.size, query.pdq[:, :1], query.quality, query.boxes, (), False)
    return with_local(index, image), query


def describe_global(image: Image.Image, *, query: bool) -> Descriptor:
    """The global (PDQ) part of a descriptor of a loaded RGB or L image."""
    rgb = np.asarray(image)
    boxes = tuple(trim.content_boxes(rgb))
    pdq = get_hasher("pdq")
    dihedral = pdq.dihedral
    if dihedral is None:  # pragma: no cover - PDQ registers its dihedral hasher
        raise RuntimeError("the PDQ hasher has no dihedral variant")
    codes, quality = [], []
    for box in ((0, 0, image.width, image.height),) + boxes:
        part = image if box[2:] == image.size and box[:2] == (0, 0) else image.crop(box)
        px = Pixels(part)
        if query:
            c8, q8 = dihedral(px)
            codes.append(c8)
            quality.append(int(q8[0]) if q8 is not None else 100)
        else:
            c, q = pdq.compute(px)
            codes.append(c.reshape(1, -1))
            quality.append(100 if q is None else int(q))
    return Descriptor(image.size, np.stack(codes).astype(np.uint8),
                      np.array(quality, np.int16), boxes, (), query)


def with_local(d: Descriptor, image: Image.Image) -> Descriptor:
    """``d`` with its local (ORB) part computed from the same loaded image."""
    n = QUERY_FEATURES if d.query else INDEX_FEATURES
    side = QUERY_THUMB if d.query else INDEX_THUMB
    grey = features.frame(image)
    sets = [_features(grey, n, side)]
    if d.query:
        sets.append(_features(np.ascontiguousarray(grey[:, ::-1]), n, side))
        for box in d.boxes:
            sets.append(_features(features.frame(image.crop(box)), n, side))
    return Descriptor(d.size, d.pdq, d.quality, d.boxes, tuple(sets), d.query)


def _features(grey: np.ndarray, n: int, side: int) -> FeatureSet:
    xy, desc = features.orb(grey, n)
    return FeatureSet(xy, desc, (grey.shape[1], grey.shape[0]), features.thumbnail(grey, side))
