"""``index build --robust``, ``index add`` and ``index info`` on a robust index (a
:class:`~hashlib_ext.RobustIndex` file of image descriptions)."""

from __future__ import annotations

import argparse
import os

from ._common import EXIT_FAILED, UsageError, check_output, error, show_progress
from ._failures import Failures
from ._index_io import print_info, save_and_report, split_inputs
from ._signals import compute_only


def run_info_robust(args: argparse.Namespace) -> int:
    from ..robust import RobustIndex

    index = RobustIndex.load(args.index)
    ids = index.ids
    info = {"path": args.index, "kind": "robust", "count": len(index),
            "pdq_threshold": index.pdq_threshold, "min_score": index.min_score,
            "file_bytes": os.path.getsize(args.index),
            "keys": sum(k is not None for k in index.keys(ids.tolist())),
            "min_id": int(ids.min()) if ids.size else None,
            "max_id": int(ids.max()) if ids.size else None}
    print_info(info, args.format)
    return 0

def run_build_robust(args: argparse.Namespace) -> int:
    """``index build --robust``: describe images into a RobustIndex file."""
    from ..robust import RobustIndex

    refuse_list_options(args)
    failures = Failures(args)
    check_output(args.output, args.inputs)
    failures.check(args.inputs)
    lists, images = split_inputs(args, failures)
    if lists:
        raise UsageError(f"--robust indexes images, not hash lists: {lists[0]}")
    index = RobustIndex()
    if images:
        with compute_only():
            res = index.add(images, keys=images, workers=args.workers,
                            progress=show_progress(args))
        failures.add_batch(res.errors)
    if len(index) == 0:
        failures.finish()
        error(f"no image could be indexed; {args.output} not written")
        return EXIT_FAILED
    return save_and_report(args, index, args.output, failures,
                           f"indexed {len(index)} images (robust) into {args.output}"
                           + (f"; {len(failures)} inputs failed" if failures else ""))

def run_add_robust(args: argparse.Namespace) -> int:
    """``index add`` on a robust index: describe more images into it."""
    from ..robust import RobustIndex

    refuse_list_options(args)
    if args.renumber or args.replace:
        raise UsageError("--renumber/--replace apply to hash indexes (a robust index "
                         "numbers its images itself)")
    failures = Failures(args)
    failures.check(args.inputs, [args.index])
    check_output(args.index, args.inputs)
    target = os.path.realpath(args.index)
    index = RobustIndex.load(target)
    before = len(index)
    lists, images = split_inputs(args, failures)
    if lists:
        raise UsageError(f"{args.index} is a robust index: it takes images, not hash lists "
                         f"({lists[0]})")
    if images:
        with compute_only():
            res = index.add(images, keys=images, workers=args.workers,
                            progress=show_progress(args))
        failures.add_batch(res.errors)
    if len(index) == before:
        failures.finish()
        error(f"nothing added; {args.index} left as it was")
        return EXIT_FAILED
    return save_and_report(args, index, target, failures,
                           f"added {len(index) - before} images to {args.index} "
                           f"(now {len(index)})"
                           + (f"; {len(failures)} inputs failed" if failures else ""))

def refuse_list_options(args: argparse.Namespace) -> None:
    used = [name for name, value in (
        ("--min-quality", args.min_quality), ("--bits", args.bits),
        ("--input-format", args.input_format), ("--hash-column", args.hash_column),
        ("--id-column", args.id_column), ("--key-column", args.key_column),
        ("--algorithm", args.algorithm)) if value is not None]
    if getattr(args, "renumber", False):
        used.append("--renumber")
    if used or args.lenient or getattr(args, "kind", "auto") != "auto":
        raise UsageError(f"{(used or ['--lenient' if args.lenient else '--kind'])[0]} applies "
                         "to hash lists, not robust indexes")
