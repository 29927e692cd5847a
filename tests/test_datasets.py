"""Datasets and the COCO download, against a local HTTP server (never the real network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from hashlib_ext import datasets as D
from hashlib_ext.errors import (
    ChecksumMismatchError,
    DatasetDownloadError,
    DatasetError,
    UnsafeArchiveError,
)

NAME = "coco-val2017"


# -- a tiny local HTTP server with optional Range support ----------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802 - http.server API
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        if self.path != "/val2017.zip":
            self.send_error(404, "not here")
            return
        data = srv.payload
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.support_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.truncate_at is not None:  # promise the whole body, send part, hang up
            body = body[: max(0, srv.truncate_at - start)]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.payload, srv.support_range, srv.truncate_at, srv.ranges = b"", True, None, []
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/val2017.zip"
    yield srv
    srv.shutdown()
    srv.server_close()


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, "JPEG")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def archive() -> bytes:
    # padded with a stored filler so that partial/resume tests have room to cut
    members = {f"val2017/{i:012d}.jpg": _jpeg((60 * i, 20, 200 - 50 * i)) for i in range(3)}
    members["val2017/readme.txt"] = bytes(range(256)) * 40
    return _zip(members)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(server, dest: Path, data: bytes, **kw) -> Path:
    return D.download(NAME, dest, url=server.url, sha256=kw.pop("sha256", _sha(data)),
                      progress=False, timeout=5, **kw)


# -- download ------------------------------------------------------------------------------

def test_full_download_extracts_verifies_and_is_reused(server, archive, tmp_path):
    server.payload = archive
    out = _fetch(server, tmp_path / "d", archive)
    assert out == tmp_path / "d" / "val2017"
    assert sorted(p.name for p in out.iterdir()) == [f"{i:012d}.jpg" for i in range(3)] + [
        "readme.txt"]
    assert not (tmp_path / "d" / "val2017.zip").exists()  # archive removed after extraction
    assert not (tmp_path / "d" / "val2017.zip.part").exists()
    ds = D.coco(tmp_path / "d")
    assert ds.name == NAME and len(ds) == 3 and "Creative Commons" in ds.licence
    assert D.get(f"{NAME}:{tmp_path / 'd'}").ids() == ds.ids()
    # a second run finds the completed extraction and does not touch the network
    server.payload = b"changed"
    assert _fetch(server, tmp_path / "d", archive) == out
    assert len(server.ranges) == 1


def test_keep_archive(server, archive, tmp_path):
    server.payload = archive
    _fetch(server, tmp_path, archive, keep_archive=True)
    assert (tmp_path / "val2017.zip").read_bytes() == archive


def test_resume_from_partial_file_uses_range(server, archive, tmp_path):
    server.payload = archive
    cut = len(archive) // 3
    (tmp_path / "val2017.zip.part").write_bytes(archive[:cut])
    out = _fetch(server, tmp_path, archive)
    assert server.ranges == [f"bytes={cut}-"]
    assert len(list(out.glob("*.jpg"))) == 3


def test_server_without_range_restarts_cleanly(server, archive, tmp_path):
    server.payload, server.support_range = archive, False
    (tmp_path / "val2017.zip.part").write_bytes(b"\xff" * 100)  # junk that must not survive
    out = _fetch(server, tmp_path, archive)
    assert server.ranges == ["bytes=100-"]  # asked, was ignored (200), restarted from zero
    assert len(list(out.glob("*.jpg"))) == 3


def test_interrupted_transfer_keeps_part_and_resumes(server, archive, tmp_path):
    server.payload, server.truncate_at = archive, len(archive) // 2
    with pytest.raises(DatasetDownloadError, match="rerun to resume"):
        _fetch(server, tmp_path, archive)
    part = tmp_path / "val2017.zip.part"
    assert part.read_bytes() == archive[: len(archive) // 2]
    server.truncate_at = None
    out = _fetch(server, tmp_path, archive)
    assert server.ranges[-1] == f"bytes={len(archive) // 2}-"
    assert len(list(out.glob("*.jpg"))) == 3


def test_complete_part_file_answered_416_is_kept(server, archive, tmp_path):
    server.payload = archive
    (tmp_path / "val2017.zip.part").write_bytes(archive)
    out = _fetch(server, tmp_path, archive)
    assert server.ranges == [f"bytes={len(archive)}-"]
    assert out.is_dir()


def test_checksum_mismatch_refused_before_extraction(server, archive, tmp_path):
    server.payload = archive
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        _fetch(server, tmp_path, archive, sha256="0" * 64)
    assert not (tmp_path / "val2017").exists()
    assert not (tmp_path / "val2017.zip.part").exists()  # bad data is not resumed from
    assert not (tmp_path / "val2017.zip").exists()


def test_official_entry_checks_md5(server, archive, tmp_path, monkeypatch):
    server.payload = archive
    fake = D.Archive(NAME, server.url, len(archive), hashlib.md5(archive).hexdigest(), None,
                     "val2017", D.COCO_LICENCE, "test")
    monkeypatch.setitem(D.ARCHIVES, NAME, fake)
    out = D.download(NAME, tmp_path / "ok", progress=False, timeout=5)
    assert len(list(out.glob("*.jpg"))) == 3
    monkeypatch.setitem(D.ARCHIVES, NAME, D.Archive(
        NAME, server.url, len(archive), "0" * 32, None, "val2017", D.COCO_LICENCE, "test"))
    with pytest.raises(ChecksumMismatchError, match="md5"):
        D.download(NAME, tmp_path / "bad", progress=False, timeout=5)


def test_official_coco_entry_is_recorded():
    a = D.ARCHIVES[NAME]
    assert a.url == "http://images.cocodataset.org/zips/val2017.zip"
    assert a.size == 815_585_330 and a.md5 == "442b8da7639aecaf257c1dceb8ba8c80"


def test_mirror_without_checksum_is_refused(server, tmp_path):
    with pytest.raises(DatasetDownloadError, match="--sha256"):
        D.download(NAME, tmp_path, url=server.url, progress=False)
    with pytest.raises(DatasetError, match="hex"):
        D.download(NAME, tmp_path, url=server.url, sha256="xyz", progress=False)
    assert server.ranges == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_network_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/val2017.zip"
    with pytest.raises(DatasetDownloadError) as err:
        D.download(NAME, tmp_path, url=url, sha256="0" * 64, progress=False, timeout=5)
    assert url in str(err.value) and "refused" in str(err.value).lower()


def test_http_error_names_status(server, tmp_path):
    with pytest.raises(DatasetDownloadError, match="404"):
        D.download(NAME, tmp_path, url=server.url.replace("val2017", "nothing"),
                   sha256="0" * 64, progress=False, timeout=5)


@pytest.mark.parametrize("evil", ["../evil.txt", "val2017/../../evil.txt", "/tmp/evil-abs.txt"])
def test_zip_slip_refused(server, tmp_path, evil):
    data = _zip({"val2017/a.jpg": _jpeg((1, 2, 3)), evil: b"pwned"})
    server.payload = data
    dest = tmp_path / "inner" / "dest"
    with pytest.raises(UnsafeArchiveError, match="unsafe"):
        _fetch(server, dest, data)
    assert not (dest / "val2017" / "a.jpg").exists()  # nothing extracted at all
    assert not list(tmp_path.rglob("evil*"))


def test_extract_zip_refuses_symlink_members(tmp_path):
    info = zipfile.ZipInfo("val2017/link")
    info.external_attr = (0o120777 << 16)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    (tmp_path / "a.zip").write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        D.extract_zip(tmp_path / "a.zip", tmp_path / "out")


def test_extract_zip_not_a_zip(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable zip"):
        D.extract_zip(tmp_path / "a.zip", tmp_path / "out")


# -- CLI -----------------------------------------------------------------------------------

def _cli(*argv: str) -> int:
    from hashlib_ext.cli import main

    return main(list(argv))


def test_cli_download_exit_codes(server, archive, tmp_path, capsys):
    server.payload = archive
    url = f"http://127.0.0.1:{_closed_port()}/val2017.zip"
    assert _cli("datasets", "download", NAME, "--dir", str(tmp_path / "a"), "--url", url,
                "--sha256", _sha(archive), "--no-progress") == 1
    assert url in capsys.readouterr().err
    assert _cli("datasets", "download", NAME, "--dir", str(tmp_path / "b"), "--url",
                server.url, "--sha256", "1" * 64, "--no-progress") == 3
    assert "expected" in capsys.readouterr().err
    assert _cli("datasets", "download", NAME, "--dir", str(tmp_path / "c"), "--url",
                server.url, "--sha256", _sha(archive)) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "c" / "val2017")
    assert "val2017.zip" in captured.err  # the progress bar goes to stderr
    with pytest.raises(SystemExit) as e:
        _cli("datasets", "download", NAME, "--sha256", "nothex")
    assert e.value.code == 2


def test_cli_list_json(capsys):
    assert _cli("datasets", "list", "--format", "json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["bundled"]["present"] and rows["bundled"]["images"] == 32
    assert {"coco-sample", NAME} <= set(rows)
    assert all(r["licence"] for r in rows.values())


# -- loaders -------------------------------------------------------------------------------

def test_bundled_matches_manifest(bundled):
    ds = D.bundled(verify=True)
    assert ds.name == "bundled" and "Creative Commons" in ds.licence
    # package data; datasets/coco-mini in the checkout links to the same files
    assert [p.resolve() for _, p in ds] == [p.resolve() for p in bundled]
    assert ds.root == D.BUNDLED_DIR and D.BUNDLED_DIR.is_relative_to(Path(D.__file__).parent)
    assert ds.ids() == [p.name for p in bundled]
    assert D.get().ids() == D.get("bundled").ids() == ds.ids()
    assert len(ds.head(5)) == 5


def test_bundled_missing_says_how_to_get_data(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHLIB_EXT_BUNDLED", str(tmp_path / "nothing"))
    with pytest.raises(DatasetError, match="MANIFEST.csv missing.*HASHLIB_EXT_BUNDLED"):
        D.bundled()


def test_folder_recursive_ids_and_filtering(tmp_path):
    (tmp_path / "sub").mkdir()
    for rel in ["b.jpg", "a.PNG", "sub/c.webp", "notes.txt", ".hidden.jpg"]:
        (tmp_path / rel).write_bytes(b"x")
    ds = D.folder(tmp_path)
    assert ds.ids() == ["a.PNG", "b.jpg", "sub/c.webp"]
    assert D.folder(tmp_path, recursive=False).ids() == ["a.PNG", "b.jpg"]
    assert D.get(str(tmp_path)).ids() == ds.ids()
    with pytest.raises(DatasetError, match="does not exist"):
        D.folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        D.folder(tmp_path / "empty")


def test_get_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset"):
        D.get(str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="download"):
        D.get(f"{NAME}:{tmp_path}")


def test_shared_sample_via_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHLIB_EXT_SHARED", str(tmp_path))
    with pytest.raises(DatasetError, match="coco-sample"):
        D.shared_coco_sample()
    (tmp_path / "coco-sample" / "val2017").mkdir(parents=True)
    (tmp_path / "coco-sample" / "val2017" / "1.jpg").write_bytes(_jpeg((0, 0, 0)))
    ds = D.get("coco-sample")
    assert ds.ids() == ["val2017/1.jpg"] and ds.name == "coco-sample"


def test_shared_sample_when_present(coco_sample):
    ds = D.shared_coco_sample()
    assert [p for _, p in ds] == coco_sample


# -- hostile servers and archives: schemes, sizes, bombs, the user's existing files ----------

class _EvilHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802 - http.server API
        mode = self.server.mode
        self.server.hits += 1
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", self.server.location)
            self.end_headers()
            return
        self.send_response(200)
        if mode == "big-length":
            self.send_header("Content-Length", str(10**12))
        self.end_headers()
        try:  # "endless" and "big-length": data until the client hangs up (capped here)
            for _ in range(4096):
                self.wfile.write(b"\0" * 65536)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def evil():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EvilHandler)
    srv.mode, srv.location, srv.hits = "endless", "", 0
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/val2017.zip"
    yield srv
    srv.shutdown()
    srv.server_close()


def _users_files(dest: Path) -> Path:
    old = dest / "val2017"
    old.mkdir(parents=True)
    (old / "mine.jpg").write_bytes(b"the user's own file")
    return old


def _intact(dest: Path) -> None:
    assert (dest / "val2017" / "mine.jpg").read_bytes() == b"the user's own file"
    assert not list(dest.glob(".hashlib-ext-extract-*"))  # no staging folder left


@pytest.mark.parametrize("url", ["file:///dev/zero", "ftp://127.0.0.1/val2017.zip",
                                 "data:,hello", "/etc/passwd", "gopher://x/"])
def test_only_http_urls_are_fetched(tmp_path, url):
    with pytest.raises(DatasetDownloadError, match="only http"):
        D.download(NAME, tmp_path / "d", url=url, sha256="0" * 64, progress=False)
    assert not (tmp_path / "d").exists()  # refused before anything was created


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/val2017.zip", "file:///etc/passwd"])
def test_redirect_to_another_scheme_is_refused(evil, tmp_path, location):
    evil.mode, evil.location = "redirect", location
    with pytest.raises(DatasetDownloadError, match="only http|not allowed"):
        D.download(NAME, tmp_path, url=evil.url, sha256="0" * 64, progress=False, timeout=5)
    assert not (tmp_path / "val2017.zip.part").exists() or \
        (tmp_path / "val2017.zip.part").stat().st_size == 0


@pytest.mark.parametrize("mode", ["endless", "big-length"])
def test_download_is_capped_by_the_expected_size(evil, tmp_path, mode):
    evil.mode = mode
    _users_files(tmp_path)
    with pytest.raises(ChecksumMismatchError, match="at most 100000 bytes"):
        D.download(NAME, tmp_path, url=evil.url, sha256="0" * 64, progress=False, timeout=5,
                   max_size=100_000)
    assert not (tmp_path / "val2017.zip.part").exists()
    _intact(tmp_path)


def test_default_cap_is_the_recorded_size(server, archive, tmp_path, monkeypatch):
    server.payload = archive
    small = D.Archive(NAME, server.url, len(archive) // 2, None, _sha(archive), "val2017",
                      D.COCO_LICENCE, "test")
    monkeypatch.setitem(D.ARCHIVES, NAME, small)
    with pytest.raises(ChecksumMismatchError, match="at most"):
        D.download(NAME, tmp_path, progress=False, timeout=5)
    assert not (tmp_path / "val2017.zip.part").exists()


@pytest.mark.parametrize("problem", ["checksum", "unsafe", "no-folder", "bomb", "corrupt"])
def test_a_refused_archive_never_costs_the_existing_folder(server, tmp_path, problem):
    _users_files(tmp_path)
    if problem == "unsafe":
        data = _zip({"val2017/a.jpg": _jpeg((1, 2, 3)), "../evil.txt": b"x"})
    elif problem == "no-folder":
        data = _zip({"other/a.jpg": _jpeg((1, 2, 3))})
    elif problem == "bomb":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("val2017/zeros.jpg", b"\0" * (80 << 20))
        data = buf.getvalue()
    elif problem == "corrupt":  # a member whose data do not match its CRC
        data = bytearray(_zip({"val2017/a.jpg": b"A" * 5000}))
        i = bytes(data).index(b"A" * 100)
        data[i + 50] ^= 0xFF
        data = bytes(data)
    else:
        data = _zip({"val2017/a.jpg": _jpeg((1, 2, 3))})
    server.payload = data
    sha = "0" * 64 if problem == "checksum" else _sha(data)
    with pytest.raises(DatasetError):
        D.download(NAME, tmp_path, url=server.url, sha256=sha, progress=False, timeout=5)
    _intact(tmp_path)


def test_a_good_archive_replaces_the_folder_only_at_the_end(server, archive, tmp_path):
    _users_files(tmp_path)
    stale = tmp_path / ".hashlib-ext-extract-stale"  # left by a killed earlier run
    (stale / "val2017").mkdir(parents=True)
    server.payload = archive
    out = _fetch(server, tmp_path, archive)
    assert sorted(p.name for p in out.iterdir()) == [f"{i:012d}.jpg" for i in range(3)] + [
        "readme.txt"]
    assert not list(tmp_path.glob(".hashlib-ext-extract-*"))
    assert (tmp_path / ".coco-val2017.complete").is_file()


def test_extract_zip_limits(tmp_path):
    data = _zip({f"val2017/{i}.txt": b"x" for i in range(20)})
    (tmp_path / "a.zip").write_bytes(data)
    with pytest.raises(UnsafeArchiveError, match="members"):
        D.extract_zip(tmp_path / "a.zip", tmp_path / "out", max_members=10)
    with pytest.raises(UnsafeArchiveError, match="declare"):
        D.extract_zip(tmp_path / "a.zip", tmp_path / "out", max_total=10)
    assert not (tmp_path / "out" / "val2017").exists()
    assert len(D.extract_zip(tmp_path / "a.zip", tmp_path / "out")) == 20
