"""``hashlib-ext match``: look up images or hash lists in a saved index.

Output: one row per match — ``query, id, [key,] distance[, variant][, metadata...]`` — as
CSV (default), a JSON array or JSON lines. ``query`` is the image path, or for a hash-list
row its key (else ``FILE#ID``); the metadata columns are those the index holds (e.g.
ThreatExchange ``collab``, ``category``, ``tags``). Queries without a match produce no row
unless ``--unmatched`` (then one row with empty id and distance). ``--top-k K`` keeps the K
nearest per query. Each failed input is a row with ``error_type`` and ``error`` (or, with
``--errors FILE``, a record in FILE). A summary goes to stderr.

Exit codes: 0 ok (also when nothing matched); 1 the index or an input could not be read, or
a hash list held no hash of the index's algorithm and width (the other inputs are still
matched and written); 2 usage (found before the output is touched); 130/143 interrupted
(the output file is left as it was).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._common import (
    EXIT_FAILED,
    RowWriter,
    UsageError,
    add_min_quality,
    check_output,
    discard,
    error,
    output_format,
    output_stream,
    show_progress,
)
from ._failures import Failures
from ._inputs import (
    add_input_options,
    check_non_negative,
    classify_inputs,
    low_quality,
    report_skipped,
)
from ._options import add_errors, add_output, note
from ._sharded import ShardedView, add_scheduler, dask_client, is_sharded
from ._signals import compute_only


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "match",
        help="look up images or hash lists in a saved index",
        description="Hash the given images (or read the given hash lists) and print every "
                    "indexed hash within the threshold: one row per match with the query, "
                    "the matched id (and key, if the index has keys) and the distance.",
        epilog="Inputs: image files, folders of images, or hash-list files (.txt/.hex, "
               ".csv, .tsv, .jsonl, .parquet, optionally .gz). A hash list that holds no "
               "hash of the index's algorithm and width is a failed input. Exit codes: 0 ok "
               "(also when nothing matched), 1 the index or an input could not be read, "
               "2 usage, 130/143 interrupted (the output file is left as it was).",
    )
    p.add_argument("index", metavar="INDEX", help="index file written by 'index build'")
    p.add_argument("inputs", metavar="PATH_OR_HASHFILE", nargs="+",
                   help="images, folders of images or hash-list files to look up")
    p.add_argument("-t", "--threshold", type=int, default=None,
                   help="largest Hamming distance that matches, inclusive (default: the "
                        "algorithm's default threshold)")
    p.add_argument("-k", "--top-k", type=int, default=None, metavar="K",
                   help="keep at most the K nearest matches of each query (within the "
                        "threshold; ties by id)")
    p.add_argument("-f", "--format", choices=("csv", "json", "jsonl"), default=None,
                   help="output format (default: from -o's extension .csv/.json/.jsonl, "
                        "else csv); a format that contradicts the extension is refused")
    add_output(p, "the results")
    add_errors(p)
    p.add_argument("--dihedral", action="store_true",
                   help="also match the 8 rotations/flips of each image (PDQ); adds a "
                        "'variant' column (0 = as is)")
    p.add_argument("--unmatched", action="store_true",
                   help="write a row with empty id and distance for queries without a match")
    p.add_argument("-a", "--algorithm", default=None,
                   help="algorithm to hash images with when the index has none (raw codes)")
    add_min_quality(p, "queries")
    p.add_argument("--robust", action="store_true",
                   help="INDEX is a robust index ('index build --robust'): find crops, "
                        "padding, frames, captions, rotate+zoom and screenshots too; rows "
                        "give 'score' and 'stage' instead of 'distance'")
    p.add_argument("--min-score", type=int, default=None, metavar="S",
                   help="--robust: smallest verified score of the local stage (default: "
                        "the index's operating point); -t sets the PDQ threshold of the "
                        "global stage")
    add_scheduler(p, "search a sharded index ('index build --shards N')")
    add_input_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..errors import HashlibExtError
    from ..hashers import algorithms
    from ..index import HashIndex

    check_non_negative(args, "--threshold", "--min-score")
    args.format = output_format(args.output, args.format)
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.robust:
        return run_robust(args)
    if args.min_score is not None:
        raise UsageError("--min-score needs --robust")
    if args.algorithm is not None and args.algorithm not in algorithms():
        raise UsageError(f"unknown algorithm {args.algorithm!r}; known: "
                         f"{', '.join(algorithms())}")
    check_output(args.output, [args.index, *args.inputs])
    failures = Failures(args)
    failures.check([args.index, *args.inputs])

    with contextlib.ExitStack() as stack:
        try:
            if is_sharded(args.index):
                from ..sharded import ShardedIndex

                sharded = ShardedIndex.open(args.index)
                client = stack.enter_context(dask_client(args.scheduler))
                index: Any = ShardedView(sharded, client)
            else:
                if args.scheduler is not None:
                    raise UsageError(f"--scheduler searches a sharded index ('index build "
                                     f"--shards N'); {args.index} is one file")
                index = HashIndex.load(args.index)
        except HashlibExtError as e:
            failures.add(args.index, type(e).__name__, str(e))
            failures.finish()
            return EXIT_FAILED
        return _match(args, index, failures)


def _match(args: argparse.Namespace, index: Any, failures: Failures) -> int:
    """Match the inputs against a loaded index (a HashIndex or a ShardedView)."""
    from ..hashers import default_threshold, expected_bits, get

    algorithm = index.algorithm or args.algorithm
    if args.algorithm and index.algorithm and args.algorithm != index.algorithm:
        raise UsageError(f"--algorithm {args.algorithm} does not match the index "
                         f"({index.algorithm})")
    threshold = args.threshold
    if threshold is None:
        if algorithm is None:
            raise UsageError("the index holds raw codes without an algorithm: pass --threshold")
        threshold = default_threshold(algorithm)

    lists, images, _ = classify_inputs(args.inputs, args.recursive, args.input_format,
                                       quiet=args.quiet, failures=failures)
    if images and algorithm is None:
        raise UsageError("the index holds raw codes without an algorithm: pass --algorithm "
                         "to hash images")
    if args.dihedral and images and algorithm is not None and get(algorithm).dihedral is None:
        raise UsageError(f"--dihedral: {algorithm} has no rotation/flip hashing (PDQ has)")
    if images and algorithm is not None and expected_bits(algorithm) not in (None, index.bits):
        error(f"{args.index}: holds {index.bits}-bit codes; {algorithm} hashes have "
              f"{expected_bits(algorithm)} bits")
        return EXIT_FAILED
    if not lists and not images:
        failures.finish()
        error("nothing to match")
        return EXIT_FAILED
    has_keys = index.has_keys if isinstance(index, ShardedView) else \
        any(k is not None for k in index.keys(index.ids))
    own = ["query", "id"] + (["key"] if has_keys else []) + ["distance"] + \
        (["variant"] if args.dihedral else [])
    meta = index.metadata_columns
    shown = metadata_names(meta, own)
    columns = own + [shown[m] for m in meta]
    look = _Lookup(index, has_keys, meta, args.unmatched, args.top_k, shown)
    stats = look.stats
    image_queries = None
    if images:  # hashed before the output is opened (a signal there ends at once)
        assert algorithm is not None
        with compute_only():
            image_queries = _hash_queries(images, algorithm, index, threshold, args)
    try:
        with output_stream(args.output) as out:
            writer = RowWriter(out, args.format, columns, _error_columns(failures))
            for path in lists:
                _match_list(path, index, threshold, args, writer, look, failures)
            if image_queries is not None:
                names, results, errors, low = image_queries
                failures.add_batch(errors)
                stats["low_quality"] += low
                writer.write(look.rows(names, results))
            _failure_rows(writer, failures)
            writer.close()
            if failures and stats["queries"] == 0 and stats["low_quality"] == 0:
                discard(out)  # nothing could be read: an existing output stays as it was
    except BrokenPipeError:
        raise
    except OSError as e:
        error(f"cannot write {args.output or 'to stdout'}: {e.strerror or e}")
        return EXIT_FAILED
    failures.finish()
    low = stats["low_quality"]
    note(args, f"{stats['matched']} of {stats['queries']} queries matched at threshold "
               f"{threshold}; {writer.count} rows"
               + (f"; {low} queries below quality {args.min_quality} left out" if low else "")
               + (f"; {len(failures)} inputs failed" if failures else ""))
    return EXIT_FAILED if failures else 0


def metadata_names(meta: list[str], own: list[str]) -> dict[str, str]:
    """Output column name of each metadata column: its own name, or ``metadata.NAME`` when
    that is one of match's own columns (``query``, ``distance``, ``error``, ...), so a list's
    column can never overwrite a match's value."""
    taken = set(own) | {"error_type", "error", "score", "stage"}
    out: dict[str, str] = {}
    for m in meta:
        name = m if m not in taken else f"metadata.{m}"
        while name in taken:
            name = f"metadata.{name}"
        taken.add(name)
        out[m] = name
    return out


def _error_columns(failures: Failures) -> list[str]:
    """Failed inputs are rows of the output (``error_type``, ``error``) unless ``--errors``
    sends them to a file of their own."""
    return [] if failures.path else ["error_type", "error"]


def _failure_rows(writer: RowWriter, failures: Failures) -> None:
    if not failures.path:
        writer.write({"query": f.input, "error_type": f.type, "error": f.message}
                     for f in failures.items)


class _Lookup:
    """Turns search results into output rows: keys and metadata of the matched ids, at most
    ``top_k`` per query, counts of queries and matches."""

    def __init__(self, index: Any, has_keys: bool, meta: list[str], unmatched: bool,
                 top_k: int | None, shown: dict[str, str] | None = None):
        self.index, self.has_keys, self.meta = index, has_keys, meta
        self.shown = shown or {m: m for m in meta}
        self.unmatched, self.top_k = unmatched, top_k
        self.stats = {"queries": 0, "matched": 0, "low_quality": 0}

    def rows(self, names: list[str], results: list[list[tuple]]) -> Iterator[dict[str, Any]]:
        if self.top_k is not None:
            results = [r[:self.top_k] for r in results]
        self.stats["queries"] += len(names)
        self.stats["matched"] += sum(1 for r in results if r)
        found = sorted({m[0] for r in results for m in r})
        keys: dict[int, str | None] = {}
        if self.has_keys:
            keys = dict(zip(found, self.index.keys(found), strict=True))
        meta: dict[int, dict[str, str]] = {}
        if self.meta:
            meta = dict(zip(found, self.index.metadata(found), strict=True))
        for name, matches in zip(names, results, strict=True):
            if not matches and self.unmatched:
                yield {"query": name}
            for m in matches:
                row = {"query": name, "id": m[0], "distance": m[1], "key": keys.get(m[0])}
                if len(m) > 2:
                    row["variant"] = m[2]
                if self.meta:
                    row.update((self.shown[k], v) for k, v in meta.get(m[0], {}).items())
                yield row


def _match_list(path: str, index: Any, threshold: int, args: argparse.Namespace,
                writer: RowWriter, look: _Lookup, failures: Failures) -> None:
    """Match every hash of one hash-list file, chunk by chunk; a file that cannot be read,
    or holds no hash of the index's algorithm and width, is a failed input."""
    from ..errors import HashlibExtError
    from ..formats import iter_hash_list

    if args.dihedral:
        error(f"{path}: --dihedral needs images; hashes from a list are matched as they are")
    skipped: list[tuple[int, str]] = []
    ignored = used = low = 0
    try:
        for chunk in iter_hash_list(path, index.algorithm or args.algorithm,
                                    format=args.input_format, lenient=args.lenient,
                                    bits=None if index.algorithm else index.bits,
                                    skipped=skipped, min_quality=args.min_quality,
                                    metadata=False):  # a query's own columns are not used
            ignored += chunk.ignored
            low += chunk.low_quality
            if not len(chunk):
                continue
            if chunk.hashes.bits != index.bits:
                failures.add(path, "AlgorithmMismatchError",
                             f"holds {chunk.hashes.bits}-bit hashes; the index "
                             f"{args.index} holds {index.bits}-bit codes")
                return
            results = index.search(chunk.hashes if index.algorithm else chunk.hashes.codes,
                                   threshold)
            used += len(chunk)
            if chunk.keys is not None:
                names = [k or f"{path}#{i}" for k, i in zip(chunk.keys, chunk.ids.tolist(),
                                                            strict=True)]
            else:
                names = [f"{path}#{i}" for i in chunk.ids.tolist()]
            writer.write(look.rows(names, results))
    except HashlibExtError as e:
        failures.add(path, type(e).__name__, str(e))
        return
    report_skipped(path, skipped, failures=failures)
    look.stats["low_quality"] += low
    what = f"{index.algorithm} hashes" if index.algorithm else f"{index.bits}-bit codes"
    if used == 0 and (ignored or skipped):
        why = "; ".join(x for x in (f"{ignored} rows of other algorithms" if ignored else "",
                                    f"{len(skipped)} malformed rows skipped" if skipped else "")
                        if x)
        failures.add(path, "HashFormatError", f"no {what} to match against {args.index} "
                                              f"({why})")
        return
    if ignored:
        note(args, f"{path}: {ignored} rows of other algorithms ignored")


def _hash_queries(images: list[str], algorithm: str, index: Any, threshold: int,
                  args: argparse.Namespace
                  ) -> tuple[list[str], list[list[Any]], list[Any], int]:
    """Hash and look up images: (names, results, errors, number left out for quality)."""
    from ..batch import hash_images
    from ..hash import HashArray

    if args.dihedral:
        variants, names, dihedral_errors = _hash_dihedral(images, algorithm,
                                                          show_progress(args))
        errors: list[Any] = list(dihedral_errors)
        low = low_quality(variants, args.min_quality)[::8]
        if low.any():
            keep = np.flatnonzero(np.repeat(~low, 8))
            variants = variants[keep]
            names = [n for n, bad in zip(names, low.tolist(), strict=True) if not bad]
        results: list[list[Any]] = index.search_dihedral(variants, threshold) if names else []
    else:
        res = hash_images(images, algorithm, workers=args.workers, progress=show_progress(args))
        hashes = res.hashes
        assert isinstance(hashes, HashArray)
        names = [str(i) for i in res.ids]
        errors = list(res.errors)
        low = low_quality(hashes, args.min_quality)
        if low.any():
            hashes = hashes[np.flatnonzero(~low)]
            names = [n for n, bad in zip(names, low.tolist(), strict=True) if not bad]
        results = list(index.search(hashes, threshold)) if names else []
    return names, results, errors, int(low.sum())


def _hash_dihedral(images: list[str], algorithm: str, progress: bool
                   ) -> tuple[Any, list[str], list[tuple[str, str, str]]]:
    """The 8 rotation/flip hashes of every image (8 rows per image), names, errors."""
    from tqdm import tqdm

    from ..errors import HashlibExtError
    from ..hash import HashArray
    from ..hashers import hash_image

    rows: list[np.ndarray] = []
    quals: list[np.ndarray] = []
    names: list[str] = []
    errors: list[tuple[str, str, str]] = []
    for path in tqdm(images, unit="img", desc="hashing", file=sys.stderr, disable=not progress):
        try:
            arr = hash_image(path, algorithm, dihedral=True)
        except (HashlibExtError, OSError) as e:
            errors.append((path, type(e).__name__, str(e)))
            continue
        assert isinstance(arr, HashArray)
        rows.append(arr.codes)
        quals.append(np.full(arr.codes.shape[0], -1, np.int16) if arr.qualities is None
                     else np.asarray(arr.qualities, np.int16))
        names.append(path)
    codes = np.concatenate(rows) if rows else np.zeros((0, 0), np.uint8)
    q = np.concatenate(quals) if quals else np.zeros(0, np.int16)
    return HashArray(codes, algorithm, q if (q >= 0).any() else None), names, errors


def run_robust(args: argparse.Namespace) -> int:
    """``match --robust``: every input image against a RobustIndex."""
    from ..describe_batch import describe_images
    from ..errors import HashlibExtError
    from ..robust import RobustIndex

    if args.dihedral or args.algorithm:
        raise UsageError("--robust matches every rotation/flip already and uses PDQ and "
                         "local features: drop --dihedral/--algorithm")
    if args.min_quality is not None:
        raise UsageError("--min-quality applies to hash matching, not --robust")
    check_output(args.output, [args.index, *args.inputs])
    failures = Failures(args)
    failures.check([args.index, *args.inputs])
    lists, images, _ = classify_inputs(args.inputs, args.recursive, args.input_format,
                                       quiet=args.quiet, failures=failures)
    if lists:
        raise UsageError(f"--robust matches images, not hash lists: {lists[0]}")
    try:
        index = RobustIndex.load(args.index)
    except HashlibExtError as e:
        failures.add(args.index, type(e).__name__, str(e))
        failures.finish()
        return EXIT_FAILED
    if not images:
        error("nothing to match")
        return EXIT_FAILED
    with compute_only():
        got = describe_images(images, query=True, workers=args.workers,
                              progress=show_progress(args))
    failures.add_batch(got.errors)
    has_keys = any(k is not None for k in index.keys(index.ids.tolist()))
    columns = ["query", "id"] + (["key"] if has_keys else []) + ["score", "stage"]
    matched = 0
    try:
        with output_stream(args.output) as out:
            writer = RowWriter(out, args.format, columns, _error_columns(failures))
            for pos, d in zip(got.positions, got.descriptors, strict=True):
                found = index.match(d, min_score=args.min_score, pdq_threshold=args.threshold)
                if args.top_k is not None:
                    found = found[:args.top_k]
                matched += bool(found)
                keys = index.keys([m.id for m in found]) if has_keys else [None] * len(found)
                if not found and args.unmatched:
                    writer.write([{"query": images[pos]}])
                writer.write({"query": images[pos], "id": m.id, "key": k, "score": m.score,
                              "stage": m.stage} for m, k in zip(found, keys, strict=True))
            _failure_rows(writer, failures)
            writer.close()
            if not got.descriptors:
                discard(out)  # nothing could be read: an existing output stays as it was
    except BrokenPipeError:
        raise
    except OSError as e:
        error(f"cannot write {args.output or 'to stdout'}: {e.strerror or e}")
        return EXIT_FAILED
    failures.finish()
    note(args, f"{matched} of {len(got.descriptors)} images matched (robust); "
               f"{writer.count} rows" + (f"; {len(failures)} inputs failed" if failures else ""))
    return EXIT_FAILED if failures else 0
