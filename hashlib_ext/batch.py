"""Batch hashing: stream many images through a process pool into packed code arrays.

:func:`hash_images` takes any iterable of sources (a list, or a generator of a million
paths) and never holds more than a bounded window of it: inputs are cut into chunks, at most
a few chunks per worker are in flight, and results are collected in input order. Workers
receive paths (never decoded pixels) and send back packed codes and qualities as numpy
arrays. A bad input never aborts the batch: its error is recorded in
:attr:`BatchResult.errors`. A worker process that dies (killed, out of memory, a crash in a
decoder) does not lose the batch either: the pool is restarted, the chunks that were in
flight are re-run one at a time, and the input that kills a worker again is recorded as a
:class:`WorkerCrashedError` — one by one, however many such inputs come in a row (after every
:data:`_CANARY_AFTER` crashes in a row a trivial task checks that workers can run at all).

Workers are bounded: the default is the number of CPUs this process may use, the maximum
:func:`max_workers` (twice ``os.cpu_count()``); a larger request is clamped with a warning,
and no more workers are started than there are inputs.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import sys
import warnings
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .errors import WorkerCrashedError
from .hash import HashArray

Item = tuple[int, Any]
"""One input: (position in the input iterable, source)."""
Chunk = list[Item]
ErrorRecord = tuple["str | int", str, str]
"""(input id, error type name, message)."""

# In-flight chunks per worker: enough to keep every worker busy while the parent waits on
# the oldest chunk (results are taken in input order), small enough to bound memory.
_WINDOW_PER_WORKER = 4
_MAX_CHUNKSIZE = 16
# Inputs in a row that each kill a worker before a trivial task checks that workers can run
# at all. If it runs, the inputs were to blame and hashing goes on (each recorded as a
# WorkerCrashedError); if it cannot run either, workers cannot start here and we stop.
_CANARY_AFTER = 16


@dataclass
class BatchResult:
    """What :func:`hash_images` returns.

    ``hashes`` holds the inputs that hashed, in input order: a :class:`HashArray` for one
    algorithm, a dict name -> HashArray (rows aligned) for a list of algorithms.
    ``ids[i]`` names the input of row ``i``: its path (``str``) for path inputs, else its
    position in the input iterable; ``positions[i]`` is always that position (int64).
    ``errors`` lists ``(id, error type name, message)`` for every input that failed, in
    input order, ``id`` as in ``ids``.
    """

    hashes: HashArray | dict[str, HashArray]
    ids: list[str | int]
    positions: np.ndarray
    errors: list[ErrorRecord]

    @property
    def ok(self) -> int:
        """Number of inputs that hashed."""
        return int(self.positions.shape[0])

    @property
    def failed(self) -> int:
        """Number of inputs that failed."""
        return len(self.errors)

    def __len__(self) -> int:
        return self.ok


class _ChunkResult(NamedTuple):
    """A worker's answer for one chunk: compact arrays, no per-hash Python objects."""

    positions: np.ndarray  # (k,) int64 positions that hashed
    codes: dict[str, np.ndarray]  # name -> (k, bits/8) uint8
    qualities: dict[str, np.ndarray]  # name -> (k,) int16, -1 where the algorithm has none
    errors: list[tuple[int, str, str]]  # (position, error type name, message)


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return " ".join(text.split()) if text else type(exc).__name__


def hash_chunk(
    items: Chunk, names: Sequence[str], fast: bool, max_pixels: int | None
) -> _ChunkResult:
    """Hash every item of a chunk (runs in a worker, or in-process for ``workers=1``)."""
    from .hashers import hash_image

    positions: list[int] = []
    rows: dict[str, list[np.ndarray]] = {n: [] for n in names}
    quals: dict[str, list[int]] = {n: [] for n in names}
    errors: list[tuple[int, str, str]] = []
    for pos, src in items:
        try:
            hashes = hash_image(src, list(names), fast=fast, max_pixels=max_pixels)
        except Exception as e:  # noqa: BLE001 - every per-item failure is recorded, never raised
            errors.append((pos, type(e).__name__, _error_text(e)))
            continue
        positions.append(pos)
        assert isinstance(hashes, dict)  # a list of names gives a dict name -> Hash
        for n in names:
            h = hashes[n]
            rows[n].append(h.code)
            quals[n].append(-1 if h.quality is None else h.quality)
    codes = {
        n: np.stack(rows[n]) if rows[n] else np.zeros((0, 0), dtype=np.uint8) for n in names
    }
    return _ChunkResult(
        np.asarray(positions, dtype=np.int64),
        codes,
        {n: np.asarray(quals[n], dtype=np.int16) for n in names},
        errors,
    )


def _input_id(src: Any, pos: int) -> str | int:
    """The path for path inputs, else the input position."""
    if isinstance(src, str):
        return src
    if isinstance(src, os.PathLike):
        return os.fsdecode(os.fspath(src))
    return pos


class Accumulator:
    """Collects chunk results: lists of arrays, concatenated once at the end."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.positions: list[np.ndarray] = []
        self.codes: dict[str, list[np.ndarray]] = {n: [] for n in names}
        self.qualities: dict[str, list[np.ndarray]] = {n: [] for n in names}
        self.ids: list[str | int] = []
        self.errors: list[ErrorRecord] = []

    def add(self, chunk: Chunk, res: _ChunkResult) -> None:
        start = chunk[0][0]
        # Merge successes and failures back into input order (a chunk's positions are
        # consecutive, so position - start indexes the chunk).
        if res.positions.size:
            self.positions.append(res.positions)
            for n in self.names:
                self.codes[n].append(res.codes[n])
                self.qualities[n].append(res.qualities[n])
            self.ids.extend(_input_id(chunk[p - start][1], p) for p in res.positions.tolist())
        for pos, kind, msg in res.errors:
            self.errors.append((_input_id(chunk[pos - start][1], pos), kind, msg))

    def result(self, single: bool) -> BatchResult:
        from .hashers import expected_bits

        hashes: dict[str, HashArray] = {}
        for n in self.names:
            if self.codes[n]:
                codes = np.concatenate(self.codes[n])
                q = np.concatenate(self.qualities[n])
                hashes[n] = HashArray(codes, n, q if (q >= 0).any() else None)
            else:
                hashes[n] = HashArray.empty(n, expected_bits(n) or 0)
        positions = (
            np.concatenate(self.positions) if self.positions else np.zeros(0, dtype=np.int64)
        )
        return BatchResult(
            hashes[self.names[0]] if single else hashes, self.ids, positions, self.errors
        )


def _chunks(srcs: Iterable[Any], size: int | None, total: int | None, workers: int) -> Iterator[
    Chunk
]:
    """Cut the input into chunks of (position, source). With ``size`` None, chunks shrink as
    the known remainder does (guided scheduling): large early for low overhead, single
    items at the end so no worker idles while another finishes a long chunk."""
    it = enumerate(srcs)
    pos = 0
    while True:
        n = size or _default_chunksize(None if total is None else total - pos, workers)
        chunk = list(itertools.islice(it, n))
        if not chunk:
            return
        pos += len(chunk)
        yield chunk


def _portable(chunk: Chunk) -> Chunk:
    """Make a chunk sendable to a worker: file objects are read here (their bytes are sent
    and decoded in the worker); everything else, paths included, is sent as it is."""
    if not any(hasattr(src, "read") for _, src in chunk):
        return chunk
    out = []
    for pos, src in chunk:
        if hasattr(src, "read") and not isinstance(src, (str, bytes, os.PathLike)):
            try:
                src = src.read()
            except Exception:  # noqa: BLE001 - the worker will report the unusable input
                pass
        out.append((pos, src))
    return out


def default_workers() -> int:
    """Worker processes used by default: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def max_workers() -> int:
    """The most worker processes :func:`hash_images` starts: twice ``os.cpu_count()``
    (hashing is CPU-bound; the slack covers inputs on slow storage)."""
    return 2 * max(1, os.cpu_count() or 1)


def _resolve_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1 (or None for {default_workers()}, the CPUs "
                         f"available), got {workers}")
    cap = max_workers()
    if workers > cap:
        warnings.warn(f"workers={workers} is more than {cap} (twice the {os.cpu_count()} "
                      f"CPUs); using {cap}", RuntimeWarning, stacklevel=3)
        return cap
    return int(workers)


def _default_chunksize(remaining: int | None, workers: int) -> int:
    """Small enough for load balance and a lively progress bar, large enough that IPC is
    negligible next to decoding (~0.2 ms per task vs several ms per image)."""
    if remaining is None:
        return 8
    return max(1, min(_MAX_CHUNKSIZE, remaining // (workers * 4)))


def _mp_context() -> mp.context.BaseContext:
    """The platform's default start method (or the one the application set): ``fork`` on
    Linux before Python 3.14 (workers start in milliseconds, no ``__main__`` guard needed),
    ``forkserver``/``spawn`` elsewhere."""
    return mp.get_context()


_WARMED: set[tuple[str, ...]] = set()


def _warm_before_fork(names: Sequence[str], ctx: mp.context.BaseContext) -> None:
    """Hash two tiny encoded images here once, so forked workers inherit the hashers' lazy
    state (JIT-compiled kernels, Pillow's plugin registry, imports) instead of each paying
    for it (~0.5 s per worker on a cold start)."""
    key = tuple(names)
    if ctx.get_start_method() != "fork" or key in _WARMED:
        return
    import io

    from PIL import Image

    from .hashers import hash_image

    ramp = np.add.outer(np.arange(480), np.arange(640)).astype(np.uint8)  # a photo-sized image
    for mode, fmt in (("RGB", "JPEG"), ("L", "PNG")):
        buf = io.BytesIO()
        Image.fromarray(ramp).convert(mode).save(buf, fmt)
        try:
            hash_image(buf.getvalue(), list(names))
        except Exception:  # noqa: BLE001 - warming is an optimisation only
            pass
    _WARMED.add(key)


def validate_algorithms(algorithm: str | Sequence[str], fast: bool) -> tuple[list[str], bool]:
    """The algorithm names to hash with, and whether one name (not a list) was given;
    unknown, repeated or fast-less names raise at once (before any input is read)."""
    from .hashers import get

    single = isinstance(algorithm, str)
    names: list[str] = [algorithm] if isinstance(algorithm, str) else list(algorithm)
    if not names:
        raise ValueError("no algorithm given")
    if len(set(names)) != len(names):
        raise ValueError(f"algorithm names repeat: {names}")
    for n in names:
        spec = get(n)  # UnknownAlgorithmError naming the known algorithms
        if fast and spec.draft_size is None:
            raise ValueError(f"{n} has no fast mode")
    return names, single


class _Pool:
    """A process pool that is replaced when a worker dies."""

    def __init__(self, workers: int, names: Sequence[str]):
        self.workers = workers
        self.crash_streak = 0  # inputs in a row that killed a worker when run alone
        self.crashes = 0
        self.ctx = _mp_context()
        _warm_before_fork(names, self.ctx)
        self.executor = ProcessPoolExecutor(workers, mp_context=self.ctx)

    def submit(self, chunk: Chunk, args: tuple) -> Future:
        try:
            return self.executor.submit(hash_chunk, chunk, *args)
        except BrokenProcessPool:
            self.restart()
            return self.executor.submit(hash_chunk, chunk, *args)

    def restart(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.executor = ProcessPoolExecutor(self.workers, mp_context=self.ctx)

    def run_alone(self, chunk: Chunk, args: tuple) -> _ChunkResult:
        """Run one chunk with nothing else in flight, so a crash is attributable to it."""
        fut = self.submit(chunk, args)
        try:
            res = fut.result()
            self.crash_streak = 0
            return res
        except BrokenProcessPool:
            self.restart()
            if len(chunk) == 1:
                self.crash_streak += 1
                self.crashes += 1
                if self.crash_streak % _CANARY_AFTER == 0:
                    self._check_workers_run()
                pos = chunk[0][0]
                msg = "a worker process died while hashing this input"
                return _empty_result(args[0], [(pos, WorkerCrashedError.__name__, msg)])
        except Exception as e:  # noqa: BLE001 - e.g. an input that cannot be pickled
            if len(chunk) == 1:
                return _empty_result(args[0], [(chunk[0][0], type(e).__name__, _error_text(e))])
        # Several items: find the culprit(s) by running each alone.
        parts = [self.run_alone([item], args) for item in chunk]
        return _merge(args[0], parts)

    def _check_workers_run(self) -> None:
        """After many crashes in a row: can a worker run anything at all? (Twice, so that a
        worker that happens to die once does not end the batch.)"""
        for _ in range(2):
            try:
                if self.executor.submit(_canary).result() == _CANARY_VALUE:
                    return
            except BrokenProcessPool:
                self.restart()
        raise RuntimeError(
            f"{self.crash_streak} inputs in a row killed a worker process, and a trivial task "
            "cannot run in a worker either: worker processes cannot run here"
        )

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


_CANARY_VALUE = 0x5EED


def _canary() -> int:
    return _CANARY_VALUE


def _empty_result(names: Sequence[str], errors: list[tuple[int, str, str]]) -> _ChunkResult:
    return _ChunkResult(
        np.zeros(0, dtype=np.int64),
        {n: np.zeros((0, 0), dtype=np.uint8) for n in names},
        {n: np.zeros(0, dtype=np.int16) for n in names},
        errors,
    )


def _merge(names: Sequence[str], parts: list[_ChunkResult]) -> _ChunkResult:
    def cat(arrays: list[np.ndarray]) -> np.ndarray:
        arrays = [a for a in arrays if a.shape[0]]
        return np.concatenate(arrays) if arrays else np.zeros((0, 0), dtype=np.uint8)

    pos = [p.positions for p in parts if p.positions.size]
    return _ChunkResult(
        np.concatenate(pos) if pos else np.zeros(0, dtype=np.int64),
        {n: cat([p.codes[n] for p in parts]) for n in names},
        {
            n: np.concatenate([p.qualities[n] for p in parts]).astype(np.int16, copy=False)
            for n in names
        },
        [e for p in parts for e in p.errors],
    )


def _run_pool(
    chunks: Iterator[Chunk], workers: int, args: tuple
) -> Generator[tuple[Chunk, _ChunkResult], None, None]:
    """Yield (chunk, result) in input order, at most ``workers * 4`` chunks in flight."""
    pool = _Pool(workers, args[0])
    window = workers * _WINDOW_PER_WORKER
    pending: deque[tuple[Chunk, Future]] = deque()
    try:
        while True:
            for chunk in itertools.islice(chunks, window - len(pending)):
                chunk = _portable(chunk)
                pending.append((chunk, pool.submit(chunk, args)))
            if not pending:
                return
            chunk, fut = pending.popleft()
            try:
                res = fut.result()
            except BrokenProcessPool:
                broken = True
            except Exception:  # noqa: BLE001 - not an item error (e.g. pickling): isolate items
                broken = False
                res = pool.run_alone(chunk, args)
            else:
                broken = False
            if not broken:
                yield chunk, res
                continue
            # A worker died. Re-run, one at a time, this chunk and every in-flight chunk the
            # dead pool took down; chunks that finished before it keep their results.
            pool.restart()
            yield chunk, pool.run_alone(chunk, args)
            redo, pending = pending, deque()
            for c, f in redo:
                if f.done() and not f.cancelled() and f.exception() is None:
                    yield c, f.result()
                else:
                    f.cancel()
                    yield c, pool.run_alone(c, args)
    finally:
        pool.close()


def hash_images(
    srcs: Iterable[Any],
    algorithm: str | Sequence[str] = "pdq",
    *,
    workers: int | None = None,
    progress: bool = False,
    fast: bool = False,
    chunksize: int | None = None,
    max_pixels: int | None = None,
) -> BatchResult:
    """Hash many images in parallel; bad inputs are recorded, never raised.

    ``srcs``: any iterable of sources :func:`~hashlib_ext.hash_image` accepts (paths are
    sent to the workers as paths and decoded there); it is streamed, so a generator of a
    million paths is fine. ``algorithm``: a name, or a list of names hashed from a single
    decode per image. ``workers``: processes (default: the CPUs this process may use, see
    :func:`default_workers`); ``1`` hashes in this process; more than :func:`max_workers`
    is clamped to it with a ``RuntimeWarning``, and never more are started than there are
    inputs; 0, negative or non-integer values raise ``ValueError`` at once. ``progress``: a
    tqdm bar on stderr. ``fast`` and ``max_pixels`` are passed to
    :func:`~hashlib_ext.hash_image`. ``chunksize``: inputs per
    task (default: shrinking as the known remainder does, at most 16).

    An unknown algorithm name (:class:`~hashlib_ext.errors.UnknownAlgorithmError`) or a
    bad argument raises a ``ValueError`` at once; a failing input never does.
    """
    names, single = validate_algorithms(algorithm, fast)
    workers = _resolve_workers(workers)
    try:
        total: int | None = len(srcs)  # type: ignore[arg-type]
    except TypeError:
        total = None
    if total is not None:
        workers = max(1, min(workers, total))
    if chunksize is not None and int(chunksize) < 1:
        raise ValueError(f"chunksize must be >= 1, got {chunksize!r}")
    args = (tuple(names), bool(fast), max_pixels)
    chunks = _chunks(srcs, None if chunksize is None else int(chunksize), total, workers)
    acc = Accumulator(names)

    from tqdm import tqdm

    class _Bar(tqdm):
        monitor_interval = 0  # no monitor thread: workers may be forked while the bar runs

    with _Bar(
        total=total, unit="img", file=sys.stderr, disable=not progress, desc="hashing",
        dynamic_ncols=True,
    ) as bar:
        if workers == 1 or (total is not None and total <= 1):
            results: Generator[tuple[Chunk, _ChunkResult], None, None] = (
                (c, hash_chunk(c, *args)) for c in chunks
            )
        else:
            results = _run_pool(chunks, workers, args)
        try:
            for chunk, res in results:
                acc.add(chunk, res)
                bar.update(len(chunk))
                if res.errors:
                    bar.set_postfix(failed=len(acc.errors), refresh=False)
        finally:
            results.close()  # stops the pool now, also on an interrupt
    return acc.result(single)
