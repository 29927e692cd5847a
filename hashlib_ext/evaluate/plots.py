"""The benchmark report's PNG plots (matplotlib, the ``report`` extra, imported lazily).

Every plot is drawn from the results dict of :func:`~hashlib_ext.evaluate.run.run_benchmark`
alone. Without matplotlib, :func:`available` is False and :func:`require` raises
:class:`~hashlib_ext.errors.MissingDependencyError` naming the extra; the report is then
written without plots (see :func:`~hashlib_ext.evaluate.report.write_report`).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import families as fam

__all__ = ["PLOTS", "INSTALL_HINT", "available", "require", "plot_all"]

PLOTS = {
    "roc": "roc_by_family.png",
    "heatmap_verdict": "recall_by_family.png",
    "heatmap_default": "recall_heatmap_default.png",
    "histograms": "distance_histograms.png",
    "throughput": "throughput.png",
    "fpr_model": "fpr_model.png",
}
"""Plot name -> file name in the report folder."""
INSTALL_HINT = "pip install 'hashlib-ext[report]'"


def available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def require() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or MissingDependencyError naming the extra."""
    from ..errors import MissingDependencyError

    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError(
            f"the benchmark's plots need matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _rate(x: float) -> str:
    return "0" if x == 0 else f"{x:.2g}"


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


def _present_families(res: dict) -> list[str]:
    seen = {f for a in res["algorithms"].values() for f in a["families"]}
    return [f for f in fam.FAMILIES if f in seen]


def _plot_roc(plt: Any, res: dict, path: Path) -> None:
    """Small multiples: one panel per family, one curve per algorithm (pooled over the
    family's transforms); solid where the algorithm is designed for the family."""
    algos = res["meta"]["algorithms"]
    fams = _present_families(res)
    rows, cols = _grid(len(fams), 4)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    floor = min(1.0 / max(1, res["algorithms"][a]["distinct_pairs"]) for a in algos)
    for ax, f in zip(axes.flat, fams, strict=False):
        for k, a in enumerate(algos):
            r = res["algorithms"][a]
            fr = r["families"].get(f)
            if not fr or not fr["pairs"]:
                continue
            same = np.asarray(fr["same_hist"], float)
            diff = np.asarray(r["distinct_hist"], float)
            fpr = np.concatenate([[0.0], np.cumsum(diff) / diff.sum()])
            tpr = np.concatenate([[0.0], np.cumsum(same) / same.sum()])
            ax.step(np.maximum(fpr, floor / 2), tpr, where="post", color=f"C{k % 10}", lw=1.4,
                    ls="-" if fr["designed"] else "--", label=a)
        measurable = 3.0 / max(1, min(res["algorithms"][a]["distinct_pairs"] for a in algos))
        ax.axvspan(floor / 2, measurable, color="0.9", zorder=0)
        ax.set_xscale("log")
        ax.set_xlim(floor / 2, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f, fontsize=10)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("recall")
    for ax in axes[-1, :]:
        ax.set_xlabel("per-pair FPR (log)", fontsize=8)
    for ax in list(axes.flat)[len(fams):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, max(1, len(labels))),
               fontsize=8, bbox_to_anchor=(0.5, 0))
    fig.suptitle("ROC per transform family (solid: the hash is designed for the family; "
                 "dashed: not; grey: FPR below 3/pairs, not measurable)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _heat(ax: Any, m: np.ndarray, rows: list[str], cols: list[str], designed: np.ndarray,
          title: str) -> Any:
    im = ax.imshow(np.ma.masked_invalid(m), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = m[i, j]
            text = "–" if np.isnan(v) else f"{v:.2f}" + ("" if designed[i, j] else "*")
            ax.text(j, i, text, ha="center", va="center",
                    fontsize=7, color="black" if np.isnan(v) or v >= 0.6 else "white")
    ax.set_title(title, fontsize=9)
    return im


def _plot_verdict_heatmap(plt: Any, res: dict, path: Path) -> None:
    """Recall per family at each algorithm's verdict threshold: one panel per use and N."""
    recs = res["verdict"]["recommendations"]
    fams = _present_families(res)
    sizes = res["verdict"]["collection_sizes"]
    n_algos = len(res["meta"]["algorithms"])
    size = (len(sizes) * (1.0 * n_algos + 3.2), 2 * (0.3 * len(fams) + 2.2))
    fig, axes = plt.subplots(2, len(sizes), squeeze=False, figsize=size)
    im = None
    for rec in recs:
        ax = axes[0 if rec["use"] == "match" else 1, sizes.index(rec["n"])]
        cands = list(rec["candidates"].values())
        m = np.array([[np.nan if c["threshold"] < 0 or c["recall_by_family"].get(f) is None
                       else c["recall_by_family"][f] for c in cands] for f in fams], float)
        designed = np.array([[f in fam.designed_families(c["algorithm"]) for c in cands]
                             for f in fams])
        cols = [f"{c['algorithm']} @{c['threshold']}" if c["threshold"] >= 0
                else f"{c['algorithm']} (none)" for c in cands]
        im = _heat(ax, m, fams, cols, designed,
                   f"{rec['use']}, N = {rec['n']:,}: FPR <= {_rate(rec['target_fpr'])}")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), label="recall", shrink=0.6)
    fig.suptitle("Recall per family at each algorithm's verdict threshold "
                 "(*: the hash is not designed for the family)", fontsize=10)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def _plot_default_heatmap(plt: Any, res: dict, path: Path) -> None:
    algos = res["meta"]["algorithms"]
    specs = res["meta"]["transforms"]
    m = np.array([[res["algorithms"][a]["transforms"][s].get("recall_at_default", np.nan)
                   for a in algos] for s in specs], dtype=float)
    designed = np.array([[fam.family_of(s) in fam.designed_families(a) for a in algos]
                         for s in specs])
    fig, ax = plt.subplots(figsize=(1.2 * len(algos) + 3.5, 0.38 * len(specs) + 1.8))
    cols = [f"{a} @{res['algorithms'][a]['default_threshold']}" for a in algos]
    im = _heat(ax, m, list(specs), cols, designed,
               "Recall at each algorithm's default threshold (*: not designed for)")
    fig.colorbar(im, ax=ax, label="recall")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_histograms(plt: Any, res: dict, path: Path) -> None:
    algos = res["meta"]["algorithms"]
    rows, cols = _grid(len(algos))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, a in zip(axes.flat, algos, strict=False):
        r = res["algorithms"][a]
        x = np.arange(r["bits"] + 1)
        same = r.get("same_hist_designed") or r["same_hist_pooled"]
        label = ("same image, edits it is designed for" if r.get("same_hist_designed")
                 else "same image, all edits")
        for hist, lab, color in ((same, label, "C0"), (r["distinct_hist"], "distinct images",
                                                       "C3")):
            h = np.asarray(hist, float)
            if h.sum():
                ax.fill_between(x, h / h.sum(), step="mid", alpha=0.45, color=color, label=lab)
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


def _plot_throughput(plt: Any, res: dict, path: Path) -> None:
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


def _plot_fpr_model(plt: Any, res: dict, path: Path) -> None:
    algos = res["meta"]["algorithms"]
    targets = sorted({r["target_fpr"] for r in res["verdict"]["recommendations"]})
    rows, cols = _grid(len(algos))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, a in zip(axes.flat, algos, strict=False):
        r = res["algorithms"][a]
        x = np.arange(r["bits"] + 1)
        emp = np.asarray(r["fpr_curve"])
        mod = np.asarray(r["model"]["fpr_curve"])
        ax.semilogy(x[emp > 0], emp[emp > 0], "o", ms=3, color="k", label="measured")
        ax.semilogy(x, np.maximum(mod, 1e-300), "-", color="C1", label="model (extrapolated)")
        ax.axhline(r["model"]["goodness_of_fit"]["empirical_floor"], color="gray", ls=":",
                   lw=1, label="measurable down to 3/pairs")
        for t in targets:
            ax.axhline(t, color="C3", ls="--", lw=0.7)
        ax.plot([], [], color="C3", ls="--", lw=0.7, label="verdict target FPRs")
        ax.axvline(r["model"]["cutoff"], color="C1", ls=":", lw=1, label="fitted up to")
        top = max(r["model"]["cutoff"], r["default_threshold"], 1)
        ax.set_xlim(0, min(r["bits"], int(top * 1.5) + 2))
        ax.set_ylim(min(1e-12, min(targets) / 10), 1.5)
        ax.set_title(f"{a}: per-pair FPR vs threshold")
        ax.set_xlabel("threshold (Hamming distance)")
        ax.set_ylabel("FPR")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(algos):]:
        ax.axis("off")
    fig.suptitle("Distinct-pair FPR: measured vs fitted beta-binomial model")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_all(res: dict, out_dir: Path) -> dict[str, str]:
    """Draw every plot into ``out_dir``; returns name -> file name of those drawn.
    MissingDependencyError (naming the extra) without matplotlib."""
    plt = require()
    out_dir = Path(out_dir)
    drawn: dict[str, str] = {}

    def draw(name: str, fn: Any) -> None:
        fn(plt, res, out_dir / PLOTS[name])
        drawn[name] = PLOTS[name]

    draw("roc", _plot_roc)
    draw("heatmap_verdict", _plot_verdict_heatmap)
    draw("heatmap_default", _plot_default_heatmap)
    draw("histograms", _plot_histograms)
    if res["throughput"]:
        draw("throughput", _plot_throughput)
    draw("fpr_model", _plot_fpr_model)
    return drawn
