"""Image datasets for tests and benchmarks, and a verified, resumable COCO download.

A :class:`Dataset` yields ``(id, source)`` pairs (``source`` is a path or bytes that
``hashlib_ext.imageio.load`` accepts) and knows its name and licence. Datasets:

* :func:`bundled` - the 32 COCO images shipped in the source checkout (``datasets/coco-mini``);
* :func:`folder` - any folder of images (recursive);
* :func:`coco` - an extracted COCO 2017 split (e.g. ``val2017/``);
* :func:`shared_coco_sample` - ``../shared/datasets/coco-sample`` next to the checkout, if there.

:func:`get` resolves a name or path as the CLI does. :func:`download` fetches a known archive
(COCO val2017) over http(s) only, with HTTP range resume and at most the archive's expected
size, checks its checksum, then extracts it into a temporary folder (refusing members that
would land outside it, and more data than the archive can plausibly hold); only once every
check has passed does the extracted folder replace an existing one.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import os
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import (
    ChecksumMismatchError,
    DatasetDownloadError,
    DatasetError,
    UnsafeArchiveError,
)
from .files import IMAGE_EXTENSIONS

__all__ = [
    "ARCHIVES",
    "Archive",
    "Dataset",
    "bundled",
    "coco",
    "default_data_dir",
    "download",
    "extract_zip",
    "folder",
    "get",
    "known",
    "shared_coco_sample",
]

IMAGE_SUFFIXES = IMAGE_EXTENSIONS
"""The folder walk's extension list (one list for the whole package: files.IMAGE_EXTENSIONS)."""
COCO_LICENCE = (
    "COCO 2017 images: Flickr photographs under per-image Creative Commons licences (see "
    "images[].license in the COCO annotations, https://cocodataset.org/#termsofuse); "
    "COCO annotations CC BY 4.0"
)

_PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DIR = _PACKAGE_DIR / "data" / "coco-mini"
"""The bundled images: package data, present in every installation."""
_CHECKOUT = _PACKAGE_DIR.parent  # the source checkout when installed editable / run in place


@dataclass(frozen=True)
class Dataset:
    """A fixed, ordered list of images: ``(id, source)`` pairs plus a name and a licence."""

    name: str
    licence: str
    items: tuple[tuple[str, Path | bytes], ...]
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[tuple[str, Path | bytes]]:
        return iter(self.items)

    def ids(self) -> list[str]:
        return [i for i, _ in self.items]

    def sources(self) -> list[Path | bytes]:
        return [s for _, s in self.items]

    def head(self, n: int) -> Dataset:
        """The first ``n`` items (datasets are sorted, so this is deterministic)."""
        return Dataset(self.name, self.licence, self.items[: max(0, n)], self.root)

    def __repr__(self) -> str:
        where = f", root={str(self.root)!r}" if self.root else ""
        return f"Dataset({self.name!r}, {len(self)} images{where})"


def _image_files(root: Path, recursive: bool) -> list[Path]:
    pattern = root.rglob("*") if recursive else root.glob("*")
    files = [p for p in pattern
             if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def folder(path: str | os.PathLike[str], recursive: bool = True, *, name: str | None = None,
           licence: str = "unknown (your own images)") -> Dataset:
    """Every image file under ``path`` (by suffix), sorted; ids are paths relative to it."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {str(root)!r} does not exist or is not a folder")
    files = _image_files(root, recursive)
    if not files:
        raise DatasetError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in "
                           f"{str(root)!r}" + ("" if recursive else " (not recursive)"))
    items = tuple((p.relative_to(root).as_posix(), p) for p in files)
    return Dataset(name or root.name, licence, items, root)


def bundled(verify: bool = False) -> Dataset:
    """The 32 COCO 2017 images shipped inside the package (``hashlib_ext/data/coco-mini``,
    also reachable as ``datasets/coco-mini`` in the source checkout), so that ``pip install
    hashlib-ext`` then ``hashlib-ext bench`` works anywhere. ``$HASHLIB_EXT_BUNDLED`` points
    elsewhere (a folder with the same ``MANIFEST.csv`` layout).
    ``verify=True`` checks each file's SHA-256 against ``MANIFEST.csv``.
    """
    root = Path(os.environ.get("HASHLIB_EXT_BUNDLED", BUNDLED_DIR))
    manifest = root / "MANIFEST.csv"
    if not manifest.is_file():
        raise DatasetError(
            f"bundled images not found at {str(root)!r} (MANIFEST.csv missing): the "
            "installation is incomplete or HASHLIB_EXT_BUNDLED points to the wrong folder. "
            "Reinstall hashlib-ext, use a folder of your own images (--dataset DIR), or run "
            "'hashlib-ext datasets download coco-val2017 --dir D'"
        )
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    items = []
    for row in rows:
        path = root / row["file"]
        if not path.is_file():
            raise DatasetError(f"bundled image {str(path)!r} listed in MANIFEST.csv is missing")
        if verify:
            digest = _file_digest(path, "sha256")
            if digest != row["sha256"]:
                raise DatasetError(f"bundled image {str(path)!r} has SHA-256 {digest}, "
                                   f"MANIFEST.csv says {row['sha256']}")
        items.append((row["file"], path))
    return Dataset("bundled", COCO_LICENCE, tuple(items), root)


def coco(path: str | os.PathLike[str], split: str = "val2017") -> Dataset:
    """An extracted COCO split: ``path`` is the split folder itself or the folder holding it."""
    root = Path(path).expanduser()
    if (root / split).is_dir():
        root = root / split
    hint = f"get it with 'hashlib-ext datasets download coco-{split} --dir DIR'"
    if not root.is_dir():
        raise DatasetError(f"COCO folder {str(root)!r} does not exist; {hint}")
    try:
        return folder(root, recursive=False, name=f"coco-{split}", licence=COCO_LICENCE)
    except DatasetError as e:
        raise DatasetError(f"{e}; {hint}") from None


def shared_coco_sample() -> Dataset:
    """``../shared/datasets/coco-sample`` beside the checkout (256 COCO images), if present."""
    root = Path(os.environ.get("HASHLIB_EXT_SHARED",
                               _CHECKOUT.parent / "shared" / "datasets")) / "coco-sample"
    if not root.is_dir():
        raise DatasetError(f"coco-sample not found at {str(root)!r} (optional shared data; "
                           "set HASHLIB_EXT_SHARED to the folder holding coco-sample/)")
    return folder(root, recursive=True, name="coco-sample", licence=COCO_LICENCE)


def default_data_dir() -> Path:
    """Where downloads go by default: ``$HASHLIB_EXT_DATA`` or ``~/.cache/hashlib-ext``."""
    env = os.environ.get("HASHLIB_EXT_DATA")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hashlib-ext"


def get(name_or_path: str | os.PathLike[str] | None = None) -> Dataset:
    """Resolve a dataset as the CLI's ``--dataset`` does.

    ``None``/``"bundled"``: the bundled images; ``"coco-sample"``: the shared sample;
    ``"coco-val2017"``: a download in :func:`default_data_dir`; ``"coco-val2017:DIR"``: an
    extracted val2017 in DIR; anything else: a folder of images (recursive).
    """
    if name_or_path is None or str(name_or_path) == "bundled":
        return bundled()
    text = str(name_or_path)
    if text == "coco-sample":
        return shared_coco_sample()
    if text == "coco-val2017" or text.startswith("coco-val2017:"):
        where = text.partition(":")[2] or default_data_dir() / "coco-val2017"
        return coco(where, "val2017")
    path = Path(text).expanduser()
    if path.is_dir():
        return folder(path)
    raise DatasetError(
        f"unknown dataset {text!r}: use bundled, coco-sample, coco-val2017, "
        "coco-val2017:DIR or the path of a folder of images")


# -- known datasets -----------------------------------------------------------------------

@dataclass(frozen=True)
class Archive:
    """A downloadable archive: where it is, how big, its checksums, what it extracts to."""

    name: str
    url: str
    size: int | None
    md5: str | None
    sha256: str | None
    folder: str  # the top folder the archive extracts to
    licence: str
    description: str


ARCHIVES: dict[str, Archive] = {
    "coco-val2017": Archive(
        name="coco-val2017",
        url="http://images.cocodataset.org/zips/val2017.zip",
        # The COCO site publishes no checksum. This MD5 is built into several independent
        # COCO loaders and is what we verify; the size (one third-party record) only sizes
        # the progress bar. See docs/datasets.md.
        size=815_585_330,
        md5="442b8da7639aecaf257c1dceb8ba8c80",
        sha256=None,
        folder="val2017",
        licence=COCO_LICENCE,
        description="COCO 2017 validation images: 5000 JPEGs, 815.6 MB zip",
    ),
}


def known() -> list[dict[str, object]]:
    """The datasets ``hashlib-ext datasets list`` shows: name, images, licence, location."""
    rows: list[dict[str, object]] = []

    def row(name: str, description: str, licence: str, load, where: str) -> None:
        try:
            ds = load()
            rows.append({"name": name, "description": description, "licence": licence,
                         "images": len(ds), "location": str(ds.root), "present": True})
        except DatasetError:
            rows.append({"name": name, "description": description, "licence": licence,
                         "images": None, "location": where, "present": False})

    row("bundled", "32 COCO 2017 images shipped with the package",
        COCO_LICENCE, bundled, str(BUNDLED_DIR))
    row("coco-sample", "256 COCO 2017 images in ../shared/datasets (optional)", COCO_LICENCE,
        shared_coco_sample, str(_CHECKOUT.parent / "shared" / "datasets" / "coco-sample"))
    for a in ARCHIVES.values():
        where = default_data_dir() / a.name
        row(a.name, f"{a.description}; download: hashlib-ext datasets download {a.name} "
            "--dir DIR", a.licence, lambda w=where, f=a.folder: coco(w, f), str(where))
    return rows


# -- download -----------------------------------------------------------------------------

def _file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _progress_bar(enabled: bool, total: int | None, initial: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, file=sys.stderr, leave=True)


_SCHEMES = ("http", "https")
MAX_SIZE_SLACK = 1.05
"""A download may be at most this times the archive's recorded size (the record is a third
party's, so a little slack; a server sending more is refused, not followed)."""
MAX_EXTRACT_RATIO = 4
"""The files of an archive may declare at most this times the archive's own size (with a
64 MiB floor): more is a zip bomb, refused before anything is written."""
MAX_MEMBERS = 1_000_000
"""Most members an archive may list."""


def _check_url(url: str) -> None:
    """Only http(s) URLs are fetched: file://, ftp:// and the rest are refused at once."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        raise DatasetDownloadError(
            f"refusing to download {url!r}: only http:// and https:// URLs are supported "
            f"(got {scheme + '://' if scheme else 'no scheme'})")


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s) URLs."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        _check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    """An opener that speaks http(s) only (no file:, ftp: or data: handlers), honouring
    proxy settings from the environment."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(),
                    urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(),
                    urllib.request.HTTPDefaultErrorHandler(), _HttpOnlyRedirects(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _too_big(url: str, part: Path, got: int, cap: int) -> ChecksumMismatchError:
    part.unlink(missing_ok=True)
    return ChecksumMismatchError(
        f"{url}: the server sends {got} bytes or more, but the archive should be at most "
        f"{cap} bytes; the download was deleted")


def _fetch(url: str, part: Path, *, expected_size: int | None, progress: bool,
           timeout: float, chunk_size: int, max_size: int | None = None) -> None:
    """Download ``url`` into ``part``, resuming from its current size with an HTTP Range
    request. A server that ignores Range (200 instead of 206) restarts the file cleanly.
    ``expected_size`` sizes the progress bar when the server sends no length; ``max_size``
    caps the file: a larger Content-Length is refused before any byte is written, and a
    body that runs past it is cut off (:class:`ChecksumMismatchError`, the part deleted)."""
    _check_url(url)
    offset = part.stat().st_size if part.exists() else 0
    if max_size is not None and offset > max_size:
        raise _too_big(url, part, offset, max_size)
    request = urllib.request.Request(url, headers={"User-Agent": "hashlib-ext"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    retry = {"expected_size": expected_size, "progress": progress, "timeout": timeout,
             "chunk_size": chunk_size, "max_size": max_size}
    try:
        response = _opener().open(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # range not satisfiable: complete already, or not a prefix
            if e.headers.get("Content-Range", "").endswith(f"/{offset}"):
                return
            part.unlink()
            return _fetch(url, part, **retry)  # type: ignore[arg-type]
        raise DatasetDownloadError(f"could not download {url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        cause = getattr(e, "reason", e)
        raise DatasetDownloadError(f"could not download {url}: {cause} (no network, or the "
                                   "server is unreachable; rerun to resume)") from e
    with response:
        status = getattr(response, "status", 200)
        mode = "ab"
        if offset and status == 206:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != offset:  # not the range we asked for: start over
                response.close()
                part.unlink()
                return _fetch(url, part, **retry)  # type: ignore[arg-type]
        elif status != 206:
            mode, offset = "wb", 0  # full body: the server ignored Range; start over
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and max_size is not None \
                and offset + int(length) > max_size:
            raise _too_big(url, part, offset + int(length), max_size)
        total = offset + int(length) if length and length.isdigit() else expected_size
        bar = _progress_bar(progress, total, offset, part.name.removesuffix(".part"))
        received = 0
        try:
            with part.open(mode) as out:
                while chunk := response.read(chunk_size):
                    if max_size is not None and offset + received + len(chunk) > max_size:
                        out.close()
                        raise _too_big(url, part, offset + received + len(chunk), max_size)
                    out.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except (OSError, ValueError, http.client.HTTPException) as e:  # reset, timeout
            raise DatasetDownloadError(
                f"download of {url} interrupted after {offset + received} bytes: {e}; the "
                f"partial file {str(part)!r} is kept, rerun to resume") from e
        finally:
            if bar is not None:
                bar.close()
    if length and length.isdigit() and received != int(length):
        raise DatasetDownloadError(
            f"download of {url} ended early ({received} of {length} bytes); the partial file "
            f"{str(part)!r} is kept, rerun to resume")


def _content_range_start(value: str) -> int | None:
    """The first byte position of a ``Content-Range: bytes a-b/n`` header, else None."""
    try:
        unit, _, rest = value.partition(" ")
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def _verify(path: Path, url: str, *, md5: str | None, sha256: str | None) -> None:
    """Check the given digests (at least one is always given by :func:`download`)."""
    size = path.stat().st_size
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            actual = _file_digest(path, algorithm)
            if actual != expected.lower():
                raise ChecksumMismatchError(f"{url}: {algorithm} of the download ({size} "
                                            f"bytes) is {actual}, expected {expected}")


def _unsafe_member(info: zipfile.ZipInfo, dest: Path) -> str | None:
    """Why ``info`` may not be extracted into ``dest`` (None if it is safe)."""
    name = info.filename.replace("\\", "/")
    posix = PurePosixPath(name)
    if posix.is_absolute() or (len(name) > 1 and name[1] == ":") or ".." in posix.parts:
        return "absolute path or '..' component"
    target = (dest / name).resolve()
    if not target.is_relative_to(dest.resolve()):
        return "resolves outside the destination"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic link"
    return None


def extract_zip(archive: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                max_total: int | None = None, max_members: int = MAX_MEMBERS) -> list[Path]:
    """Extract ``archive`` into ``dest`` after checking every member first: an absolute path,
    a ``..`` component or a symlink (zip-slip) refuses the whole archive with
    :class:`UnsafeArchiveError`, before anything is written; so do more than ``max_members``
    members or declared sizes adding up to more than ``max_total`` bytes (default
    :data:`MAX_EXTRACT_RATIO` times the archive's size, at least 64 MiB). A member whose
    data does not match its declared size or CRC fails the extraction (:class:`DatasetError`).
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{str(archive)!r} is not a readable zip archive: {e}") from e
    if max_total is None:
        max_total = max(64 << 20, MAX_EXTRACT_RATIO * archive.stat().st_size)
    with zf:
        members = zf.infolist()
        if len(members) > max_members:
            raise UnsafeArchiveError(f"refusing to extract {str(archive)!r}: {len(members)} "
                                     f"members (at most {max_members})")
        total = sum(info.file_size for info in members)
        if total > max_total:
            raise UnsafeArchiveError(f"refusing to extract {str(archive)!r}: its members "
                                     f"declare {total} bytes, more than {max_total} "
                                     "(a zip bomb?)")
        for info in members:
            why = _unsafe_member(info, dest)
            if why:
                raise UnsafeArchiveError(f"refusing to extract {str(archive)!r}: member "
                                         f"{info.filename!r} is unsafe ({why})")
        written = []
        try:
            for info in members:
                written.append(Path(zf.extract(info, dest)))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError,
                NotImplementedError, zlib.error) as e:
            raise DatasetError(f"{str(archive)!r}: member {info.filename!r} is corrupt "
                               f"({e})") from e
    return written


_STAGING = ".hashlib-ext-extract-"


def _clean_staging(dest: Path) -> None:
    """Remove staging folders a killed earlier run left behind (our prefix only)."""
    for p in dest.glob(_STAGING + "*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def _install(archive: Path, dest: Path, folder: str) -> Path:
    """Extract ``archive`` into a staging folder in ``dest``; once it has been checked,
    move its ``folder`` into place, replacing (and only then removing) an existing one."""
    _clean_staging(dest)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=dest))
    try:
        extract_zip(archive, staging)
        new = staging / folder
        if not new.is_dir() or new.is_symlink():
            raise DatasetError(f"{str(archive)!r} did not contain the expected folder "
                               f"{folder!r}")
        target = dest / folder
        old = staging / (folder + ".old")
        if target.exists() or target.is_symlink():
            os.replace(target, old)  # same file system: a rename
        try:
            os.replace(new, target)
        except OSError:
            if old.exists():
                os.replace(old, target)  # put the user's folder back
            raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(
    name: str,
    dest_dir: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    keep_archive: bool = False,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
    max_size: int | None = None,
) -> Path:
    """Download and extract a known archive (``"coco-val2017"``); returns the image folder.

    Resumes an interrupted download from ``DEST/<archive>.part`` (HTTP Range). The archive is
    verified before extraction: ``sha256``/``md5`` given here win; otherwise the checksum
    recorded in :data:`ARCHIVES` (only when downloading from the official URL; a different
    ``url`` without a checksum is refused). A mismatch deletes the download and
    raises :class:`ChecksumMismatchError`. Network problems raise
    :class:`DatasetDownloadError` naming the URL. Extraction refuses zip-slip members.
    A completed earlier run (marker file) is reused without touching the network.

    Only http(s) URLs are fetched (also after redirects). The download may be at most
    ``max_size`` bytes (default: the recorded size times :data:`MAX_SIZE_SLACK`); a server
    announcing or sending more is cut off and the partial file deleted. Extraction goes to a
    temporary folder inside ``dest_dir``; an existing ``DEST/val2017`` is replaced only after
    the archive was verified and extracted completely, so a refused archive never costs the
    files already there.
    """
    if name not in ARCHIVES:
        raise DatasetError(f"unknown downloadable dataset {name!r}; known: "
                           + ", ".join(sorted(ARCHIVES)))
    spec = ARCHIVES[name]
    for label, value, digits in (("sha256", sha256, 64), ("md5", md5, 32)):
        if value is not None and (len(value) != digits
                                  or any(c not in "0123456789abcdefABCDEF" for c in value)):
            raise DatasetError(f"{label} must be {digits} hex digits, got {value!r}")
    source = url or spec.url
    _check_url(source)
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int)
                                 or max_size < 1):
        raise DatasetError(f"max_size must be a positive number of bytes, got {max_size!r}")
    if max_size is None and spec.size:
        max_size = int(spec.size * MAX_SIZE_SLACK)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else default_data_dir() / name
    dest.mkdir(parents=True, exist_ok=True)
    official = url is None or url == spec.url
    if sha256 is None and md5 is None:
        if not official:
            raise DatasetDownloadError(
                f"downloading {name} from {source} (not the official {spec.url}): give the "
                "expected --sha256 so the archive can be verified")
        sha256, md5 = spec.sha256, spec.md5
    size = spec.size if official else None
    marker = dest / f".{name}.complete"
    image_dir = dest / spec.folder
    expect = f"{source} sha256={sha256} md5={md5}"
    if marker.is_file() and image_dir.is_dir() and marker.read_text().strip() == expect:
        return image_dir

    archive = dest / PurePosixPath(spec.url).name
    part = archive.with_name(archive.name + ".part")
    if not archive.exists():
        _fetch(source, part, expected_size=size, progress=progress, timeout=timeout,
               chunk_size=chunk_size, max_size=max_size)
        try:
            _verify(part, source, md5=md5, sha256=sha256)
        except ChecksumMismatchError as e:
            part.unlink(missing_ok=True)
            raise ChecksumMismatchError(f"{e}; the download was deleted, rerun to fetch "
                                        "it again") from None
        part.replace(archive)
    else:
        try:
            _verify(archive, source, md5=md5, sha256=sha256)
        except ChecksumMismatchError as e:
            raise ChecksumMismatchError(f"{e}; delete {str(archive)!r} and rerun") from None
    marker.unlink(missing_ok=True)  # it would describe the folder about to be replaced
    _install(archive, dest, spec.folder)
    tmp_marker = marker.with_name(marker.name + ".tmp")
    tmp_marker.write_text(expect + "\n")
    os.replace(tmp_marker, marker)
    if not keep_archive:
        archive.unlink()
    return image_dir

