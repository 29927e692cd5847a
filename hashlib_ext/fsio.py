"""Files by local path or fsspec URL, for sharded indexes and Parquet partitions.

A location is a local path (``/data/index``, ``file:///data/index``) or a URL that fsspec
understands (``s3://bucket/index``, ``gcs://...``, ``memory://...``) when the matching
fsspec backend (s3fs, gcsfs) is installed. Local files are written atomically
(:mod:`hashlib_ext.atomic`); a remote object is uploaded whole, which object stores make
visible at once or not at all. fsspec comes with the ``dask`` extra and is imported only
for URLs, so local sharded indexes work without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from .atomic import atomic_path
from .errors import MissingDependencyError

_LOCAL_SCHEMES = ("file://", "local://")


def is_remote(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a URL other than a local ``file://`` one."""
    text = os.fspath(location)
    return "://" in text and not text.startswith(_LOCAL_SCHEMES)


def local_path(location: str | os.PathLike[str]) -> str:
    """A local location as a plain path (``file://`` prefix removed)."""
    text = os.fspath(location)
    for scheme in _LOCAL_SCHEMES:
        if text.startswith(scheme):
            return text[len(scheme):]
    return text


def join(base: str | os.PathLike[str], name: str) -> str:
    """``name`` inside the folder ``base`` (a path or a URL)."""
    text = os.fspath(base)
    if is_remote(text):
        return text.rstrip("/") + "/" + name
    return os.path.join(local_path(text), name)


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path inside it."""
    try:
        import fsspec  # type: ignore[import-untyped]
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{url}: URLs need fsspec: pip install 'hashlib-ext[dask]'") from e
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        raise MissingDependencyError(f"{url}: {e}") from e


def make_folder(location: str) -> None:
    """Create the folder ``location`` (and its parents) if it is missing."""
    if is_remote(location):
        fs, path = filesystem(location)
        fs.makedirs(path, exist_ok=True)
    else:
        os.makedirs(local_path(location), exist_ok=True)


def exists(location: str) -> bool:
    if is_remote(location):
        fs, path = filesystem(location)
        return bool(fs.exists(path))
    return os.path.exists(local_path(location))


def read_bytes(location: str, limit: int) -> bytes:
    """The content of a file of at most ``limit`` bytes (``ValueError`` if larger;
    ``OSError``/``FileNotFoundError`` if it cannot be read)."""
    if is_remote(location):
        fs, path = filesystem(location)
        with fs.open(path, "rb") as f:
            data = f.read(limit + 1)
    else:
        from .files import open_regular

        with open_regular(local_path(location)) as f:
            data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{location}: larger than {limit} bytes")
    return bytes(data)


def write_bytes(location: str, data: bytes) -> None:
    """Replace the file ``location`` with ``data`` atomically."""
    if is_remote(location):
        fs, path = filesystem(location)
        fs.pipe_file(path, data)
        return
    with atomic_path(local_path(location)) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_file(location: str, writer: Callable[[str], None]) -> None:
    """Have ``writer(local_path)`` write a file, which then becomes ``location``: for a local
    location ``writer`` writes it in place (it must write atomically itself); for a URL it
    writes a temporary file that is uploaded."""
    if not is_remote(location):
        writer(local_path(location))
        return
    fs, path = filesystem(location)
    with tempfile.TemporaryDirectory(prefix="hashlib_ext-up-") as tmp:
        local = os.path.join(tmp, os.path.basename(path) or "file")
        writer(local)
        fs.put_file(local, path)


@contextlib.contextmanager
def fetched(location: str) -> Iterator[str]:
    """A local path holding the file ``location``: the file itself when local, else a
    temporary copy (removed afterwards)."""
    if not is_remote(location):
        yield local_path(location)
        return
    fs, path = filesystem(location)
    with tempfile.TemporaryDirectory(prefix="hashlib_ext-get-") as tmp:
        local = os.path.join(tmp, os.path.basename(path) or "file")
        with fs.open(path, "rb") as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        yield local


def remove(location: str) -> None:
    """Delete a file; a missing one is not an error."""
    with contextlib.suppress(FileNotFoundError):
        if is_remote(location):
            fs, path = filesystem(location)
            fs.rm_file(path)
        else:
            os.unlink(local_path(location))


def list_names(folder: str) -> list[str]:
    """Names of the files directly inside ``folder`` (sorted; empty if it is missing)."""
    if is_remote(folder):
        fs, path = filesystem(folder)
        try:
            entries = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(os.path.basename(str(e).rstrip("/")) for e in entries)
    try:
        return sorted(e.name for e in os.scandir(local_path(folder)) if e.is_file())
    except FileNotFoundError:
        return []
