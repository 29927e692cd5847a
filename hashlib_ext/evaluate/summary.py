"""The verdict in words and tables: the top of the benchmark report.

Renders :func:`hashlib_ext.evaluate.verdict.build`'s dict as Markdown-flavoured text (bold,
italics, code spans; :mod:`~hashlib_ext.evaluate.report` converts them for the HTML page).
Every FPR carries its basis: *measured* (with the pairs seen within the threshold) or
*modelled* (named, with what the data bound it to).
"""

from __future__ import annotations

import math
from typing import Any

from . import families as fam

__all__ = ["rate", "measured_rate", "fpr_text", "command", "verdict_text", "verdict_tables"]

Table = tuple[list[str], list[list[str]]]
FEW_PAIRS = 10_000
"""Below this many distinct pairs the verdict says its model is loosely fixed."""


def rate(x: float | None) -> str:
    """A rate or a small expected count: two significant digits, scientific when small."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return "0" if x == 0 else f"{x:.2g}"


def measured_rate(k: int, pairs: int, upper95: float) -> str:
    """``k`` of ``pairs`` distinct pairs, as a measured rate or a 95 % bound when 0."""
    if k == 0:
        return f"0 of {pairs:,} pairs, FPR < {rate(upper95)} at 95%"
    return f"{k:,} of {pairs:,} pairs = {rate(k / pairs)}"


def fpr_text(c: dict, name_model: bool = False) -> str:
    """The FPR of an operating point with its basis, e.g. ``3.1e-05 modelled (...)``;
    ``name_model`` names the model too."""
    if c["threshold"] < 0:
        return "no threshold meets it"
    seen = measured_rate(c["observed_pairs"], c["pairs"], c["observed_upper95"])
    if c["basis"] == "measured":
        return f"{rate(c['fpr'])} *measured* ({seen})"
    decades = math.log10(3 / c["pairs"] / c["fpr"]) if c["fpr"] else math.inf
    notes = ([c["model"].split(" (")[0] + " tail fit"] if name_model and c.get("model")
             else []) + [
        f"measured within it: {seen}"]
    if decades >= 1:
        d = round(decades)
        notes.append(f"{d} decade{'s' if d != 1 else ''} below what {c['pairs']:,} pairs can "
                     "measure" if math.isfinite(decades) else "the model gives 0")
    if c.get("capped_by_data"):
        notes.append("the model's threshold lowered to what the measured pairs allow")
    if c.get("model_fit_warning"):
        notes.append("the model misses the measured FPR by more than 2x somewhere: "
                     "treat with care")
    return f"{rate(c['fpr'])} *modelled* ({'; '.join(notes)})"


def command(use: str, algorithm: str, threshold: int) -> str:
    """The CLI call that applies a recommendation (for match, INDEX holds ``algorithm``'s
    hashes, without the ``-dihedral`` suffix)."""
    base, dihedral = algorithm.removesuffix("-dihedral"), algorithm.endswith("-dihedral")
    if use == "dedup":
        return f"hashlib-ext dedup DIR -a {base} -t {threshold}" + (" --dihedral" if dihedral
                                                                    else "")
    return f"hashlib-ext match INDEX QUERIES -t {threshold}" + (" --dihedral" if dihedral else "")


def _use_title(rec: dict) -> str:
    return f"{'Match' if rec['use'] == 'match' else 'Dedup'}, N = {rec['n']:,}"


def _budget_text(rec: dict) -> str:
    what = ("false matches per query" if rec["use"] == "match"
            else "false pairs in the collection")
    text = (f"budget <= {rate(rec['budget'])} expected {what}, so per-pair FPR <= "
            f"{rate(rec['target_fpr'])}")
    if rec["use"] == "dedup" and any(a.endswith("-dihedral") for a in rec["candidates"]):
        text += ", half that for rotation/flip matching"
    return text


def _expected_text(rec: dict, x: float | None) -> str:
    what = "false matches per query" if rec["use"] == "match" else "false pairs"
    return f"{rate(x)} expected {what}"


def _one(rec: dict) -> str:
    head = f"**{_use_title(rec)}** ({_budget_text(rec)}): "
    if rec["choice"] is None:
        return head + "no benchmarked algorithm reaches this budget at any threshold."
    c = rec["candidates"][rec["choice"]]
    fams = ", ".join(rec["common_families"]) or "each one's own designed families"
    base = c["algorithm"].removesuffix("-dihedral")
    on = f", on an index of {base} hashes" if rec["use"] == "match" else ""
    text = (f"{head}use **{c['algorithm']} at threshold {c['threshold']}** "
            f"(`{command(rec['use'], c['algorithm'], c['threshold'])}`{on}). FPR "
            f"{fpr_text(c, name_model=True)}, so {_expected_text(rec, c['expected_false'])}; "
            f"recall {c['recall_common']:.2f} on {fams}.")
    if rec["runner_up"]:
        r = rec["candidates"][rec["runner_up"]]
        text += (f" Runner-up: {r['algorithm']} at {r['threshold']} (recall "
                 f"{r['recall_common']:.2f}, {_expected_text(rec, r['expected_false'])}).")
    return text


def verdict_text(res: dict) -> list[str]:
    """Paragraphs of the verdict: one per use and collection size, then the rules."""
    v = res["verdict"]
    out = [f"- {_one(rec)}" for rec in v["recommendations"]]
    pairs = min(a["distinct_pairs"] for a in res["algorithms"].values())
    if pairs < FEW_PAIRS:
        out += ["", (f"**Few pairs:** {pairs:,} distinct pairs fix the model's tail only "
                     f"loosely; benchmark a few hundred of your own images (`--dataset DIR`; "
                     f"300 give {300 * 299 // 2:,} pairs) for a verdict to rely on.")]
    if v.get("suspected_copies"):
        out += ["", (f"**Check the dataset:** {v['suspected_copies']:,} pairs of its images are "
                     f"within every algorithm's default threshold, most likely copies of one "
                     f"photo. The benchmark counts them as false matches, which lowers every "
                     f"threshold above; remove them (`hashlib-ext dedup`) and run it again.")]
    b = v["budgets"]
    rob = next((r["robust"] for r in v["recommendations"] if r.get("robust")), None)
    out += ["", (
        f"How to read this. **Match**: a query against N stored hashes; expected false "
        f"matches per query = N x FPR(t), budget {rate(b['match'])} (`--match-budget`). "
        f"**Dedup**: every pair of N images (N(N-1)/2 pairs); expected false pairs = "
        f"N(N-1)/2 x FPR(t), budget {rate(b['dedup'])} in the whole collection "
        f"(`--dedup-budget`); with more, unrelated images start to chain into clusters. N: "
        f"`--collection-size`. The threshold is the largest whose FPR keeps within the "
        f"budget. An FPR is *measured* when the benchmark saw at least 3/FPR distinct pairs "
        f"(zero false pairs in P pairs only bounds the FPR below 3/P at 95%); below that it "
        f"is *modelled* by the beta-binomial tail fit (section 'FPR model'), never above the "
        f"largest threshold the measured pairs allow. The algorithm with the best recall "
        f"(two decimals) on the families every column is designed for wins; ties go to the "
        f"better recall over all benchmarked families, then to fewer expected false matches. "
        f"Dedup with rotation/flip matching (`dedup --dihedral`) compares each pair both "
        f"ways, so an X-dihedral column counts N(N-1) comparisons there (a union bound)."
        + (f" RobustIndex (the robust column, default operating point, modelled per-pair "
           f"FPR {rate(rob['fpr_modelled'])}) covers edits no hash is designed for; see the "
           f"table below." if rob else ""))]
    return out


def verdict_tables(res: dict) -> dict[str, Table]:
    """``verdict`` (every candidate per use and N), ``families`` (what each hash is
    designed for, AUC per family) and ``beyond`` (the best column per other family)."""
    v = res["verdict"]
    algos = res["meta"]["algorithms"]
    rows = []
    for rec in v["recommendations"]:
        for c in rec["candidates"].values():
            mark = " **(verdict)**" if c["algorithm"] == rec["choice"] else ""
            rows.append([_use_title(rec), c["algorithm"] + mark,
                         str(c["threshold"]) if c["threshold"] >= 0 else "none",
                         fpr_text(c), rate(c["expected_false"]),
                         _fmt2(c["recall_common"]), _fmt2(c["recall_all"])])
    out: dict[str, Table] = {"verdict": (
        ["use, collection size", "algorithm", "threshold", "per-pair FPR",
         "expected false (per query / in all)", "recall, common families",
         "recall, all families"], rows)}
    present = [f for f in fam.FAMILIES
               if any(f in res["algorithms"][a]["families"] for a in algos)]
    frows = []
    for f in present:
        some = next(res["algorithms"][a]["families"][f] for a in algos
                    if f in res["algorithms"][a]["families"])
        cells = []
        for a in algos:
            fr = res["algorithms"][a]["families"].get(f)
            auc = _fmt2(fr["auc"]) if fr else "–"
            cells.append(auc + (" ✓" if fr and fr["designed"] else ""))
        frows.append([f, ", ".join(f"`{s}`" for s in some["transforms"])] + cells)
    frows.append(["**designed families pooled**", ""] + [
        _fmt2(res["algorithms"][a].get("auc_designed")) for a in algos])
    out["families"] = (["family", "transforms"] + [f"{a} AUC" for a in algos], frows)
    out["beyond"] = _beyond_table(v)
    return out


def _fmt2(x: Any) -> str:
    return "–" if x is None else f"{x:.2f}"


def _beyond_table(v: dict) -> Table:
    recs = v["recommendations"]
    fams: list[str] = []
    for rec in recs:
        fams += [f for f in rec["beyond"] if f not in fams]
    head = ["family"] + [_use_title(r) for r in recs]
    rob_rec = next((r for r in recs if r.get("robust")), None)
    if rob_rec:
        head.append("robust column (recall)")
    rows = []
    for f in fams:
        row = [f]
        for rec in recs:
            b = rec["beyond"].get(f)
            if b is None:
                row.append("–")
            elif not b["recall"]:
                row.append("no hash finds any")
            else:
                row.append(f"{b['algorithm']} @{b['threshold']}: {_fmt2(b['recall'])}"
                           + ("" if b["designed"] else " (not designed for it)"))
        if rob_rec:
            fr = (rob_rec["robust"]["recall_by_family"] or {}).get(f)
            row.append(_fmt2(fr["recall"]) if fr else "–")
        rows.append(row)
    return head, rows
