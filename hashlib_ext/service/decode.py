"""A pool of decoding worker processes with a per-request deadline.

Every uploaded image is decoded and hashed (or described) in a worker process
(:mod:`.worker`), one job per worker at a time. A request waits for a free worker and for
the result, together at most its deadline. When the deadline passes with the job running,
*that* worker is killed and replaced in the background, so a pathological image can stall
neither the server nor the requests behind it (the other workers keep serving); the
request is answered 503. A worker that dies on an image (a crashing decoder) is replaced
the same way and the request answered 422.

Workers are started by a ``forkserver`` (never forked from the threaded server process)
and hash a small image once before they take jobs, so the first request does not pay for
loading compiled kernels. Results come back over a pipe (pickle between processes of this
server; nothing a client sends is unpickled: clients send bytes, which go to the decoder).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import errors as lib_errors
from . import worker
from .errors import unavailable

log = logging.getLogger("hashlib_ext.service")

START_TIMEOUT_S = 120.0
"""How long a new worker may take to import and warm up."""


class _Worker:
    def __init__(self, proc: Any, conn: Any):
        self.proc = proc
        self.conn = conn

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            self.proc.join(5)


def _exchange(conn: Any, job: tuple[str, tuple[Any, ...]]) -> Any:
    conn.send(job)
    return conn.recv()


class DecodePool:
    """``workers`` decoding processes; :meth:`run` a job with a deadline (see the module
    docstring). :meth:`start` and :meth:`close` block: call them from a thread."""

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError("the decode pool needs at least one worker")
        self.workers = workers
        self.ctx = mp.get_context("forkserver")
        self._threads = ThreadPoolExecutor(max_workers=workers + 2,
                                           thread_name_prefix="hashlib-ext-decode")
        self._free: asyncio.Queue[_Worker] | None = None
        self._all: set[_Worker] = set()
        self._guard = threading.Lock()
        self._closed = False
        self.replaced = 0
        self.timeouts = 0
        self.crashes = 0
        self.ready = False

    # -- lifecycle ------------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(target=worker.main, args=(child,), daemon=True,
                                name="hashlib-ext-decoder")
        proc.start()
        child.close()
        w = _Worker(proc, parent)
        try:
            if not parent.poll(START_TIMEOUT_S) or parent.recv() != (worker.OK, "ready"):
                raise RuntimeError("decoding worker did not start")
        except BaseException:
            w.kill()
            raise
        with self._guard:
            self._all.add(w)
        return w

    async def start(self) -> None:
        """Start every worker and wait until each is warm."""
        self.ctx.set_forkserver_preload(["hashlib_ext.service.worker"])
        loop = asyncio.get_running_loop()
        self._free = asyncio.Queue()
        started = await asyncio.gather(*(loop.run_in_executor(self._threads, self._spawn)
                                          for _ in range(self.workers)))
        for w in started:
            self._free.put_nowait(w)
        self.ready = True

    def close(self) -> None:
        self._closed = True
        self.ready = False
        with self._guard:
            doomed, self._all = list(self._all), set()
        for w in doomed:
            w.kill()
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _replace(self, w: _Worker) -> None:
        """Kill ``w`` and put a fresh worker in its place (in the background)."""
        loop = asyncio.get_running_loop()
        with self._guard:
            self._all.discard(w)
        await loop.run_in_executor(self._threads, w.kill)
        self.replaced += 1
        delay = 0.5
        while True:
            if self._closed:
                return
            try:
                fresh = await loop.run_in_executor(self._threads, self._spawn)
                break
            except Exception:  # noqa: BLE001 - keep trying: the pool is one short meanwhile
                log.exception("could not start a decoding worker; trying again")
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
        if self._closed:
            fresh.kill()
            return
        assert self._free is not None
        self._free.put_nowait(fresh)

    # -- jobs -----------------------------------------------------------------------------------
    async def run(self, kind: str, args: tuple[Any, ...], timeout: float) -> Any:
        """Run job ``kind`` in a worker within ``timeout`` seconds (waiting for a free
        worker included). Raises the job's typed error, a 503
        :class:`~hashlib_ext.errors.ServiceError` on timeout, or
        :class:`~hashlib_ext.errors.WorkerCrashedError` when the worker died."""
        if self._free is None or self._closed:
            raise unavailable("the decoders are not running")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            w = await asyncio.wait_for(self._free.get(), timeout)
        except TimeoutError:
            self.timeouts += 1
            raise unavailable(f"every decoder stayed busy for {timeout:g} s; try again",
                              kind="DecodeBusy") from None
        fut = loop.run_in_executor(self._threads, _exchange, w.conn, (kind, args))
        try:
            reply = await asyncio.wait_for(asyncio.shield(fut),
                                           max(0.001, deadline - loop.time()))
        except TimeoutError:
            self.timeouts += 1
            fut.add_done_callback(_consume)  # it ends with EOFError once the worker is gone
            loop.create_task(self._replace(w))
            raise unavailable(f"decoding took longer than {timeout:g} s (the decoder was "
                              "stopped)", kind="DecodeTimeout") from None
        except asyncio.CancelledError:  # the client went away: free the worker now
            fut.add_done_callback(_consume)
            loop.create_task(self._replace(w))
            raise
        except (EOFError, OSError):
            self.crashes += 1
            loop.create_task(self._replace(w))
            raise lib_errors.WorkerCrashedError(
                f"<{len(args[0]) if args else 0} bytes>: the decoder crashed on this "
                "image") from None
        self._free.put_nowait(w)
        if reply[0] == worker.OK:
            return reply[1]
        raise _typed(reply[1], reply[2])


def _consume(fut: Any) -> None:
    """Retrieve the outcome of an exchange nobody waits for any more (no 'exception was
    never retrieved' in the log)."""
    if not fut.cancelled():
        fut.exception()


def _typed(kind: str, message: str) -> Exception:
    """The library error named ``kind`` (else an image decode error) with ``message``."""
    cls = getattr(lib_errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, lib_errors.HashlibExtError) and \
            cls.__module__ == lib_errors.__name__:
        return cls(message)
    return lib_errors.ImageDecodeError(message)


def default_workers() -> int:
    """One decoding worker per CPU, at least one, at most four."""
    return max(1, min(4, os.cpu_count() or 1))
