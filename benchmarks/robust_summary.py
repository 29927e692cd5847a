"""Summarise a benchmark's robust column by edit family, beside the hashes (Markdown).

    hashlib-ext bench --dataset PATH --suite all --out report/
    python benchmarks/robust_summary.py report/results.json

Families come from the transform suites (``easy``, ``ROBUST_SUITE``,
``ROBUST_UNSEEN_SUITE``); recall is averaged over the queries of a family, and "family
mean" over the families, as the robust-matching targets are stated.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from hashlib_ext.evaluate import transforms as T


def families() -> dict[str, tuple[str, str]]:
    """spec -> (suite, family)."""
    out = {s: ("easy", "easy") for s in T.EASY_SUITE}
    for suite, table in (("tuned", T.ROBUST_SUITE), ("unseen", T.ROBUST_UNSEEN_SUITE)):
        for fam, specs in table.items():
            out.update({s: (suite, fam) for s in specs})
    return out


def summary(res: dict) -> str:
    rob = res["robust"]
    fam_of = families()
    algos = res["meta"]["algorithms"]
    rows: dict[tuple[str, str], dict] = {}
    for spec, t in rob["transforms"].items():
        key = fam_of.get(spec, ("other", spec))
        r = rows.setdefault(key, {"q": 0, "found": 0, "s1": 0, "false": 0,
                                  "hash": {a: [] for a in algos}})
        r["q"] += t["queries"]
        r["found"] += t["found_by_stage1"] + t["found_by_stage2"]
        r["s1"] += t["found_by_stage1"]
        r["false"] += t["false_matches"]
        for a in algos:
            r["hash"][a].append(res["algorithms"][a]["transforms"][spec]["recall_at_default"])
    head = ["suite", "family", "queries", "robust recall", "found by stage 1", "false matches"] \
        + [f"{a} @ default" for a in algos]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    means: dict[str, list[float]] = {}
    for (suite, fam), r in sorted(rows.items()):
        rec = r["found"] / r["q"]
        means.setdefault(suite, []).append(rec)
        lines.append("| " + " | ".join(
            [suite, fam, str(r["q"]), f"{rec:.4f}", f"{r['s1'] / r['q']:.3f}", str(r["false"])]
            + [f"{np.mean(r['hash'][a]):.3f}" for a in algos]) + " |")
    out = ["\n".join(lines), ""]
    out += [f"- {suite}: family mean recall {np.mean(v):.4f} over {len(v)} families"
            for suite, v in means.items()]
    d, m = rob["distinct"], rob["model"]
    out += [
        f"- false matches: {rob['false_matches']} in {rob['false_pairs']} query x other-image "
        f"pairs (empirical rate {rob['empirical_fpr']:.2g})",
        "- shared stickers on different photos: " + "; ".join(
            f"`{x['indexed']}` vs `{x['query']}`: {x['false_matches']} false in {x['pairs']}"
            for x in rob["stickers"]),
        f"- distinct pairs scored without retrieval: {d['pairs']}; raw score histogram "
        f"(0, 1, 2, ...): {d['raw_score_hist'][:12]}; with the copy tests: "
        f"{d['score_hist'][:12]}",
        f"- stage-2 model (raw score, geometric tail): s0={m['stage2']['s0']}, "
        f"P(S>=s0)={m['stage2']['p_s0']:.3g}, decay {m['stage2']['decay']:.3g}; modelled "
        f"FPR at min_score {rob['defaults']['min_score']}: {m['stage2']['fpr_at_default']:.2g}; "
        f"smallest min_score for {m['target_fpr'] / 2:.0e}: {m['stage2']['min_score_for_target']}",
        f"- stage-1 model (beta-binomial per PDQ code pair, union over "
        f"{m['stage1']['union_codes']:.1f} code pairs): modelled FPR at PDQ "
        f"{rob['defaults']['pdq_threshold']}: {m['stage1']['fpr_at_default']:.2g}; largest "
        f"threshold for {m['target_fpr'] / 2:.0e}: {m['stage1']['pdq_threshold_for_target']}; "
        f"smallest distinct min distance seen: "
        f"{next(i for i, c in enumerate(d['min_pdq_hist']) if c)}",
        f"- costs (one process): {json.dumps({k: round(v, 2) for k, v in rob['costs'].items()})}"
        f"; match ms: {json.dumps(rob['match_ms'])}",
    ]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="results.json of a bench run with the robust column")
    args = ap.parse_args()
    with open(args.results, encoding="utf-8") as f:
        print(summary(json.load(f)))


if __name__ == "__main__":
    main()
