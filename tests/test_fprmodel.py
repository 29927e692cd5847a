"""The FPR tail model recovers known rates on synthetic binomial / beta-binomial distances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hashlib_ext.evaluate import fprmodel


def _true_threshold(dist, bits: int, target: float) -> int:
    cdf = dist.cdf(np.arange(bits + 1))
    ok = np.nonzero(cdf <= target)[0]
    return int(ok[-1]) if ok.size else -1


CASES = [
    # (bits, distribution) — binomial is uncorrelated bits; beta-binomial correlated ones
    (64, stats.binom(64, 0.5)),
    (256, stats.binom(256, 0.5)),
    (256, stats.betabinom(256, 15.0, 17.0)),
    (64, stats.betabinom(64, 12.0, 14.0)),
]


@pytest.mark.parametrize("tail_fraction", [1.0, 0.02])
@pytest.mark.parametrize("bits,dist", CASES)
def test_fit_recovers_the_true_low_rates(bits, dist, tail_fraction):
    rng = np.random.default_rng(bits)
    sample = dist.rvs(size=40_000, random_state=rng)
    hist = np.bincount(sample, minlength=bits + 1)
    # the sample itself cannot see 1e-6: its smallest distances are far above that threshold
    t_true = _true_threshold(dist, bits, 1e-6)
    assert hist[: t_true + 1].sum() == 0
    model = fprmodel.fit(hist, tail_fraction=tail_fraction)
    assert model.bits == bits and model.n_pairs == 40_000 and model.step == 1
    # the extrapolated rate at the true 1e-6 threshold is right within a factor of 2.5
    ratio = model.fpr(t_true) / dist.cdf(t_true)
    assert 0.4 < ratio < 2.5, ratio
    assert abs(model.threshold_for(1e-6) - t_true) <= 1
    # and it agrees with the empirical part it was fitted on
    gof = fprmodel.goodness_of_fit(model, hist)
    assert gof["max_abs_log10_ratio"] < 0.3
    assert gof["p_value"] > 1e-3


@pytest.mark.parametrize("bits", [64, 256])
def test_balanced_hashes_use_the_even_lattice(bits):
    """Median-thresholded hashes (pHash, PDQ) set exactly half their bits: distances are even,
    d = 2 * (bits/2 - k) with k hypergeometric for independent codes. The folded model must
    recover that known rate."""
    hg = stats.hypergeom(bits, bits // 2, bits // 2)
    rng = np.random.default_rng(bits + 1)
    d = 2 * (bits // 2 - hg.rvs(size=40_000, random_state=rng))
    hist = np.bincount(d, minlength=bits + 1)
    true = np.array([hg.sf(bits // 2 - t // 2 - 1) for t in range(bits + 1)])
    t_true = int(np.nonzero(true <= 1e-6)[0][-1])
    model = fprmodel.fit(hist)
    assert model.step == 2
    assert np.all(np.isneginf(model.log_pmf()[1::2]))
    assert model.fpr_curve()[-1] == pytest.approx(1.0)
    assert 0.4 < model.fpr(t_true) / true[t_true] < 2.5
    assert abs(model.threshold_for(1e-6) - t_true) <= 2
    gof = fprmodel.goodness_of_fit(model, hist)
    assert gof["p_value"] > 1e-3 and gof["max_abs_log10_ratio"] < 0.3


def test_tail_fit_cutoff_and_curve_shape():
    rng = np.random.default_rng(0)
    hist = np.bincount(rng.binomial(64, 0.5, 20_000), minlength=65)
    model = fprmodel.fit(hist, tail_fraction=0.1)
    assert hist[: model.cutoff + 1].sum() >= 0.1 * hist.sum()
    assert hist[: model.cutoff].sum() < 0.1 * hist.sum()
    curve = model.fpr_curve()
    assert curve.shape == (65,)
    assert np.all(np.diff(curve) >= 0) and curve[-1] == pytest.approx(1.0)
    assert model.fpr(-1) == 0.0 and model.fpr(1000) == pytest.approx(1.0)
    assert model.threshold_for(1e-300) == -1
    assert set(model.to_dict()) >= {"kind", "alpha", "beta", "cutoff", "bits", "n_pairs"}


def test_goodness_of_fit_flags_a_wrong_shape():
    # two well-separated populations (e.g. a cluster of similar images) are not beta-binomial
    rng = np.random.default_rng(1)
    sample = np.concatenate([rng.binomial(64, 0.1, 3000), rng.binomial(64, 0.5, 27000)])
    hist = np.bincount(sample, minlength=65)
    model = fprmodel.fit(hist, tail_fraction=1.0)
    gof = fprmodel.goodness_of_fit(model, hist)
    assert gof["p_value"] < 1e-6


@pytest.mark.parametrize("bad", [np.array([5]), np.array([[1, 2]]), np.array([1, -1, 3]),
                                 np.array([1, 0, 0])])
def test_fit_rejects_bad_histograms(bad):
    with pytest.raises(ValueError):
        fprmodel.fit(bad)


def test_fit_rejects_bad_tail_fraction():
    with pytest.raises(ValueError, match="tail_fraction"):
        fprmodel.fit(np.array([1, 5, 9]), tail_fraction=0)
