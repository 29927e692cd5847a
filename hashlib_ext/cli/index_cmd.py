"""``hashlib-ext index``: build an index file from a hash list; describe an index file.

Exit codes: 0 ok; 1 the hash list or index could not be read or written (a malformed line
without ``--lenient``); 2 usage (found before anything is read or written); 130/143
interrupted (an existing index file is left as it was).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ._common import (
    EXIT_FAILED,
    UsageError,
    add_min_quality,
    check_output,
    error,
    hash_format,
    show_progress,
    worker_count,
)
from ._inputs import report_skipped
from ._signals import compute_only


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "index",
        help="build an index from a hash list; show what an index holds",
        description="Build a HashIndex file from a hash list (hex lines, CSV/TSV, JSONL, "
                    "Parquet, ThreatExchange CSV), or describe an index file.",
        epilog="exit codes: 0 ok, 1 unreadable or malformed input / index, 2 usage, "
               "130/143 interrupted (an existing index file is left as it was)",
    )
    sub = p.add_subparsers(dest="index_command", metavar="ACTION")
    sub.required = True

    b = sub.add_parser(
        "build",
        help="index a hash list",
        description="Read HASHFILE (streamed in chunks) into a HashIndex and save it to "
                    "INDEX atomically. Ids come from the file's id column (else record "
                    "numbers from 0); keys (a key/path column) are saved inside the index "
                    "file. A malformed line fails the build, naming its line number, unless "
                    "--lenient (then it is skipped and reported). An existing INDEX is "
                    "replaced only when the build succeeds.",
    )
    b.add_argument("hashfile", metavar="HASHFILE", nargs="+",
                   help="hash list to index; with --robust: images or folders of images")
    b.add_argument("-o", "--output", required=True, metavar="INDEX", help="index file to write")
    b.add_argument("--algorithm", default=None,
                   help="algorithm of the hashes (default: recorded in the file, else pdq)")
    b.add_argument("--bits", type=_bits, default=None,
                   help="hash width, for an algorithm name the registry does not know")
    b.add_argument("--format", dest="hash_format", type=hash_format, default=None,
                   help="hex, csv, tsv, jsonl, json, parquet or te (default: from the "
                        "extension)")
    b.add_argument("--lenient", action="store_true",
                   help="skip malformed lines (reported on stderr) instead of failing")
    b.add_argument("--hash-column", default=None, help="CSV/TSV/Parquet column of the hashes")
    b.add_argument("--id-column", default=None, help="column of the int64 ids")
    b.add_argument("--key-column", default=None, help="column of the keys (e.g. paths)")
    add_min_quality(b, "hashes")
    b.add_argument("--kind", choices=("auto", "flat", "mih"), default="auto",
                   help="index structure (default auto: chosen by size and threshold)")
    b.add_argument("--robust", action="store_true",
                   help="build a robust index from images (PDQ of content boxes and local "
                        "features), for 'match --robust'; keys are the image paths")
    b.add_argument("-r", "--recursive", action="store_true",
                   help="--robust: descend into subfolders")
    b.add_argument("-j", "--workers", type=worker_count, default=None, metavar="N",
                   help="--robust: describing processes (default: one per CPU; at most "
                        "twice the CPU count)")
    b.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    b.set_defaults(func=run_build)

    i = sub.add_parser("info", help="describe an index file",
                       description="Algorithm, width, count, structure and size of an index.")
    i.add_argument("index", metavar="INDEX")
    i.add_argument("--format", choices=("text", "json"), default="text")
    i.set_defaults(func=run_info)
    return p


def _bits(text: str) -> int:
    """argparse type of ``--bits``: a positive multiple of 8, at most 8192."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 8 or value % 8 or value > 8192:
        raise argparse.ArgumentTypeError(f"expected a multiple of 8 from 8 to 8192, got {text!r}")
    return value


def _column(value: str | None) -> str | int | None:
    """A column given on the command line: a 0-based index if numeric, else a name."""
    return int(value) if value is not None and value.isdigit() else value


def run_build(args: argparse.Namespace) -> int:
    from ..errors import HashlibExtError
    from ..formats import iter_hash_list

    if args.robust:
        return run_build_robust(args)
    if len(args.hashfile) != 1:
        raise UsageError("index build reads one hash list (several inputs need --robust)")
    args.hashfile = args.hashfile[0]
    check_output(args.output, [args.hashfile])
    skipped: list[tuple[int, str]] = []
    index = None
    ignored = low = 0
    try:
        for chunk in iter_hash_list(
                args.hashfile, args.algorithm, format=args.hash_format, lenient=args.lenient,
                bits=args.bits, hash_column=_column(args.hash_column),
                id_column=_column(args.id_column), key_column=_column(args.key_column),
                skipped=skipped, min_quality=args.min_quality):
            if index is None:
                index = _new_index(chunk.hashes.algorithm, chunk.hashes.bits, args)
            ignored += chunk.ignored
            low += chunk.low_quality
            if len(chunk):
                keys = None if chunk.keys is None else chunk.keys.tolist()
                index.add(chunk.hashes if index.algorithm else chunk.hashes.codes, chunk.ids,
                          keys=keys)
        if index is None:  # an empty file: an empty index of the requested width
            index = _new_index(args.algorithm or "pdq", args.bits, args)
        report_skipped(args.hashfile, skipped)
        if len(index) == 0 and (ignored or skipped or low):
            why = "; ".join(x for x in (
                f"{ignored} rows of other algorithms (pass --algorithm)" if ignored else "",
                f"{len(skipped)} malformed lines skipped" if skipped else "",
                f"{low} below quality {args.min_quality}" if low else "") if x)
            what = f"{index.algorithm} hashes" if index.algorithm else f"{index.bits}-bit codes"
            error(f"{args.hashfile}: no {what} to index ({why}); {args.output} not written")
            return EXIT_FAILED
        if len(index):
            # Build the search tables now (when the index's size calls for them), so they
            # are saved and every later `match` loads them instead of rebuilding.
            index.prepare()
    except HashlibExtError as e:
        error(str(e))
        return EXIT_FAILED
    except ValueError as e:  # e.g. ids the index refuses: about the input, not the output
        error(f"{args.hashfile}: {e}")
        return EXIT_FAILED
    if not _saved(index, args.output):
        return EXIT_FAILED
    note = f", {len(skipped)} malformed lines skipped" if skipped else ""
    note += f", {ignored} rows of other algorithms ignored" if ignored else ""
    note += f", {low} hashes below quality {args.min_quality} left out" if low else ""
    print(f"indexed {len(index)} {index.algorithm or 'raw'} hashes ({index.bits} bits) from "
          f"{args.hashfile} into {args.output}{note}", file=sys.stderr)
    return 0


def _new_index(algorithm: str, bits: int | None, args: argparse.Namespace) -> Any:
    from ..hashers import expected_bits
    from ..index import HashIndex

    if expected_bits(algorithm) is None:  # a name the registry does not know: raw codes
        return HashIndex(bits=bits or args.bits, kind=args.kind)
    return HashIndex(algorithm, kind=args.kind)


def run_info(args: argparse.Namespace) -> int:
    from ..errors import HashlibExtError
    from ..index import HashIndex

    try:
        index = HashIndex.load(args.index)
    except HashlibExtError as e:
        error(str(e))
        return EXIT_FAILED
    ids = index.ids
    info = {
        "path": args.index,
        "algorithm": index.algorithm,
        **index.stats(),
        "file_bytes": os.path.getsize(args.index),
        "keys": sum(k is not None for k in index.keys(ids)),
        "min_id": int(ids.min()) if ids.size else None,
        "max_id": int(ids.max()) if ids.size else None,
    }
    if args.format == "json":
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0


def run_build_robust(args: argparse.Namespace) -> int:
    """``index build --robust``: describe images into a RobustIndex file."""
    from ..robust import RobustIndex
    from ._inputs import classify_inputs

    used = [name for name, value in (
        ("--min-quality", args.min_quality), ("--bits", args.bits),
        ("--format", args.hash_format), ("--hash-column", args.hash_column),
        ("--id-column", args.id_column), ("--key-column", args.key_column),
        ("--algorithm", args.algorithm)) if value is not None]
    if used or args.lenient or args.kind != "auto":
        raise UsageError(f"{(used or ['--lenient' if args.lenient else '--kind'])[0]} applies "
                         "to hash lists, not --robust")
    check_output(args.output, args.hashfile)
    lists, images, missing = classify_inputs(args.hashfile, args.recursive, None)
    if lists:
        raise UsageError(f"--robust indexes images, not hash lists: {lists[0]}")
    if not images:
        error("no images to index")
        return EXIT_FAILED
    index = RobustIndex()
    with compute_only():
        res = index.add(images, keys=images, workers=args.workers,
                        progress=show_progress(args))
    for src, kind, msg in res.errors:
        error(f"{src}: {kind}: {msg}")
    if len(index) == 0:
        error(f"no image could be indexed; {args.output} not written")
        return EXIT_FAILED
    if not _saved(index, args.output):
        return EXIT_FAILED
    failed = len(missing) + len(res.errors)
    print(f"indexed {len(index)} images (robust) into {args.output}"
          + (f"; {failed} inputs failed" if failed else ""), file=sys.stderr)
    return EXIT_FAILED if failed else 0


def _saved(index: Any, output: str) -> bool:
    """Save ``index`` (a HashIndex or RobustIndex); report a failure and return False."""
    from ..errors import HashlibExtError

    try:
        index.save(output)
    except BrokenPipeError:
        raise
    except (HashlibExtError, OSError) as e:
        error(f"cannot write {output}: {getattr(e, 'strerror', None) or e}")
        return False
    return True
