"""Hostile and awkward inputs to the CLI workflows: hash -> convert -> index build ->
index add / merge -> match, dedup, --errors, folder walks, signals.

A test of behaviour that is right passes; a test that found a bug asserts the right
behaviour (the bugs it found are fixed; each test keeps them fixed).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import hashlib_ext as hx
from hashlib_ext.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err




@pytest.fixture(scope="module")
def hexes(bundled) -> list[str]:
    """PDQ hex of the first 8 bundled images (distinct, far apart)."""
    return [hx.hash_image(p, "pdq").hex for p in bundled[:8]]


@pytest.fixture()
def photos(tmp_path, bundled) -> Path:
    """A folder of 3 bundled JPEGs."""
    d = tmp_path / "photos"
    d.mkdir()
    for p in bundled[:3]:
        shutil.copy(p, d / p.name)
    return d


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def build(capsys, tmp_path, hexes, name="known", n=4, start=0) -> Path:
    """An index of hexes[start:start+n] with ids start.., keys k<i>."""
    src = write_csv(tmp_path / f"{name}.csv", ["hash", "id", "key"],
                    [[hexes[i], i, f"k{i}"] for i in range(start, start + n)])
    idx = tmp_path / f"{name}.hxi"
    code, _, err = run(capsys, "index", "build", src, "-o", idx, "-q")
    assert code == 0, err
    return idx


def jsonl_rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# == outputs that would destroy results or inputs ======================================

def test_errors_file_equal_to_the_index_of_index_add_is_refused(capsys, tmp_path, hexes):
    idx = build(capsys, tmp_path, hexes)
    before = idx.read_bytes()
    more = tmp_path / "more.txt"
    more.write_text(hexes[5] + "\n")
    code, _, _ = run(capsys, "index", "add", idx, more, "--renumber", "--errors", idx)
    assert code == 2
    assert idx.read_bytes() == before


@pytest.mark.parametrize("command", ["match", "dedup", "convert"])
def test_errors_file_equal_to_output_is_refused(capsys, tmp_path, hexes, command):
    idx = build(capsys, tmp_path, hexes)
    q = tmp_path / "q.txt"
    q.write_text(hexes[0] + "\n" + hexes[0] + "\n")
    out = tmp_path / "result.csv"
    out.write_text("OLD\n")
    argv = {"match": ["match", idx, q, "-o", out],
            "dedup": ["dedup", q, "-o", out],
            "convert": ["convert", q, out]}[command]
    code, _, _ = run(capsys, *argv, "--errors", out)
    assert code == 2
    assert out.read_text() == "OLD\n"


@pytest.mark.parametrize("option", ["-o", "--errors"])
@pytest.mark.parametrize("command", ["hash", "dedup"])
def test_output_inside_an_input_folder_does_not_overwrite_an_image(capsys, photos,
                                                                   option, command):
    victim = sorted(photos.iterdir())[0]
    before = victim.read_bytes()
    code, _, _ = run(capsys, command, photos, option, victim, "-j", "1", "-q")
    assert victim.read_bytes() == before
    assert code == 2


@pytest.mark.parametrize("argv", [
    ["convert", "{in}", "{in}"],
    ["convert", "{in}", "{link}"],
    ["convert", "{link}", "{in}"],
    ["index", "build", "{in}", "-o", "{link}"],
    ["dedup", "{in}", "-o", "{link}"],
    ["match", "{idx}", "{in}", "-o", "{link}"],
    ["match", "{idx}", "{in}", "--errors", "{link}"],
    ["index", "merge", "{idx}", "-o", "{idxlink}"],
    ["index", "add", "{idxlink}", "{idx}"],
])
def test_output_equal_to_an_input_directly_or_via_symlink_is_refused(
        capsys, tmp_path, hexes, argv):
    idx = build(capsys, tmp_path, hexes)
    src = tmp_path / "in.csv"
    src.write_text("hash\n" + hexes[0] + "\n")
    (tmp_path / "link.csv").symlink_to(src)
    (tmp_path / "idxlink.hxi").symlink_to(idx)
    names = {"in": src, "link": tmp_path / "link.csv", "idx": idx,
             "idxlink": tmp_path / "idxlink.hxi"}
    before = (src.read_bytes(), idx.read_bytes())
    code, _, err = run(capsys, *[a.format(**names) for a in argv])
    assert code == 2, err
    assert (src.read_bytes(), idx.read_bytes()) == before


@pytest.mark.parametrize("argv,message", [
    (["hash", "{img}", "-f", "parquet", "-o", "{dir}/x.csv"], "does not match"),
    (["hash", "{img}", "-o", "{dir}/x.parquet.gz"], "compressed inside"),
    (["hash", "{img}", "-o", "{dir}/missing/x.csv"], "does not exist"),
    (["convert", "{list}", "{dir}/x.csv", "-f", "parquet"], "does not match"),
    (["convert", "{list}", "{dir}/missing/x.csv"], "does not exist"),
    (["hash", "{img}", "-f", "te", "-a", "phash", "-o", "{dir}/x.csv"], "PDQ"),
])
def test_refused_outputs_exit_2_and_leave_the_old_file(capsys, tmp_path, bundled, hexes,
                                                       argv, message):
    lst = tmp_path / "l.txt"
    lst.write_text(hexes[0] + "\n")
    old = tmp_path / "x.csv"
    old.write_text("OLD\n")
    names = {"img": bundled[0], "dir": tmp_path, "list": lst}
    code, out, err = run(capsys, *[a.format(**names) for a in argv])
    assert code == 2 and message in err
    assert old.read_text() == "OLD\n"
    assert not out


# == ids ===============================================================================

def test_duplicate_ids_inside_one_list_do_not_collide(capsys, tmp_path, hexes):
    src = write_csv(tmp_path / "dup.csv", ["hash", "id", "key"],
                    [[hexes[0], 5, "first"], [hexes[1], 5, "second"], [hexes[2], 6, "third"]])
    idx = tmp_path / "dup.hxi"
    code, _, _ = run(capsys, "index", "build", src, "-o", idx, "-q")
    if code == 0:
        ids = hx.HashIndex.load(idx).ids.tolist()
        assert len(set(ids)) == len(ids)
    else:
        assert not idx.exists()


def test_add_after_the_largest_int64_id_is_a_clean_error(capsys, tmp_path, hexes):
    src = write_csv(tmp_path / "max.csv", ["hash", "id"], [[hexes[0], 2**63 - 1]])
    idx = tmp_path / "max.hxi"
    assert run(capsys, "index", "build", src, "-o", idx, "-q")[0] == 0
    before = idx.read_bytes()
    more = tmp_path / "more.txt"
    more.write_text(hexes[1] + "\n")
    code, _, err = run(capsys, "index", "add", idx, more)
    assert code in (1, 2) and "hashlib-ext" in err
    assert idx.read_bytes() == before


def test_id_over_int64_and_negative_ids(capsys, tmp_path, hexes):
    over = write_csv(tmp_path / "over.csv", ["hash", "id"], [[hexes[0], 2**63]])
    code, _, err = run(capsys, "index", "build", over, "-o", tmp_path / "o.hxi")
    assert code == 1 and "line 2" in err and "int64" in err
    assert not (tmp_path / "o.hxi").exists()
    neg = write_csv(tmp_path / "neg.csv", ["hash", "id"], [[hexes[0], -5], [hexes[1], -3]])
    idx = tmp_path / "neg.hxi"
    assert run(capsys, "index", "build", neg, "-o", idx, "-q")[0] == 0
    more = tmp_path / "more.txt"
    more.write_text(hexes[2] + "\n")
    assert run(capsys, "index", "add", idx, more, "-q")[0] == 0
    index = hx.HashIndex.load(idx)
    assert sorted(index.ids.tolist()) == [-5, -3, 0]
    assert index.search(hx.Hash.from_hex(hexes[2], "pdq"), 0) == [[(0, 0)]]


def test_dedup_ids_are_distinct_across_inputs(capsys, tmp_path, hexes):
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_text("".join(h + "\n" for h in hexes[:3]))
    b.write_text("".join(h + "\n" for h in hexes[:3]))
    code, out, _ = run(capsys, "dedup", a, b, "-q")
    assert code == 0
    clusters = json.loads(out)["clusters"]
    assert len(clusters) == 3
    ids = [m["id"] for c in clusters for m in c]
    assert len(set(ids)) == len(ids)


def test_merge_renumber_keeps_the_first_index_ids(capsys, tmp_path, hexes):
    a = write_csv(tmp_path / "a.csv", ["hash", "id"], [[hexes[i], 100 + i] for i in range(3)])
    b = write_csv(tmp_path / "b.csv", ["hash", "id"], [[hexes[i], 100 + i] for i in range(3, 6)])
    for src in (a, b):
        assert run(capsys, "index", "build", src, "-o", src.with_suffix(".hxi"), "-q")[0] == 0
    out = tmp_path / "ab.hxi"
    code, _, err = run(capsys, "index", "merge", a.with_suffix(".hxi"), b.with_suffix(".hxi"),
                       "-o", out, "--renumber", "-q")
    assert code == 0, err
    ids = hx.HashIndex.load(out).ids.tolist()
    assert sorted(ids)[:3] == [100, 101, 102] and len(set(ids)) == 6


def test_merge_of_an_index_with_itself_needs_renumber(capsys, tmp_path, hexes):
    idx = build(capsys, tmp_path, hexes)
    out = tmp_path / "twice.hxi"
    code, _, err = run(capsys, "index", "merge", idx, idx, "-o", out)
    assert code == 2 and "--renumber" in err and not out.exists()
    assert run(capsys, "index", "merge", idx, idx, "-o", out, "--renumber", "-q")[0] == 0
    assert len(hx.HashIndex.load(out)) == 8


# == metadata and round trips ==========================================================

def test_metadata_named_like_match_columns_does_not_overwrite_them(capsys, tmp_path, hexes):
    src = write_csv(tmp_path / "clash.csv",
                    ["hash", "id", "key", "distance", "query", "error", "error_type"],
                    [[hexes[i], i, f"k{i}", f"d{i}", f"q{i}", f"e{i}", f"t{i}"]
                     for i in range(3)])
    idx = tmp_path / "clash.hxi"
    assert run(capsys, "index", "build", src, "-o", idx, "-q")[0] == 0
    q = tmp_path / "q.txt"
    q.write_text(hexes[0] + " mine\n")
    code, out, _ = run(capsys, "match", idx, q, "-t", "0", "-f", "jsonl", "-q")
    assert code == 0
    (row,) = jsonl_rows(out)
    assert row["query"] == "mine" and row["distance"] == 0 and row["id"] == 0
    assert "error_type" not in row
    code, out, _ = run(capsys, "match", idx, q, "-t", "0", "-q")
    header = next(csv.reader(io.StringIO(out)))
    assert len(header) == len(set(header))


def test_te_metadata_survives_convert_build_add_merge_match(capsys, tmp_path, hexes):
    te = tmp_path / "te.csv"
    te.write_text("signal_type,signal_str,collab,category,tags\n" + "".join(
        f'pdq,{hexes[i]},coll{i},cat{i},"t{i} x, y"\n' for i in range(3))
        + "url,http://example.com,c,c,t\n")
    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps({"hash": hexes[i], "key": f"x{i}", "tags": f"n{i}",
                                         "weird": "a\tb\nc\"d,é"}) + "\n"
                             for i in range(3, 5)))
    pq = tmp_path / "te.parquet"
    gz = tmp_path / "extra.jsonl.gz"
    assert run(capsys, "convert", te, pq, "-q")[0] == 0
    assert run(capsys, "convert", extra, gz, "-q")[0] == 0
    a, b, ab = tmp_path / "a.hxi", tmp_path / "b.hxi", tmp_path / "ab.hxi"
    assert run(capsys, "index", "build", pq, "-o", a, "-q")[0] == 0
    assert run(capsys, "index", "add", a, gz, "--renumber", "-q")[0] == 0
    assert run(capsys, "index", "build", extra, "-o", b, "-q")[0] == 0
    assert run(capsys, "index", "merge", a, b, "-o", ab, "--renumber", "-q")[0] == 0
    q = tmp_path / "q.txt"
    q.write_text("".join(f"{h} q{i}\n" for i, h in enumerate(hexes[:5])))
    code, out, err = run(capsys, "match", ab, q, "-t", "0", "-f", "jsonl", "-q")
    assert code == 0, err
    rows = jsonl_rows(out)
    by_query: dict[str, list[dict]] = {}
    for r in rows:
        by_query.setdefault(r["query"], []).append(r)
    assert by_query["q1"][0]["collab"] == "coll1" and by_query["q1"][0]["tags"] == "t1 x, y"
    assert {r["key"] for r in by_query["q3"]} == {"x3"} and len(by_query["q3"]) == 2
    assert all(r["weird"] == "a\tb\nc\"d,é" and r["tags"] == "n3" for r in by_query["q3"])


@pytest.mark.parametrize("fmt,ext", [("csv", "csv"), ("tsv", "tsv"), ("te", "csv"),
                                     ("jsonl", "jsonl"), ("json", "json"),
                                     ("parquet", "parquet")])
def test_awkward_file_names_survive_hash_and_index_build(capsys, tmp_path, bundled, fmt, ext):
    d = tmp_path / "names"
    d.mkdir()
    names = ["comma,name.jpg", "new\nline.jpg", "tab\tname.jpg", 'quote"d.jpg',
             " lead space.jpg", "#hash.jpg"]
    for src, name in zip(bundled, names, strict=False):
        shutil.copy(src, d / name)
    out = tmp_path / f"h.{ext}"
    code, _, err = run(capsys, "hash", d, "-f", fmt, "-o", out, "-j", "1", "-q")
    assert code == 0, err
    idx = tmp_path / "h.hxi"
    assert run(capsys, "index", "build", out, "-o", idx, "-q")[0] == 0
    index = hx.HashIndex.load(idx)
    assert sorted(index.keys(index.ids)) == sorted(str(d / n) for n in names)


@pytest.mark.parametrize("route", ["hash-parquet", "convert-jsonl", "convert-parquet"])
def test_hash_output_in_any_format_can_be_added_to_an_index(capsys, tmp_path, bundled,
                                                            hexes, route):
    idx = build(capsys, tmp_path, hexes, n=4)
    imgs = [bundled[10], bundled[11]]
    if route == "hash-parquet":
        new = tmp_path / "new.parquet"
        assert run(capsys, "hash", *imgs, "-o", new, "-j", "1", "-q")[0] == 0
    else:
        plain = tmp_path / "new.csv"
        assert run(capsys, "hash", *imgs, "-o", plain, "-j", "1", "-q")[0] == 0
        assert run(capsys, "index", "add", idx, plain, "-q")[0] == 0  # works as it is
        idx = build(capsys, tmp_path, hexes, name="again", n=4)
        new = tmp_path / ("new.jsonl" if route == "convert-jsonl" else "new.parquet")
        assert run(capsys, "convert", plain, new, "-q")[0] == 0
    code, _, err = run(capsys, "index", "add", idx, new, "-q")
    assert code == 0, err
    assert len(hx.HashIndex.load(idx)) == 6


def test_build_takes_the_index_algorithm_rows_of_a_later_multi_algorithm_list(
        capsys, tmp_path, bundled, hexes):
    first = tmp_path / "first.txt"
    first.write_text("".join(h + "\n" for h in hexes[:3]))
    multi = tmp_path / "multi.csv"
    assert run(capsys, "hash", bundled[10], bundled[11], "-a", "phash,pdq", "-o", multi,
               "-j", "1", "-q")[0] == 0
    idx = tmp_path / "x.hxi"
    code, _, err = run(capsys, "index", "build", first, multi, "-o", idx)
    assert code == 0, err
    index = hx.HashIndex.load(idx)
    assert index.algorithm == "pdq" and len(index) == 5


def test_lists_holding_only_other_algorithms(capsys, tmp_path, bundled, hexes):
    idx = build(capsys, tmp_path, hexes)
    before = idx.read_bytes()
    ph = tmp_path / "ph.csv"
    assert run(capsys, "hash", bundled[0], bundled[1], "-a", "phash,dhash", "-o", ph,
               "-j", "1", "-q")[0] == 0
    code, out, err = run(capsys, "match", idx, ph, "-q")
    assert code == 1
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["error_type"] for r in rows] == ["HashFormatError"]
    assert "other algorithms" in rows[0]["error"] and str(ph) not in rows[0]["error"]
    code, _, err = run(capsys, "index", "add", idx, ph)
    assert code == 1 and "nothing added" in err and idx.read_bytes() == before
    code, out, err = run(capsys, "dedup", tmp_path / "known.csv", ph, "-q")
    assert code == 1
    assert [f["input"] for f in json.loads(out)["failures"]] == [str(ph)]


def test_more_than_64_metadata_columns_is_a_clean_refusal(capsys, tmp_path, hexes):
    wide = write_csv(tmp_path / "wide.csv", ["hash"] + [f"c{j}" for j in range(100)],
                     [[h] + [f"v{j}" for j in range(100)] for h in hexes[:3]])
    code, _, err = run(capsys, "index", "build", wide, "-o", tmp_path / "w.hxi")
    assert code == 1 and "100 metadata columns" in err
    code, _, err = run(capsys, "convert", wide, tmp_path / "w.jsonl")
    assert code == 1 and "100 metadata columns" in err
    assert not (tmp_path / "w.hxi").exists() and not (tmp_path / "w.jsonl").exists()


@pytest.mark.parametrize("command", ["match", "dedup"])
def test_wide_query_lists_are_matched(capsys, tmp_path, hexes, command):
    idx = build(capsys, tmp_path, hexes)
    wide = write_csv(tmp_path / "wide.csv", ["hash"] + [f"c{j}" for j in range(100)],
                     [[h] + [f"v{j}" for j in range(100)] for h in hexes[:2] + hexes[:1]])
    argv = ["match", idx, wide, "-t", "0"] if command == "match" else ["dedup", wide]
    code, out, err = run(capsys, *argv, "-q")
    assert code == 0, err


# == failure records ===================================================================

@pytest.mark.parametrize("action", ["build", "add"])
def test_errors_file_is_written_when_a_malformed_list_stops_the_index(capsys, tmp_path,
                                                                      hexes, action):
    bad = tmp_path / "bad.txt"
    bad.write_text("zzzz\n")
    errors = tmp_path / "errors.csv"
    errors.write_text("input,type,message\nOLD,OLD,OLD\n")
    if action == "build":
        argv = ["index", "build", tmp_path / "missing.jpg", bad, "-o", tmp_path / "x.hxi"]
    else:
        argv = ["index", "add", build(capsys, tmp_path, hexes), tmp_path / "missing.jpg", bad]
    code, _, _ = run(capsys, *argv, "--errors", errors)
    assert code == 1
    records = list(csv.DictReader(errors.open()))
    assert {r["input"] for r in records} == {str(tmp_path / "missing.jpg"), str(bad)}


@pytest.mark.parametrize("command", ["match", "add"])
def test_errors_file_is_rewritten_when_the_index_is_unreadable(capsys, tmp_path, hexes,
                                                               command):
    junk = tmp_path / "junk.hxi"
    junk.write_text("garbage")
    q = tmp_path / "q.txt"
    q.write_text(hexes[0] + "\n")
    errors = tmp_path / "errors.csv"
    errors.write_text("input,type,message\nOLD,OLD,OLD\n")
    argv = ["match", junk, q] if command == "match" else ["index", "add", junk, q]
    code, _, _ = run(capsys, *argv, "--errors", errors)
    assert code == 1 and junk.read_text() == "garbage"
    assert "OLD" not in errors.read_text()


def test_failure_message_does_not_repeat_a_dotted_input(capsys, tmp_path, hexes, monkeypatch):
    idx = build(capsys, tmp_path, hexes)
    (tmp_path / "bad.txt").write_text("zzzz\n")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "match", idx, "./bad.txt", "-f", "jsonl", "-q")
    assert code == 1
    (row,) = jsonl_rows(out)
    assert row["query"] == "./bad.txt" and "bad.txt" not in row["error"]


def test_failure_records_name_each_input_once(capsys, tmp_path, bundled, hexes, monkeypatch):
    monkeypatch.chdir(tmp_path)  # short names: see the long-path test below
    tmp_path = Path(".")
    idx = build(capsys, tmp_path, hexes)
    bad = tmp_path / "bad.txt"
    bad.write_text("zzzz\n")
    nonutf = tmp_path / "nonutf.csv"
    nonutf.write_bytes(b"\xff\xfe\n")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(Path(bundled[0]).read_bytes()[:3000])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.jpg"
    inputs = [bad, nonutf, broken, empty, missing, bundled[0]]
    for argv in (["match", idx], ["dedup"]):
        errors = tmp_path / "e.jsonl"
        code, _, err = run(capsys, *argv, *inputs, "--errors", errors, "-j", "1", "-q")
        assert code == 1
        records = jsonl_rows(errors.read_text())
        assert sorted(r["input"] for r in records) == sorted(str(p) for p in inputs[:5])
        for r in records:
            assert os.path.basename(r["input"]) not in r["message"], r
        assert "5 inputs failed" in err


@pytest.mark.parametrize("command", ["hash", "dedup"])
def test_failure_record_of_a_long_path_does_not_repeat_it(capsys, tmp_path, command):
    deep = tmp_path / ("a" * 40) / ("b" * 40)
    deep.mkdir(parents=True)
    (deep / "bad.jpg").write_text("not an image")
    inputs = [deep / "bad.jpg", deep / "missing.jpg"]
    errors = tmp_path / "e.jsonl"
    code, _, _ = run(capsys, command, *inputs, "--errors", errors, "-j", "1", "-q")
    assert code == 1
    records = jsonl_rows(errors.read_text())
    assert sorted(r["input"] for r in records) == sorted(str(p) for p in inputs)
    for r in records:
        assert os.path.basename(r["input"]) not in r["message"], r


def test_match_output_format_follows_the_extension(capsys, tmp_path, hexes):
    idx = build(capsys, tmp_path, hexes)
    q = tmp_path / "q.txt"
    q.write_text(hexes[0] + " mine\n")
    out = tmp_path / "result.json"
    assert run(capsys, "match", idx, q, "-t", "0", "-o", out, "-q")[0] == 0
    rows = json.loads(out.read_text())
    assert [(r["query"], r["id"], r["distance"]) for r in rows] == [("mine", 0, 0)]


def test_hash_records_a_folder_without_images(capsys, tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.txt").write_text("x")
    errors = tmp_path / "e.csv"
    code, _, err = run(capsys, "hash", d, "--errors", errors)
    assert code == 1
    assert [r["input"] for r in csv.DictReader(errors.open())] == [str(d)]


def test_folder_of_only_non_images(capsys, tmp_path, hexes):
    d = tmp_path / "docs"
    d.mkdir()
    for name in ("a.txt", "b.doc", "c.csv"):
        (d / name).write_text("x")
    idx = build(capsys, tmp_path, hexes)
    for argv in (["dedup", d], ["match", idx, d], ["index", "build", d, "-o", tmp_path / "n.hxi"]):
        code, out, err = run(capsys, *argv, "--errors", tmp_path / "e.csv")
        assert code == 1
        assert "skipped 3 files that are not an image format" in err
        recs = list(csv.DictReader((tmp_path / "e.csv").open()))
        assert [(r["input"], r["type"]) for r in recs] == [(str(d), "NoImagesFound")]
    assert not (tmp_path / "n.hxi").exists()


# == folder walks and image formats ====================================================

def test_folder_of_awkward_image_formats(capsys, tmp_path, bundled):
    from PIL import Image

    d = tmp_path / "fmt"
    d.mkdir()
    src = Image.open(bundled[0]).convert("RGB")
    src.save(d / "a.png")
    src.save(d / "b.tiff")
    src.save(d / "c.webp")
    src.convert("CMYK").save(d / "d_cmyk.jpg")
    grey16 = (np.asarray(src.convert("L")).astype(np.uint16) * 257)
    Image.fromarray(grey16).save(d / "e16.png")
    src.save(d / "f_anim.gif", save_all=True,
             append_images=[src.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], duration=50)
    src.convert("RGBA").save(d / "g_rgba.png")
    src.save(d / "UPPER.JPG")
    made = 8
    try:
        src.save(d / "h.avif")
        made += 1
    except (OSError, KeyError, ValueError):
        pass
    (d / "zero.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("x")
    out = tmp_path / "h.jsonl"
    code, _, err = run(capsys, "hash", d, "-o", out, "-j", "1", "--errors", tmp_path / "e.csv")
    assert code == 1  # zero.jpg
    assert "skipped 1 file that is not an image format" in err and "notes.txt" in err
    rows = jsonl_rows(out.read_text())
    assert len(rows) == made
    ref = hx.Hash.from_hex(hx.hash_image(d / "a.png", "pdq").hex, "pdq")
    for r in rows:
        assert ref - hx.Hash.from_hex(r["hex"], "pdq") <= 16, r["path"]
    recs = list(csv.DictReader((tmp_path / "e.csv").open()))
    assert [r["input"] for r in recs] == [str(d / "zero.jpg")]


def test_hidden_dot_files_are_passed_over(capsys, photos):
    (photos / "._IMG_0001.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    code, out, err = run(capsys, "hash", photos, "-j", "1", "-q")
    assert code == 0, err
    assert ".__IMG" not in out and "._IMG" not in out
    assert len(out.splitlines()) == 1 + 3


# == dedup safety ======================================================================

def _non_kept_same_as_kept(clusters: list[list[dict]]) -> list[tuple[str, str]]:
    bad = []
    for c in clusters:
        kept = [m for m in c if m["keep"]]
        assert len(kept) == 1
        real = os.path.realpath(kept[0]["key"])
        bad += [(kept[0]["key"], m["key"]) for m in c
                if not m["keep"] and os.path.realpath(m["key"]) == real]
    return bad


@pytest.mark.parametrize("second", ["./{d}", "{d}/{first}"])
def test_dedup_never_marks_a_file_as_its_own_duplicate(capsys, photos, monkeypatch, second):
    monkeypatch.chdir(photos.parent)
    first = sorted(p.name for p in photos.iterdir())[0]
    code, out, _ = run(capsys, "dedup", photos.name,
                       second.format(d=photos.name, first=first), "-j", "1", "-q")
    assert code == 0
    assert _non_kept_same_as_kept(json.loads(out)["clusters"]) == []


def test_dedup_does_not_keep_a_symlink_over_its_target(capsys, photos):
    target = sorted(photos.iterdir())[0]
    (photos / "+link.jpg").symlink_to(target.name)
    code, out, _ = run(capsys, "dedup", photos, "-j", "1", "-q")
    assert code == 0
    clusters = json.loads(out)["clusters"]
    for c in clusters:
        for m in c:
            if m["keep"]:
                assert not os.path.islink(m["key"]), c


def test_dedup_real_copies_are_clustered_and_hash_lists_refuse_dihedral(capsys, photos,
                                                                        tmp_path):
    first = sorted(photos.iterdir())[0]
    shutil.copy(first, photos / "zz_copy.jpg")
    code, out, err = run(capsys, "dedup", photos, "-j", "1", "-q", "-o", tmp_path / "c.csv")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert sorted(r["key"] for r in rows) == sorted([str(first), str(photos / "zz_copy.jpg")])
    assert sorted(r["keep"] for r in rows) == ["false", "true"]
    lst = tmp_path / "l.txt"
    assert run(capsys, "hash", photos, "-f", "hex", "-o", lst, "-j", "1", "-q")[0] == 0
    code, _, err = run(capsys, "dedup", lst, "--dihedral")
    assert code == 2 and "--dihedral" in err


# == unreadable and unusual indexes ====================================================

@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "junk"])
def test_corrupt_index_is_refused_by_every_index_command(capsys, tmp_path, hexes, damage):
    good = build(capsys, tmp_path, hexes)
    data = good.read_bytes()
    bad = tmp_path / "bad.hxi"
    bad.write_bytes({"truncate": data[:len(data) // 3],
                     "flip": data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF])
                     + data[len(data) // 2 + 1:],
                     "empty": b"", "junk": b"garbage\n"}[damage])
    before = bad.read_bytes()
    q = tmp_path / "q.txt"
    q.write_text(hexes[5] + "\n")
    for argv in (["index", "add", bad, q, "--renumber"], ["match", bad, q],
                 ["index", "merge", good, bad, "-o", tmp_path / "m.hxi", "--renumber"],
                 ["index", "info", bad]):
        code, _, err = run(capsys, *argv)
        assert code == 1 and str(bad) in err, argv
    assert bad.read_bytes() == before and not (tmp_path / "m.hxi").exists()


def test_robust_index_where_a_hash_index_is_expected(capsys, tmp_path, bundled, hexes):
    pytest.importorskip("cv2")
    ridx = tmp_path / "r.ridx"
    assert run(capsys, "index", "build", "--robust", bundled[0], "-o", ridx, "-j", "1",
               "-q")[0] == 0
    idx = build(capsys, tmp_path, hexes)
    q = tmp_path / "q.txt"
    q.write_text(hexes[0] + "\n")
    code, out, err = run(capsys, "match", ridx, q)
    assert code == 1 and "RobustIndex" in err and not out
    code, _, err = run(capsys, "index", "merge", idx, ridx, "-o", tmp_path / "m.hxi")
    assert code == 2 and "robust" in err
    code, _, err = run(capsys, "index", "add", ridx, q)
    assert code == 2 and "robust index" in err


def test_index_add_through_a_symlink_updates_the_target(capsys, tmp_path, hexes):
    idx = build(capsys, tmp_path, hexes)
    link = tmp_path / "current.hxi"
    link.symlink_to(idx.name)
    more = tmp_path / "more.txt"
    more.write_text(hexes[6] + "\n")
    assert run(capsys, "index", "add", link, more, "-q")[0] == 0
    assert link.is_symlink()
    assert len(hx.HashIndex.load(idx)) == 5


def test_gzip_header_does_not_name_the_temporary_file(capsys, tmp_path, bundled):
    out = tmp_path / "h.csv.gz"
    assert run(capsys, "hash", bundled[0], "-o", out, "-j", "1", "-q")[0] == 0
    with gzip.open(out, "rt") as f:
        assert f.readline().startswith("path,")
    raw = out.read_bytes()
    fname = b""
    if raw[3] & 0x08:  # FNAME present
        fname = raw[10:raw.index(b"\x00", 10)]
    assert fname in (b"", b"h.csv")


def test_index_merge_accepts_errors(capsys, tmp_path, hexes):
    idx = build(capsys, tmp_path, hexes)
    code, _, err = run(capsys, "index", "merge", idx, "-o", tmp_path / "m.hxi",
                       "--errors", tmp_path / "e.csv")
    assert code == 0, err
    assert (tmp_path / "e.csv").read_text() == "input,type,message\n"


# == signals ===========================================================================

def _big_list(path: Path, n: int) -> None:
    codes = np.random.default_rng(7).integers(0, 256, (n, 32), dtype=np.uint8)
    text = codes.tobytes().hex()
    with open(path, "w") as f:
        f.write("hash,id,key,collab\n")
        f.writelines(f"{text[64 * i:64 * i + 64]},{i},k{i},c{i % 5}\n" for i in range(n))


def default_sigint() -> None:
    """In the child: SIGINT back to its default (a test run started as a background job
    inherits it ignored, and the CLI keeps an ignored signal ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_when_writing(argv: list[str], out: Path) -> tuple[int, str]:
    """Run the CLI, send SIGINT as soon as the temporary file of ``out`` exists."""
    proc = subprocess.Popen([sys.executable, "-m", "hashlib_ext", *argv], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name.startswith(f".{out.name}.") for p in out.parent.iterdir()):
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.01)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err.decode(errors="replace")


@pytest.mark.parametrize("command", ["convert", "match"])
def test_sigint_while_writing_leaves_the_old_output(tmp_path, hexes, command):
    big = tmp_path / "big.csv"
    _big_list(big, 120_000)
    out = tmp_path / "out.jsonl"
    out.write_text("OLD\n")
    if command == "convert":
        argv = ["convert", str(big), str(out), "-q"]
    else:
        small = tmp_path / "known.txt"
        small.write_text("".join(h + "\n" for h in hexes[:4]))
        idx = tmp_path / "known.hxi"
        assert main(["index", "build", str(small), "-o", str(idx), "-q"]) == 0
        argv = ["match", str(idx), str(big), "-f", "jsonl", "-o", str(out), "-q",
                "--unmatched"]
    code, err = _interrupt_when_writing(argv, out)
    assert code == 130, err
    assert out.read_text() == "OLD\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
