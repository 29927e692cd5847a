"""The ``hashlib-ext`` command: one module per sub-command, each exposing ``add_parser``."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from .. import __version__

# Sub-command modules, in the order --help lists them. Each defines
# add_parser(subparsers) -> ArgumentParser with set_defaults(func=run), and
# run(args) -> int (the exit code).
_COMMANDS = ["hash", "convert", "index", "match", "dedup", "bench", "datasets", "serve"]


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
    """Entry point of ``hashlib-ext`` and ``python -m hashlib_ext``.

    Exit status: 0 ok; 1 an input, index or output could not be read or written (one line
    per failure on stderr); 2 usage (one line; argparse adds the usage); 130 / 143 stopped
    by SIGINT / SIGTERM (workers stopped, outputs left as they were); 141 stdout closed
    early (``| head``), ended quietly.
    """
    from ..errors import HashlibExtError
    from . import _signals
    from ._common import EXIT_FAILED, EXIT_USAGE, UsageError, stdout_lossless

    stdout_lossless()
    name = ""
    with _signals.handling():
        try:
            args = build_parser().parse_args(argv)
            name = " ".join(x for x in (getattr(args, "command", None),
                                        getattr(args, "index_command", None),
                                        getattr(args, "datasets_command", None)) if x)
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
        except _signals.Interrupted as e:
            _signals.stop_children(wait_s=2.0)
            _say("interrupted" if e.signum == signal.SIGINT else "terminated")
            return e.exit_code
        except KeyboardInterrupt:
            _signals.stop_children(wait_s=2.0)
            _say("interrupted")
            return 130
        except BrokenPipeError:
            _signals.stop_children(wait_s=2.0)
            _quiet_stdout()
            return 141
        except UsageError as e:
            with contextlib.suppress(Exception):  # as argparse words its errors
                print(f"hashlib-ext{' ' + name if name else ''}: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except HashlibExtError as e:
            _say(str(e))
            return EXIT_FAILED
        except OSError as e:  # a file the command reads or writes; not a bug of ours
            where = f"{e.filename}: " if e.filename else ""
            _say(f"{where}{e.strerror or e}")
            return EXIT_FAILED
        finally:
            _signals.stop_children(wait_s=2.0)


def _say(msg: str) -> None:
    with contextlib.suppress(Exception):
        print(f"hashlib-ext: {msg}", file=sys.stderr)


def _quiet_stdout() -> None:
    """stdout's reader is gone: point stdout at /dev/null so that the flush at exit does not
    report the broken pipe again."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
