"""The hot path: ``POST /v1/match`` with a JSON body, answered without the framework.

A match of hashes costs a few hundred microseconds of search; going through FastAPI's
routing, request objects and exception middleware would add about as much again. This
ASGI middleware answers exactly that request (method, path and a JSON content type) itself:
it reads the body under the same byte cap, calls the same :func:`.routes_match.match_hashes`
as the routed endpoint (which the OpenAPI schema documents, and which still answers image
uploads to the same path), maps errors to the same JSON bodies, and counts the request in
the same metrics. Everything else goes on to the application.
"""

from __future__ import annotations

import time
from typing import Any

from .errors import bad_request, payload_too_large, status_of
from .http import dumps
from .routes_match import match_hashes
from .state import Service

_PATH = "/v1/match"
_JSON_TYPES = (b"application/json",)


def _is_json(headers: list[tuple[bytes, bytes]]) -> tuple[bool, int]:
    """(JSON content type, declared length or -1)."""
    json_body, length = False, -1
    for name, value in headers:
        if name == b"content-type":
            base = value.split(b";")[0].strip().lower()
            json_body = base in _JSON_TYPES or base.endswith(b"+json")
        elif name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = -2
    return json_body, length


class FastMatch:
    """ASGI middleware answering JSON ``POST /v1/match`` directly (see the module doc)."""

    def __init__(self, app: Any, service: Service):
        self.app = app
        self.service = service
        metrics = service.metrics
        self._ok = metrics.requests.labels("POST", _PATH, "200")  # looked up once
        self._latency = metrics.latency.labels(_PATH)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != _PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        json_body, length = _is_json(scope["headers"])
        if not json_body or length < -1:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 200
        try:
            raw = await _read(receive, self.service.config.limits.max_image_bytes, length)
            payload = dumps(await match_hashes(self.service, raw))
            headers: list[tuple[bytes, bytes]] = []
        except Exception as e:  # noqa: BLE001 - every error answers JSON, as elsewhere
            status, kind = status_of(e)
            fault = kind == "InternalError" or status == 500
            message = "the server could not complete the request" if fault else str(e)
            if fault:
                import logging

                logging.getLogger("hashlib_ext.service").exception("POST /v1/match failed")
            payload = dumps({"error": {"type": kind, "message": message}})
            headers = [(k.lower().encode(), v.encode())
                       for k, v in getattr(e, "headers", {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()), *headers]})
        await send({"type": "http.response.body", "body": payload})
        counter = self._ok if status == 200 else \
            self.service.metrics.requests.labels("POST", _PATH, str(status))
        counter.inc()
        self._latency.observe(time.perf_counter() - started)


async def _read(receive: Any, cap: int, declared: int) -> bytes:
    if declared > cap:
        raise payload_too_large(f"request body of {declared} bytes is larger than the "
                              f"{cap}-byte limit of this endpoint")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            raise bad_request("the request body ended early")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise payload_too_large(f"request body larger than {cap} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
