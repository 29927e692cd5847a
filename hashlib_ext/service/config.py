"""The service's settings (what ``hashlib-ext serve`` passes to :func:`create_app`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .auth import Token
from .limits import Limits


@dataclass
class ServiceConfig:
    """Where the banks are, who may change them, and what a request may ask."""

    root: str
    """A folder of banks (created when missing), or one index file."""
    token: Token | None = None
    """Bearer token of the write endpoints; None: the banks are read-only."""
    limits: Limits = field(default_factory=Limits)
    decode_workers: int = 2
    """Decoding worker processes; 0: no image endpoints (a service for hashes only)."""
    compact_bytes: int = 64 << 20
    """Compact a bank once its journal holds this many bytes."""
    compact_removals: int = 100_000
    """... or this many removals are pending."""
    compact_interval: float | None = None
    """Also compact every bank with journalled changes this often (seconds); None: only
    on the triggers above, on request and at shutdown."""
    search_threads: int = 2
    """Threads that run searches (the compiled kernels release the GIL); 0 runs them in the
    event loop's thread."""
