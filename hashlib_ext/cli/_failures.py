"""Failed inputs, reported the same way by every command.

Each failure is one record: the input (a path, a hash-list line, a URL), the error type and
a message that does not repeat the input. On stderr it is one line,
``hashlib-ext: INPUT: TYPE: MESSAGE``; in a command's structured output (JSON documents) it
is ``{"input": ..., "type": ..., "message": ...}`` in a ``failures`` list; with
``--errors FILE`` the same records go to FILE (CSV with a header, one JSON array, or JSON
lines, by extension) and stderr gets one summary line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._common import RowWriter, UsageError, check_output, output_stream

FIELDS = ("input", "type", "message")


@dataclass(frozen=True)
class Failure:
    """One failed input."""

    input: str
    type: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"input": self.input, "type": self.type, "message": self.message}

    def line(self) -> str:
        return f"{self.input}: {self.type}: {self.message}"


def failure(src: Any, kind: str, message: str) -> Failure:
    """A :class:`Failure` whose message no longer starts with, or ends by naming, the input
    (error messages name their input; the record has it in its own field)."""
    from ..errors import describe

    name = str(src)
    text = str(message).strip()
    # the spellings an error message may use for the input: as given, normalised
    # ('./a.txt' -> 'a.txt'), shortened for messages ('...tail'), the bare file name
    spellings = [s for s in dict.fromkeys((name, os.path.normpath(name), describe(name),
                                           os.path.basename(name))) if s]
    for spelling in spellings:
        for sep in (": ", ", ", ":"):
            if text.startswith(spelling + sep):
                text = text[len(spelling) + len(sep):]
                break
        else:
            continue
        break
    for spelling in spellings:
        for suffix in (f": {spelling}", f" {spelling!r}", f" {spelling}"):
            if text.endswith(suffix):
                text = text[: -len(suffix)]
                break
    return Failure(name, kind, text or kind)


def error_format(path: str) -> str:
    """The record format of an ``--errors`` file, from its extension."""
    ext = os.path.splitext(path)[1].lower()
    return {".csv": "csv", ".json": "json"}.get(ext, "jsonl")


class Failures:
    """The failures of one command run, in the order they happened."""

    def __init__(self, args: argparse.Namespace | None = None):
        self.path: str | None = getattr(args, "errors", None) if args is not None else None
        self.output: str | None = getattr(args, "output", None) if args is not None else None
        self.items: list[Failure] = []
        self.skipped: list[Failure] = []
        """Malformed records that --lenient skipped: written to --errors, not failures."""

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def check(self, inputs: Iterable[str] = (), outputs: Iterable[str | None] = ()) -> None:
        """Refuse an unwritable ``--errors`` file before any work (as ``--output``), and one
        that is also an input or an output of the command (it would replace it)."""
        if self.path is None:
            return
        check_output(self.path, inputs)
        for out in (self.output, *outputs):
            if out is not None and out != "-" and _same_path(self.path, out):
                raise UsageError(f"--errors {self.path} is also the command's output "
                                 f"{out}: it would replace it")

    def add(self, src: Any, kind: str, message: str) -> Failure:
        """Record a failure; without ``--errors`` it is also printed at once."""
        item = failure(src, kind, message)
        self.items.append(item)
        if self.path is None:
            _stderr(item.line())
        return item

    def add_batch(self, errors: Iterable[tuple[Any, str, str]]) -> None:
        """The ``(input, type, message)`` records of a :class:`~hashlib_ext.BatchResult`."""
        for src, kind, message in errors:
            self.add(src, kind, message)

    def add_skipped(self, path: str, skipped: list[tuple[int, str]]) -> None:
        """Records of a hash list that --lenient skipped, for the --errors file (they do
        not make the run fail)."""
        self.skipped.extend(Failure(str(path), "HashFormatError", f"line {line}: {reason} "
                                    "(skipped)") for line, reason in skipped)

    def records(self) -> list[dict[str, str]]:
        """The failures as JSON-ready records, for a command's structured output."""
        return [f.as_dict() for f in self.items]

    def finish(self) -> None:
        """Write ``--errors FILE`` (also when empty, so that a file from an earlier run is
        not mistaken for this run's) and say on stderr how many failed."""
        if self.path is None:
            return
        with output_stream(self.path) as out:
            writer = RowWriter(out, error_format(self.path), FIELDS)
            writer.write(f.as_dict() for f in (*self.items, *self.skipped))
            writer.close()
        if self.items:
            _stderr(f"{len(self.items)} input{'s' if len(self.items) != 1 else ''} failed; "
                    f"listed in {self.path}")


def _same_path(a: str, b: str) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _stderr(msg: str) -> None:
    print(f"hashlib-ext: {msg}", file=sys.stderr)
