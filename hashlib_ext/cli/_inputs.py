"""Reading the inputs of the commands that take images or hash lists (match, dedup,
index): telling hash lists from images, walking folders, and the options for it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ._common import UsageError, error
from ._failures import Failures
from ._options import add_input_format, add_progress, add_recursive, add_workers


def report_skipped(path: str | os.PathLike[str], skipped: list[tuple[int, str]],
                   limit: int = 10, failures: Failures | None = None) -> None:
    """Tell the user which malformed records lenient mode skipped (and list them all in
    ``--errors FILE`` when ``failures`` has one)."""
    if failures is not None and failures.path is not None:
        failures.add_skipped(str(path), skipped)
    for line, reason in skipped[:limit]:
        error(f"{path}, line {line}: {reason} (skipped)")
    if len(skipped) > limit:
        error(f"{path}: ... and {len(skipped) - limit} more malformed records skipped")


def image_files(folder: Path, recursive: bool, skipped: list[str] | None = None) -> list[str]:
    """Image files in ``folder`` (by extension), in the fixed order :mod:`files` walks;
    other files met are appended to ``skipped`` when given."""
    from ..files import iter_image_paths

    def unreadable(path: str, e: OSError) -> None:
        error(f"{path}: cannot list folder: {e.strerror or e}")

    on_skip = None if skipped is None else skipped.append
    return list(iter_image_paths([folder], recursive=recursive, on_error=unreadable,
                                 on_skip=on_skip))


def note_skipped(skipped: list[str], quiet: bool = False) -> None:
    """One note for the files a folder walk left out because they are not images."""
    if skipped and not quiet:
        s = "s" if len(skipped) != 1 else ""
        print(f"hashlib-ext: skipped {len(skipped)} file{s} that {'are' if s else 'is'} not "
              f"an image format Pillow can decode, e.g. {skipped[0]}", file=sys.stderr)


def classify_inputs(inputs: Iterable[str], recursive: bool, input_format: str | None,
                    quiet: bool = False, failures: Failures | None = None,
                    ) -> tuple[list[str], list[str], list[str]]:
    """Split command-line inputs into (hash-list files, image paths, failed inputs).

    A folder contributes its images; a file with a hash-list extension (or any file when
    ``--input-format`` is given) is a hash list; any other file is an image. Files that
    folder walks leave out (not images) are noted once on stderr unless ``quiet``. Failed
    inputs go to ``failures`` when given (else one line each on stderr).
    """
    def failed(arg: str, kind: str, message: str) -> None:
        missing.append(arg)
        if failures is None:
            error(f"{arg}: {message}")
        else:
            failures.add(arg, kind, message)

    from ..files import is_image_name
    from ..formats import is_hash_list_path

    lists: list[str] = []
    images: list[str] = []
    missing: list[str] = []
    skipped: list[str] = []
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            found = image_files(p, recursive, skipped)
            if not found:
                failed(arg, "NoImagesFound", "no images found" + (
                    "" if recursive else " (use --recursive for subfolders)"))
            images.extend(found)
        elif not p.exists():
            failed(arg, "FileNotFoundError", "no such file or folder")
        elif input_format is not None or (is_hash_list_path(p) and not is_image_name(arg)):
            lists.append(arg)
        else:
            images.append(arg)
    note_skipped(skipped, quiet)
    images = once_each(images, quiet)
    return lists, images, missing


def once_each(paths: list[str], quiet: bool = False) -> list[str]:
    """Each file once: paths naming the same file (a folder given twice, './d' and 'd', a
    symlink beside its target) are taken once, as the path that is not a symlink where
    there is one, at the place the file first appeared. Without this, dedup would list a
    file as its own duplicate and could suggest deleting the only copy."""
    chosen: dict[str, int] = {}
    out: list[str] = []
    for p in paths:
        try:
            real = os.path.realpath(p)
        except (OSError, ValueError):
            out.append(p)
            continue
        at = chosen.get(real)
        if at is None:
            chosen[real] = len(out)
            out.append(p)
        elif os.path.islink(out[at]) and not os.path.islink(p):
            out[at] = p  # keep the file itself, not the link to it
    dropped = len(paths) - len(out)
    if dropped and not quiet:
        print(f"hashlib-ext: {dropped} input{'s' if dropped != 1 else ''} named a file "
              "already given (the same file by another path or a link); each file is taken "
              "once", file=sys.stderr)
    return out


def check_non_negative(args: argparse.Namespace, *names: str) -> None:
    """``--threshold`` and the like: integers >= 0 (:class:`UsageError` otherwise)."""
    for name in names:
        value = getattr(args, name.lstrip("-").replace("-", "_"), None)
        if value is not None and value < 0:
            raise UsageError(f"{name} must be >= 0, got {value}")


def low_quality(hashes: Any, min_quality: int | None) -> np.ndarray:
    """Per row: whether its quality is known and below ``min_quality``."""
    q = getattr(hashes, "qualities", None)
    if min_quality is None or q is None:
        return np.zeros(len(hashes), dtype=bool)
    q = np.asarray(q)
    return (q >= 0) & (q < min_quality)


def add_input_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the commands that read images or hash lists (match, dedup, index)."""
    add_recursive(p)
    add_input_format(p, legacy="--hash-format")
    p.add_argument("--lenient", action="store_true",
                   help="skip malformed hash-list lines (reported on stderr) instead of failing")
    add_workers(p)
    add_progress(p)
