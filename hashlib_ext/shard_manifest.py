"""The manifest of a sharded index: which shard files make it up, and how to check them.

A sharded index is a folder (a local path or an fsspec URL) holding N shard files, each an
ordinary :class:`~hashlib_ext.HashIndex` file, and ``manifest.json``::

    {"format": "hashlib_ext.ShardedIndex", "version": 1,
     "algorithm": "pdq", "bits": 256, "kind": "auto", "partition": "splitmix64",
     "count": 10000000, "next_id": 10000000,
     "shards": [{"file": "shard-00000-1f2e3d4c.hxi", "count": 2500113,
                 "min_id": 3, "max_id": 9999998, "keys": 0,
                 "size": 311046311, "sha256": "9b0c..."}, ...]}

Shard ``k`` holds exactly the ids for which :func:`shard_of` gives ``k`` (a SplitMix64 mix
of the id, modulo the shard count), so ids are global, a lookup by id touches one shard,
and appending ids ``n, n+1, ...`` spreads over every shard instead of filling the last
one (which partitioning by id range would do). ``min_id``/``max_id`` record the range each
shard spans. ``sha256`` is the SHA-256 a HashIndex file ends with (of everything before
its last 32 bytes), which :meth:`HashIndex.load` checks while it reads: comparing it with
the manifest proves the file is the one the manifest names, at no extra read.

The manifest is the commit point: new shard files get new names (a fresh token), the
manifest is then replaced atomically, and only then are the files it no longer names
deleted, so a crash leaves the old index or the new one. It is validated when read (size
bounded, every field typed and ranged, file names plain, counts consistent).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import fsio
from .errors import IndexFileError

FORMAT = "hashlib_ext.ShardedIndex"
VERSION = 1
MANIFEST = "manifest.json"
PARTITION = "splitmix64"
MAX_MANIFEST_BYTES = 64 << 20
MAX_SHARDS = 1 << 16
DIGEST_BYTES = 32
"""A HashIndex file ends with the SHA-256 of everything before it (hashlib_ext.container)."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ID_MIN, _ID_MAX = -(1 << 63), (1 << 63) - 1
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class ShardEntry:
    """One shard file as the manifest records it."""

    file: str
    count: int
    min_id: int | None
    max_id: int | None
    keys: int
    size: int
    sha256: str


@dataclass
class Manifest:
    """What ``manifest.json`` holds (see the module docstring)."""

    algorithm: str | None
    bits: int
    kind: str = "auto"
    next_id: int = 0
    shards: list[ShardEntry] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def digest(self) -> str:
        """A short fingerprint of this exact set of shard files."""
        import hashlib

        text = "".join(s.sha256 for s in self.shards) + f"{self.algorithm}:{self.bits}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> bytes:
        doc = {"format": FORMAT, "version": VERSION, "algorithm": self.algorithm,
               "bits": self.bits, "kind": self.kind, "partition": PARTITION,
               "count": self.count, "next_id": self.next_id,
               "shards": [asdict(s) for s in self.shards]}
        return (json.dumps(doc, indent=1) + "\n").encode("utf-8")


def shard_of(ids: np.ndarray, shards: int) -> np.ndarray:
    """The shard (0..shards-1) of each int64 id: SplitMix64's finaliser of the id, modulo
    ``shards``. Any id pattern (sequential, strided, clustered) spreads evenly."""
    with np.errstate(over="ignore"):
        z = np.asarray(ids, dtype=np.int64).view(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = (z ^ (z >> np.uint64(31))) & _MASK
    return (z % np.uint64(shards)).astype(np.int64)


def new_token() -> str:
    """A fresh token for the names of the shard files one build or add writes."""
    return secrets.token_hex(4)


def shard_file_name(k: int, token: str) -> str:
    return f"shard-{k:05d}-{token}.hxi"


def manifest_location(folder: str) -> str:
    return fsio.join(folder, MANIFEST)


def is_sharded_index(location: str) -> bool:
    """Whether ``location`` (a path or URL) is a sharded index folder (has a manifest), as
    opposed to a HashIndex file: what a command taking either checks first."""
    try:
        return fsio.exists(manifest_location(location))
    except (OSError, ValueError):
        return False


def write_manifest(folder: str, manifest: Manifest) -> None:
    """Replace the folder's manifest atomically (the commit point of a build or add)."""
    check(manifest, manifest_location(folder))
    fsio.write_bytes(manifest_location(folder), manifest.to_json())


def read_manifest(folder: str) -> Manifest:
    """Read and validate ``folder``'s manifest; anything wrong is an :class:`IndexFileError`
    naming it."""
    where = manifest_location(folder)
    try:
        raw = fsio.read_bytes(where, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise IndexFileError(f"{where}: no sharded index here (manifest missing)") from None
    except (OSError, ValueError) as e:
        raise IndexFileError(f"{where}: cannot read manifest: {e}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexFileError(f"{where}: manifest is not valid JSON ({e})") from None
    return parse(doc, where)


def parse(doc: Any, where: str) -> Manifest:
    """A validated :class:`Manifest` from the decoded JSON ``doc``."""
    def bad(msg: str) -> IndexFileError:
        return IndexFileError(f"{where}: invalid manifest: {msg}")

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad("not a hashlib_ext sharded index manifest")
    version = doc.get("version")
    if type(version) is not int or not 1 <= version <= VERSION:
        raise bad(f"unsupported version {version!r} (this hashlib_ext reads {VERSION})")
    if doc.get("partition") != PARTITION:
        raise bad(f"unknown partition {doc.get('partition')!r}")
    algorithm = doc.get("algorithm")
    if algorithm is not None and not (isinstance(algorithm, str) and _NAME.fullmatch(algorithm)):
        raise bad("algorithm")
    bits = _int(doc, "bits", 8, 1 << 16, bad)
    if bits % 8:
        raise bad("bits must be a multiple of 8")
    kind = doc.get("kind")
    if kind not in ("auto", "flat", "mih"):
        raise bad("kind")
    next_id = _int(doc, "next_id", _ID_MIN, _ID_MAX + 1, bad)
    shards = doc.get("shards")
    if not isinstance(shards, list) or not 1 <= len(shards) <= MAX_SHARDS:
        raise bad(f"shards must be a list of 1 to {MAX_SHARDS} entries")
    entries = [_entry(s, i, bad) for i, s in enumerate(shards)]
    if len({e.file for e in entries}) != len(entries):
        raise bad("two shards name the same file")
    manifest = Manifest(algorithm, bits, kind, next_id, entries)
    if _int(doc, "count", 0, 1 << 62, bad) != manifest.count:
        raise bad("count is not the sum of the shard counts")
    check(manifest, where)
    return manifest


def check(manifest: Manifest, where: str) -> None:
    """Consistency of a manifest about to be written or just read."""
    top = max((e.max_id for e in manifest.shards if e.max_id is not None), default=None)
    if top is not None and manifest.next_id <= top:
        raise IndexFileError(f"{where}: invalid manifest: next_id {manifest.next_id} is not "
                             f"above the largest id {top}")


def _entry(s: Any, i: int, bad: Any) -> ShardEntry:
    if not isinstance(s, dict):
        raise bad(f"shard {i} is not an object")
    name = s.get("file")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == MANIFEST:
        raise bad(f"shard {i}: file name must be a plain name (letters, digits, ._-)")
    count = _int(s, "count", 0, 1 << 48, bad)
    keys = _int(s, "keys", 0, count, bad)
    size = _int(s, "size", 0, 1 << 56, bad)
    digest = s.get("sha256")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise bad(f"shard {i}: sha256 must be 64 lower-case hex digits")
    lo, hi = s.get("min_id"), s.get("max_id")
    if count == 0:
        if lo is not None or hi is not None:
            raise bad(f"shard {i}: an empty shard has no id range")
    else:
        lo = _int(s, "min_id", _ID_MIN, _ID_MAX, bad)
        hi = _int(s, "max_id", lo, _ID_MAX, bad)
    return ShardEntry(name, count, lo, hi, keys, size, digest)


def _int(doc: dict[str, Any], name: str, lo: int, hi: int, bad: Any) -> int:
    value = doc.get(name)
    if type(value) is not int or not lo <= value <= hi:
        raise bad(f"{name} must be an integer from {lo} to {hi}, got {str(value)[:40]}")
    return value


def file_digest(path: str) -> tuple[int, str]:
    """``(size, sha256)`` of a local HashIndex file as the manifest records them."""
    from .container import open_regular

    f, size = open_regular(path)  # a FIFO or device is refused, never read
    with f:
        if size < DIGEST_BYTES:
            raise IndexFileError(f"{path}: too short to be an index file")
        f.seek(size - DIGEST_BYTES)
        return size, f.read(DIGEST_BYTES).hex()
