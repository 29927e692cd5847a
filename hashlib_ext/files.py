"""Finding image files: expand command-line paths and directories, lazily, in a fixed order.

A path given explicitly is always yielded, whatever its extension (hashing it reports any
problem). Directories are expanded to the image files they hold — only the top level, or
the whole tree with ``recursive=True`` — skipping files whose extension is not an image
extension, and hidden (dot) files and folders. Within a directory, entries are visited
in name order and a subdirectory's files come where its name sorts, so the output is
``sorted`` by path components
(deterministic on every file system). Symlinked directories are not followed while walking
(no cycles); symlinked files are.

:func:`open_regular` opens a data file (a hash list) only if it is a regular file: FIFOs,
devices, sockets and directories are refused before anything could block on them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

_FALLBACK_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".tif", ".tiff",
    ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".tga", ".jp2", ".j2k",
})
# Formats Pillow registers but cannot decode by itself: write-only (PDF, PALM, XV), stubs
# that need an outside handler (BUFR, GRIB, HDF5, WMF/EMF off Windows) or a program (EPS
# needs Ghostscript).
_NOT_DECODABLE = frozenset({"PDF", "PALM", "XV", "EPS", "MPEG", "BUFR", "GRIB", "HDF5", "WMF"})


def _register_plugins() -> None:
    """Register the optional decoders that add formats when installed: pillow-heif
    (HEIC/HEIF, and AVIF in its newer releases) and pillow-avif-plugin."""
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        pillow_heif.register_heif_opener()
        if hasattr(pillow_heif, "register_avif_opener"):
            pillow_heif.register_avif_opener()
    try:
        import pillow_avif  # type: ignore[import-not-found]  # noqa: F401  (registers itself)
    except ImportError:
        pass


def image_extensions() -> frozenset[str]:
    """Extensions (lower case, with the dot) of every format the installed Pillow, with
    pillow-heif / pillow-avif-plugin when installed, can decode. This one list decides which
    files a folder walk takes, in every command and in :mod:`hashlib_ext.datasets`."""
    from PIL import Image

    _register_plugins()
    Image.init()
    exts = {ext.lower() for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN and fmt not in _NOT_DECODABLE}
    return frozenset(exts) if exts else _FALLBACK_EXTENSIONS


IMAGE_EXTENSIONS = image_extensions()
"""Extensions (lower case) of the files taken from directories: see :func:`image_extensions`."""

OnError = Callable[[str, OSError], None]
OnSkip = Callable[[str], None]


def is_image_name(name: str, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> bool:
    """Whether ``name`` ends in one of ``extensions`` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in extensions


def _walk(
    directory: str, recursive: bool, extensions: frozenset[str], on_error: OnError | None,
    on_skip: OnSkip | None,
) -> Iterator[str]:
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        if on_error is None:
            raise
        on_error(directory, e)
        return
    for entry in entries:
        if entry.name.startswith("."):  # hidden files and folders (macOS '._x.jpg', '.git')
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            if recursive:
                yield from _walk(entry.path, recursive, extensions, on_error, on_skip)
        elif is_image_name(entry.name, extensions):
            yield entry.path
        elif on_skip is not None:
            on_skip(entry.path)


def iter_image_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    on_error: OnError | None = None,
    on_skip: OnSkip | None = None,
) -> Iterator[str]:
    """Yield image file paths from ``paths`` (files and directories), lazily.

    Files are yielded as given, even missing ones or ones with another extension, so the
    caller reports them. Directories yield their image files (see the module docstring);
    every other file met in a walk (not hidden dot-files) is passed to ``on_skip(path)``
    when given, so a command can say what it left out. A directory that cannot be listed
    raises ``OSError``, or is passed to ``on_error(path, error)`` when given.
    """
    exts = frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    for p in paths:
        path = os.fspath(p)
        if os.path.isdir(path):
            yield from _walk(path, recursive, exts, on_error, on_skip)
        else:
            yield path


def file_kind(mode: int) -> str | None:
    """What a ``st_mode`` describes when it is not a regular file ("FIFO", "directory", ...);
    None for a regular file."""
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO (named pipe)"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "special file"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for binary reading only if it is a regular file.

    A FIFO, device, socket or directory is refused before it is opened (``os.stat``), and
    again on the opened descriptor (``os.fstat``, non-blocking open), so a file swapped for a
    FIFO in between cannot make the read block. Raises ``FileNotFoundError`` for a missing
    file and ``OSError`` (errno ``EINVAL``, ``strerror`` saying what it is) for the others.
    """
    name = os.fspath(path)
    kind = file_kind(os.stat(name).st_mode)
    if kind is not None:
        raise OSError(errno.EINVAL, f"is a {kind}, not a regular file", name)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0)
    fd = os.open(name, flags)
    try:
        kind = file_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise OSError(errno.EINVAL, f"is a {kind}, not a regular file", name)
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
