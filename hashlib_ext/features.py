"""Local binary features (ORB) on a normalised grey frame, for the robust matching stage.

Images are brought to one working scale before detection (:data:`FRAME_SIDE` on the longer
side), so keypoint positions and the ORB pyramid mean the same thing for a 4000 px original
and a 480 px re-share. OpenCV is an optional dependency (the ``robust`` extra); it is
imported on first use and its absence is reported naming the extra.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image

from .errors import MissingDependencyError

FRAME_SIDE = 640
"""Longer side of the grey frame features are detected in (pixels)."""
EDGE = 15
"""ORB's border margin and patch size half-width at the finest level: keypoints closer
than this to the edge cannot be described, so frames smaller than 4 * EDGE have none."""

OVERSAMPLE = 3
"""Corners detected per keypoint kept (the surplus lets :func:`spread` choose)."""
SPREAD = 8
"""Keypoints are spread over a SPREAD x SPREAD grid of the frame."""
FAST_THRESHOLD = 20
"""FAST corner threshold (OpenCV's default; 12 found a few more corners in flat photos,
changed recall on hard edits by 0.3 % and cost 1.1 ms per image)."""

_LOCAL = threading.local()  # one ORB detector per thread and size: OpenCV objects are not
# documented as safe to share between threads


def require_cv2() -> Any:
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "robust matching needs OpenCV: pip install 'hashlib-ext[robust]' "
            f"(opencv-python-headless) ({e})") from None
    return cv2


def frame(image: Image.Image, side: int = FRAME_SIDE) -> np.ndarray:
    """The grey ``(h, w)`` uint8 working frame of ``image``: longer side ``side`` pixels."""
    w, h = image.size
    f = side / max(w, h)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    grey = image if image.mode == "L" else image.convert("L")
    if size != grey.size:
        grey = grey.resize(size, Image.Resampling.BILINEAR,
                           reducing_gap=None if f > 0.5 else 2.0)
    return np.asarray(grey)


def thumbnail(grey: np.ndarray, side: int) -> np.ndarray:
    """The frame shrunk to ``(side, side)`` by area averaging (aspect not kept): a coarse
    picture of the layout, compared after alignment to tell a copy from two photos that
    only share an object."""
    cv2 = require_cv2()
    return cv2.resize(np.ascontiguousarray(grey), (side, side), interpolation=cv2.INTER_AREA)


def orb(grey: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` ORB keypoints of a grey frame, spread over the picture: ``(xy, desc)``,
    ``xy`` ``(k, 2)`` float32 pixel positions, ``desc`` ``(k, 32)`` uint8 (256-bit rBRIEF).

    :data:`OVERSAMPLE` times ``n`` corners are detected, then kept round-robin over a
    :data:`SPREAD` x :data:`SPREAD` grid (:func:`spread`). Without this, text (a caption
    band, an app's chrome) or a pasted sticker takes most keypoints of a frame, and a crop
    loses them all."""
    cv2 = require_cv2()
    empty = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    if grey.shape[0] < 4 * EDGE or grey.shape[1] < 4 * EDGE or n < 1:
        return empty
    cache = _LOCAL.__dict__.setdefault("orb", {})
    detector = cache.get(n)
    if detector is None:
        detector = cache[n] = cv2.ORB_create(nfeatures=OVERSAMPLE * n, edgeThreshold=EDGE,
                                             patchSize=31, fastThreshold=FAST_THRESHOLD)
    grey = np.ascontiguousarray(grey)
    kps = detector.detect(grey, None)
    if not kps:
        return empty
    xy = np.array([k.pt for k in kps], np.float32)
    keep = spread(xy, np.array([k.response for k in kps], np.float32), grey.shape, n)
    kps, desc = detector.compute(grey, [kps[i] for i in keep.tolist()])
    if desc is None or not kps:
        return empty
    return np.array([k.pt for k in kps], np.float32), np.ascontiguousarray(desc)


def spread(xy: np.ndarray, response: np.ndarray, shape: tuple[int, ...], n: int,
           grid: int | None = None) -> np.ndarray:
    """Indices of at most ``n`` points chosen round-robin over a grid: every cell's
    strongest point, then every cell's second strongest, and so on (ties by strength);
    returned strongest first."""
    grid = SPREAD if grid is None else grid
    h, w = shape[:2]
    cell = (np.minimum((xy[:, 1] * grid / h).astype(np.int64), grid - 1) * grid
            + np.minimum((xy[:, 0] * grid / w).astype(np.int64), grid - 1))
    order = np.lexsort((-response, cell))
    sorted_cells = cell[order]
    rank = np.empty(len(xy), np.int64)
    rank[order] = np.arange(len(xy)) - np.searchsorted(sorted_cells, sorted_cells, "left")
    idx = np.lexsort((-response, rank))[:n]
    return idx[np.argsort(-response[idx], kind="stable")]
