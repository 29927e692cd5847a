"""The CLI's scale-out path: hash --scheduler -> Parquet partitions -> index build --shards
--scheduler -> match / dedup --scheduler, against a 2-worker LocalCluster; and the same
sharded index built and searched in-process. Answers equal the single-file index's."""

from __future__ import annotations

import csv
import io
import json

import pytest

import hashlib_ext as hx
from hashlib_ext.cli import main

distributed = pytest.importorskip("distributed")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def address():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


@pytest.fixture()
def corpus(tmp_path, bundled):
    """Eight photos, two edited copies of the first (a resize, a re-encode), a broken file."""
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in bundled[:8]:
        (folder / p.name).write_bytes(p.read_bytes())
    with Image.open(bundled[0]) as im:
        im.resize((im.width // 2, im.height // 2)).save(folder / "zz-small.jpg")
        im.save(folder / "zz-q40.jpg", quality=40)
    (folder / "zz-broken.jpg").write_bytes(b"not an image")
    return folder


def _rows(out: str) -> list[tuple[str, int, int]]:
    return sorted((r["query"], int(r["id"]), int(r["distance"]))
                  for r in csv.DictReader(io.StringIO(out)) if r["id"])


def test_end_to_end_on_a_cluster_equals_one_index(capsys, tmp_path, corpus, address):
    parts = tmp_path / "parts"
    code, _, err = run(capsys, "hash", corpus, "--scheduler", address, "-o", parts)
    assert code == 1  # the broken file
    assert "zz-broken.jpg: ImageDecodeError" in err
    assert sorted(p.name for p in parts.glob("part-*.parquet"))  # partitions on disk
    sharded = tmp_path / "sharded"
    code, _, err = run(capsys, "index", "build", parts, "--shards", "3", "--scheduler",
                       address, "-o", sharded)
    assert code == 0, err
    assert (sharded / "manifest.json").is_file() and len(list(sharded.glob("*.hxi"))) == 3
    # the same images in one index file
    single = tmp_path / "one.hxi"
    assert run(capsys, "index", "build", corpus, "-o", single, "-j", "1", "-q")[0] == 1
    queries = [corpus / "zz-small.jpg", corpus / "zz-q40.jpg", corpus / sorted(
        p.name for p in corpus.glob("0*.jpg"))[3]]
    code, out_sh, err = run(capsys, "match", sharded, *queries, "--scheduler", address)
    assert code == 0, err
    code, out_one, _ = run(capsys, "match", single, *queries)
    assert code == 0
    # keys are the paths in both: compare query, key and distance
    def by_key(out):
        return sorted((r["query"], r["key"], int(r["distance"]))
                      for r in csv.DictReader(io.StringIO(out)))
    assert by_key(out_sh) == by_key(out_one) and len(by_key(out_sh)) >= 5
    # dedup on the cluster: the three copies of the first photo form the one cluster
    code, out, err = run(capsys, "dedup", sharded, "--scheduler", address)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["sharded"] and doc["shards"] == 3
    names = [sorted(m["key"].rsplit("/", 1)[-1] for m in c) for c in doc["clusters"]]
    first = sorted(p.name for p in corpus.glob("0*.jpg"))[0]
    assert [first, "zz-q40.jpg", "zz-small.jpg"] in names
    single_clusters = json.loads(run(capsys, "dedup", corpus, "-j", "1", "--chaining",
                                     "off")[1])["clusters"]
    assert sorted(sorted(m["key"].rsplit("/", 1)[-1] for m in c) for c in single_clusters) \
        == sorted(names)


def test_sharded_build_and_match_in_process(capsys, tmp_path, corpus):
    sharded = tmp_path / "sh"
    te = tmp_path / "list.csv"
    h = hx.hash_image(corpus / "zz-small.jpg", "pdq")
    te.write_text(f"signal_type,signal_str,collab,category,tags\npdq,{h.hex},c1,cat,t\n")
    code, _, err = run(capsys, "index", "build", corpus, te, "--input-format", "te",
                       "--shards", "2", "-o", sharded, "-j", "1")
    assert code == 1 and "zz-broken.jpg" in err  # the broken file; the rest is indexed
    index = hx.ShardedIndex.open(sharded)
    assert index.shards == 2 and len(index) == 11
    code, out, _ = run(capsys, "match", sharded, corpus / "zz-small.jpg", "-f", "json")
    rows = json.loads(out)
    assert any(r.get("collab") == "c1" for r in rows)  # metadata through shards
    assert any(r["key"] and r["key"].endswith("zz-small.jpg") for r in rows)
    # a file where a folder must be, and --scheduler on a one-file index
    code, _, err = run(capsys, "index", "build", te, "--shards", "2", "-o", te,
                       "--input-format", "te")
    assert code == 2
    one = tmp_path / "one.hxi"
    assert run(capsys, "index", "build", te, "--input-format", "te", "-o", one)[0] == 0
    code, _, err = run(capsys, "match", one, corpus / "zz-small.jpg", "--scheduler", "local:1")
    assert code == 2 and "sharded" in err
