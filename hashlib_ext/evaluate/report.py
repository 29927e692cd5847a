"""Render benchmark results: results.json, PNG plots, report.md and a self-contained report.html.

Input is the dict from :func:`hashlib_ext.evaluate.run.run_benchmark`; nothing here recomputes
metrics except what a table or plot derives directly from the stored histograms. The report
opens with the verdict (:mod:`~hashlib_ext.evaluate.summary`); report.html embeds its plots
(data URIs), so the page stands alone when copied. Plots need matplotlib (the ``report``
extra); without it the report is written without them and says so.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_open
from . import families as fam
from . import plots as plotmod
from .robust_report import mean_recall, measured, robust_sections, robust_tables
from .summary import measured_rate, rate, verdict_tables, verdict_text
from .verdict import upper_bound

__all__ = ["write_report", "tables", "markdown", "render_html"]

Table = tuple[list[str], list[list[str]]]
Section = tuple[str, str, "str | None", "str | None"]


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        if x == 0:
            return "0"
        if abs(x) < 1e-3 or abs(x) >= 1e5:
            return f"{x:.1e}"
        return f"{x:.{digits}f}"
    return str(x)


def _not_measurable(pairs: int) -> str:
    return f"not measurable with {pairs:,} pairs (FPR < {rate(upper_bound(0, pairs))} at 95%)"


# -- tables --------------------------------------------------------------------------------

def _recall_table(res: dict, key: str) -> Table:
    algos = res["meta"]["algorithms"]
    rob = measured(res) if key == "recall_at_default" else None
    skip = {a for a in algos
            if key == "recall_at_target" and not res["algorithms"][a]["target_measurable"]}
    head = ["transform", "family"] + algos + (["robust (default operating point)"] if rob
                                             else [])
    rows = []
    for spec in res["meta"]["transforms"]:
        cells = []
        for a in algos:
            v = res["algorithms"][a]["transforms"][spec].get(key)
            mark = "" if fam.family_of(spec) in fam.designed_families(a) else "*"
            cells.append("n/m" if a in skip else _fmt(v) + mark)
        rows.append([f"`{spec}`", fam.family_of(spec)] + cells
                    + ([_fmt(rob["transforms"][spec]["recall"])] if rob else []))
    if rob:
        rows.append(["**all transforms**", ""] + [""] * len(algos) + [_fmt(mean_recall(rob))])
    return head, rows


def _threshold_table(res: dict) -> Table:
    meta = res["meta"]
    head = ["algorithm", "bits", "distinct pairs", "default threshold",
            "FPR @ default, measured", "FPR @ default, modelled",
            f"threshold @ FPR<={rate(meta['target_fpr'])}, measured",
            f"threshold @ FPR<={rate(meta['model_target_fpr'])}, modelled",
            "AUC, designed families"]
    rows = []
    for a in meta["algorithms"]:
        r = res["algorithms"][a]
        pairs = r["distinct_pairs"]
        t = r["default_threshold"]
        k = int(sum(r["distinct_hist"][: t + 1])) if t >= 0 else 0
        if r["target_measurable"]:
            t_target = str(r["threshold_at_target"]) if r["threshold_at_target"] >= 0 else "none"
        else:
            t_target = _not_measurable(pairs)
        tm = r["model"]["threshold_at_model_target"]
        rows.append([a, str(r["bits"]), f"{pairs:,}", str(t),
                     measured_rate(k, pairs, upper_bound(k, pairs)),
                     rate(r["model"]["fpr_at_default"]), t_target,
                     ("none" if tm < 0 else str(tm)) + " (model)", _fmt(r["auc_designed"], 3)])
    return head, rows


def _family_recall_table(res: dict, rec: dict) -> Table:
    cands = list(rec["candidates"].values())
    fams = [f for f in fam.FAMILIES if any(f in c["recall_by_family"] for c in cands)]
    head = ["family"] + [f"{c['algorithm']} @{c['threshold']}" if c["threshold"] >= 0
                         else f"{c['algorithm']} (none)" for c in cands]
    rows = []
    for f in fams:
        cells = []
        for c in cands:
            v = c["recall_by_family"].get(f)
            mark = "" if f in fam.designed_families(c["algorithm"]) else "*"
            cells.append("–" if c["threshold"] < 0 or v is None else f"{v:.2f}{mark}")
        rows.append([f] + cells)
    return head, rows


def tables(res: dict) -> dict[str, Table]:
    """The report's tables as (header, rows) of strings, keyed by name."""
    out: dict[str, Table] = dict(verdict_tables(res))
    for i, rec in enumerate(res["verdict"]["recommendations"]):
        out[f"family_recall_{i}"] = _family_recall_table(res, rec)
    out["thresholds"] = _threshold_table(res)
    out["recall_default"] = _recall_table(res, "recall_at_default")
    out["recall_target"] = _recall_table(res, "recall_at_target")
    out["recall_model"] = _recall_table(res, "recall_at_model_target")
    out["auc"] = _recall_table(res, "auc")
    out["throughput"] = (
        ["algorithm", "images/s (1 process, decode included)", "ms/image", "images"],
        [[name, _fmt(t["images_per_s"], 1), _fmt(1000 / t["images_per_s"] if t["images_per_s"]
                                                   else None, 2), str(t["images"])]
         for name, t in res["throughput"].items()])
    gof_rows = []
    for a in res["meta"]["algorithms"]:
        m = res["algorithms"][a]["model"]
        g = m["goodness_of_fit"]
        gof_rows.append([a, f"a={m['alpha']:.3g}, b={m['beta']:.3g}", str(m["cutoff"]),
                         _fmt(g["chi2"], 1) + f" / {g['dof']}", _fmt(g["p_value"], 3),
                         _fmt(g["max_abs_log10_ratio"], 2), rate(g["empirical_floor"])])
    out["model_fit"] = (
        ["algorithm", "beta-binomial", "fitted up to distance", "chi² / dof (tail)", "p",
         "max abs log10(model / measured)", "measurable down to (3/pairs)"], gof_rows)
    rob = measured(res)
    if rob:
        out.update(robust_tables(rob))
    return out


# -- sections ------------------------------------------------------------------------------

def _sections(res: dict) -> list[Section]:
    """(title, text, table name, plot name) in report order; shared by Markdown and HTML."""
    meta = res["meta"]
    tf, mtf = rate(meta["target_fpr"]), rate(meta["model_target_fpr"])
    out: list[Section] = [
        ("Every candidate", "Each algorithm at the threshold the budget allows it, for each "
         "use and collection size ('common families': those every column is designed for).",
         "verdict", None),
        ("Transform families and what each hash handles",
         "AUC per family (P(same-image distance < distinct-image distance), ties half; the "
         "family's transforms pooled); ✓: the hash is designed for the family. No AUC is "
         "pooled across families a hash is not built for.", "families", "roc"),
        ("Edits outside the common families",
         "Per family, the column with the best recall at its verdict threshold (among those "
         "designed for the family when any is).", "beyond", None),
    ]
    for i, rec in enumerate(res["verdict"]["recommendations"]):
        head = "match" if rec["use"] == "match" else "dedup"
        out.append((f"Recall per family: {head}, N = {rec['n']:,}",
                    f"At each algorithm's threshold for per-pair FPR <= "
                    f"{rate(rec['target_fpr'])}"
                    + (" (half that for -dihedral columns: each pair is compared both ways)"
                       if rec["use"] == "dedup" else "") + ". *: not designed for the family.",
                    f"family_recall_{i}", "heatmap_verdict" if i == 0 else None))
    floor_note = ("" if all(r["target_measurable"] for r in res["algorithms"].values()) else
                  f" 'n/m': FPR<={tf} is not measurable with this many distinct pairs "
                  "(fewer than 3/FPR), so no threshold is given.")
    out += [
        ("Thresholds",
         "Per-pair false-positive rate (FPR) = share of distinct-image pairs at distance <= "
         "threshold. 'measured' columns count distinct pairs (zero pairs only bounds the FPR "
         "below 3/pairs at 95%); 'modelled' columns are **extrapolated by the fitted model, "
         "not measured** (see 'FPR model'). Use the verdict above to choose; these are the "
         "raw operating points.",
         "thresholds", None),
        ("Recall per transform at each algorithm's default threshold",
         "*: the hash is not designed for the transform's family.", "recall_default",
         "heatmap_default"),
        (f"Recall at the measured FPR<={tf} threshold (`--target-fpr`)", floor_note.strip(),
         "recall_target" if any(r["target_measurable"] for r in res["algorithms"].values())
         else None, None),
        (f"Recall at the modelled FPR<={mtf} threshold (`--model-target-fpr`, MODEL)",
         "Thresholds from the extrapolated FPR model; indicative only.", "recall_model", None),
        ("ROC AUC per transform",
         "P(same-image distance < distinct-image distance), ties counted half.", "auc", None),
        ("Distance distributions",
         "Same-image pairs (the edits each hash is designed for, pooled) against "
         "distinct-image pairs.", None, "histograms"),
        ("Throughput",
         "Hashing from the image source, decode included, one process; 'all (one decode)' "
         "computes every plain algorithm from a single decode.", "throughput", "throughput"),
        ("FPR model (MODEL, extrapolated)",
         "A beta-binomial distribution fitted by censored maximum likelihood to the lower tail "
         "of the distinct-pair distances. Below 3/pairs the FPR values are extrapolations; "
         "the fit statistics say how well the model matches where data exist (pairs share "
         "images, so p-values are optimistic).", "model_fit", "fpr_model"),
    ]
    return out + robust_sections(res)


def _intro(res: dict) -> str:
    m = res["meta"]
    return (
        f"Dataset **{m['dataset']}** ({m['images_hashed']} of {m['images']} images hashed"
        + (f"; licence: {m['licence']}" if m.get("licence") else "")
        + f"), {len(m['transforms'])} transforms, seed {m['seed']}, {m['workers']} worker(s), "
        f"{m['elapsed_seconds']:.0f} s in all. {m['tool']}, Python {m['python']}, {m['machine']}."
    )


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(res: dict, plots: dict[str, str], notes: Sequence[str] = ()) -> str:
    """The report as Markdown, linking the PNGs in ``plots`` (name -> relative path)."""
    t = tables(res)
    parts = ["# Perceptual hash benchmark", "", _intro(res), ""]
    parts += [f"> {n}" for n in notes] + ([""] if notes else [])
    parts += ["## Verdict", "", *verdict_text(res), ""]
    for title, text, table, plot in _sections(res):
        parts += [f"## {title}", ""]
        if text:
            parts += [text, ""]
        if table:
            parts += [_md_table(*t[table]), ""]
        if plot and plot in plots:
            parts += [f"![{title}]({plots[plot]})", ""]
    if res["errors"]:
        parts += ["## Errors", "", f"{len(res['errors'])} item(s) failed:", ""]
        parts += [f"- `{e['id']}` {e['transform'] or '(original)'}: {e['error']}"
                  for e in res["errors"][:50]]
        parts.append("")
    parts += ["Every number is in `results.json`.", ""]
    return "\n".join(parts)


def _inline(text: str) -> str:
    """Escape for HTML, then the few Markdown marks the report uses."""
    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"`(.+?)`", r"<code>\1</code>", s)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)


def render_html(res: dict, plots: dict[str, str], notes: Sequence[str] = ()) -> str:
    """A single HTML page; ``plots`` maps plot names to image sources (file names, or
    ``data:`` URIs for a page that stands alone, as :func:`write_report` writes it)."""
    t = tables(res)
    e = html.escape

    def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        th = "".join(f"<th>{_inline(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                       for r in rows)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"

    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "img{max-width:100%;border:1px solid #eee}.verdict li{margin:.5em 0}"
             ".note{background:#fff6d5;padding:.5em 1em}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Perceptual hash "
             f"benchmark</title><style>{style}</style></head><body>",
             "<h1>Perceptual hash benchmark</h1>", f"<p>{_inline(_intro(res))}</p>"]
    parts += [f"<p class='note'>{_inline(n)}</p>" for n in notes]
    items, rest = [], []
    for line in verdict_text(res):
        if line.startswith("- "):
            items.append(f"<li>{_inline(line[2:])}</li>")
        elif line:
            rest.append(f"<p>{_inline(line)}</p>")
    parts += ["<h2>Verdict</h2>", f"<ul class='verdict'>{''.join(items)}</ul>", *rest]
    for title, text, tab, plot in _sections(res):
        parts.append(f"<h2>{_inline(title)}</h2>")
        if text:
            parts.append(f"<p>{_inline(text)}</p>")
        if tab:
            parts.append(table(*t[tab]))
        if plot and plot in plots:
            parts.append(f"<p><img src='{e(plots[plot])}' alt='{e(title)}'></p>")
    if res["errors"]:
        errs = "".join(f"<li>{e(x['id'])} {e(x['transform'] or '(original)')}: "
                       f"{e(x['error'])}</li>" for x in res["errors"][:50])
        parts.append(f"<h2>Errors</h2><ul>{errs}</ul>")
    parts.append("<p>Every number is in results.json beside this page.</p></body></html>")
    return "\n".join(parts)


# -- files ---------------------------------------------------------------------------------

def _write_atomic(path: Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def _finite(x: Any) -> Any:
    """Strict JSON: non-finite floats (e.g. an infinite rate) become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def write_report(res: dict, out_dir: str | os.PathLike, plots: bool | None = None
                 ) -> dict[str, Path]:
    """Write results.json, the PNG plots, report.md and report.html into ``out_dir``
    (created if needed). Returns name -> path of what was written.

    ``plots``: None draws them when matplotlib is installed and otherwise writes the report
    without them, saying so at its top; True requires them (MissingDependencyError naming
    ``pip install 'hashlib-ext[report]'``); False leaves them out.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "results.json", json.dumps(_finite(res), indent=1, allow_nan=False) + "\n")
    notes: list[str] = []
    drawn: dict[str, str] = {}
    if plots or (plots is None and plotmod.available()):
        drawn = plotmod.plot_all(res, out)
    elif plots is None:
        notes.append("Plots not drawn: matplotlib is not installed "
                     f"(`{plotmod.INSTALL_HINT}`). Every table is complete without them.")
    _write_atomic(out / "report.md", markdown(res, drawn, notes))
    inline = {k: "data:image/png;base64," + base64.b64encode((out / v).read_bytes()).decode()
              for k, v in drawn.items()}
    _write_atomic(out / "report.html", render_html(res, inline, notes))  # self-contained
    written = {"results": out / "results.json", "markdown": out / "report.md",
               "html": out / "report.html"}
    written.update({k: out / v for k, v in drawn.items()})
    return written
