"""Searches of concurrent requests, gathered into few index calls run by search threads.

One :meth:`HashIndex.search` call over several queries costs less per query than one call
per query (the per-call work is shared). So the queries that arrive for a bank and
threshold while the search threads are busy wait in a queue, and each thread, as soon as
it finishes a call, takes its share of what waits (the waiting rows divided among the
threads, at most :data:`MAX_ROWS` per call) *itself*, without waiting for the event loop:
the threads stay busy whenever there is work, however busy the loop is with parsing and
answering requests. Nothing waits on purpose: a lone request is searched at once; batches
form only when requests arrive faster than searches finish. A small request that finds
nothing running and nothing else waiting is searched right away in the event loop's
thread (:data:`INLINE_ROWS`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import Executor
from typing import Any

import numpy as np

MAX_ROWS = 256
"""Most query rows in one index call."""
INLINE_ROWS = 4
"""A request of at most this many rows that finds no search running and no other request
waiting (in the same turn of the event loop) is searched in the loop's thread: handing it
to a search thread and back costs about as much as the search itself; requests arriving
meanwhile wait in the socket buffers and are batched after it."""

Hits = list[list[tuple[int, int]]]
_Key = tuple[int, int]
_Item = tuple[Any, np.ndarray, int, "asyncio.Future[Hits]"]


class SearchBatcher:
    """Gathers ``search(bank, codes, threshold)`` calls (see the module docstring); at most
    ``slots`` index calls run at once, in ``executor`` (None: in the event loop), which
    should be this batcher's own: its threads keep working while requests wait."""

    def __init__(self, executor: Executor | None, slots: int):
        self.executor = executor
        self.slots = max(1, slots)
        self._lock = threading.Lock()  # guards everything below
        self._pending: dict[_Key, deque[_Item]] = {}
        self._running = 0
        self._scheduled = False
        self.calls = 0
        self.rows = 0

    async def search(self, bank: Any, codes: np.ndarray, threshold: int) -> Hits:
        """Per row of ``codes``, ``bank.search``'s hits, as if searched alone."""
        if self.executor is None:
            self.calls += 1
            self.rows += len(codes)
            return bank.search(codes, threshold)  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Hits] = loop.create_future()
        with self._lock:
            self._pending.setdefault((id(bank), threshold), deque()).append(
                (bank, codes, threshold, fut))
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            # Decide after the callbacks that are ready now (requests that arrived together
            # reach this point in the same turn of the loop) so that they share one call.
            loop.call_soon(self._dispatch, loop)
        return await fut

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Search a lone small request inline, or start idle search threads on the queue."""
        alone: _Item | None = None
        with self._lock:
            self._scheduled = False
            if not self._running and len(self._pending) == 1:
                queue = next(iter(self._pending.values()))
                if len(queue) == 1 and len(queue[0][1]) <= INLINE_ROWS:
                    alone = queue.popleft()
                    self._pending.clear()
                    self.calls += 1
                    self.rows += len(alone[1])
            waiting = sum(len(q) for q in self._pending.values())
            start = min(self.slots - self._running, waiting)
            self._running += start
        if alone is not None:
            self._inline(alone)
        assert self.executor is not None
        for _ in range(start):
            self.executor.submit(self._drain, loop)

    def _inline(self, item: _Item) -> None:
        bank, codes, threshold, fut = item
        try:
            hits = bank.search(codes, threshold)
        except Exception as e:  # noqa: BLE001 - handed to the request that asked
            if not fut.done():
                fut.set_exception(e)
            return
        if not fut.done():
            fut.set_result(hits)

    def _take(self) -> list[_Item]:
        """The next batch: this thread's share of the first queue (caller holds the lock)."""
        if not self._pending:
            return []
        key = next(iter(self._pending))
        queue = self._pending[key]
        share = min(MAX_ROWS, -(-sum(len(item[1]) for item in queue) // self.slots))
        batch: list[_Item] = []
        rows = 0
        while queue and (not batch or rows + len(queue[0][1]) <= share):
            item = queue.popleft()
            batch.append(item)
            rows += len(item[1])
        if not queue:
            del self._pending[key]
        self.calls += 1
        self.rows += rows
        return batch

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """In a search thread: search batches until the queue is empty, handing each
        batch's hits (or its error, whatever it is) to the loop. The thread gives its slot
        back under the same lock that saw the queue empty, so a request queued just then
        finds the slot free and starts a thread."""
        released = False
        try:
            while True:
                with self._lock:
                    batch = self._take()
                    if not batch:
                        self._running -= 1
                        released = True
                        return
                hits: Hits | None = None
                error: BaseException | None = None
                try:
                    hits = _run(batch)
                except Exception as e:  # noqa: BLE001 - handed to the requests that asked
                    error = e
                except BaseException as e:  # not the requests' doing, but they must end
                    error = RuntimeError(f"the search was stopped ({type(e).__name__})")
                try:
                    loop.call_soon_threadsafe(_deliver, batch, hits, error)
                except RuntimeError:  # the loop is closed: the server is gone
                    return
        finally:
            if not released:
                with self._lock:
                    self._running -= 1


def _deliver(batch: list[_Item], hits: Hits | None, error: BaseException | None) -> None:
    """In the loop: hand each request its rows of the batch's hits, or the error."""
    start = 0
    for _, codes, _, fut in batch:
        n = len(codes)
        if not fut.done():
            if hits is None:
                assert error is not None
                fut.set_exception(error)
            else:
                fut.set_result(hits[start:start + n])
        start += n


def _run(batch: list[_Item]) -> Hits:
    bank, _, threshold, _ = batch[0]
    codes = batch[0][1] if len(batch) == 1 else np.concatenate([b[1] for b in batch])
    return bank.search(codes, threshold)  # type: ignore[no-any-return]
