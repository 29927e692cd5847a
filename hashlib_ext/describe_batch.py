"""describe_images(): robust-matching descriptors of many images, in worker processes.

Each input is described independently (:func:`hashlib_ext.describe`); an input that fails
is reported in :attr:`DescribeResult.errors` and the batch goes on. A worker process that
dies (a crash inside a decoder) loses no results: the chunk it held is re-run one input at
a time in a fresh process, and the input that kills it again is reported as a
:class:`~hashlib_ext.errors.WorkerCrashedError`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, NamedTuple

from .descriptor import Descriptor, describe, describe_pair

Failure = tuple[Any, str, str]
"""(input, error type name, message)."""


class Failed(NamedTuple):
    """A Failure while in flight (told apart from results that are tuples themselves)."""

    input: Any
    kind: str
    message: str
_CHUNK = 4


@dataclass
class DescribeResult:
    """``descriptors[i]`` describes the input at ``positions[i]``; ``errors`` lists
    ``(input, error type, message)`` for every input that failed, in input order."""

    descriptors: list[Descriptor]
    positions: list[int]
    errors: list[Failure]


@dataclass
class PairResult:
    """``index[i]`` and ``query[i]`` describe the input at ``positions[i]`` (see
    :func:`hashlib_ext.descriptor.describe_pair`); ``errors`` as in :class:`DescribeResult`."""

    index: list[Descriptor]
    query: list[Descriptor]
    positions: list[int]
    errors: list[Failure]


def _describe_chunk(chunk: list[tuple[int, Any]], mode: str) -> list[tuple[int, Any]]:
    """``(position, result)`` per input: a Descriptor (mode "index" or "query"), a pair of
    them (mode "pair"), or a Failure record."""
    from .errors import HashlibExtError

    out: list[tuple[int, Any]] = []
    for pos, src in chunk:
        try:
            out.append((pos, describe_pair(src) if mode == "pair"
                        else describe(src, query=mode == "query")))
        except (HashlibExtError, OSError) as e:
            out.append((pos, Failed(input_id(src, pos), type(e).__name__, str(e))))
    return out


def describe_images(srcs: Iterable[Any], *, query: bool = False, workers: int | None = None,
                    progress: bool = False) -> DescribeResult:
    """Describe every source (paths, bytes, PIL images, arrays) for robust matching.
    ``workers``: processes (default one per CPU; 1 runs in this process)."""
    positions, done, errors = _describe_all(srcs, "query" if query else "index", workers,
                                            progress)
    return DescribeResult(done, positions, errors)


def describe_image_pairs(srcs: Iterable[Any], *, workers: int | None = None,
                         progress: bool = False) -> PairResult:
    """Index-side and query-side descriptions of every source, one decode each (for
    matching a collection against itself)."""
    positions, done, errors = _describe_all(srcs, "pair", workers, progress)
    return PairResult([d[0] for d in done], [d[1] for d in done], positions, errors)


def _describe_all(srcs: Iterable[Any], mode: str, workers: int | None, progress: bool
                  ) -> tuple[list[int], list[Any], list[Failure]]:
    """(positions, results, failures) of describing every source, in input order."""
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    items = list(enumerate(srcs))
    workers = max(1, min(workers or os.cpu_count() or 1, len(items) or 1))
    chunks = [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    results: dict[int, Any] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="describing", unit="img", file=sys.stderr)
    try:
        if workers == 1:
            for chunk in chunks:
                _collect(results, _describe_chunk(chunk, mode), bar)
        else:
            _run_pool(chunks, mode, workers, results, bar)
    finally:
        if bar is not None:
            bar.close()
    positions: list[int] = []
    done: list[Any] = []
    errors: list[Failure] = []
    for pos, _ in items:
        r = results[pos]
        if isinstance(r, Failed):
            errors.append((r.input, r.kind, r.message))
        else:
            done.append(r)
            positions.append(pos)
    return positions, done, errors


def _run_pool(chunks: Sequence[list[tuple[int, Any]]], mode: str, workers: int,
              results: dict, bar: Any) -> None:
    lost: list[list[tuple[int, Any]]] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [(c, pool.submit(_describe_chunk, c, mode)) for c in chunks]
        for chunk, fut in futures:
            try:
                _collect(results, fut.result(), bar)
            except BrokenProcessPool:
                lost.append(chunk)
            except Exception:  # noqa: BLE001 - errors of describing come back as records,
                # so this is the chunk failing to travel to a worker (an open file): here
                _collect(results, _describe_chunk(chunk, mode), bar)
    for chunk in lost:  # the pool broke: each input alone, in a fresh process
        for item in chunk:
            with ProcessPoolExecutor(max_workers=1) as alone:
                try:
                    _collect(results, alone.submit(_describe_chunk, [item], mode).result(),
                             bar)
                except BrokenProcessPool:
                    results[item[0]] = Failed(input_id(item[1], item[0]), "WorkerCrashedError",
                                              "the worker process died describing this input")
                    if bar is not None:
                        bar.update(1)


def _collect(results: dict, part: list[tuple[int, Any]], bar: Any) -> None:
    for pos, r in part:
        results[pos] = r
    if bar is not None:
        bar.update(len(part))


def input_id(src: Any, pos: int) -> Any:
    """How an input is named in error records: its path, else its position."""
    return os.fspath(src) if isinstance(src, (str, os.PathLike)) else pos
