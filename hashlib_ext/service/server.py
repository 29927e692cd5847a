"""Run the service under uvicorn: uvloop and httptools where installed, one process (the
banks live in its memory), access log off unless asked for."""

from __future__ import annotations

import copy
import importlib.util
import logging
import signal
import threading
from typing import Any

from .config import ServiceConfig

log = logging.getLogger("hashlib_ext.service")


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging set-up, with the service's own logger beside its loggers."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["hashlib_ext"] = {"handlers": ["default"], "level": level.upper(),
                                     "propagate": False}
    return cfg


def serve(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8000, *,
          access_log: bool = False, log_level: str = "info",
          graceful_timeout: float = 10.0) -> None:
    """Open the banks of ``config.root`` (failing at once if one cannot be read), then
    serve until SIGINT or SIGTERM; on the way out every bank's journal is compacted."""
    from . import deps

    deps.require()
    import logging.config

    import uvicorn

    from .app import create_app
    from .store import BankStore

    logging.config.dictConfig(log_config(log_level))
    # Concurrency comes from requests, searched in the search threads: FAISS's OpenMP
    # threads (flat scans of small banks) would spin between calls, taking a core from them.
    import faiss

    faiss.omp_set_num_threads(1)
    store = BankStore(config.root, compact_bytes=config.compact_bytes,
                      compact_removals=config.compact_removals)
    store.open(progress=lambda name: log.info("loading bank %s", name))
    try:
        app = create_app(config, store)
    except BaseException:
        store.close(compact=False)
        raise
    uv = uvicorn.Config(
        app, host=host, port=port, log_config=None, log_level=log_level,
        access_log=access_log, lifespan="on", server_header=False,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        timeout_graceful_shutdown=int(graceful_timeout), backlog=2048,
        proxy_headers=False,  # the service never uses client addresses
    )
    server = uvicorn.Server(uv)
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        # uvicorn handles SIGINT/SIGTERM while it serves and raises them again once it has
        # shut down; a graceful stop is a normal end here, not an interruption.
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if store.banks:  # the lifespan did not run (startup failed): release the banks
            store.close()
