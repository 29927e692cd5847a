"""The robust column's part of the benchmark report: tables and sections for
:class:`~hashlib_ext.robust.RobustIndex` (results from :mod:`~hashlib_ext.evaluate.robust_eval`).
"""

from __future__ import annotations

from .summary import measured_rate
from .summary import rate as _rate
from .verdict import upper_bound

__all__ = ["measured", "mean_recall", "robust_tables", "robust_sections"]



def _fmt(x: object, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "0" if x == 0 else (f"{x:.1e}" if abs(x) < 1e-3 else f"{x:.{digits}f}")
    return str(x)


def _thr(t: int) -> str:
    return "none" if t < 0 else str(t)


def measured(res: dict) -> dict | None:
    """The robust column's results, None when it was not measured."""
    rob = res.get("robust")
    return rob if rob and "transforms" in rob else None


def mean_recall(rob: dict) -> float | None:
    """Share of all edited copies RobustIndex found."""
    found = sum(t["found_by_stage1"] + t["found_by_stage2"] for t in rob["transforms"].values())
    return found / rob["queries"] if rob["queries"] else None


def _seen(fpr: float, pairs: int) -> str:
    k = round(fpr * pairs)
    return measured_rate(k, pairs, upper_bound(k, pairs))


def robust_tables(rob: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The robust column's tables as (header, rows), keyed by name."""
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    out["robust_transforms"] = (
        ["transform", "recall", "found by stage 1 (PDQ)", "found by stage 2 (local)",
         "false matches"],
        [[f"`{spec}`", _fmt(t["recall"], 3), str(t["found_by_stage1"]),
          str(t["found_by_stage2"]), str(t["false_matches"])]
         for spec, t in rob["transforms"].items()])
    m, dist, d = rob["model"], rob["distinct"], rob["defaults"]
    s1, s2 = m["stage1"], m["stage2"]
    out["robust_operating"] = (
        ["stage", "default", "measured FPR @ default (distinct pairs)",
         "model FPR @ default (MODEL)", f"model choice for {_rate(m['target_fpr'] / 2)}"],
        [["1: PDQ distance <=", str(d["pdq_threshold"]),
          _seen(dist["empirical_fpr_at_pdq_threshold"], dist["pairs"]),
          _rate(s1["fpr_at_default"]),
          _thr(s1["pdq_threshold_for_target"])],
         ["2: verified score >=", str(d["min_score"]),
          _seen(dist["empirical_fpr_at_min_score"], dist["pairs"]),
          _rate(s2["fpr_at_default"]),
          str(s2["min_score_for_target"])]])
    out["robust_false"] = (
        ["false-match check", "pairs", "false matches", "rate"],
        [["every query vs every other indexed image", str(rob["false_pairs"]),
          str(rob["false_matches"]), _seen(rob["empirical_fpr"], rob["false_pairs"])]] +
        [[f"same sticker, different photos: `{x['indexed']}` vs `{x['query']}`",
          str(x["pairs"]), str(x["false_matches"]),
          _seen(x["false_matches"] / x["pairs"], x["pairs"]) if x["pairs"] else "–"]
         for x in rob["stickers"]])
    c, ms = rob["costs"], rob["match_ms"]
    out["robust_costs"] = (
        ["cost (one process)", "ms"],
        [["describe an image for the index (from file)", _fmt(c.get("index_describe_ms"))],
         ["query: global part (PDQ of boxes, 8 variants)", _fmt(c.get("query_global_ms"))],
         ["query: global + local part", _fmt(c.get("query_full_ms"))],
         [f"match, decided by stage 1 (median of {ms['stage1']['queries']})",
          _fmt(ms["stage1"]["median"], 3)],
         [f"match, ran both stages (median of {ms['stage2']['queries']})",
          _fmt(ms["stage2"]["median"], 3)],
         ["match, ran both stages (p99)", _fmt(ms["stage2"]["p99"], 3)]])
    return out


def robust_sections(res: dict) -> list[tuple[str, str, str | None, str | None]]:
    """(title, text, table name, plot name) of the robust sections, in report order."""
    rob = res.get("robust")
    if not rob:
        return []
    if "skipped" in rob:
        return [("Robust matching", f"Not measured: {rob['skipped']}", None, None)]
    return [
        ("Robust matching (RobustIndex)",
         f"The 'robust' column: RobustIndex over the {rob['images']} originals, every edited "
         "copy as a query, at the library's default operating point (stage 1: PDQ of the "
         "whole image and its content boxes, 8 rotations/flips; stage 2, only when stage 1 "
         "finds nothing: local features verified geometrically). A copy counts as found "
         "when its original is among the matches.", "robust_transforms", None),
        ("Robust operating point",
         f"Distinct pairs scored without retrieval ({rob['distinct']['pairs']} pairs: every "
         "original and a sample of edited queries against other images). The model columns "
         "are **extrapolated by fitted tail models, not measured**: stage 1 a beta-binomial "
         "per PDQ code pair combined over the "
         f"{rob['distinct']['code_pairs_per_image_pair']:.1f} code pairs of an image pair "
         "on average; stage 2 a geometric tail of the *raw* score (covered cells before the "
         "copy tests, an upper bound of the verified score: conservative).",
         "robust_operating", None),
        ("Robust false matches", "Every image returned for a query other than its original "
         "counts as a false match.", "robust_false", None),
        ("Robust costs", "", "robust_costs", None),
    ]


