"""The ``hashlib-ext`` command: one module per sub-command, each exposing ``add_parser``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__

# Sub-command modules, in the order --help lists them. Each defines
# add_parser(subparsers) -> ArgumentParser with set_defaults(func=run), and
# run(args) -> int (the exit code).
_COMMANDS = ["hash", "index", "match", "dedup", "bench", "datasets"]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="hashlib-ext",
        description="Perceptual image hashing, Hamming-distance matching and benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"hashlib-ext {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMANDS:
        importlib.import_module(f".{name}_cmd", __name__).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hashlib-ext`` and ``python -m hashlib_ext``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
