"""``hashlib-ext serve``: the match service (HTTP/JSON) over a folder of banks.

Exit codes: 0 stopped by SIGINT/SIGTERM after a graceful shutdown (banks compacted);
1 a bank, its journal or the token file could not be read, or the banks are held by
another server; 2 usage (e.g. a non-loopback host without a token). Needs the ``serve``
extra.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ._common import UsageError, error


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") \
                from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value
    return parse


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, got {text!r}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="run the match service (HTTP/JSON) over a folder of banks",
        description="Serve hash banks over HTTP: POST /v1/hash, POST /v1/match, bank "
                    "management under /v1/banks, /healthz, /readyz, /metrics; the OpenAPI "
                    "schema at /openapi.json. Changes to banks need a bearer token "
                    "(--token-file or HASHLIB_EXT_TOKEN) and are journalled to disk before "
                    "they are answered. See docs/service.md.",
        epilog="Exit codes: 0 stopped by SIGINT/SIGTERM (banks compacted), 1 a bank or the "
               "token file could not be read or the banks are held by another server, "
               "2 usage. Needs: pip install 'hashlib-ext[serve]'.",
    )
    p.add_argument("root", metavar="INDEX_OR_FOLDER",
                   help="a folder of banks (NAME.hidx / NAME.ridx; created if missing), or "
                        "one index file served as a single bank")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; another address needs a "
                        "token)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    p.add_argument("--token-file", default=None, metavar="FILE",
                   help="file holding the bearer token of the write endpoints (default: "
                        "the HASHLIB_EXT_TOKEN environment variable; none: read-only)")
    p.add_argument("--decode-workers", type=_count, default=None, metavar="N",
                   help="image-decoding processes (default: one per CPU, at most 4; 0: no "
                        "image endpoints, hashes only)")
    p.add_argument("--decode-timeout", type=_positive(float), default=10.0, metavar="S",
                   help="seconds an image may take to decode and hash (default 10)")
    p.add_argument("--max-upload-mb", type=_positive(float), default=32.0, metavar="MB",
                   help="largest image upload (default 32 MiB)")
    p.add_argument("--max-list-mb", type=_positive(float), default=256.0, metavar="MB",
                   help="largest hash-list upload (default 256 MiB)")
    p.add_argument("--max-pixels", type=_positive(int), default=50_000_000, metavar="N",
                   help="largest image in pixels, checked before decoding (default 50M)")
    p.add_argument("--max-query-hashes", type=_positive(int), default=10_000, metavar="N",
                   help="hashes per match request (default 10000)")
    p.add_argument("--compact-mb", type=_positive(float), default=64.0, metavar="MB",
                   help="compact a bank once its journal holds this much (default 64 MiB)")
    p.add_argument("--compact-interval", type=_positive(float), default=None, metavar="S",
                   help="also compact banks with changes every S seconds (default: only by "
                        "size, on request and at shutdown)")
    p.add_argument("--search-threads", type=int, default=2, metavar="N",
                   help="threads running hash lookups, and as many for image and robust "
                        "searches (default 2; 0: all in the event loop)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   default="info", help="log level (default info)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..errors import ServiceError
    from ..service import ServiceConfig, serve
    from ..service.auth import is_loopback, load_token
    from ..service.decode import default_workers
    from ..service.limits import Limits

    if args.search_threads < 0:
        raise UsageError("--search-threads must be >= 0")
    try:
        token, warning = load_token(args.token_file)
    except ServiceError as e:
        error(str(e))
        return 1
    if warning:
        error(f"warning: {warning}")
    if token is None and not is_loopback(args.host):
        raise UsageError(f"--host {args.host} accepts connections from other machines: set "
                         "a token (--token-file or HASHLIB_EXT_TOKEN) first")
    root = args.root
    if os.path.exists(root) and not (os.path.isdir(root) or os.path.isfile(root)):
        raise UsageError(f"{root}: not a folder or an index file")
    if not os.path.exists(root) and root.endswith((".hidx", ".ridx")):
        raise UsageError(f"{root}: no such index file (a folder of banks is created when "
                         "missing; an index file is not)")

    mb = 1 << 20
    limits = Limits(max_image_bytes=int(args.max_upload_mb * mb),
                    max_list_bytes=int(args.max_list_mb * mb),
                    max_pixels=args.max_pixels, max_query_hashes=args.max_query_hashes,
                    decode_timeout=args.decode_timeout)
    config = ServiceConfig(root=root, token=token, limits=limits,
                           decode_workers=default_workers() if args.decode_workers is None
                           else args.decode_workers,
                           compact_bytes=int(args.compact_mb * mb),
                           compact_interval=args.compact_interval,
                           search_threads=args.search_threads)
    serve(config, args.host, args.port, access_log=args.access_log,
          log_level=args.log_level)
    return 0
