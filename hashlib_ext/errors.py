"""Typed errors. Every error raised on bad input is a :class:`HashlibExtError`."""

from __future__ import annotations


class HashlibExtError(Exception):
    """Base class of every error hashlib_ext raises on bad input or bad files."""


class ImageDecodeError(HashlibExtError):
    """The input could not be read or decoded as an image (missing, empty, truncated, corrupt)."""


class UnsupportedImageError(HashlibExtError):
    """The input decoded, but is of a kind we cannot hash (unknown mode, bad array shape/dtype)."""


class ImageTooLargeError(HashlibExtError):
    """The image declares more pixels than the configured limit (decompression-bomb guard)."""


class HashFormatError(HashlibExtError, ValueError):
    """A hash string, hash list or code array is malformed (wrong length, non-hex, wrong width)."""


class HashListOutputError(HashFormatError):
    """A hash list cannot be written in the chosen format (ids or metadata in hex lines, a
    name Parquet cannot store): a problem of the output, not of the input being read."""


class AlgorithmMismatchError(HashlibExtError, ValueError):
    """Two hashes (or a hash and an index) of different algorithms or widths were combined."""


class UnknownAlgorithmError(HashlibExtError, ValueError):
    """An algorithm name that the hasher registry does not know; the message lists the
    known names."""


class IndexFileError(HashlibExtError):
    """An index file is truncated, tampered with, of an unknown version or otherwise unreadable."""


class ShardChecksumError(IndexFileError):
    """A shard file of a sharded index is missing, or is not the file its manifest names
    (size or SHA-256 differ, or its content fails its own checksum). ``shard`` is its path
    or URL."""

    def __init__(self, message: str, shard: str = ""):
        super().__init__(message)
        self.shard = shard

    def __reduce__(self) -> tuple[object, ...]:  # keeps ``shard`` across dask workers
        return (type(self), (str(self), self.shard))


class WorkerCrashedError(HashlibExtError):
    """A worker process died while hashing this input (killed, out of memory, crashed)."""


def describe(src: object, limit: int = 80) -> str:
    """A short printable name for an input, used in error messages."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    name = getattr(src, "filename", None) or getattr(src, "name", None)
    if name and not isinstance(src, (str,)):
        src = name
    if hasattr(src, "shape") and hasattr(src, "dtype"):
        return f"<array shape={tuple(src.shape)} dtype={src.dtype}>"
    text = str(src)
    return text if len(text) <= limit else "..." + text[-(limit - 3):]  # keep the file name


class TransformSpecError(HashlibExtError, ValueError):
    """A transform spec string names an unknown transform or has a bad parameter."""


class DatasetError(HashlibExtError):
    """A dataset is missing, empty or unreadable."""


class DatasetDownloadError(DatasetError):
    """A dataset archive could not be fetched (no network, HTTP error, interrupted transfer)."""


class ChecksumMismatchError(DatasetDownloadError):
    """A downloaded archive does not have the expected size or checksum."""


class UnsafeArchiveError(DatasetError):
    """An archive holds a member that would be written outside the destination (zip-slip)."""


class MissingDependencyError(HashlibExtError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class ServiceError(HashlibExtError):
    """A request the match service (``hashlib-ext serve``) refuses or cannot serve,
    answered with the HTTP ``status``, a JSON body naming ``kind``, and ``headers``."""

    def __init__(self, message: str, status: int = 400, kind: str = "BadRequest",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.headers = dict(headers or {})


class UsageError(ValueError):
    """A command-line mistake found after the arguments were parsed (options that do not go
    together, an ``--output`` that cannot be written). Raised inside the ``hashlib-ext``
    commands only, which turn it into one line on stderr and exit status 2."""


class Interrupted(KeyboardInterrupt):
    """A ``hashlib-ext`` command was stopped by a signal (SIGINT or SIGTERM); ``signum``
    says which, ``exit_code`` is the status the command ends with (128 + signum)."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
