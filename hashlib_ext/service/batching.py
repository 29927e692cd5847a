"""Searches of concurrent requests, gathered into one index call.

One :meth:`HashIndex.search` call over many queries costs far less per query than many
calls of one query each (the per-call work of the multi-index tables is shared: at 1M
hashes, 64 queries per call gave about 2.5x the queries/s of one per call). So while a
search of a bank runs in a search thread, the queries that arrive for the same bank and
threshold wait, and the next call takes them all (up to :data:`MAX_ROWS`). Nothing waits
on purpose: a lone request is searched at once, as before; batches form only when
requests arrive faster than searches finish. A small request that finds nothing running
and nothing else waiting is searched right away in the event loop's thread
(:data:`INLINE_ROWS`).
"""

from __future__ import annotations

import asyncio
import functools
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
    ``slots`` index calls run at once, in ``executor`` (None: in the event loop)."""

    def __init__(self, executor: Executor | None, slots: int):
        self.executor = executor
        self.slots = max(1, slots)
        self._pending: dict[_Key, list[_Item]] = {}
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
        self._pending.setdefault((id(bank), threshold), []).append(
            (bank, codes, threshold, fut))
        if not self._scheduled:
            # Decide after the callbacks that are ready now (requests that arrived together
            # reach this point in the same turn of the loop) so that they share one call.
            self._scheduled = True
            loop.call_soon(self._dispatch, loop)
        return await fut

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        if not self._running and len(self._pending) == 1:
            queue = next(iter(self._pending.values()))
            if len(queue) == 1 and len(queue[0][1]) <= INLINE_ROWS:
                self._pending.clear()
                self._inline(queue[0])
                return
        while self._running < self.slots and self._pending:
            key = next(iter(self._pending))
            queue = self._pending[key]
            batch: list[_Item] = []
            rows = 0
            while queue and (not batch or rows + len(queue[0][1]) <= MAX_ROWS):
                item = queue.pop(0)
                batch.append(item)
                rows += len(item[1])
            if not queue:
                del self._pending[key]
            self._running += 1
            self.calls += 1
            self.rows += rows
            assert self.executor is not None
            task = loop.run_in_executor(self.executor, _run, batch)
            task.add_done_callback(functools.partial(self._done, loop, batch))

    def _inline(self, item: _Item) -> None:
        bank, codes, threshold, fut = item
        self.calls += 1
        self.rows += len(codes)
        try:
            hits = bank.search(codes, threshold)
        except Exception as e:  # noqa: BLE001 - handed to the request that asked
            if not fut.done():
                fut.set_exception(e)
            return
        if not fut.done():
            fut.set_result(hits)

    def _done(self, loop: asyncio.AbstractEventLoop, batch: list[_Item],
              task: asyncio.Future[Hits]) -> None:
        """Hand each request its rows of the batch's hits (or the error), then start the
        next batch."""
        self._running -= 1
        error = task.exception()
        hits = None if error is not None else task.result()
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
        self._dispatch(loop)


def _run(batch: list[_Item]) -> Hits:
    bank, _, threshold, _ = batch[0]
    codes = batch[0][1] if len(batch) == 1 else np.concatenate([b[1] for b in batch])
    return bank.search(codes, threshold)  # type: ignore[no-any-return]
