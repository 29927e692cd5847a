"""The errors the service answers with, and the HTTP status of every library error.

Every error leaves the service as ``{"error": {"type": ..., "message": ...}}`` with a 4xx
status, or 5xx for a fault of the server itself (never with a traceback). The service's
own refusals are :class:`~hashlib_ext.errors.ServiceError` instances (the one error class
of hashlib_ext.errors that carries a status), made by the functions below; library errors
map to statuses in :func:`status_of`.
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
    ServiceError,
    UnknownAlgorithmError,
    UnsupportedImageError,
    WorkerCrashedError,
)

__all__ = ["ServiceError", "bad_request", "conflict", "forbidden", "not_found",
           "payload_too_large", "status_of", "unauthorized", "unavailable",
           "unsupported_media_type"]


def bad_request(message: str) -> ServiceError:
    """Malformed JSON, parameters or hash lists (400)."""
    return ServiceError(message, 400, "BadRequest")


def unauthorized(message: str) -> ServiceError:
    """No or a wrong bearer token (401)."""
    return ServiceError(message, 401, "Unauthorized",
                        {"WWW-Authenticate": 'Bearer realm="hashlib-ext"'})


def forbidden(message: str) -> ServiceError:
    """Writes on a server started without a token (403)."""
    return ServiceError(message, 403, "Forbidden")


def not_found(message: str) -> ServiceError:
    """An unknown bank or route (404)."""
    return ServiceError(message, 404, "NotFound")


def conflict(message: str) -> ServiceError:
    """A bank that exists already, or an operation the bank cannot do (409)."""
    return ServiceError(message, 409, "Conflict")


def payload_too_large(message: str) -> ServiceError:
    """A body over the byte cap (413)."""
    return ServiceError(message, 413, "PayloadTooLarge")


def unsupported_media_type(message: str) -> ServiceError:
    """A body of a content type the endpoint does not take (415)."""
    return ServiceError(message, 415, "UnsupportedMediaType")


def unavailable(message: str, kind: str = "Unavailable", retry_after: int = 1
                ) -> ServiceError:
    """Not ready yet, shutting down, every decoder busy or a decode over its time (503)."""
    return ServiceError(message, 503, kind, {"Retry-After": str(retry_after)})


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
