"""The CLI under hostile use: signals during a run, usage mistakes, outputs that must survive
a failed run, file names that are not UTF-8, closed pipes, hash lists of the wrong kind,
and the PDQ quality policy (``--min-quality``, ``quality_ok``)."""

from __future__ import annotations

import csv
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
from PIL import Image

import hashlib_ext as hx
from hashlib_ext import formats
from hashlib_ext.batch import max_workers
from hashlib_ext.cli import _common, main

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLI = [sys.executable, "-m", "hashlib_ext"]
STOP_TIMEOUT = 30
"""Seconds a signalled command may take to exit before the test counts it as hung (it
used to hang for minutes; it stops in well under a second, a few seconds on a machine
loaded several times over)."""
WORKERS_GONE_S = 15
"""Seconds the workers of a stopped command may take to be gone."""


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([a if isinstance(a, str) else os.fspath(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def usage_code(capsys, *argv) -> tuple[int, str]:
    """Exit status and stderr of a command line argparse refuses, or that returns 2."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A few hundred photo-like 1920x1440 JPEGs, a saved PDQ index of some of them, and an
    'old' output file. The photos are large so that hashing them takes several seconds on
    two workers: a signal sent 0.3 s after the workers start must find the command still
    running (with 640x480 photos a loaded machine sometimes finished first, and the signal
    then met the default handler after the command had returned)."""
    d = tmp_path_factory.mktemp("many")
    imgs = d / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(7)
    bases = []
    for _ in range(8):
        small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(small).resize((1920, 1440), Image.BILINEAR).save(buf, "JPEG", quality=90)
        bases.append(buf.getvalue())
    for i in range(400):
        (imgs / f"{i:04d}.jpg").write_bytes(bases[i % len(bases)])
    some = sorted(imgs.iterdir())[:8]
    res = hx.hash_images([str(p) for p in some], "pdq", workers=1)
    hashes_csv = d / "known.csv"
    formats.write_hash_list(hashes_csv, res.hashes, keys=[str(p) for p in some])
    assert main(["index", "build", str(hashes_csv), "-o", str(d / "known.hxi")]) == 0
    return d


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for init to reap it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def default_sigint() -> None:
    """In the child, before it runs the CLI: SIGINT back to its default. A test run started
    as a background job (``cmd &`` in a script) inherits SIGINT ignored, and the CLI rightly
    keeps a signal it was started ignoring ignored: the signal tests would then see the
    command finish (status 0) instead of stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_midway(argv: list[str], sig: int, cwd: Path, min_children: int = 1,
                 delay: float = 0.3) -> tuple[int, list[int], str]:
    """Start the CLI, wait until its workers run (and ``delay`` more), send ``sig``.
    Returns (exit status, the workers, stderr). A command that does not stop within
    :data:`STOP_TIMEOUT` seconds of the signal (the hang this guards against) fails the
    test with ``TimeoutExpired``."""
    proc = subprocess.Popen([*CLI, *argv], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 60
        kids: list[int] = []
        while time.monotonic() < deadline and proc.poll() is None:
            kids = _children(proc.pid)
            if len(kids) >= min_children:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the command ended before it could be signalled"
        assert len(kids) >= min_children, "no worker process started within 60 s"
        time.sleep(delay)
        kids = sorted(set(kids) | set(_children(proc.pid)))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=STOP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, kids, err.decode("utf-8", "replace")


def _assert_workers_gone(kids: list[int]) -> None:
    deadline = time.monotonic() + WORKERS_GONE_S
    while time.monotonic() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.05)
    alive = [k for k in kids if _alive(k)]
    for k in alive:  # do not leave them behind if the test fails
        os.kill(k, signal.SIGKILL)
    assert not alive, f"worker processes still running: {alive}"


needs_proc = pytest.mark.skipif(not Path("/proc/self/task").exists(),
                                reason="needs Linux /proc to see worker processes")


# -- signals -------------------------------------------------------------------------------
@needs_proc
@pytest.mark.parametrize("command, sig", [
    (["hash", "imgs", "-j", "2", "-o", "out.csv"], signal.SIGTERM),
    (["hash", "imgs", "-j", "2", "-o", "out.csv"], signal.SIGINT),
    (["match", "known.hxi", "imgs", "-j", "2", "-o", "out.csv"], signal.SIGTERM),
    (["dedup", "imgs", "-j", "2", "-f", "csv", "-o", "out.csv"], signal.SIGINT),
])
def test_signal_stops_workers_and_keeps_the_old_output(folder, tmp_path, command, sig):
    work = tmp_path / "w"
    work.mkdir()
    os.symlink(folder / "imgs", work / "imgs")
    shutil.copy(folder / "known.hxi", work / "known.hxi")
    old = b"old output, kept as it was\n"
    (work / "out.csv").write_bytes(old)
    code, kids, err = _stop_midway(command, sig, work, min_children=2)
    assert code == 128 + sig, err
    assert "Traceback" not in err
    assert ("interrupted" if sig == signal.SIGINT else "terminated") in err
    _assert_workers_gone(kids)
    assert (work / "out.csv").read_bytes() == old
    assert sorted(p.name for p in work.iterdir()) == ["imgs", "known.hxi", "out.csv"]


@needs_proc
def test_signal_during_robust_index_build(folder, tmp_path):
    pytest.importorskip("cv2")
    old = b"previous index\n"
    out = tmp_path / "r.ridx"
    out.write_bytes(old)
    code, kids, err = _stop_midway(
        ["index", "build", "--robust", str(folder / "imgs"), "-j", "2", "-o", str(out)],
        signal.SIGTERM, tmp_path, min_children=2)
    assert code == 143 and "Traceback" not in err, err
    _assert_workers_gone(kids)
    assert out.read_bytes() == old and os.listdir(tmp_path) == ["r.ridx"]


@needs_proc
def test_sigkill_of_the_command_takes_its_workers_along(folder, tmp_path):
    _, kids, _ = _stop_midway(["hash", str(folder / "imgs"), "-j", "2"], signal.SIGKILL,
                                 tmp_path, min_children=2)
    _assert_workers_gone(kids)


def test_signal_while_writing_leaves_the_old_file(bundled, tmp_path, capsys, monkeypatch):
    """A signal while the output is being written (no workers then): the command unwinds,
    the temporary file goes, the old file stays; exit 143."""
    from hashlib_ext.cli import hash_cmd

    out = tmp_path / "hashes.csv"
    out.write_text("old\n")
    real = hash_cmd.write_rows

    def write_then_signal(rows, fmt, f):
        real(rows, fmt, f)
        f.flush()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs first

    monkeypatch.setattr(hash_cmd, "write_rows", write_then_signal)
    code, _, err = run(capsys, "hash", str(bundled[0]), "-j", "1", "-o", out)
    assert code == 143 and "terminated" in err
    assert out.read_text() == "old\n" and os.listdir(tmp_path) == ["hashes.csv"]
    assert signal.getsignal(signal.SIGTERM) is not None  # handlers restored after main


# -- usage errors: exit 2, one line, before any output is touched --------------------------
@pytest.mark.parametrize("command", [
    ["hash", "x.jpg"], ["match", "k.hxi", "x.jpg"], ["dedup", "x"],
    ["index", "build", "--robust", "x", "-o", "y.ridx"],
])
@pytest.mark.parametrize("workers", ["0", "-3", "two"])
def test_bad_worker_counts_are_usage_errors(capsys, command, workers):
    code, err = usage_code(capsys, *command, "-j", workers)
    assert code == 2
    assert "expected a positive integer" in err and "Traceback" not in err


def test_huge_worker_count_is_clamped(bundled, capsys):
    code, out, err = run(capsys, "hash", *map(str, bundled[:3]), "-j", "10000", "-f", "jsonl")
    assert code == 0 and len(out.splitlines()) == 3
    assert f"using {max_workers()}" in err and "Warning" not in err


def test_match_usage_errors_leave_the_output_alone(bundled, tmp_path, capsys):
    raw = tmp_path / "raw.hxi"
    idx = hx.HashIndex(bits=64)
    idx.add(np.zeros((1, 8), np.uint8))
    idx.save(raw)
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    img = str(bundled[0])
    for argv in (
        ["match", raw, img, "-o", out],  # raw codes: needs --threshold
        ["match", raw, img, "-t", "3", "-o", out],  # raw codes: needs --algorithm for images
        ["match", raw, img, "-t", "-1", "-o", out],
        ["match", raw, img, "--algorithm", "nohash", "-o", out],
        ["match", raw, img, "--min-score", "3", "-o", out],
        ["match", "--robust", raw, img, "--dihedral", "-o", out],
        ["match", raw, raw, "-t", "3", "-o", raw],  # output = an input
    ):
        code, err = usage_code(capsys, *argv)
        assert code == 2, argv
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert out.read_text() == "precious\n"
    assert sorted(os.listdir(tmp_path)) == ["out.csv", "raw.hxi"]


@pytest.mark.parametrize("argv, message", [
    (["hash", "{img}", "-o", "{tmp}/nowhere/out.csv"], "does not exist"),
    (["hash", "{img}", "-o", "{tmp}"], "is a folder"),
    (["dedup", "{img}", "-o", "{img}"], "is also an input"),
    (["index", "build", "{tmp}/h.csv", "-o", "{tmp}/h.csv"], "is also an input"),
    (["index", "build", "--robust", "{img}", "--min-quality", "50", "-o", "{tmp}/x"],
     "--min-quality applies to hash lists"),
    (["dedup", "--robust", "{img}", "--min-quality", "50"], "not --robust"),
])
def test_output_and_option_checks(bundled, tmp_path, capsys, argv, message):
    (tmp_path / "h.csv").write_text("hash\n" + "0" * 64 + "\n")
    fill = {"img": str(bundled[0]), "tmp": str(tmp_path)}
    before = sorted(os.listdir(tmp_path))
    code, err = usage_code(capsys, *[a.format(**fill) for a in argv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("argv", [
    ["match", "k.hxi", "x.jpg", "--min-quality", "101"],
    ["match", "k.hxi", "x.jpg", "--hash-format", "xml"],
    ["index", "build", "h.csv", "-o", "k.hxi", "--bits", "7"],
    ["dedup", "x", "--min-quality", "-1"],
])
def test_bad_option_values_exit_2(capsys, argv):
    code, err = usage_code(capsys, *argv)
    assert code == 2 and "Traceback" not in err


# -- data errors: exit 1, one line per problem, no traceback, old outputs kept ------------
def test_nothing_readable_keeps_the_old_output(bundled, tmp_path, capsys):
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image")
    idx = tmp_path / "k.hxi"
    assert run(capsys, "index", "build", _hash_list(bundled[:2], tmp_path), "-o", idx)[0] == 0
    for argv in (["hash", garbage, "-o", out],
                 ["match", idx, garbage, tmp_path / "missing.jpg", "-o", out],
                 ["dedup", garbage, "-o", out]):
        code, _, err = run(capsys, *argv)
        assert code == 1 and "Traceback" not in err
        assert out.read_text() == "precious\n", argv
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def _hash_list(paths, folder: Path, algorithm: str = "pdq", name: str = "list.csv") -> Path:
    res = hx.hash_images([str(p) for p in paths], algorithm, workers=1)
    target = folder / name
    formats.write_hash_list(target, res.hashes, keys=[str(p) for p in paths])
    return target


def test_hash_list_of_another_algorithm_or_width_is_an_error(bundled, tmp_path, capsys):
    idx = tmp_path / "pdq.hxi"
    good = _hash_list(bundled[:4], tmp_path)
    assert run(capsys, "index", "build", good, "-o", idx)[0] == 0
    phash_csv = _hash_list(bundled[:4], tmp_path, "phash", "phash.csv")
    phash_hex = tmp_path / "phash.txt"
    phash_hex.write_text("".join(hx.hash_image(p, "phash").hex + "\n" for p in bundled[:4]))
    for argv in ([phash_csv], [phash_hex], [phash_hex, "--lenient"]):
        code, out, err = run(capsys, "match", idx, *argv)
        assert code == 1, (argv, err)
        assert "0 of 0 queries matched" in err and "Traceback" not in err
        header, *rows = out.splitlines()
        assert header == "query,id,key,distance,error_type,error"
        # the failed input is a row of the output: query, no match, its error
        assert len(rows) == 1 and rows[0].startswith(f"{argv[0]},,,,HashFormatError,")
    code, _, err = run(capsys, "match", idx, phash_csv)
    assert "no pdq hashes to match" in err and "4 rows of other algorithms" in err
    # A good list beside the bad one is still matched; the run fails.
    code, out, err = run(capsys, "match", idx, phash_csv, good)
    # header, 4 matches, the failed list as a row
    assert code == 1 and len(out.splitlines()) == 1 + 4 + 1
    # dedup reports rows of another algorithm instead of dropping them silently.
    code, _, err = run(capsys, "dedup", good, phash_csv)
    assert code == 1 and "4 rows of other algorithms than pdq ignored" in err


def test_broken_pipe_ends_quietly(bundled, tmp_path):
    codes = np.random.default_rng(3).integers(0, 256, (3000, 32), dtype=np.uint8)
    hashes = hx.HashArray(codes, "pdq")
    lst = tmp_path / "many.csv"
    formats.write_hash_list(lst, hashes, keys=[f"key-{i:06d}" for i in range(len(codes))])
    idx = tmp_path / "k.hxi"
    assert main(["index", "build", str(lst), "-o", str(idx)]) == 0
    for argv in (["match", str(idx), str(lst)], ["hash", *map(str, bundled[:2]), "-f", "json"]):
        proc = subprocess.Popen([*CLI, *argv], env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # as `| head -1` does
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
        assert proc.returncode in (0, 141), err
        assert "Broken pipe" not in err and "Traceback" not in err and "cannot write" not in err


@pytest.mark.parametrize("argv", [
    ["index", "info", "{tmp}"],
    ["index", "info", "{tmp}/missing.hxi"],
    ["index", "build", "{tmp}", "-o", "{tmp}/x.hxi"],
    ["index", "build", "{tmp}/nested.json", "-o", "{tmp}/x.hxi"],
    ["match", "{tmp}/nested.json", "{img}"],
    ["dedup", "{tmp}/nested.json"],
    ["hash", "/dev/null"],
    ["match", "--robust", "{tmp}/nested.json", "{img}"],
])
def test_data_errors_exit_1_without_traceback(bundled, tmp_path, capsys, argv):
    (tmp_path / "nested.json").write_text("[" * 100_000)
    fill = {"img": str(bundled[0]), "tmp": str(tmp_path)}
    code, _, err = run(capsys, *[a.format(**fill) for a in argv])
    assert code == 1 and "Traceback" not in err and err.startswith("hashlib-ext"), err


# -- names that are not valid UTF-8 --------------------------------------------------------
@pytest.fixture
def odd_names(bundled, tmp_path) -> tuple[Path, list[bytes]]:
    if sys.platform == "darwin":
        pytest.skip("the file system refuses names that are not UTF-8")
    d = tmp_path / "odd"
    d.mkdir()
    names = [b"caf\xe9.jpg", "ok-\u00e9.jpg".encode(), b"plain.jpg"]
    for i, n in enumerate(names):
        shutil.copy(bundled[i], os.path.join(os.fsencode(d), n))
    return d, [os.path.join(os.fsencode(d), n) for n in sorted(names)]


def test_undecodable_names_round_trip_in_every_format(odd_names, tmp_path, capsys):
    d, paths = odd_names
    for fmt in ("csv", "json", "jsonl"):
        out = tmp_path / f"h.{fmt}"
        code, _, err = run(capsys, "hash", d, "-f", fmt, "-o", out, "-j", "1")
        assert code == 0, err
        data = out.read_bytes()
        if fmt == "csv":  # the name's own bytes
            assert b"caf\xe9.jpg" in data
            text = data.decode("utf-8", "surrogateescape")
            got = [r["path"] for r in csv.DictReader(io.StringIO(text, newline=""))]
        else:  # valid UTF-8 JSON, the byte as a \udcXX escape
            text = data.decode("utf-8")
            assert "caf\\udce9.jpg" in text
            rows = json.loads(text) if fmt == "json" else [json.loads(x) for x in
                                                           text.splitlines()]
            got = [r["path"] for r in rows]
        assert [os.fsencode(p) for p in got] == paths
        assert all(os.path.isfile(p) for p in got)


def test_undecodable_names_from_stdin_and_in_match_and_dedup(odd_names, tmp_path):
    d, paths = odd_names
    proc = subprocess.run([*CLI, "hash", "-", "-f", "jsonl"], input=b"\n".join(paths) + b"\n",
                          capture_output=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in proc.stdout.decode("utf-8").splitlines()]
    assert [os.fsencode(r["path"]) for r in rows] == paths
    lst = tmp_path / "h.jsonl"
    lst.write_bytes(proc.stdout)
    idx = tmp_path / "k.hxi"
    assert subprocess.run([*CLI, "index", "build", str(lst), "-o", str(idx)], env=ENV,
                          capture_output=True, timeout=120).returncode == 0
    for argv in (["match", str(idx), str(d), "-f", "csv"], ["dedup", str(d), "-t", "256",
                                                            "-f", "csv"]):
        proc = subprocess.run([*CLI, *argv], capture_output=True, env=ENV, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert b"caf\xe9.jpg" in proc.stdout and b"Traceback" not in proc.stderr
    proc = subprocess.run([*CLI, "dedup", str(d), "-t", "256"], capture_output=True, env=ENV,
                          timeout=120)
    report = json.loads(proc.stdout.decode("utf-8"))
    keys = sorted(os.fsencode(m["key"]) for m in report["clusters"][0])
    assert keys == paths


def test_json_text_escapes_only_lone_surrogates():
    text = _common.json_text({"k": "a\udce9b-\u00e9-\U0001f600"})
    assert text == '{"k": "a\\udce9b-\u00e9-\U0001f600"}'
    assert json.loads(text)["k"] == "a\udce9b-\u00e9-\U0001f600"


# -- PDQ quality policy --------------------------------------------------------------------
@pytest.fixture
def flat_and_photos(bundled, tmp_path) -> list[str]:
    flat = tmp_path / "flat.png"
    Image.new("RGB", (64, 64), (120, 120, 120)).save(flat)
    assert hx.hash_image(flat, "pdq").quality < formats.PDQ_MIN_QUALITY
    return [str(flat), *map(str, bundled[:3])]


def test_hash_writes_quality_ok(flat_and_photos, capsys):
    code, out, _ = run(capsys, "hash", *flat_and_photos, "-a", "pdq,phash", "-f", "jsonl",
                       "-j", "1")
    assert code == 0
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["quality_ok"] for r in rows if r["algorithm"] == "pdq"] == [False, True, True,
                                                                         True]
    assert {r["quality_ok"] for r in rows if r["algorithm"] == "phash"} == {None}
    code, out, _ = run(capsys, "hash", *flat_and_photos[:2], "-j", "1")
    lines = out.splitlines()
    assert lines[0].endswith(",quality,quality_ok") and lines[1].endswith(",false")
    assert lines[2].endswith(",true")


def test_min_quality_in_index_build_match_and_dedup(flat_and_photos, tmp_path, capsys):
    lst = _hash_list(flat_and_photos, tmp_path)
    idx = tmp_path / "k.hxi"
    code, _, err = run(capsys, "index", "build", lst, "-o", idx, "--min-quality", "50")
    assert code == 0 and "1 hashes below quality 50 left out" in err
    assert len(hx.HashIndex.load(idx)) == 3
    code, out, err = run(capsys, "match", idx, *flat_and_photos, "--min-quality", "50", "-j",
                         "1", "--unmatched")
    assert code == 0 and "1 queries below quality 50 left out" in err
    assert [r.split(",")[0] for r in out.splitlines()[1:]] == flat_and_photos[1:]
    code, out, err = run(capsys, "match", idx, lst, "--min-quality", "50")
    assert code == 0 and "3 of 3 queries matched" in err
    code, out, err = run(capsys, "dedup", lst, "--min-quality", "50")
    assert code == 0 and json.loads(out)["items"] == 3
    # Nothing left: the index is not written.
    only_flat = _hash_list(flat_and_photos[:1], tmp_path, name="flat.csv")
    code, _, err = run(capsys, "index", "build", only_flat, "-o", tmp_path / "none.hxi",
                       "--min-quality", "50")
    assert code == 1 and "not written" in err and not (tmp_path / "none.hxi").exists()


def test_index_build_help_says_keys_are_inside_the_file(capsys):
    with pytest.raises(SystemExit):
        main(["index", "build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "beside" not in text and "inside the index file" in text
    assert "--min-quality" in text
