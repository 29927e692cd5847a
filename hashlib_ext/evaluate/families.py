"""Transform families: which edits belong together, and which ones each hash is built for.

A benchmark reports recall and AUC *per family* rather than pooled over every transform:
pooling mixes edits a hash is designed to survive (re-encoding, resizing, colour, blur,
small overlays) with edits no global hash survives (mirroring, crops of a fifth of the frame,
screenshots), and the pooled number then ranks hashes by how they fail on the latter.

The family of a transform spec comes from the names of its steps, with the same family names
as :data:`~hashlib_ext.evaluate.transforms.ROBUST_SUITE` (whose ``rotzoom`` family is called
``rotate`` here, as it also holds ``rotate``); a composition of steps from different families
is a ``combo``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from . import metrics

__all__ = ["FAMILIES", "GLOBAL_HASH_FAMILIES", "DIHEDRAL_FAMILIES", "family_of", "group",
           "designed_families", "family_metrics", "pooled_designed"]

FAMILIES: dict[str, str] = {
    "recompress": "JPEG/WebP re-encoding",
    "resize": "rescaling, aspect change",
    "colour": "brightness, contrast, gamma, saturation, greyscale",
    "filter": "blur, sharpening, noise",
    "overlay": "a small logo or sticker over the photo",
    "mirror/turn": "mirror images and quarter turns",
    "rotate": "small rotations (with corners, or zoomed to fill)",
    "crop": "centre and one-side crops",
    "frame": "borders and picture frames around the whole photo",
    "pad": "padding or letterboxing to another aspect ratio",
    "caption": "caption bars and meme text",
    "screenshot": "the photo inside a window or an app's feed",
    "combo": "compositions of edits from different families",
    "other": "user-registered transforms",
}
"""Family name -> what it holds, in report order."""

_STEP_FAMILY = {
    "jpeg": "recompress", "webp": "recompress",
    "resize": "resize", "aspect": "resize",
    "brightness": "colour", "contrast": "colour", "gamma": "colour", "saturation": "colour",
    "grayscale": "colour",
    "blur": "filter", "sharpen": "filter", "noise": "filter",
    "logo": "overlay", "sticker": "overlay",
    "hflip": "mirror/turn", "vflip": "mirror/turn", "rotate90": "mirror/turn",
    "rotate": "rotate", "rotzoom": "rotate",
    "crop": "crop",
    "border": "frame", "frame": "frame",
    "pad": "pad", "letterbox": "pad",
    "banner": "caption", "meme": "caption",
    "screenshot": "screenshot", "phone": "screenshot",
}

GLOBAL_HASH_FAMILIES = frozenset({"recompress", "resize", "colour", "filter", "overlay"})
"""What every global hash (aHash, dHash, pHash, wHash, PDQ) is built to survive: the image
is shrunk to a small grid of luminance, so re-encoding, rescaling, global tone changes,
smoothing and a small overlay move few bits. Geometry (mirroring, turns, rotation, crops,
added borders or bars) moves the grid itself."""

DIHEDRAL_FAMILIES = GLOBAL_HASH_FAMILIES | {"mirror/turn"}
"""An ``X-dihedral`` column matches a query through its 8 rotations/flips, so mirror images
and quarter turns are in scope as well."""


def family_of(spec: str) -> str:
    """The family of a transform spec (``"jpeg:q=50+crop:center=0.9"`` -> ``"combo"``)."""
    fams = {_STEP_FAMILY.get(step.partition(":")[0].strip(), "other")
            for step in spec.split("+")}
    return fams.pop() if len(fams) == 1 else "combo"


def group(specs: Iterable[str]) -> dict[str, list[str]]:
    """Specs grouped by family, families in :data:`FAMILIES` order, specs in given order."""
    out: dict[str, list[str]] = {f: [] for f in FAMILIES}
    for s in specs:
        out[family_of(s)].append(s)
    return {f: v for f, v in out.items() if v}


def designed_families(algorithm: str) -> frozenset[str]:
    """The families ``algorithm`` (a benchmark column such as ``pdq-dihedral``) is built
    to handle."""
    return DIHEDRAL_FAMILIES if algorithm.endswith("-dihedral") else GLOBAL_HASH_FAMILIES


def family_metrics(algorithm: str, per_transform: dict[str, dict], distinct_hist: np.ndarray,
                   specs: Sequence[str]) -> dict[str, dict]:
    """Per family: its transforms, the pooled same-image histogram, its pair count, AUC
    against the distinct pairs, and whether ``algorithm`` is designed for it."""
    designed = designed_families(algorithm)
    out: dict[str, dict] = {}
    for fam, members in group(specs).items():
        hists = [np.asarray(per_transform[s]["same_hist"], np.int64) for s in members
                 if per_transform[s].get("pairs")]
        same = np.sum(hists, axis=0) if hists else np.zeros(len(distinct_hist), np.int64)
        out[fam] = {
            "transforms": list(members),
            "designed": fam in designed,
            "pairs": int(same.sum()),
            "same_hist": same.tolist(),
            "auc": metrics.auc(same, distinct_hist) if same.sum() else None,
        }
    return out


def pooled_designed(fams: dict[str, dict]) -> np.ndarray | None:
    """The same-image histogram pooled over the designed families present (None if none)."""
    hists = [np.asarray(f["same_hist"], np.int64) for f in fams.values()
             if f["designed"] and f["pairs"]]
    return np.sum(hists, axis=0) if hists else None
