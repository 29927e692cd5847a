"""The ASGI application: routes, error handling, health, metrics and the lifespan.

Middleware, outermost first: the JSON match fast path (:mod:`.fastpath`), request metrics
(count and time every request), the body byte cap (:mod:`.limits`), then FastAPI. Every
error becomes a JSON body
``{"error": {"type": ..., "message": ...}}`` (:mod:`.errors` maps library errors to
statuses); an unexpected exception is a 500 with a generic message, its traceback only in
the server's log.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..errors import HashlibExtError
from . import routes_banks, routes_match
from .config import ServiceConfig
from .errors import status_of
from .fastpath import FastMatch
from .http import json_response
from .limits import BodyLimit
from .metrics import CONTENT_TYPE, RequestMetrics
from .state import Service
from .store import BankStore

log = logging.getLogger("hashlib_ext.service")


def error_response(status: int, kind: str, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": {"type": kind, "message": message}}, status, headers)


async def _library_error(request: Request, exc: Exception) -> Response:
    status, kind = status_of(exc)
    if kind == "InternalError" or status == 500:
        log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(status, kind, "the server could not complete the request")
    return error_response(status, kind, str(exc), getattr(exc, "headers", None))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kinds = {404: "NotFound", 405: "MethodNotAllowed"}
    return error_response(exc.status_code, kinds.get(exc.status_code, "HTTPError"),
                          str(exc.detail), getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(400, "BadRequest", f"{where}: {first.get('msg', 'invalid')}")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(500, "InternalError", "the server could not complete the request")


def create_app(config: ServiceConfig, store: BankStore | None = None) -> FastMatch:
    """The ASGI app serving the banks of ``config.root`` (opened here unless ``store``,
    an opened :class:`BankStore`, is given): the FastAPI application (``.app``) behind the
    JSON match fast path."""
    if store is None:
        store = BankStore(config.root, compact_bytes=config.compact_bytes,
                          compact_removals=config.compact_removals)
        store.open()
    service = Service(config, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.startup()
        try:
            yield
        finally:
            await service.shutdown()

    app = FastAPI(
        title="hashlib-ext match service",
        version=__version__,
        description="Perceptual-hash matching against banks of known hashes: hash images, "
                    "match images or hashes, manage banks. Writes need a bearer token.",
        lifespan=lifespan,
        docs_url="/docs", redoc_url=None,
    )
    app.state.service = service
    app.add_exception_handler(HashlibExtError, _library_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(routes_match.router)
    app.include_router(routes_banks.router)

    @app.get("/healthz", tags=["health"], summary="The process answers (no token needed)")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", tags=["health"],
             summary="Banks loaded and decoders warm: 200, else 503")
    async def readyz() -> Response:
        if service.ready:
            return json_response({"status": "ready", "banks": len(service.store.banks)})
        return error_response(503, "NotReady", "starting or shutting down",
                              {"Retry-After": "1"})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (text format)")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    app.add_middleware(BodyLimit, limits=config.limits)
    app.add_middleware(RequestMetrics, metrics=service.metrics)
    # The outermost layer, around FastAPI's own (error, telemetry and body-limit) layers,
    # which the hot path would otherwise pass through twice (request and response).
    return FastMatch(app, service)
