"""RobustIndex: edited copies found by the right stage, no false matches (shared stickers
included), operating points, sources, bad input, and the file format."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import hashlib_ext as hx
from hashlib_ext import descriptor as D
from hashlib_ext.errors import ImageDecodeError, IndexFileError
from hashlib_ext.evaluate import transforms as T

pytest.importorskip("cv2")

HARD = ["crop:side=0.2", "crop:side=0.25,edge=bottom", "rotzoom:deg=6", "hflip+crop:side=0.15",
        "meme:top=0.2,extend=false,bg=black", "crop:square=true"]
PADDED = ["pad:ratio=0.5625", "frame:width=0.08,style=mat", "phone:theme=dark",
          "letterbox:ratio=1.7778,color=white"]
EASY = ["jpeg:q=30", "resize:scale=0.5", "hflip", "rotate90:k=1", "gamma:g=1.5"]


@pytest.fixture(scope="module")
def images(bundled) -> list[Image.Image]:
    return [hx.load(p).convert("RGB") for p in bundled[:10]]


@pytest.fixture(scope="module")
def index(images) -> hx.RobustIndex:
    idx = hx.RobustIndex()
    res = idx.add(images, keys=[f"img{i}" for i in range(len(images))])
    assert res.errors == [] and res.ids.tolist() == list(range(len(images)))
    return idx


def _found(idx: hx.RobustIndex, query, true_id: int) -> tuple[bool, list]:
    ms = idx.match(query)
    return any(m.id == true_id for m in ms), ms


@pytest.mark.parametrize("spec", HARD)
def test_hard_edits_found_by_local_stage_without_false_matches(index, images, spec):
    found = 0
    for i, im in enumerate(images[:6]):
        ok, ms = _found(index, T.apply(spec, im, seed=i), i)
        found += ok
        assert [m.id for m in ms if m.id != i] == [], f"{spec}: false match for image {i}"
        assert all(m.stage == 2 and m.score >= hx.robust.MIN_SCORE for m in ms if m.id == i) \
            or all(m.stage == 1 for m in ms)
    assert found >= 5, f"{spec}: found {found} of 6"


@pytest.mark.parametrize("spec", PADDED + EASY)
def test_padded_and_easy_edits_found_by_global_stage(index, images, spec):
    stage1 = 0
    for i, im in enumerate(images[:6]):
        ok, ms = _found(index, T.apply(spec, im, seed=i), i)
        assert ok, f"{spec}: image {i} not found"
        assert [m.id for m in ms if m.id != i] == []
        stage1 += ms[0].stage == 1
    assert stage1 >= 5


def test_unrelated_images_match_nothing(index, images, bundled):
    for p in bundled[10:20]:
        assert index.match(p) == []


@pytest.mark.parametrize("size", [0.25, 0.35])
def test_shared_sticker_on_different_photos_is_not_a_match(images, size):
    sticker = f"sticker:size={size},pos=br"
    idx = hx.RobustIndex()
    idx.add([T.apply(sticker, im) for im in images[:5]])
    for i, im in enumerate(images[5:10]):
        q = T.apply(f"sticker:size={size},pos=tl", im, seed=i)
        assert idx.match(q) == [], f"photo {i + 5} matched another photo through the sticker"



def test_photo_with_an_added_sticker_is_still_found(index, images):
    found = sum(_found(index, T.apply("crop:side=0.15+sticker:size=0.25,pos=tl", im), i)[0]
                for i, im in enumerate(images[:6]))
    assert found >= 5


def test_operating_point_moves_with_min_score(index, images):
    q = T.apply("crop:side=0.2", images[1])
    (m,) = index.match(q)
    assert m.stage == 2
    assert index.match(q, min_score=m.score) == [m]
    assert index.match(q, min_score=m.score + 1) == []
    # stage 1 threshold: an exact copy is at distance 0, found even with threshold 0
    assert index.match(images[2], pdq_threshold=0)[0] == hx.RobustMatch(2, 256, 1)


def test_sources_of_every_kind(index, images, bundled):
    with open(bundled[3], "rb") as f:
        raw = f.read()
    for src in (bundled[3], raw, io.BytesIO(raw), np.asarray(images[3]), images[3],
                hx.describe(images[3], query=True), hx.describe(images[3])):
        assert index.match(src)[0].id == 3


def test_descriptor_shapes_and_sizes(images):
    d = hx.describe(images[0])
    q = hx.describe(T.apply("pad:ratio=0.5625", images[0]), query=True)
    assert d.pdq.shape[1:] == (1, 32) and q.pdq.shape[1:] == (8, 32)
    assert len(d.local) == 1 and 0 < len(d.local[0]) <= D.INDEX_FEATURES
    assert len(q.local) == 2 + len(q.boxes) and len(q.boxes) >= 1
    w, h = d.local[0].size
    assert max(w, h) == hx.features.FRAME_SIDE
    assert np.all((d.local[0].xy >= 0) & (d.local[0].xy < [w, h]))


def test_stored_size_per_image_is_within_budget(index, tmp_path):
    index.save(tmp_path / "a.ridx")
    assert (tmp_path / "a.ridx").stat().st_size / len(index) <= 8 * 1024


def test_add_reports_bad_inputs_and_keeps_the_rest(images, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    idx = hx.RobustIndex()
    res = idx.add([images[0], str(bad), b"", images[1], str(tmp_path / "missing.png")],
                  ids=[10, 11, 12, 13, 14])
    assert res.ids.tolist() == [10, 13]
    assert [e[0] for e in res.errors] == [str(bad), 2, str(tmp_path / "missing.png")]
    assert all(e[1] == "ImageDecodeError" for e in res.errors)
    assert len(idx) == 2 and idx.match(images[1])[0].id == 13
    with pytest.raises(ValueError, match="already indexed"):
        idx.add([images[2]], ids=[13])
    with pytest.raises(ValueError, match="repeated"):
        idx.add([images[2], images[3]], ids=[20, 20])
    with pytest.raises(TypeError, match="index-side"):
        idx.add([hx.describe(images[2], query=True)])
    with pytest.raises(ImageDecodeError):
        idx.match(b"not an image")
    assert hx.RobustIndex().match(images[0]) == []


def test_save_load_round_trip(index, images, tmp_path):
    path = tmp_path / "known.ridx"
    index.save(path)
    back = hx.RobustIndex.load(path)
    assert len(back) == len(index) and back.ids.tolist() == index.ids.tolist()
    assert back.keys([0, 9, 99]) == ["img0", "img9", None]
    for spec in ("crop:side=0.2", "jpeg:q=30", "pad:ratio=0.5625"):
        q = hx.describe(T.apply(spec, images[4]), query=True)
        assert back.match(q) == index.match(q)
    more = back.add([images[0]])
    assert more.ids.tolist() == [len(images)]


def test_damaged_or_foreign_files_are_refused(index, tmp_path):
    path = tmp_path / "known.ridx"
    index.save(path)
    blob = path.read_bytes()
    for mutate in (lambda b: b[: len(b) // 2], lambda b: b[:-1],
                   lambda b: b[:5000] + bytes([b[5000] ^ 1]) + b[5001:]):
        path.write_bytes(mutate(blob))
        with pytest.raises(IndexFileError):
            hx.RobustIndex.load(path)
    hidx = hx.HashIndex("pdq")
    hidx.add(np.zeros((3, 32), np.uint8))
    hidx.save(tmp_path / "hash.hidx")
    with pytest.raises(IndexFileError, match="RobustIndex"):
        hx.RobustIndex.load(tmp_path / "hash.hidx")


def test_matches_run_while_another_thread_adds(images):
    import threading

    idx = hx.RobustIndex()
    idx.add(images[:5])
    queries = [hx.describe(T.apply("crop:side=0.2", im, seed=i), query=True)
               for i, im in enumerate(images[:5])]
    extra = [hx.describe(im) for im in images[5:10]]
    found: list[list[int]] = []
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(3):
                found.append([idx.match(q)[0].id for q in queries])
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for d in extra:
        idx.add([d])
    for t in threads:
        t.join()
    assert not failures
    assert found and all(row == [0, 1, 2, 3, 4] for row in found)
    assert len(idx) == 10 and idx.match(images[7])[0].id == 7


def test_describe_pair_equals_the_two_descriptions(images):
    src = T.apply("pad:ratio=0.5625", images[2])
    index, query = D.describe_pair(src)
    for got, want in ((index, hx.describe(src)), (query, hx.describe(src, query=True))):
        assert got.query == want.query and got.boxes == want.boxes and got.size == want.size
        assert np.array_equal(got.pdq, want.pdq) and np.array_equal(got.quality, want.quality)
        assert len(got.local) == len(want.local)
        for a, b in zip(got.local, want.local, strict=True):
            assert np.array_equal(a.xy, b.xy) and np.array_equal(a.desc, b.desc)
            assert np.array_equal(a.thumb, b.thumb) and a.size == b.size
