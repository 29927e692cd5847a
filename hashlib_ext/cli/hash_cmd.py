"""``hashlib-ext hash``: hash image files and folders into a hash list (CSV, TSV, JSON lines,
JSON, Parquet, hex lines or ThreatExchange CSV), written by :mod:`hashlib_ext.formats`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ._common import UsageError, check_output, output_stream, positive_int, show_progress
from ._failures import Failures
from ._inputs import note_skipped
from ._options import add_errors, add_output, add_progress, add_recursive, add_workers, note
from ._sharded import add_scheduler, dask_client
from ._signals import compute_only

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "hex", "te")
FIELDS = ("path", "algorithm", "hex", "quality", "quality_ok")
"""The columns of CSV/TSV/JSON/JSONL output (as before the other formats existed)."""
ONE_ALGORITHM = ("parquet", "hex", "te")
"""Formats without a per-row algorithm: one algorithm per file."""


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


def _format(text: str) -> str:
    """argparse type of ``-f``: an output format name (aliases as the readers take them)."""
    from ..errors import HashFormatError
    from ..formats import format_name

    try:
        return format_name(text)
    except HashFormatError:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(FORMATS)})") from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "hash",
        help="hash image files or directories into a hash list",
        description=(
            "Hash images and write a hash list. CSV, TSV, JSON and JSON lines get one row "
            "per image and algorithm: path, algorithm, hex, quality (PDQ's 0..100; "
            "empty/null for algorithms without one), quality_ok (quality >= 50, the PDQ "
            "reference tools' limit of a reliable hash; empty/null without a quality). "
            "Parquet (hash, id, key, quality), hex lines (HASH PATH) and ThreatExchange CSV "
            "(signal_type,signal_str,collab,category,tags,key; PDQ only) hold one algorithm. "
            "Every format is read back by index, match, dedup and convert. The output stays "
            "a plain hash list: inputs that fail are reported on stderr (or in --errors "
            "FILE) and make the exit status 1; the others are still written."
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
             "comma-separated, are computed from one decode per image (csv, tsv, jsonl and "
             "json only: the other formats hold one algorithm)",
    )
    add_recursive(p)
    p.add_argument(
        "-f", "--format", type=_format, default=None, metavar="FMT",
        help=f"output format: {', '.join(FORMATS)} (te: ThreatExchange CSV). Default: from "
             "-o's extension (.csv .tsv .jsonl .json .parquet .txt/.hex, each optionally "
             ".gz), else csv; a format that contradicts the extension is refused",
    )
    add_output(p, "the hash list")
    add_workers(p)
    p.add_argument(
        "--fast", action="store_true",
        help="JPEG draft decoding: faster, not bit-identical to the reference",
    )
    p.add_argument(
        "--max-pixels", type=positive_int, default=None, metavar="N",
        help="refuse images declaring more pixels than this (decompression-bomb limit)",
    )
    add_progress(p)
    add_errors(p)
    add_scheduler(p, "hash on a dask cluster into Parquet partitions in the folder -o PARTS/ "
                     "(inputs: image paths, folders or fsspec URLs the workers can read); "
                     "then 'index build PARTS/ --shards N --scheduler ...'. Hash")
    p.set_defaults(func=run)
    return p


def choose_format(fmt: str | None, output: str | None) -> str:
    """The output format: ``-f``, else ``-o``'s extension, else csv. :class:`UsageError`
    when they contradict each other."""
    from ..errors import HashFormatError
    from ..formats import output_format

    try:
        return output_format(None if output == "-" else output, fmt)
    except HashFormatError as e:
        raise UsageError(str(e)) from None


def _check_args(args: argparse.Namespace, fmt: str) -> None:
    """Everything refused before any work: exit 2 (or 1 for a missing pyarrow)."""
    names: list[str] = args.algorithm
    if args.fast:
        from ..hashers import get

        slow = [n for n in names if get(n).draft_size is None]
        if slow:
            raise UsageError(f"--fast: {', '.join(slow)} has no fast mode")
    if fmt in ONE_ALGORITHM and len(names) > 1:
        raise UsageError(f"-f {fmt} holds one algorithm, not {len(names)} ({','.join(names)}): "
                         "run once per algorithm, or write csv, tsv, jsonl or json")
    if fmt == "te" and names != ["pdq"]:
        raise UsageError(f"-f te: ThreatExchange CSV holds PDQ hashes (signal type pdq), not "
                         f"{names[0]}; write csv, tsv, jsonl, json, parquet or hex")
    if fmt == "parquet":
        if args.output in (None, "-"):
            raise UsageError("-f parquet writes a file: give -o FILE.parquet")
        from ..formats import require_pyarrow

        require_pyarrow()


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


def hash_lists(res: Any, names: Sequence[str]) -> list[Any]:
    """One :class:`~hashlib_ext.formats.HashList` per algorithm of a batch result: the
    images in input order, ids 0..n-1, the paths as keys."""
    from ..formats import HashList

    arrays = res.hashes if isinstance(res.hashes, dict) else {names[0]: res.hashes}
    keys = np.empty(len(res.ids), dtype=object)
    keys[:] = [str(p) for p in res.ids]
    ids = np.arange(len(res.ids), dtype=np.int64)
    return [HashList(arrays[n], ids, keys) for n in names]


def layout_for(fmt: str, lists: Sequence[Any]) -> Any:
    """The columns ``hash`` writes in ``fmt``: :data:`FIELDS` in CSV/TSV/JSON/JSONL, the
    format's own columns with the path as key in the others."""
    from ..formats import Layout

    if fmt in ("csv", "tsv", "json", "jsonl"):
        return Layout(keys=True, qualities=True, ids=False, columns=FIELDS)
    q = lists[0].hashes.qualities if lists else None
    return Layout(keys=True, qualities=q is not None and bool((q >= 0).any()), ids=False)


@dataclass(frozen=True)
class Hashed:
    """What ``hash`` writes: one HashList per algorithm (the same images), and the name of
    the output for messages."""

    lists: Sequence[Any]
    name: str


def write_rows(rows: Hashed, fmt: str, out: IO[str]) -> None:
    """Write the hash lists to the text stream ``out``: one record per image and
    algorithm, in input order."""
    from ..formats import HashListWriter

    with HashListWriter(out, fmt, layout=layout_for(fmt, rows.lists), name=rows.name) as w:
        w.write_interleaved(rows.lists)


def write_file(lists: Sequence[Any], fmt: str, path: str) -> None:
    """Write the hash lists to ``path`` atomically: Parquet, or text compressed by ``.gz``."""
    from ..formats import HashListWriter

    algorithm = lists[0].hashes.algorithm if lists else None
    with HashListWriter(path, fmt, layout=layout_for(fmt, lists), algorithm=algorithm) as w:
        w.write_interleaved(lists)


def run_scheduled(args: argparse.Namespace) -> int:
    """``hash --scheduler``: the workers hash and write Parquet partitions (one file per
    partition, failed inputs in ``_errors/``); nothing funnels through this process but
    the input names."""
    from ..dask_pipeline import hash_to_parquet, read_errors

    if args.output in (None, "-") or os.path.isfile(args.output):
        raise UsageError("--scheduler writes Parquet partitions into a folder: give -o PARTS/")
    if len(args.algorithm) != 1:
        raise UsageError("--scheduler hashes one algorithm per run")
    failures = Failures(args)
    failures.check(args.paths)
    with dask_client(args.scheduler) as client:
        done = hash_to_parquet(_inputs(args.paths), args.output, args.algorithm[0],
                               client=client, fast=args.fast, max_pixels=args.max_pixels,
                               recursive=args.recursive, overwrite=True)
    for _, src, kind, message in read_errors(args.output):
        failures.add(src, kind, message)
    failures.finish()
    note(args, f"hashed {done.ok} inputs into {len(done.parts)} partitions in {args.output}"
               + (f"; {done.failed} failed" if done.failed else ""))
    return 1 if (done.failed or done.ok == 0) else 0


def run(args: argparse.Namespace) -> int:
    from ..batch import hash_images
    from ..errors import HashlibExtError
    from ..files import iter_image_paths

    if args.scheduler is not None:
        return run_scheduled(args)
    names: list[str] = args.algorithm
    fmt = choose_format(args.format, args.output)
    _check_args(args, fmt)
    check_output(args.output, args.paths)
    failures = Failures(args)
    failures.check(args.paths)

    walk_errors = 0

    def on_walk_error(path: str, err: OSError) -> None:
        nonlocal walk_errors
        walk_errors += 1
        failures.add(path, type(err).__name__, err.strerror or str(err))

    skipped: list[str] = []

    def walk() -> Iterator[str]:
        """The image files of every input; a folder without any is a failed input."""
        for arg in _inputs(args.paths):
            found = False
            for p in iter_image_paths([arg], recursive=args.recursive,
                                      on_error=on_walk_error, on_skip=skipped.append):
                found = True
                yield p
            if not found and os.path.isdir(arg):
                failures.add(arg, "NoImagesFound", "no images found" + (
                    "" if args.recursive else " (use --recursive for subfolders)"))

    paths: Iterable[str] = walk()
    if "-" not in args.paths:  # listing is cheap next to hashing: the bar gets a total
        paths = list(paths)
        note_skipped(skipped, args.quiet)
        skipped = []
    try:
        with compute_only():
            res = hash_images(paths, names if len(names) > 1 else names[0],
                              workers=args.workers, progress=show_progress(args),
                              fast=args.fast, max_pixels=args.max_pixels)
    except ValueError as e:  # an argument hash_images refuses: a usage error
        raise UsageError(str(e)) from None
    note_skipped(skipped, args.quiet)
    failures.add_batch(res.errors)

    to_file = args.output is not None and args.output != "-"
    # Nothing hashed: an existing output file is not replaced by an empty one.
    if res.ok or not to_file:
        lists = hash_lists(res, names)
        try:
            if to_file and (fmt == "parquet" or args.output.lower().endswith(".gz")):
                write_file(lists, fmt, args.output)
            else:
                with output_stream(args.output) as f:
                    write_rows(Hashed(lists, args.output or "stdout"), fmt, f)
        except BrokenPipeError:
            raise
        except OSError as e:
            failures.finish()
            print(f"hashlib-ext: {args.output}: {type(e).__name__}: {e.strerror or e}",
                  file=sys.stderr)
            return 1
        except HashlibExtError as e:  # the format cannot hold a path (a hex key with a
            failures.finish()         # line break, a name Parquet cannot store as UTF-8)
            print(f"hashlib-ext: {e}", file=sys.stderr)
            return 1

    failures.finish()
    if res.ok == 0 and res.failed == 0 and walk_errors == 0 and not failures:
        print("hashlib-ext: no image files found", file=sys.stderr)
    if res.ok == 0 and to_file:
        print(f"hashlib-ext: nothing hashed; {args.output} not written", file=sys.stderr)
    if res.ok == 0:
        return 1
    return 1 if (res.failed or walk_errors or failures) else 0
