"""Errors the service answers with: an HTTP status, a type name and a message.

Every error leaves the service as ``{"error": {"type": ..., "message": ...}}`` with a 4xx
status, or 5xx for a fault of the server itself (never with a traceback). Library errors
(:mod:`hashlib_ext.errors`) map to statuses in :func:`status_of`.
"""

from __future__ import annotations

from ..errors import (
    AlgorithmMismatchError,
    HashFormatError,
    HashlibExtError,
    ImageDecodeError,
    ImageTooLargeError,
    IndexFileError,
    MissingDependencyError,
    UnknownAlgorithmError,
    UnsupportedImageError,
    WorkerCrashedError,
)


class ServiceError(HashlibExtError):
    """An error answered with ``status`` and a JSON body naming ``kind``."""

    status = 400
    kind = "BadRequest"

    def __init__(self, message: str, *, status: int | None = None, kind: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status
        if kind is not None:
            self.kind = kind
        self.headers = headers or {}


class BadRequest(ServiceError):
    """Malformed JSON, parameters or hash lists (400)."""


class Unauthorized(ServiceError):
    """No or a wrong bearer token (401)."""

    status = 401
    kind = "Unauthorized"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="hashlib-ext"'})


class Forbidden(ServiceError):
    """Writes on a server started without a token (403)."""

    status = 403
    kind = "Forbidden"


class NotFound(ServiceError):
    """An unknown bank or route (404)."""

    status = 404
    kind = "NotFound"


class Conflict(ServiceError):
    """A bank that exists already, or an operation the bank cannot do (409)."""

    status = 409
    kind = "Conflict"


class PayloadTooLarge(ServiceError):
    """A body over the byte cap, or an image over the pixel cap (413)."""

    status = 413
    kind = "PayloadTooLarge"


class UnsupportedMediaType(ServiceError):
    """A body of a content type the endpoint does not take (415)."""

    status = 415
    kind = "UnsupportedMediaType"


class Unavailable(ServiceError):
    """Not ready yet, shutting down, every decoder busy or a decode over its time (503)."""

    status = 503
    kind = "Unavailable"

    def __init__(self, message: str, *, kind: str | None = None, retry_after: int = 1):
        super().__init__(message, kind=kind, headers={"Retry-After": str(retry_after)})


_LIBRARY_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (ImageTooLargeError, 413),
    (ImageDecodeError, 422),
    (UnsupportedImageError, 422),
    (WorkerCrashedError, 422),
    (UnknownAlgorithmError, 400),
    (AlgorithmMismatchError, 400),
    (HashFormatError, 400),
    (IndexFileError, 500),
    (MissingDependencyError, 501),
)


def status_of(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and error type name an exception is answered with."""
    if isinstance(exc, ServiceError):
        return exc.status, exc.kind
    for cls, status in _LIBRARY_STATUS:
        if isinstance(exc, cls):
            return status, type(exc).__name__
    if isinstance(exc, HashlibExtError):
        return 400, type(exc).__name__
    return 500, "InternalError"
