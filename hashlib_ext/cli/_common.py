"""What every sub-command shares: argument types, the output check made before any work,
atomic output, and the text policy for names that are not valid UTF-8.

Names that are not valid UTF-8 (on POSIX a file name is bytes; Python holds the undecodable
bytes as lone surrogates, ``os.fsdecode``'s ``surrogateescape``) are written losslessly:

- CSV and other text output: the name's own bytes (``surrogateescape``), so the field is
  byte for byte the name the file system holds. Read it back with
  ``open(..., encoding="utf-8", errors="surrogateescape")`` to get the same ``str``.
- JSON and JSON lines: each undecodable byte 0xXY as the escape ``\\udcXY``, so the output
  stays valid UTF-8 JSON; ``json.loads`` gives back the same ``str`` and ``os.fsencode``
  the original bytes. (A valid UTF-8 name never holds a lone surrogate: the escape is
  unambiguous.)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from ..errors import UsageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

__all__ = ["UsageError", "discard", "output_stream", "RowWriter", "json_text", "check_output",
           "error", "show_progress", "hash_format", "output_format", "worker_count", "min_quality",
           "add_min_quality",
           "stdout_lossless", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE"]


_discarded: set[int] = set()


def discard(out: IO[str]) -> None:
    """Inside :func:`output_stream`: nothing of use was produced, so when the block ends
    the output file is left as it was (what was written to ``out`` is dropped)."""
    _discarded.add(id(out))


def error(msg: str) -> None:
    """One line on stderr (undecodable bytes of names shown as ``\\xNN``)."""
    print(f"hashlib-ext: {msg}", file=sys.stderr)


def show_progress(args: argparse.Namespace) -> bool:
    """--progress / --no-progress; -q/--quiet turns it off; else a bar only when stderr is a
    terminal."""
    if getattr(args, "quiet", False):
        return False
    progress = getattr(args, "progress", None)
    return progress if progress is not None else sys.stderr.isatty()


# -- argument types ------------------------------------------------------------------------
def hash_format(text: str) -> str:
    """argparse type of ``--input-format`` and the like: a hash-list format name."""
    from ..errors import HashFormatError
    from ..formats import format_name

    try:
        return format_name(text)
    except HashFormatError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_int(text: str) -> int:
    """argparse type of counts (``--shards``, ``--max-pixels``, ...): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def worker_count(text: str) -> int:
    """argparse type of ``-j/--workers``: a positive integer, clamped (with a note on
    stderr) to :func:`hashlib_ext.batch.max_workers`, twice the CPU count."""
    from ..batch import max_workers

    value = positive_int(text)
    cap = max_workers()
    if value > cap:
        error(f"note: {value} workers is more than {cap} (twice the {os.cpu_count()} CPUs); "
              f"using {cap}")
        return cap
    return value


def min_quality(text: str) -> int:
    """argparse type of ``--min-quality``: an integer 0..100."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a PDQ quality 0..100, got {text!r}")
    return value


def add_min_quality(p: argparse.ArgumentParser, what: str) -> None:
    from ..formats import PDQ_MIN_QUALITY

    p.add_argument(
        "--min-quality", type=min_quality, default=None, metavar="Q",
        help=f"leave out {what} whose PDQ quality is known and below Q (0..100; "
             f"{PDQ_MIN_QUALITY} is the PDQ reference tools' limit of a reliable hash); "
             "hashes without a quality (other algorithms) are kept")


# -- the output file, checked before any work ----------------------------------------------
def check_output(path: str | None, inputs: Iterable[str] = ()) -> None:
    """Refuse an ``--output`` that cannot be written or would overwrite an input, before
    anything is read or written (:class:`UsageError`)."""
    if path is None or path == "-":
        return
    if path == "" or os.path.isdir(path):
        raise UsageError(f"--output {path!r} is a folder, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--output {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--output {path}: cannot create files in {parent}")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise UsageError(f"--output {path} exists and is not a regular file")
    for src in inputs:
        try:
            if src != "-" and os.path.exists(path) and os.path.samefile(src, path):
                raise UsageError(f"--output {path} is also an input: it would be replaced")
        except OSError:
            continue
        if src != "-" and os.path.isdir(src) and _walk_would_take(src, path):
            raise UsageError(f"--output {path} is an image inside the input folder {src}: "
                             "it would be replaced")


def _walk_would_take(folder: str, path: str) -> bool:
    """Whether ``path`` is an image file a walk of ``folder`` would read (it lies inside
    it, with an image extension)."""
    from ..files import is_image_name

    real_folder = os.path.realpath(folder)
    real = os.path.realpath(path)
    return is_image_name(real) and os.path.commonpath([real_folder, real]) == real_folder


_ROW_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def output_format(path: str | None, fmt: str | None, default: str = "csv") -> str:
    """The row format (csv, json, jsonl) of a command's output: ``-f`` if given, else from
    ``-o``'s extension, else ``default``; ``-f`` contradicting a known extension is a
    :class:`UsageError` (found before any work)."""
    ext = os.path.splitext(path or "")[1].lower() if path not in (None, "-") else ""
    implied = _ROW_FORMATS.get(ext)
    if fmt is None:
        return implied or default
    if implied is not None and implied != fmt:
        raise UsageError(f"-f {fmt} contradicts the extension of --output {path} ({implied})")
    return fmt


def stdout_lossless() -> IO[str]:
    """stdout, set to write undecodable name bytes as themselves (``surrogateescape``)."""
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper) and out.errors == "strict":
        out.reconfigure(errors="surrogateescape")
    return out


@contextmanager
def output_stream(path: str | None) -> Iterator[IO[str]]:
    """stdout, or ``path`` written atomically: a temporary file beside it renamed into
    place when the block ends normally; on an exception (an error, a signal) it is removed
    and an existing ``path`` is left as it was; :func:`discard` does the same without
    an error. UTF-8, undecodable name bytes as such."""
    if path is None or path == "-":
        out = stdout_lossless()
        try:
            yield out
        finally:
            _discarded.discard(id(out))
        out.flush()
        return
    from ..atomic import atomic_path

    dropped = RuntimeError("output discarded")  # only ever raised and caught here
    key = None
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
                key = id(f)
                yield f
            if key in _discarded:
                raise dropped  # atomic_path removes the temporary file
    except RuntimeError as e:
        if e is not dropped:
            raise
    finally:
        if key is not None:
            _discarded.discard(key)


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` with non-ASCII text as UTF-8, and lone surrogates (undecodable bytes
    of file names) as ``\\udcXY`` escapes, so the text is valid UTF-8 and loads back to the
    same ``str``."""
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class RowWriter:
    """Writes rows (dicts with fixed columns) as CSV, JSON lines, or one JSON array.

    ``optional`` columns (e.g. ``error_type``/``error`` of failed inputs) are in the CSV
    header, and in a JSON row only when the row has a value for them."""

    def __init__(self, out: IO[str], fmt: str, columns: Sequence[str],
                 optional: Sequence[str] = ()):
        if fmt not in ("csv", "json", "jsonl"):
            raise ValueError(f"unknown format {fmt!r}")
        self.out, self.fmt, self.columns = out, fmt, list(columns) + list(optional)
        self.optional = frozenset(optional)
        self.count = 0
        self._csv = csv.writer(out, lineterminator="\n")
        if fmt == "csv":
            self._csv.writerow(self.columns)
        elif fmt == "json":
            out.write("[")

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            if self.fmt == "csv":
                self._csv.writerow([_csv_cell(row.get(c)) for c in self.columns])
            else:
                text = json_text({c: row.get(c) for c in self.columns
                                  if c not in self.optional or row.get(c) is not None})
                if self.fmt == "json":
                    text = ("\n  " if self.count == 0 else ",\n  ") + text
                else:
                    text += "\n"
                self.out.write(text)
            self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "]\n")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
