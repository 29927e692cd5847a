"""Hash-list conversion at scale: time and peak memory of ``convert_hash_list`` (two
chunked passes) against reading the whole list and writing it (``read_hash_list`` +
``write_hash_list``), on N PDQ hashes with keys, qualities and ThreatExchange-style
metadata (collab, category, tags).

Each step runs in a fresh Python process and reports its own peak RSS (``ru_maxrss``,
imports included). Usage::

    python benchmarks/convert_scale.py [N] [WORKDIR]     # N default 1,000,000

Prints one line per step: what, seconds, peak RSS in MiB, output size in MiB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MAKE = """
import numpy as np, sys
import hashlib_ext as hx
from hashlib_ext import formats
n, path = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
chunk = 250_000
with formats.HashListWriter(path, layout=formats.Layout(keys=True, qualities=True,
        metadata=("collab", "category", "tags"), ids=False)) as w:
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        codes = rng.integers(0, 256, (m, 32), dtype=np.uint8)
        quals = rng.integers(0, 101, m)
        i = np.arange(start, start + m)
        keys = np.array([f"images/{j:08d}.jpg" for j in i], dtype=object)
        meta = {"collab": np.array([f"Collab {j % 5}" for j in i], dtype=object),
                "category": np.array(["INVESTIGATION_SEED" if j % 3 else None for j in i],
                                     dtype=object),
                "tags": np.array([f"tag{j % 11} batch{j // 1000}" for j in i], dtype=object)}
        w.write(formats.HashList(hx.HashArray(codes, "pdq", quals), i.astype(np.int64), keys,
                                 metadata=meta))
"""

CONVERT = """
import sys
from hashlib_ext import formats
formats.convert_hash_list(sys.argv[1], sys.argv[2], format=(sys.argv[3:] or [None])[0])
"""

WHOLE = """
import sys
from hashlib_ext import formats
formats.write_hash_list(sys.argv[2], formats.read_hash_list(sys.argv[1]))
"""


def run(code: str, *args: str) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of ``code`` run in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code += "\nimport resource\nprint('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], check=True, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t
    peak_kib = int(proc.stdout.split("PEAK")[-1])
    return seconds, peak_kib / 1024


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    work = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp())
    src = work / "list.csv"
    s, _ = run(MAKE, str(n), str(src))
    print(f"make {n} rows as CSV: {s:.1f} s, {src.stat().st_size / 2**20:.0f} MiB")
    s, peak = run("import hashlib_ext.formats, pyarrow.parquet")
    print(f"baseline (imports only): peak RSS {peak:.0f} MiB")
    steps = [("convert csv -> parquet", CONVERT, src, work / "a.parquet", ()),
             ("convert parquet -> jsonl", CONVERT, work / "a.parquet", work / "b.jsonl", ()),
             ("convert jsonl -> te csv.gz", CONVERT, work / "b.jsonl", work / "c.csv.gz",
              ("te",)),
             ("whole read_hash_list + write_hash_list csv -> parquet", WHOLE, src,
              work / "w.parquet", ())]
    for what, code, a, b, extra in steps:
        s, peak = run(code, str(a), str(b), *extra)
        print(f"{what}: {s:.1f} s, peak RSS {peak:.0f} MiB, "
              f"output {Path(b).stat().st_size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
