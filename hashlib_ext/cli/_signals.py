"""SIGINT and SIGTERM: stop the worker processes, unwind, exit 130 / 143.

While a command runs, both signals are handled in the main process by

1. sending SIGTERM to every worker process this process started (``multiprocessing``
   children: the pools of ``hash_images`` and ``describe_images``), so that none is left
   running with init as its parent and the pool has nothing left to wait for;
2. raising :class:`Interrupted` (a ``KeyboardInterrupt``), which unwinds the command: the
   temporary file of an output being written is removed, the file it would have replaced
   is left as it was; or, inside :func:`compute_only` (hashing or describing in worker
   processes, before any output is opened), killing the workers and ending the process at
   once: nothing is open that needs cleaning up, and a pool whose worker was killed in the
   middle of a reply could make an orderly shutdown wait for good;
3. arming a watchdog: if the command has not unwound a few seconds later (a wait that
   cannot be interrupted), the workers are killed and the process ends with the same
   status.

On Linux a worker forked while a command runs also asks the kernel for SIGTERM when this
process dies (``prctl(PR_SET_PDEATHSIG)``), so that even a SIGKILL of the command leaves no
worker behind.

A second signal ends the process at once. A forked worker inherits these handlers: there
the signal ends the worker immediately (a terminal's Ctrl-C reaches the workers too). A
signal the process was started ignoring (SIGINT of a shell's background job) stays ignored.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from ..errors import Interrupted

__all__ = ["Interrupted", "compute_only", "handling", "stop_children"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
WATCHDOG_S = 5.0
"""How long the process may take to unwind after a signal before it is ended."""


_owner: int | None = None
_received: int | None = None
_before: set[int] = set()  # children that were running before the command: not ours to stop
_active = False
_unwound = threading.Event()  # set when the command has returned: the watchdog stands down
_compute_depth = 0  # > 0 inside compute_only(): no output file is open
_prctl: Any = None
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    """libc's prctl (Linux), loaded here so that forked children need not import ctypes."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _in_forked_child() -> None:
    """At fork, in the child: die with the parent (a worker must not outlive the command)."""
    if not _active or _prctl is None:
        return
    try:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort
        return
    if os.getppid() != _owner:  # the parent died before the request took effect
        os._exit(128 + signal.SIGTERM)


def stop_children(sig: int = signal.SIGTERM, *, wait_s: float = 0.0) -> None:
    """Send ``sig`` to every live worker process this process started since the command
    began; with ``wait_s``, wait that long for them to end and kill (SIGKILL) the rest."""
    kids = [p for p in multiprocessing.active_children() if p.pid not in _before]
    for p in kids:
        if p.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(p.pid, sig)
    if wait_s <= 0:
        return
    deadline = time.monotonic() + wait_s
    for p in kids:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in kids:
        if p.is_alive() and p.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(p.pid, signal.SIGKILL)
            p.join(1.0)


def _watchdog(signum: int, done: threading.Event) -> None:
    if done.wait(WATCHDOG_S):  # the command unwound in time
        return
    stop_children(signal.SIGKILL)
    with contextlib.suppress(Exception):
        sys.stderr.write("hashlib-ext: did not stop in time after the signal; ended\n")
        sys.stderr.flush()
    os._exit(128 + signum)


def _say_and_exit(signum: int) -> None:
    with contextlib.suppress(Exception):
        word = "interrupted" if signum == signal.SIGINT else "terminated"
        sys.stderr.write(("\n" if sys.stderr.isatty() else "") + f"hashlib-ext: {word}\n")
        sys.stderr.flush()
    os._exit(128 + signum)


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    if os.getpid() != _owner:  # a forked worker: end now, quietly
        os._exit(128 + signum)
    if _compute_depth > 0:
        # Workers are busy and no output is open: end now. (Unwinding would wait on the
        # pool, which can block for good on a worker killed in the middle of a reply.)
        stop_children(signal.SIGKILL)
        _say_and_exit(signum)
    stop_children(signal.SIGTERM)
    if _received is not None:  # a second signal: no more unwinding
        stop_children(signal.SIGKILL)
        os._exit(128 + _received)
    _received = signum
    threading.Thread(target=_watchdog, args=(signum, _unwound), name="hashlib-ext-watchdog",
                     daemon=True).start()
    raise Interrupted(signum)


@contextlib.contextmanager
def compute_only() -> Iterator[None]:
    """Mark a stretch that only computes (worker pools, no output file open): a signal
    there stops the workers and ends the process at once, with nothing to clean up."""
    global _compute_depth
    _compute_depth += 1
    try:
        yield
    finally:
        _compute_depth -= 1


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Handle SIGINT and SIGTERM as described above while the block runs (only in the main
    thread of the main interpreter; elsewhere the block runs with the handlers as they are)."""
    global _owner, _received, _before, _active, _prctl, _unwound, _compute_depth
    _before = {p.pid for p in multiprocessing.active_children() if p.pid is not None}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    _owner, _received, _compute_depth = os.getpid(), None, 0
    _unwound = threading.Event()
    for signum in SIGNALS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue  # e.g. SIGINT of a shell's background job: stays ignored
        previous[signum] = signal.signal(signum, _handler)
    if _prctl is None:
        _prctl = _load_prctl()
        if _prctl is not None:
            os.register_at_fork(after_in_child=_in_forked_child)
    _active = True
    try:
        yield
    finally:
        _active = False
        _unwound.set()
        for num, h in previous.items():
            signal.signal(num, h if h is not None else signal.SIG_DFL)
