"""The benchmark pipeline: dataset x transforms x algorithms -> hashes -> distances -> metrics.

:func:`run_benchmark` returns one JSON-ready dict holding every number (see
:mod:`hashlib_ext.evaluate.report` for the Markdown/HTML/PNG rendering). Steps:

1. throughput: each algorithm hashes the first images from their sources (decode included),
   single process, one algorithm at a time, plus all of them from one decode;
2. hashing: per image (in a process pool), decode once, hash the original with every
   algorithm, then each transformed variant (seeded per image and transform, so results do
   not depend on the number of workers);
3. metrics: same-image distance histograms per transform, distinct-image histograms through
   :class:`~hashlib_ext.index.HashIndex`, thresholds at the target FPR, recall, ROC/AUC, and
   the tail model of the FPR (:mod:`hashlib_ext.evaluate.fprmodel`).

An algorithm name ``X-dihedral`` (e.g. ``pdq-dihedral``) means: algorithm X, matching a query
by the nearest of its 8 rotations/flips against the stored originals.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from ..hash import HashArray
from . import DEFAULT_ALGORITHMS, families, fprmodel, metrics, verdict

DIHEDRAL = "-dihedral"


@dataclass
class BenchConfig:
    """What to benchmark. ``None`` for dataset / transforms means the bundled images / the
    default transform suite."""

    dataset: str | None = None
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    transforms: Sequence[str] | None = None
    target_fpr: float = 1e-3
    model_target_fpr: float = 1e-6
    thresholds: dict[str, int] = field(default_factory=dict)
    """Per-algorithm threshold overriding ``hx.default_threshold`` in the report."""
    seed: int = 0
    workers: int | None = None
    progress: bool = True
    limit: int | None = None
    """Use only the first ``limit`` images of the dataset."""
    throughput_images: int = 64
    """How many images the single-process throughput measurement hashes per algorithm."""
    tail_fraction: float = 0.02
    """Share of distinct pairs (smallest distances) the FPR model is fitted to."""
    robust: bool | None = None
    """Measure :class:`~hashlib_ext.robust.RobustIndex` beside the hashes (the 'robust'
    column). None: when OpenCV (the ``robust`` extra) is installed."""
    collection_sizes: Sequence[int] | None = None
    """Collection sizes N the verdict recommends for (None: the images hashed and 1M)."""
    match_budget: float = 0.01
    """Verdict budget for matching: expected false matches per query."""
    dedup_budget: float = 1.0
    """Verdict budget for de-duplication: expected false pairs in the whole collection."""


def split_algorithms(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Validate names; return (plain algorithms to hash, bases hashed dihedrally)."""
    from ..hashers import get

    if not names:
        raise ValueError("no algorithm given")
    plain: list[str] = []
    dihedral: list[str] = []
    for name in names:
        base = name[: -len(DIHEDRAL)] if name.endswith(DIHEDRAL) else name
        spec = get(base)  # clear error for unknown names
        if base != name:
            if spec.dihedral is None:
                raise ValueError(f"{name}: {base} has no dihedral (rotation/flip) hashing")
            if base not in dihedral:
                dihedral.append(base)
        if base not in plain:
            plain.append(base)
    return plain, dihedral


# -- hashing (runs in worker processes) ----------------------------------------------------

@dataclass
class _Job:
    plain: list[str]
    dihedral: list[str]
    transforms: list[str]
    seed: int


_TRANSFORMS: dict[str, Callable] = {}


def _transform(spec: str) -> Callable:
    from . import transforms

    if spec not in _TRANSFORMS:
        _TRANSFORMS[spec] = transforms.parse(spec)
    return _TRANSFORMS[spec]


def _hash_all(image: Any, job: _Job) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    from ..hashers import hash_image

    hashes = hash_image(image, job.plain)
    assert isinstance(hashes, dict)  # a list of names gives name -> Hash
    plain = {a: hashes[a].to_bytes() for a in job.plain}
    dih = {}
    for a in job.dihedral:
        variants = hash_image(image, a, dihedral=True)
        assert isinstance(variants, HashArray)
        dih[a] = variants.codes
    return plain, dih


def _hash_item(args: tuple[int, Any, _Job]) -> dict:
    """Hash one original and all its variants. Errors are returned, never raised."""
    from ..imageio import load

    pos, source, job = args
    out: dict[str, Any] = {"pos": pos}
    try:
        image = load(source)
        out["orig"] = _hash_all(image, job)
    except Exception as e:  # noqa: BLE001 - a benchmark reports bad inputs and goes on
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    variants: list[Any] = []
    for k, spec in enumerate(job.transforms):
        try:
            rng = np.random.default_rng([job.seed, pos, k])
            variants.append(_hash_all(_transform(spec)(image, rng), job))
        except Exception as e:  # noqa: BLE001
            variants.append(f"{type(e).__name__}: {e}")
    out["variants"] = variants
    return out


# -- throughput -----------------------------------------------------------------------------

def measure_throughput(sources: Sequence[Any], plain: Sequence[str],
                       dihedral: Sequence[str]) -> dict[str, dict]:
    """Images/s hashing from the source (decode included), one process, per algorithm, plus
    ``all (one decode)`` for every plain algorithm from a single decode."""
    from ..hashers import hash_image

    if not sources:
        return {}
    runs: list[tuple[str, Callable[[Any], Any]]] = [
        (a, functools.partial(hash_image, algorithm=a)) for a in plain
    ]
    runs += [(a + DIHEDRAL, functools.partial(hash_image, algorithm=a, dihedral=True))
             for a in dihedral]
    if len(plain) > 1:
        runs.append(("all (one decode)", lambda s: hash_image(s, list(plain))))
    out = {}
    for name, fn in runs:
        ok = 0
        try:
            fn(sources[0])  # warm-up (imports, caches)
        except Exception:  # noqa: BLE001 - a bad first image must not stop the benchmark
            pass
        t0 = time.perf_counter()
        for s in sources:
            try:
                fn(s)
                ok += 1
            except Exception:  # noqa: BLE001
                pass
        dt = time.perf_counter() - t0
        out[name] = {"images": ok, "seconds": dt, "images_per_s": metrics.throughput(ok, dt)}
    return out


# -- the whole run ------------------------------------------------------------------------

def _progress(iterable, total: int, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img", file=sys.stderr)


def _dataset(name: str | None):
    from .. import datasets

    return datasets.bundled() if name is None else datasets.get(name)


def _default_threshold(name: str, overrides: dict[str, int]) -> int:
    from ..hashers import default_threshold

    if name in overrides:
        return int(overrides[name])
    base = name[: -len(DIHEDRAL)] if name.endswith(DIHEDRAL) else name
    return int(overrides.get(base, default_threshold(base)))


def _hash_dataset(items: list[tuple[Any, Any]], job: _Job, workers: int,
                  progress: bool) -> list[dict]:
    tasks = [(pos, src, job) for pos, (_id, src) in enumerate(items)]
    if workers <= 1 or len(tasks) < 2:
        return [_hash_item(t) for t in _progress(tasks, len(tasks), progress, "hashing")]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        chunks = max(1, min(8, len(tasks) // (4 * workers)))
        it = pool.map(_hash_item, tasks, chunksize=chunks)
        return list(_progress(it, len(tasks), progress, "hashing"))


def run_benchmark(config: BenchConfig | None = None, **kwargs: Any) -> dict:
    """Run the benchmark; returns the results dict (``report.write_report`` renders it).

    Keyword arguments override fields of ``config`` (or of the defaults).
    """
    from .. import __version__
    from . import transforms as tmod

    cfg = config or BenchConfig()
    unknown_opts = set(kwargs) - {f.name for f in fields(BenchConfig)}
    if unknown_opts:
        raise TypeError(f"unknown benchmark option(s) {sorted(unknown_opts)}")
    cfg = replace(cfg, **kwargs)  # never mutate the caller's config
    for name, value in (("target_fpr", cfg.target_fpr), ("model_target_fpr", cfg.model_target_fpr)):
        if not 0 < value < 1:
            raise ValueError(f"{name} must be in (0, 1), got {value}")
    budgets = verdict.Budgets(match=cfg.match_budget, dedup=cfg.dedup_budget)
    if cfg.collection_sizes is not None and (
            not cfg.collection_sizes or min(cfg.collection_sizes) < 2):
        raise ValueError(f"collection sizes must be >= 2, got {list(cfg.collection_sizes)}")
    names = list(cfg.algorithms)
    plain, dihedral = split_algorithms(names)
    specs = list(tmod.DEFAULT_SUITE if cfg.transforms is None else cfg.transforms)
    if not specs:
        raise ValueError("no transform given")
    specs = [getattr(_transform(s), "spec", s) for s in specs]  # parse now: early, clear errors
    unknown = set(cfg.thresholds) - set(names) - set(plain)
    if unknown:
        raise ValueError(f"--threshold-for names algorithms not benchmarked: {sorted(unknown)}")

    started = time.perf_counter()
    ds = _dataset(cfg.dataset)
    items = list(ds)
    if cfg.limit is not None:
        items = items[: cfg.limit]
    if len(items) < 2:
        raise ValueError(f"dataset {getattr(ds, 'name', cfg.dataset)!r} has {len(items)} "
                         "image(s); at least 2 are needed for distinct pairs")
    workers = cfg.workers or os.cpu_count() or 1

    thr_sources = [src for _id, src in items[: cfg.throughput_images]]
    if cfg.progress:
        print(f"measuring throughput on {len(thr_sources)} images (one process)",
              file=sys.stderr)
    throughput = measure_throughput(thr_sources, plain, dihedral)

    job = _Job(plain, dihedral, specs, cfg.seed)
    t0 = time.perf_counter()
    rows = _hash_dataset(items, job, workers, cfg.progress)
    hashing_s = time.perf_counter() - t0

    errors = []
    good = []
    for r in rows:
        ident = str(items[r["pos"]][0])
        if "error" in r:
            errors.append({"id": ident, "transform": None, "error": r["error"]})
            continue
        good.append(r)
        for spec, v in zip(specs, r["variants"], strict=True):
            if isinstance(v, str):
                errors.append({"id": ident, "transform": spec, "error": v})
    if len(good) < 2:
        raise ValueError(f"only {len(good)} image(s) could be hashed; first errors: {errors[:3]}")

    results: dict[str, Any] = {
        "meta": {
            "tool": f"hashlib-ext {__version__}",
            "dataset": getattr(ds, "name", str(cfg.dataset)),
            "licence": getattr(ds, "licence", None),
            "images": len(items),
            "images_hashed": len(good),
            "transforms": specs,
            "algorithms": names,
            "target_fpr": cfg.target_fpr,
            "model_target_fpr": cfg.model_target_fpr,
            "seed": cfg.seed,
            "workers": workers,
            "tail_fraction": cfg.tail_fraction,
            "hashing_seconds": hashing_s,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s)",
        },
        "throughput": throughput,
        "algorithms": {},
        "errors": errors,
    }
    for name in names:
        results["algorithms"][name] = _algorithm_metrics(name, good, specs, cfg)
    results["robust"] = _robust(items, specs, cfg, workers)
    results["verdict"] = verdict.build(results, cfg.collection_sizes, budgets)
    results["meta"]["elapsed_seconds"] = time.perf_counter() - started
    return results


def _robust(items: list[tuple[Any, Any]], specs: list[str], cfg: BenchConfig,
            workers: int) -> dict | None:
    """The robust column, or None where it is switched off (or OpenCV is missing and it
    was not asked for explicitly)."""
    from ..errors import MissingDependencyError
    from ..features import require_cv2

    if cfg.robust is False:
        return None
    try:
        require_cv2()
    except MissingDependencyError as e:
        if cfg.robust:
            raise
        return {"skipped": str(e)}
    from .robust_eval import run_robust

    return run_robust(items, specs, seed=cfg.seed, workers=workers, progress=cfg.progress)


def _algorithm_metrics(name: str, rows: list[dict], specs: list[str], cfg: BenchConfig) -> dict:
    """Distances of one column (distinct pairs, and each transform's same-image pairs),
    summarised by :func:`summarise`."""
    is_dih = name.endswith(DIHEDRAL)
    base = name[: -len(DIHEDRAL)] if is_dih else name
    orig = np.stack([np.frombuffer(r["orig"][0][base], np.uint8) for r in rows])
    bits = orig.shape[1] * 8
    if is_dih:
        orig8 = np.stack([r["orig"][1][base] for r in rows])
        diff = metrics.dihedral_distinct_histogram(orig, orig8)
    else:
        diff = metrics.distinct_histogram(orig)
    same: dict[str, np.ndarray | None] = {}
    for k, spec in enumerate(specs):
        ok = [r for r in rows if not isinstance(r["variants"][k], str)]
        if not ok:
            same[spec] = None
            continue
        o = np.stack([np.frombuffer(r["orig"][0][base], np.uint8) for r in ok])
        if is_dih:
            q8 = np.stack([r["variants"][k][1][base] for r in ok])
            d = metrics.dihedral_same_distances(o, q8)
        else:
            v = np.stack([np.frombuffer(r["variants"][k][0][base], np.uint8) for r in ok])
            d = metrics.same_distances(o, v)
        same[spec] = metrics.histogram(d, bits)
    return summarise(name, diff, same, cfg)


def summarise(name: str, diff: np.ndarray, same: dict[str, np.ndarray | None],
              cfg: BenchConfig) -> dict:
    """One column's results from its histograms: ``diff`` (distinct-image pairs) and, per
    transform spec, the same-image histogram (None where no copy could be made). Thresholds,
    recall, ROC/AUC per transform and per family, and the fitted FPR model."""
    is_dih = name.endswith(DIHEDRAL)
    base = name[: -len(DIHEDRAL)] if is_dih else name
    diff = np.asarray(diff, np.int64)
    bits = diff.size - 1
    t_target = metrics.threshold_for_fpr(diff, cfg.target_fpr)
    t_default = _default_threshold(name, cfg.thresholds)
    model = fprmodel.fit(diff, tail_fraction=cfg.tail_fraction)
    gof = fprmodel.goodness_of_fit(model, diff)
    t_model = model.threshold_for(cfg.model_target_fpr)
    fpr_emp = metrics.fpr_curve(diff)
    fpr_mod = model.fpr_curve()

    per_transform: dict[str, dict] = {}
    pooled = np.zeros(bits + 1, dtype=np.int64)
    for spec, hist in same.items():
        if hist is None or not np.sum(hist):
            per_transform[spec] = {"pairs": 0}
            continue
        h = np.asarray(hist, np.int64)
        pooled += h
        fpr, tpr = metrics.roc_curve(h, diff)
        per_transform[spec] = {
            "pairs": int(h.sum()),
            "same_hist": h.tolist(),
            "mean_distance": float(np.dot(h, np.arange(bits + 1)) / h.sum()),
            "recall_at_target": metrics.recall_at(h, t_target),
            "recall_at_default": metrics.recall_at(h, t_default),
            "recall_at_model_target": metrics.recall_at(h, t_model),
            "auc": metrics.auc(h, diff),
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        }
    fams = families.family_metrics(name, per_transform, diff, list(same))
    designed = families.pooled_designed(fams)
    return {
        "base": base,
        "bits": bits,
        "distinct_pairs": int(diff.sum()),
        "target_measurable": verdict.is_measurable(cfg.target_fpr, int(diff.sum())),
        "distinct_pair_kind": ("ordered pairs i != j, min over the query's 8 rotations/flips"
                               if is_dih else "pairs i < j"),
        "distinct_hist": diff.tolist(),
        "fpr_curve": fpr_emp.tolist(),
        "threshold_at_target": t_target,
        "fpr_at_target_threshold": float(fpr_emp[t_target]) if t_target >= 0 else 0.0,
        "default_threshold": t_default,
        "fpr_at_default": float(fpr_emp[min(t_default, bits)]) if t_default >= 0 else 0.0,
        "designed_families": [f for f in families.FAMILIES
                              if f in families.designed_families(name)],
        "auc_designed": metrics.auc(designed, diff) if designed is not None else None,
        "same_hist_pooled": pooled.tolist(),
        "same_hist_designed": None if designed is None else designed.tolist(),
        "families": fams,
        "model": {
            **model.to_dict(),
            "label": "MODEL (extrapolated), not measured",
            "fpr_curve": fpr_mod.tolist(),
            "threshold_at_model_target": t_model,
            "fpr_at_default": model.fpr(t_default),
            "fpr_at_target_threshold": model.fpr(t_target),
            "goodness_of_fit": gof,
        },
        "transforms": per_transform,
    }
