"""Hash-list metadata (TE collab/category/tags, user columns) and round trips of every
format: ids, keys, qualities, metadata, gzip; limits on untrusted metadata."""

from __future__ import annotations

import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hashlib_ext as hx
from hashlib_ext import formats
from hashlib_ext.errors import HashFormatError, MissingDependencyError
from hashlib_ext.formats.metadata import MAX_METADATA_CHARS, MAX_METADATA_COLUMNS, MAX_METADATA_NAME


def sample(n: int = 40, seed: int = 0, algorithm: str = "pdq", nbytes: int = 32):
    """A HashList with ids, keys (one NULL), qualities (one unknown) and metadata (some
    None)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    quals = rng.integers(0, 101, n)
    quals[min(3, n - 1)] = -1
    ids = rng.permutation(np.arange(1000, 1000 + 7 * n, 7, dtype=np.int64))
    keys = np.array([f"dir {i}/img,{i}\"q\".jpg" for i in range(n)], dtype=object)
    keys[min(5, n - 1)] = None
    collab = np.array([f"Collab {i % 3}" for i in range(n)], dtype=object)
    tags = np.array([None if i % 4 == 0 else f"t{i} x,y" for i in range(n)], dtype=object)
    note = np.array([f"line\nbreak {i}" if i % 5 == 0 else None for i in range(n)], dtype=object)
    return formats.HashList(hx.HashArray(codes, algorithm, quals), ids, keys,
                            metadata={"collab": collab, "tags": tags, "note": note})


def empty_is_none(values):
    """CSV/TSV have no NULL: None and "" both read back as None."""
    return [None if v in (None, "") else v for v in values]


TEXT_NULLS = {"csv", "tsv", "te"}  # an empty cell stands for None (keys: "")


@pytest.mark.parametrize("name,fmt", [
    ("l.csv", None), ("l.tsv", None), ("l.jsonl", None), ("l.json", None),
    ("l.parquet", None), ("l.csv.gz", None), ("l.jsonl.gz", None), ("l.json.gz", None),
    ("l.tsv.gz", None), ("te.csv", "te"), ("te.csv.gz", "te"),
])
@pytest.mark.parametrize("chunk_rows", [6, formats.CHUNK_ROWS])
def test_round_trip_every_format_keeps_ids_keys_qualities_metadata(tmp_path, name, fmt,
                                                                   chunk_rows):
    hl = sample()
    path = tmp_path / name
    formats.write_hash_list(path, hl, format=fmt, chunk_rows=chunk_rows)
    got = formats.read_hash_list(path, chunk_rows=chunk_rows)
    kind = fmt or formats.detect_format(path)
    assert got.hashes == hl.hashes and got.hashes.algorithm == "pdq"
    np.testing.assert_array_equal(got.ids, hl.ids)
    if kind in TEXT_NULLS:
        assert got.keys.tolist() == ["" if k is None else k for k in hl.keys]
    else:
        assert got.keys.tolist() == hl.keys.tolist()
    if kind != "te":  # ThreatExchange CSV has no quality column
        np.testing.assert_array_equal(got.hashes.qualities, hl.hashes.qualities)
    if kind == "te":  # ThreatExchange's own columns come first; category is empty
        assert list(got.metadata) == ["collab", "category", "tags", "note"]
        assert set(got.metadata.pop("category").tolist()) == {None}
    assert list(got.metadata) == ["collab", "tags", "note"]
    for col, values in hl.metadata.items():
        expect = empty_is_none(values) if kind in TEXT_NULLS else values.tolist()
        assert got.metadata[col].tolist() == expect, col
        assert got.metadata[col].dtype == object


def test_hex_lines_round_trip_and_refuse_metadata(tmp_path):
    hl = sample(12)
    plain = formats.HashList(hl.hashes, np.arange(12), np.array(
        [f"photos/{i} copy.jpg" for i in range(12)], dtype=object))
    formats.write_hash_list(tmp_path / "a.txt.gz", plain)
    got = formats.read_hash_list(tmp_path / "a.txt.gz")
    assert got.hashes.codes.tolist() == hl.hashes.codes.tolist()
    assert got.keys.tolist() == plain.keys.tolist() and got.metadata == {}
    with pytest.raises(HashFormatError, match="hex lines hold no metadata"):
        formats.write_hash_list(tmp_path / "b.txt", formats.HashList(
            hl.hashes, np.arange(12), metadata=hl.metadata))
    assert not (tmp_path / "b.txt").exists()


TE_CSV = """signal_type,signal_str,collab,category,tags
pdq,{h1},Sample Signals,INVESTIGATION_SEED,tag1 tag2
url,https://example.org/,Sample Signals,INVESTIGATION_SEED,
pdq,{h2},Other Collab,,
"""


def test_threatexchange_metadata_read_and_written_in_place(tmp_path):
    h = sample(2).hashes
    src = tmp_path / "export.csv"
    src.write_text(TE_CSV.format(h1=h[0].hex, h2=h[1].hex))
    got = formats.read_hash_list(src)
    assert got.ignored == 1 and got.hashes == h
    assert {k: v.tolist() for k, v in got.metadata.items()} == {
        "collab": ["Sample Signals", "Other Collab"],
        "category": ["INVESTIGATION_SEED", None], "tags": ["tag1 tag2", None]}
    out = tmp_path / "again.csv"
    formats.write_hash_list(out, got, format="te")
    assert out.read_text() == (
        "signal_type,signal_str,collab,category,tags\n"
        f"pdq,{h[0].hex},Sample Signals,INVESTIGATION_SEED,tag1 tag2\n"
        f"pdq,{h[1].hex},Other Collab,,\n")


def test_metadata_false_and_named_columns(tmp_path):
    hl = sample(10)
    for name in ("m.csv", "m.jsonl", "m.parquet"):
        path = tmp_path / name
        formats.write_hash_list(path, hl)
        assert formats.read_hash_list(path, metadata=False).metadata == {}
        only = formats.read_hash_list(path, metadata=["tags"])
        assert list(only.metadata) == ["tags"]
        chunks = list(formats.iter_hash_list(path, metadata=["collab"], chunk_rows=3))
        assert all(list(c.metadata) == ["collab"] for c in chunks)
    with pytest.raises(HashFormatError, match="no metadata column 'nope'"):
        formats.read_hash_list(tmp_path / "m.csv", metadata=["nope"])
    with pytest.raises(HashFormatError, match="no metadata column 'nope'"):
        formats.read_hash_list(tmp_path / "m.parquet", metadata=["nope"])
    with pytest.raises(HashFormatError, match="not a usable"):
        formats.read_hash_list(tmp_path / "m.csv", metadata=["key"])


def test_recognised_columns_are_not_metadata(tmp_path):
    """Columns read as hash, id, key, quality or algorithm, quality_ok and other key-like
    names are never metadata; a column with no name is left out."""
    path = tmp_path / "wide.csv"
    h = sample(1).hashes[0].hex
    path.write_text(f"hash,id,path,url,quality,quality_ok,algorithm,,source\n"
                    f"{h},4,a.jpg,http://x,90,true,pdq,junk,crawler\n")
    got = formats.read_hash_list(path)
    assert got.keys.tolist() == ["a.jpg"] and got.ids.tolist() == [4]
    assert {k: v.tolist() for k, v in got.metadata.items()} == {"source": ["crawler"]}


def test_jsonl_fields_become_metadata_columns(tmp_path):
    h = sample(3).hashes
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in [
        {"hash": h[0].hex, "id": 1, "tags": "a b"},
        {"hash": h[1].hex, "id": 2, "score": 0.5, "flag": True, "extra": {"k": [1]}},
        {"hash": h[2].hex, "id": 3, "tags": None},
    ]) + "\n")
    got = formats.read_hash_list(path, chunk_rows=2)
    assert {k: v.tolist() for k, v in got.metadata.items()} == {
        "tags": ["a b", None, None], "score": [None, "0.5", None],
        "flag": [None, "true", None], "extra": [None, '{"k":[1]}', None]}


def test_untrusted_metadata_is_bounded(tmp_path):
    good = sample(1).hashes[0].hex
    wide = tmp_path / "wide.csv"
    names = [f"c{i}" for i in range(MAX_METADATA_COLUMNS + 1)]
    wide.write_text("hash," + ",".join(names) + "\n" + good + "," * len(names) + "\n")
    with pytest.raises(HashFormatError, match=f"at most {MAX_METADATA_COLUMNS}"):
        formats.read_hash_list(wide)
    assert len(formats.read_hash_list(wide, metadata=False)) == 1
    assert list(formats.read_hash_list(wide, metadata=["c3"]).metadata) == ["c3"]

    bad_name = tmp_path / "name.csv"
    bad_name.write_text(f"hash,{'n' * (MAX_METADATA_NAME + 1)}\n{good},x\n")
    with pytest.raises(HashFormatError, match="not a usable metadata name"):
        formats.read_hash_list(bad_name)
    twice = tmp_path / "twice.csv"
    twice.write_text(f"hash,tags,tags\n{good},a,b\n")
    with pytest.raises(HashFormatError, match="more than once"):
        formats.read_hash_list(twice)

    long = tmp_path / "long.csv"
    long.write_text(f"hash,tags\n{good},{'x' * (MAX_METADATA_CHARS + 1)}\n{good},ok\n")
    with pytest.raises(HashFormatError, match="line 2: 'tags': metadata value longer"):
        formats.read_hash_list(long)
    got = formats.read_hash_list(long, lenient=True)
    assert got.metadata["tags"].tolist() == ["ok"] and got.skipped[0][0] == 2
    assert got.ids.tolist() == [1]  # the skipped record keeps its number

    jl = tmp_path / "many.jsonl"
    jl.write_text("\n".join(json.dumps({"hash": good, f"f{i}": "v"})
                            for i in range(MAX_METADATA_COLUMNS + 2)) + "\n")
    got = formats.read_hash_list(jl, lenient=True)
    assert len(got.metadata) == MAX_METADATA_COLUMNS and len(got.skipped) == 2
    ctrl = tmp_path / "ctrl.jsonl"
    ctrl.write_text(json.dumps({"hash": good, "a\u0007b": "v"}) + "\n")
    with pytest.raises(HashFormatError, match="not a usable metadata name"):
        formats.read_hash_list(ctrl)

    pqf = tmp_path / "long.parquet"
    pq.write_table(pa.table({"hash": [good, good], "tags": ["y" * (MAX_METADATA_CHARS + 1),
                                                            "fine"]}), pqf)
    with pytest.raises(HashFormatError, match="row 1"):
        formats.read_hash_list(pqf)
    assert formats.read_hash_list(pqf, lenient=True).metadata["tags"].tolist() == ["fine"]


def test_parquet_metadata_types(tmp_path):
    good = sample(1).hashes[0].hex
    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({
        "hash": [good, good], "n": pa.array([1, None], pa.int32()), "x": [0.5, 2.0],
        "blob": pa.array([b"\x00", b"\x01"], pa.binary()), "nested": [[1], [2, 3]]}), path)
    got = formats.read_hash_list(path)
    assert {k: v.tolist() for k, v in got.metadata.items()} == {
        "n": ["1", None], "x": ["0.5", "2"]}
    with pytest.raises(HashFormatError, match="'blob' has type binary"):
        formats.read_hash_list(path, metadata=["blob"])


def test_concat_and_min_quality_keep_metadata(tmp_path):
    hl = sample(30)
    path = tmp_path / "q.parquet"
    formats.write_hash_list(path, hl)
    chunks = list(formats.iter_hash_list(path, chunk_rows=7, min_quality=50))
    got = formats.concat_lists(chunks, "pdq")
    keep = ~((hl.hashes.qualities >= 0) & (hl.hashes.qualities < 50))
    np.testing.assert_array_equal(got.ids, hl.ids[keep])
    assert got.metadata["tags"].tolist() == hl.metadata["tags"][keep].tolist()
    a = formats.HashList(hl.hashes[:2], hl.ids[:2], metadata={"x": np.array(["1", "2"],
                                                                            dtype=object)})
    b = formats.HashList(hl.hashes[2:3], hl.ids[2:3], metadata={"y": np.array(["3"],
                                                                             dtype=object)})
    both = formats.concat_lists([a, b], "pdq")
    assert {k: v.tolist() for k, v in both.metadata.items()} == {"x": ["1", "2", None],
                                                                 "y": [None, None, "3"]}


def test_metadata_goes_into_an_index(tmp_path):
    hl = sample(8)
    path = tmp_path / "m.csv"
    formats.write_hash_list(path, hl)
    got = formats.read_hash_list(path)
    idx = hx.HashIndex("pdq")
    idx.add(got.hashes, got.ids, metadata=got.metadata)
    assert idx.metadata_columns == ["collab", "tags", "note"]
    row = idx.metadata([int(hl.ids[1])])[0]
    assert row == {"collab": "Collab 1", "tags": "t1 x,y"}


def test_writer_refuses_metadata_it_could_not_read_back(tmp_path):
    hl = sample(3)
    with pytest.raises(HashFormatError, match="not a usable metadata column name"):
        formats.write_hash_list(tmp_path / "a.csv", hl, metadata={"key": ["a", "b", "c"]})
    with pytest.raises(HashFormatError, match="values must be str"):
        formats.write_hash_list(tmp_path / "a.csv", hl, metadata={"n": [1, 2, 3]})
    with pytest.raises(HashFormatError, match="at most"):
        formats.write_hash_list(tmp_path / "a.csv", hl,
                                metadata={"n": ["x" * (MAX_METADATA_CHARS + 1)] * 3})
    assert not (tmp_path / "a.csv").exists()


def test_missing_pyarrow_names_the_extra(tmp_path, monkeypatch):
    hl = sample(3)
    path = tmp_path / "p.parquet"
    formats.write_hash_list(path, hl)
    for mod in ("pyarrow", "pyarrow.parquet", "pyarrow.compute"):
        monkeypatch.setitem(sys.modules, mod, None)  # import fails as if not installed
    for call in (lambda: formats.read_hash_list(path),
                 lambda: formats.write_hash_list(tmp_path / "q.parquet", hl)):
        with pytest.raises(MissingDependencyError, match=r"pip install 'hashlib-ext\[parquet\]'"):
            call()
    assert not (tmp_path / "q.parquet").exists()
    # The text formats do not need it.
    formats.write_hash_list(tmp_path / "t.csv", hl)
    assert formats.read_hash_list(tmp_path / "t.csv").hashes == hl.hashes


def test_has_ids_says_whether_the_file_had_ids(tmp_path):
    hl = sample(5)
    plain = formats.HashList(hl.hashes, np.arange(5))
    for name, lst, expected in [("a.csv", hl, True), ("a.parquet", hl, True),
                                ("a.jsonl", hl, True), ("a.txt", plain, False)]:
        formats.write_hash_list(tmp_path / name, lst)
        assert formats.read_hash_list(tmp_path / name).has_ids is expected, name
    (tmp_path / "b.csv").write_text("hash,key\n" + hl.hashes[0].hex + ",k\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"hash": hl.hashes[0].hex}) + "\n")
    for name in ("b.csv", "b.jsonl"):
        chunks = list(formats.iter_hash_list(tmp_path / name))
        assert [c.has_ids for c in chunks] == [False], name
