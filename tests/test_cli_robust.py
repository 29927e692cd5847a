"""``index build --robust``, ``match --robust`` and ``dedup --robust`` end to end: edited
copies found and named, bad inputs reported, usage errors."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest

from hashlib_ext.cli import main
from hashlib_ext.evaluate import transforms as T

pytest.importorskip("cv2")

EDITS = ["crop:side=0.2", "meme:top=0.18", "rotzoom:deg=5", "phone:theme=dark",
         "hflip+crop:side=0.15"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def folders(bundled, tmp_path_factory):
    d = tmp_path_factory.mktemp("robust")
    known, up = d / "known", d / "up"
    known.mkdir()
    up.mkdir()
    originals = [shutil.copy(p, known / p.name) for p in bundled[:12]]
    for i, spec in enumerate(EDITS):
        T.apply(spec, originals[i], seed=i).save(up / f"edit{i}.jpg", quality=85)
    (up / "zz-broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return {"dir": d, "known": known, "up": up, "originals": [str(p) for p in originals]}


def test_build_then_match_finds_every_edit(capsys, folders):
    index = folders["dir"] / "known.ridx"
    code, _, err = run(capsys, "index", "build", "--robust", folders["known"], "-o", index,
                       "-j", "1")
    assert code == 0 and "indexed 12 images" in err
    code, out, err = run(capsys, "match", "--robust", index, folders["up"], "-j", "1")
    assert code == 1  # the broken input
    assert "zz-broken.jpg" in err and "ImageDecodeError" in err
    rows = list(csv.DictReader(io.StringIO(out)))
    (failed,) = [r for r in rows if r["error_type"]]  # the broken input is a row of its own
    assert failed["query"].endswith("zz-broken.jpg") and failed["error_type"] == "ImageDecodeError"
    assert failed["id"] == "" and "zz-broken.jpg" not in failed["error"]
    rows = [r for r in rows if not r["error_type"]]
    got = {r["query"].rsplit("/", 1)[-1]: r for r in rows}
    assert len(rows) == len(EDITS)  # one match each, no false ones
    for i in range(len(EDITS)):
        r = got[f"edit{i}.jpg"]
        assert r["key"] == folders["originals"][i] and int(r["stage"]) in (1, 2)
        assert int(r["score"]) >= 12


def test_match_json_and_operating_point(capsys, folders):
    index = folders["dir"] / "known2.ridx"
    assert run(capsys, "index", "build", "--robust", folders["known"], "-o", index)[0] == 0
    code, out, _ = run(capsys, "match", "--robust", index, folders["up"] / "edit0.jpg",
                       "-f", "json", "--min-score", "1000", "--unmatched")
    assert code == 0 and json.loads(out) == [
        {"query": str(folders["up"] / "edit0.jpg"), "id": None, "key": None, "score": None,
         "stage": None}]


def test_dedup_links_originals_with_their_edits(capsys, folders, tmp_path):
    both = tmp_path / "both"
    both.mkdir()
    for p in list(folders["known"].iterdir()) + list(folders["up"].iterdir()):
        shutil.copy(p, both / p.name)
    code, _, err = run(capsys, "dedup", "--robust", both, "-o", tmp_path / "c.json", "-j", "2")
    assert code == 1 and "zz-broken.jpg" in err
    res = json.loads((tmp_path / "c.json").read_text())
    assert res["mode"] == "robust" and res["failed"] == 1
    assert [f["input"].rsplit("/", 1)[-1] for f in res["failures"]] == ["zz-broken.jpg"]
    names = sorted(sorted(m["key"].rsplit("/", 1)[-1] for m in c) for c in res["clusters"])
    expected = sorted(sorted([folders["originals"][i].rsplit("/", 1)[-1], f"edit{i}.jpg"])
                      for i in range(len(EDITS)))
    assert names == expected
    assert {e["stage"] for e in res["edges"]} <= {1, 2} and len(res["edges"]) == len(EDITS)


@pytest.mark.parametrize("argv, message", [
    (["match", "--robust", "X", "in.csv", "--dihedral"], "drop --dihedral"),
    (["match", "--min-score", "3", "X", "a.jpg"], "--min-score needs --robust"),
    (["dedup", "--robust", ".", "--min-score", "-1"], "--min-score must be >= 0"),
    (["dedup", "--robust", ".", "-a", "phash"], "drop --algorithm"),
])
def test_usage_errors(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err


def test_hash_lists_are_refused_and_bad_index_is_an_error(capsys, folders, tmp_path):
    hl = tmp_path / "h.csv"
    hl.write_text("hash\n" + "0" * 64 + "\n")
    code, _, err = run(capsys, "match", "--robust", folders["dir"] / "known.ridx", hl)
    assert code == 2 and "not hash lists" in err
    bad = tmp_path / "bad.ridx"
    bad.write_bytes(b"HXINDEX\n" + b"\0" * 40)
    code, _, err = run(capsys, "match", "--robust", bad, folders["up"] / "edit0.jpg")
    assert code == 1 and "bad.ridx" in err
