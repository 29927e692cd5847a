"""A geometric tail model of integer match scores, to extrapolate false-match rates.

Verified local-feature scores of *distinct* image pairs are small integers: almost always
0-4 (RANSAC finds a chance similarity through 2-4 random matches), with a tail that falls
off roughly geometrically. A few hundred images give ~10^5 distinct pairs, so rates below
~1e-5 cannot be measured; we fit ``P(S >= s) = P(S >= s0) * (1 - p) ** (s - s0)`` for
``s >= s0`` by maximum likelihood (the excess ``S - s0`` is geometric, ``p = 1 / (1 +
mean excess)``), with ``s0`` the largest score that still leaves ``min_tail`` pairs in the
tail, and report it as a MODEL, beside the empirical rates it can be checked against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["GeometricTail", "fit_tail", "union_fpr"]


@dataclass(frozen=True)
class GeometricTail:
    """``P(S >= s)`` for distinct pairs: empirical up to ``s0``, geometric beyond."""

    s0: int
    p_s0: float
    """Empirical share of pairs scoring >= s0."""
    decay: float
    """Modelled ratio P(S >= s + 1) / P(S >= s) beyond s0."""
    n_pairs: int
    tail_pairs: int
    kind: str = "geometric tail (MLE on scores >= s0)"

    def fpr(self, s: int) -> float:
        """Modelled share of distinct pairs scoring at least ``s`` (for ``s >= s0``)."""
        if s <= self.s0:
            return self.p_s0
        return float(self.p_s0 * self.decay ** (s - self.s0))

    def threshold_for(self, target: float) -> int:
        """Smallest score whose modelled FPR is <= ``target``."""
        if self.p_s0 <= target:
            return self.s0
        if self.decay <= 0:
            return self.s0 + 1
        steps = np.log(target / self.p_s0) / np.log(self.decay)
        return int(self.s0 + np.ceil(steps - 1e-9))

    def to_dict(self) -> dict:
        return asdict(self)


def fit_tail(hist: np.ndarray, min_tail: int = 30) -> GeometricTail:
    """Fit the tail of a score histogram (``hist[s]`` = pairs scoring ``s``)."""
    hist = np.asarray(hist, np.int64)
    n = int(hist.sum())
    if n == 0:
        raise ValueError("no pairs to fit")
    at_least = np.cumsum(hist[::-1])[::-1]  # at_least[s] = pairs with score >= s
    ok = np.flatnonzero(at_least >= min_tail)
    s0 = int(ok[-1]) if len(ok) else 0
    s = np.arange(len(hist))
    tail = hist[s0:]
    excess = float(np.dot(tail, s[s0:] - s0)) / max(1, int(tail.sum()))
    decay = excess / (1.0 + excess)  # geometric MLE: 1 - p, p = 1 / (1 + mean excess)
    return GeometricTail(s0, float(at_least[s0]) / n, decay, n, int(at_least[s0]))


def union_fpr(per_code: float, codes: float) -> float:
    """Per-image-pair rate of a match through any of ``codes`` code pairs, each matching
    at ``per_code`` (independence; the union bound is ``codes * per_code``)."""
    return float(-np.expm1(codes * np.log1p(-min(per_code, 1.0 - 1e-16))))
