"""``hashlib-ext dedup`` as a safe dedup: --dihedral, edges and distances, the chaining
guard, the suggested keeper, failures in the JSON and in --errors, CSV rows, usage errors."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import hashlib_ext as hx
from hashlib_ext import formats
from hashlib_ext.cli import main
from hashlib_ext.hash import popcount


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def names(cluster) -> list[str]:
    return sorted(Path(m["key"]).name for m in cluster)


@pytest.fixture(scope="module")
def turned(bundled, tmp_path_factory) -> Path:
    """Ten bundled images with a mirrored copy of each (and of the first five also a copy
    turned 90 degrees), all PNG."""
    d = tmp_path_factory.mktemp("turned")
    for k, p in enumerate(bundled[:10]):
        with Image.open(p) as im:
            im = im.convert("RGB")
            im.save(d / f"{k:02d}_a.png")
            ImageOps.mirror(im).save(d / f"{k:02d}_mirror.png")
            if k < 5:
                im.transpose(Image.Transpose.ROTATE_90).save(d / f"{k:02d}_turned.png")
    return d


def test_dihedral_finds_every_mirrored_and_turned_copy(capsys, turned, tmp_path):
    out = tmp_path / "clusters.json"
    code, _, err = run(capsys, "dedup", turned, "--dihedral", "-o", out, "-j", "2", "-q")
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["dihedral"] is True and report["failures"] == []
    expected = sorted([f"{k:02d}_a.png", f"{k:02d}_mirror.png"]
                      + ([f"{k:02d}_turned.png"] if k < 5 else []) for k in range(10))
    assert sorted(names(c) for c in report["clusters"]) == expected
    # Without --dihedral the mirrored copies are not found.
    code, stdout, _ = run(capsys, "dedup", turned, "-j", "2", "-q")
    plain = json.loads(stdout)
    assert code == 0 and report["dihedral"] is True and plain["dihedral"] is False
    assert not any(n.endswith(("_mirror.png", "_turned.png")) for c in plain["clusters"]
                   for n in names(c))


def test_dihedral_refuses_hash_lists_and_other_algorithms(capsys, bundled, tmp_path):
    lst = tmp_path / "h.csv"
    formats.write_hash_list(lst, hx.hash_images(bundled[:3], "pdq", workers=1).hashes)
    code, out, err = run(capsys, "dedup", lst, "--dihedral")
    assert code == 2 and out == "" and "--dihedral needs images" in err and str(lst) in err
    code, _, err = run(capsys, "dedup", bundled[0], bundled[1], "--dihedral", "-a", "phash")
    assert code == 2 and "phash has no rotation/flip hashing" in err
    code, _, err = run(capsys, "dedup", "--robust", bundled[0], "--dihedral")
    assert code == 2 and "drop --dihedral" in err
    code, _, err = run(capsys, "dedup", "--robust", bundled[0], "--chaining", "flag")
    assert code == 2 and "not --robust" in err


@pytest.fixture
def sizes(bundled, tmp_path) -> Path:
    """One photo at three sizes (different files, one cluster) plus two unrelated ones."""
    d = tmp_path / "sizes"
    d.mkdir()
    with Image.open(bundled[0]) as im:
        im = im.convert("RGB")
        im.save(d / "full.jpg", quality=90)
        im.resize((im.width // 2, im.height // 2)).save(d / "half.jpg", quality=95)
        im.resize((im.width // 3, im.height // 3)).save(d / "third.png")
    for p in bundled[1:3]:
        Image.open(p).save(d / Path(p).name)
    os.utime(d / "third.png", (1_000_000, 1_000_000))  # the oldest
    return d


def test_members_keep_distances_and_details(capsys, sizes, tmp_path):
    code, out, err = run(capsys, "dedup", sizes, "-q")
    assert code == 0, err
    report = json.loads(out)
    assert report["keep_by"] == ["resolution", "size", "oldest"]
    assert report["chaining"] == "split" and report["max_diameter"] == 2 * report["threshold"]
    (cluster,) = report["clusters"]
    (det,) = report["details"]
    assert names(cluster) == ["full.jpg", "half.jpg", "third.png"]
    kept = [m for m in cluster if m["keep"]]
    assert len(kept) == 1 and Path(kept[0]["key"]).name == "full.jpg"  # most pixels
    assert det["keep"] == kept[0]["key"] and det["size"] == 3 and det["cluster"] == 0
    hashes = {Path(m["key"]).name: hx.hash_image(m["key"], "pdq") for m in cluster}
    for m in cluster:
        assert m["distance"] == hashes[Path(m["key"]).name] - hashes["full.jpg"]
    # a spanning tree of true links, indices into the members
    assert len(det["edges"]) == 2
    for i, j, d in det["edges"]:
        a, b = (hashes[Path(cluster[x]["key"]).name] for x in (i, j))
        assert d == a - b <= report["threshold"]
    pair = [hashes[n] for n in ("full.jpg", "half.jpg", "third.png")]
    assert det["diameter"] == max(x - y for x in pair for y in pair)
    assert det["diameter_exact"] is True and det["chained"] is False
    assert det["split"] is False and det["links"] >= 2
    # other rules
    for rules, want in (("oldest", "third.png"), ("size,resolution", "full.jpg"),
                        ("newest,path", None), ("path", "full.jpg")):
        code, out, _ = run(capsys, "dedup", sizes, "-q", "--keep-by", rules)
        (cluster,) = json.loads(out)["clusters"]
        got = [Path(m["key"]).name for m in cluster if m["keep"]]
        if want is None:  # newest: any of the two written last, never the old one
            assert got != ["third.png"] and len(got) == 1
        else:
            assert got == [want], rules
    with pytest.raises(SystemExit) as exc:  # an argparse error
        run(capsys, "dedup", sizes, "--keep-by", "colour")
    assert exc.value.code == 2 and "unknown keep rule" in capsys.readouterr().err


def test_csv_has_one_row_per_member(capsys, sizes, tmp_path):
    out = tmp_path / "clusters.csv"  # the format follows the extension
    code, _, err = run(capsys, "dedup", sizes, "-q", "-o", out)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["cluster", "id", "key", "keep", "distance", "chained"]
    assert len(rows) == 3 and {r["cluster"] for r in rows} == {"0"}
    assert [r["keep"] for r in rows].count("true") == 1
    keeper = next(r for r in rows if r["keep"] == "true")
    assert Path(keeper["key"]).name == "full.jpg" and keeper["distance"] == "0"
    assert {r["chained"] for r in rows} == {"false"}


def test_failures_are_named_in_the_json_and_in_errors_file(capsys, sizes, tmp_path):
    (sizes / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    missing = tmp_path / "nowhere"
    code, out, err = run(capsys, "dedup", sizes, missing, "-q")
    assert code == 1
    report = json.loads(out)
    assert report["failed"] == 2 and len(report["clusters"]) == 1  # the rest is clustered
    got = {Path(f["input"]).name: f for f in report["failures"]}
    assert set(got) == {"broken.jpg", "nowhere"}
    assert got["broken.jpg"]["type"] == "ImageDecodeError"
    assert got["nowhere"]["type"] == "FileNotFoundError"
    for f in report["failures"]:
        assert set(f) == {"input", "type", "message"} and f["input"] not in f["message"]
    broken_lines = [x for x in err.splitlines() if "broken.jpg" in x]
    assert len(broken_lines) == 1 and broken_lines[0].count("broken.jpg") == 1
    # --errors FILE: the same records, one summary line on stderr
    errors = tmp_path / "errors.jsonl"
    code, out, err = run(capsys, "dedup", sizes, "-q", "--errors", errors)
    assert code == 1
    records = [json.loads(x) for x in errors.read_text().splitlines()]
    assert records == json.loads(out)["failures"]
    assert [Path(r["input"]).name for r in records] == ["broken.jpg"]
    assert "broken.jpg" not in err and "listed in" in err
    errors_csv = tmp_path / "errors.csv"
    assert run(capsys, "dedup", sizes, "-q", "--errors", errors_csv)[0] == 1
    rows = list(csv.DictReader(io.StringIO(errors_csv.read_text())))
    assert [r["type"] for r in rows] == ["ImageDecodeError"]
    # Nothing readable: the failures still come out on stdout; an output file is kept.
    code, out, _ = run(capsys, "dedup", missing, sizes / "broken.jpg", "-q")
    report = json.loads(out)
    assert code == 1 and report["clusters"] == [] and report["items"] == 0
    assert sorted(f["type"] for f in report["failures"]) == ["FileNotFoundError",
                                                             "ImageDecodeError"]
    kept = tmp_path / "kept.json"
    kept.write_text("precious\n")
    assert run(capsys, "dedup", missing, "-q", "-o", kept)[0] == 1
    assert kept.read_text() == "precious\n"


def _walk(rng, length: int, step: int) -> np.ndarray:
    bits = np.unpackbits(rng.integers(0, 256, 32, dtype=np.uint8))
    order = rng.permutation(bits.size)
    rows = [bits.copy()]
    for k in range(1, length):
        bits[order[(k - 1) * step:k * step]] ^= 1
        rows.append(bits.copy())
    return np.packbits(np.array(rows), axis=1)


@pytest.fixture
def chained_list(tmp_path) -> Path:
    """A hash list: a chain of 20 distinct hashes 25 bits a step, and a real cluster (an
    original with 6 copies, each within 31 bits of it)."""
    rng = np.random.default_rng(3)
    walk = _walk(rng, 20, 25)
    original = rng.integers(0, 256, 32, dtype=np.uint8)
    copies = [original]
    for k in (12, 18, 24, 28, 30, 31):
        bits = np.unpackbits(original)
        bits[rng.choice(256, k, replace=False)] ^= 1
        copies.append(np.packbits(bits))
    codes = np.concatenate([walk, np.stack(copies)])
    keys = [f"walk-{i:02d}" for i in range(20)] + [f"copy-{i}" for i in range(7)]
    path = tmp_path / "chain.csv"
    formats.write_hash_list(path, hx.HashArray(codes, "pdq"), keys=keys)
    return path


def test_chaining_guard_splits_by_default_flags_or_stays_off(capsys, chained_list):
    code, out, err = run(capsys, "dedup", chained_list)
    assert code == 0, err
    report = json.loads(out)
    walk = [(c, d) for c, d in zip(report["clusters"], report["details"], strict=True)
            if c[0]["key"].startswith("walk")]
    real = [(c, d) for c, d in zip(report["clusters"], report["details"], strict=True)
            if c[0]["key"].startswith("copy")]
    assert len(real) == 1 and len(real[0][0]) == 7 and not real[0][1]["split"]
    assert not real[0][1]["chained"] and real[0][1]["diameter"] > report["threshold"]
    assert len(walk) > 1 and all(d["split"] and not d["chained"] for _, d in walk)
    assert len({d["component"] for _, d in walk}) == 1
    assert sorted(m["key"] for c, _ in walk for m in c) == [f"walk-{i:02d}" for i in range(20)]
    assert all(d["diameter"] <= report["max_diameter"] for _, d in walk)
    assert "chained groups split" in err
    # flag: one cluster for the walk, marked
    code, out, _ = run(capsys, "dedup", chained_list, "--chaining", "flag", "-q")
    report = json.loads(out)
    assert [len(c) for c in report["clusters"]] == [20, 7]
    assert [d["chained"] for d in report["details"]] == [True, False]
    assert report["details"][0]["diameter"] > report["max_diameter"]
    code, out, _ = run(capsys, "dedup", chained_list, "--chaining", "flag", "-q",
                       "--max-diameter", "1000")
    assert [d["chained"] for d in json.loads(out)["details"]] == [False, False]
    code, out, _ = run(capsys, "dedup", chained_list, "--chaining", "off", "-q")
    assert [d["chained"] for d in json.loads(out)["details"]] == [False, False]
    code, _, err = run(capsys, "dedup", chained_list, "--max-diameter", "30")
    assert code == 2 and "below the threshold" in err


def test_hash_list_keeper_uses_files_the_keys_name(capsys, tmp_path):
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(b"x" * 10)
    big.write_bytes(b"x" * 1000)
    code = np.arange(32, dtype=np.uint8)
    codes = np.stack([code, code, code])
    codes[2, 0] ^= 1  # one bit away
    lst = tmp_path / "list.csv"
    formats.write_hash_list(lst, hx.HashArray(codes, "pdq"),
                            keys=["not-a-file", str(small), str(big)])
    rc, out, _ = run(capsys, "dedup", lst, "-q")
    (cluster,) = json.loads(out)["clusters"]
    assert rc == 0 and [m["keep"] for m in cluster] == [False, False, True]  # largest file
    rc, out, _ = run(capsys, "dedup", lst, "-q", "--keep-by", "path")
    (cluster,) = json.loads(out)["clusters"]
    # the path that sorts first
    assert [m["key"] for m in cluster if m["keep"]] == [min(m["key"] for m in cluster)]
    # no key names a file: the first member
    formats.write_hash_list(lst, hx.HashArray(codes, "pdq"))
    rc, out, _ = run(capsys, "dedup", lst, "-q")
    report = json.loads(out)
    assert [m["keep"] for m in report["clusters"][0]] == [True, False, False]
    assert report["details"][0]["keep"] == report["clusters"][0][0]["id"]
    assert [m["distance"] for m in report["clusters"][0]] == [0, 0, 1]
    assert popcount(codes[0] ^ codes[2]) == 1


def test_robust_failures_and_keeper(capsys, sizes, tmp_path):
    pytest.importorskip("cv2")
    (sizes / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, out, _ = run(capsys, "dedup", "--robust", sizes, "-q", "-j", "1")
    report = json.loads(out)
    assert code == 1 and report["mode"] == "robust"
    assert [(Path(f["input"]).name, f["type"]) for f in report["failures"]] == \
        [("broken.jpg", "ImageDecodeError")]
    (cluster,) = report["clusters"]
    assert names(cluster) == ["full.jpg", "half.jpg", "third.png"]
    assert [Path(m["key"]).name for m in cluster if m["keep"]] == ["full.jpg"]
    assert report["details"][0]["links"] == len(report["edges"]) >= 2
