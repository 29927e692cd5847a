"""``hashlib-ext match``: look up images or hash lists in a saved index.

Output: one row per match — ``query, id, [key,] distance[, variant]`` — as CSV (default),
a JSON array or JSON lines. ``query`` is the image path, or for a hash-list row its key
(else ``FILE#ID``). Queries without a match produce no row unless ``--unmatched`` (then
one row with empty id and distance). A summary goes to stderr.

Exit codes: 0 ok (also when nothing matched); 1 the index or an input could not be read
(the other inputs are still matched and written); 2 usage.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

EXIT_FAILED = 1

# -- helpers shared with dedup_cmd and index_cmd --------------------------------------------
def error(msg: str) -> None:
    print(f"hashlib-ext: {msg}", file=sys.stderr)


def show_progress(args: argparse.Namespace) -> bool:
    """--progress / --no-progress, else a bar only when stderr is a terminal."""
    return args.progress if args.progress is not None else sys.stderr.isatty()


def report_skipped(path: str | os.PathLike[str], skipped: list[tuple[int, str]],
                   limit: int = 10) -> None:
    """Tell the user which malformed records lenient mode skipped."""
    for line, reason in skipped[:limit]:
        error(f"{path}, line {line}: {reason} (skipped)")
    if len(skipped) > limit:
        error(f"{path}: ... and {len(skipped) - limit} more malformed records skipped")


def image_files(folder: Path, recursive: bool) -> list[str]:
    """Image files in ``folder`` (by extension), in the fixed order :mod:`files` walks."""
    from ..files import iter_image_paths

    def unreadable(path: str, e: OSError) -> None:
        error(f"{path}: cannot list folder: {e.strerror or e}")

    return list(iter_image_paths([folder], recursive=recursive, on_error=unreadable))


def classify_inputs(inputs: Iterable[str], recursive: bool,
                    hash_format: str | None) -> tuple[list[str], list[str], list[str]]:
    """Split command-line inputs into (hash-list files, image paths, failed inputs).

    A folder contributes its images; a file with a hash-list extension (or any file when
    ``--hash-format`` is given) is a hash list; any other file is an image.
    """
    from ..files import is_image_name
    from ..formats import is_hash_list_path

    lists: list[str] = []
    images: list[str] = []
    missing: list[str] = []
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            found = image_files(p, recursive)
            if not found:
                error(f"{arg}: no images found" + ("" if recursive else
                                                    " (use --recursive for subfolders)"))
                missing.append(arg)
            images.extend(found)
        elif not p.exists():
            error(f"{arg}: no such file or folder")
            missing.append(arg)
        elif hash_format is not None or (is_hash_list_path(p) and not is_image_name(arg)):
            lists.append(arg)
        else:
            images.append(arg)
    return lists, images, missing


@contextmanager
def output_stream(path: str | None) -> Iterator[IO[str]]:
    """stdout, or ``path`` written atomically (complete or not at all)."""
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    from ..atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        yield f


class RowWriter:
    """Writes rows (dicts with fixed columns) as CSV, JSON lines, or one JSON array."""

    def __init__(self, out: IO[str], fmt: str, columns: list[str]):
        self.out, self.fmt, self.columns = out, fmt, columns
        self.count = 0
        if fmt == "csv":
            self._csv = csv.writer(out, lineterminator="\n")
            self._csv.writerow(columns)
        elif fmt == "json":
            out.write("[")

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            if self.fmt == "csv":
                self._csv.writerow(["" if row.get(c) is None else row.get(c)
                                    for c in self.columns])
            else:
                text = json.dumps({c: row.get(c) for c in self.columns}, ensure_ascii=False)
                if self.fmt == "json":
                    text = ("\n  " if self.count == 0 else ",\n  ") + text
                else:
                    text += "\n"
                self.out.write(text)
            self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "]\n")


# -- the command ----------------------------------------------------------------------------
def add_input_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the commands that read images or hash lists (match, dedup)."""
    p.add_argument("-r", "--recursive", action="store_true", help="descend into subfolders")
    p.add_argument("--hash-format", default=None,
                   help="format of hash-list inputs (default: from the extension)")
    p.add_argument("--lenient", action="store_true",
                   help="skip malformed hash-list lines (reported on stderr) instead of failing")
    p.add_argument("-j", "--workers", type=int, default=None, metavar="N",
                   help="hashing processes (default: one per CPU)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal)")
    p.add_argument("-q", "--quiet", dest="progress", action="store_false", default=None,
                   help="same as --no-progress")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "match",
        help="look up images or hash lists in a saved index",
        description="Hash the given images (or read the given hash lists) and print every "
                    "indexed hash within the threshold: one row per match with the query, "
                    "the matched id (and key, if the index has keys) and the distance.",
        epilog="Inputs: image files, folders of images, or hash-list files (.txt/.hex, "
               ".csv, .tsv, .jsonl, .parquet, optionally .gz). Exit codes: 0 ok (also when "
               "nothing matched), 1 the index or an input could not be read, 2 usage.",
    )
    p.add_argument("index", metavar="INDEX", help="index file written by 'index build'")
    p.add_argument("inputs", metavar="PATH_OR_HASHFILE", nargs="+",
                   help="images, folders of images or hash-list files to look up")
    p.add_argument("-t", "--threshold", type=int, default=None,
                   help="largest Hamming distance that matches, inclusive (default: the "
                        "algorithm's default threshold)")
    p.add_argument("-f", "--format", choices=("csv", "json", "jsonl"), default="csv",
                   help="output format (default csv)")
    p.add_argument("-o", "--output", default=None, help="write results here (default stdout)")
    p.add_argument("--dihedral", action="store_true",
                   help="also match the 8 rotations/flips of each image (PDQ); adds a "
                        "'variant' column (0 = as is)")
    p.add_argument("--unmatched", action="store_true",
                   help="write a row with empty id and distance for queries without a match")
    p.add_argument("--algorithm", default=None,
                   help="algorithm to hash images with when the index has none (raw codes)")
    p.add_argument("--robust", action="store_true",
                   help="INDEX is a robust index ('index build --robust'): find crops, "
                        "padding, frames, captions, rotate+zoom and screenshots too; rows "
                        "give 'score' and 'stage' instead of 'distance'")
    p.add_argument("--min-score", type=int, default=None, metavar="S",
                   help="--robust: smallest verified score of the local stage (default: "
                        "the index's operating point); -t sets the PDQ threshold of the "
                        "global stage")
    add_input_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..errors import HashlibExtError
    from ..hashers import default_threshold
    from ..index import HashIndex

    if args.robust:
        return run_robust(args)
    if args.min_score is not None:
        error("--min-score needs --robust")
        return 2

    try:
        index = HashIndex.load(args.index)
    except HashlibExtError as e:
        error(str(e))
        return EXIT_FAILED
    algorithm = index.algorithm or args.algorithm
    if args.algorithm and index.algorithm and args.algorithm != index.algorithm:
        error(f"--algorithm {args.algorithm} does not match the index ({index.algorithm})")
        return 2
    threshold = args.threshold
    if threshold is None:
        if algorithm is None:
            error("the index holds raw codes without an algorithm: pass --threshold")
            return 2
        threshold = default_threshold(algorithm)
    if threshold < 0:
        error(f"--threshold must be >= 0, got {threshold}")
        return 2

    lists, images, missing = classify_inputs(args.inputs, args.recursive, args.hash_format)
    failed = len(missing)
    if args.dihedral and images and algorithm is not None:
        from ..hashers import get

        if get(algorithm).dihedral is None:
            error(f"--dihedral: {algorithm} has no rotation/flip hashing (PDQ has)")
            return 2
    has_keys = any(k is not None for k in index.keys(index.ids))
    columns = ["query", "id"] + (["key"] if has_keys else []) + ["distance"] + \
        (["variant"] if args.dihedral else [])
    stats = {"queries": 0, "matched": 0}
    try:
        with output_stream(args.output) as out:
            writer = RowWriter(out, args.format, columns)
            for path in lists:
                failed += _match_list(path, index, threshold, args, writer, has_keys, stats)
            if images:
                if algorithm is None:
                    error("the index holds raw codes without an algorithm: pass --algorithm "
                          "to hash images")
                    return 2
                failed += _match_images(images, algorithm, index, threshold, args, writer,
                                        has_keys, stats)
            writer.close()
    except HashlibExtError as e:
        error(str(e))
        return EXIT_FAILED
    except OSError as e:
        error(f"cannot write {args.output}: {e.strerror or e}")
        return EXIT_FAILED
    print(f"{stats['matched']} of {stats['queries']} queries matched at threshold "
          f"{threshold}; {writer.count} rows" + (f"; {failed} inputs failed" if failed else ""),
          file=sys.stderr)
    return EXIT_FAILED if failed else 0


def _rows(names: list[str], results: list[list[tuple]], index: Any, has_keys: bool,
          unmatched: bool, stats: dict[str, int]) -> Iterator[dict[str, Any]]:
    stats["queries"] += len(names)
    stats["matched"] += sum(1 for r in results if r)
    keys: dict[int, str | None] = {}
    if has_keys:
        found = sorted({m[0] for r in results for m in r})
        keys = dict(zip(found, index.keys(found), strict=True))
    for name, matches in zip(names, results, strict=True):
        if not matches and unmatched:
            yield {"query": name}
        for m in matches:
            row = {"query": name, "id": m[0], "distance": m[1], "key": keys.get(m[0])}
            if len(m) > 2:
                row["variant"] = m[2]
            yield row


def _match_list(path: str, index: Any, threshold: int, args: argparse.Namespace,
                writer: RowWriter, has_keys: bool, stats: dict[str, int]) -> int:
    """Match every hash of one hash-list file, chunk by chunk; returns 1 if it failed."""
    from ..errors import HashlibExtError
    from ..formats import iter_hash_list

    if args.dihedral:
        error(f"{path}: --dihedral needs images; hashes from a list are matched as they are")
    skipped: list[tuple[int, str]] = []
    ignored = 0
    try:
        for chunk in iter_hash_list(path, index.algorithm or args.algorithm,
                                    format=args.hash_format, lenient=args.lenient,
                                    bits=None if index.algorithm else index.bits,
                                    skipped=skipped):
            results = index.search(chunk.hashes if index.algorithm else chunk.hashes.codes,
                                   threshold)
            if chunk.keys is not None:
                names = [k or f"{path}#{i}" for k, i in zip(chunk.keys, chunk.ids.tolist(),
                                                            strict=True)]
            else:
                names = [f"{path}#{i}" for i in chunk.ids.tolist()]
            writer.write(_rows(names, results, index, has_keys, args.unmatched, stats))
            ignored += chunk.ignored
    except HashlibExtError as e:
        error(str(e))
        return 1
    report_skipped(path, skipped)
    if ignored:
        error(f"{path}: {ignored} rows of other algorithms ignored")
    return 0


def _match_images(images: list[str], algorithm: str, index: Any, threshold: int,
                  args: argparse.Namespace, writer: RowWriter, has_keys: bool,
                  stats: dict[str, int]) -> int:
    """Hash and match images; returns the number that failed to hash."""
    from ..batch import hash_images

    if args.dihedral:
        variants, names, errors = _hash_dihedral(images, algorithm, show_progress(args))
        results = index.search_dihedral(variants, threshold) if names else []
    else:
        res = hash_images(images, algorithm, workers=args.workers, progress=show_progress(args))
        names = [str(i) for i in res.ids]
        errors = res.errors
        results = index.search(res.hashes, threshold) if names else []
    for src, kind, msg in errors:
        error(f"{src}: {kind}: {msg}")
    writer.write(_rows(names, results, index, has_keys, args.unmatched, stats))
    return len(errors)


def _hash_dihedral(images: list[str], algorithm: str, progress: bool):
    """The 8 rotation/flip hashes of every image (8 rows per image), names, errors."""
    from tqdm import tqdm

    from ..errors import HashlibExtError
    from ..hash import HashArray
    from ..hashers import hash_image

    rows: list[np.ndarray] = []
    names: list[str] = []
    errors: list[tuple[str, str, str]] = []
    for path in tqdm(images, unit="img", desc="hashing", file=sys.stderr, disable=not progress):
        try:
            arr = hash_image(path, algorithm, dihedral=True)
        except (HashlibExtError, OSError) as e:
            errors.append((path, type(e).__name__, str(e)))
            continue
        rows.append(arr.codes)
        names.append(path)
    codes = np.concatenate(rows) if rows else np.zeros((0, 0), np.uint8)
    return HashArray(codes, algorithm), names, errors


def run_robust(args: argparse.Namespace) -> int:
    """``match --robust``: every input image against a RobustIndex."""
    from ..describe_batch import describe_images
    from ..errors import HashlibExtError
    from ..robust import RobustIndex

    for name, value in (("--threshold", args.threshold), ("--min-score", args.min_score)):
        if value is not None and value < 0:
            error(f"{name} must be >= 0, got {value}")
            return 2
    if args.dihedral or args.algorithm:
        error("--robust matches every rotation/flip already and uses PDQ and local "
              "features: drop --dihedral/--algorithm")
        return 2
    lists, images, missing = classify_inputs(args.inputs, args.recursive, args.hash_format)
    if lists:
        error(f"--robust matches images, not hash lists: {lists[0]}")
        return 2
    try:
        index = RobustIndex.load(args.index)
    except HashlibExtError as e:
        error(str(e))
        return EXIT_FAILED
    got = describe_images(images, query=True, workers=args.workers,
                          progress=show_progress(args))
    for src, kind, msg in got.errors:
        error(f"{src}: {kind}: {msg}")
    failed = len(missing) + len(got.errors)
    has_keys = any(k is not None for k in index.keys(index.ids.tolist()))
    columns = ["query", "id"] + (["key"] if has_keys else []) + ["score", "stage"]
    matched = 0
    try:
        with output_stream(args.output) as out:
            writer = RowWriter(out, args.format, columns)
            for pos, d in zip(got.positions, got.descriptors, strict=True):
                found = index.match(d, min_score=args.min_score, pdq_threshold=args.threshold)
                matched += bool(found)
                keys = index.keys([m.id for m in found]) if has_keys else [None] * len(found)
                if not found and args.unmatched:
                    writer.write([{"query": images[pos]}])
                writer.write({"query": images[pos], "id": m.id, "key": k, "score": m.score,
                              "stage": m.stage} for m, k in zip(found, keys, strict=True))
            writer.close()
    except OSError as e:
        error(f"cannot write {args.output}: {e.strerror or e}")
        return EXIT_FAILED
    print(f"{matched} of {len(got.descriptors)} images matched (robust); {writer.count} rows"
          + (f"; {failed} inputs failed" if failed else ""), file=sys.stderr)
    return EXIT_FAILED if failed else 0
