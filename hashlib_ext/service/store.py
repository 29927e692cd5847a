"""The banks of a folder: loading them, the lock that keeps a second server away, creating
and deleting banks, and which banks are due for compaction."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence

from ..errors import IndexFileError
from .banks import (
    BANK_NAME,
    HASH_SUFFIX,
    JOURNAL_SUFFIX,
    LOCK_NAME,
    ROBUST_SUFFIX,
    Bank,
    HashBank,
    RobustBank,
    check_name,
)
from .errors import bad_request, conflict, not_found

log = logging.getLogger("hashlib_ext.service")


class BankStore:
    """The banks of a folder (or the one bank of a single index file).

    ``root`` is a folder of ``*.hidx`` / ``*.ridx`` files (created when missing), or one
    such file (then banks cannot be created or deleted). A lock file keeps a second server
    from opening the same banks. The bank table is replaced, never changed in place, so
    readers can iterate it without a lock."""

    def __init__(self, root: str | os.PathLike[str], *, compact_bytes: int = 64 << 20,
                 compact_removals: int = 100_000, robust_compact_records: int = 64):
        self.root = os.path.abspath(os.fspath(root))
        self.single = os.path.isfile(self.root)
        self.folder = os.path.dirname(self.root) if self.single else self.root
        self.compact_bytes = compact_bytes
        self.compact_removals = compact_removals
        self.robust_compact_records = robust_compact_records
        self.banks: dict[str, Bank] = {}
        self._lock = threading.Lock()
        self._lock_fd: int | None = None

    # -- opening and closing ----------------------------------------------------------------
    def open(self, progress: Callable[[str], None] | None = None) -> None:
        """Lock the folder (or file), then load every bank and replay its journal."""
        import fcntl

        if not self.single:
            os.makedirs(self.root, exist_ok=True)
        lock = self.root + ".lock" if self.single else os.path.join(self.root, LOCK_NAME)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise IndexFileError(f"{self.root}: another server holds these banks "
                                 f"({lock} is locked)") from None
        self._lock_fd = fd
        banks: dict[str, Bank] = {}
        for name, path, kind in self._bank_files():
            if progress:
                progress(name)
            bank: Bank = HashBank.open(name, path) if kind == "hash" else \
                RobustBank.open(name, path)
            banks[name] = bank
        self.banks = banks

    def _bank_files(self) -> list[tuple[str, str, str]]:
        if self.single:
            name = os.path.basename(self.root)
            stem, ext = os.path.splitext(name)
            kind = "robust" if ext == ROBUST_SUFFIX else "hash"
            return [(stem if BANK_NAME.fullmatch(stem) else "default", self.root, kind)]
        found: list[tuple[str, str, str]] = []
        names = sorted(os.listdir(self.root))
        for entry in names:
            stem, ext = os.path.splitext(entry)
            if ext in (HASH_SUFFIX, ROBUST_SUFFIX) and BANK_NAME.fullmatch(stem) and \
                    os.path.isfile(os.path.join(self.root, entry)):
                if any(f[0] == stem for f in found):
                    raise IndexFileError(f"{self.root}: two banks named {stem!r}")
                found.append((stem, os.path.join(self.root, entry),
                              "hash" if ext == HASH_SUFFIX else "robust"))
        for entry in names:  # a journal without its index: the leftover of a deletion
            if entry.endswith(JOURNAL_SUFFIX):
                base = os.path.join(self.root, entry[:-len(JOURNAL_SUFFIX)])
                if not os.path.exists(base):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.root, entry))
        return found

    def close(self, compact: bool = True) -> None:
        """Compact every bank with journalled changes (when ``compact``), then release."""
        for bank in list(self.banks.values()):
            try:
                if compact:
                    bank.compact()
            except Exception:  # noqa: BLE001 - the journal still holds every change
                log.exception("bank %s: compaction at shutdown failed (its journal keeps "
                              "every change)", bank.name)
            bank.close()
        self.banks = {}
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the bank table -----------------------------------------------------------------------
    def get(self, name: str) -> Bank:
        bank = self.banks.get(name)
        if bank is None:
            raise not_found(f"no bank named {str(name)[:80]!r}")
        return bank

    def hash_bank(self, name: str) -> HashBank:
        bank = self.get(name)
        if not isinstance(bank, HashBank):
            raise conflict(f"bank {name!r} is a robust bank: it takes images, not hashes")
        return bank

    def hash_banks(self, algorithm: str | None, names: Sequence[str] | None = None,
                   bits: int | None = None) -> list[HashBank]:
        """The hash banks to search for hashes of ``algorithm``: the named ones (each must
        hold that algorithm), else all that do."""
        if names:
            out = []
            for name in names:
                bank = self.get(name)
                if not isinstance(bank, HashBank):
                    continue
                if bank.algorithm != algorithm and not (
                        bank.algorithm is None and bits == bank.bits):
                    raise bad_request(f"bank {name!r} holds {bank.algorithm} hashes, not "
                                     f"{algorithm}")
                out.append(bank)
            return out
        return [b for b in self.banks.values()
                if isinstance(b, HashBank) and b.algorithm == algorithm]

    def robust_banks(self, names: Sequence[str] | None = None) -> list[RobustBank]:
        banks = [self.get(n) for n in names] if names else list(self.banks.values())
        return [b for b in banks if isinstance(b, RobustBank)]

    def create(self, name: str, kind: str, algorithm: str | None) -> Bank:
        check_name(name)
        if self.single:
            raise conflict("this server serves one index file: start it on a folder to "
                           "create banks")
        from ..hashers import algorithms

        if kind == "hash":
            algorithm = algorithm or "pdq"
            if algorithm not in algorithms():
                raise bad_request(f"unknown algorithm {algorithm!r}; known: "
                                 f"{', '.join(algorithms())}")
        elif kind == "robust":
            if algorithm not in (None, "pdq"):
                raise bad_request("robust banks match PDQ and local features: no algorithm")
            from .deps import robust_missing

            problem = robust_missing()
            if problem:
                raise conflict(problem)
        else:
            raise bad_request(f"kind must be 'hash' or 'robust', got {str(kind)[:40]!r}")
        with self._lock:
            if name in self.banks:
                raise conflict(f"bank {name!r} exists")
            path = os.path.join(self.root, name + (HASH_SUFFIX if kind == "hash"
                                                   else ROBUST_SUFFIX))
            for stale in (path, path + JOURNAL_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(stale)
            bank: Bank = HashBank.create(name, path, algorithm or "pdq") if kind == "hash" \
                else RobustBank.create(name, path)
            self.banks = {**self.banks, name: bank}
            return bank

    def delete(self, name: str) -> None:
        if self.single:
            raise conflict("this server serves one index file: its bank cannot be deleted")
        with self._lock:
            bank = self.get(name)
            self.banks = {k: v for k, v in self.banks.items() if k != name}
        with bank.write_lock:
            bank.closed = True
            os.unlink(bank.path)  # the index first: a journal alone is a deletion leftover
            with contextlib.suppress(FileNotFoundError):
                os.unlink(bank.journal_path)
            if bank.journal is not None:
                bank.journal.close()
                bank.journal = None

    def due(self) -> list[Bank]:
        """Banks whose journal (or pending removals) call for compaction."""
        out: list[Bank] = []
        for bank in self.banks.values():
            if bank.closed or bank.journal is None:
                continue
            if bank.journal.size >= self.compact_bytes or (
                    isinstance(bank, HashBank) and len(bank.removed) >= self.compact_removals
            ) or (isinstance(bank, RobustBank) and
                  bank.journal.records >= self.robust_compact_records):
                out.append(bank)
        return out
