"""What runs in a decoding worker process: decode an uploaded image, hash or describe it.

Uploaded images are decoded here, never in the server process, so that a decoder that
crashes, loops or eats memory takes down one worker (which :mod:`.decode` replaces), not
the server. Each worker serves jobs from a pipe, one at a time, until the pipe closes (the
server ended, even by SIGKILL) and then exits.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import numpy as np

JOB_HASH = "hash"
JOB_DESCRIBE = "describe"
OK = "ok"
FAILED = "error"


def hash_upload(data: bytes, algorithms: list[str], dihedral: bool,
                max_pixels: int) -> dict[str, Any]:
    """Hashes of the image ``data`` for each algorithm (one decode): per algorithm the
    code's bytes and the quality (None where the algorithm has none); with ``dihedral``,
    also the 8 PDQ rotation/flip codes (``(8, 32)`` bytes) and their qualities."""
    from ..hash import Hash, HashArray
    from ..hashers import hash_image
    from ..imageio import load

    image = load(data, max_pixels=max_pixels)
    out: dict[str, Any] = {"width": image.width, "height": image.height, "hashes": {}}
    if algorithms:
        got = hash_image(image, algorithms)
        assert isinstance(got, dict)
        for name, h in got.items():
            assert isinstance(h, Hash)
            out["hashes"][name] = (h.to_bytes(), h.quality)
    if dihedral:
        arr = hash_image(image, "pdq", dihedral=True)
        assert isinstance(arr, HashArray)
        q = arr.qualities
        out["dihedral"] = (np.ascontiguousarray(arr.codes).tobytes(),
                           None if q is None else [int(v) for v in q])
    return out


def describe_upload(data: bytes, query: bool, max_pixels: int) -> Any:
    """A robust-matching descriptor of the image ``data`` (index or query side)."""
    from ..descriptor import describe

    return describe(data, query=query, max_pixels=max_pixels)


JOBS: dict[str, Callable[..., Any]] = {JOB_HASH: hash_upload, JOB_DESCRIBE: describe_upload}


WARM_SHAPES = ((640, 480, "RGB", "JPEG"), (480, 640, "RGB", "JPEG"),
               (2400, 1800, "RGB", "JPEG"), (1800, 2400, "L", "PNG"), (640, 480, "L", "PNG"),
               (128, 96, "RGB", "PNG"), (32, 40, "RGB", "PNG"), (300, 1200, "RGB", "JPEG"))
"""Images hashed before a worker takes jobs: landscape, portrait, large and small, colour
and grey, so that every compiled resampling pass (their choice depends on the image's
shape and mode) is compiled or loaded from numba's cache at start. Compiling one on a cold
cache takes seconds; a first upload would otherwise spend them against its deadline, and a
worker stopped at the deadline in the middle of compiling never writes the cache, so the
next upload of that shape would time out too."""


def warm() -> None:
    """Hash :data:`WARM_SHAPES` with every algorithm (and PDQ's rotations/flips) once."""
    import io

    from PIL import Image

    from ..hashers import algorithms

    for w, h, mode, fmt in WARM_SHAPES:
        ramp = (np.add.outer(np.arange(h), np.arange(w)) % 251).astype(np.uint8)
        im = Image.fromarray(ramp).convert(mode)
        buf = io.BytesIO()
        im.save(buf, fmt)
        try:
            hash_upload(buf.getvalue(), algorithms(), True, 1 << 24)
        except Exception:  # noqa: BLE001 - warming is an optimisation only
            pass


def main(conn: Any) -> None:
    """Serve jobs ``(kind, args)`` from ``conn``; answer ``("ok", result)`` or
    ``("error", error type name, message)``. Ends when the pipe closes."""
    from ..errors import HashlibExtError, ImageDecodeError, describe

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the server's
    warm()
    conn.send((OK, "ready"))
    while True:
        try:
            kind, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[Any, ...] = (OK, JOBS[kind](*args))
        except HashlibExtError as e:
            reply = (FAILED, type(e).__name__, str(e))
        except MemoryError:
            reply = (FAILED, "ImageTooLargeError",
                     f"{describe(args[0])}: out of memory while decoding")
        except Exception as e:  # noqa: BLE001 - a decoder's own error: the input's fault
            reply = (FAILED, ImageDecodeError.__name__,
                     f"{describe(args[0])}: {type(e).__name__}: {e}")
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
