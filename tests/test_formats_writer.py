"""HashListWriter (chunk by chunk, fixed layout, interleaved algorithms, streams, atomic
abort), output_format (extension rules) and convert_hash_list (bounded memory, refusals)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import hashlib_ext as hx
from hashlib_ext import formats
from hashlib_ext.errors import HashFormatError, HashListOutputError
from hashlib_ext.formats import HashList, HashListWriter, Layout


def make(n: int, algorithm: str = "pdq", nbytes: int = 32, seed: int = 0, start: int = 0,
         keys: bool = True, meta: bool = True) -> HashList:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    quals = rng.integers(0, 101, n) if algorithm == "pdq" else None
    k = np.array([f"k{start + i}" for i in range(n)], dtype=object) if keys else None
    m = {"tags": np.array([f"t{start + i}" for i in range(n)], dtype=object)} if meta else {}
    return HashList(hx.HashArray(codes, algorithm, quals),
                    np.arange(start, start + n, dtype=np.int64), k, metadata=m)


@pytest.mark.parametrize("name", ["w.csv", "w.tsv.gz", "w.jsonl", "w.json", "w.parquet",
                                  "w.te.csv"])
def test_chunks_written_one_by_one_read_back_whole(tmp_path, name):
    parts = [make(5, seed=1), make(0), make(7, seed=2, start=5)]
    path = tmp_path / name
    fmt = "te" if name.endswith(".te.csv") else None
    with HashListWriter(path, fmt, chunk_rows=3) as w:
        for p in parts:
            w.write(p)
        assert not path.exists()  # only complete lists appear
    got = formats.read_hash_list(path)
    whole = formats.concat_lists(parts, "pdq")
    assert got.hashes.codes.tolist() == whole.hashes.codes.tolist()
    assert got.ids.tolist() == list(range(12))
    assert got.keys.tolist() == whole.keys.tolist()
    assert got.metadata["tags"].tolist() == whole.metadata["tags"].tolist()


def test_layout_is_fixed_before_the_first_row(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("old\n")
    w = HashListWriter(path, layout=Layout(ids=False))
    with pytest.raises(HashFormatError, match="started without keys"):
        w.write(make(2, meta=False))
    w.abort()
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]
    with pytest.raises(HashFormatError, match="'tags' is not among"), \
            HashListWriter(path) as w:
        w.write(make(2, meta=False))
        w.write(make(2, start=2))
    assert path.read_text() == "old\n"
    with pytest.raises(HashFormatError, match="hex lines hold no ids"), \
            HashListWriter(tmp_path / "x.txt") as w:
        w.write(make(2, keys=False, meta=False))
        w.write(make(2, keys=False, meta=False, start=7))
    assert not (tmp_path / "x.txt").exists()


def test_named_columns_and_interleaved_algorithms():
    a, b = make(3, "pdq", meta=False), make(3, "phash", nbytes=8, meta=False)
    out = io.StringIO()
    lay = Layout(keys=True, qualities=True, ids=False,
                 columns=("path", "algorithm", "hex", "quality", "quality_ok"))
    with HashListWriter(out, "jsonl", layout=lay) as w:
        w.write_interleaved([a, b])
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["algorithm"] for r in rows] == ["pdq", "phash"] * 3
    assert [r["path"] for r in rows] == ["k0", "k0", "k1", "k1", "k2", "k2"]
    assert rows[1]["quality"] is None and rows[1]["quality_ok"] is None
    assert rows[0]["hex"] == a.hashes[0].hex and rows[1]["hex"] == b.hashes[0].hex
    assert list(rows[0]) == ["path", "algorithm", "hex", "quality", "quality_ok"]


def test_formats_with_one_algorithm_refuse_two(tmp_path):
    a, b = make(2, "pdq"), make(2, "phash", nbytes=8)
    for name in ("one.parquet", "one.txt"):
        with pytest.raises(HashFormatError, match="holds one algorithm"), \
                HashListWriter(tmp_path / name, layout=Layout(keys=True, qualities=True,
                                                           ids=False)) as w:
            w.write_interleaved([formats.HashList(a.hashes, a.ids, a.keys),
                                 formats.HashList(b.hashes, b.ids, b.keys)])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(HashFormatError, match="not to a stream"):
        HashListWriter(io.StringIO(), "parquet")


def test_empty_lists_have_their_header():
    for fmt, text in [("csv", "hash,algorithm\n"), ("json", "[]\n"), ("jsonl", ""),
                      ("te", "signal_type,signal_str,collab,category,tags\n")]:
        out = io.StringIO()
        with HashListWriter(out, fmt):
            pass
        assert out.getvalue() == text, fmt


def test_output_format_from_extension():
    of = formats.output_format
    assert of(None, None) == "csv" and of(None, "ndjson") == "jsonl"
    assert of("a.parquet", None) == "parquet" and of("a.tsv.gz", None) == "tsv"
    assert of("a.TXT", None) == "hex" and of("a.hex", None) == "hex"
    assert of("a.csv", "te") == "te" and of("a.out", "json") == "json"
    assert of("a.dat", None) == "csv"
    for path, fmt in [("a.parquet", "csv"), ("a.txt", "csv"), ("a.json", "jsonl"),
                      ("a.csv.gz", "parquet")]:
        with pytest.raises(HashFormatError, match="does not match"):
            of(path, fmt)
    with pytest.raises(HashFormatError, match="compressed inside"):
        of("a.parquet.gz", None)


def test_convert_streams_chunk_by_chunk(tmp_path, monkeypatch):
    src = tmp_path / "big.jsonl"
    hl = make(1000, seed=3)
    hl.metadata["tags"][::7] = None
    formats.write_hash_list(src, hl)
    sizes: list[int] = []
    real = HashListWriter.write

    def spy(self, chunk):
        sizes.append(len(chunk))
        return real(self, chunk)

    monkeypatch.setattr(HashListWriter, "write", spy)
    done = formats.convert_hash_list(src, tmp_path / "big.parquet", chunk_rows=64)
    assert done.written == 1000 and max(sizes) <= 64 and len(sizes) >= 16
    got = formats.read_hash_list(tmp_path / "big.parquet")
    assert got.hashes == hl.hashes and got.ids.tolist() == hl.ids.tolist()
    assert got.keys.tolist() == hl.keys.tolist()
    assert got.metadata["tags"].tolist() == hl.metadata["tags"].tolist()


def test_convert_finds_columns_that_appear_late(tmp_path):
    """The first pass learns every column, so a key or field first seen in the last record
    still gets its CSV column."""
    h = make(3, meta=False).hashes
    src = tmp_path / "late.jsonl"
    src.write_text(json.dumps({"hash": h[0].hex}) + "\n" + json.dumps({"hash": h[1].hex}) +
                   "\n" + json.dumps({"hash": h[2].hex, "key": "k", "src": "s"}) + "\n")
    formats.convert_hash_list(src, tmp_path / "late.csv", chunk_rows=1)
    lines = (tmp_path / "late.csv").read_text().splitlines()
    # no id column: the ids are record numbers, which a reader gives back the same
    assert lines[0] == "hash,algorithm,key,src" and lines[3].endswith(",pdq,k,s")
    back = formats.read_hash_list(tmp_path / "late.csv")
    assert back.ids.tolist() == [0, 1, 2] and not back.has_ids


def test_convert_refusals_leave_the_output_alone(tmp_path):
    src = tmp_path / "in.csv"
    formats.write_hash_list(src, make(4))
    with pytest.raises(HashFormatError, match="is the input too"):
        formats.convert_hash_list(src, tmp_path / "." / "in.csv")
    (tmp_path / "out.txt").write_text("old\n")
    with pytest.raises(HashListOutputError, match="hex lines hold no metadata"):
        formats.convert_hash_list(src, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "old\n"
    formats.convert_hash_list(src, tmp_path / "out.txt", metadata=False)
    assert formats.read_hash_list(tmp_path / "out.txt").keys.tolist() == ["k0", "k1", "k2",
                                                                            "k3"]
