"""The CLI's side of scale-out: ``--scheduler`` (a dask cluster to run on), ``--shards``, and
a sharded index looked at through the same calls as a :class:`~hashlib_ext.HashIndex`.

``--scheduler ADDRESS`` connects to a running dask scheduler (``tcp://host:8786``);
``--scheduler local`` or ``local:N`` starts a LocalCluster of N single-threaded worker
processes on this machine (default: one per CPU) for the length of the command.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._common import UsageError


def add_scheduler(p: argparse.ArgumentParser, what: str) -> None:
    """``--scheduler ADDRESS``."""
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help=f"{what} on a dask cluster: the scheduler's address "
                        "(tcp://host:8786), or 'local[:N]' for N worker processes on this "
                        "machine (needs the dask extra)")


@contextmanager
def dask_client(address: str | None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``--scheduler`` (None: yields None, work stays here)."""
    if address is None:
        yield None
        return
    from ..errors import MissingDependencyError

    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise MissingDependencyError(
            "--scheduler needs dask.distributed: pip install 'hashlib-ext[dask]'") from e
    if address == "local" or address.startswith("local:"):
        n = address.partition(":")[2]
        try:
            workers = int(n) if n else (os.cpu_count() or 1)
        except ValueError:
            raise UsageError(f"--scheduler {address}: expected local or local:N") from None
        if workers < 1:
            raise UsageError(f"--scheduler {address}: N must be >= 1")
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout="20s")
    except OSError as e:
        raise UsageError(f"--scheduler {address}: cannot connect ({e})") from None
    with client:
        yield client


def is_sharded(path: str) -> bool:
    """Whether ``path`` (a folder or fsspec URL) holds a sharded index (its manifest)."""
    from .. import fsio, shard_manifest

    try:
        if not fsio.is_remote(path) and not os.path.isdir(path):
            return False
        return fsio.exists(shard_manifest.manifest_location(os.fspath(path)))
    except (OSError, ValueError):
        return False


def is_hash_partitions(path: str) -> bool:
    """Whether ``path`` is a folder of hash partitions written by ``hash --scheduler``."""
    from .. import fsio
    from ..dask_pipeline import SUMMARY

    try:
        if not fsio.is_remote(path) and not os.path.isdir(path):
            return False
        return fsio.exists(fsio.join(path, SUMMARY))
    except (OSError, ValueError):
        return False


class ShardedView:
    """A :class:`~hashlib_ext.ShardedIndex` bound to a client (or None), answering the
    calls ``match`` makes of a HashIndex, so the command reads the same for both."""

    def __init__(self, index: Any, client: Any):
        self.index, self.client = index, client
        self.algorithm: str | None = index.algorithm
        self.bits: int = index.bits
        self.has_keys: bool = index.has_keys
        self._columns: list[str] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def search(self, queries: Any, threshold: int) -> list[list[tuple[int, int]]]:
        return list(self.index.search(queries, threshold, client=self.client))

    def search_dihedral(self, variants: Any, threshold: int) -> list[list[tuple[int, int, int]]]:
        return list(self.index.search_dihedral(variants, threshold, client=self.client))

    def keys(self, ids: Iterable[int] | np.ndarray) -> list[str | None]:
        return list(self.index.keys(ids, client=self.client))

    def metadata(self, ids: Iterable[int] | np.ndarray,
                 columns: Sequence[str] | None = None) -> list[dict[str, str]]:
        return list(self.index.metadata(ids, columns, client=self.client))

    @property
    def metadata_columns(self) -> list[str]:
        """The metadata columns of all shards, in order of first use (shard by shard)."""
        if self._columns is None:
            if self.client is None:
                per = [self.index.load_shard(k).metadata_columns
                       for k in range(self.index.shards)]
            else:
                futures = self.index.shard_futures(self.client)
                per = self.client.gather([self.client.submit(shard_columns, f, pure=False)
                                          for f in futures])
            self._columns = list(dict.fromkeys(c for cols in per for c in cols))
        return self._columns


def shard_columns(handle: Any) -> list[str]:
    """Metadata columns of one loaded shard (a task on the worker holding it)."""
    return list(handle.index.metadata_columns)
