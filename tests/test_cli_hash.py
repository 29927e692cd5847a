"""``hashlib-ext hash``: formats parse back to the library's hashes, exit codes, stderr
messages, directory walking, stdin paths, atomic --output; in-process and as a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hashlib_ext as hx
from hashlib_ext.cli import hash_cmd, main
from hashlib_ext.files import iter_image_paths
from hashlib_ext.formats import PDQ_MIN_QUALITY

ROOT = Path(__file__).resolve().parent.parent


def parse(text: str, fmt: str) -> list[dict]:
    """Rows back from CSV / JSON / JSONL output, quality as int or None."""
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        for r in rows:
            r["quality"] = int(r["quality"]) if r["quality"] else None
            r["quality_ok"] = {"true": True, "false": False, "": None}[r["quality_ok"]]
        return rows
    if fmt == "json":
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines()]


def expected_rows(paths, names) -> list[dict]:
    rows = []
    for p in paths:
        for n in names:
            h = hx.hash_image(p, n)
            ok = None if h.quality is None else h.quality >= PDQ_MIN_QUALITY
            rows.append({"path": str(p), "algorithm": n, "hex": h.hex, "quality": h.quality,
                         "quality_ok": ok})
    return rows


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_formats_parse_back(bundled, capsys, fmt):
    paths = bundled[:4]
    code = main(["hash", *map(str, paths), "--format", fmt, "-j", "1"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert parse(out, fmt) == expected_rows(paths, ["pdq"])
    if fmt == "csv":
        assert out.splitlines()[0] == "path,algorithm,hex,quality,quality_ok"


def test_several_algorithms_one_row_each(bundled, capsys):
    paths = bundled[:3]
    assert main(["hash", *map(str, paths), "-a", "phash,pdq,ahash", "-f", "jsonl",
                 "-j", "2"]) == 0
    rows = parse(capsys.readouterr().out, "jsonl")
    assert rows == expected_rows(paths, ["phash", "pdq", "ahash"])
    assert rows[0]["quality"] is None and rows[1]["quality"] is not None


def test_failed_inputs_reported_good_ones_written(bundled, tmp_path, capsys):
    missing = tmp_path / "missing.jpg"
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    args = [str(bundled[0]), str(missing), str(text), str(bundled[1])]
    assert main(["hash", *args, "-f", "csv", "-j", "2"]) == 1
    out, err = capsys.readouterr()
    assert [r["path"] for r in parse(out, "csv")] == [str(bundled[0]), str(bundled[1])]
    lines = err.splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, [missing, text], strict=True):
        assert re.fullmatch(rf"hashlib-ext: {re.escape(str(path))}: ImageDecodeError: .+", line)


def test_directories_recursive_sorted_and_filtered(bundled, tmp_path, capsys):
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name, src in [("z.jpg", 0), ("b/y.JPG", 1), ("a/x.jpeg", 2), ("a/deep/w.jpg", 3),
                      ("m.jpg", 4)]:
        shutil.copy(bundled[src], tmp_path / name)
    (tmp_path / "readme.txt").write_text("skipped: not an image extension")
    (tmp_path / "a" / "data.csv").write_text("skipped too")

    assert main(["hash", str(tmp_path), "-a", "ahash", "-f", "jsonl", "-j", "1"]) == 0
    top = [r["path"] for r in parse(capsys.readouterr().out, "jsonl")]
    assert top == [str(tmp_path / "m.jpg"), str(tmp_path / "z.jpg")]

    assert main(["hash", str(tmp_path), "-r", "-a", "ahash", "-f", "jsonl", "-j", "1"]) == 0
    rows = parse(capsys.readouterr().out, "jsonl")
    rel = [os.path.relpath(r["path"], tmp_path) for r in rows]
    assert rel == ["a/deep/w.jpg", "a/x.jpeg", "b/y.JPG", "m.jpg", "z.jpg"]
    assert rows[0]["hex"] == hx.hash_image(bundled[3], "ahash").hex


def test_explicit_non_image_file_is_hashed_and_reported(tmp_path, capsys):
    f = tmp_path / "data.csv"
    f.write_text("a,b\n")
    assert list(iter_image_paths([f])) == [str(f)]
    assert main(["hash", str(f), "-j", "1"]) == 1
    assert capsys.readouterr().err.startswith(f"hashlib-ext: {f}: ImageDecodeError: ")


def test_walk_does_not_follow_symlinked_directories(bundled, tmp_path):
    shutil.copy(bundled[0], tmp_path / "a.jpg")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert list(iter_image_paths([tmp_path], recursive=True)) == [str(tmp_path / "a.jpg")]


def test_paths_from_stdin(bundled, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{bundled[2]}\n\n{bundled[3]}\n"))
    assert main(["hash", str(bundled[0]), "-", "-f", "json", "-j", "1"]) == 0
    rows = parse(capsys.readouterr().out, "json")
    assert [r["path"] for r in rows] == [str(bundled[i]) for i in (0, 2, 3)]


def test_output_file_written_atomically(bundled, tmp_path, capsys, monkeypatch):
    out = tmp_path / "hashes.csv"
    assert main(["hash", *map(str, bundled[:3]), "-o", str(out), "-j", "1"]) == 0
    assert capsys.readouterr().out == ""
    assert parse(out.read_text(), "csv") == expected_rows(bundled[:3], ["pdq"])
    assert os.listdir(tmp_path) == ["hashes.csv"]
    before = out.read_bytes()

    def fail_midway(rows, fmt, f):
        f.write("path,algorithm,hex,quality,quality_ok\npartial")
        raise RuntimeError("disk went away")

    monkeypatch.setattr(hash_cmd, "write_rows", fail_midway)
    with pytest.raises(RuntimeError):
        main(["hash", str(bundled[5]), "-o", str(out), "-j", "1"])
    assert out.read_bytes() == before and os.listdir(tmp_path) == ["hashes.csv"]


def test_no_images_found_is_a_failure(tmp_path, capsys):
    assert main(["hash", str(tmp_path), "-j", "1"]) == 1
    assert f"{tmp_path}: NoImagesFound: no images found" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["hash"],
    ["hash", "x.jpg", "--algorithm", "nohash"],
    ["hash", "x.jpg", "--format", "xml"],
    ["hash", "x.jpg", "--workers", "0"],
])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "usage:" in capsys.readouterr().err


def test_subprocess_exit_codes_and_streams(bundled, tmp_path):
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "hashlib_ext", "hash", "-f", "jsonl", "-a", "dhash"]
    proc = subprocess.run([*cmd, str(bundled[0]), str(bad), str(bundled[1])],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert parse(proc.stdout, "jsonl") == expected_rows([bundled[0], bundled[1]], ["dhash"])
    assert proc.stderr.startswith(f"hashlib-ext: {bad}: ImageDecodeError: ")
    assert "hashing" not in proc.stderr  # no progress bar: stderr is not a terminal

    proc = subprocess.run([*cmd, "--progress", "-", "-j", "2"], input=f"{bundled[0]}\n",
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1
    assert "hashing" in proc.stderr


# -- every output format, the format from -o, failures, notes ------------------------------
EXT = {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "json": "json", "parquet": "parquet",
       "hex": "txt", "te": "csv"}


@pytest.mark.parametrize("fmt", list(EXT))
def test_every_format_reads_back_as_a_hash_list(bundled, tmp_path, capsys, fmt):
    from hashlib_ext import formats

    paths = [str(p) for p in bundled[:3]]
    out = tmp_path / f"h.{EXT[fmt]}"
    assert main(["hash", *paths, "-f", fmt, "-o", str(out), "-j", "1"]) == 0
    assert capsys.readouterr().err == ""
    got = formats.read_hash_list(out, format="te" if fmt == "te" else None)
    expected = [hx.hash_image(p, "pdq") for p in paths]
    assert got.hashes == hx.HashArray.from_hashes(expected)
    assert got.keys.tolist() == paths and got.ids.tolist() == [0, 1, 2]
    if fmt not in ("hex", "te"):  # the formats with a quality column
        assert got.hashes.qualities.tolist() == [h.quality for h in expected]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json"])
def test_several_algorithms_read_back_one_by_one(bundled, tmp_path, fmt):
    from hashlib_ext import formats

    paths = [str(p) for p in bundled[:2]]
    out = tmp_path / f"h.{fmt}.gz"
    assert main(["hash", *paths, "-a", "pdq,dhash", "-o", str(out), "-j", "1"]) == 0
    for name in ("pdq", "dhash"):
        got = formats.read_hash_list(out, name)
        assert got.hashes.hex() == [hx.hash_image(p, name).hex for p in paths]
        assert got.ignored == 2 and got.keys.tolist() == paths


def test_format_comes_from_the_output_extension(bundled, tmp_path):
    import gzip

    img = str(bundled[0])
    for name, check in [
        ("a.parquet", lambda b: b[:4] == b"PAR1"),
        ("a.tsv.gz", lambda b: gzip.decompress(b).startswith(b"path\talgorithm\thex\t")),
        ("a.txt", lambda b: b.decode() == f"{hx.hash_image(img, 'pdq').hex} {img}\n"),
        ("a.json", lambda b: json.loads(b)[0]["path"] == img),
        ("a.out", lambda b: b.startswith(b"path,algorithm,hex,")),  # unknown: csv
    ]:
        assert main(["hash", img, "-o", str(tmp_path / name), "-j", "1"]) == 0
        assert check((tmp_path / name).read_bytes()), name


@pytest.mark.parametrize("argv,message", [
    (["-f", "csv", "-o", "{tmp}/x.parquet"], "does not match"),
    (["-f", "jsonl", "-o", "{tmp}/x.txt"], "does not match"),
    (["-a", "pdq,phash", "-o", "{tmp}/x.parquet"], "holds one algorithm"),
    (["-a", "pdq,phash", "-f", "hex", "-o", "{tmp}/x.txt"], "holds one algorithm"),
    (["-a", "phash", "-f", "te", "-o", "{tmp}/x.csv"], "holds PDQ hashes"),
    (["-f", "parquet"], "give -o FILE.parquet"),
])
def test_refused_before_any_work_and_output_untouched(bundled, tmp_path, capsys, argv,
                                                      message):
    for name in ("x.parquet", "x.txt", "x.csv"):
        (tmp_path / name).write_text("old\n")
    missing = tmp_path / "missing.jpg"  # would be a failure if anything were hashed
    code = main(["hash", str(bundled[0]), str(missing),
                 *[a.format(tmp=tmp_path) for a in argv]])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "missing.jpg" not in err
    assert len(err.splitlines()) == 1
    assert all((tmp_path / n).read_text() == "old\n" for n in ("x.parquet", "x.txt", "x.csv"))


def test_failures_as_records_with_errors_file(bundled, tmp_path, capsys):
    missing = tmp_path / "missing.jpg"
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    errors = tmp_path / "errors.csv"
    out = tmp_path / "h.json"
    code = main(["hash", str(bundled[0]), str(missing), str(text), "-o", str(out),
                 "--errors", str(errors), "-j", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [f"hashlib-ext: 2 inputs failed; listed in {errors}"]
    records = list(csv.DictReader(io.StringIO(errors.read_text())))
    assert [r["input"] for r in records] == [str(missing), str(text)]
    assert all(r["type"] == "ImageDecodeError" and r["message"] for r in records)
    assert not any(str(r["input"]) in r["message"] for r in records)  # path not repeated
    # The output stays a plain hash list of the good inputs.
    assert [r["path"] for r in json.loads(out.read_text())] == [str(bundled[0])]


def test_failure_lines_do_not_repeat_the_path(tmp_path, capsys):
    missing = tmp_path / "gone.jpg"
    assert main(["hash", str(missing), "-j", "1"]) == 1
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"hashlib-ext: {missing}: ImageDecodeError: ")
    assert first.count(str(missing)) == 1


def test_skipped_files_note_and_quiet(bundled, tmp_path, capsys):
    shutil.copy(bundled[0], tmp_path / "a.jpg")
    (tmp_path / "data.csv").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden").write_text("x")
    assert main(["hash", str(tmp_path), "-j", "1"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "hashlib-ext: skipped 2 files that are not an image format Pillow can decode, e.g. "
        f"{tmp_path / 'data.csv'}"]
    missing = tmp_path / "missing.jpg"
    assert main(["hash", str(tmp_path), str(missing), "-q", "-j", "1"]) == 1
    err = capsys.readouterr().err
    assert "Pillow can decode" not in err  # -q: no notes
    assert err.startswith(f"hashlib-ext: {missing}: ImageDecodeError: ")  # errors still shown


def test_progress_bar_has_a_total_for_folder_inputs(bundled, tmp_path, capsys):
    for i in range(3):
        shutil.copy(bundled[i], tmp_path / f"{i}.jpg")
    assert main(["hash", str(tmp_path), "--progress", "-j", "1", "-f", "jsonl"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"3/3 \[", err), err  # n/total and the elapsed<remaining ETA block


def test_threatexchange_output(bundled, tmp_path):
    from hashlib_ext import formats

    out = tmp_path / "te.csv"
    assert main(["hash", str(bundled[0]), str(bundled[1]), "-f", "te", "-o", str(out),
                 "-j", "1"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "signal_type,signal_str,collab,category,tags,key"
    assert lines[1] == f"pdq,{hx.hash_image(bundled[0], 'pdq').hex},,,,{bundled[0]}"
    assert len(formats.read_hash_list(out)) == 2


def test_a_path_the_format_cannot_hold_fails_naming_the_output(bundled, tmp_path, capsys):
    odd = tmp_path / "in"
    odd.mkdir()
    shutil.copy(bundled[0], odd / "a\nb.jpg")
    out = tmp_path / "h.txt"
    assert main(["hash", str(odd), "-o", str(out), "-j", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hashlib-ext: {out}: key ") and "line break" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert main(["hash", str(odd), "-o", str(tmp_path / "h.jsonl"), "-j", "1"]) == 0
