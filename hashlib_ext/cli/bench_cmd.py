"""``hashlib-ext bench``: which hash and threshold catch which edits, at what FPR, how fast.

With no arguments it runs on the bundled images with the default transform suite and writes
a report (Markdown, HTML, PNG plots, results.json) to ./hashlib-ext-report, opening with a
verdict: algorithm and threshold for matching and for de-duplication at the collection sizes
given by ``--collection-size``. Options follow the CLI's vocabulary (``-o/--output``,
``-a/--algorithm``, ``-j/--workers``, ``-q/--quiet``, ``--progress``); the older spellings
``--out`` and ``--algorithms`` still work (hidden from --help).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import positive_int, show_progress
from ._options import add_progress, add_workers
from ._signals import compute_only

DEFAULT_OUT = "hashlib-ext-report"
SUITES = ("default", "reference", "easy", "robust", "unseen", "all")


def suite(name: str) -> list[str]:
    """The transform specs of a named suite."""
    from ..evaluate import transforms as T

    robust = [s for fam in T.ROBUST_SUITE.values() for s in fam]
    unseen = [s for fam in T.ROBUST_UNSEEN_SUITE.values() for s in fam]
    return {"default": T.DEFAULT_SUITE, "reference": T.REFERENCE_SUITE, "easy": T.EASY_SUITE,
            "robust": robust, "unseen": unseen,
            "all": T.EASY_SUITE + robust + unseen}[name]


def _threshold(text: str) -> tuple[str, int]:
    algo, sep, value = text.partition("=")
    try:
        if not sep or not algo:
            raise ValueError
        t = int(value)
        if t < 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected ALGO=T with T a non-negative integer, got {text!r}") from None
    return algo, t


def _rate(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < x < 1:
        raise argparse.ArgumentTypeError(f"a rate must be in (0, 1), got {text}")
    return x


def _budget(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (x > 0 and x < float("inf")):
        raise argparse.ArgumentTypeError(f"a budget must be a positive number, got {text}")
    return x


def _size(text: str) -> int:
    try:
        n = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 2:
        raise argparse.ArgumentTypeError(f"a collection has at least 2 images, got {n}")
    return n


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ..evaluate import DEFAULT_ALGORITHMS

    p = subparsers.add_parser(
        "bench",
        help="benchmark hashes x transforms: recall at an FPR budget, ROC, throughput, report",
        description=(
            "Hash every image of a dataset and transformed copies of it with each algorithm, "
            "and write report.md, report.html (self-contained), PNG plots and results.json. "
            "The report opens with a verdict: for each collection size N, the algorithm and "
            "threshold for matching (expected false matches per query = N x FPR) and for "
            "de-duplication (expected false pairs = N(N-1)/2 x FPR) within a budget, each FPR "
            "labelled measured or modelled; then recall and AUC per transform family, ROC, "
            "the FPR model and throughput. With no arguments: the bundled images, the "
            "default transform suite, all algorithms."
        ),
    )
    p.add_argument("--dataset", default=None,
                   help="dataset name or image folder (default: the bundled images)")
    algo_help = ("algorithms (repeatable; space or comma separated); 'pdq-dihedral' matches "
                 "any of the 8 rotations/flips. Default: " + " ".join(DEFAULT_ALGORITHMS))
    p.add_argument("-a", "--algorithm", dest="algorithms", nargs="+", action="extend",
                   metavar="ALGO", help=algo_help)
    p.add_argument("--algorithms", dest="algorithms", nargs="+", action="extend",
                   help=argparse.SUPPRESS)
    p.add_argument("--transforms", nargs="+", action="extend", metavar="SPEC",
                   help="transform specs, e.g. jpeg:q=30 crop:center=0.9 rotate:deg=5 "
                        "(default: the standard suite; see the transforms documentation)")
    p.add_argument("--suite", choices=SUITES, default=None,
                   help="a named transform suite instead of --transforms: default (the "
                        "standard suite), reference, easy (recompress, resize, colour, blur, "
                        "overlay, mirror, turns), robust (crops, padding, frames, captions, "
                        "rotate+zoom, screenshots, combinations), unseen (the robust families "
                        "with other settings), all (easy + robust + unseen)")
    p.add_argument("--robust", action=argparse.BooleanOptionalAction, default=None,
                   help="measure RobustIndex beside the hashes (default: when the 'robust' "
                        "extra, OpenCV, is installed)")
    p.add_argument("--target-fpr", type=_rate, default=1e-3,
                   help="also report the threshold whose measured per-pair FPR is within "
                        "this (default 1e-3; given only where the distinct pairs can "
                        "measure it, i.e. at least 3/FPR of them)")
    p.add_argument("--model-target-fpr", type=_rate, default=1e-6,
                   help="per-pair FPR for the model-extrapolated threshold (default 1e-6)")
    p.add_argument("--threshold-for", type=_threshold, action="append", default=[],
                   metavar="ALGO=T", help="use T instead of ALGO's default threshold "
                                          "(repeatable)")
    p.add_argument("-o", "--output", dest="output", default=DEFAULT_OUT, metavar="DIR",
                   help=f"report folder (default ./{DEFAULT_OUT})")
    p.add_argument("--out", dest="output", help=argparse.SUPPRESS)
    p.add_argument("--collection-size", dest="collection_sizes", type=_size, action="append",
                   metavar="N", help="collection size the verdict recommends for (repeatable; "
                                     "default: the number of images benchmarked and 1,000,000)")
    p.add_argument("--match-budget", type=_budget, default=0.01, metavar="X",
                   help="verdict budget for matching: expected false matches per query "
                        "against N stored hashes (default 0.01)")
    p.add_argument("--dedup-budget", type=_budget, default=1.0, metavar="X",
                   help="verdict budget for de-duplication: expected false pairs among all "
                        "N(N-1)/2 pairs (default 1)")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=None,
                   help="PNG plots (need matplotlib, pip install 'hashlib-ext[report]'); "
                        "default: when matplotlib is installed, else the report says they "
                        "were left out")
    p.add_argument("--seed", type=int, default=0, help="seed of the random transforms")
    add_workers(p)
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N images of the dataset")
    add_progress(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..errors import DatasetError, HashlibExtError, MissingDependencyError
    from ..evaluate.report import write_report
    from ..evaluate.run import DEFAULT_ALGORITHMS, BenchConfig, run_benchmark

    algos = DEFAULT_ALGORITHMS
    if args.suite and args.transforms:
        print("hashlib-ext bench: error: give --suite or --transforms, not both",
              file=sys.stderr)
        return 2
    transforms = suite(args.suite) if args.suite else args.transforms
    if args.algorithms:
        algos = tuple(a for item in args.algorithms for a in item.split(",") if a)
    cfg = BenchConfig(
        dataset=args.dataset, algorithms=algos, transforms=transforms, robust=args.robust,
        target_fpr=args.target_fpr, model_target_fpr=args.model_target_fpr,
        thresholds=dict(args.threshold_for), seed=args.seed, workers=args.workers,
        progress=show_progress(args), limit=args.limit,
        collection_sizes=args.collection_sizes, match_budget=args.match_budget,
        dedup_budget=args.dedup_budget,
    )
    try:
        with compute_only():
            res = run_benchmark(cfg)
        written = write_report(res, Path(args.output), plots=args.plots)
    except BrokenPipeError:
        raise
    except (DatasetError, MissingDependencyError, OSError) as e:  # data, extras, folder
        print(f"hashlib-ext bench: error: {e}", file=sys.stderr)
        return 1
    except (HashlibExtError, ValueError, TypeError) as e:
        print(f"hashlib-ext bench: error: {e}", file=sys.stderr)
        return 2
    meta = res["meta"]
    if args.quiet:
        _print_paths(written)
        return 0
    print(f"benchmarked {meta['images_hashed']} images x {len(meta['transforms'])} transforms x "
          f"{len(meta['algorithms'])} algorithms in {meta['elapsed_seconds']:.0f} s",
          file=sys.stderr)
    if res["errors"]:
        print(f"{len(res['errors'])} item(s) failed; see the report", file=sys.stderr)
    if args.plots is None and "roc" not in written:
        print("plots left out: matplotlib is not installed (pip install "
              "'hashlib-ext[report]')", file=sys.stderr)
    _print_paths(written)
    return 0


def _print_paths(written: dict[str, Path]) -> None:
    print(f"report: {written['markdown']}")
    print(f"html:   {written['html']}")
    print(f"json:   {written['results']}")
