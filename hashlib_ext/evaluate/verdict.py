"""The benchmark's verdict: which algorithm and threshold to use, for matching and for
de-duplication, at the collection sizes the user names.

For a collection of N images:

* **match** (one query against N stored hashes): expected false matches per query
  = N x FPR(t);
* **dedup** (every pair of the N images): expected false pairs = N(N-1)/2 x FPR(t); with
  rotation/flip matching (an ``X-dihedral`` column, ``dedup --dihedral``) a pair links when
  either image's 8 variants come within t of the other, so both directions count:
  N(N-1) x FPR(t), the union bound over the ordered pairs the column measures;

where FPR(t) is the per-pair false-positive rate at threshold t (share of distinct-image
pairs at distance <= t). Each use has a budget of expected false matches; the threshold is
the largest one whose FPR keeps the expected count within it, i.e. FPR(t) <= budget /
comparisons.

Whether that FPR can be *measured* depends on the number P of distinct pairs the benchmark
saw: zero false pairs in P pairs only bounds the FPR below 3/P (95 %, the rule of three), so
a target FPR is measured when P x target >= 3 (at least 3/FPR pairs) and **modelled**
otherwise, by the beta-binomial tail fit of :mod:`~hashlib_ext.evaluate.fprmodel`. A modelled
threshold is never above the largest threshold the data allow (the measured FPR there is
already over the target), and the pairs observed within it are reported beside it.

Among the algorithms that reach the budget, the verdict picks the best mean recall over the
families every benchmarked column is designed for (:mod:`~hashlib_ext.evaluate.families`),
to two decimals; ties go to the better mean recall over all benchmarked families, then to
the fewer expected false matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import stats

from . import families as fam
from . import metrics
from .fprmodel import FprModel

__all__ = ["Budgets", "USES", "RULE_OF_THREE", "DEFAULT_SIZES", "comparisons", "target_fpr",
           "is_measurable", "upper_bound", "operating_point", "suspected_copies", "build"]

RULE_OF_THREE = 3.0
"""A target FPR is measured when distinct pairs x target >= this (0 of P pairs: FPR < 3/P
at 95 %)."""
DEFAULT_SIZES = (1_000_000,)
"""Collection sizes the verdict covers beside the dataset's own size."""
USES = {
    "match": "one query against N stored hashes; budget: expected false matches per query",
    "dedup": "every pair of N images; budget: expected false pairs in the whole collection",
}
MODEL_FIT_LIMIT = 0.3
"""A model whose FPR differs from the measured one by more than this (|log10|, a factor
of 2) where data exist is flagged."""


@dataclass(frozen=True)
class Budgets:
    """Expected false matches allowed: per query (match), in the collection (dedup)."""

    match: float = 0.01
    dedup: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and value > 0 and np.isfinite(value)):
                raise ValueError(f"{f.name} budget must be a positive number, got {value!r}")


def comparisons(use: str, n: int, dihedral: bool = False) -> float:
    """Distinct-image comparisons behind one use: N (a query against N), N(N-1)/2 (every
    pair), or N(N-1) for dedup with rotation/flip matching (each pair in both directions)."""
    if use == "match":
        return float(n)
    if use == "dedup":
        return n * (n - 1) / (1 if dihedral else 2)
    raise ValueError(f"unknown use {use!r}; expected one of {sorted(USES)}")


def target_fpr(use: str, n: int, budgets: Budgets, dihedral: bool = False) -> float:
    """The per-pair FPR that keeps the expected false count of ``use`` at ``n`` in budget."""
    return float(getattr(budgets, use)) / max(comparisons(use, n, dihedral), 1.0)


def is_measurable(target: float, pairs: int) -> bool:
    """Whether ``pairs`` distinct pairs can measure an FPR as small as ``target``."""
    return pairs * target >= RULE_OF_THREE


def upper_bound(k: int, pairs: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of a rate seen ``k`` times in ``pairs`` (Clopper-
    Pearson; 0 of P gives about 3/P at 95 %)."""
    if pairs <= 0:
        return 1.0
    if k >= pairs:
        return 1.0
    return float(stats.beta.ppf(confidence, k + 1, pairs - k))


def model_of(alg: dict) -> FprModel:
    """The fitted FPR model stored in an algorithm's results."""
    m = alg["model"]
    return FprModel(**{f.name: m[f.name] for f in fields(FprModel)})


def operating_point(alg: dict, target: float) -> dict[str, Any]:
    """Largest threshold whose FPR is within ``target``, measured or modelled, for one
    algorithm's results (see the module docstring)."""
    diff = np.asarray(alg["distinct_hist"], np.int64)
    pairs = int(diff.sum())
    cum = np.cumsum(diff)
    t_data = metrics.threshold_for_fpr(diff, target)
    out: dict[str, Any] = {"target_fpr": target, "pairs": pairs,
                           "pairs_needed": int(np.ceil(RULE_OF_THREE / target))}
    if is_measurable(target, pairs):
        t = t_data
        out.update(basis="measured", model=None, capped_by_data=False,
                   fpr=float(cum[t] / pairs) if t >= 0 else None)
    else:
        model = model_of(alg)
        t_model = model.threshold_for(target)
        t = min(t_model, t_data)
        gof = alg["model"].get("goodness_of_fit") or {}
        ratio = gof.get("max_abs_log10_ratio")
        out.update(basis="modelled", model=model.kind, capped_by_data=t_data < t_model,
                   fpr=model.fpr(t) if t >= 0 else None,
                   model_fit_warning=ratio is not None and ratio > MODEL_FIT_LIMIT)
    k = int(cum[t]) if t >= 0 else 0
    out.update(threshold=int(t), observed_pairs=k, observed_upper95=upper_bound(k, pairs))
    return out


def _family_recall(alg: dict, t: int) -> dict[str, float | None]:
    return {name: (metrics.recall_at(np.asarray(f["same_hist"]), t) if f["pairs"] else None)
            for name, f in alg["families"].items()}


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _candidate(name: str, alg: dict, use: str, n: int, budgets: Budgets,
               common: Sequence[str]) -> dict[str, Any]:
    dihedral = name.endswith("-dihedral")
    op = operating_point(alg, target_fpr(use, n, budgets, dihedral))
    t = op["threshold"]
    rec = _family_recall(alg, t)
    own = [f for f, v in alg["families"].items() if v["designed"]]
    fpr = op["fpr"]
    return {
        "algorithm": name, **op,
        "comparisons": comparisons(use, n, dihedral),
        "expected_false": None if fpr is None else fpr * comparisons(use, n, dihedral),
        "recall_by_family": rec,
        "recall_common": _mean([rec[f] for f in common]),
        "recall_designed": _mean([rec[f] for f in own]),
        "recall_all": _mean(list(rec.values())),
    }


def _rank_key(c: dict) -> tuple[float, float, float]:
    return (-round(c["recall_common"] or 0.0, 2), -round(c["recall_all"] or 0.0, 2),
            c["expected_false"] if c["expected_false"] is not None else np.inf)


def _robust_by_family(res: dict) -> dict[str, dict] | None:
    rob = res.get("robust")
    if not rob or "transforms" not in rob:
        return None
    out: dict[str, dict] = {}
    for name, specs in fam.group(rob["transforms"]).items():
        q = sum(rob["transforms"][s]["queries"] for s in specs)
        found = sum(rob["transforms"][s]["found_by_stage1"] + rob["transforms"][s]
                    ["found_by_stage2"] for s in specs)
        out[name] = {"queries": q, "recall": found / q if q else None}
    return out


def _robust_fpr(res: dict) -> float | None:
    rob = res.get("robust")
    if not rob or "model" not in rob:
        return None
    m = rob["model"]
    return float(m["stage1"]["fpr_at_default"] + m["stage2"]["fpr_at_default"])


def _recommend(res: dict, use: str, n: int, budgets: Budgets) -> dict[str, Any]:
    algos = res["algorithms"]
    names = list(algos)
    present = [f for f in fam.FAMILIES if any(f in algos[a]["families"] for a in names)]
    common = [f for f in present
              if all(f in fam.designed_families(a) for a in names)]
    cands = [_candidate(a, algos[a], use, n, budgets, common) for a in names]
    if not common:  # no family every column is designed for: each on its own families
        for c in cands:
            c["recall_common"] = c["recall_designed"]
    usable = sorted((c for c in cands if c["threshold"] >= 0), key=_rank_key)
    out: dict[str, Any] = {
        "use": use, "n": n, "comparisons": comparisons(use, n),
        "budget": float(getattr(budgets, use)), "target_fpr": target_fpr(use, n, budgets),
        "common_families": common,
        "choice": usable[0]["algorithm"] if usable else None,
        "runner_up": usable[1]["algorithm"] if len(usable) > 1 else None,
        "candidates": {c["algorithm"]: c for c in cands},
    }
    out["beyond"] = _beyond(cands, present, common)
    rob_fpr = _robust_fpr(res) if use == "match" else None
    if rob_fpr is not None:
        out["robust"] = {"fpr_modelled": rob_fpr, "expected_false": rob_fpr * n,
                         "recall_by_family": _robust_by_family(res)}
    return out


def _beyond(cands: list[dict], present: Sequence[str], common: Sequence[str]) -> dict:
    """Per family outside the common ones: the best column at its verdict threshold,
    among those designed for the family if any."""
    out = {}
    usable = [c for c in cands if c["threshold"] >= 0]
    for f in present:
        if f in common or not usable:
            continue
        designed = [c for c in usable if f in fam.designed_families(c["algorithm"])]
        pool = designed or usable
        best = max(pool, key=lambda c: (c["recall_by_family"].get(f) or 0.0,
                                         -(c["expected_false"] or 0.0)))
        out[f] = {"algorithm": best["algorithm"], "threshold": best["threshold"],
                  "recall": best["recall_by_family"].get(f), "designed": bool(designed)}
    return out


def suspected_copies(res: dict) -> int:
    """Distinct-image pairs within *every* plain column's default threshold: most likely
    copies of one photo in the dataset (which the benchmark counts as false matches)."""
    counts = [int(sum(a["distinct_hist"][: a["default_threshold"] + 1]))
              for name, a in res["algorithms"].items()
              if not name.endswith("-dihedral") and a["default_threshold"] >= 0]
    return min(counts) if counts else 0


def build(res: dict, sizes: Sequence[int] | None = None,
          budgets: Budgets | None = None) -> dict[str, Any]:
    """The verdict for ``res`` (results of :func:`~hashlib_ext.evaluate.run.run_benchmark`
    whose algorithms carry ``families``): one recommendation per use and collection size.

    ``sizes`` default: the number of images hashed and :data:`DEFAULT_SIZES`.
    """
    budgets = budgets or Budgets()
    if sizes is None:
        sizes = [res["meta"]["images_hashed"], *DEFAULT_SIZES]
    sizes = sorted({int(n) for n in sizes})
    if not sizes or sizes[0] < 2:
        raise ValueError(f"collection sizes must be >= 2, got {sizes}")
    algos = res["algorithms"]
    return {
        "budgets": {"match": budgets.match, "dedup": budgets.dedup},
        "collection_sizes": sizes,
        "suspected_copies": suspected_copies(res),
        "rule": (f"an FPR is measured when distinct pairs x FPR >= {RULE_OF_THREE:g} (0 false "
                 f"pairs in P only bounds FPR < {RULE_OF_THREE:g}/P at 95%), modelled beyond"),
        "designed_families": {a: [f for f in fam.FAMILIES if f in fam.designed_families(a)]
                              for a in algos},
        "recommendations": [_recommend(res, use, n, budgets) for use in USES for n in sizes],
    }
