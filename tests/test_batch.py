"""hash_images: per-item errors, input order, ids, workers=1 == workers=2, streaming,
several algorithms from one decode, and recovery from a worker process that dies."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hashlib_ext as hx
from hashlib_ext.batch import BatchResult, hash_images


class DiesInWorker:
    """An input whose unpickling in a worker process kills that process at once, as an
    out-of-memory kill or a crash in a native decoder would."""

    def __reduce__(self):
        return (os._exit, (70,))


class KilledInWorker:
    """An input whose unpickling in a worker sends SIGKILL to that worker (``kill -9``)."""

    def __reduce__(self):
        return (signal.raise_signal, (signal.SIGKILL,))


class MarksArrival:
    """An input whose unpickling in a worker creates ``path``: it records which inputs have
    reached a worker (it then arrives as None and is reported as an unsupported input)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, bundled) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    data = bundled[0].read_bytes()
    files = {
        "zero-byte": d / "empty.jpg",
        "truncated": d / "truncated.jpg",
        "text-as-jpg": d / "text.jpg",
        "directory": d / "folder.jpg",
        "missing": d / "missing.jpg",
    }
    files["zero-byte"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["text-as-jpg"].write_text("this is a text file, not a JPEG\n")
    files["directory"].mkdir()
    return files


def _mixed(bundled: list[Path], bad: dict[str, Path]) -> list[Path]:
    """Good and bad inputs interleaved, good ones first, last and in between."""
    good = bundled[:8]
    return [good[0], bad["zero-byte"], good[1], good[2], bad["truncated"], bad["text-as-jpg"],
            good[3], bad["directory"], good[4], good[5], bad["missing"], good[6], good[7]]


@pytest.mark.parametrize("workers", [1, 2])
def test_good_items_hashed_bad_items_reported(bundled, bad_files, workers):
    srcs = _mixed(bundled, bad_files)
    res = hash_images(srcs, "ahash", workers=workers, chunksize=2)
    assert isinstance(res, BatchResult)
    good_pos = [i for i, p in enumerate(srcs) if p in bundled]
    bad_pos = [i for i, p in enumerate(srcs) if p not in bundled]
    assert res.ok == len(good_pos) == len(res.hashes) and res.failed == len(bad_pos)
    assert res.positions.dtype == np.int64 and res.positions.tolist() == good_pos
    assert res.ids == [str(srcs[i]) for i in good_pos]
    for row, i in enumerate(good_pos):
        assert res.hashes[row] == hx.hash_image(srcs[i], "ahash")
    # each bad input, in input order, named by its path, with the typed error
    assert [e[0] for e in res.errors] == [str(srcs[i]) for i in bad_pos]
    assert {e[1] for e in res.errors} == {"ImageDecodeError"}
    assert all(e[2] for e in res.errors)


def test_workers_1_and_2_identical(bundled):
    srcs = bundled + [bundled[0].parent / "no-such-image.jpg"] + bundled[:5]
    one = hash_images(srcs, "pdq", workers=1)
    two = hash_images(srcs, "pdq", workers=2, chunksize=3)
    assert one.hashes == two.hashes and len(one.hashes) == len(srcs) - 1
    assert np.array_equal(one.hashes.qualities, two.hashes.qualities)
    assert one.ids == two.ids and np.array_equal(one.positions, two.positions)
    assert one.errors == two.errors and len(one.errors) == 1


def test_generator_and_non_path_inputs_are_identified_by_position(bundled):
    img = Image.open(bundled[1])
    for workers in (1, 2):
        srcs = [bundled[0].read_bytes(), img, np.asarray(img.convert("RGB")),
                open(bundled[2], "rb"), b"not an image"]
        res = hash_images((s for s in srcs), "dhash", workers=workers, chunksize=2)
        srcs[3].close()
        assert res.ids == [0, 1, 2, 3] and res.positions.tolist() == [0, 1, 2, 3]
        assert res.hashes[0] == hx.hash_image(bundled[0], "dhash")
        assert res.hashes[1] == res.hashes[2] == hx.hash_image(bundled[1], "dhash")
        assert res.hashes[3] == hx.hash_image(bundled[2], "dhash")
        assert res.errors == [(4, "ImageDecodeError", res.errors[0][2])]


def test_list_of_algorithms_rows_aligned(bundled, bad_files):
    srcs = [bundled[0], bad_files["zero-byte"], *bundled[1:6]]
    names = ["pdq", "phash", "ahash"]
    res = hash_images(srcs, names, workers=2, chunksize=2)
    assert isinstance(res.hashes, dict) and list(res.hashes) == names
    for name in names:
        alone = hash_images(srcs, name, workers=1)
        assert res.hashes[name] == alone.hashes and res.ids == alone.ids
    assert res.hashes["pdq"].qualities is not None and res.hashes["ahash"].qualities is None
    assert len(res.errors) == 1


def test_killed_worker_loses_no_good_item(bundled):
    srcs: list[object] = list(bundled[:12])
    srcs.insert(3, DiesInWorker())
    srcs.insert(9, KilledInWorker())
    srcs.insert(10, DiesInWorker())
    res = hash_images(srcs, "ahash", workers=2, chunksize=2)
    bad = (DiesInWorker, KilledInWorker)
    crashed = [i for i, s in enumerate(srcs) if isinstance(s, bad)]
    assert [e[:2] for e in res.errors] == [(i, "WorkerCrashedError") for i in crashed]
    assert res.ids == [str(s) for s in srcs if not isinstance(s, bad)]
    assert res.hashes == hash_images(bundled[:12], "ahash", workers=1).hashes


def test_killed_worker_with_file_objects_in_the_same_chunk(bundled):
    srcs = [io.BytesIO(bundled[0].read_bytes()), DiesInWorker(),
            io.BytesIO(bundled[1].read_bytes())]
    res = hash_images(srcs, "ahash", workers=2, chunksize=3)
    assert res.ids == [0, 2] and [e[:2] for e in res.errors] == [(1, "WorkerCrashedError")]
    assert res.hashes == hash_images(bundled[:2], "ahash", workers=1).hashes


def test_unpicklable_input_is_an_item_error(bundled):
    srcs = [bundled[0], lambda: None, bundled[1]]
    res = hash_images(srcs, "ahash", workers=2, chunksize=3)
    assert res.ids == [str(bundled[0]), str(bundled[1])]
    assert len(res.errors) == 1 and res.errors[0][0] == 1


def test_streams_input_with_bounded_read_ahead(tmp_path):
    """The input is consumed only a bounded window ahead of what workers have received."""
    chunksize, n, ahead = 2, 240, []
    arrived = tmp_path / "arrived"
    arrived.mkdir()

    def gen():
        for i in range(n):
            ahead.append(i - len(os.listdir(arrived)))
            yield MarksArrival(arrived / str(i))

    res = hash_images(gen(), "ahash", workers=2, chunksize=chunksize)
    assert res.ok == 0 and res.failed == n and len(os.listdir(arrived)) == n
    # window: 4 chunks per worker in flight, plus the chunk being read
    assert max(ahead) <= (2 * 4 + 1) * chunksize


def test_empty_input_and_argument_errors():
    res = hash_images([], "pdq")
    assert res.ok == res.failed == 0 and res.hashes.bits == 256 and res.positions.size == 0
    with pytest.raises(ValueError, match="unknown algorithm"):
        hash_images(["x.jpg"], "nohash")
    with pytest.raises(ValueError, match="workers"):
        hash_images(["x.jpg"], "pdq", workers=0)
    with pytest.raises(ValueError, match="chunksize"):
        hash_images(["x.jpg"], "pdq", chunksize=0)


def test_progress_bar_on_stderr(bundled, capsys):
    hash_images(bundled[:5], "ahash", workers=1, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "5/5" in err
    hash_images(bundled[:5], "ahash", workers=1)
    assert capsys.readouterr().err == ""


def test_fast_and_max_pixels_are_passed_to_the_hasher(bundled):
    res = hash_images(bundled[:4], "phash", workers=2, chunksize=1, fast=True)
    assert res.hashes == hx.HashArray.from_hashes(
        [hx.hash_image(p, "phash", fast=True) for p in bundled[:4]])
    res = hash_images(bundled[:2], "phash", workers=1, max_pixels=100)
    assert res.ok == 0 and {e[1] for e in res.errors} == {"ImageTooLargeError"}


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_dask_matches_local_pool(bundled, bad_files, scheduler):
    pytest.importorskip("dask.bag")
    from hashlib_ext.distributed import hash_images_dask

    srcs = [str(p) for p in _mixed(bundled, bad_files)]
    local = hash_images(srcs, ["pdq", "ahash"], workers=1)
    res = hash_images_dask(srcs, ["pdq", "ahash"], partition_size=3, scheduler=scheduler)
    assert res.hashes["pdq"] == local.hashes["pdq"]
    assert res.hashes["ahash"] == local.hashes["ahash"]
    assert res.ids == local.ids and res.errors == local.errors
    assert np.array_equal(res.positions, local.positions)


@pytest.mark.slow
def test_a_million_paths_stream_through(tmp_path):
    """A generator of a million (missing) paths: streamed, every one reported, in order."""
    n = 1_000_000
    res = hash_images((str(tmp_path / f"{i}.jpg") for i in range(n)), "pdq", workers=2)
    assert res.ok == 0 and res.failed == n
    assert res.errors[0][0] == str(tmp_path / "0.jpg")
    assert res.errors[-1][0] == str(tmp_path / f"{n - 1}.jpg")


# -- bounded resources: worker-killing inputs in a row, worker counts -----------------------

def test_any_number_of_worker_killing_inputs_in_a_row_are_reported_one_by_one(bundled):
    """40 + 20 inputs in a row that kill their worker (more than the canary interval) are
    each a WorkerCrashedError; the good inputs before, between and after are all kept."""
    good = list(bundled[:4])
    srcs: list[object] = [good[0], *[DiesInWorker() for _ in range(40)], good[1], good[2],
                          *[KilledInWorker() for _ in range(20)], good[3]]
    res = hash_images(srcs, "ahash", workers=2, chunksize=4)
    crashed = [i for i, s in enumerate(srcs) if isinstance(s, (DiesInWorker, KilledInWorker))]
    assert [e[:2] for e in res.errors] == [(i, "WorkerCrashedError") for i in crashed]
    assert res.ids == [str(p) for p in good]
    assert res.hashes == hash_images(good, "ahash", workers=1).hashes


def _crashing_load(real):
    def load(src, *args, **kwargs):
        name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else ""
        if "segfault" in name:  # a crash inside a native decoder
            import ctypes

            ctypes.string_at(0)
        if "exit" in name:
            os._exit(3)
        return real(src, *args, **kwargs)

    return load


def test_a_loader_that_kills_its_process_is_reported_per_input(bundled, tmp_path, monkeypatch):
    import faulthandler

    from hashlib_ext import imageio

    monkeypatch.setattr(imageio, "load", _crashing_load(imageio.load))
    was = faulthandler.is_enabled()
    faulthandler.disable()  # the segfaults are expected: no dumps from the workers
    try:
        bad = [str(tmp_path / f"{kind}{i}.jpg") for i in range(12) for kind in ("exit",
                                                                                 "segfault")]
        srcs = [str(bundled[0]), *bad, str(bundled[1])]
        res = hash_images(srcs, "dhash", workers=2, chunksize=5)
    finally:
        if was:
            faulthandler.enable()
    assert [e[0] for e in res.errors] == bad
    assert {e[1] for e in res.errors} == {"WorkerCrashedError"}
    assert res.ids == [str(bundled[0]), str(bundled[1])]


def _dies() -> int:
    os._exit(9)


def test_workers_that_cannot_run_at_all_stop_the_batch(bundled, monkeypatch):
    from hashlib_ext import batch

    monkeypatch.setattr(batch, "_canary", _dies)
    srcs = [DiesInWorker() for _ in range(batch._CANARY_AFTER)] + [bundled[0]]
    with pytest.raises(RuntimeError, match="cannot run"):
        hash_images(srcs, "ahash", workers=2, chunksize=1)


@pytest.mark.parametrize("workers", [0, -3, True, 2.5, "4"])
def test_bad_worker_counts_are_refused_at_once(workers):
    with pytest.raises(ValueError, match="workers"):
        hash_images(iter(["never read"]), "pdq", workers=workers)


def test_huge_worker_counts_are_clamped_with_a_warning(bundled, monkeypatch):
    from hashlib_ext import batch

    started = []
    real = batch.ProcessPoolExecutor

    def counting(n, *args, **kwargs):
        started.append(n)
        return real(n, *args, **kwargs)

    monkeypatch.setattr(batch, "ProcessPoolExecutor", counting)
    with pytest.warns(RuntimeWarning, match="using"):
        res = hash_images((p for p in bundled[:6]), "ahash", workers=10_000)
    assert res.ok == 6 and started and max(started) == batch.max_workers()
    assert batch.max_workers() == 2 * (os.cpu_count() or 1)
    started.clear()
    res = hash_images(bundled[:3], "ahash", workers=batch.max_workers())
    assert res.ok == 3 and max(started) == 3  # never more workers than inputs
