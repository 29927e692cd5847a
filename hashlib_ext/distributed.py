"""Running on a dask cluster (optional extra ``hashlib-ext[dask]``; dask is imported only
when used): a client to a scheduler or a local cluster, and hashing on it.

:func:`connect` gives the ``distributed.Client`` that sharded search
(:class:`~hashlib_ext.ShardedIndex`), sharded dedup
(:func:`~hashlib_ext.sharded_dedup.find_duplicates_sharded`) and the Parquet pipeline
(:mod:`hashlib_ext.dask_pipeline`) take as ``client=``: to a running scheduler by address,
or a ``LocalCluster`` of worker processes on this machine.

:func:`hash_images_dask` hashes with the same chunks and results as
:func:`~hashlib_ext.hash_images`: each partition is a list of (position, path) pairs hashed
by one task, which returns packed codes, qualities and per-item errors, exactly as a local
worker does; the results are merged in input order into a
:class:`~hashlib_ext.batch.BatchResult`. Paths must be readable where the dask workers run
(a shared file system or object-store mount). To write the hashes to Parquet on the workers
instead of gathering them here, use :func:`hashlib_ext.dask_pipeline.hash_to_parquet`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .batch import Accumulator, BatchResult, hash_chunk, validate_algorithms
from .errors import MissingDependencyError

EXTRA = "pip install 'hashlib-ext[dask]'"


def require_distributed() -> Any:
    """The ``distributed`` module, or :class:`MissingDependencyError` naming the extra."""
    try:
        import distributed
    except ImportError as e:
        raise MissingDependencyError(f"running on a dask cluster needs dask.distributed: "
                                     f"{EXTRA}") from e
    return distributed


@contextlib.contextmanager
def connect(scheduler: str | None = None, *, n_workers: int | None = None,
            threads_per_worker: int | None = None,
            memory_limit: str | int | None = "auto") -> Iterator[Any]:
    """A ``distributed.Client``, closed on exit: connected to the scheduler at
    ``scheduler`` (``tcp://host:8786``, what ``--scheduler ADDRESS`` passes), or with None
    to a new ``LocalCluster`` of worker processes on this machine (``n_workers`` and
    ``threads_per_worker`` default to dask's choice for the CPUs; ``memory_limit`` per
    worker), shut down on exit."""
    distributed = require_distributed()
    if scheduler is not None:
        with distributed.Client(scheduler) as client:
            yield client
        return
    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                  processes=True, memory_limit=memory_limit) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def hash_images_dask(
    paths: Iterable[str],
    algorithm: str | Sequence[str] = "pdq",
    *,
    partition_size: int = 256,
    fast: bool = False,
    max_pixels: int | None = None,
    scheduler: Any = None,
) -> BatchResult:
    """Hash ``paths`` with dask: one task per ``partition_size`` paths.

    ``scheduler`` is passed to ``dask.compute`` (``"threads"``, ``"processes"``,
    ``"synchronous"``, or a ``distributed.Client``); None uses dask's default, which is the
    active ``distributed.Client`` when one exists. Bad inputs are recorded in ``errors`` as
    with :func:`~hashlib_ext.hash_images`; a worker that dies is dask's to retry.
    """
    try:
        import dask
        import dask.bag as db
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(f"hash_images_dask needs dask: {EXTRA}") from e
    names, single = validate_algorithms(algorithm, fast)
    if partition_size < 1:
        raise ValueError(f"partition_size must be >= 1, got {partition_size!r}")
    items = list(enumerate(paths))
    chunks = [items[i:i + partition_size] for i in range(0, len(items), partition_size)]
    acc = Accumulator(names)
    if chunks:
        bag = db.from_sequence(chunks, npartitions=len(chunks))
        results = bag.map(hash_chunk, tuple(names), bool(fast), max_pixels)
        (computed,) = dask.compute(results, scheduler=scheduler)
        for chunk, res in zip(chunks, computed, strict=True):
            acc.add(chunk, res)
    return acc.result(single)
