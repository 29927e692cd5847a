"""A match service for moderation pipelines: ``hashlib-ext serve``.

An HTTP/JSON API (FastAPI on uvicorn) over banks of known hashes: hash images, match
images or hashes against the banks (exact Hamming search in
:class:`~hashlib_ext.index.HashIndex`; robust matching in robust banks), and manage banks
whose changes are journalled and survive restarts and crashes. See docs/service.md.

Modules, one job each: :mod:`.app` (the ASGI app), :mod:`.routes_match` and
:mod:`.routes_banks` (endpoints), :mod:`.fastpath` (JSON matches without the framework),
:mod:`.batching` (concurrent searches in one index call), :mod:`.banks` (a bank: index,
journal, compaction), :mod:`.store` (the banks of a folder), :mod:`.journal` (the
crash-safe change log), :mod:`.decode` and :mod:`.worker` (image decoding in worker
processes), :mod:`.auth`, :mod:`.limits`, :mod:`.metrics`, :mod:`.uploads` (hash-list
uploads), :mod:`.http` (request helpers), :mod:`.schemas` (OpenAPI bodies), :mod:`.state`
(the running service), :mod:`.config`, :mod:`.server` (uvicorn).

Needs the ``serve`` extra (``pip install 'hashlib-ext[serve]'``); importing this package
without it raises :class:`~hashlib_ext.errors.MissingDependencyError`.
"""

from __future__ import annotations

from .deps import require

require()

from .auth import Token, load_token  # noqa: E402
from .config import ServiceConfig  # noqa: E402
from .limits import Limits  # noqa: E402

__all__ = ["Limits", "ServiceConfig", "Token", "create_app", "load_token", "serve"]


def create_app(config: ServiceConfig) -> object:
    """The ASGI application serving ``config`` (see :func:`.app.create_app`)."""
    from .app import create_app as build

    return build(config)


def serve(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8000,
          **options: object) -> None:
    """Serve until stopped (see :func:`.server.serve`)."""
    from .server import serve as run

    run(config, host, port, **options)  # type: ignore[arg-type]
