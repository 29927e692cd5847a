"""What the ``index`` sub-commands share: reading their inputs, making, saving and
describing an index."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import EXIT_FAILED, error
from ._failures import Failures
from ._options import note


def column_arg(value: str | None) -> str | int | None:
    """A column given on the command line: a 0-based index if numeric, else a name."""
    return int(value) if value is not None and value.isdigit() else value

def split_inputs(args: argparse.Namespace, failures: Failures) -> tuple[list[str], list[str]]:
    from ._inputs import classify_inputs

    lists, images, _missing = classify_inputs(args.inputs, args.recursive, args.input_format,
                                              quiet=args.quiet, failures=failures)
    return lists, images

def stop_build(failures: Failures, path: str, e: Exception) -> None:
    """Record the list that stopped the build, write --errors, say nothing was written."""
    failures.add(path, type(e).__name__, getattr(e, "strerror", None) or str(e))
    failures.finish()
    error("nothing written: fix the list or pass --lenient to skip malformed records")

def save_and_report(args: argparse.Namespace, index: Any, output: str, failures: Failures,
                    message: str) -> int:
    """The end of every index-writing command: save ``index`` (a HashIndex or
    RobustIndex) to ``output``, write --errors, print ``message``; the exit status (1 when
    the save or some input failed)."""
    from ..errors import HashlibExtError

    try:
        index.save(output)
    except BrokenPipeError:
        raise
    except (HashlibExtError, OSError) as e:
        error(f"cannot write {output}: {getattr(e, 'strerror', None) or e}")
        return EXIT_FAILED
    failures.finish()
    note(args, message)
    return EXIT_FAILED if failures else 0


def print_info(info: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")

def is_robust_file(path: str) -> bool:
    """Whether ``path`` is a RobustIndex file (by its container kind)."""
    from .. import container, robust

    return container.file_format(path) == robust.FORMAT

def new_index(algorithm: str, bits: int | None, args: argparse.Namespace) -> Any:
    from ..hashers import expected_bits
    from ..index import HashIndex

    if expected_bits(algorithm) is None:  # a name the registry does not know: raw codes
        return HashIndex(bits=bits or args.bits, kind=args.kind)
    return HashIndex(algorithm, kind=args.kind)
