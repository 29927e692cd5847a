"""Hashing on a dask cluster: the same chunks and results as :func:`~hashlib_ext.hash_images`,
scheduled by dask (optional extra ``hashlib-ext[dask]``; dask is imported only when used).

Each partition is a list of (position, path) pairs hashed by one task, which returns packed
codes, qualities and per-item errors, exactly as a local worker does; the results are merged
in input order into a :class:`~hashlib_ext.batch.BatchResult`. Paths must be readable where
the dask workers run (a shared file system or object-store mount).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .batch import BatchResult, _Accumulator, _hash_chunk, _validate


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
        raise ImportError(
            "hash_images_dask needs dask: pip install 'hashlib-ext[dask]'"
        ) from e
    names, single = _validate(algorithm, fast)
    if partition_size < 1:
        raise ValueError(f"partition_size must be >= 1, got {partition_size!r}")
    items = list(enumerate(paths))
    chunks = [items[i:i + partition_size] for i in range(0, len(items), partition_size)]
    acc = _Accumulator(names)
    if chunks:
        bag = db.from_sequence(chunks, npartitions=len(chunks))
        results = bag.map(_hash_chunk, tuple(names), bool(fast), max_pixels)
        (computed,) = dask.compute(results, scheduler=scheduler)
        for chunk, res in zip(chunks, computed, strict=True):
            acc.add(chunk, res)
    return acc.result(single)
