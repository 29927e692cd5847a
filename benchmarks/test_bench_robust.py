"""RobustIndex speed, one thread, beside a peer where one exists.

    pytest benchmarks/test_bench_robust.py --benchmark-enable -m '' --benchmark-group-by=group

Groups:

* ``describe 640x480``: ``describe(path)`` (index side: decode, PDQ, ORB) beside its parts
  (``describe_global`` on the decoded image) and the peers on the same image:
  ``pdqhash.compute`` (the reference PDQ) and OpenCV ORB ``detectAndCompute`` of 200
  keypoints on the same 640x480 grey frame;
* ``stage 1``: ``match()`` of a re-encoded copy that the PDQ stage answers, from the query
  descriptor and from the decoded image, beside ``pdqhash.compute_dihedral`` (the 8 PDQ
  codes such a query needs, reference implementation);
* ``stage 2``: ``match()`` of a cropped copy that only stage 2 finds, against 256 COCO
  images plus 5,000 synthetic distractors (benchmarks/robust_scale.py makes them), beside
  its retrieval step alone (``WordIndex.top``), the retrieval variant of
  docs/robust-scale.md (counters kept between queries), and exhaustive nearest-neighbour
  voting with FAISS (``IndexBinaryFlat``, 2-NN of every query keypoint over all stored
  keypoints, ratio test) as the brute-force reference.

The scale figures (10k to 1M images) come from benchmarks/robust_scale.py.
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single core, as the targets are stated

import importlib.util  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

cv2 = pytest.importorskip("cv2")
faiss = pytest.importorskip("faiss")

from hashlib_ext.descriptor import INDEX_FEATURES, describe, describe_global  # noqa: E402
from hashlib_ext.evaluate.transforms import parse  # noqa: E402
from hashlib_ext.features import frame  # noqa: E402
from hashlib_ext.imageio import load  # noqa: E402
from hashlib_ext.robust import CANDIDATES, MIN_VOTES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DISTRACTORS = 5000
STAGE2_SPEC = "crop:side=0.2"
STAGE1_SPEC = "jpeg:q=50"


def _scale_module():
    spec = importlib.util.spec_from_file_location("robust_scale",
                                                  Path(__file__).with_name("robust_scale.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("robust_scale", mod)
    spec.loader.exec_module(mod)
    return mod


rs = _scale_module()


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    before_cv, before_faiss = cv2.getNumThreads(), faiss.omp_get_max_threads()
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    yield
    cv2.setNumThreads(before_cv)
    faiss.omp_set_num_threads(before_faiss)


@pytest.fixture(scope="module")
def paths():
    found, _ = rs.image_paths(None)
    if len(found) < 16:
        pytest.skip("no COCO images (shared sample or datasets/coco-mini)")
    return found


@pytest.fixture(scope="module")
def photo(paths):
    """The first 640x480 photograph of the sample."""
    for p in paths:
        with Image.open(p) as im:
            if im.size == (640, 480):
                return p
    pytest.skip("no 640x480 image in the sample")


@pytest.fixture(scope="module")
def real(paths):
    return [describe(p) for p in paths]


@pytest.fixture(scope="module")
def small_index(paths, real):
    """256 COCO images (last, as in robust_scale.py) after 5,000 synthetic distractors."""
    train = [i for i, p in enumerate(paths) if rs._split(p) == "train"] or list(range(16))
    gen = rs.Distractors([real[i] for i in train], 7 / 32, 0)
    idx, _ = rs.build(DISTRACTORS, gen, real, bulk=False)
    return idx


def _query(paths, idx, spec, stage):
    """A query of ``spec`` applied to a val image that ``idx`` answers at ``stage``."""
    val = [i for i, p in enumerate(paths) if rs._split(p) == "val"] or list(range(len(paths)))
    for pos in val:
        image = parse(spec)(load(paths[pos]), np.random.default_rng(pos))
        d = describe(image, query=True)
        ms = idx.match(d)
        if ms and ms[0].stage == stage and ms[0].id == DISTRACTORS + pos:
            return image, d
    pytest.skip(f"no {spec} query answered at stage {stage}")


# -- describe ------------------------------------------------------------------------------

def test_describe_index(benchmark, photo):
    benchmark.group = "describe 640x480"
    d = benchmark(describe, photo)
    assert len(d.local[0]) == INDEX_FEATURES


def test_describe_global_part(benchmark, photo):
    benchmark.group = "describe 640x480"
    image = load(photo)
    d = benchmark(describe_global, image, query=False)
    assert d.pdq.shape[1:] == (1, 32)


def test_peer_pdqhash_compute(benchmark, photo):
    import pdqhash

    benchmark.group = "describe 640x480"
    rgb = np.asarray(load(photo).convert("RGB"))
    h, q = benchmark(pdqhash.compute, rgb)
    assert len(h) == 256


def test_peer_opencv_orb(benchmark, photo):
    benchmark.group = "describe 640x480"
    grey = frame(load(photo))
    orb = cv2.ORB_create(nfeatures=INDEX_FEATURES)
    kps, desc = benchmark(orb.detectAndCompute, grey, None)
    assert desc is not None and len(desc) > 0


# -- stage 1 -------------------------------------------------------------------------------

def test_stage1_match_descriptor(benchmark, paths, small_index):
    benchmark.group = "stage 1 (5,256 images)"
    _, d = _query(paths, small_index, STAGE1_SPEC, 1)
    ms = benchmark(small_index.match, d)
    assert ms and ms[0].stage == 1


def test_stage1_match_image(benchmark, paths, small_index):
    benchmark.group = "stage 1 (5,256 images)"
    image, _ = _query(paths, small_index, STAGE1_SPEC, 1)
    ms = benchmark(small_index.match, image)
    assert ms and ms[0].stage == 1


def test_peer_pdqhash_dihedral(benchmark, paths, small_index):
    import pdqhash

    benchmark.group = "stage 1 (5,256 images)"
    image, _ = _query(paths, small_index, STAGE1_SPEC, 1)
    rgb = np.asarray(image.convert("RGB"))
    codes, _ = benchmark(pdqhash.compute_dihedral, rgb)
    assert len(codes) == 8


# -- stage 2 -------------------------------------------------------------------------------

def test_stage2_match(benchmark, paths, small_index):
    benchmark.group = "stage 2 (5,256 images)"
    _, d = _query(paths, small_index, STAGE2_SPEC, 2)
    ms = benchmark.pedantic(small_index.match, args=(d,), rounds=20, warmup_rounds=1)
    assert ms and ms[0].stage == 2


def test_stage2_retrieval(benchmark, paths, small_index):
    benchmark.group = "stage 2 (5,256 images)"
    _, d = _query(paths, small_index, STAGE2_SPEC, 2)
    sets = [s.desc for s in d.local if len(s)]
    got = benchmark.pedantic(small_index._words.top, args=(sets, CANDIDATES, MIN_VOTES),
                             rounds=20, warmup_rounds=1)
    assert len(rs._top_images(got))


def test_stage2_retrieval_proposed(benchmark, paths, small_index, monkeypatch):
    benchmark.group = "stage 2 (5,256 images)"
    _, d = _query(paths, small_index, STAGE2_SPEC, 2)
    sets = [s.desc for s in d.local if len(s)]
    n = len(small_index)
    monkeypatch.setattr(rs.ProposedRetrieval, "MIN_TABLE", 0)  # tables for every segment
    fast = rs.ProposedRetrieval(small_index._words, n,
                                distinct=rs.counts_per_descriptor(small_index._words, sets, n))
    got = benchmark.pedantic(fast.top, args=(sets, CANDIDATES, MIN_VOTES), rounds=20,
                             warmup_rounds=1)
    lib = small_index._words.top(sets, CANDIDATES, MIN_VOTES)
    images, counts, _ = rs.vote_table(small_index._words, sets, n)
    assert rs._same_ranking(got[0].tolist(), rs._top_images(lib),
                            dict(zip(images.tolist(), counts.tolist(), strict=True)))
    assert rs._same_per_set(got, lib)


def test_peer_faiss_knn_voting(benchmark, paths, small_index):
    """Brute force: 2-NN of every query keypoint over every stored keypoint, ratio test,
    one vote per surviving match (what word voting approximates)."""
    benchmark.group = "stage 2 (5,256 images)"
    _, d = _query(paths, small_index, STAGE2_SPEC, 2)
    stored = small_index._desc.view()
    flat = faiss.IndexBinaryFlat(256)
    flat.add(np.ascontiguousarray(stored))
    owner = np.repeat(np.arange(len(small_index)), np.diff(small_index._kp_off.view()))
    q = np.ascontiguousarray(np.concatenate([s.desc for s in d.local if len(s)]))

    def knn_vote():
        dist, nn = flat.search(q, 2)
        ok = dist[:, 0] <= 0.8 * dist[:, 1]
        votes = np.bincount(owner[nn[ok, 0]], minlength=len(small_index))
        return np.argsort(-votes, kind="stable")[:CANDIDATES]

    top = benchmark.pedantic(knn_vote, rounds=3, warmup_rounds=0)
    assert len(top) == CANDIDATES
