"""Render benchmark results: results.json, PNG plots, report.md and a self-contained report.html.

Input is the dict from :func:`hashlib_ext.evaluate.run.run_benchmark`; nothing here recomputes
metrics except what a plot derives directly from the stored histograms.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_open

__all__ = ["write_report", "tables", "markdown", "render_html", "plot_all"]

PLOTS = {
    "roc": "roc.png",
    "heatmap_target": "recall_heatmap.png",
    "heatmap_default": "recall_heatmap_default.png",
    "histograms": "distance_histograms.png",
    "throughput": "throughput.png",
    "fpr_model": "fpr_model.png",
}


# -- tables --------------------------------------------------------------------------------

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


def _rate(x: float | None) -> str:
    """A rate such as an FPR: two significant digits, scientific when small."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return "0" if x == 0 else f"{x:.2g}"


def _thr(t: int) -> str:
    """A threshold; -1 means no threshold meets the FPR budget."""
    return "none" if t < 0 else str(t)


def _robust(res: dict) -> dict | None:
    """The robust column's results, None when it was not measured."""
    rob = res.get("robust")
    return rob if rob and "transforms" in rob else None


def _recall_table(res: dict, key: str) -> tuple[list[str], list[list[str]]]:
    algos = res["meta"]["algorithms"]
    rob = _robust(res) if key.startswith("recall") else None
    head = ["transform"] + algos + (["robust (default operating point)"] if rob else [])
    rows = []
    for spec in res["meta"]["transforms"]:
        rows.append([f"`{spec}`"] + [
            _fmt(res["algorithms"][a]["transforms"][spec].get(key)) for a in algos
        ] + ([_fmt(rob["transforms"][spec]["recall"])] if rob else []))
    pooled = "recall_pooled_at_target" if key == "recall_at_target" else "recall_pooled_at_default"
    if key in ("recall_at_target", "recall_at_default"):
        rows.append(["**all transforms**"] + [_fmt(res["algorithms"][a][pooled]) for a in algos]
                    + ([_fmt(_mean_recall(rob))] if rob else []))
    return head, rows


def _mean_recall(rob: dict) -> float | None:
    found = sum(t["found_by_stage1"] + t["found_by_stage2"] for t in rob["transforms"].values())
    return found / rob["queries"] if rob["queries"] else None


def _robust_tables(rob: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
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
        ["stage", "default", "empirical FPR @ default (distinct pairs)",
         "model FPR @ default (MODEL)", f"model choice for {_rate(m['target_fpr'] / 2)}"],
        [["1: PDQ distance <=", str(d["pdq_threshold"]),
          _rate(dist["empirical_fpr_at_pdq_threshold"]), _rate(s1["fpr_at_default"]),
          _thr(s1["pdq_threshold_for_target"])],
         ["2: verified score >=", str(d["min_score"]),
          _rate(dist["empirical_fpr_at_min_score"]), _rate(s2["fpr_at_default"]),
          str(s2["min_score_for_target"])]])
    out["robust_false"] = (
        ["false-match check", "pairs", "false matches", "rate"],
        [["every query vs every other indexed image", str(rob["false_pairs"]),
          str(rob["false_matches"]), _rate(rob["empirical_fpr"])]] +
        [[f"same sticker, different photos: `{x['indexed']}` vs `{x['query']}`",
          str(x["pairs"]), str(x["false_matches"]),
          _rate(x["false_matches"] / x["pairs"] if x["pairs"] else None)]
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


def tables(res: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report's tables as (header, rows) of strings, keyed by name."""
    meta = res["meta"]
    algos = meta["algorithms"]
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    head = ["algorithm", "bits", f"threshold @ FPR<={_rate(meta['target_fpr'])}",
            "default threshold", "empirical FPR @ default",
            f"model threshold @ FPR<={_rate(meta['model_target_fpr'])}",
            "model FPR @ default", "AUC (all transforms)", "distinct pairs"]
    rows = []
    for a in algos:
        r = res["algorithms"][a]
        rows.append([a, str(r["bits"]), _thr(r["threshold_at_target"]),
                     str(r["default_threshold"]), _rate(r["fpr_at_default"]),
                     _thr(r["model"]["threshold_at_model_target"]),
                     _rate(r["model"]["fpr_at_default"]), _fmt(r["auc_pooled"], 3),
                     str(r["distinct_pairs"])])
    out["thresholds"] = (head, rows)
    out["recall_target"] = _recall_table(res, "recall_at_target")
    out["recall_default"] = _recall_table(res, "recall_at_default")
    out["recall_model"] = _recall_table(res, "recall_at_model_target")
    out["auc"] = _recall_table(res, "auc")
    out["throughput"] = (
        ["algorithm", "images/s (1 process, decode included)", "ms/image", "images"],
        [[name, _fmt(t["images_per_s"], 1), _fmt(1000 / t["images_per_s"] if t["images_per_s"]
                                                   else None, 2), str(t["images"])]
         for name, t in res["throughput"].items()],
    )
    gof_rows = []
    for a in algos:
        m = res["algorithms"][a]["model"]
        g = m["goodness_of_fit"]
        gof_rows.append([a, f"a={m['alpha']:.3g}, b={m['beta']:.3g}", str(m["cutoff"]),
                         _fmt(g["chi2"], 1) + f" / {g['dof']}", _fmt(g["p_value"], 3),
                         _fmt(g["max_abs_log10_ratio"], 2), _rate(g["empirical_floor"])])
    rob = _robust(res)
    if rob:
        out.update(_robust_tables(rob))
    out["model_fit"] = (
        ["algorithm", "beta-binomial", "fitted up to distance", "chi² / dof (tail)", "p",
         "max |log10(model/empirical)|", "empirical FPR floor (3/pairs)"], gof_rows)
    return out


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _robust_sections(res: dict) -> list[tuple[str, str, str | None, str | None]]:
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


def _sections(res: dict) -> list[tuple[str, str, str | None, str | None]]:
    """(title, text, table name, plot name) in report order; shared by Markdown and HTML."""
    return _hash_sections(res) + _robust_sections(res)


def _hash_sections(res: dict) -> list[tuple[str, str, str | None, str | None]]:
    meta = res["meta"]
    tf, mtf = _rate(meta["target_fpr"]), _rate(meta["model_target_fpr"])
    return [
        ("Thresholds",
         f"Per-pair false-positive rate (FPR) = share of distinct-image pairs at distance <= "
         f"threshold. 'threshold @ FPR<={tf}' is the largest threshold whose *empirical* FPR "
         f"stays within {tf} ('none': even distance 0 exceeds it). The model columns are "
         f"**extrapolated by a fitted model, not measured** (see 'FPR model').",
         "thresholds", None),
        (f"Recall at the empirical FPR<={tf} threshold",
         "Share of transformed copies found (distance to their original <= threshold).",
         "recall_target", "heatmap_target"),
        ("Recall at each algorithm's default threshold", "", "recall_default", "heatmap_default"),
        (f"Recall at the model threshold for FPR<={mtf} (MODEL)",
         "Thresholds from the extrapolated FPR model; indicative only.", "recall_model", None),
        ("ROC AUC per transform",
         "P(same-image distance < distinct-image distance), ties counted half.", "auc", "roc"),
        ("Distance distributions",
         "Same-image pairs (all transforms pooled) against distinct-image pairs.",
         None, "histograms"),
        ("Throughput",
         "Hashing from the image source, decode included, one process; 'all (one decode)' "
         "computes every plain algorithm from a single decode.", "throughput", "throughput"),
        ("FPR model (MODEL, extrapolated)",
         "A beta-binomial distribution fitted by censored maximum likelihood to the lower tail "
         "of the distinct-pair distances. Below the empirical floor (about 3/pairs) the FPR "
         "values are extrapolations; the fit statistics say how well the model matches where "
         "data exist (pairs share images, so p-values are optimistic).",
         "model_fit", "fpr_model"),
    ]


def _intro(res: dict) -> str:
    m = res["meta"]
    return (
        f"Dataset **{m['dataset']}** ({m['images_hashed']} of {m['images']} images hashed"
        + (f"; licence: {m['licence']}" if m.get("licence") else "")
        + f"), {len(m['transforms'])} transforms, seed {m['seed']}, {m['workers']} worker(s), "
        f"{m['elapsed_seconds']:.0f} s in all. {m['tool']}, Python {m['python']}, {m['machine']}."
    )


def markdown(res: dict, plots: dict[str, str]) -> str:
    """The report as Markdown, linking the PNGs in ``plots`` (name -> relative path)."""
    t = tables(res)
    parts = ["# Perceptual hash benchmark", "", _intro(res), ""]
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


def render_html(res: dict, plots: dict[str, str]) -> str:
    """A single HTML page; ``plots`` maps plot names to image sources (file names, or
    ``data:`` URIs for a page that stands alone, as :func:`write_report` writes it)."""
    t = tables(res)
    e = html.escape

    def table(head, rows):
        th = "".join(f"<th>{e(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(c.replace('`', '').replace('**', ''))}</td>" for c in r)
            + "</tr>" for r in rows)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"

    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "img{max-width:100%;border:1px solid #eee}")
    intro = e(_intro(res)).replace("**", "")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Perceptual hash "
             f"benchmark</title><style>{style}</style></head><body>",
             "<h1>Perceptual hash benchmark</h1>", f"<p>{intro}</p>"]
    for title, text, tab, plot in _sections(res):
        parts.append(f"<h2>{e(title)}</h2>")
        if text:
            parts.append(f"<p>{e(text).replace('*', '')}</p>")
        if tab:
            parts.append(table(*t[tab]))
        if plot and plot in plots:
            parts.append(f"<p><img src='{e(plots[plot])}' alt='{e(title)}'></p>")
    if res["errors"]:
        items = "".join(f"<li>{e(x['id'])} {e(x['transform'] or '(original)')}: {e(x['error'])}"
                        "</li>" for x in res["errors"][:50])
        parts.append(f"<h2>Errors</h2><ul>{items}</ul>")
    parts.append("<p>Every number is in <a href='results.json'>results.json</a>.</p></body></html>")
    return "\n".join(parts)


# -- plots ---------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int) -> tuple[int, int]:
    cols = min(3, n)
    return math.ceil(n / cols), cols


def _plot_roc(res: dict, path: Path) -> None:
    plt = _plt()
    algos = res["meta"]["algorithms"]
    specs = res["meta"]["transforms"]
    rows, cols = _grid(len(algos))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4.2 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    styles = ["-", "--", "-.", ":"]
    for ax, a in zip(axes.flat, algos, strict=False):
        r = res["algorithms"][a]
        floor = 1.0 / max(1, r["distinct_pairs"])
        for k, spec in enumerate(specs):
            tr = r["transforms"][spec]
            if not tr.get("pairs"):
                continue
            fpr = np.maximum(np.asarray(tr["roc"]["fpr"]), floor / 2)
            ax.step(fpr, tr["roc"]["tpr"], where="post", color=cmap(k % 10), lw=1.4,
                    ls=styles[(k // 10 + k) % 4] if len(specs) > 10 else "-", label=spec)
        ax.axvline(res["meta"]["target_fpr"], color="k", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlim(floor / 2, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{a} (AUC all = {_fmt(r['auc_pooled'], 3)})")
        ax.set_xlabel("per-pair FPR (log; left edge = below empirical floor)")
        ax.set_ylabel("recall")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(algos):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, 0))
    fig.suptitle("ROC per algorithm (one curve per transform); dotted: target FPR")
    fig.tight_layout(rect=(0, 0.03 + 0.025 * math.ceil(len(labels) / 5), 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_heatmap(res: dict, path: Path, key: str, title: str) -> None:
    plt = _plt()
    algos = res["meta"]["algorithms"]
    specs = res["meta"]["transforms"]
    m = np.array([[res["algorithms"][a]["transforms"][s].get(key, np.nan) for a in algos]
                  for s in specs], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * len(algos) + 3.5, 0.38 * len(specs) + 1.8))
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(algos)), algos, rotation=30, ha="right")
    ax.set_yticks(range(len(specs)), specs, fontsize=9)
    for i in range(len(specs)):
        for j in range(len(algos)):
            if not np.isnan(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="recall")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_histograms(res: dict, path: Path) -> None:
    plt = _plt()
    algos = res["meta"]["algorithms"]
    rows, cols = _grid(len(algos))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, a in zip(axes.flat, algos, strict=False):
        r = res["algorithms"][a]
        x = np.arange(r["bits"] + 1)
        for hist, label, color in ((r["same_hist_pooled"], "same image (transformed)", "C0"),
                                   (r["distinct_hist"], "distinct images", "C3")):
            h = np.asarray(hist, float)
            if h.sum():
                ax.fill_between(x, h / h.sum(), step="mid", alpha=0.45, color=color, label=label)
        ax.axvline(r["threshold_at_target"], color="k", ls=":", lw=1.2,
                   label=f"FPR<={_rate(res['meta']['target_fpr'])}: {r['threshold_at_target']}")
        ax.axvline(r["default_threshold"], color="C2", ls="--", lw=1.2,
                   label=f"default: {r['default_threshold']}")
        ax.set_title(a)
        ax.set_xlabel("Hamming distance")
        ax.set_ylabel("share of pairs")
        ax.set_xlim(0, r["bits"])
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(algos):]:
        ax.axis("off")
    fig.suptitle("Distance distributions: same image vs distinct images")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_throughput(res: dict, path: Path) -> None:
    plt = _plt()
    names = list(res["throughput"])
    vals = [res["throughput"][n]["images_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names) + 2), 3.8))
    bars = ax.bar(names, vals, color="C0")
    ax.bar_label(bars, labels=[f"{v:.0f}" for v in vals], fontsize=8)
    ax.set_ylabel("images / s (one process, decode included)")
    ax.set_title("Hashing throughput")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_fpr_model(res: dict, path: Path) -> None:
    plt = _plt()
    algos = res["meta"]["algorithms"]
    rows, cols = _grid(len(algos))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, a in zip(axes.flat, algos, strict=False):
        r = res["algorithms"][a]
        x = np.arange(r["bits"] + 1)
        emp = np.asarray(r["fpr_curve"])
        mod = np.asarray(r["model"]["fpr_curve"])
        ax.semilogy(x[emp > 0], emp[emp > 0], "o", ms=3, color="k", label="empirical")
        ax.semilogy(x, np.maximum(mod, 1e-300), "-", color="C1", label="model (extrapolated)")
        ax.axhline(r["model"]["goodness_of_fit"]["empirical_floor"], color="gray", ls=":",
                   lw=1, label="empirical floor (3/pairs)")
        ax.axhline(res["meta"]["model_target_fpr"], color="C3", ls="--", lw=1,
                   label=f"target {_rate(res['meta']['model_target_fpr'])}")
        ax.axvline(r["model"]["cutoff"], color="C1", ls=":", lw=1, label="fitted up to")
        top = max(r["threshold_at_target"], r["model"]["cutoff"], r["default_threshold"])
        ax.set_xlim(0, min(r["bits"], int(top * 1.5) + 2))
        ax.set_ylim(min(1e-12, res["meta"]["model_target_fpr"] / 10), 1.5)
        ax.set_title(f"{a}: per-pair FPR vs threshold")
        ax.set_xlabel("threshold (Hamming distance)")
        ax.set_ylabel("FPR")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(algos):]:
        ax.axis("off")
    fig.suptitle("Distinct-pair FPR: empirical vs fitted beta-binomial model")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_all(res: dict, out_dir: Path) -> dict[str, str]:
    """Write every plot into ``out_dir``; returns name -> file name."""
    out_dir = Path(out_dir)
    tf = _rate(res["meta"]["target_fpr"])
    _plot_roc(res, out_dir / PLOTS["roc"])
    _plot_heatmap(res, out_dir / PLOTS["heatmap_target"], "recall_at_target",
                  f"Recall at each algorithm's empirical FPR<={tf} threshold")
    _plot_heatmap(res, out_dir / PLOTS["heatmap_default"], "recall_at_default",
                  "Recall at each algorithm's default threshold")
    _plot_histograms(res, out_dir / PLOTS["histograms"])
    if res["throughput"]:
        _plot_throughput(res, out_dir / PLOTS["throughput"])
    _plot_fpr_model(res, out_dir / PLOTS["fpr_model"])
    return {k: v for k, v in PLOTS.items() if (out_dir / v).exists()}


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


def write_report(res: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write results.json, the PNG plots, report.md and report.html into ``out_dir``
    (created if needed). Returns name -> path of what was written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "results.json", json.dumps(_finite(res), indent=1, allow_nan=False) + "\n")
    plots = plot_all(res, out)
    _write_atomic(out / "report.md", markdown(res, plots))
    inline = {k: "data:image/png;base64," + base64.b64encode((out / v).read_bytes()).decode()
              for k, v in plots.items()}
    _write_atomic(out / "report.html", render_html(res, inline))  # self-contained
    written = {"results": out / "results.json", "markdown": out / "report.md",
               "html": out / "report.html"}
    written.update({k: out / v for k, v in plots.items()})
    return written
