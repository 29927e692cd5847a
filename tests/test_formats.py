"""Hash-list formats: round trips, malformed records (strict and lenient), TE CSV, atomicity."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hashlib_ext as hx
from hashlib_ext import formats
from hashlib_ext.errors import HashFormatError


def random_list(n: int = 300, nbytes: int = 32, seed: int = 0, algorithm: str = "pdq"):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    quals = rng.integers(0, 101, n)
    ids = rng.permutation(np.arange(-(10**12), 10**12, 10**9 + 7, dtype=np.int64))[:n]
    keys = np.array([f"dir {i}/img,{i}\"q\".jpg" for i in range(n)], dtype=object)
    return hx.HashArray(codes, algorithm, quals), ids, keys


ROUND_TRIP = ["x.csv", "x.tsv", "x.jsonl", "x.json", "x.parquet", "x.csv.gz", "x.jsonl.gz",
              "x.te.csv"]


@pytest.mark.parametrize("name", ROUND_TRIP)
@pytest.mark.parametrize("chunk_rows", [7, formats.CHUNK_ROWS])
def test_round_trip_with_ids_keys_qualities(tmp_path, name, chunk_rows):
    hashes, ids, keys = random_list()
    path = tmp_path / name
    fmt = "te" if name.endswith(".te.csv") else None
    formats.write_hash_list(path, hashes, ids, keys, format=fmt, chunk_rows=chunk_rows)
    got = formats.read_hash_list(path, chunk_rows=chunk_rows)
    assert got.hashes == hashes
    assert got.hashes.algorithm == "pdq"
    np.testing.assert_array_equal(got.ids, ids)
    assert got.ids.dtype == np.int64
    assert got.keys.tolist() == keys.tolist()
    assert got.skipped == []
    # Self-describing: a 64-bit list reads back as its algorithm without being told.
    small = hx.HashArray(hashes.codes[:, :8].copy(), "dhash")
    formats.write_hash_list(path, small, format=fmt)
    if fmt != "te":
        assert formats.read_hash_list(path, format=fmt).hashes == small
    if fmt != "te":  # ThreatExchange's shape has no quality column
        np.testing.assert_array_equal(got.hashes.qualities, hashes.qualities)


def test_round_trip_hex_lines_with_keys(tmp_path):
    hashes, _, _ = random_list(50)
    keys = [f"photos/{i} copy.jpg" if i % 3 else "" for i in range(50)]
    path = tmp_path / "list.txt"
    formats.write_hash_list(path, hashes, keys=keys)
    got = formats.read_hash_list(path)
    assert got.hashes == hashes
    np.testing.assert_array_equal(got.ids, np.arange(50))
    assert got.keys.tolist() == keys
    # One hash per line, key after a space.
    first = path.read_text().splitlines()[1]
    assert first == f"{hashes[1].hex} photos/1 copy.jpg"


def test_round_trip_hex_without_keys_and_64_bits(tmp_path):
    hashes, _, _ = random_list(40, nbytes=8, algorithm="phash")
    path = tmp_path / "p.hex"
    formats.write_hash_list(path, hashes)
    assert path.read_text().split() == hashes.hex()
    got = formats.read_hash_list(path, "phash")
    assert got.hashes == hashes and got.keys is None


def test_hex_lines_refuse_ids_they_cannot_hold(tmp_path):
    hashes, ids, _ = random_list(5)
    with pytest.raises(HashFormatError, match="no ids"):
        formats.write_hash_list(tmp_path / "a.txt", hashes, ids)


def test_parquet_schema_and_metadata(tmp_path):
    hashes, ids, keys = random_list(20)
    path = tmp_path / "h.parquet"
    formats.write_hash_list(path, hashes, ids, keys)
    table = pq.read_table(path)
    assert table.schema.field("hash").type == pa.binary(32)
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.metadata[b"hashlib_ext.algorithm"] == b"pdq"
    assert table.column("hash")[3].as_py() == hashes.codes[3].tobytes()
    # Algorithm comes back from the metadata even for a non-default one.
    h64 = hx.HashArray(hashes.codes[:, :8].copy(), "dhash")
    formats.write_hash_list(path, h64)
    assert formats.read_hash_list(path).hashes == h64


def test_parquet_hex_string_column_and_bad_rows(tmp_path):
    hashes, _, _ = random_list(6)
    texts = hashes.hex()
    texts[2] = texts[2][:32]  # an MD5-sized string in a PDQ list
    texts[4] = None
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"hash": texts, "id": np.arange(10, 16)}), path)
    with pytest.raises(HashFormatError, match=r"s\.parquet, row 3: .*32 characters, expected 64"):
        formats.read_hash_list(path, "pdq")
    got = formats.read_hash_list(path, "pdq", lenient=True)
    assert [r for r, _ in got.skipped] == [3, 5]
    assert "null" in got.skipped[1][1]
    np.testing.assert_array_equal(got.ids, [10, 11, 13, 15])
    assert got.hashes == hashes[[0, 1, 3, 5]]


def test_parquet_wrong_binary_width(tmp_path):
    path = tmp_path / "w.parquet"
    codes = np.zeros((3, 16), np.uint8)
    pq.write_table(pa.table({"hash": pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), 3, [None, pa.py_buffer(codes.tobytes())])}), path)
    with pytest.raises(HashFormatError, match="row 1: hash has 16 bytes, expected 32"):
        formats.read_hash_list(path, "pdq")


GOOD = "f" * 64


def _hex_file(tmp_path, lines):
    path = tmp_path / "list.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_hex_lines_strict_names_file_and_line(tmp_path):
    md5 = "d41d8cd98f00b204e9800998ecf8427e"  # 32 characters in a PDQ list
    path = _hex_file(tmp_path, ["# comment", GOOD, "", GOOD, md5, GOOD])
    with pytest.raises(HashFormatError) as err:
        formats.read_hash_list(path, "pdq")
    assert f"{path}, line 5" in str(err.value)
    assert "32 characters, expected 64" in str(err.value)


def test_malformed_hex_lines_lenient_reports_and_keeps_record_numbers(tmp_path):
    nonhex = "g" + "0" * 63
    path = _hex_file(tmp_path, [GOOD, "a" * 64, nonhex, "0" * 62, "1" * 66, "b" * 64])
    got = formats.read_hash_list(path, "pdq", lenient=True)
    assert [line for line, _ in got.skipped] == [3, 4, 5]
    assert "not hexadecimal" in got.skipped[0][1]
    # Ids are record numbers: the skipped records keep theirs, nothing is renumbered.
    np.testing.assert_array_equal(got.ids, [0, 1, 5])
    assert got.hashes.hex() == [GOOD, "a" * 64, "b" * 64]


def test_lengths_that_sum_right_never_shift_into_each_other(tmp_path):
    # 62 + 66 characters: a naive concatenation would decode to two "valid" hashes.
    path = tmp_path / "c.csv"
    path.write_text(f"hash\n{'0' * 62}\n{'1' * 66}\n{'ab ' * 21 + 'c'}\n")
    got = formats.read_hash_list(path, "pdq", lenient=True)
    assert len(got) == 0
    assert [line for line, _ in got.skipped] == [2, 3, 4]


def test_chunked_reading_reports_the_first_bad_line(tmp_path):
    lines = [GOOD] * 25
    lines[17] = "z" * 64
    lines[23] = "0" * 10
    path = _hex_file(tmp_path, lines)
    with pytest.raises(HashFormatError, match="line 18:"):
        formats.read_hash_list(path, chunk_rows=5)
    got = formats.read_hash_list(path, chunk_rows=5, lenient=True)
    assert [line for line, _ in got.skipped] == [18, 24]
    assert len(got) == 23


def test_csv_bad_rows_strict_and_lenient(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text(f"id,hash,path\n1,{GOOD},a.jpg\nx,{GOOD},b.jpg\n3\n4,{GOOD[:-1]},c.jpg\n"
                    f"5,{GOOD},d.jpg\n")
    with pytest.raises(HashFormatError, match=r"l\.csv, line 3: id 'x' is not an integer"):
        formats.read_hash_list(path)
    got = formats.read_hash_list(path, lenient=True)
    assert [line for line, _ in got.skipped] == [3, 4, 5]
    assert "fields" in got.skipped[1][1]
    np.testing.assert_array_equal(got.ids, [1, 5])
    assert got.keys.tolist() == ["a.jpg", "d.jpg"]


def test_csv_header_detection_and_column_choice(tmp_path):
    hashes, _, _ = random_list(4)
    hexes = hashes.hex()
    # No header: the hash is the first column.
    p1 = tmp_path / "noheader.csv"
    p1.write_text("".join(f"{h},{i}\n" for i, h in enumerate(hexes)))
    got = formats.read_hash_list(p1)
    assert got.hashes == hashes and got.keys is None
    # Header naming the algorithm's column, key from "path", hash not first.
    p2 = tmp_path / "named.csv"
    p2.write_text("path,pdq,quality\n" + "".join(f"f{i}.jpg,{h},{i}\n" for i, h in
                                                  enumerate(hexes)))
    got = formats.read_hash_list(p2)
    assert got.hashes == hashes
    assert got.keys.tolist() == [f"f{i}.jpg" for i in range(4)]
    np.testing.assert_array_equal(got.hashes.qualities, [0, 1, 2, 3])
    # Explicit columns without a header.
    p3 = tmp_path / "explicit.tsv"
    p3.write_text("".join(f"{100 + i}\t{h}\tk{i}\n" for i, h in enumerate(hexes)))
    got = formats.read_hash_list(p3, hash_column=1, id_column=0, key_column=2)
    assert got.hashes == hashes
    np.testing.assert_array_equal(got.ids, [100, 101, 102, 103])
    with pytest.raises(HashFormatError, match="no hash column 'sig'"):
        formats.read_hash_list(p2, hash_column="sig")


def test_jsonl_bad_lines(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text("\n".join([
        json.dumps({"hash": GOOD, "id": 7, "path": "a"}),
        "{not json",
        json.dumps([GOOD]),
        json.dumps({"id": 3}),
        json.dumps({"hash": GOOD, "algorithm": "phash"}),
        json.dumps({"hash": GOOD, "id": "12"}),
    ]) + "\n")
    with pytest.raises(HashFormatError, match="line 2: invalid JSON"):
        formats.read_hash_list(path)
    got = formats.read_hash_list(path, lenient=True)
    assert [line for line, _ in got.skipped] == [2, 3, 4]
    assert got.ignored == 1  # the phash record belongs to another list
    np.testing.assert_array_equal(got.ids, [7, 12])
    assert got.keys.tolist() == ["a", None]  # no key field: a NULL key


# The shape python-threatexchange's `threatexchange dataset --csv` writes.
TE_CSV = """signal_type,signal_str,collab,category,tags
pdq,{h1},Sample Signals,INVESTIGATION_SEED,tag1 tag2
url,https://example.org/,Sample Signals,INVESTIGATION_SEED,
pdq,{h2},Other Collab,WORTH_INVESTIGATING,
video_md5,d41d8cd98f00b204e9800998ecf8427e,Sample Signals,INVESTIGATION_SEED,
"""


def test_threatexchange_csv_reads_pdq_rows_only(tmp_path):
    hashes, _, _ = random_list(2)
    path = tmp_path / "te_export.csv"
    path.write_text(TE_CSV.format(h1=hashes[0].hex, h2=hashes[1].hex))
    got = formats.read_hash_list(path)  # detected from the header
    assert got.hashes == hashes
    assert got.ignored == 2
    np.testing.assert_array_equal(got.ids, [0, 1])
    assert formats.read_hash_list(path, format="te").hashes == hashes


def test_threatexchange_csv_writer_shape(tmp_path):
    hashes, _, _ = random_list(3)
    path = tmp_path / "out.csv"
    formats.write_hash_list(path, hashes, format="te")
    lines = path.read_text().splitlines()
    assert lines[0] == "signal_type,signal_str,collab,category,tags"
    assert lines[1] == f"pdq,{hashes[0].hex},,,"


def test_detect_format_and_unknown_extension(tmp_path):
    assert formats.detect_format("a/b.PARQUET") == "parquet"
    assert formats.detect_format("a/b.csv.gz") == "csv"
    assert formats.detect_format("x.ndjson") == "jsonl"
    with pytest.raises(HashFormatError, match="extension"):
        formats.detect_format("a/b.jpg")
    hashes, _, _ = random_list(3)
    path = tmp_path / "hashes.dat"
    formats.write_hash_list(path, hashes, format="jsonl")
    assert formats.read_hash_list(path, format="jsonl").hashes == hashes


def test_gzip_is_really_compressed(tmp_path):
    hashes, _, _ = random_list(3)
    path = tmp_path / "h.txt.gz"
    formats.write_hash_list(path, hashes)
    assert gzip.decompress(path.read_bytes()).decode().split() == hashes.hex()


def test_empty_files(tmp_path):
    (tmp_path / "e.txt").write_text("")
    got = formats.read_hash_list(tmp_path / "e.txt")
    assert len(got) == 0 and got.hashes.bits == 256 and got.ids.dtype == np.int64
    formats.write_hash_list(tmp_path / "e.parquet", hx.HashArray.empty("pdq", 256))
    assert len(formats.read_hash_list(tmp_path / "e.parquet")) == 0
    formats.write_hash_list(tmp_path / "e.csv", hx.HashArray.empty("pdq", 256))
    assert len(formats.read_hash_list(tmp_path / "e.csv")) == 0


def test_unknown_algorithm_takes_width_from_first_hash(tmp_path):
    path = _hex_file(tmp_path, ["00ff" * 6, "11" * 12, "22" * 11])
    got = formats.read_hash_list(path, "custom96", lenient=True)
    assert got.hashes.bits == 96 and len(got) == 2
    assert got.skipped[0][0] == 3


def test_missing_file_and_binary_garbage(tmp_path):
    with pytest.raises(HashFormatError, match="no such"):
        formats.read_hash_list(tmp_path / "nope.csv")
    (tmp_path / "bin.txt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(HashFormatError):
        formats.read_hash_list(tmp_path / "bin.txt")


class _Exploding:
    def __str__(self) -> str:
        raise RuntimeError("disk full (simulated)")


@pytest.mark.parametrize("name", ["old.csv", "old.txt", "old.jsonl", "old.parquet"])
def test_failed_write_leaves_old_file_intact(tmp_path, name):
    path = tmp_path / name
    old, _, _ = random_list(10, seed=1)
    formats.write_hash_list(path, old, keys=[f"k{i}" for i in range(10)])
    before = path.read_bytes()
    new, _, _ = random_list(100, seed=2)
    keys = [f"n{i}" for i in range(100)]
    keys[60] = _Exploding()  # fails after the first chunks were written
    with pytest.raises(RuntimeError, match="simulated"):
        formats.write_hash_list(path, new, keys=keys, chunk_rows=16)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_reads_what_the_hash_command_writes(tmp_path, bundled):
    """CSV, JSON and JSONL from ``hashlib-ext hash``: path keys, hex column, algorithm column."""
    from hashlib_ext.cli import main

    paths = [str(p) for p in bundled[:4]]
    expected = hx.HashArray.from_hashes([hx.hash_image(p, "dhash") for p in paths])
    for fmt in ("csv", "json", "jsonl"):
        out = tmp_path / f"h.{fmt}"
        assert main(["hash", *paths, "--algorithm", "dhash", "--format", fmt,
                     "--output", str(out)]) == 0
        got = formats.read_hash_list(out)  # the algorithm comes from the file
        assert got.hashes == expected, fmt
        assert got.keys.tolist() == paths
        # Asked for another algorithm, the rows are not silently taken as such.
        other = formats.read_hash_list(out, "pdq")
        assert len(other) == 0 and other.ignored == 4


def test_csv_rows_of_other_algorithms_are_counted_not_taken(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(f"path,algorithm,hex\na.jpg,pdq,{GOOD}\nb.jpg,phash,{'0' * 16}\n"
                    f"c.jpg,pdq,{'1' * 64}\n")
    got = formats.read_hash_list(path)
    assert got.hashes.hex() == [GOOD, "1" * 64] and got.ignored == 1
    got = formats.read_hash_list(path, "phash")
    assert got.hashes.hex() == ["0" * 16] and got.ignored == 2


def test_byte_order_mark_and_crlf(tmp_path):
    hashes, _, _ = random_list(3)
    path = tmp_path / "excel.csv"
    body = "hash,path\r\n" + "".join(f"{h},p{i}\r\n" for i, h in enumerate(hashes.hex()))
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    got = formats.read_hash_list(path)
    assert got.hashes == hashes and got.keys.tolist() == ["p0", "p1", "p2"]


def test_parquet_of_another_algorithm_is_refused(tmp_path):
    hashes, _, _ = random_list(3, nbytes=8, algorithm="phash")
    path = tmp_path / "p.parquet"
    formats.write_hash_list(path, hashes)
    with pytest.raises(HashFormatError, match="holds phash hashes, not dhash"):
        formats.read_hash_list(path, "dhash")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(HashFormatError, match="Parquet"):
        formats.read_hash_list(tmp_path / "junk.parquet")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 30),
    nbytes=st.sampled_from([8, 32]),
    seed=st.integers(0, 2**32 - 1),
    keys=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
                  min_size=30, max_size=30),
    ext=st.sampled_from(["csv", "tsv", "jsonl", "json", "parquet", "csv.gz"]),
)
def test_round_trip_property(tmp_path, n, nbytes, seed, keys, ext):
    """Any codes, any int64 ids, any text keys (quotes, separators, newlines, unicode)."""
    rng = np.random.default_rng(seed)
    algorithm = "pdq" if nbytes == 32 else "phash"
    hashes = hx.HashArray(rng.integers(0, 256, (n, nbytes), dtype=np.uint8), algorithm)
    ids = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True)
    path = tmp_path / f"prop.{ext}"
    formats.write_hash_list(path, hashes, ids, keys[:n], chunk_rows=7)
    got = formats.read_hash_list(path, chunk_rows=5)
    np.testing.assert_array_equal(got.ids, ids)
    if n:
        assert got.hashes == hashes
        assert got.keys.tolist() == keys[:n]
    else:  # an empty CSV has no row to record the algorithm in
        assert len(got) == 0 and got.hashes.bits in (hashes.bits, 256)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40),
       ext=st.sampled_from(["txt", "csv", "jsonl"]), chunk_rows=st.integers(1, 16))
def test_lenient_skips_exactly_the_corrupted_records(tmp_path, seed, n, ext, chunk_rows):
    rng = np.random.default_rng(seed)
    hashes = hx.HashArray(rng.integers(0, 256, (n, 32), dtype=np.uint8), "pdq")
    texts = hashes.hex()
    bad = set(np.flatnonzero(rng.random(n) < 0.3).tolist())
    for i in bad:
        t = texts[i]
        texts[i] = [t[:-1], t + "0", t[:-2], "x" + t[1:], t[:31] + "-" + t[32:],
                    t[:32]][int(rng.integers(0, 6))]
    path = tmp_path / f"corrupt.{ext}"
    if ext == "txt":
        path.write_text("".join(t + "\n" for t in texts))
        first_line = 1
    elif ext == "csv":
        path.write_text("hash\n" + "".join(t + "\n" for t in texts))
        first_line = 2
    else:
        path.write_text("".join(json.dumps({"hash": t}) + "\n" for t in texts))
        first_line = 1
    good = [i for i in range(n) if i not in bad]
    got = formats.read_hash_list(path, lenient=True, chunk_rows=chunk_rows)
    assert [line for line, _ in got.skipped] == [first_line + i for i in sorted(bad)]
    np.testing.assert_array_equal(got.ids, good)
    assert got.hashes == hashes[np.array(good, dtype=np.intp)]
    if bad:
        with pytest.raises(HashFormatError, match=f"line {first_line + min(bad)}:"):
            formats.read_hash_list(path, chunk_rows=chunk_rows)


def test_written_files_get_ordinary_permissions(tmp_path):
    import os

    hashes, _, _ = random_list(3)
    umask = os.umask(0o022)
    try:
        formats.write_hash_list(tmp_path / "new.csv", hashes)
        assert (tmp_path / "new.csv").stat().st_mode & 0o777 == 0o644
        (tmp_path / "old.csv").write_text("")
        (tmp_path / "old.csv").chmod(0o640)
        formats.write_hash_list(tmp_path / "old.csv", hashes)
        assert (tmp_path / "old.csv").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


def test_bad_ids_and_qualities_are_named(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text(f"hash,id,quality\n{GOOD},1,50\n{GOOD},{2**63},50\n{GOOD},3,101\n"
                    f"{GOOD}, 4 ,\n{GOOD},-5,-1\n{GOOD},6,x\n")
    got = formats.read_hash_list(path, lenient=True)
    assert [(line, reason.split(" ")[0]) for line, reason in got.skipped] == \
        [(3, "id"), (4, "quality"), (7, "quality")]
    assert "int64" in got.skipped[0][1] and "0..100" in got.skipped[1][1]
    np.testing.assert_array_equal(got.ids, [1, 4, -5])
    np.testing.assert_array_equal(got.hashes.qualities, [50, -1, -1])
    jl = tmp_path / "q.jsonl"
    jl.write_text("\n".join(json.dumps({"hash": GOOD, "id": v}) for v in
                            [7, 7.5, True, "8", None, 2**64]) + "\n")
    got = formats.read_hash_list(jl, lenient=True)
    np.testing.assert_array_equal(got.ids, [7, 8, 4])  # null id: the record number
    assert [line for line, _ in got.skipped] == [2, 3, 6]


# -- hostile files: non-regular files, bombs, nesting, over-long lines ----------------------

def test_non_regular_files_are_refused_before_opening(tmp_path):
    import os
    import threading

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    done = []

    def read_all():
        for name, kind in (("pipe.txt", "FIFO"), ("folder.csv", "directory"),
                           ("zero.txt", "character device"), ("pipe.txt", "FIFO")):
            for fmt in (None, "parquet", "json"):
                with pytest.raises(HashFormatError, match=f"is a {kind}"):
                    formats.read_hash_list(tmp_path / name, format=fmt)
        done.append(True)

    t = threading.Thread(target=read_all, daemon=True)
    t.start()
    t.join(20)
    assert done, "reading a FIFO or device blocked"


def test_gzip_with_one_huge_line_fails_fast_in_bounded_memory(tmp_path):
    import tracemalloc

    path = tmp_path / "bomb.txt.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        block = b"0" * (1 << 20)
        for _ in range(256):  # 256 MiB on one line, about 250 kB compressed
            f.write(block)
    tracemalloc.start()
    for lenient in (False, True):
        with pytest.raises(HashFormatError, match="bomb.txt.gz"):
            formats.read_hash_list(path, lenient=lenient)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 << 20, peak


def test_gzip_bomb_of_blank_lines_is_refused(tmp_path):
    path = tmp_path / "blank.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b"hash\n")
        for _ in range(64):
            f.write(b"\n" * (1 << 20))
    with pytest.raises(HashFormatError, match="compression bomb"):
        formats.read_hash_list(path)
    # A real list of one repeated hash compresses far less and reads.
    path = tmp_path / "same.txt.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write((GOOD + "\n").encode() * 300_000)
    assert len(formats.read_hash_list(path)) == 300_000


@pytest.mark.parametrize("ext", ["txt", "csv", "jsonl"])
def test_over_long_lines_strict_and_lenient(tmp_path, ext):
    long = "a" * (formats.MAX_LINE_CHARS + 10)
    path = tmp_path / f"long.{ext}"
    lines = {"txt": [GOOD, long, GOOD], "csv": ["hash", GOOD, long, GOOD],
             "jsonl": [json.dumps({"hash": GOOD}), long, json.dumps({"hash": GOOD})]}[ext]
    path.write_text("\n".join(lines) + "\n")
    bad_line = lines.index(long) + 1
    with pytest.raises(HashFormatError, match=f"line {bad_line}: line longer than"):
        formats.read_hash_list(path)
    got = formats.read_hash_list(path, lenient=True)
    assert len(got) == 2 and [line for line, _ in got.skipped] == [bad_line]
    np.testing.assert_array_equal(got.ids, [0, 2])


def test_deeply_nested_json_is_a_format_error(tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    (tmp_path / "a.json").write_text(deep)
    (tmp_path / "b.json").write_text('[{"hash": ' + deep[:100_000] + deep[-100_000:] + "}]")
    (tmp_path / "c.jsonl").write_text(json.dumps({"hash": GOOD}) + "\n" + deep + "\n")
    for name in ("a.json", "b.json"):
        with pytest.raises(HashFormatError, match=f"{name}, item 1: .*nested too deeply"):
            formats.read_hash_list(tmp_path / name)
    with pytest.raises(HashFormatError, match="c.jsonl, line 2: JSON nested too deeply"):
        formats.read_hash_list(tmp_path / "c.jsonl")
    assert len(formats.read_hash_list(tmp_path / "c.jsonl", lenient=True)) == 1


def test_json_array_is_streamed_item_by_item(tmp_path):
    hashes, ids, keys = random_list(50)
    path = tmp_path / "l.json"
    formats.write_hash_list(path, hashes, ids, keys)
    got = formats.read_hash_list(path, chunk_rows=7)
    assert got.hashes == hashes and got.keys.tolist() == keys.tolist()
    # the object form, with members before and after the array
    obj = {"tool": {"v": [1, 2]}, "hashes": json.loads(path.read_text()), "n": 50}
    path.write_text(json.dumps(obj, indent=1))
    assert formats.read_hash_list(path).hashes == hashes
    for text, match in [("[", "invalid JSON"), ('[{"hash": "' + GOOD + '"} 7]', "',' or ']'"),
                        ("[] []", "extra data"), ('{"x": 1}', "array of hash objects"),
                        ("", "empty"), ("7", "array")]:
        path.write_text(text)
        with pytest.raises(HashFormatError, match=match):
            formats.read_hash_list(path)


def test_parquet_quality_range_and_null_keys(tmp_path):
    path = tmp_path / "q.parquet"
    table = pa.table({"hash": [GOOD] * 5, "key": ["a", None, "c", None, "e"],
                      "quality": pa.array([50, 500, -7, None, 100], pa.int32())})
    pq.write_table(table, path)
    with pytest.raises(HashFormatError, match="row 2: quality 500 is outside 0..100"):
        formats.read_hash_list(path)
    got = formats.read_hash_list(path, lenient=True)
    assert [line for line, _ in got.skipped] == [2, 3]
    assert got.keys.tolist() == ["a", None, "e"]  # NULL keys are None, not "None"
    np.testing.assert_array_equal(got.hashes.qualities, [50, -1, 100])
    # None keys are written as NULLs (JSON null, Parquet null) and read back as None
    for name in ("k.parquet", "k.jsonl", "k.json"):
        formats.write_hash_list(tmp_path / name, got)
        assert formats.read_hash_list(tmp_path / name).keys.tolist() == ["a", None, "e"]
    formats.write_hash_list(tmp_path / "k.csv", got)  # CSV has no NULL: an empty cell
    assert formats.read_hash_list(tmp_path / "k.csv").keys.tolist() == ["a", "", "e"]


def test_corrupt_parquet_and_wrong_column_types(tmp_path):
    hashes, ids, keys = random_list(200)
    path = tmp_path / "x.parquet"
    formats.write_hash_list(path, hashes, ids, keys, chunk_rows=50)
    data = path.read_bytes()
    for cut in (len(data) // 3, len(data) - 9, 20):
        (tmp_path / "cut.parquet").write_bytes(data[:cut])
        with pytest.raises(HashFormatError, match="cut.parquet"):
            formats.read_hash_list(tmp_path / "cut.parquet")
    for col, values, match in [("hash", [1, 2], "hash column has type"),
                               ("quality", [1.5, 2.0], "quality column has type"),
                               ("key", [[1], [2]], "key column has type"),
                               ("id", ["1", "2"], "id column has type")]:
        cols = {"hash": [GOOD, GOOD], col: values}
        pq.write_table(pa.table(cols), tmp_path / "t.parquet")
        with pytest.raises(HashFormatError, match=match):
            formats.read_hash_list(tmp_path / "t.parquet")


# -- PDQ quality policy --------------------------------------------------------------------

def test_quality_ok_flag_in_csv_and_json_outputs(tmp_path):
    codes = np.arange(4 * 32, dtype=np.uint8).reshape(4, 32)
    hashes = hx.HashArray(codes, "pdq", [49, 50, -1, 100])
    formats.write_hash_list(tmp_path / "q.csv", hashes)
    rows = (tmp_path / "q.csv").read_text().splitlines()
    assert rows[0] == "hash,algorithm,quality,quality_ok"  # ids 0..n-1: no id column
    assert [r.split(",")[-2:] for r in rows[1:]] == [["49", "false"], ["50", "true"],
                                                     ["", ""], ["100", "true"]]
    formats.write_hash_list(tmp_path / "q.jsonl", hashes)
    objs = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [o.get("quality_ok") for o in objs] == [False, True, None, True]
    assert formats.quality_ok(hashes.qualities).tolist() == [False, True, None, True]
    for name in ("q.csv", "q.jsonl"):  # the flag column does not disturb reading
        assert formats.read_hash_list(tmp_path / name).hashes == hashes


@pytest.mark.parametrize("name", ["m.csv", "m.jsonl", "m.json", "m.parquet", "m.tsv.gz"])
def test_min_quality_leaves_out_low_quality_hashes(tmp_path, name):
    hashes, ids, keys = random_list(300)
    hashes.qualities[:10] = -1  # unknown quality: kept
    path = tmp_path / name
    formats.write_hash_list(path, hashes, ids, keys)
    got = formats.read_hash_list(path, min_quality=formats.PDQ_MIN_QUALITY, chunk_rows=32)
    q = hashes.qualities
    keep = (q < 0) | (q >= 50)
    assert got.hashes == hashes[np.flatnonzero(keep)]
    np.testing.assert_array_equal(got.ids, ids[keep])
    assert got.keys.tolist() == keys[keep].tolist()
    assert got.low_quality == int((~keep).sum()) > 0
    assert len(formats.read_hash_list(path, min_quality=0)) == 300
    for bad in (-1, 101, 50.5, True):
        with pytest.raises(HashFormatError, match="min_quality"):
            formats.read_hash_list(path, min_quality=bad)
