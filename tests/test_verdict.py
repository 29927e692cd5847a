"""The benchmark verdict: transform families, measured vs modelled FPR, and the choice of
algorithm and threshold, on histograms whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hashlib_ext.evaluate import families as fam
from hashlib_ext.evaluate import transforms as T
from hashlib_ext.evaluate import verdict
from hashlib_ext.evaluate.fprmodel import FprModel
from hashlib_ext.evaluate.run import BenchConfig, summarise

# -- families -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, family", [
    ("jpeg:q=30", "recompress"), ("webp:q=50", "recompress"), ("resize:scale=0.25", "resize"),
    ("gamma:g=1.5", "colour"), ("noise:sigma=10", "filter"), ("logo:size=0.15", "overlay"),
    ("hflip", "mirror/turn"), ("rotate90:k=1", "mirror/turn"), ("rotate:deg=5", "rotate"),
    ("crop:side=0.2", "crop"), ("border:width=0.05", "frame"), ("banner:height=0.2", "caption"),
    ("screenshot:scale=0.8", "screenshot"), ("jpeg:q=50+crop:center=0.9", "combo"),
    ("jpeg:q=50+webp:q=40", "recompress"),  # one family, composed
])
def test_family_of(spec, family):
    assert fam.family_of(spec) == family


def test_families_agree_with_the_suites_grouping():
    for suite in (T.ROBUST_SUITE, T.ROBUST_UNSEEN_SUITE):
        for key, specs in suite.items():
            want = "rotate" if key == "rotzoom" else key
            assert {fam.family_of(s) for s in specs} == {want}, key


def test_every_builtin_transform_has_a_family():
    for name in T.catalogue():
        assert fam.family_of(name) != "other", name
    assert fam.family_of("user-made:x=1") == "other"


def test_group_orders_by_family_and_keeps_spec_order():
    g = fam.group(["hflip", "jpeg:q=30", "rotate90:k=1", "webp:q=50"])
    assert list(g) == ["recompress", "mirror/turn"]
    assert g["mirror/turn"] == ["hflip", "rotate90:k=1"]


def test_dihedral_columns_also_handle_mirrors_and_turns():
    assert "mirror/turn" not in fam.designed_families("pdq")
    assert fam.designed_families("pdq-dihedral") == fam.designed_families("pdq") | {
        "mirror/turn"}


# -- measured or modelled -------------------------------------------------------------------

def test_upper_bound_is_the_rule_of_three_for_zero_events():
    for pairs in (1000, 32640, 10**6):
        assert verdict.upper_bound(0, pairs) == pytest.approx(3 / pairs, rel=0.01)
    assert verdict.upper_bound(5, 100) > verdict.upper_bound(4, 100) > 0.04
    assert verdict.upper_bound(100, 100) == 1.0
    # one-sided 95 %: the binomial at the bound gives k or fewer with probability 5 %
    ub = verdict.upper_bound(7, 5000)
    assert stats.binom.cdf(7, 5000, ub) == pytest.approx(0.05, abs=1e-6)


def test_measurable_needs_three_over_fpr_pairs():
    assert verdict.is_measurable(1e-3, 3000)
    assert not verdict.is_measurable(1e-3, 2999)
    assert not verdict.is_measurable(1e-3, 496)  # 32 images: 496 pairs cannot show 1e-3


def _binomial_hist(bits: int, pairs: int, seed: int = 0) -> np.ndarray:
    d = np.random.default_rng(seed).binomial(bits, 0.5, size=pairs)
    return np.bincount(d, minlength=bits + 1).astype(np.int64)


def _alg(name: str, diff: np.ndarray, same: dict[str, np.ndarray], **cfg) -> dict:
    return summarise(name, diff, same, BenchConfig(**cfg))


def test_operating_point_measured_when_the_pairs_allow():
    diff = _binomial_hist(64, 50_000)
    alg = _alg("phash", diff, {"jpeg:q=30": np.eye(65, dtype=np.int64)[2] * 10})
    op = verdict.operating_point(alg, 1e-3)  # 50 pairs expected within: measurable
    assert op["basis"] == "measured" and op["model"] is None
    cum = np.cumsum(diff)
    t = op["threshold"]
    assert cum[t] / cum[-1] <= 1e-3 < cum[t + 1] / cum[-1]
    assert op["fpr"] == pytest.approx(cum[t] / cum[-1])
    assert op["observed_pairs"] == cum[t]


def test_operating_point_modelled_below_the_floor_and_capped_by_the_data():
    diff = _binomial_hist(64, 20_000)
    alg = _alg("dhash", diff, {"jpeg:q=30": np.eye(65, dtype=np.int64)[2] * 10})
    target = 1e-7  # 20,000 pairs cannot measure it
    op = verdict.operating_point(alg, target)
    model = verdict.model_of(alg)
    assert op["basis"] == "modelled" and "beta-binomial" in op["model"]
    assert op["threshold"] == model.threshold_for(target)
    assert op["fpr"] == pytest.approx(model.fpr(op["threshold"])) and op["fpr"] <= target
    assert op["pairs_needed"] == math.ceil(3 / target)
    # two unrelated pairs at distance 4 (a near-duplicate the bulk of the data does not
    # show): the modelled threshold may not reach them
    near = diff.copy()
    near[4] += 2
    alg_near = dict(alg, distinct_hist=near.tolist())
    lax = FprModel(64, 500.0, 20.0, 10, 20_002)  # a model that puts distinct pairs far apart
    assert lax.threshold_for(target) > 40
    alg_near["model"] = dict(alg["model"], **lax.to_dict())
    op = verdict.operating_point(alg_near, target)
    assert op["threshold"] == 3 and op["capped_by_data"]
    assert op["observed_pairs"] == 0


def test_operating_point_none_when_even_distance_zero_is_over_budget():
    diff = _binomial_hist(64, 10_000)
    diff[0] += 50  # exact duplicates among the "distinct" images
    alg = _alg("ahash", diff, {"jpeg:q=30": np.eye(65, dtype=np.int64)[0] * 10})
    assert verdict.operating_point(alg, 1e-3)["threshold"] == -1


# -- the recommendation -------------------------------------------------------------------

SPECS = ["jpeg:q=30", "blur:radius=2", "hflip", "crop:side=0.2"]


def _same(bits: int, centre: dict[str, int], n: int = 200) -> dict[str, np.ndarray]:
    out = {}
    for k, spec in enumerate(SPECS):
        d = np.random.default_rng(k).binomial(2 * centre[spec], 0.5, size=n)
        out[spec] = np.bincount(np.minimum(d, bits), minlength=bits + 1).astype(np.int64)
    return out


def _results(algos: dict[str, dict], images: int = 256) -> dict:
    return {"meta": {"images_hashed": images, "algorithms": list(algos),
                     "transforms": SPECS},
            "algorithms": algos, "robust": None}


@pytest.fixture(scope="module")
def three_columns() -> dict:
    diff64 = _binomial_hist(64, 32_640, seed=1)
    diff256_dih = _binomial_hist(256, 65_280, seed=3)
    # "good64" keeps edits close, "poor64" lets them drift: same FPR, different recall
    return _results({
        "good64": _alg("phash", diff64, _same(64, {"jpeg:q=30": 2, "blur:radius=2": 3,
                                                   "hflip": 32, "crop:side=0.2": 12})),
        "poor64": _alg("dhash", diff64, _same(64, {"jpeg:q=30": 9, "blur:radius=2": 10,
                                                   "hflip": 32, "crop:side=0.2": 16})),
        "pdq-dihedral": _alg("pdq-dihedral", diff256_dih,
                             _same(256, {"jpeg:q=30": 10, "blur:radius=2": 12, "hflip": 10,
                                         "crop:side=0.2": 100})),
    })


def test_build_recommends_within_budget_with_labels(three_columns):
    v = verdict.build(three_columns)
    assert v["collection_sizes"] == [256, 1_000_000]
    assert v["budgets"] == {"match": 0.01, "dedup": 1.0}
    recs = {(r["use"], r["n"]): r for r in v["recommendations"]}
    assert set(recs) == {(u, n) for u in ("match", "dedup") for n in (256, 1_000_000)}
    for (use, n), rec in recs.items():
        assert rec["target_fpr"] == pytest.approx(
            (0.01 / n) if use == "match" else 1.0 / (n * (n - 1) / 2))
        for c in rec["candidates"].values():
            if c["threshold"] >= 0:
                assert c["expected_false"] <= rec["budget"] * (1 + 1e-9)
                assert c["basis"] == ("measured" if c["pairs"] * c["target_fpr"] >= 3
                                      else "modelled")
    # the common families: those all three columns are designed for
    assert recs["match", 256]["common_families"] == ["recompress", "filter"]
    # dedup --dihedral compares each pair both ways: twice the comparisons, half the FPR
    dih = recs["dedup", 256]["candidates"]["pdq-dihedral"]
    assert dih["comparisons"] == 256 * 255
    assert dih["target_fpr"] == pytest.approx(recs["dedup", 256]["target_fpr"] / 2)
    assert dih["expected_false"] == pytest.approx(dih["fpr"] * 256 * 255)
    assert recs["dedup", 256]["common_families"] == ["recompress", "filter"]
    # same FPR, better recall: good64 beats poor64
    plain = dict(three_columns, algorithms={a: three_columns["algorithms"][a]
                                            for a in ("poor64", "good64")})
    for rec in verdict.build(plain)["recommendations"]:
        assert rec["choice"] == "good64" and rec["runner_up"] == "poor64"
    # a larger collection needs a tighter threshold
    for a in ("good64", "poor64"):
        assert (recs["match", 1_000_000]["candidates"][a]["threshold"]
                <= recs["match", 256]["candidates"][a]["threshold"])


def test_build_ties_go_to_the_wider_scope_and_mirrors_to_the_dihedral_column(three_columns):
    rec = next(r for r in verdict.build(three_columns)["recommendations"]
               if r["use"] == "match" and r["n"] == 256)
    c = rec["candidates"]
    assert round(c["pdq-dihedral"]["recall_common"], 2) == round(c["good64"]["recall_common"], 2)
    assert c["pdq-dihedral"]["recall_by_family"]["mirror/turn"] > 0.9
    assert rec["choice"] == "pdq-dihedral" and rec["runner_up"] == "good64"
    assert rec["beyond"]["mirror/turn"] == {
        "algorithm": "pdq-dihedral", "threshold": c["pdq-dihedral"]["threshold"],
        "recall": c["pdq-dihedral"]["recall_by_family"]["mirror/turn"], "designed": True}
    assert rec["beyond"]["crop"]["designed"] is False


def test_build_measures_small_collections(three_columns):
    v = verdict.build(three_columns, sizes=[20], budgets=verdict.Budgets(match=0.5, dedup=5))
    for rec in v["recommendations"]:
        for c in rec["candidates"].values():
            assert c["basis"] == "measured", (rec["use"], c["algorithm"])


def test_budgets_and_sizes_are_checked(three_columns):
    with pytest.raises(ValueError, match="match"):
        verdict.Budgets(match=0)
    with pytest.raises(ValueError, match="dedup"):
        verdict.Budgets(dedup=float("nan"))
    with pytest.raises(ValueError, match="sizes"):
        verdict.build(three_columns, sizes=[1])


def test_copies_inside_the_dataset_are_flagged(three_columns):
    assert verdict.build(three_columns)["suspected_copies"] == 0
    algos = {}
    for name, a in three_columns["algorithms"].items():
        diff = list(a["distinct_hist"])
        diff[0] += 3 if name != "poor64" else 5  # 3 exact copies, seen by every column
        algos[name] = dict(a, distinct_hist=diff)
    assert verdict.suspected_copies(dict(three_columns, algorithms=algos)) == 3
