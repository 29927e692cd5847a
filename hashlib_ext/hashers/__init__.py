"""Hasher registry and :func:`hash_image`.

Each algorithm family is one module in this package that calls :func:`register` with a
:class:`HasherSpec`. Hashers take a :class:`~hashlib_ext.pixels.Pixels` (one decoded image
with cached derived arrays) so several algorithms can share one decode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ..errors import UnknownAlgorithmError
from ..hash import Hash, HashArray
from ..pixels import Pixels

# compute(pixels, **params) -> (packed uint8 code of bits/8 bytes, quality or None)
ComputeFn = Callable[..., tuple[np.ndarray, "int | None"]]
# dihedral(pixels, **params) -> ((8, bits/8) uint8 codes, (8,) qualities or None)
DihedralFn = Callable[..., tuple[np.ndarray, "np.ndarray | None"]]


@dataclass(frozen=True)
class HasherSpec:
    """What the registry knows about one algorithm."""

    name: str
    compute: ComputeFn
    bits: Callable[..., int]
    """Hash width in bits for the given params."""
    default_threshold: int
    """Documented starting Hamming threshold at default params
    (see docs/choosing-a-threshold.md)."""
    draft_size: Callable[..., tuple[int, int]] | None = None
    """Smallest decoded (w, h) the ``fast`` (JPEG draft) mode may decode to; None: no fast mode."""
    dihedral: DihedralFn | None = None
    """All 8 rotations/flips from one decode, where the algorithm supports it."""
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    """Default parameters, for documentation and validation."""


_REGISTRY: dict[str, HasherSpec] = {}


def register(spec: HasherSpec) -> HasherSpec:
    """Add an algorithm; a new hasher is one module that calls this at import."""
    if spec.name in _REGISTRY:
        raise ValueError(f"algorithm {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> HasherSpec:
    """The spec for ``name``; :class:`~hashlib_ext.errors.UnknownAlgorithmError` (a
    ``ValueError``) listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownAlgorithmError(
            f"unknown algorithm {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None


def algorithms() -> list[str]:
    """Names of all registered algorithms."""
    return sorted(_REGISTRY)


def expected_bits(name: str) -> int | None:
    """Width of ``name`` at default params, or None for an unregistered (user) name."""
    spec = _REGISTRY.get(name)
    return None if spec is None else spec.bits(**spec.params)


def default_threshold(name: str) -> int:
    """The documented starting Hamming-distance threshold for ``name`` at default params."""
    return get(name).default_threshold


def _check_params(spec: HasherSpec, params: dict[str, Any]) -> None:
    unknown = set(params) - set(spec.params)
    if unknown:
        raise TypeError(
            f"{spec.name} takes no parameter(s) {sorted(unknown)}; it takes {sorted(spec.params)}"
        )


def hash_pixels(pixels: Pixels, algorithm: str, **params: Any) -> Hash:
    """Hash an already-loaded image."""
    spec = get(algorithm)
    _check_params(spec, params)
    code, quality = spec.compute(pixels, **params)
    return Hash(code, spec.name, quality)


def hash_image(
    src: Any,
    algorithm: str | Sequence[str] = "pdq",
    *,
    fast: bool = False,
    dihedral: bool = False,
    max_pixels: int | None = None,
    **params: Any,
) -> Hash | HashArray | dict[str, Hash]:
    """Hash one image.

    ``src`` is a path, bytes, file object, PIL image or uint8 ndarray (HxW, HxWx3, HxWx4).
    With one algorithm name, returns a :class:`Hash`; with a list, a dict name -> Hash computed
    from a single decode. ``dihedral=True`` returns a :class:`HashArray` of the 8
    rotations/flips (algorithms that support it, e.g. PDQ). ``fast=True`` decodes JPEGs at a
    reduced scale (JPEG draft mode): faster, not bit-identical to the reference (see
    docs/benchmarks-hashing.md for the measured disagreement). ``max_pixels`` overrides the
    decompression-bomb limit.
    """
    from ..imageio import load

    names = [algorithm] if isinstance(algorithm, str) else list(algorithm)
    if not names:
        raise ValueError("no algorithm given")
    specs = [get(n) for n in names]
    if len(specs) > 1 and params:
        raise TypeError("parameters can only be given with a single algorithm")
    for spec in specs:
        _check_params(spec, params)

    draft = None
    if fast:
        sizes = []
        for spec in specs:
            if spec.draft_size is None:
                raise ValueError(f"{spec.name} has no fast mode")
            sizes.append(spec.draft_size(**params))
        draft = (max(s[0] for s in sizes), max(s[1] for s in sizes))
    if dihedral:  # argument errors before any decoding
        if len(specs) != 1:
            raise ValueError("dihedral=True takes a single algorithm")
        if specs[0].dihedral is None:
            raise ValueError(f"{specs[0].name} does not support dihedral hashing")
    pixels = Pixels(load(src, draft=draft, max_pixels=max_pixels))

    if dihedral:
        spec = specs[0]
        codes, qualities = cast(DihedralFn, spec.dihedral)(pixels, **params)
        return HashArray(codes, spec.name, qualities)

    if isinstance(algorithm, str):
        return hash_pixels(pixels, algorithm, **params)
    return {spec.name: hash_pixels(pixels, spec.name) for spec in specs}


# Import the algorithm modules so they register themselves.
from . import average, difference, pdq, perceptual, wavelet  # noqa: E402,F401
