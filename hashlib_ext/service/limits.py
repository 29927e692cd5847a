"""Caps on what a request may send: bytes per body (by endpoint), pixels per image,
hashes per query, and the time an image may take to decode.

The byte cap is enforced by :class:`BodyLimit`, an ASGI middleware: a declared
``Content-Length`` over the cap is refused before the body is read (413), and a body sent
without one (chunked) is counted as it arrives and refused the moment it passes the cap,
so an oversized upload is never held in memory whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import payload_too_large


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (the ``serve`` options of the same names)."""

    max_image_bytes: int = 32 << 20
    """Bytes of an image upload (/v1/hash, /v1/match, adding images)."""
    max_list_bytes: int = 256 << 20
    """Bytes of a hash-list upload or JSON body adding hashes."""
    max_json_bytes: int = 4 << 20
    """Bytes of any other JSON body (a match of hashes, bank creation, removal)."""
    max_pixels: int = 50_000_000
    """Pixels (width x height) of an image; larger ones are refused before decoding."""
    max_query_hashes: int = 10_000
    """Hashes in one /v1/match request."""
    max_matches: int = 1000
    """Matches returned per query (nearest first)."""
    decode_timeout: float = 10.0
    """Seconds an image may take (waiting for a free decoder included)."""

    def body_cap(self, method: str, path: str) -> int:
        """The byte cap of a request to ``path``."""
        if method in ("GET", "HEAD", "OPTIONS"):
            return 0
        if path.endswith("/hashes"):
            return self.max_list_bytes
        if path in ("/v1/hash", "/v1/match") or path.endswith("/images"):
            return self.max_image_bytes
        return self.max_json_bytes


class BodyLimit:
    """ASGI middleware enforcing :meth:`Limits.body_cap` on every HTTP request."""

    def __init__(self, app: Any, limits: Limits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.limits.body_cap(scope["method"], scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > cap:
                    await _refuse(send, 413, "PayloadTooLarge",
                                  f"request body of {declared} bytes is larger than the "
                                  f"{cap}-byte limit of this endpoint")
                    return
                if declared < 0:
                    await _refuse(send, 400, "BadRequest", "invalid Content-Length")
                    return
                break
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise payload_too_large(f"request body larger than {cap} bytes")
            return message

        await self.app(scope, counted, send)


async def _refuse(send: Any, status: int, kind: str, message: str) -> None:
    import json

    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
