"""``hashlib-ext convert IN OUT``: a hash list from one format to another (hex lines, CSV,
TSV, JSON lines, JSON, Parquet, ThreatExchange CSV), keeping ids, keys, qualities and
metadata, in bounded memory (:func:`hashlib_ext.formats.convert_hash_list`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import EXIT_FAILED, UsageError, add_min_quality, check_output, error, show_progress
from ._failures import Failures
from ._options import add_errors, add_input_format, add_progress, note


def _format(text: str) -> str:
    """argparse type of ``-f``: a hash-list format name."""
    from ._common import hash_format

    return hash_format(text)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert",
        help="convert a hash list to another format",
        description=(
            "Convert a hash list between formats: hex lines, csv, tsv, jsonl, json, parquet, "
            "te (ThreatExchange CSV). Ids, keys, PDQ qualities and metadata columns (TE's "
            "collab, category, tags; any other column) are kept where the output format can "
            "hold them: hex lines hold no ids or metadata (refused; --no-metadata drops the "
            "metadata), hex and te no quality. Formats come from the extensions unless "
            "given. The input is read twice, a chunk at a time (once to learn its columns), "
            "so any size converts in bounded memory; the output is written atomically."
        ),
    )
    p.add_argument("input", metavar="IN", help="the hash list to read")
    p.add_argument("out", metavar="OUT", nargs="?", default=None,
                   help="where to write it ('-': stdout); or give -o")
    p.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="the same as OUT")
    p.add_argument("-f", "--format", type=_format, default=None, metavar="FMT",
                   help="output format (default: from OUT's extension, else csv); one that "
                        "contradicts the extension is refused")
    add_input_format(p)
    p.add_argument("-a", "--algorithm", default=None, metavar="NAME",
                   help="the algorithm to take from a list holding several (default: the "
                        "file's, else pdq); rows of others are left out and counted")
    p.add_argument("--lenient", action="store_true",
                   help="skip malformed records (each reported on stderr or in --errors) "
                        "instead of failing")
    add_min_quality(p, "hashes")
    p.add_argument("--no-metadata", dest="metadata", action="store_false",
                   help="leave the metadata columns out")
    add_progress(p)
    add_errors(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..errors import HashFormatError, HashlibExtError, HashListOutputError
    from ..formats import output_format
    from ..formats.common import resolve_format
    from ..formats.convert import RECORD_UNITS, same_file

    if (args.out is None) == (args.output is None):
        raise UsageError("give the output once: OUT or -o FILE")
    out = args.out if args.out is not None else args.output
    try:
        fmt = output_format(None if out == "-" else out, args.format)
        in_fmt = resolve_format(Path(args.input), args.input_format)
    except HashFormatError as e:
        raise UsageError(str(e)) from None
    if out != "-" and same_file(args.input, out):
        raise UsageError(f"OUT {out} is IN: write the converted list elsewhere")
    if fmt == "parquet" and out == "-":
        raise UsageError("parquet is written to a file: give OUT.parquet")
    check_output(out, [args.input])
    failures = Failures(args)
    failures.check([args.input], [out])
    unit = RECORD_UNITS.get(in_fmt, "line")

    bar = None

    def progress(n: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit=" hashes", desc="converting", leave=False)
        bar.update(n)

    try:
        done = _convert(args, out, fmt, progress if show_progress(args) else None)
    except HashListOutputError as e:  # about OUT, not a failed input
        failures.finish()
        error(str(e))
        return EXIT_FAILED
    except HashlibExtError as e:
        failures.add(args.input, type(e).__name__, str(e))
        failures.finish()
        return EXIT_FAILED
    finally:
        if bar is not None:
            bar.close()
    for line, reason in done.skipped:
        failures.add(args.input, "HashFormatError", f"{unit} {line}: {reason} (skipped)")
    failures.finish()
    what = f"{done.written} {done.algorithm} hash{'es' if done.written != 1 else ''}"
    extra = "".join([
        f", {len(done.skipped)} malformed records skipped" if done.skipped else "",
        f", {done.ignored} records of other algorithms left out (-a chooses)"
        if done.ignored else "",
        f", {done.low_quality} below quality {args.min_quality} left out"
        if done.low_quality else ""])
    shown = "stdout" if out == "-" else out
    note(args, f"converted {what} from {args.input} ({in_fmt}) to {shown} ({fmt}){extra}")
    return 0


def _convert(args: argparse.Namespace, out: str, fmt: str, progress: Any) -> Any:
    from ..formats import convert_hash_list
    from ._common import stdout_lossless

    return convert_hash_list(
        args.input, stdout_lossless() if out == "-" else out, format=fmt,
        input_format=args.input_format, algorithm=args.algorithm, lenient=args.lenient,
        min_quality=args.min_quality, metadata=args.metadata, on_chunk=progress)
