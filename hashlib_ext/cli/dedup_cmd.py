"""``hashlib-ext dedup``: clusters of near-duplicate images in folders or hash lists.

JSON output (default)::

    {"algorithm": "pdq", "threshold": 31, "items": 32, "failed": 0,
     "clusters": [[{"id": 3, "key": "a.jpg"}, {"id": 7, "key": "b.jpg"}], ...]}

Only groups of two or more appear. An item's ``id`` is its id in the hash list (for images:
the position in the sorted list of image paths); ``key`` is the image path or the hash
list's key (absent when the list has none). CSV output has one row per member:
``cluster,id,key``.

Exit codes: 0 ok; 1 an input could not be read, or a hash list held no usable hash (the
rest are still clustered); 2 usage (found before the output is touched); 130/143
interrupted (the output file is left as it was).
"""

from __future__ import annotations

import argparse
import csv
import sys
from typing import Any

import numpy as np

from ._common import (
    EXIT_FAILED,
    UsageError,
    add_min_quality,
    check_output,
    discard,
    error,
    json_text,
    output_stream,
    show_progress,
)
from ._inputs import (
    add_input_options,
    check_non_negative,
    classify_inputs,
    low_quality,
    report_skipped,
)
from ._signals import compute_only


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "dedup",
        help="find clusters of near-duplicate images",
        description="Hash the images in the given folders (or read the given hash lists), "
                    "link every pair within the threshold and print the connected groups "
                    "(clusters of two or more).",
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
    p.add_argument("-o", "--output", default=None,
                   help="write clusters here, atomically, e.g. clusters.json (default stdout)")
    p.add_argument("-f", "--format", choices=("json", "csv"), default="json",
                   help="output format (default json)")
    p.add_argument("--robust", action="store_true",
                   help="images only: link copies that whole-image hashes miss (crops, "
                        "padding, frames, captions, rotate+zoom, screenshots, mirror) with "
                        "a robust index; JSON output adds the edges with score and stage")
    p.add_argument("--min-score", type=int, default=None, metavar="S",
                   help="--robust: smallest verified score of the local stage")
    add_min_quality(p, "hashes")
    add_input_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..batch import hash_images
    from ..dedup import find_duplicates
    from ..errors import HashlibExtError
    from ..formats import read_hash_list
    from ..hash import HashArray
    from ..hashers import algorithms, default_threshold, expected_bits

    check_non_negative(args, "--threshold", "--min-score")
    if args.robust:
        return run_robust(args)
    if args.min_score is not None:
        raise UsageError("--min-score needs --robust")
    check_output(args.output, args.inputs)
    lists, images, missing = classify_inputs(args.inputs, args.recursive, args.input_format)
    if images and args.algorithm is not None and expected_bits(args.algorithm) is None:
        raise UsageError(f"unknown algorithm {args.algorithm!r} for hashing images; known: "
                         f"{', '.join(algorithms())}")
    failed = len(missing)
    low = 0
    parts: list[HashArray] = []
    ids: list[np.ndarray] = []
    keys: list[np.ndarray | None] = []
    algorithm = args.algorithm
    for path in lists:
        try:
            got = read_hash_list(path, algorithm, format=args.input_format, lenient=args.lenient,
                                 min_quality=args.min_quality)
        except HashlibExtError as e:
            error(str(e))
            failed += 1
            continue
        report_skipped(path, got.skipped)
        low += got.low_quality
        if got.ignored:
            error(f"{path}: {got.ignored} rows of other algorithms than "
                  f"{got.hashes.algorithm} ignored")
        if len(got) == 0 and (got.ignored or got.skipped):
            error(f"{path}: no {got.hashes.algorithm} hashes to deduplicate")
            failed += 1
            continue
        algorithm = algorithm or got.hashes.algorithm
        parts.append(got.hashes)
        ids.append(got.ids)
        keys.append(got.keys)
    algorithm = algorithm or "pdq"
    if images:
        if expected_bits(algorithm) is None:
            raise UsageError(f"the hash lists hold {algorithm!r} hashes, which images cannot "
                             "be hashed with: pass --algorithm or deduplicate them apart")
        with compute_only():
            res = hash_images(images, algorithm, workers=args.workers,
                              progress=show_progress(args))
        for src, kind, msg in res.errors:
            error(f"{src}: {kind}: {msg}")
        failed += len(res.errors)
        hashes_i = res.hashes
        assert isinstance(hashes_i, HashArray)
        names = np.array([str(i) for i in res.ids], dtype=object)
        positions = np.asarray(res.positions, np.int64)
        drop = low_quality(hashes_i, args.min_quality)
        if drop.any():
            keep = np.flatnonzero(~drop)
            hashes_i, names, positions = hashes_i[keep], names[keep], positions[keep]
            low += int(drop.sum())
        parts.append(hashes_i)
        ids.append(positions)
        keys.append(names)
    if not parts:
        error("nothing to deduplicate")
        return EXIT_FAILED

    threshold = args.threshold
    if threshold is None:
        if expected_bits(algorithm) is None:
            raise UsageError(f"no default threshold for {algorithm!r}: pass --threshold")
        threshold = default_threshold(algorithm)
    try:
        hashes = HashArray.concat(parts) if len(parts) > 1 else parts[0]
    except HashlibExtError as e:
        error(f"inputs cannot be compared: {e}")
        return EXIT_FAILED
    all_ids = np.concatenate(ids)
    all_keys = None
    if any(k is not None for k in keys):
        all_keys = np.concatenate([k if k is not None else np.full(len(i), None, dtype=object)
                                   for k, i in zip(keys, ids, strict=True)])
    # Cluster by position, then name members by id and key.
    clusters = find_duplicates(hashes, threshold, progress=show_progress(args))
    members = [sorted((_member(p, all_ids, all_keys) for p in c), key=lambda m: m["id"])
               for c in clusters]
    members.sort(key=lambda c: c[0]["id"])  # as find_duplicates orders them: by first id
    try:
        with output_stream(args.output) as out:
            if args.format == "json":
                head = json_text({"algorithm": algorithm, "threshold": threshold,
                                  "items": len(hashes), "failed": failed})
                out.write(head[:-1] + ', "clusters": [')  # one cluster per line
                out.write(",".join("\n  " + json_text(c) for c in members))
                out.write("\n]}\n" if members else "]}\n")
            else:
                w = csv.writer(out, lineterminator="\n")
                w.writerow(["cluster", "id", "key"])
                for n, group in enumerate(members):
                    w.writerows([n, m["id"], m.get("key", "")] for m in group)
            if len(hashes) == 0 and failed:
                discard(out)  # nothing could be read: an existing output stays as it was
    except BrokenPipeError:
        raise
    except OSError as e:
        error(f"cannot write {args.output or 'to stdout'}: {e.strerror or e}")
        return EXIT_FAILED
    dup = sum(len(c) for c in clusters)
    print(f"{len(clusters)} clusters, {dup} of {len(hashes)} items have a near duplicate "
          f"({algorithm}, threshold {threshold})"
          + (f"; {low} hashes below quality {args.min_quality} left out" if low else "")
          + (f"; {failed} inputs failed" if failed else ""), file=sys.stderr)
    return EXIT_FAILED if failed else 0


def _member(pos: int, ids: np.ndarray, keys: np.ndarray | None) -> dict[str, Any]:
    m: dict[str, Any] = {"id": int(ids[pos])}
    if keys is not None and keys[pos] is not None:
        m["key"] = keys[pos]
    return m


def run_robust(args: argparse.Namespace) -> int:
    """``dedup --robust``: every image matched against a RobustIndex of all of them; the
    matches (other than itself) are edges, the connected groups are the clusters."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from ..describe_batch import describe_image_pairs
    from ..robust import RobustIndex

    if args.algorithm not in (None, "pdq"):
        raise UsageError("--robust uses PDQ and local features: drop --algorithm")
    if args.min_quality is not None:
        raise UsageError("--min-quality applies to hash deduplication, not --robust")
    check_output(args.output, args.inputs)
    lists, images, missing = classify_inputs(args.inputs, args.recursive, args.input_format)
    if lists:
        raise UsageError(f"--robust deduplicates images, not hash lists: {lists[0]}")
    if not images:
        error("nothing to deduplicate")
        return EXIT_FAILED
    progress = show_progress(args)
    index = RobustIndex()
    with compute_only():  # one decode per image for both descriptions
        described = describe_image_pairs(images, workers=args.workers, progress=progress)
    index.add(described.index, ids=described.positions)
    errors = described.errors
    for src, kind, msg in errors:
        error(f"{src}: {kind}: {msg}")
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
    failures = [{"input": str(src), "error": kind, "message": msg} for src, kind, msg in errors]
    failed = len(missing) + len(errors)
    try:
        with output_stream(args.output) as out:
            if args.format == "json":
                out.write(json_text({
                    "mode": "robust", "items": n, "failed": failed, "failures": failures,
                    "clusters": [[{"id": i, "key": images[i]} for i in c] for c in clusters],
                    "edges": [{"a": a, "b": b, "score": sc, "stage": st}
                              for (a, b), (sc, st) in sorted(best.items())],
                }, indent=1) + "\n")
            else:
                w = csv.writer(out, lineterminator="\n")
                w.writerow(["cluster", "id", "key"])
                for k, group in enumerate(clusters):
                    w.writerows([k, i, images[i]] for i in group)
            if not described.positions:
                discard(out)  # no image could be read: an existing output stays as it was
    except BrokenPipeError:
        raise
    except OSError as e:
        error(f"cannot write {args.output or 'to stdout'}: {e.strerror or e}")
        return EXIT_FAILED
    print(f"{len(clusters)} clusters, {sum(map(len, clusters))} of {n} images have a copy "
          "(robust)" + (f"; {failed} inputs failed" if failed else ""), file=sys.stderr)
    return EXIT_FAILED if failed else 0
