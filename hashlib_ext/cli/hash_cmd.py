"""``hashlib-ext hash``: hash image files and directories to CSV, JSON or JSONL."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from ._common import RowWriter, check_output, output_stream, show_progress, worker_count
from ._signals import compute_only

FORMATS = ("csv", "json", "jsonl")
FIELDS = ("path", "algorithm", "hex", "quality", "quality_ok")
Row = tuple[str, str, str, "int | None", "bool | None"]


def _algorithm_list(text: str) -> list[str]:
    """argparse type: one algorithm name or several, comma-separated, all registered."""
    from ..hashers import algorithms

    names = [n.strip() for n in text.split(",") if n.strip()]
    known = algorithms()
    bad = [n for n in names if n not in known]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"unknown algorithm {', '.join(bad) or repr(text)}; known: {', '.join(known)}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"algorithm named twice in {text!r}")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "hash",
        help="hash image files or directories",
        description=(
            "Hash images and write one row per image and algorithm: path, algorithm, hex, "
            "quality (PDQ's 0..100; empty/null for algorithms without one), quality_ok "
            "(quality >= 50, the PDQ reference tools' limit of a reliable hash; empty/null "
            "without a quality). Inputs that fail are reported on stderr and make the exit "
            "status 1; the others are still written."
        ),
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="image file or directory (its image files; see --recursive); "
             "'-' reads paths from stdin, one per line",
    )
    p.add_argument(
        "-a", "--algorithm", type=_algorithm_list, default=["pdq"], metavar="NAME[,NAME...]",
        help="algorithm(s): ahash, dhash, phash, whash, pdq (default: pdq); several names, "
             "comma-separated, are computed from one decode per image",
    )
    p.add_argument(
        "-r", "--recursive", action="store_true",
        help="descend into subdirectories of directory arguments",
    )
    p.add_argument("-f", "--format", choices=FORMATS, default="csv", help="default: csv")
    p.add_argument(
        "-o", "--output", metavar="FILE",
        help="write here (atomically: a temporary file renamed into place) instead of stdout",
    )
    p.add_argument(
        "-j", "--workers", type=worker_count, default=None, metavar="N",
        help="worker processes (default: one per CPU; at most twice the CPU count, a larger "
             "N is clamped; 1 hashes in this process)",
    )
    p.add_argument(
        "--fast", action="store_true",
        help="JPEG draft decoding: faster, not bit-identical to the reference",
    )
    p.add_argument(
        "--max-pixels", type=_positive_int, default=None, metavar="N",
        help="refuse images declaring more pixels than this (decompression-bomb limit)",
    )
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    p.set_defaults(func=run)
    return p


def _report(path: str, kind: str, message: str) -> None:
    if message.startswith(f"{path}: "):  # messages often name the input already
        message = message[len(path) + 2:]
    print(f"hashlib-ext: {path}: {kind}: {message}", file=sys.stderr)


def _read_stdin_paths() -> Iterator[str]:
    """Paths from stdin, one per line, read as bytes and decoded as the file system does
    (``os.fsdecode``): a name that is not valid UTF-8 is kept byte for byte."""
    raw = getattr(sys.stdin, "buffer", None)
    lines: Iterable[str] = sys.stdin if raw is None else (os.fsdecode(b) for b in raw)
    for line in lines:
        line = line.rstrip("\r\n")
        if line:
            yield line


def _inputs(args: list[str]) -> Iterator[str]:
    for a in args:
        if a == "-":
            yield from _read_stdin_paths()
        else:
            yield a


def _rows(res: Any, names: list[str]) -> Iterator[Row]:
    """(path, algorithm, hex, quality, quality_ok) per input and algorithm, in input
    order."""
    from ..formats import quality_ok

    arrays = res.hashes if isinstance(res.hashes, dict) else {names[0]: res.hashes}
    hexes = {}
    for n, arr in arrays.items():
        width = arr.codes.shape[1] * 2
        text = arr.codes.tobytes().hex()
        hexes[n] = (text, width, arr.qualities, quality_ok(arr.qualities))
    for i, path in enumerate(res.ids):
        for n in names:
            text, width, q, ok = hexes[n]
            quality = None if q is None or q[i] < 0 else int(q[i])
            flag = None if ok is None or ok[i] is None else bool(ok[i])
            yield str(path), n, text[i * width:(i + 1) * width], quality, flag


def write_rows(rows: Iterable[Row], fmt: str, out: IO[str]) -> None:
    """Write rows as CSV (with a header; quality_ok as true/false, empty when unknown), one
    JSON array, or JSON lines (null when unknown). Names that are not valid UTF-8: see
    :mod:`hashlib_ext.cli._common`."""
    writer = RowWriter(out, fmt, FIELDS)
    writer.write(dict(zip(FIELDS, row, strict=True)) for row in rows)
    writer.close()


def run(args: argparse.Namespace) -> int:
    from ..batch import hash_images
    from ..files import iter_image_paths

    names: list[str] = args.algorithm
    if args.fast:
        from ..hashers import get

        slow = [n for n in names if get(n).draft_size is None]
        if slow:
            print(f"hashlib-ext hash: error: --fast: {', '.join(slow)} has no fast mode",
                  file=sys.stderr)
            return 2
    check_output(args.output, args.paths)
    walk_errors = 0

    def on_walk_error(path: str, err: OSError) -> None:
        nonlocal walk_errors
        walk_errors += 1
        _report(path, type(err).__name__, err.strerror or str(err))

    progress = show_progress(args)
    paths = iter_image_paths(_inputs(args.paths), recursive=args.recursive,
                             on_error=on_walk_error)
    try:
        with compute_only():
            res = hash_images(
                paths, names if len(names) > 1 else names[0], workers=args.workers,
                progress=progress, fast=args.fast, max_pixels=args.max_pixels,
            )
    except ValueError as e:  # e.g. --fast with an algorithm that has no fast mode
        print(f"hashlib-ext hash: error: {e}", file=sys.stderr)
        return 2

    to_file = args.output is not None and args.output != "-"
    # Nothing hashed: an existing output file is not replaced by an empty one.
    if res.ok or not to_file:
        try:
            with output_stream(args.output) as f:
                write_rows(_rows(res, names), args.format, f)
        except BrokenPipeError:
            raise
        except OSError as e:
            print(f"hashlib-ext: {args.output}: {type(e).__name__}: {e.strerror or e}",
                  file=sys.stderr)
            return 1

    for path, kind, message in res.errors:
        _report(str(path), kind, message)
    if res.ok == 0 and res.failed == 0 and walk_errors == 0:
        print("hashlib-ext: no image files found", file=sys.stderr)
    if res.ok == 0 and to_file:
        print(f"hashlib-ext: nothing hashed; {args.output} not written", file=sys.stderr)
    if res.ok == 0:
        return 1
    return 1 if (res.failed or walk_errors) else 0
