"""``index build --shards N``: a sharded index (a folder of HashIndex shard files and a
manifest), built in this process or on a dask cluster (``--scheduler``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from typing import Any

from ._common import EXIT_FAILED, UsageError, error, show_progress
from ._failures import Failures
from ._index_io import column_arg, split_inputs, stop_build
from ._inputs import report_skipped
from ._options import note
from ._sharded import dask_client, is_hash_partitions
from ._signals import compute_only


def run_build_sharded(args: argparse.Namespace) -> int:
    """``index build --shards N``: a sharded index in the folder ``-o``. With --scheduler
    the shards are built on the cluster from hash-list files and hash partitions (no step
    funnels the hashes through this process); without, in this process in bounded memory
    (images are hashed here)."""
    from ..dask_pipeline import build_sharded_from_parquet, partition_files
    from ..errors import HashlibExtError
    from ..sharded import ShardedIndex

    if os.path.isfile(args.output):
        raise UsageError(f"--output {args.output} is a file: a sharded index is a folder")
    failures = Failures(args)
    failures.check(args.inputs)
    parts = [p for p in args.inputs if is_hash_partitions(p)]
    rest = [p for p in args.inputs if p not in parts]
    lists: list[str] = []
    images: list[str] = []
    if rest:
        args_rest = argparse.Namespace(**{**vars(args), "inputs": rest})
        lists, images = split_inputs(args_rest, failures)
    kind = args.kind
    stopped: list[str] = []
    try:
        with dask_client(args.scheduler) as client:
            if client is not None:
                if images:
                    raise UsageError("--scheduler builds from hash lists and hash partitions: "
                                     "hash the images on the cluster first ('hashlib-ext hash "
                                     f"--scheduler ... -o PARTS/'), e.g. {images[0]}")
                sources = [loc for folder in parts for loc in partition_files(folder)] + lists
                if not sources:
                    failures.finish()
                    error("nothing to index")
                    return EXIT_FAILED
                index = build_sharded_from_parquet(
                    sources, args.output, args.shards, client=client,
                    algorithm=args.algorithm, kind=kind, overwrite=True)
            else:
                index = ShardedIndex.build_from_chunks(
                    _chunks(args, parts, lists, images, failures, stopped), args.output,
                    args.shards, algorithm=args.algorithm, bits=args.bits, kind=kind,
                    overwrite=True)
    except HashlibExtError as e:
        if stopped:  # a list that could not be read: recorded and said already
            return EXIT_FAILED
        failures.finish()
        error(str(e))
        return EXIT_FAILED
    failures.finish()
    note(args, f"indexed {len(index)} {index.algorithm or 'raw'} hashes in {index.shards} "
               f"shards into {args.output}")
    return EXIT_FAILED if failures else 0

def _chunks(args: argparse.Namespace, parts: list[str], lists: list[str], images: list[str],
            failures: Failures, stopped: list[str]) -> Iterator[Any]:
    """HashList chunks of every input for a sharded build, ids made distinct: a chunk
    whose ids are record numbers (no id column) continues after the largest id so far. A
    list that cannot be read is recorded, added to ``stopped``, and its error raised."""
    import dataclasses

    import numpy as np

    from ..batch import hash_images
    from ..dask_pipeline import iter_partitions
    from ..errors import HashlibExtError
    from ..formats import HashList, iter_hash_list
    from ..hash import HashArray

    next_id = 0

    def numbered(chunk: Any) -> Any:
        nonlocal next_id
        if args.renumber or not getattr(chunk, "has_ids", True):
            ids = np.arange(next_id, next_id + len(chunk), dtype=np.int64)
            chunk = dataclasses.replace(chunk, ids=ids)
        if len(chunk):
            next_id = max(next_id, int(np.max(chunk.ids)) + 1)
        return chunk

    for folder in parts:
        for chunk in iter_partitions(folder):
            yield numbered(chunk)
    for path in lists:
        skipped: list[tuple[int, str]] = []
        try:
            for chunk in iter_hash_list(path, args.algorithm, format=args.input_format,
                                        lenient=args.lenient, bits=args.bits,
                                        hash_column=column_arg(args.hash_column),
                                        id_column=column_arg(args.id_column),
                                        key_column=column_arg(args.key_column),
                                        skipped=skipped, min_quality=args.min_quality):
                yield numbered(chunk)
        except HashlibExtError as e:
            stop_build(failures, path, e)
            stopped.append(path)
            raise
        report_skipped(path, skipped, failures=failures)
    if images:
        with compute_only():
            res = hash_images(images, args.algorithm or "pdq", workers=args.workers,
                              progress=show_progress(args))
        failures.add_batch(res.errors)
        if res.ok and isinstance(res.hashes, HashArray):
            keys = np.array([str(p) for p in res.ids], dtype=object)
            yield numbered(HashList(res.hashes, np.zeros(res.ok, np.int64), keys,
                                    has_ids=False))
