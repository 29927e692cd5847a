"""The options every sub-command spells the same way.

One vocabulary across ``hash``, ``convert``, ``index``, ``match``, ``dedup``, ``bench`` and
``datasets``:

``-o/--output FILE``     where the command's main result goes (stdout when absent or ``-``)
``-a/--algorithm NAME``  the hash algorithm
``-j/--workers N``       worker processes
``-q/--quiet``           no progress bar and no notes (errors are still printed)
``--progress``           a progress bar on stderr even when it is not a terminal
``--input-format F``     the format of hash-list inputs (default: from the extension)
``--errors FILE``        failed inputs as records (CSV, JSON or JSON lines, by extension)
``-r/--recursive``       descend into sub-folders of folder arguments
"""

from __future__ import annotations

import argparse
import sys

from ._common import hash_format, worker_count


def add_output(p: argparse.ArgumentParser, what: str, *, required: bool = False,
               metavar: str = "FILE") -> None:
    """``-o/--output``: where ``what`` goes, written atomically."""
    where = "" if required else " (default: stdout)"
    p.add_argument("-o", "--output", metavar=metavar, required=required, default=None,
                   help=f"write {what} here{where}, atomically (a temporary file renamed "
                        "into place)")


def add_workers(p: argparse.ArgumentParser) -> None:
    """``-j/--workers``."""
    p.add_argument("-j", "--workers", type=worker_count, default=None, metavar="N",
                   help="worker processes (default: one per CPU; at most twice the CPU count, "
                        "a larger N is clamped; 1 works in this process)")


def add_progress(p: argparse.ArgumentParser) -> None:
    """``--progress/--no-progress`` and ``-q/--quiet`` (no bar, no notes)."""
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar with total and ETA on stderr (default: when stderr "
                        "is a terminal)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no notes on stderr (errors are still printed)")


def add_recursive(p: argparse.ArgumentParser) -> None:
    """``-r/--recursive``."""
    p.add_argument("-r", "--recursive", action="store_true",
                   help="descend into sub-folders of folder arguments")


def add_errors(p: argparse.ArgumentParser) -> None:
    """``--errors FILE``: the failed inputs as records."""
    p.add_argument("--errors", metavar="FILE", default=None,
                   help="also write every failed input as a record (input, type, message) "
                        "to FILE: .csv, .json or .jsonl (default JSON lines); stderr then "
                        "gets one summary line instead of one line per failure")


def add_input_format(p: argparse.ArgumentParser, *, legacy: str | None = None) -> None:
    """``--input-format``: the format of hash-list inputs. ``legacy`` keeps an older
    spelling working (hidden from --help)."""
    p.add_argument("--input-format", dest="input_format", type=hash_format, default=None,
                   metavar="FMT",
                   help="format of hash-list inputs: hex, csv, tsv, jsonl, json, parquet or "
                        "te (ThreatExchange CSV); default: from each file's extension")
    if legacy:
        p.add_argument(legacy, dest="input_format", type=hash_format,
                       help=argparse.SUPPRESS)


def note(args: argparse.Namespace, msg: str) -> None:
    """A note on stderr, unless ``-q``."""
    if not getattr(args, "quiet", False):
        print(f"hashlib-ext: {msg}", file=sys.stderr)
