"""``hashlib-ext hash``: hash image files and directories to CSV, JSON or JSONL."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

FORMATS = ("csv", "json", "jsonl")
FIELDS = ("path", "algorithm", "hex", "quality")


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
            "quality (PDQ's 0..100; empty/null for algorithms without one). Inputs that fail "
            "are reported on stderr and make the exit status 1; the others are still written."
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
        "-j", "--workers", type=_positive_int, default=None, metavar="N",
        help="worker processes (default: one per CPU; 1 hashes in this process)",
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
    for line in sys.stdin:
        line = line.rstrip("\r\n")
        if line:
            yield line


def _inputs(args: list[str]) -> Iterator[str]:
    for a in args:
        if a == "-":
            yield from _read_stdin_paths()
        else:
            yield a


def _rows(res: Any, names: list[str]) -> Iterator[tuple[str, str, str, int | None]]:
    """(path, algorithm, hex, quality) per input and algorithm, in input order."""
    arrays = res.hashes if isinstance(res.hashes, dict) else {names[0]: res.hashes}
    hexes = {}
    for n, arr in arrays.items():
        width = arr.codes.shape[1] * 2
        text = arr.codes.tobytes().hex()
        hexes[n] = (text, width, arr.qualities)
    for i, path in enumerate(res.ids):
        for n in names:
            text, width, q = hexes[n]
            quality = None if q is None or q[i] < 0 else int(q[i])
            yield str(path), n, text[i * width:(i + 1) * width], quality


def write_rows(rows: Iterable[tuple[str, str, str, int | None]], fmt: str, out: IO[str]) -> None:
    """Write rows as CSV (with a header), one JSON array, or JSON lines."""
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(FIELDS)
        for path, algo, hx, q in rows:
            w.writerow((path, algo, hx, "" if q is None else q))
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(dict(zip(FIELDS, row, strict=True))) + "\n")
    elif fmt == "json":
        out.write("[")
        sep = "\n"
        for row in rows:
            out.write(sep + json.dumps(dict(zip(FIELDS, row, strict=True))))
            sep = ",\n"
        out.write("\n]\n")
    else:
        raise ValueError(f"unknown format {fmt!r}")


def run(args: argparse.Namespace) -> int:
    from ..atomic import atomic_open
    from ..batch import hash_images
    from ..files import iter_image_paths

    names: list[str] = args.algorithm
    walk_errors = 0

    def on_walk_error(path: str, err: OSError) -> None:
        nonlocal walk_errors
        walk_errors += 1
        _report(path, type(err).__name__, err.strerror or str(err))

    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    paths = iter_image_paths(_inputs(args.paths), recursive=args.recursive,
                             on_error=on_walk_error)
    try:
        res = hash_images(
            paths, names if len(names) > 1 else names[0], workers=args.workers,
            progress=progress, fast=args.fast, max_pixels=args.max_pixels,
        )
    except ValueError as e:  # e.g. --fast with an algorithm that has no fast mode
        print(f"hashlib-ext hash: error: {e}", file=sys.stderr)
        return 2

    rows = _rows(res, names)
    if args.output and args.output != "-":
        try:
            with atomic_open(args.output, newline="") as f:
                write_rows(rows, args.format, f)
        except OSError as e:
            print(f"hashlib-ext: {args.output}: {type(e).__name__}: {e.strerror or e}",
                  file=sys.stderr)
            return 1
    else:
        write_rows(rows, args.format, sys.stdout)
        sys.stdout.flush()

    for path, kind, message in res.errors:
        _report(str(path), kind, message)
    if res.ok == 0 and res.failed == 0 and walk_errors == 0:
        print("hashlib-ext: no image files found", file=sys.stderr)
        return 1
    return 1 if (res.failed or walk_errors) else 0
