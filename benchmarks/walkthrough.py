"""The new-user walkthrough: a photo folder with edited copies and broken files, taken through
hash -> convert -> index -> match -> dedup -> bench with the CLI, every command and its
output written to a Markdown transcript.

    python benchmarks/walkthrough.py --dataset ../shared/datasets/coco-sample --out walkthrough

The corpus: every photo of the dataset, 48 edited copies of the first ones (10 mirrored,
10 rotated 90 degrees, 10 resized to half, 10 re-encoded at JPEG quality 30, 8 with a 10 %
border crop) and 4 broken files (zero bytes, a truncated JPEG, text named .jpg, a PNG with
a corrupt header), plus a notes file that is not an image.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageOps

EDITS = (
    [("mirror", ImageOps.mirror)] * 10
    + [("rot90", lambda im: im.rotate(90, expand=True))] * 10
    + [("half", lambda im: im.resize((im.width // 2, im.height // 2)))] * 10
    + [("q30", lambda im: im)] * 10
    + [("crop10", lambda im: im.crop((im.width // 10, im.height // 10,
                                      im.width - im.width // 10, im.height - im.height // 10)))] * 8
)


def build_corpus(dataset: Path, root: Path) -> tuple[int, int, int]:
    """Copy the photos, add the edited copies and the broken files; (photos, edits, broken)."""
    photos = sorted(p for p in dataset.rglob("*.jpg"))
    out = root / "photos"
    out.mkdir(parents=True)
    for p in photos:
        shutil.copy(p, out / p.name)
    edits = out / "edited"
    edits.mkdir()
    for i, (name, fn) in enumerate(EDITS):
        with Image.open(photos[i]) as im:
            im = fn(im.convert("RGB"))
            im.save(edits / f"{photos[i].stem}-{name}.jpg", quality=30 if name == "q30" else 90)
    broken = out / "broken"
    broken.mkdir()
    (broken / "empty.jpg").write_bytes(b"")
    (broken / "truncated.jpg").write_bytes(photos[0].read_bytes()[:2000])
    (broken / "text.jpg").write_text("this is not an image\n")
    with Image.open(photos[1]) as im:
        im.save(broken / "corrupt.png")
    data = bytearray((broken / "corrupt.png").read_bytes())
    data[16:24] = b"\xff" * 8  # IHDR width/height: garbage
    (broken / "corrupt.png").write_bytes(bytes(data))
    (out / "notes.txt").write_text("not an image\n")
    return len(photos), len(EDITS), 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, required=True, help="folder of JPEG photos")
    ap.add_argument("--out", type=Path, default=Path("walkthrough"))
    ap.add_argument("--bench", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the bench on the dataset (minutes)")
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    n, e, b = build_corpus(args.dataset, args.out)
    hx = [sys.executable, "-m", "hashlib_ext"]
    steps = [
        "hash photos -r -j 2 -o hashes.csv",
        "hash photos -r -j 2 -o hashes.parquet -q",
        "hash photos -r -j 2 -f te -o hashes.te.csv -q --errors hash-errors.jsonl",
        "convert hashes.te.csv hashes.jsonl --input-format te",
        "index build hashes.parquet -o known.hxi",
        "index info known.hxi",
        "match known.hxi photos/edited --dihedral --top-k 1 -f csv -o matches.csv",
        "dedup photos -r -a pdq --dihedral -j 2 -o clusters.json",
        "dedup photos -r -a phash -t 20 -j 2 -o clusters-phash20.json",
    ]
    if args.bench:
        steps.append(f"bench --dataset {shlex.quote(str(args.dataset.resolve()))} -o report "
                     "-j 2 -q")
    lines = [f"# Walkthrough: {n} photos + {e} edited copies + {b} broken files + 1 text "
             "file\n"]
    for step in steps:
        t = time.perf_counter()
        proc = subprocess.run(hx + shlex.split(step), cwd=args.out, capture_output=True,
                              text=True)
        secs = time.perf_counter() - t
        lines.append(f"## `hashlib-ext {step}`\n\nexit {proc.returncode}, {secs:.1f} s\n")
        for name, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            text = text.strip()
            if text:
                shown = text.splitlines()
                if len(shown) > 25:
                    shown = shown[:20] + [f"... ({len(shown) - 20} more lines)"]
                lines.append(f"{name}:\n```\n" + "\n".join(shown) + "\n```\n")
    (args.out / "walkthrough.md").write_text("\n".join(lines))
    print((args.out / "walkthrough.md").read_text())


if __name__ == "__main__":
    main()
