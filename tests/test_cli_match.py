"""``hashlib-ext index``, ``match`` and ``dedup`` end to end, on the bundled images and on
hash files: outputs checked against the library, and the exit codes."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import hashlib_ext as hx
from hashlib_ext import formats
from hashlib_ext.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def corpus(bundled, tmp_path_factory):
    """The bundled images, their PDQ hashes as a CSV hash list (path keys), and an index."""
    d = tmp_path_factory.mktemp("corpus")
    paths = [str(p) for p in bundled]
    hashes = hx.hash_images(paths, "pdq", workers=1).hashes
    ids = np.arange(1000, 1000 + len(paths), dtype=np.int64)
    hashfile = d / "known.csv"
    formats.write_hash_list(hashfile, hashes, ids, paths)
    index = d / "known.hxi"
    assert main(["index", "build", str(hashfile), "-o", str(index)]) == 0
    return {"paths": paths, "hashes": hashes, "ids": ids, "hashfile": hashfile, "index": index,
            "dir": d}


def test_index_info(capsys, corpus):
    code, out, _ = run(capsys, "index", "info", corpus["index"], "--format", "json")
    assert code == 0
    info = json.loads(out)
    assert info["algorithm"] == "pdq" and info["bits"] == 256
    assert info["count"] == len(corpus["paths"]) and info["keys"] == len(corpus["paths"])
    assert (info["min_id"], info["max_id"]) == (1000, 1000 + len(corpus["paths"]) - 1)
    idx = hx.HashIndex.load(corpus["index"])
    assert idx.keys([1000]) == [corpus["paths"][0]]
    code, out, _ = run(capsys, "index", "info", corpus["index"])
    assert code == 0 and "pdq" in out


def test_index_build_saves_search_tables(capsys, corpus, tmp_path):
    # With MIH tables (forced here, chosen by size otherwise) the saved file holds them, so
    # `match` does not rebuild them on every load; results are the same.
    out = tmp_path / "mih.hxi"
    code, _, err = run(capsys, "index", "build", corpus["hashfile"], "-o", out, "--kind", "mih")
    assert code == 0, err
    code, info, _ = run(capsys, "index", "info", out, "--format", "json")
    assert json.loads(info)["mih_widths"]
    code, got, _ = run(capsys, "match", out, corpus["hashfile"], "-f", "jsonl")
    code2, want, _ = run(capsys, "match", corpus["index"], corpus["hashfile"], "-f", "jsonl")
    assert code == code2 == 0 and got == want and len(got.splitlines()) == len(corpus["paths"])


def test_match_images_finds_themselves_and_edited_copies(capsys, corpus, tmp_path):
    paths = corpus["paths"]
    small = tmp_path / "small copy.jpg"
    with Image.open(paths[5]) as im:
        im.resize((im.width // 2, im.height // 2)).save(small, quality=70)
    expected_d = hx.hash_image(small, "pdq") - corpus["hashes"][5]
    assert expected_d <= hx.default_threshold("pdq")
    code, out, err = run(capsys, "match", corpus["index"], paths[0], paths[3], small, "--no-progress")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["query"], int(r["id"]), r["key"], int(r["distance"])) for r in rows] == [
        (paths[0], 1000, paths[0], 0),
        (paths[3], 1003, paths[3], 0),
        (str(small), 1005, paths[5], expected_d),
    ]
    assert "3 of 3 queries matched" in err


def test_match_hash_file_json_and_unmatched(capsys, corpus, tmp_path):
    rng = np.random.default_rng(0)
    queries = np.concatenate([corpus["hashes"].codes[[2, 7]],
                              rng.integers(0, 256, (1, 32), dtype=np.uint8)])
    qfile = tmp_path / "queries.txt"
    formats.write_hash_list(qfile, hx.HashArray(queries, "pdq"), keys=["q-a", "q-b", "q-c"])
    # A query within the threshold of a known hash but not equal to it.
    near = corpus["hashes"].codes[9].copy()
    near[:4] ^= 0xFF  # 32 bits flipped
    nfile = tmp_path / "near.jsonl"
    formats.write_hash_list(nfile, hx.HashArray(near[None], "pdq"))
    code, out, err = run(capsys, "match", corpus["index"], qfile, nfile, "--format", "json",
                         "--unmatched", "--threshold", "32")
    assert code == 0, err
    rows = json.loads(out)
    assert rows == [
        {"query": "q-a", "id": 1002, "key": corpus["paths"][2], "distance": 0},
        {"query": "q-b", "id": 1007, "key": corpus["paths"][7], "distance": 0},
        {"query": "q-c", "id": None, "key": None, "distance": None},
        {"query": f"{nfile}#0", "id": 1009, "key": corpus["paths"][9], "distance": 32},
    ]
    # The threshold is inclusive: at 31 the 32-bit neighbour no longer matches.
    code, out, _ = run(capsys, "match", corpus["index"], nfile, "--format", "jsonl", "-t", "31")
    assert code == 0 and out == ""


def test_match_dihedral_reports_the_variant(capsys, corpus, tmp_path):
    rotated = tmp_path / "rotated.png"
    with Image.open(corpus["paths"][4]) as im:
        im.rotate(90, expand=True).save(rotated)
    code, out, _ = run(capsys, "match", corpus["index"], rotated, "--no-progress")
    assert code == 0 and out.strip() == "query,id,key,distance,error_type,error"  # no match
    code, out, err = run(capsys, "match", corpus["index"], rotated, "--dihedral", "--no-progress",
                         "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["id"] == 1004 and row["distance"] <= 2 and row["variant"] != 0


def test_match_exit_codes(capsys, corpus, tmp_path):
    paths = corpus["paths"]
    # A missing input fails the run (exit 1) but the good inputs are still matched.
    code, out, err = run(capsys, "match", corpus["index"], paths[1], tmp_path / "nope.jpg", "--no-progress")
    assert code == 1
    assert "hashlib-ext: " in err and "nope.jpg" in err
    assert ",1001," in out
    # An undecodable image: reported, exit 1.
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    code, _, err = run(capsys, "match", corpus["index"], bad, "--no-progress")
    assert code == 1 and "broken.jpg" in err
    # A missing or corrupt index.
    code, _, err = run(capsys, "match", tmp_path / "none.hxi", paths[0])
    assert code == 1 and err.startswith("hashlib-ext: ")
    corrupt = tmp_path / "corrupt.hxi"
    data = bytearray(corpus["index"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    code, _, err = run(capsys, "match", corrupt, paths[0])
    assert code == 1 and ("corrupt" in err.lower() or "checksum" in err.lower())
    # A malformed hash list: strict fails naming the line; lenient skips it and reports it.
    mal = tmp_path / "mal.txt"
    mal.write_text(f"{corpus['hashes'][0].hex}\nd41d8cd98f00b204e9800998ecf8427e\n")
    code, out, err = run(capsys, "match", corpus["index"], mal)
    assert code == 1 and "line 2" in err
    code, out, err = run(capsys, "match", corpus["index"], mal, "--lenient")
    assert code == 0 and "line 2" in err and ",1000," in out
    # Usage errors exit 2.
    with pytest.raises(SystemExit) as e:
        main(["match", str(corpus["index"])])
    assert e.value.code == 2
    code, _, err = run(capsys, "match", corpus["index"], paths[0], "--threshold", "-1")
    assert code == 2


def test_index_build_formats_and_errors(capsys, corpus, tmp_path):
    hashes = corpus["hashes"]
    te = tmp_path / "export.csv"
    te.write_text("signal_type,signal_str,collab,category,tags\n"
                  f"pdq,{hashes[0].hex},c,INVESTIGATION_SEED,a b\n"
                  "url,https://example.org/,c,INVESTIGATION_SEED,\n"
                  f"pdq,{hashes[1].hex},c,INVESTIGATION_SEED,\n")
    out = tmp_path / "te.hxi"
    code, _, err = run(capsys, "index", "build", te, "-o", out)
    assert code == 0 and "1 rows of other algorithms ignored" in err
    idx = hx.HashIndex.load(out)
    assert len(idx) == 2 and idx.search(hashes[1], 0) == [[(1, 0)]]

    pq_file = tmp_path / "h.parquet"
    formats.write_hash_list(pq_file, hashes, corpus["ids"])
    code, _, _ = run(capsys, "index", "build", pq_file, "-o", out)
    assert code == 0
    assert sorted(hx.HashIndex.load(out).ids.tolist()) == corpus["ids"].tolist()

    # Strict: a malformed line fails and the old index stays as it was.
    before = out.read_bytes()
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{hashes[0].hex}\n{hashes[1].hex[:-2]}\n")
    code, _, err = run(capsys, "index", "build", bad, "-o", out)
    assert code == 1 and f"{bad}: HashFormatError: line 2" in err
    assert out.read_bytes() == before
    code, _, err = run(capsys, "index", "build", bad, "-o", out, "--lenient")
    assert code == 0 and "skipped" in err and len(hx.HashIndex.load(out)) == 1
    code, _, err = run(capsys, "index", "build", tmp_path / "missing.csv", "-o", out)
    assert code == 1
    # A list of another algorithm's hashes is not indexed as an empty index.
    code, _, err = run(capsys, "index", "build", te, "-o", tmp_path / "x.hxi", "--algorithm",
                       "phash")
    assert code == 1 and "no phash hashes" in err and not (tmp_path / "x.hxi").exists()


def _planted_folder(paths: list[str], folder) -> dict[str, set[str]]:
    """Copies and edits of some bundled images; returns the expected groups of file names."""
    folder.mkdir()
    names = []
    for p in paths[:6]:
        names.append(shutil.copy(p, folder))
    with Image.open(paths[0]) as im:
        im.resize((im.width // 2, im.height // 2)).save(folder / "a_small.jpg", quality=60)
    with Image.open(paths[1]) as im:
        im.save(folder / "sub_b.png")
    shutil.copy(paths[2], folder / "c_copy.jpg")
    from pathlib import Path

    n = [Path(x).name for x in names]
    return {n[0]: {n[0], "a_small.jpg"}, n[1]: {n[1], "sub_b.png"}, n[2]: {n[2], "c_copy.jpg"}}


def test_dedup_folder_of_images(capsys, corpus, tmp_path):
    folder = tmp_path / "imgs"
    expected = _planted_folder(corpus["paths"], folder)
    clusters_file = tmp_path / "clusters.json"
    code, out, err = run(capsys, "dedup", folder, "--output", clusters_file, "--no-progress")
    assert code == 0, err
    assert out == ""
    report = json.loads(clusters_file.read_text())
    assert report["algorithm"] == "pdq" and report["threshold"] == hx.default_threshold("pdq")
    assert report["items"] == 9
    from pathlib import Path

    got = sorted(sorted(Path(m["key"]).name for m in c) for c in report["clusters"])
    assert got == sorted(sorted(g) for g in expected.values())
    # Another algorithm, CSV output.
    code, out, _ = run(capsys, "dedup", folder, "--algorithm", "phash", "--format", "csv", "--no-progress")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["cluster"] for r in rows} == {"0", "1", "2"}


def test_dedup_recursive_and_errors(capsys, corpus, tmp_path):
    top = tmp_path / "top"
    (top / "nested").mkdir(parents=True)
    shutil.copy(corpus["paths"][0], top / "x.jpg")
    shutil.copy(corpus["paths"][0], top / "nested" / "y.jpg")
    code, out, _ = run(capsys, "dedup", top, "--no-progress")
    assert code == 0 and json.loads(out)["clusters"] == []
    code, out, _ = run(capsys, "dedup", top, "--no-progress", "--recursive")
    assert code == 0
    (cluster,) = json.loads(out)["clusters"]
    assert len(cluster) == 2
    (top / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, out, err = run(capsys, "dedup", top, "--no-progress", "--recursive")
    assert code == 1 and "broken.jpg" in err
    assert len(json.loads(out)["clusters"]) == 1  # the rest is still clustered
    code, _, err = run(capsys, "dedup", tmp_path / "nothing-here")
    assert code == 1 and "hashlib-ext: " in err


def test_dedup_hash_file_matches_library(capsys, tmp_path):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (300, 8), dtype=np.uint8)
    codes[10] = codes[20]
    codes[30] = codes[40] ^ np.array([1, 0, 0, 0, 0, 0, 0, 3], np.uint8)
    ids = rng.choice(10**9, 300, replace=False)
    path = tmp_path / "list.tsv"
    formats.write_hash_list(path, hx.HashArray(codes, "phash"), ids)
    code, out, err = run(capsys, "dedup", path, "--no-progress")
    assert code == 0, err
    report = json.loads(out)
    assert report["algorithm"] == "phash"
    expected = hx.find_duplicates(codes, hx.default_threshold("phash"), ids=ids)
    assert len(expected) >= 2
    got = [[m["id"] for m in c] for c in report["clusters"]]
    assert got == expected


def test_python_dash_m_entry_point(corpus, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "hashlib_ext", "match", str(corpus["index"]),
         str(corpus["hashfile"]), "--format", "jsonl"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == len(corpus["paths"])
    assert all(r["distance"] == 0 and r["query"] == r["key"] for r in rows)
