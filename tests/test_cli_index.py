"""`index build` from images and several lists, `index add`, `index merge`, `match --top-k`,
failure records (`--errors`), and the skipped-files note."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

import hashlib_ext as hx
from hashlib_ext.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def lists(tmp_path, bundled):
    """Two hex lists: a.txt (ids 0..3 by record number) and b.csv (ids 100..103, keys)."""
    hashes = [hx.hash_image(p, "pdq") for p in bundled[:8]]
    a = tmp_path / "a.txt"
    a.write_text("".join(h.hex + "\n" for h in hashes[:4]))
    b = tmp_path / "b.csv"
    b.write_text("hash,id,key\n" + "".join(
        f"{h.hex},{100 + i},{bundled[4 + i]}\n" for i, h in enumerate(hashes[4:])))
    return a, b, hashes


def test_build_from_several_lists_and_images(capsys, tmp_path, lists, bundled):
    a, b, hashes = lists
    idx = tmp_path / "x.hxi"
    code, _, err = run(capsys, "index", "build", a, b, bundled[10], "-o", idx, "--no-progress")
    assert code == 0, err
    index = hx.HashIndex.load(idx)
    assert len(index) == 9
    assert sorted(index.ids.tolist()) == [0, 1, 2, 3, 100, 101, 102, 103, 104]
    assert index.keys([101]) == [str(bundled[5])]
    # the image: hashed with PDQ, keyed by its path, id after the largest
    assert index.keys([104]) == [str(bundled[10])]
    assert index.search(hx.hash_image(bundled[10], "pdq"), 0) == [[(104, 0)]]
    assert "indexed 9 pdq hashes" in err and "from 3 inputs" in err


def test_add_refuses_colliding_ids_then_renumbers_or_replaces(capsys, tmp_path, lists):
    a, b, hashes = lists
    idx = tmp_path / "x.hxi"
    assert run(capsys, "index", "build", b, "-o", idx)[0] == 0  # ids 100..103
    before = idx.read_bytes()
    code, _, err = run(capsys, "index", "add", idx, b)
    assert code == 2 and "ids are already in the index" in err and "--renumber" in err
    assert idx.read_bytes() == before  # left as it was
    assert run(capsys, "index", "add", idx, b, "--renumber")[0] == 0
    index = hx.HashIndex.load(idx)
    assert sorted(index.ids.tolist()) == [100, 101, 102, 103, 104, 105, 106, 107]
    assert sorted(i for i, _ in index.search(hashes[4], 0)[0]) == [100, 104]
    # a list without an id column gets ids after the largest: nothing collides
    assert run(capsys, "index", "add", idx, a)[0] == 0
    index = hx.HashIndex.load(idx)
    assert sorted(index.ids.tolist())[-4:] == [108, 109, 110, 111]
    assert index.search(hashes[0], 0) == [[(108, 0)]]
    # --replace: same ids, new codes
    c = tmp_path / "c.csv"
    c.write_text(f"hash,id\n{hashes[7].hex},100\n")
    assert run(capsys, "index", "add", idx, c, "--replace")[0] == 0
    index = hx.HashIndex.load(idx)
    assert len(index) == 12
    assert (100, 0) in index.search(hashes[7], 0)[0]
    assert 100 not in [i for i, _ in index.search(hashes[4], 0)[0]]


def test_add_images_to_a_robust_index_and_refuse_lists(capsys, tmp_path, bundled, lists):
    pytest.importorskip("cv2")
    a, _, _ = lists
    idx = tmp_path / "r.hxi"
    assert run(capsys, "index", "build", "--robust", bundled[0], "-o", idx, "-j", "1")[0] == 0
    code, _, err = run(capsys, "index", "add", idx, bundled[1], "-j", "1")
    assert code == 0, err
    robust = hx.RobustIndex.load(idx)
    assert len(robust) == 2
    assert [m.id for m in robust.match(bundled[1])][:1] == [1]
    code, _, err = run(capsys, "index", "add", idx, a)
    assert code == 2 and "takes images, not hash lists" in err


def test_merge_keeps_keys_and_refuses_clashes(capsys, tmp_path, lists):
    a, b, hashes = lists
    ia, ib, out = tmp_path / "a.hxi", tmp_path / "b.hxi", tmp_path / "m.hxi"
    assert run(capsys, "index", "build", a, "-o", ia)[0] == 0
    assert run(capsys, "index", "build", b, "-o", ib)[0] == 0
    assert run(capsys, "index", "merge", ia, ib, "-o", out)[0] == 0
    merged = hx.HashIndex.load(out)
    assert sorted(merged.ids.tolist()) == [0, 1, 2, 3, 100, 101, 102, 103]
    assert merged.keys([100]) == hx.HashIndex.load(ib).keys([100])
    code, _, err = run(capsys, "index", "merge", ia, ia, "-o", out)
    assert code == 2 and "--renumber" in err
    assert run(capsys, "index", "merge", ia, ia, "-o", out, "--renumber")[0] == 0
    assert len(hx.HashIndex.load(out)) == 8


def test_merge_refuses_other_algorithms(capsys, tmp_path, bundled):
    ph = tmp_path / "p.txt"
    ph.write_text(hx.hash_image(bundled[0], "phash").hex + "\n")
    pd = tmp_path / "d.txt"
    pd.write_text(hx.hash_image(bundled[0], "pdq").hex + "\n")
    assert run(capsys, "index", "build", ph, "-a", "phash", "-o", tmp_path / "p.hxi")[0] == 0
    assert run(capsys, "index", "build", pd, "-o", tmp_path / "d.hxi")[0] == 0
    code, _, err = run(capsys, "index", "merge", tmp_path / "p.hxi", tmp_path / "d.hxi",
                       "-o", tmp_path / "m.hxi")
    assert code == 2 and "phash" in err and "pdq" in err


def test_match_top_k_keeps_the_nearest(capsys, tmp_path, bundled):
    base = hx.hash_image(bundled[0], "pdq")
    rng = np.random.default_rng(1)
    codes = np.repeat(base.codes if hasattr(base, "codes") else
                      np.frombuffer(bytes.fromhex(base.hex), np.uint8)[None], 5, axis=0).copy()
    for i in range(1, 5):  # i * 3 flipped bits
        bits = rng.choice(256, size=3 * i, replace=False)
        for bit in bits:
            codes[i, bit // 8] ^= np.uint8(1 << (bit % 8))
    lst = tmp_path / "near.txt"
    lst.write_text("".join(bytes(c).hex() + "\n" for c in codes[::-1]))  # farthest first
    idx = tmp_path / "n.hxi"
    assert run(capsys, "index", "build", lst, "-o", idx)[0] == 0
    code, out, _ = run(capsys, "match", idx, bundled[0], "--top-k", "2", "-f", "json")
    assert code == 0
    rows = json.loads(out)
    assert [r["distance"] for r in rows] == [0, 3]
    assert [r["id"] for r in rows] == [4, 3]
    code, _, err = run(capsys, "match", idx, bundled[0], "--top-k", "0")
    assert code == 2


def test_failures_go_to_the_errors_file(capsys, tmp_path, bundled):
    idx = tmp_path / "x.hxi"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    missing = tmp_path / "missing.jpg"
    errors = tmp_path / "errors.csv"
    code, _, err = run(capsys, "index", "build", bundled[0], broken, missing, "-o", idx,
                       "--errors", errors, "--no-progress")
    assert code == 1
    assert len(hx.HashIndex.load(idx)) == 1  # the good image is indexed
    rows = list(csv.DictReader(io.StringIO(errors.read_text())))
    assert {r["input"] for r in rows} == {str(broken), str(missing)}
    by = {r["input"]: r for r in rows}
    assert by[str(broken)]["type"] == "ImageDecodeError"
    assert by[str(missing)]["type"] == "FileNotFoundError"
    assert all(r["input"] not in r["message"] for r in rows)  # the path is not repeated
    assert "2 inputs failed; listed in" in err and str(broken) not in err
    # match: without --errors the failure is a row of the output
    code, out, err = run(capsys, "match", idx, bundled[0], broken, "-f", "jsonl")
    assert code == 1
    recs = [json.loads(line) for line in out.splitlines()]
    assert recs[0]["distance"] == 0 and "error" not in recs[0]
    assert recs[1]["query"] == str(broken) and recs[1]["error_type"] == "ImageDecodeError"
    (line,) = [x for x in err.splitlines() if "broken.jpg" in x]
    assert line.count(str(broken)) == 1  # one path per error line


def test_folder_walk_notes_skipped_files_unless_quiet(capsys, tmp_path, bundled):
    import shutil

    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(bundled[0], folder / "a.jpg")
    (folder / "readme.txt").write_text("not an image")
    (folder / ".hidden").write_text("x")
    code, _, err = run(capsys, "index", "build", folder, "-o", tmp_path / "x.hxi")
    assert code == 0
    assert "skipped 1 file" in err and "readme.txt" in err and ".hidden" not in err
    code, _, err = run(capsys, "index", "build", folder, "-o", tmp_path / "x.hxi", "-q")
    assert code == 0 and err == ""


def test_threatexchange_metadata_reaches_match_output(capsys, tmp_path, bundled):
    h = hx.hash_image(bundled[0], "pdq")
    other = hx.hash_image(bundled[1], "pdq")
    te = tmp_path / "list.te.csv"
    te.write_text("signal_type,signal_str,collab,category,tags\n"
                  f"pdq,{h.hex},collab-a,spam,\"t1 t2\"\n"
                  f"pdq,{other.hex},collab-b,,\n")
    idx = tmp_path / "te.hxi"
    assert run(capsys, "index", "build", te, "--input-format", "te", "-o", idx)[0] == 0
    assert hx.HashIndex.load(idx).metadata_columns == ["collab", "category", "tags"]
    code, out, _ = run(capsys, "match", idx, bundled[0], bundled[1], "-f", "json")
    assert code == 0
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[0]["collab"] == "collab-a" and rows[0]["category"] == "spam"
    assert rows[0]["tags"] == "t1 t2"
    assert rows[1]["collab"] == "collab-b"
    assert rows[1].get("category") in (None, "")
    # CSV: the metadata columns follow distance
    code, out, _ = run(capsys, "match", idx, bundled[0])
    header = out.splitlines()[0].split(",")
    assert header[:4] == ["query", "id", "distance", "collab"]
