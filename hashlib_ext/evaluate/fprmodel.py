"""A model of the distinct-pair distance distribution, to extrapolate the false-positive rate.

A few hundred images give ~10^4..10^5 distinct pairs, so the empirical per-pair FPR bottoms out
around 1e-5; matching against a 1M-hash list needs rates near 1e-6..1e-9. We fit a
beta-binomial distribution over ``0..bits`` (a binomial whose bit-flip probability varies from
pair to pair — what correlated hash bits look like) to the *lower tail* of the empirical
histogram by censored maximum likelihood: distances up to a cut-off ``c`` count individually,
those above ``c`` only as "above c". The tail therefore sets the shape where it matters, while
the total mass stays anchored. The result is a MODEL: :func:`goodness_of_fit` compares it with
the empirical part it can be checked against, and reports say so.

Median-thresholded hashes (pHash, wHash, PDQ) set exactly half their bits, so the distance of
two of them is always even. When (almost) no odd distances occur, the model lives on that
lattice (``step = 2``): the beta-binomial over ``0..bits`` is folded onto the even distances
(each odd distance's probability split between its two even neighbours), and odd distances
that do occur are counted with the even distance below them (the conservative side).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

__all__ = ["FprModel", "fit", "goodness_of_fit"]

_LOG_S_BOUNDS = (np.log(1e-2), np.log(1e8))  # a + b: strongly overdispersed .. ~binomial


@dataclass(frozen=True)
class FprModel:
    """A fitted beta-binomial over distances ``0..bits``; ``fpr(t)`` is its CDF at ``t``."""

    bits: int
    alpha: float
    beta: float
    cutoff: int
    """Largest distance fitted individually (censored above)."""
    n_pairs: int
    step: int = 1
    """1: any distance; 2: even distances only (balanced hashes), the beta-binomial folded."""
    kind: str = "beta-binomial (censored MLE on the lower tail)"

    def log_pmf(self) -> np.ndarray:
        """Log-probability of each distance 0..bits (-inf off the lattice)."""
        return _log_pmf(self.bits, self.alpha, self.beta, self.step)

    def fpr_curve(self) -> np.ndarray:
        """Modelled per-pair FPR for thresholds 0..bits (computed in log space: no underflow
        until ~1e-300)."""
        return np.exp(np.logaddexp.accumulate(self.log_pmf()))

    def fpr(self, threshold: int) -> float:
        if threshold < 0:
            return 0.0
        return float(self.fpr_curve()[min(threshold, self.bits)])

    def threshold_for(self, target: float) -> int:
        """Largest threshold whose modelled FPR is <= ``target`` (-1 if none)."""
        ok = np.nonzero(self.fpr_curve() <= target)[0]
        return int(ok[-1]) if ok.size else -1

    @property
    def mean(self) -> float:
        return self.bits * self.alpha / (self.alpha + self.beta)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "bits": self.bits, "alpha": self.alpha, "beta": self.beta,
            "cutoff": self.cutoff, "n_pairs": self.n_pairs, "step": self.step,
        }


def _log_pmf(bits: int, a: float, b: float, step: int = 1) -> np.ndarray:
    """Log-pmf over 0..bits; with step 2, folded onto the even distances (odd = -inf)."""
    lp = stats.betabinom.logpmf(np.arange(bits + 1), bits, a, b)
    if step == 1:
        return lp
    out = np.full(bits + 1, -np.inf)
    half_odd = lp[1::2] + np.log(0.5)
    even = lp[::2].copy()
    even[:-1] = np.logaddexp(even[:-1], half_odd)  # odd 2k+1 -> half to 2k
    even[1:] = np.logaddexp(even[1:], half_odd)    # .. and half to 2k + 2
    out[::2] = even
    return out


def _lattice(hist: np.ndarray, max_odd_share: float = 0.005) -> tuple[int, np.ndarray]:
    """(step, counts on the lattice 0, step, 2*step, ..): odd counts fold onto the even below."""
    odd = hist[1::2].sum()
    if hist.size - 1 < 4 or (hist.size - 1) % 2 or odd > max_odd_share * hist.sum():
        return 1, hist
    even = hist[::2].copy()
    even[: hist[1::2].size] += hist[1::2]
    return 2, even


def _cutoff(hist: np.ndarray, tail_fraction: float, min_tail: int) -> int:
    cum = np.cumsum(hist)
    need = max(tail_fraction * cum[-1], min(min_tail, cum[-1]))
    return int(np.searchsorted(cum, need))


def fit(hist: np.ndarray, tail_fraction: float = 0.02, min_tail: int = 100) -> FprModel:
    """Fit the model to a distinct-pair histogram (``hist[d]`` pairs at distance ``d``).

    ``tail_fraction``: share of pairs (the smallest distances) fitted individually; 1.0 fits the
    whole distribution. At least ``min_tail`` pairs are always in the fitted part.
    """
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 1 or h.size < 2 or (h < 0).any():
        raise ValueError("hist must be a 1-D array of non-negative counts over 0..bits")
    total = h.sum()
    if total < 2:
        raise ValueError(f"need at least 2 distinct pairs to fit, got {int(total)}")
    if not 0 < tail_fraction <= 1:
        raise ValueError(f"tail_fraction must be in (0, 1], got {tail_fraction}")
    bits = h.size - 1
    step, lh = _lattice(h)
    c = min(lh.size - 1, _cutoff(lh, tail_fraction, min_tail))  # in lattice units
    below, above = lh[: c + 1], lh[c + 1:].sum()

    def nll(theta: np.ndarray) -> float:
        mu, s = special.expit(theta[0]), np.exp(theta[1])
        lp = _log_pmf(bits, mu * s, (1 - mu) * s, step)[::step]
        val = -np.dot(below, lp[: c + 1])
        if above > 0:
            val -= above * special.logsumexp(lp[c + 1:])
        return float(val) if np.isfinite(val) else 1e300

    # Start from the mean of the whole histogram, then a few restarts in overdispersion.
    m = np.clip(np.dot(h, np.arange(bits + 1)) / total / bits, 1e-3, 1 - 1e-3)
    best = None
    for log_s in (np.log(2.0), np.log(30.0), np.log(1e3), np.log(1e6)):
        res = optimize.minimize(
            nll, np.array([special.logit(m), log_s]), method="L-BFGS-B",
            bounds=[(-12.0, 12.0), _LOG_S_BOUNDS],
        )
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None  # the loop above runs at least once
    mu, s = special.expit(best.x[0]), np.exp(best.x[1])
    return FprModel(bits=bits, alpha=float(mu * s), beta=float((1 - mu) * s), cutoff=c * step,
                    n_pairs=int(total), step=step)


def goodness_of_fit(model: FprModel, hist: np.ndarray, min_count: int = 10) -> dict:
    """How well the model matches the empirical histogram where the data can tell.

    Returns: ``chi2``, ``dof`` and ``p_value`` over the fitted tail (bins pooled to an expected
    count >= 5; pairs share images, so the p-value is optimistic), ``max_abs_log10_ratio`` of
    modelled to empirical FPR over thresholds with at least ``min_count`` empirical pairs, and
    ``checks``: (threshold, empirical FPR, model FPR) rows for those thresholds.
    """
    h = np.asarray(hist, dtype=np.float64)
    total = h.sum()
    lh = _lattice(h)[1] if model.step == 2 else h
    expected = np.exp(model.log_pmf()[:: model.step]) * total
    c = model.cutoff // model.step
    obs = np.append(lh[: c + 1], lh[c + 1:].sum())
    exp = np.append(expected[: c + 1], expected[c + 1:].sum())
    o_bins, e_bins, o_acc, e_acc = [], [], 0.0, 0.0
    for o, e in zip(obs, exp, strict=True):  # pool from the low end until expected >= 5
        o_acc, e_acc = o_acc + o, e_acc + e
        if e_acc >= 5:
            o_bins.append(o_acc)
            e_bins.append(e_acc)
            o_acc = e_acc = 0.0
    if o_acc or e_acc:
        if o_bins:
            o_bins[-1] += o_acc
            e_bins[-1] += e_acc
        else:
            o_bins, e_bins = [o_acc], [e_acc]
    o_arr, e_arr = np.array(o_bins), np.array(e_bins)
    chi2 = float(np.sum((o_arr - e_arr) ** 2 / np.maximum(e_arr, 1e-12)))
    dof = max(1, len(o_arr) - 1 - 2)
    emp = np.cumsum(h) / total
    mod = model.fpr_curve()
    lattice = np.arange(h.size) % model.step == 0
    ok = np.nonzero((np.cumsum(h) >= min_count) & (np.arange(h.size) <= model.cutoff)
                    & lattice)[0]
    ratios = np.abs(np.log10(np.maximum(mod[ok], 1e-300) / emp[ok])) if ok.size else np.array([])
    return {
        "chi2": chi2,
        "dof": dof,
        "p_value": float(stats.chi2.sf(chi2, dof)),
        "max_abs_log10_ratio": float(ratios.max()) if ratios.size else None,
        "checks": [[int(t), float(emp[t]), float(mod[t])] for t in ok],
        "empirical_floor": float(3.0 / total),
    }
