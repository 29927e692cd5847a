"""``hashlib-ext convert IN OUT``: formats from extensions, everything kept (ids, keys,
qualities, TE metadata), refusals before any output is touched, lenient failures as
records, -q."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import hashlib_ext as hx
from hashlib_ext import formats
from hashlib_ext.cli import main

TE_CSV = """signal_type,signal_str,collab,category,tags
pdq,{h0},Sample Signals,INVESTIGATION_SEED,tag1 tag2
url,https://example.org/,Sample Signals,INVESTIGATION_SEED,
pdq,{h1},Other Collab,,
video_md5,d41d8cd98f00b204e9800998ecf8427e,Sample Signals,INVESTIGATION_SEED,
pdq,{h2},Sample Signals,WORTH_INVESTIGATING,x
"""


@pytest.fixture
def hashes() -> hx.HashArray:
    rng = np.random.default_rng(7)
    return hx.HashArray(rng.integers(0, 256, (3, 32), dtype=np.uint8), "pdq",
                        np.array([90, 30, -1]))


@pytest.fixture
def te_file(tmp_path, hashes):
    path = tmp_path / "export.csv"
    path.write_text(TE_CSV.format(h0=hashes[0].hex, h1=hashes[1].hex, h2=hashes[2].hex))
    return path


def test_te_to_parquet_to_csv_keeps_collab_category_tags(te_file, tmp_path, hashes, capsys):
    pq_path, csv_path = tmp_path / "signals.parquet", tmp_path / "back.csv"
    assert main(["convert", str(te_file), str(pq_path)]) == 0
    err = capsys.readouterr().err
    assert "converted 3 pdq hashes" in err and "2 records of other algorithms" in err
    assert main(["convert", str(pq_path), "-o", str(csv_path), "-q"]) == 0
    assert capsys.readouterr().err == ""  # -q: no note
    got = formats.read_hash_list(csv_path)
    assert got.hashes.hex() == hashes.hex() and got.ids.tolist() == [0, 1, 2]
    assert {k: v.tolist() for k, v in got.metadata.items()} == {
        "collab": ["Sample Signals", "Other Collab", "Sample Signals"],
        "category": ["INVESTIGATION_SEED", None, "WORTH_INVESTIGATING"],
        "tags": ["tag1 tag2", None, "x"]}
    # ... and back to ThreatExchange's own shape.
    te_again = tmp_path / "again.csv"
    assert main(["convert", str(csv_path), str(te_again), "-f", "te", "-q"]) == 0
    assert te_again.read_text().splitlines()[1] == \
        f"pdq,{hashes[0].hex},Sample Signals,INVESTIGATION_SEED,tag1 tag2"


@pytest.mark.parametrize("out_name", ["o.jsonl", "o.json.gz", "o.parquet", "o.tsv", "o.csv"])
def test_ids_keys_qualities_kept(tmp_path, hashes, out_name):
    src = tmp_path / "in.jsonl"
    formats.write_hash_list(src, hashes, ids=[10, -4, 99], keys=["a b", None, "c,\"d\""],
                            metadata={"src": ["x", None, "z"]})
    assert main(["convert", str(src), str(tmp_path / out_name), "-q"]) == 0
    got = formats.read_hash_list(tmp_path / out_name)
    assert got.hashes == hashes and got.ids.tolist() == [10, -4, 99]
    assert got.hashes.qualities.tolist() == [90, 30, -1]
    null = "" if out_name.endswith((".tsv", ".csv")) else None
    assert got.keys.tolist() == ["a b", null, "c,\"d\""]
    assert got.metadata["src"].tolist() == ["x", None, "z"]


def test_stdout_and_input_format(tmp_path, hashes, capsys):
    src = tmp_path / "hashes.dat"  # no telling extension
    src.write_text("".join(f"{h} k{i}\n" for i, h in enumerate(hashes.hex())))
    assert main(["convert", str(src), "-", "--input-format", "hex", "-f", "jsonl"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["key"] for r in rows] == ["k0", "k1", "k2"] and "to stdout" in err


@pytest.mark.parametrize("argv,message", [
    (["{tmp}/in.csv", "{tmp}/in.csv"], "is IN"),
    (["{tmp}/in.csv", "{tmp}/x.parquet", "-f", "csv"], "does not match"),
    (["{tmp}/in.csv"], "give the output once"),
    (["{tmp}/in.csv", "{tmp}/x.csv", "-o", "{tmp}/y.csv"], "give the output once"),
    (["{tmp}/in.csv", "-", "-f", "parquet"], "written to a file"),
    (["{tmp}/in.csv", "{tmp}/x.zip", "-f", "xml"], "unknown hash-list format"),
])
def test_usage_errors(tmp_path, hashes, capsys, argv, message):
    formats.write_hash_list(tmp_path / "in.csv", hashes)
    (tmp_path / "x.parquet").write_text("old\n")
    assert code_of(["convert", *[a.format(tmp=tmp_path) for a in argv]]) == 2
    assert message in capsys.readouterr().err
    assert (tmp_path / "x.parquet").read_text() == "old\n"


def code_of(argv: list[str]) -> int:
    """The exit status of the command, whether it returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def test_hex_output_refuses_metadata_unless_dropped(te_file, tmp_path, capsys):
    out = tmp_path / "plain.txt"
    assert main(["convert", str(te_file), str(out)]) == 1
    err = capsys.readouterr().err
    assert "hex lines hold no metadata" in err and not out.exists()
    assert not err.startswith(f"hashlib-ext: {te_file}: ")  # about OUT, not a failed input
    assert main(["convert", str(te_file), str(out), "--no-metadata", "-q"]) == 0
    assert len(out.read_text().splitlines()) == 3


def test_lenient_skips_are_failure_records(tmp_path, hashes, capsys):
    src = tmp_path / "bad.csv"
    src.write_text(f"hash\n{hashes[0].hex}\nzz\n{hashes[1].hex}\n{'ab' * 31}\n")
    out, errors = tmp_path / "ok.jsonl", tmp_path / "errors.jsonl"
    assert main(["convert", str(src), str(out)]) == 1  # strict: the first bad line
    err = capsys.readouterr().err
    assert err.startswith(f"hashlib-ext: {src}: HashFormatError: line 3: ") and not out.exists()
    assert err.count(str(src)) == 1
    assert main(["convert", str(src), str(out), "--lenient", "--errors", str(errors)]) == 0
    records = [json.loads(x) for x in errors.read_text().splitlines()]
    assert [(r["input"], r["type"]) for r in records] == [(str(src), "HashFormatError")] * 2
    assert [r["message"].split(":")[0] for r in records] == ["line 3", "line 5"]
    assert not any(str(src) in r["message"] for r in records)
    got = formats.read_hash_list(out)
    assert got.ids.tolist() == [0, 2] and got.hashes.hex() == hashes.hex()[:2]


def test_algorithm_and_min_quality(tmp_path, bundled, capsys):
    from PIL import Image

    flat = tmp_path / "flat.png"  # a blank image: PDQ quality below 50
    Image.new("RGB", (64, 64), (120, 120, 120)).save(flat)
    src = tmp_path / "both.csv"
    paths = [str(flat), str(bundled[0])]
    assert main(["hash", *paths, "-a", "pdq,phash", "-o", str(src), "-j", "1"]) == 0
    assert main(["convert", str(src), str(tmp_path / "ph.parquet"), "-a", "phash"]) == 0
    got = formats.read_hash_list(tmp_path / "ph.parquet")
    assert got.hashes.algorithm == "phash" and got.keys.tolist() == paths
    assert code_of(["convert", str(src), str(tmp_path / "hq.jsonl"), "--min-quality",
                    "101"]) == 2
    capsys.readouterr()
    assert main(["convert", str(src), str(tmp_path / "hq.jsonl"), "--min-quality", "50"]) == 0
    err = capsys.readouterr().err
    assert "converted 1 pdq hash " in err and "1 below quality 50 left out" in err
    assert "2 records of other algorithms" in err
    assert formats.read_hash_list(tmp_path / "hq.jsonl").keys.tolist() == [str(bundled[0])]


def test_missing_pyarrow_is_one_line_naming_the_extra(te_file, tmp_path, capsys, monkeypatch):
    for mod in ("pyarrow", "pyarrow.parquet", "pyarrow.compute"):
        monkeypatch.setitem(sys.modules, mod, None)
    assert main(["convert", str(te_file), str(tmp_path / "x.parquet")]) == 1
    err = capsys.readouterr().err
    assert "pip install 'hashlib-ext[parquet]'" in err and "Traceback" not in err
