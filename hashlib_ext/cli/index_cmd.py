"""``hashlib-ext index``: build an index file from hash lists or images, add to it, merge
index files, describe one.

Exit codes: 0 ok; 1 the hash list or index could not be read or written (a malformed line
without ``--lenient``); 2 usage (found before anything is read or written); 130/143
interrupted (an existing index file is left as it was).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ._common import (
    EXIT_FAILED,
    UsageError,
    add_min_quality,
    check_output,
    error,
    positive_int,
    show_progress,
)
from ._failures import Failures
from ._index_io import (
    column_arg,
    is_robust_file,
    new_index,
    print_info,
    save_and_report,
    split_inputs,
    stop_build,
)
from ._inputs import report_skipped
from ._options import (
    add_errors,
    add_input_format,
    add_output,
    add_progress,
    add_recursive,
    add_workers,
)
from ._sharded import add_scheduler
from ._signals import compute_only
from .index_robust import run_add_robust, run_build_robust, run_info_robust
from .index_sharded import run_build_sharded


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "index",
        help="build, extend, merge or describe index files",
        description="Build a HashIndex file from hash lists (hex lines, CSV/TSV, JSONL, "
                    "JSON, Parquet, ThreatExchange CSV) or images, add to one, merge several, "
                    "or describe one.",
        epilog="exit codes: 0 ok, 1 unreadable or malformed input / index (or some inputs "
               "failed), 2 usage, 130/143 interrupted (an existing index file is left as it "
               "was)",
    )
    sub = p.add_subparsers(dest="index_command", metavar="ACTION")
    sub.required = True

    b = sub.add_parser(
        "build",
        help="index hash lists or images",
        description="Read hash lists (streamed in chunks) and/or hash images into a "
                    "HashIndex and save it to INDEX atomically. Ids come from a list's id "
                    "column (else record numbers from 0; later lists and images continue after "
                    "the largest id); keys (a key/path column, or the image path) and "
                    "metadata columns (ThreatExchange collab/category/tags, any extra column) "
                    "are saved inside the index file and shown by 'match'. A malformed line "
                    "fails the build, naming its line number, unless --lenient (then it is "
                    "skipped and reported). An existing INDEX is replaced only when the build "
                    "succeeds.",
    )
    b.add_argument("inputs", metavar="HASHES_OR_IMAGES", nargs="+",
                   help="hash-list files, image files or folders of images; with --robust: "
                        "images or folders")
    add_output(b, "the index", required=True, metavar="INDEX")
    _add_input_args(b)
    b.add_argument("--kind", choices=("auto", "flat", "mih"), default="auto",
                   help="index structure (default auto: chosen by size and threshold)")
    b.add_argument("--renumber", action="store_true",
                   help="number all hashes 0, 1, ... in input order, ignoring id columns (for "
                        "lists whose ids collide)")
    b.add_argument("--shards", type=positive_int, default=None, metavar="N",
                   help="write a sharded index: N shard files and a manifest in the folder "
                        "INDEX (or an fsspec URL), for 'match'/'dedup' on a dask cluster; "
                        "inputs may also be folders of hash partitions ('hash --scheduler')")
    add_scheduler(b, "--shards: build the shards")
    b.add_argument("--robust", action="store_true",
                   help="build a robust index from images (PDQ of content boxes and local "
                        "features), for 'match --robust'; keys are the image paths")
    b.set_defaults(func=run_build)

    a = sub.add_parser(
        "add",
        help="add hash lists or images to an index file",
        description="Load INDEX, add the hashes of the given lists or images and save it "
                    "back atomically (a robust index takes images). Ids of a list that "
                    "collide with ids already in the index are refused unless --renumber "
                    "(new ids continue after the largest) or --replace (the old entries are "
                    "removed first).",
    )
    a.add_argument("index", metavar="INDEX")
    a.add_argument("inputs", metavar="HASHES_OR_IMAGES", nargs="+",
                   help="hash-list files, image files or folders of images")
    _add_input_args(a)
    ids = a.add_mutually_exclusive_group()
    ids.add_argument("--renumber", action="store_true",
                     help="give the new hashes fresh ids after the index's largest")
    ids.add_argument("--replace", action="store_true",
                     help="a new hash whose id is already in the index replaces it")
    a.set_defaults(func=run_add)

    m = sub.add_parser(
        "merge",
        help="merge index files into one",
        description="Merge INDEX files of one algorithm and width into one new index, with "
                    "their keys and metadata. Ids must be distinct across the inputs unless "
                    "--renumber (each input's ids then continue after the previous input's "
                    "largest, in input order).",
    )
    m.add_argument("indexes", metavar="INDEX", nargs="+")
    add_output(m, "the merged index", required=True, metavar="OUT")
    m.add_argument("--renumber", action="store_true",
                   help="renumber ids so that they do not collide")
    m.add_argument("--kind", choices=("auto", "flat", "mih"), default="auto",
                   help="index structure of the result (default auto)")
    add_progress(m)
    add_errors(m)
    m.set_defaults(func=run_merge)

    i = sub.add_parser("info", help="describe an index file",
                       description="Algorithm, width, count, structure and size of an index.")
    i.add_argument("index", metavar="INDEX")
    i.add_argument("-f", "--format", choices=("text", "json"), default="text")
    i.set_defaults(func=run_info)
    return p

def _add_input_args(p: argparse.ArgumentParser) -> None:
    """What ``build`` and ``add`` read: hash lists and images."""
    p.add_argument("-a", "--algorithm", default=None,
                   help="algorithm of the hashes (default: recorded in the file, else pdq); "
                        "images are hashed with it")
    p.add_argument("--bits", type=_bits, default=None,
                   help="hash width, for an algorithm name the registry does not know")
    add_input_format(p, legacy="--format")
    p.add_argument("--lenient", action="store_true",
                   help="skip malformed lines (reported) instead of failing")
    p.add_argument("--hash-column", default=None, help="CSV/TSV/Parquet column of the hashes")
    p.add_argument("--id-column", default=None, help="column of the int64 ids")
    p.add_argument("--key-column", default=None, help="column of the keys (e.g. paths)")
    add_min_quality(p, "hashes")
    add_recursive(p)
    add_workers(p)
    add_progress(p)
    add_errors(p)

def _bits(text: str) -> int:
    """argparse type of ``--bits``: a positive multiple of 8, at most 8192."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 8 or value % 8 or value > 8192:
        raise argparse.ArgumentTypeError(f"expected a multiple of 8 from 8 to 8192, got {text!r}")
    return value

class _Filler:
    """Adds hash lists and images to a HashIndex (created on first use), counting what was
    left out, and recording failed inputs."""

    def __init__(self, args: argparse.Namespace, failures: Failures, index: Any = None,
                 renumber: bool = False, replace: bool = False):
        self.args, self.failures, self.index = args, failures, index
        self.renumber, self.replace = renumber, replace
        self.skipped: dict[str, list[tuple[int, str]]] = {}
        self.ignored = self.low = self.replaced = 0
        self.sources = 0

    def add_list(self, path: str) -> None:
        """Stream one hash list into the index (a malformed record raises, unless
        --lenient). The first list of a new index keeps its ids; a later one whose ids
        collide with indexed ones is refused (``index add``: see --renumber/--replace)."""
        from ..formats import iter_hash_list

        args = self.args
        skipped: list[tuple[int, str]] = []
        fresh = self.index is None or len(self.index) == 0
        algorithm = args.algorithm or (self.index.algorithm if self.index is not None
                                       else None)
        for chunk in iter_hash_list(
                path, algorithm, format=args.input_format, lenient=args.lenient,
                bits=args.bits, hash_column=column_arg(args.hash_column),
                id_column=column_arg(args.id_column), key_column=column_arg(args.key_column),
                skipped=skipped, min_quality=args.min_quality):
            if self.index is None:
                self.index = new_index(chunk.hashes.algorithm, chunk.hashes.bits, args)
            self.ignored += chunk.ignored
            self.low += chunk.low_quality
            if not len(chunk):
                continue
            ids = None if self.renumber or (not fresh and _no_ids(chunk)) else chunk.ids
            if ids is not None and not fresh:
                ids = self._check_ids(path, ids)
            keys = None if chunk.keys is None else chunk.keys.tolist()
            metadata = _metadata_of(chunk)
            self.index.add(chunk.hashes if self.index.algorithm else chunk.hashes.codes, ids,
                           keys=keys, metadata=metadata)
        self.sources += 1
        if skipped:
            self.skipped[path] = skipped
            report_skipped(path, skipped, failures=self.failures)

    def _check_ids(self, path: str, ids: Any) -> Any:
        import numpy as np

        taken = np.isin(ids, self.index.ids)
        if not taken.any():
            return ids
        if self.replace:
            self.replaced += self.index.remove(ids[taken])
            return ids
        first = int(ids[taken][0])
        raise UsageError(f"{path}: {int(taken.sum())} ids are already in the index (e.g. "
                         f"{first}); pass --renumber for fresh ids or --replace to replace "
                         "those entries")

    def add_images(self, images: list[str]) -> None:
        """Hash image files (in worker processes) and add them, keyed by path, with ids
        continuing after the largest."""
        import numpy as np

        from ..batch import hash_images
        from ..hash import HashArray

        if not images:
            return
        algorithm = self.args.algorithm or (self.index.algorithm if self.index is not None
                                            else None) or "pdq"
        with compute_only():
            res = hash_images(images, algorithm, workers=self.args.workers,
                              progress=show_progress(self.args))
        self.failures.add_batch(res.errors)
        if self.index is None:
            self.index = new_index(algorithm, None, self.args)
        hashes = res.hashes
        if res.ok and isinstance(hashes, HashArray):
            paths = [str(p) for p in res.ids]
            if self.args.min_quality is not None and hashes.qualities is not None:
                q = np.asarray(hashes.qualities)
                keep = ~((q >= 0) & (q < self.args.min_quality))
                self.low += int((~keep).sum())
                hashes = HashArray(hashes.codes[keep], hashes.algorithm,
                                   qualities=q[keep])
                paths = [p for p, k in zip(paths, keep.tolist(), strict=True) if k]
            if paths:
                self.index.add(hashes, keys=paths)
        self.sources += len(images)

    def summary(self) -> str:
        parts = []
        if self.skipped:
            parts.append(f"{sum(map(len, self.skipped.values()))} malformed lines skipped")
        if self.ignored:
            parts.append(f"{self.ignored} rows of other algorithms ignored")
        if self.low:
            parts.append(f"{self.low} hashes below quality {self.args.min_quality} left out")
        if self.replaced:
            parts.append(f"{self.replaced} entries replaced")
        if self.failures:
            parts.append(f"{len(self.failures)} inputs failed")
        return "".join(f", {p}" for p in parts)

def _no_ids(chunk: Any) -> bool:
    """Whether a chunk's ids are plain record numbers (the file had no id column)."""
    return not bool(getattr(chunk, "has_ids", True))

def _metadata_of(chunk: Any) -> dict[str, list[str | None]] | None:
    """A hash list's metadata columns (ThreatExchange collab/category/tags, extra columns)
    in the form HashIndex.add takes."""
    meta = getattr(chunk, "metadata", None)
    if not meta:
        return None
    return {name: [None if v is None else str(v) for v in values]
            for name, values in meta.items()}

def run_build(args: argparse.Namespace) -> int:
    from ..errors import HashlibExtError

    if args.robust:
        if args.shards is not None or args.scheduler is not None:
            raise UsageError("--shards/--scheduler apply to hash indexes, not --robust")
        return run_build_robust(args)
    if args.shards is not None:
        return run_build_sharded(args)
    if args.scheduler is not None:
        raise UsageError("--scheduler builds a sharded index: give --shards N")
    failures = Failures(args)
    check_output(args.output, args.inputs)
    failures.check(args.inputs)
    lists, images = split_inputs(args, failures)
    fill = _Filler(args, failures, renumber=args.renumber)
    try:
        if not _fill_all(fill, lists, images):
            return EXIT_FAILED
        index = fill.index
        if index is None:  # nothing read: an empty index of the requested width
            index = new_index(args.algorithm or "pdq", args.bits, args)
        if len(index) == 0:
            what = f"{index.algorithm} hashes" if index.algorithm else f"{index.bits}-bit codes"
            failures.finish()
            error(f"no {what} to index{fill.summary()}; {args.output} not written")
            return EXIT_FAILED
        # Build the search tables now (when the index's size calls for them), so they are
        # saved and every later `match` loads them instead of rebuilding.
        _check_distinct_ids(index)
        index.prepare()
    except HashlibExtError as e:
        failures.finish()
        error(str(e))
        return EXIT_FAILED
    return save_and_report(
        args, index, args.output, failures,
        f"indexed {len(index)} {index.algorithm or 'raw'} hashes ({index.bits} bits) from "
        f"{fill.sources} input{'s' if fill.sources != 1 else ''} into "
        f"{args.output}{fill.summary()}")

def run_add(args: argparse.Namespace) -> int:
    """``index add INDEX INPUT...``: extend an index file in place (atomically)."""
    from ..errors import HashlibExtError
    from ..index import HashIndex

    if is_robust_file(args.index):
        return run_add_robust(args)
    failures = Failures(args)
    failures.check(args.inputs, [args.index])
    check_output(args.index, args.inputs)
    target = os.path.realpath(args.index)  # through a symlink: update the file it names
    try:
        index = HashIndex.load(target)
    except HashlibExtError as e:
        failures.add(args.index, type(e).__name__, str(e))
        failures.finish()
        return EXIT_FAILED
    before = len(index)
    if args.algorithm and index.algorithm and args.algorithm != index.algorithm:
        raise UsageError(f"{args.index} holds {index.algorithm} hashes, not {args.algorithm}")
    args.algorithm = args.algorithm or index.algorithm
    if args.bits is None and not index.algorithm:
        args.bits = index.bits
    args.kind = index.kind
    lists, images = split_inputs(args, failures)
    fill = _Filler(args, failures, index, renumber=args.renumber, replace=args.replace)
    try:
        if not _fill_all(fill, lists, images):
            return EXIT_FAILED
        _check_distinct_ids(index)
        index.prepare()
    except HashlibExtError as e:
        failures.finish()
        error(str(e))
        return EXIT_FAILED
    if len(index) == before and not fill.replaced:
        failures.finish()
        error(f"nothing added{fill.summary()}; {args.index} left as it was")
        return EXIT_FAILED
    return save_and_report(
        args, index, target, failures,
        f"added {len(index) - before + fill.replaced} hashes to {args.index} (now "
        f"{len(index)}){fill.summary()}")

def run_merge(args: argparse.Namespace) -> int:
    """``index merge INDEX... -o OUT``: one index from several, keys and metadata kept."""
    import numpy as np

    from ..errors import HashlibExtError
    from ..index import HashIndex

    check_output(args.output, args.indexes)
    failures = Failures(args)
    failures.check(args.indexes)
    parts = []
    for p in args.indexes:
        try:
            if is_robust_file(p):
                raise UsageError("index merge combines hash indexes; robust indexes are not "
                                 f"merged ({p}; build one from all the images, or use 'index "
                                 "add')")
            parts.append(HashIndex.load(p))
        except (HashlibExtError, OSError) as e:
            failures.add(p, type(e).__name__, getattr(e, "strerror", None) or str(e))
    if failures:
        failures.finish()
        error(f"{args.output} not written")
        return EXIT_FAILED
    first = parts[0]
    for path, part in zip(args.indexes[1:], parts[1:], strict=True):
        if (part.algorithm, part.bits) != (first.algorithm, first.bits):
            raise UsageError(f"{path} holds {part.algorithm or 'raw'} {part.bits}-bit hashes, "
                             f"{args.indexes[0]} {first.algorithm or 'raw'} {first.bits}-bit")
    out = HashIndex(first.algorithm, kind=args.kind) if first.algorithm else \
        HashIndex(bits=first.bits, kind=args.kind)
    seen = np.zeros(0, dtype=np.int64)
    for k, (path, part) in enumerate(zip(args.indexes, parts, strict=True)):
        ids = part.ids
        if not len(ids):
            continue
        new_ids = None
        if args.renumber and k > 0:
            new_ids = None  # continue after the largest so far (the first keeps its ids)
        else:
            clash = np.isin(ids, seen)
            if clash.any():
                raise UsageError(f"{path}: {int(clash.sum())} ids are also in an earlier index "
                                 f"(e.g. {int(ids[clash][0])}); pass --renumber")
            new_ids = ids
            seen = np.concatenate([seen, ids])
        keys: list[Any] = part.keys(ids)
        meta = part.metadata(ids)
        out.add(part.codes, new_ids, keys=keys,
                metadata=meta if any(meta) else None)
    out.prepare()
    return save_and_report(
        args, out, args.output, failures,
        f"merged {len(args.indexes)} indexes ({len(out)} hashes) into {args.output}")

def _fill_all(fill: _Filler, lists: list[str], images: list[str]) -> bool:
    """Every list, then the images; False when a list cannot be read (a malformed record
    without --lenient, an unreadable file): it is recorded, --errors written, and the build
    stops (nothing is saved: an index missing a list would be silently incomplete)."""
    from ..errors import HashlibExtError

    for path in lists:
        try:
            fill.add_list(path)
        except UsageError:
            raise
        except (HashlibExtError, OSError) as e:
            stop_build(fill.failures, path, e)
            return False
    fill.add_images(images)
    return True

def _check_distinct_ids(index: Any) -> None:
    """Refuse an index in which two entries share an id (a list with repeated ids)."""
    import numpy as np

    from ..errors import HashFormatError

    ids = index.ids
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        dup = int(uniq[counts > 1][0])
        raise HashFormatError(f"id {dup} is given to {int(counts[counts > 1][0])} hashes "
                              f"({int((counts > 1).sum())} ids repeated): ids must be "
                              "distinct (drop the id column to number the hashes, or fix "
                              "the list)")

def run_info(args: argparse.Namespace) -> int:
    from ..errors import HashlibExtError
    from ..index import HashIndex

    try:
        if is_robust_file(args.index):
            return run_info_robust(args)
        index = HashIndex.load(args.index)
    except HashlibExtError as e:
        error(str(e))
        return EXIT_FAILED
    ids = index.ids
    info = {
        "path": args.index,
        "algorithm": index.algorithm,
        **index.stats(),
        "file_bytes": os.path.getsize(args.index),
        "keys": sum(k is not None for k in index.keys(ids)),
        "min_id": int(ids.min()) if ids.size else None,
        "max_id": int(ids.max()) if ids.size else None,
    }
    print_info(info, args.format)
    return 0
