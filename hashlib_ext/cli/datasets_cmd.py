"""``hashlib-ext datasets``: list the known datasets, download COCO val2017 (verified).

Exit codes: 0 success; 1 download failed (network, HTTP error, interrupted: rerun to resume)
or a dataset is missing; 3 integrity failure (checksum mismatch, unsafe archive); 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ._options import add_progress

EXIT_FAILED = 1
EXIT_INTEGRITY = 3


def _hex(digits: int) -> Callable[[str], str]:
    def check(text: str) -> str:
        value = text.strip().lower()
        if len(value) != digits or any(c not in "0123456789abcdef" for c in value):
            raise argparse.ArgumentTypeError(f"expected {digits} hex digits, got {text!r}")
        return value
    return check


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "datasets",
        help="list the known image datasets; download COCO val2017",
        description="List the image datasets hashlib-ext knows (with licence and location), "
                    "and download COCO val2017 (resumable, verified by size and checksum "
                    "before extraction).",
        epilog="exit codes: 0 ok, 1 download failed or dataset missing (rerun to resume), "
               "2 usage, 3 checksum mismatch or unsafe archive",
    )
    sub = p.add_subparsers(dest="datasets_command", metavar="ACTION")
    sub.required = True

    ls = sub.add_parser("list", help="known datasets, their licence and where they are")
    ls.add_argument("-f", "--format", choices=("text", "json"), default="text")
    ls.set_defaults(func=run_list)

    dl = sub.add_parser(
        "download",
        help="download and extract a dataset archive (coco-val2017)",
        description="Download the archive (resuming DIR/<archive>.part if a previous run was "
                    "interrupted), verify it, extract it into DIR and delete the archive. "
                    "Progress goes to stderr; the image folder is printed on stdout.",
        epilog="exit codes: 0 ok, 1 download failed (rerun to resume), 2 usage, "
               "3 checksum mismatch or unsafe archive",
    )
    from ..datasets import ARCHIVES

    dl.add_argument("name", choices=sorted(ARCHIVES), help="dataset to download")
    dl.add_argument("-o", "--output", "--dir", dest="dest", metavar="DIR", default=None,
                    help="destination folder (default: $HASHLIB_EXT_DATA or "
                         "~/.cache/hashlib-ext/NAME)")
    dl.add_argument("--url", default=None, help="a mirror of the archive (needs --sha256)")
    dl.add_argument("--sha256", type=_hex(64), default=None, help="expected SHA-256 of the archive")
    dl.add_argument("--md5", type=_hex(32), default=None, help="expected MD5 of the archive")
    dl.add_argument("--keep-archive", action="store_true", help="keep the zip after extraction")
    dl.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds")
    add_progress(dl)
    dl.set_defaults(func=run_download)
    return p


def run_list(args: argparse.Namespace) -> int:
    from ..datasets import known

    rows = known()
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for r in rows:
        images = f"{r['images']} images" if r["present"] else "not present"
        print(f"{r['name']}: {images} at {r['location']}")
        print(f"    {r['description']}")
        print(f"    licence: {r['licence']}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from ..datasets import download
    from ..errors import ChecksumMismatchError, DatasetError, UnsafeArchiveError

    try:
        path = download(args.name, args.dest, url=args.url, sha256=args.sha256, md5=args.md5,
                        progress=not args.quiet and args.progress is not False,
                        keep_archive=args.keep_archive,
                        timeout=args.timeout)
    except (ChecksumMismatchError, UnsafeArchiveError) as e:
        print(f"hashlib-ext datasets download: {e}", file=sys.stderr)
        return EXIT_INTEGRITY
    except DatasetError as e:
        print(f"hashlib-ext datasets download: {e}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as e:  # disk full, permission denied on DIR
        print(f"hashlib-ext datasets download: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(path)
    return 0
