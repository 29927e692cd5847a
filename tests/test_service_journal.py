"""The match service's pieces without a server: the journal (torn records, checksums,
rollback), banks (journal replay, idempotent replay after a crash during compaction,
tombstones), hash-list uploads, the token and the body caps."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from hashlib_ext.errors import IndexFileError, ServiceError  # noqa: E402
from hashlib_ext.index import HashIndex  # noqa: E402
from hashlib_ext.service import auth, uploads  # noqa: E402
from hashlib_ext.service.banks import HashBank  # noqa: E402
from hashlib_ext.service.journal import Journal, Record  # noqa: E402
from hashlib_ext.service.limits import Limits  # noqa: E402
from hashlib_ext.service.store import BankStore  # noqa: E402

HEADER = {"format": "hashlib_ext.journal", "version": 1, "bank": "b"}


def _replayed(path: str) -> tuple[list[Record], int, Journal]:
    got: list[Record] = []
    journal, dropped = Journal.open(path, got.append)
    return got, dropped, journal


def _write_three(path: str) -> list[int]:
    """Three records; returns the file size after each."""
    j = Journal.create(path, HEADER)
    sizes = []
    for i in range(3):
        j.append({"op": "add", "i": i}, bytes([i]) * (10 + i))
        sizes.append(j.size)
    j.close()
    return sizes


def test_journal_round_trip(tmp_path):
    path = str(tmp_path / "j")
    sizes = _write_three(path)
    assert os.path.getsize(path) == sizes[-1]
    got, dropped, j = _replayed(path)
    assert dropped == 0 and j.records == 3 and j.header == HEADER
    assert [r.op["i"] for r in got] == [0, 1, 2]
    assert [r.blob for r in got] == [b"\x00" * 10, b"\x01" * 11, b"\x02" * 12]
    j.append({"op": "add", "i": 3})
    j.close()
    got, _, j = _replayed(path)
    j.close()
    assert [r.op["i"] for r in got] == [0, 1, 2, 3]


@pytest.mark.parametrize("cut", [1, 4, 8, 20])
def test_torn_last_record_is_dropped_and_cut(tmp_path, cut):
    path = str(tmp_path / "j")
    sizes = _write_three(path)
    with open(path, "r+b") as f:  # a crash in the middle of writing the third record
        f.truncate(sizes[-1] - cut)
    got, dropped, j = _replayed(path)
    assert [r.op["i"] for r in got] == [0, 1]
    assert dropped == sizes[-1] - cut - sizes[1]
    assert os.path.getsize(path) == sizes[1]  # cut back: the next append follows good data
    j.append({"op": "add", "i": 9})
    j.close()
    got, dropped, j = _replayed(path)
    j.close()
    assert [r.op["i"] for r in got] == [0, 1, 9] and dropped == 0


def test_checksum_mismatch_in_last_record_is_dropped(tmp_path):
    path = str(tmp_path / "j")
    sizes = _write_three(path)
    with open(path, "r+b") as f:
        f.seek(sizes[-1] - 1)
        f.write(b"\xff")  # a byte of the last blob changed
    got, dropped, j = _replayed(path)
    j.close()
    assert [r.op["i"] for r in got] == [0, 1] and dropped == sizes[2] - sizes[1]


def test_garbage_length_is_a_torn_record(tmp_path):
    path = str(tmp_path / "j")
    sizes = _write_three(path)
    with open(path, "ab") as f:
        f.write(struct.pack("<II", 0xFFFFFFF0, 0) + b"junk")
    got, dropped, j = _replayed(path)
    j.close()
    assert len(got) == 3 and dropped == 12 and os.path.getsize(path) == sizes[-1]


def test_bad_header_is_refused(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b"not a journal at all")
    with pytest.raises(IndexFileError, match="not a hashlib_ext journal"):
        Journal.open(str(path), lambda r: None)
    _write_three(str(path))
    raw = bytearray(path.read_bytes())
    raw[20] ^= 1  # inside the header's JSON
    path.write_bytes(bytes(raw))
    with pytest.raises(IndexFileError, match="checksum"):
        Journal.open(str(path), lambda r: None)


def test_cut_takes_back_the_last_record(tmp_path):
    path = str(tmp_path / "j")
    j = Journal.create(path, HEADER)
    j.append({"op": "a"})
    before = j.size
    j.append({"op": "b"}, b"xyz")
    j.cut(before)
    assert j.records == 1 and os.path.getsize(path) == before
    j.close()
    got, _, j = _replayed(path)
    j.close()
    assert [r.op["op"] for r in got] == ["a"]


def _codes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)


def _search_ids(bank: HashBank, codes: np.ndarray) -> list[list[int]]:
    return [[i for i, _ in hits] for hits in bank.search(codes, 0)]


def test_bank_replays_its_journal(tmp_path):
    path = str(tmp_path / "b.hidx")
    bank = HashBank.create("b", path, "pdq")
    codes = _codes(5)
    first, n = bank.add(codes[:3], ["a", None, "c"], {"collab": ["x", None, "z"]})
    assert (first, n) == (0, 3)
    assert bank.add(codes[3:], None, None) == (3, 2)
    assert bank.remove([1, 99]) == 1  # 99 does not exist
    assert _search_ids(bank, codes) == [[0], [], [2], [3], [4]]
    bank.close()  # no compaction: everything is in the journal only
    again = HashBank.open("b", path)
    assert again.count() == 4 and again.next_id == 5
    assert _search_ids(again, codes) == [[0], [], [2], [3], [4]]
    assert again.describe([0, 2]) == (["a", "c"], [{"collab": "x"}, {"collab": "z"}])
    assert again.add(_codes(1, 7), None, None)[0] == 5  # ids are never handed out twice
    again.close()


def test_replay_after_a_crash_between_save_and_journal_reset(tmp_path):
    """Compaction saves the index file, then replaces the journal: a crash between the two
    leaves a journal whose changes the file holds already; replay must not add them twice."""
    path = str(tmp_path / "b.hidx")
    bank = HashBank.create("b", path, "pdq")
    codes = _codes(6, 1)
    bank.add(codes[:4], ["k0", "k1", "k2", "k3"], None)
    bank.remove([2])
    bank.add(codes[4:], None, None)
    bank.save()  # the file now holds everything; the journal was not reset ("crash")
    journal = bank.journal
    assert journal is not None and journal.records == 3
    journal.close()
    bank.journal = None
    again = HashBank.open("b", path)
    assert again.count() == 5  # (id 2 is added again, then its removal pending again)
    assert _search_ids(again, codes) == [[0], [1], [], [3], [4], [5]]
    assert again.index.keys([0, 3]) == ["k0", "k3"]
    assert again.next_id == 6
    again.close()


def test_compaction_folds_journal_and_tombstones(tmp_path):
    path = str(tmp_path / "b.hidx")
    bank = HashBank.create("b", path, "pdq")
    codes = _codes(4, 2)
    bank.add(codes, None, None)
    bank.remove([0, 3])
    assert len(bank.index) == 4 and bank.count() == 2  # removals pending
    assert bank.compact() is True
    assert bank.journal is not None and bank.journal.records == 0
    assert len(bank.index) == 2 and not bank.removed
    assert bank.compact() is False  # nothing left to fold
    bank.close()
    loaded = HashIndex.load(path)
    assert sorted(loaded.ids.tolist()) == [1, 2]
    again = HashBank.open("b", path)
    assert again.next_id == 4  # kept in the journal header, though id 3 is gone
    again.close()


def test_store_lock_and_deletion(tmp_path):
    store = BankStore(tmp_path / "banks")
    store.open()
    store.create("one", "hash", "phash")
    with pytest.raises(IndexFileError, match="another server"):
        BankStore(tmp_path / "banks").open()
    store.delete("one")
    assert not os.listdir(tmp_path / "banks") == []  # the lock file stays
    assert not [p for p in os.listdir(tmp_path / "banks") if p.startswith("one")]
    store.close()
    (tmp_path / "banks" / "gone.hidx.journal").write_bytes(b"x")  # a deletion leftover
    store = BankStore(tmp_path / "banks")
    store.open()
    assert store.banks == {} and not (tmp_path / "banks" / "gone.hidx.journal").exists()
    store.close()


def test_codes_from_hex_names_the_bad_hash():
    good = "ab" * 32
    assert uploads.codes_from_hex([good, good.upper()], 32).shape == (2, 32)
    with pytest.raises(ServiceError, match=r"hashes\[1\]"):
        uploads.codes_from_hex([good, "zz" * 32], 32)
    with pytest.raises(ServiceError, match=r"hashes\[0\]"):
        uploads.codes_from_hex(["ab " * 21 + "abc"], 32)  # spaces: bytes.fromhex skips them
    with pytest.raises(ServiceError, match="list") as e:
        uploads.codes_from_hex("ab", 32)
    assert e.value.status == 400 and e.value.kind == "BadRequest"


def test_threatexchange_columns_line_up():
    a, b = "0f" * 32, "f0" * 32
    data = ("signal_type,signal_str,collab,category,tags\n"
            f"pdq,{a},c1,cat1,t\n"
            "phash,e4930f064a7b717c,c9,x,y\n"
            "\n"
            f"pdq,{b},c2,,\n").encode()
    got = uploads.from_file(data, "te", "pdq", 256)
    assert bytes(got.codes[0]).hex() == a and bytes(got.codes[1]).hex() == b
    assert got.metadata is not None
    assert got.metadata["collab"] == ["c1", "c2"]
    assert got.metadata["category"] == ["cat1", None]


def test_hash_list_errors_name_the_upload_not_the_temp_file():
    with pytest.raises(ServiceError) as e:
        uploads.from_file(b"abcd\n", "hex", "pdq", 256, name="list.txt")
    assert "list.txt" in str(e.value) and "hashlib-ext-upload" not in str(e.value)


def test_token_is_hidden_and_checked():
    secret = "s3cret-token-0123456789"
    token = auth.Token(secret)
    assert secret not in repr(token) and secret not in str(token)
    auth.check_write(token, f"Bearer {secret}")
    for header in (None, "", f"Basic {secret}", "Bearer wrong-token-0123456789", "Bearer"):
        with pytest.raises(ServiceError) as e:
            auth.check_write(token, header)
        assert e.value.status == 401 and "Bearer" in e.value.headers["WWW-Authenticate"]
    with pytest.raises(ServiceError) as e:
        auth.check_write(None, f"Bearer {secret}")
    assert e.value.status == 403
    with pytest.raises(ServiceError) as e:
        auth.Token("short")
    assert e.value.kind == "TokenError"


def test_loopback_hosts():
    assert all(auth.is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.1.2.3"))
    assert not any(auth.is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))


def test_body_caps_by_endpoint():
    lim = Limits(max_image_bytes=10, max_list_bytes=20, max_json_bytes=30)
    assert lim.body_cap("POST", "/v1/match") == 10
    assert lim.body_cap("POST", "/v1/banks/x/images") == 10
    assert lim.body_cap("POST", "/v1/banks/x/hashes") == 20
    assert lim.body_cap("POST", "/v1/banks") == 30
    assert lim.body_cap("GET", "/v1/banks") == 0


def test_missing_extra_is_named(monkeypatch):
    import importlib.util

    from hashlib_ext.errors import MissingDependencyError
    from hashlib_ext.service import deps

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fastapi" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"hashlib-ext\[serve\]"):
        deps.require()


def test_cli_does_not_import_the_service_until_it_serves():
    import subprocess
    import sys

    code = ("import sys; from hashlib_ext.cli import build_parser; build_parser(); "
            "assert 'fastapi' not in sys.modules and 'hashlib_ext.service' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_search_batcher_gathers_concurrent_queries():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from hashlib_ext.service.batching import SearchBatcher

    class Recording:
        def __init__(self, index: HashIndex):
            self.index, self.sizes = index, []

        def search(self, codes: np.ndarray, t: int) -> list:
            self.sizes.append(len(codes))
            return self.index.search(codes, t)

    index = HashIndex("pdq")
    stored = _codes(500, 3)
    index.add(stored)
    near = stored[:40].copy()
    near[:, 0] ^= 1  # one bit from a stored code
    queries = np.concatenate([near, _codes(20, 4)])  # 40 near, 20 far
    bank = Recording(index)

    async def run() -> list:
        batcher = SearchBatcher(ThreadPoolExecutor(2), 2)
        alone = await batcher.search(bank, queries[:1], 8)  # nothing else: searched inline
        assert bank.sizes == [1]
        got = await asyncio.gather(*(batcher.search(bank, queries[i:i + 1], 8)
                                     for i in range(len(queries))))
        return [alone[0]] + [g[0] for g in got]

    got = asyncio.run(run())
    want = index.search(queries, 8)
    assert got[1:] == want and got[0] == want[0]
    assert sum(bank.sizes) == 1 + len(queries) and max(bank.sizes) > 1  # batches formed
    assert all(len(w) == 1 for w in want[:40]) and not any(want[40:])


def test_search_batcher_shares_work_and_hands_errors_back():
    """Waiting lookups are shared among the search threads (both run calls at once), and a
    failing call fails exactly the requests it held; the batcher goes on afterwards."""
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from hashlib_ext.service.batching import SearchBatcher

    class Slow:
        def __init__(self) -> None:
            # The first two calls meet here: they pass only if both threads search at
            # once (otherwise the barrier breaks after its hang bound and the test fails).
            self.meet = threading.Barrier(2, timeout=60)
            self.lock = threading.Lock()
            self.calls = 0

        def search(self, codes: np.ndarray, t: int) -> list:
            with self.lock:
                self.calls += 1
                first_two = self.calls <= 2
            if first_two:
                self.meet.wait()
            if (codes[:, 0] == 255).any():
                raise ValueError("bad row")
            return [[(int(c[0]), 0)] for c in codes]

    bank = Slow()
    codes = np.arange(40, dtype=np.uint8).reshape(40, 1)

    async def run() -> tuple[list, list]:
        batcher = SearchBatcher(ThreadPoolExecutor(2), 2)
        got = await asyncio.gather(*(batcher.search(bank, codes[i:i + 1], 0)
                                     for i in range(40)))
        bad = np.array([[255]], dtype=np.uint8)
        mixed = await asyncio.gather(batcher.search(bank, bad, 0),
                                     *(batcher.search(bank, codes[i:i + 1], 0)
                                       for i in range(3)), return_exceptions=True)
        return got, mixed

    got, mixed = asyncio.run(run())
    assert [g[0] for g in got] == [[(i, 0)] for i in range(40)]
    assert not bank.meet.broken  # both threads searched at once
    assert isinstance(mixed[0], ValueError)
    for i, r in enumerate(mixed[1:]):  # in the failing call or another: error or answer
        assert isinstance(r, ValueError) or r == [[(i, 0)]]


def test_robust_bank_replays_added_images(tmp_path, bundled):
    pytest.importorskip("cv2")
    from hashlib_ext.descriptor import describe
    from hashlib_ext.service.banks import RobustBank

    path = str(tmp_path / "r.ridx")
    bank = RobustBank.create("r", path)
    data = [p.read_bytes() for p in bundled[:2]]
    assert [bank.add(d, describe(d), f"k{i}") for i, d in enumerate(data)] == [0, 1]
    bank.close()  # not compacted: the images are in the journal only
    again = RobustBank.open("r", path)
    assert again.count() == 2 and again.next_id == 2
    found = again.match(describe(data[1], query=True), None, None)
    assert [m.id for m in found] == [1] and again.keys([1]) == ["k1"]
    assert again.compact() and len(again.index) == 2
    again.close()
    assert RobustBank.open("r", path).count() == 2


def test_decoder_warm_up_compiles_what_uploads_need(bundled):
    """A kernel first compiled by an upload would spend seconds of that upload's deadline
    (and a worker stopped mid-compile never caches it): warm() must leave nothing to
    compile for photos of any shape."""
    import subprocess
    import sys

    code = """
import sys
from pathlib import Path
from hashlib_ext.hashers import _lanczos_kernel as k
from hashlib_ext.service import worker
from PIL import Image
import io
worker.warm()
kernels = [getattr(k, n) for n in dir(k) if hasattr(getattr(k, n), "signatures")]
before = {f.__name__: len(f.signatures) for f in kernels}
for p in sys.argv[1:]:
    data = Path(p).read_bytes()
    worker.hash_upload(data, ["pdq", "phash", "dhash", "ahash", "whash"], True, 1 << 26)
    im = Image.open(io.BytesIO(data)).rotate(90, expand=True)
    buf = io.BytesIO()
    im.convert("L").save(buf, "PNG")
    worker.hash_upload(buf.getvalue(), ["pdq", "phash"], False, 1 << 26)
after = {f.__name__: len(f.signatures) for f in kernels}
assert before == after, (before, after)
"""
    subprocess.run([sys.executable, "-c", code, *map(str, bundled[:12])], check=True,
                   timeout=300)


def test_image_query_codes_are_writable():
    """A read-only query array is another type to the compiled MIH kernel (a second
    compilation, seconds of CPU, at the first image query)."""
    from hashlib_ext.service.routes_match import query_codes

    codes = query_codes(bytes(range(64)), 2)
    assert codes.flags.writeable and codes.shape == (2, 32) and codes[1, 0] == 32
