"""The match service over HTTP: a real ``hashlib-ext serve`` (uvicorn) in a subprocess on
127.0.0.1 at a free port, driven with httpx. Every endpoint, auth, hostile input, concurrent
adds and matches, and restarts (graceful, and kill -9) that keep every acknowledged change.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import hashlib_ext as hx  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k != "HASHLIB_EXT_TOKEN"}
ENV["PYTHONPATH"] = str(ROOT)
TOKEN = "svc-test-token-6f1c0e2a9b"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
START_TIMEOUT = 90
STOP_TIMEOUT = 30
"""Seconds a signalled server may take to stop before the test counts it as hung."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``hashlib-ext serve`` subprocess; its output goes to ``log``."""

    def __init__(self, root: Path, log: Path, *args: str, env: dict[str, str] | None = None):
        self.root, self.log_path, self.args = root, log, args
        self.env = env or ENV
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> Server:
        for _ in range(3):  # another process may take the free port first
            port = _free_port()
            self.url = f"http://127.0.0.1:{port}"
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "hashlib_ext", "serve", str(self.root),
                     "--port", str(port), *self.args],
                    stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
            if self._wait_ready():
                return self
            self.stop(signal.SIGKILL)
        raise AssertionError(f"server did not start:\n{self.log()[-3000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(STOP_TIMEOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def _png(w: int, h: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _flat_png(w: int, h: int) -> bytes:
    """A large image in a small file (one colour compresses to almost nothing)."""
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (120, 30, 200)).save(buf, "PNG")
    return buf.getvalue()


def _error(r: httpx.Response, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"]
    assert "Traceback" not in r.text
    if kind is not None:
        assert body["error"]["type"] == kind, body
    return body["error"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("service")
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    srv = Server(tmp / "banks", tmp / "server.log", "--token-file", str(token_file),
                 "--decode-workers", "1", "--max-upload-mb", "0.5", "--max-list-mb", "1",
                 "--max-pixels", "4000000", "--compact-mb", "0.03", "--access-log",
                 "--log-level", "debug").start()
    yield srv
    assert srv.stop() == 0
    log = srv.log()
    assert TOKEN not in log  # never logged, whatever was sent
    assert "Traceback" not in log and "never retrieved" not in log


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def images(bundled):
    return [p.read_bytes() for p in bundled[:6]]


def _create(client, name: str, **body) -> dict:
    r = client.post("/v1/banks", json={"name": name, **body}, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()


# -- health, schema, hashing --------------------------------------------------------------------
def test_health_ready_and_schema(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v1/hash", "/v1/match", "/v1/banks", "/v1/banks/{name}",
              "/v1/banks/{name}/hashes", "/v1/banks/{name}/remove", "/v1/banks/{name}/images"):
        assert p in paths, p
    assert "requestBody" in paths["/v1/match"]["post"]


def test_hash_raw_and_multipart_equal_the_library(client, bundled):
    data = bundled[0].read_bytes()
    want = hx.hash_image(data, ["pdq", "phash"])
    raw = client.post("/v1/hash?algorithm=pdq,phash", content=data,
                      headers={"content-type": "image/jpeg"}).json()
    form = client.post("/v1/hash", params={"algorithm": "pdq,phash"},
                       files={"file": ("a.jpg", data, "image/jpeg")}).json()
    assert raw == form
    assert raw["hashes"]["pdq"] == {"hash": want["pdq"].hex, "bits": 256,
                                    "quality": want["pdq"].quality}
    assert raw["hashes"]["phash"]["hash"] == want["phash"].hex
    assert (raw["width"], raw["height"]) == Image.open(bundled[0]).size
    turned = client.post("/v1/hash?dihedral=true", content=data).json()["dihedral"]
    variants = hx.hash_image(data, "pdq", dihedral=True)
    assert [v["hash"] for v in turned] == variants.hex()


# -- banks --------------------------------------------------------------------------------------
def test_bank_lifecycle_and_matching(client, images):
    assert _create(client, "life")["count"] == 0
    _error(client.post("/v1/banks", json={"name": "life"}, headers=AUTH), 409, "Conflict")
    _error(client.post("/v1/banks", json={"name": "../x"}, headers=AUTH), 400)
    hashes = [hx.hash_image(d, "pdq") for d in images[:3]]
    r = client.post("/v1/banks/life/hashes", headers=AUTH, json={"hashes": [
        {"hash": hashes[0].hex, "key": "img-0", "metadata": {"collab": "c", "tags": "x y"}},
        hashes[1].hex,
        {"hash": hashes[2].hex, "key": "img-2"}]})
    assert r.json() == {"bank": "life", "added": 3, "first_id": 0, "last_id": 2, "count": 3}
    names = [b["name"] for b in client.get("/v1/banks").json()["banks"]]
    assert "life" in names
    stats = client.get("/v1/banks/life").json()
    assert stats["count"] == 3 and stats["journal_records"] == 1 and stats["algorithm"] == "pdq"

    # a JSON match: exact hash, and a near one (3 bits flipped)
    near = bytearray(hashes[0].to_bytes())
    near[0] ^= 0b111
    r = client.post("/v1/match", json={"algorithm": "pdq", "banks": ["life"],
                                       "hashes": [hashes[0].hex, near.hex(), "00" * 32]})
    res = r.json()["results"]
    assert res[0]["matches"] == [{"bank": "life", "id": 0, "distance": 0, "key": "img-0",
                                  "metadata": {"collab": "c", "tags": "x y"}}]
    assert [(m["id"], m["distance"]) for m in res[1]["matches"]] == [(0, 3)]
    assert res[2]["matches"] == []
    r = client.post("/v1/match", json={"hashes": [near.hex()], "threshold": 2,
                                       "banks": ["life"]})
    assert r.json()["results"][0]["matches"] == []

    # an image match, raw and multipart
    r = client.post("/v1/match?banks=life", content=images[2])
    got = r.json()["results"][0]
    assert got["algorithm"] == "pdq" and got["hash"] == hashes[2].hex
    assert [(m["id"], m["key"]) for m in got["matches"]] == [(2, "img-2")]
    r = client.post("/v1/match", params={"banks": "life"},
                    files={"file": ("x.jpg", images[1], "image/jpeg")})
    assert [m["id"] for m in r.json()["results"][0]["matches"]] == [1]

    # removals: by id and by hash, visible at once
    r = client.post("/v1/banks/life/remove", headers=AUTH, json={"ids": [0, 12345]})
    assert r.json()["removed"] == 1
    r = client.post("/v1/banks/life/remove", headers=AUTH, json={"hashes": [hashes[1].hex]})
    assert r.json() == {"bank": "life", "removed": 1, "count": 1}
    r = client.post("/v1/match", json={"hashes": [h.hex for h in hashes], "banks": ["life"]})
    assert [[m["id"] for m in q["matches"]] for q in r.json()["results"]] == [[], [], [2]]

    # compaction on request; then deletion
    assert client.post("/v1/banks/life/compact", headers=AUTH).json()["compacted"] is True
    assert client.get("/v1/banks/life").json()["journal_records"] == 0
    assert client.delete("/v1/banks/life", headers=AUTH).json() == {"deleted": "life"}
    _error(client.get("/v1/banks/life"), 404, "NotFound")
    _error(client.post("/v1/match", json={"hashes": [hashes[2].hex], "banks": ["life"]}),
           404)


def test_add_images_and_dihedral_match(client, images):
    _create(client, "pics", algorithm="pdq")
    r = client.post("/v1/banks/pics/images?key=first", content=images[3], headers=AUTH)
    body = r.json()
    assert body["id"] == 0 and body["key"] == "first"
    assert body["hash"] == hx.hash_image(images[3], "pdq").hex
    turned = Image.open(io.BytesIO(images[3])).transpose(Image.Transpose.ROTATE_90)
    buf = io.BytesIO()
    turned.save(buf, "JPEG", quality=90)
    plain = client.post("/v1/match?banks=pics", content=buf.getvalue()).json()
    assert plain["results"][0]["matches"] == []
    both = client.post("/v1/match?banks=pics&dihedral=true", content=buf.getvalue()).json()
    found = both["results"][0]["matches"]
    assert [m["id"] for m in found] == [0] and found[0]["variant"] != 0


def test_hash_list_uploads(client):
    _create(client, "lists")
    rng = np.random.default_rng(5)
    codes = [bytes(c).hex() for c in rng.integers(0, 256, (5, 32), dtype=np.uint8)]
    hex_list = f"{codes[0]} key-a\n# a comment\n{codes[1]}\n"
    r = client.post("/v1/banks/lists/hashes", content=hex_list, headers={
        **AUTH, "content-type": "text/plain"})
    assert r.json()["added"] == 2
    csv_text = f"hash,key\n{codes[2]},from-csv\n"
    r = client.post("/v1/banks/lists/hashes", headers=AUTH,
                    files={"file": ("list.csv", csv_text.encode(), "text/csv")})
    assert r.json()["first_id"] == 2
    te = ("signal_type,signal_str,collab,category,tags\n"
          f"pdq,{codes[3]},ring,abuse,t1\nphash,e4930f064a7b717c,x,y,z\n"
          f"pdq,{codes[4]},ring,spam,\n")
    r = client.post("/v1/banks/lists/hashes?format=te", content=te, headers=AUTH)
    assert r.json()["added"] == 2
    res = client.post("/v1/match", json={"hashes": codes, "threshold": 0,
                                         "banks": ["lists"]}).json()["results"]
    rows = [q["matches"][0] for q in res]
    assert [(m["id"], m["key"]) for m in rows] == [
        (0, "key-a"), (1, None), (2, "from-csv"), (3, None), (4, None)]
    assert rows[3]["metadata"] == {"collab": "ring", "category": "abuse", "tags": "t1"}
    assert rows[4]["metadata"] == {"collab": "ring", "category": "spam"}
    err = _error(client.post("/v1/banks/lists/hashes", content=f"{codes[0]}\nnot-hex\n",
                             headers={**AUTH, "content-type": "text/plain"}), 400)
    assert "line 2" in err["message"] and "upload" in err["message"]
    _error(client.post("/v1/banks/lists/hashes", content=b"x", headers={
        **AUTH, "content-type": "application/octet-stream"}), 415, "UnsupportedMediaType")


# -- auth and hostile input ---------------------------------------------------------------------
def test_writes_need_the_token(client):
    _create(client, "guarded")
    h = "ab" * 32
    for headers in ({}, {"Authorization": "Bearer wrong-token-000000000"},
                    {"Authorization": f"Basic {TOKEN}"}):
        r = client.post("/v1/banks/guarded/hashes", json={"hashes": [h]}, headers=headers)
        _error(r, 401, "Unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        _error(client.post("/v1/banks", json={"name": "nope"}, headers=headers), 401)
        _error(client.delete("/v1/banks/guarded", headers=headers), 401)
        _error(client.post("/v1/banks/guarded/remove", json={"ids": [0]}, headers=headers),
               401)
    assert client.get("/v1/banks/guarded").json()["count"] == 0
    assert client.get("/healthz").status_code == 200  # reads need no token
    assert client.post("/v1/match", json={"hashes": [h]}).status_code == 200


def test_bad_input_answers_4xx_json(client, server):
    _error(client.post("/v1/match", content=b"{not json",
                       headers={"content-type": "application/json"}), 400, "BadRequest")
    _error(client.post("/v1/match", json=[1, 2]), 400)
    _error(client.post("/v1/match", json={"hashes": ["abc"]}), 400)
    _error(client.post("/v1/match", json={"hashes": ["ab" * 32], "algorithm": "nope"}), 400)
    _error(client.post("/v1/match", json={"hashes": ["ab" * 32], "threshold": -1}), 400)
    _error(client.post("/v1/match", json={"hashes": []}), 400)
    _error(client.post("/v1/match", json={"hashes": ["ab" * 32], "banks": ["missing"]}), 404)
    _error(client.post("/v1/hash", content=b"this is not an image"), 422, "ImageDecodeError")
    _error(client.post("/v1/hash", content=b""), 400)
    _error(client.post("/v1/hash?algorithm=md5", content=_png(10, 10)), 400)
    _error(client.post("/v1/hash", files={"other": ("a", b"xyz")}), 400)
    # over the byte cap: declared, and sent chunked without a length
    big = os.urandom(600 * 1024)
    _error(client.post("/v1/hash", content=big), 413, "PayloadTooLarge")

    def chunks():
        for _ in range(10):
            yield os.urandom(100 * 1024)

    _error(client.post("/v1/match", content=chunks()), 413, "PayloadTooLarge")
    many = {"hashes": ["ab" * 32] * 9000}  # JSON (answered by the fast path), over 0.5 MB
    _error(client.post("/v1/match", json=many), 413, "PayloadTooLarge")
    # over the pixel cap (4M): refused from the header, before decoding
    _error(client.post("/v1/hash", content=_flat_png(2100, 2000)), 413, "ImageTooLargeError")
    _error(client.get("/v1/nothing"), 404)
    _error(client.put("/v1/match", json={}), 405)
    assert client.get("/healthz").status_code == 200  # still serving
    assert "Traceback" not in server.log()


def test_slow_decode_times_out_and_the_decoder_is_replaced(client):
    big = _flat_png(1900, 1900)  # under both caps, but not decoded in 1 ms
    err = _error(client.post("/v1/hash?timeout=0.001", content=big), 503)
    assert err["type"] in ("DecodeTimeout", "DecodeBusy")
    r = client.post("/v1/hash", content=_png(64, 48))
    assert r.status_code == 200 and r.json()["width"] == 64


def test_concurrent_adds_and_matches(server):
    with server.client() as c:
        _create(c, "busy")
    rng = np.random.default_rng(11)
    codes = [[bytes(x).hex() for x in rng.integers(0, 256, (10, 32), dtype=np.uint8)]
             for _ in range(4)]
    errors: list[str] = []
    done = threading.Event()

    def adder(batch: list[str], tag: int) -> None:
        with server.client() as c:
            for j in range(0, len(batch), 2):
                r = c.post("/v1/banks/busy/hashes", headers=AUTH, json={"hashes": [
                    {"hash": h, "key": f"{tag}-{j + k}"} for k, h in enumerate(batch[j:j + 2])]})
                if r.status_code != 200:
                    errors.append(r.text)

    def matcher() -> None:
        with server.client() as c:
            while not done.is_set():
                r = c.post("/v1/match", json={"hashes": codes[0] + codes[3], "threshold": 0,
                                              "banks": ["busy"]})
                if r.status_code != 200:
                    errors.append(r.text)

    adders = [threading.Thread(target=adder, args=(codes[t], t)) for t in range(4)]
    matchers = [threading.Thread(target=matcher) for _ in range(3)]
    for t in matchers + adders:
        t.start()
    for t in adders:
        t.join(120)
    done.set()
    for t in matchers:
        t.join(120)
    assert errors == []
    with server.client() as c:
        assert c.get("/v1/banks/busy").json()["count"] == 40
        res = c.post("/v1/match", json={"hashes": sum(codes, []), "threshold": 0,
                                        "banks": ["busy"]}).json()["results"]
    found = [q["matches"] for q in res]
    assert all(len(m) == 1 for m in found)
    assert sorted(m[0]["id"] for m in found) == list(range(40))  # each id handed out once
    keys = [m[0]["key"] for m in found]
    assert keys == [f"{t}-{j}" for t in range(4) for j in range(10)]


def test_a_grown_journal_is_compacted_in_the_background(client):
    _create(client, "grows")
    rng = np.random.default_rng(8)
    codes = [bytes(c).hex() for c in rng.integers(0, 256, (1500, 32), dtype=np.uint8)]
    r = client.post("/v1/banks/grows/hashes", headers=AUTH, json={"hashes": codes})
    assert r.json()["added"] == 1500  # a journal record of ~48 KB: over --compact-mb 0.03
    deadline = time.monotonic() + 30
    while client.get("/v1/banks/grows").json()["compactions"] == 0:
        assert time.monotonic() < deadline, "no compaction"
        time.sleep(0.1)
    stats = client.get("/v1/banks/grows").json()
    assert stats["journal_records"] == 0 and stats["count"] == 1500
    res = client.post("/v1/match", json={"hashes": codes[::100], "threshold": 0,
                                         "banks": ["grows"]}).json()["results"]
    assert [q["matches"][0]["id"] for q in res] == list(range(0, 1500, 100))


def test_metrics(client):
    client.post("/v1/match", json={"hashes": ["cd" * 32]})
    text = client.get("/metrics").text
    assert 'hashlib_ext_requests_total{method="POST",route="/v1/match",status="200"}' in text
    assert 'hashlib_ext_request_duration_seconds_count{route="/v1/match"}' in text
    assert 'hashlib_ext_request_duration_seconds_bucket{le="0.001",route="/v1/match"}' in text
    assert 'hashlib_ext_lookups_total{algorithm="pdq"}' in text
    assert 'hashlib_ext_bank_hashes{bank="guarded",kind="hash"} 0.0' in text
    assert "hashlib_ext_ready 1.0" in text
    assert "/v1/banks/guarded" not in text  # routes by template only


# -- persistence --------------------------------------------------------------------------------
def test_restart_and_kill_keep_every_acknowledged_change(tmp_path, images):
    env = {**ENV, "HASHLIB_EXT_TOKEN": TOKEN}
    banks = tmp_path / "banks"
    log = tmp_path / "server.log"
    rng = np.random.default_rng(21)
    codes = [bytes(c).hex() for c in rng.integers(0, 256, (30, 32), dtype=np.uint8)]

    def present(srv: Server) -> list[int]:
        with srv.client() as c:
            res = c.post("/v1/match", json={"hashes": codes, "threshold": 0,
                                            "banks": ["keep"]}).json()["results"]
        return [q["matches"][0]["id"] if q["matches"] else -1 for q in res]

    srv = Server(banks, log, "--decode-workers", "0", env=env).start()
    with srv.client() as c:
        _create(c, "keep")
        for i in range(10):
            assert c.post("/v1/banks/keep/hashes", headers=AUTH,
                          json={"hashes": [codes[i]]}).status_code == 200
    assert srv.stop(signal.SIGTERM) == 0  # graceful: compacted at shutdown
    journal = banks / "keep.hidx.journal"
    assert journal.stat().st_size < 300  # a fresh journal: header only

    srv.start()
    assert present(srv)[:10] == list(range(10))
    with srv.client() as c:
        for i in range(10, 30):
            assert c.post("/v1/banks/keep/hashes", headers=AUTH,
                          json={"hashes": [codes[i]]}).status_code == 200
        assert c.post("/v1/banks/keep/remove", headers=AUTH,
                      json={"ids": [3, 15]}).json()["removed"] == 2
    before = journal.stat().st_size
    assert srv.stop(signal.SIGKILL) == -signal.SIGKILL  # no shutdown, no compaction
    assert journal.stat().st_size == before > 300

    with open(journal, "ab") as f:  # and a torn record, as a crash mid-append leaves
        f.write(b"\x40\x00\x00\x00\x12\x34\x56\x78partial")
    srv.start()
    want = [-1 if i in (3, 15) else i for i in range(30)]
    assert present(srv) == want
    assert journal.stat().st_size == before  # the torn tail was cut
    with srv.client() as c:
        r = c.post("/v1/banks/keep/hashes", headers=AUTH, json={"hashes": ["00" * 32]})
        assert r.json()["first_id"] == 30  # ids continue, never reused
        assert c.get("/v1/banks/keep").json()["count"] == 29
    assert srv.stop() == 0
    assert "warning" in srv.log().lower() and "torn" in srv.log()


def test_single_file_read_only_and_refusals(tmp_path):
    index = hx.HashIndex("pdq")
    code = np.arange(32, dtype=np.uint8)
    index.add(code[None], keys=["only"])
    path = tmp_path / "known.hidx"
    index.save(path)
    srv = Server(path, tmp_path / "log", "--decode-workers", "0").start()
    try:
        with srv.client() as c:
            banks = c.get("/v1/banks").json()["banks"]
            assert [(b["name"], b["count"]) for b in banks] == [("known", 1)]
            r = c.post("/v1/match", json={"hashes": [bytes(code).hex()]})
            assert r.json()["results"][0]["matches"][0]["key"] == "only"
            _error(c.post("/v1/banks/known/hashes", json={"hashes": ["00" * 32]},
                          headers=AUTH), 403, "Forbidden")  # no token: read-only
            _error(c.post("/v1/hash", content=b"x"), 501, "DecodingDisabled")
        # a second server on the same banks is refused (exit 1)
        second = subprocess.run(
            [sys.executable, "-m", "hashlib_ext", "serve", str(path), "--port",
             str(_free_port())], env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1 and "another server" in second.stderr
    finally:
        assert srv.stop() == 0
    # listening beyond this machine needs a token (exit 2, nothing started)
    wide = subprocess.run(
        [sys.executable, "-m", "hashlib_ext", "serve", str(tmp_path / "x"), "--host",
         "0.0.0.0", "--port", str(_free_port())], env=ENV, capture_output=True, text=True,
        timeout=120)
    assert wide.returncode == 2 and "token" in wide.stderr
    assert not (tmp_path / "x").exists()


def test_robust_bank_finds_a_crop(client, images):
    pytest.importorskip("cv2")
    _create(client, "robust-bank", kind="robust")
    r = client.post("/v1/banks/robust-bank/images?key=orig", content=images[4], headers=AUTH)
    assert r.json()["id"] == 0
    im = Image.open(io.BytesIO(images[4]))
    w, h = im.size
    crop = im.crop((w // 6, h // 6, w - w // 6, h - h // 8))
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=85)
    got = client.post("/v1/match?banks=robust-bank", content=buf.getvalue()).json()
    assert [(m["bank"], m["id"], m["key"]) for m in got["robust"]] == [
        ("robust-bank", 0, "orig")]
    other = client.post("/v1/match?banks=robust-bank", content=images[5]).json()
    assert other["robust"] == []
    _error(client.post("/v1/banks/robust-bank/hashes", json={"hashes": ["00" * 32]},
                       headers=AUTH), 409)
