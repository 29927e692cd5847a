"""``hashlib-ext dedup``: clusters of near-duplicate images in folders or hash lists.

JSON output (default; docs/dedup.md describes every field)::

    {"algorithm": "pdq", "threshold": 31, "dihedral": false, "chaining": "split",
     "max_diameter": 62, "keep_by": ["resolution", "size", "oldest"],
     "items": 32, "failed": 1,
     "failures": [{"input": "x.jpg", "type": "ImageDecodeError", "message": "..."}],
     "clusters": [[{"id": 3, "key": "a.jpg", "keep": true, "distance": 0},
                   {"id": 7, "key": "b.jpg", "keep": false, "distance": 4}], ...],
     "details": [{"cluster": 0, "size": 2, "keep": "a.jpg", "diameter": 4, ...,
                  "edges": [[0, 1, 4]]}, ...]}

``clusters`` keeps its earlier shape (a list of member lists, members sorted by id), each
member now with ``keep`` (the suggested copy to keep) and ``distance`` (to that copy);
``details[k]`` describes ``clusters[k]``: its diameter, the chaining guard's verdict and a
spanning tree of its links as ``[i, j, distance]`` (indices into the cluster's members).
An item's ``id`` is its id in the hash list (for images: the position in the sorted list of
image paths); ``key`` is the image path or the hash list's key (absent when the list has
none). CSV output has one row per member: ``cluster,id,key,keep,distance,chained``.

Exit codes: 0 ok; 1 an input could not be read, or a hash list held no usable hash (the
rest are still clustered); 2 usage (found before the output is touched); 130/143
interrupted (the output file is left as it was).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ._common import (
    EXIT_FAILED,
    RowWriter,
    UsageError,
    add_min_quality,
    check_output,
    error,
    json_text,
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
from ._sharded import add_scheduler, dask_client, is_sharded
from ._signals import compute_only
from .dedup_output import ClusterRecord, write_clusters


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ..clusters import CHAINING
    from ..keeper import DEFAULT_KEEP_BY, KEEP_RULES

    p = subparsers.add_parser(
        "dedup",
        help="find clusters of near-duplicate images",
        description="Hash the images in the given folders (or read the given hash lists), "
                    "link every pair within the threshold and print the connected groups "
                    "(clusters of two or more), each with a suggested copy to keep, its "
                    "links with their distances and a guard against chained clusters "
                    "(docs/dedup.md).",
        epilog="exit codes: 0 ok, 1 an input could not be read, 2 usage, 130/143 "
               "interrupted (the output file is left as it was)",
    )
    p.add_argument("inputs", metavar="DIR_OR_HASHFILE", nargs="+",
                   help="folders of images, image files or hash-list files")
    p.add_argument("-a", "--algorithm", default=None,
                   help="hash algorithm (default pdq; hash lists: as recorded in the file)")
    p.add_argument("-t", "--threshold", type=int, default=None,
                   help="largest Hamming distance that links two items, inclusive "
                        "(default: the algorithm's default threshold)")
    add_output(p, "the clusters, e.g. clusters.json")
    p.add_argument("-f", "--format", choices=("json", "csv"), default=None,
                   help="output format (default: csv for an --output ending in .csv, "
                        "else json)")
    p.add_argument("--dihedral", action="store_true",
                   help="images only, PDQ: also link rotated (90/180/270 degrees) and "
                        "mirrored copies: two images are linked when any of the 8 "
                        "rotations/flips of one is within the threshold of the other")
    p.add_argument("--chaining", choices=CHAINING, default=None,
                   help="what to do with a cluster wider than --max-diameter (a chain of "
                        "links, not copies of one original): split it into groups around "
                        "centres (default), flag it (\"chained\": true), or nothing (off)")
    p.add_argument("--max-diameter", type=int, default=None, metavar="D",
                   help="widest distance allowed between two members of a cluster (default "
                        "twice the threshold: copies within the threshold of one original "
                        "are never further apart); at least the threshold")
    p.add_argument("--keep-by", type=_keep_by, default=None, metavar="RULES",
                   help="order of rules that pick the copy to keep in each cluster, comma "
                        f"separated, from {', '.join(KEEP_RULES)} (default "
                        f"{','.join(DEFAULT_KEEP_BY)}; ties go to the smallest id)")
    p.add_argument("--robust", action="store_true",
                   help="images only: link copies that whole-image hashes miss (crops, "
                        "padding, frames, captions, rotate+zoom, screenshots, mirror) with "
                        "a robust index; JSON output adds the edges with score and stage")
    p.add_argument("--min-score", type=int, default=None, metavar="S",
                   help="--robust: smallest verified score of the local stage")
    add_min_quality(p, "hashes")
    add_scheduler(p, "deduplicate a sharded index (its folder as the only input)")
    add_input_options(p)
    add_errors(p)
    p.set_defaults(func=run)
    return p


def _keep_by(text: str) -> tuple[str, ...]:
    """argparse type of ``--keep-by``."""
    from ..keeper import parse_keep_by

    try:
        return parse_keep_by(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _output_format(args: argparse.Namespace) -> str:
    """-f, else -o's extension (.csv: csv), else json; a contradiction is refused."""
    return output_format(args.output, args.format, default="json")


def distinct_ids(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Ids that tell every member apart: an input whose ids are already taken by an
    earlier input (each hash list numbers its records from 0, images are numbered by
    position) gets fresh ids after the largest so far; the others keep theirs."""
    out: list[np.ndarray] = []
    seen = np.zeros(0, dtype=np.int64)
    for ids in parts:
        ids = np.asarray(ids, dtype=np.int64)
        if seen.size and ids.size and (np.isin(ids, seen).any()
                                       or np.unique(ids).size != ids.size):
            start = int(seen.max()) + 1
            ids = np.arange(start, start + ids.size, dtype=np.int64)
        out.append(ids)
        seen = np.concatenate([seen, ids])
    return out


def run_sharded(args: argparse.Namespace, fmt: str) -> int:
    """``dedup SHARDED_INDEX [--scheduler ...]``: shard-pair range joins (on the cluster
    with --scheduler), clusters by connected components here. Members are ids with their
    keys; the per-edge and keeper details of the in-memory dedup are not computed."""
    from ..errors import HashlibExtError
    from ..hashers import default_threshold, expected_bits
    from ..sharded import ShardedIndex
    from ..sharded_dedup import find_duplicates_sharded

    used = [name for name, v in (("--dihedral", args.dihedral), ("--min-quality",
                                 args.min_quality), ("--max-diameter", args.max_diameter))
            if v]
    if used:
        raise UsageError(f"{used[0]} applies to images and hash lists, not a sharded index")
    failures = Failures(args)
    check_output(args.output, args.inputs)
    failures.check(args.inputs)
    folder = args.inputs[0]
    try:
        index = ShardedIndex.open(folder)
    except HashlibExtError as e:
        failures.add(folder, type(e).__name__, str(e))
        failures.finish()
        return EXIT_FAILED
    algorithm = index.algorithm
    if args.algorithm and algorithm and args.algorithm != algorithm:
        raise UsageError(f"{folder} holds {algorithm} hashes, not {args.algorithm}")
    threshold = args.threshold
    if threshold is None:
        if algorithm is None or expected_bits(algorithm) is None:
            raise UsageError("the index holds raw codes: pass --threshold")
        threshold = default_threshold(algorithm)
    try:
        with dask_client(args.scheduler) as client:
            groups = find_duplicates_sharded(index, threshold, client=client)
            ids = [i for g in groups for i in g]
            keys = dict(zip(ids, index.keys(ids, client=client), strict=True)) \
                if index.has_keys else {}
    except HashlibExtError as e:
        failures.add(folder, type(e).__name__, str(e))
        failures.finish()
        return EXIT_FAILED
    clusters = [[{"id": i, "key": keys.get(i)} for i in g] for g in groups]
    with output_stream(args.output) as out:
        if fmt == "json":
            out.write(json_text({"algorithm": algorithm, "threshold": threshold,
                                 "sharded": True, "shards": index.shards,
                                 "items": len(index), "failed": 0, "failures": [],
                                 "clusters": clusters}) + "\n")
        else:
            writer = RowWriter(out, "csv", ["cluster", "id", "key"])
            writer.write({"cluster": k, **m} for k, c in enumerate(clusters) for m in c)
            writer.close()
    failures.finish()
    note(args, f"{len(clusters)} clusters, {sum(map(len, clusters))} of {len(index)} items "
               f"have a near duplicate ({algorithm}, threshold {threshold}, "
               f"{index.shards} shards)")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..batch import hash_images
    from ..clusters import dedup_graph
    from ..dihedral_batch import hash_images_dihedral
    from ..errors import HashlibExtError
    from ..formats import read_hash_list
    from ..hash import HashArray
    from ..hashers import algorithms, default_threshold, expected_bits, get

    check_non_negative(args, "--threshold", "--min-score", "--max-diameter")
    fmt = _output_format(args)
    if args.robust:
        if args.scheduler is not None:
            raise UsageError("--scheduler deduplicates a sharded hash index, not --robust")
        return run_robust(args, fmt)
    if len(args.inputs) == 1 and is_sharded(args.inputs[0]):
        return run_sharded(args, fmt)
    if args.scheduler is not None:
        raise UsageError("--scheduler deduplicates a sharded index ('index build --shards "
                         "N'): give its folder as the only input")
    if args.min_score is not None:
        raise UsageError("--min-score needs --robust")
    failures = Failures(args)
    check_output(args.output, args.inputs)
    failures.check(args.inputs)
    lists, images, _ = classify_inputs(args.inputs, args.recursive, args.input_format,
                                       quiet=args.quiet, failures=failures)
    if args.dihedral and lists:
        raise UsageError(f"--dihedral needs images: {lists[0]} is a hash list, and a hash "
                         "cannot be rotated or flipped; hash the images instead (or drop "
                         "--dihedral)")
    if images and args.algorithm is not None and expected_bits(args.algorithm) is None:
        raise UsageError(f"unknown algorithm {args.algorithm!r} for hashing images; known: "
                         f"{', '.join(algorithms())}")
    if args.dihedral and get(args.algorithm or "pdq").dihedral is None:
        raise UsageError(f"--dihedral: {args.algorithm} has no rotation/flip hashing (PDQ has)")
    low = 0
    parts: list[HashArray] = []
    ids: list[np.ndarray] = []
    keys: list[np.ndarray | None] = []
    algorithm = args.algorithm
    for path in lists:
        try:
            got = read_hash_list(path, algorithm, format=args.input_format, lenient=args.lenient,
                                 min_quality=args.min_quality, metadata=False)
        except HashlibExtError as e:
            failures.add(path, type(e).__name__, str(e))
            continue
        report_skipped(path, got.skipped, failures=failures)
        low += got.low_quality
        if got.ignored:
            error(f"{path}: {got.ignored} rows of other algorithms than "
                  f"{got.hashes.algorithm} ignored")
        if len(got) == 0 and (got.ignored or got.skipped):
            failures.add(path, "HashFormatError",
                         f"no {got.hashes.algorithm} hashes to deduplicate")
            continue
        algorithm = algorithm or got.hashes.algorithm
        parts.append(got.hashes)
        ids.append(got.ids)
        keys.append(got.keys)
    algorithm = algorithm or "pdq"
    if images and expected_bits(algorithm) is None:
        raise UsageError(f"the hash lists hold {algorithm!r} hashes, which images cannot "
                         "be hashed with: pass --algorithm or deduplicate them apart")
    threshold = args.threshold
    if threshold is None:
        if expected_bits(algorithm) is None:
            raise UsageError(f"no default threshold for {algorithm!r}: pass --threshold")
        threshold = default_threshold(algorithm)
    if args.max_diameter is not None and args.max_diameter < threshold:
        raise UsageError(f"--max-diameter {args.max_diameter} is below the threshold "
                         f"{threshold}: every pair at the threshold would count as chained")
    variants = None
    if images:
        with compute_only():
            if args.dihedral:
                dres = hash_images_dihedral(images, algorithm, workers=args.workers,
                                            progress=show_progress(args))
                hashes_i, variants = dres.hashes, dres.variants
                names_l, pos_l, errs = dres.ids, dres.positions, dres.errors
            else:
                res = hash_images(images, algorithm, workers=args.workers,
                                  progress=show_progress(args))
                assert isinstance(res.hashes, HashArray)
                hashes_i, names_l, pos_l, errs = res.hashes, res.ids, res.positions, res.errors
        failures.add_batch(errs)
        names = np.array([str(i) for i in names_l], dtype=object)
        positions = np.asarray(pos_l, np.int64)
        drop = low_quality(hashes_i, args.min_quality)
        if drop.any():
            keep = np.flatnonzero(~drop)
            hashes_i, names, positions = hashes_i[keep], names[keep], positions[keep]
            if variants is not None:
                variants = variants[(keep[:, None] * 8 + np.arange(8)).reshape(-1)]
            low += int(drop.sum())
        parts.append(hashes_i)
        ids.append(positions)
        keys.append(names)
    chaining = args.chaining or "split"
    head = {"algorithm": algorithm, "threshold": threshold, "dihedral": bool(args.dihedral),
            "chaining": chaining, "max_diameter": _max_diameter(args, threshold)}
    if not parts:  # the failures still go out (an existing output file stays as it was)
        error("nothing to deduplicate")
        write_clusters(args, fmt, head, 0, failures, [], nothing=True)
        failures.finish()
        return EXIT_FAILED
    try:
        hashes = HashArray.concat(parts) if len(parts) > 1 else parts[0]
    except HashlibExtError as e:
        error(f"inputs cannot be compared: {e}")
        failures.finish()
        return EXIT_FAILED
    all_ids = np.concatenate(distinct_ids(ids))
    all_keys = None
    if any(k is not None for k in keys):
        all_keys = np.concatenate([k if k is not None else np.full(len(i), None, dtype=object)
                                   for k, i in zip(keys, ids, strict=True)])
    clusters = dedup_graph(hashes, threshold, variants=variants, chaining=chaining,
                           max_diameter=args.max_diameter, progress=show_progress(args))
    records = [ClusterRecord.build(c, hashes, variants, all_ids, all_keys, args.keep_by)
               for c in clusters]
    written = write_clusters(args, fmt, head, len(hashes), failures, records,
                             nothing=len(hashes) == 0 and bool(failures))
    failures.finish()
    if not written:
        return EXIT_FAILED
    dup = sum(len(r.members) for r in records)
    comps = {r.component for r in records if r.split}
    flagged = sum(r.chained for r in records)
    note(args, f"{len(records)} clusters, {dup} of {len(hashes)} items have a near duplicate "
         f"({algorithm}{', dihedral' if args.dihedral else ''}, threshold {threshold})"
         + (f"; {len(comps)} chained groups split into "
            f"{sum(r.component in comps for r in records)} clusters (\"split\": true; a "
            "chain means the threshold links unrelated images here: see docs/dedup.md)"
            if comps else "")
         + (f"; {flagged} clusters flagged as chained" if flagged else "")
         + (f"; {low} hashes below quality {args.min_quality} left out" if low else "")
         + (f"; {len(failures)} inputs failed" if failures else ""))
    return EXIT_FAILED if failures else 0


def _max_diameter(args: argparse.Namespace, threshold: int) -> int:
    from ..clusters import default_max_diameter

    return int(args.max_diameter) if args.max_diameter is not None else \
        default_max_diameter(threshold)


def run_robust(args: argparse.Namespace, fmt: str) -> int:
    """``dedup --robust``: every image matched against a RobustIndex of all of them; the
    matches (other than itself) are edges, the connected groups are the clusters."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from ..describe_batch import describe_image_pairs
    from ..robust import RobustIndex

    if args.algorithm not in (None, "pdq"):
        raise UsageError("--robust uses PDQ and local features: drop --algorithm")
    if args.dihedral:
        raise UsageError("--robust matches every rotation/flip already: drop --dihedral")
    if args.chaining is not None or args.max_diameter is not None:
        raise UsageError("--chaining and --max-diameter guard Hamming-distance clusters, "
                         "not --robust ones (their links are verified matches)")
    if args.min_quality is not None:
        raise UsageError("--min-quality applies to hash deduplication, not --robust")
    failures = Failures(args)
    check_output(args.output, args.inputs)
    failures.check(args.inputs)
    lists, images, _ = classify_inputs(args.inputs, args.recursive, args.input_format,
                                       quiet=args.quiet, failures=failures)
    if lists:
        raise UsageError(f"--robust deduplicates images, not hash lists: {lists[0]}")
    if not images:
        error("nothing to deduplicate")
        write_clusters(args, fmt, {"mode": "robust"}, 0, failures, [], nothing=True,
                       extra={"edges": []})
        failures.finish()
        return EXIT_FAILED
    progress = show_progress(args)
    index = RobustIndex()
    with compute_only():  # one decode per image for both descriptions
        described = describe_image_pairs(images, workers=args.workers, progress=progress)
    index.add(described.index, ids=described.positions)
    failures.add_batch(described.errors)
    edges = []
    for me, d in zip(described.positions, described.query, strict=True):
        for m in index.match(d, min_score=args.min_score, pdq_threshold=args.threshold,
                             exclude=[me]):
            edges.append((min(me, m.id), max(me, m.id), m.score, m.stage))
    best: dict[tuple[int, int], tuple[int, int]] = {}
    for a, b, score, stage in edges:  # both directions found: keep the stronger
        if (a, b) not in best or (stage, -score) < (best[(a, b)][1], -best[(a, b)][0]):
            best[(a, b)] = (score, stage)
    n = len(images)
    pairs = np.array(list(best), np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for i in sorted({int(x) for p in pairs for x in p}):
        groups.setdefault(int(label[i]), []).append(i)
    clusters = sorted(groups.values(), key=lambda c: c[0])
    keys = np.array(images, dtype=object)
    records = [ClusterRecord.robust(c, best, keys, args.keep_by) for c in clusters]
    head = {"mode": "robust"}
    extra = {"edges": [{"a": a, "b": b, "score": sc, "stage": st}
                       for (a, b), (sc, st) in sorted(best.items())]}
    written = write_clusters(args, fmt, head, n, failures, records,
                             nothing=not described.positions, extra=extra)
    failures.finish()
    if not written:
        return EXIT_FAILED
    note(args, f"{len(clusters)} clusters, {sum(map(len, clusters))} of {n} images have a "
         "copy (robust)" + (f"; {len(failures)} inputs failed" if failures else ""))
    return EXIT_FAILED if failures else 0
