"""The optional dependencies of the match service, checked in one place.

The service needs FastAPI, uvicorn and prometheus-client (the ``serve`` extra). Nothing
outside :mod:`hashlib_ext.service` imports them, and the ``serve`` command imports this
package only when it runs, so the rest of hashlib_ext works without the extra.
"""

from __future__ import annotations

import importlib.util

from ..errors import MissingDependencyError

REQUIRED = ("fastapi", "uvicorn", "prometheus_client", "multipart")
"""Import names the service cannot run without (``multipart`` is python-multipart)."""
INSTALL_HINT = "pip install 'hashlib-ext[serve]'"


def missing() -> list[str]:
    """The import names of :data:`REQUIRED` that are not installed."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def require() -> None:
    """Raise :class:`MissingDependencyError` naming the extra when any is missing."""
    gone = missing()
    if gone:
        raise MissingDependencyError(
            f"the match service needs {', '.join(gone)}: {INSTALL_HINT}")


def robust_missing() -> str | None:
    """Why robust banks cannot be used here (OpenCV missing), or None when they can."""
    if importlib.util.find_spec("cv2") is None:
        return "robust banks need OpenCV: pip install 'hashlib-ext[robust]'"
    return None
