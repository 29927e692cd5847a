"""Fuzzed hash-list files: whatever the bytes, a reader returns valid content or raises
HashFormatError naming the file; nothing else escapes (no ValueError, UnicodeDecodeError,
OSError, pyarrow error, KeyError or RecursionError).

Every format (hex lines, CSV, TSV, ThreatExchange CSV, JSONL, JSON, Parquet, and the
gzip'd text formats) is mutated from a valid file: truncation, byte flips, inserted junk,
over-long lines, deep nesting, and fields of the wrong type. The default run draws a few
hundred cases; ``-m slow`` draws more than 10,000 (each read three ways: strict, lenient,
and chunked with ``min_quality``).
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hashlib_ext as hx
from hashlib_ext import formats
from hashlib_ext.errors import HashFormatError

N = 12
OUTCOMES: Counter[str] = Counter()


def _seed_list() -> formats.HashList:
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (N, 32), dtype=np.uint8)
    quals = rng.integers(0, 101, N)
    quals[3] = -1
    ids = rng.integers(-(2**40), 2**40, N)
    keys = np.array([f"dir/{i} ü,\"{i}\".jpg" if i % 4 else f"k{i}" for i in range(N)],
                    dtype=object)
    return formats.HashList(hx.HashArray(codes, "pdq", quals), ids, keys)


NAMES = ["l.txt", "l.csv", "l.tsv", "l.te.csv", "l.jsonl", "l.json", "l.parquet",
         "l.txt.gz", "l.csv.gz", "l.jsonl.gz", "l.json.gz"]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of a valid file of every format (keys and hex lines without ids)."""
    d = tmp_path_factory.mktemp("seeds")
    hl = _seed_list()
    out = {}
    for name in NAMES:
        path = d / name
        if name.startswith("l.txt"):
            keys = [k.replace(" ", "_") for k in hl.keys]
            formats.write_hash_list(path, hl.hashes, keys=keys)
        else:
            formats.write_hash_list(path, hl, format="te" if ".te." in name else None)
        out[name] = path.read_bytes()
    return out


def _fmt(name: str) -> str | None:
    return "te" if ".te." in name else None


def _check_valid(got: formats.HashList) -> None:
    from hashlib_ext.hashers import expected_bits

    n = len(got)
    width = (expected_bits(got.hashes.algorithm) or 8 * got.hashes.codes.shape[1]) // 8
    assert got.hashes.codes.dtype == np.uint8 and got.hashes.codes.shape == (n, width)
    assert 0 < width <= formats.MAX_HASH_BYTES or n == 0
    assert got.ids.dtype == np.int64 and got.ids.shape == (n,)
    if got.keys is not None:
        assert got.keys.shape == (n,)
        assert all(k is None or isinstance(k, str) for k in got.keys)
    q = got.hashes.qualities
    if q is not None:
        assert q.shape == (n,) and int(q.min(initial=0)) >= -1 and int(q.max(initial=0)) <= 100
    for line, reason in got.skipped:
        assert isinstance(line, int) and isinstance(reason, str)


def _read_all_ways(path: Path, name: str) -> None:
    """Strict, lenient, and chunked with a quality floor: only HashFormatError may escape."""
    fmt = _fmt(name)
    for kw in ({}, {"lenient": True},
               {"lenient": True, "chunk_rows": 3, "min_quality": formats.PDQ_MIN_QUALITY}):
        try:
            if "chunk_rows" in kw:
                chunks = list(formats.iter_hash_list(path, format=fmt, **kw))
                got = formats.concat_lists(chunks, "pdq")
                assert not (got.hashes.qualities is not None and
                            ((got.hashes.qualities >= 0) &
                             (got.hashes.qualities < formats.PDQ_MIN_QUALITY)).any())
            else:
                got = formats.read_hash_list(path, format=fmt, **kw)
        except HashFormatError as e:
            assert str(path) in str(e), str(e)  # the message names the file
            OUTCOMES["HashFormatError"] += 1
            continue
        _check_valid(got)
        OUTCOMES["read"] += 1


def _gz_inner(name: str, data: bytes) -> bytes:
    return gzip.decompress(data) if name.endswith(".gz") else data


def _gz_outer(name: str, data: bytes) -> bytes:
    return gzip.compress(data, mtime=0) if name.endswith(".gz") else data


# -- mutations ---------------------------------------------------------------------------

JUNK = st.one_of(
    st.binary(min_size=1, max_size=40),
    st.sampled_from([b"\x00", b"\xff\xfe", b"\r", b"\n\n", b'"', b",", b"\t", b"[", b"{",
                     b"}", b"]", b"null", b"1e999", b"-0", b"\xc3(", b"\xed\xa0\x80",
                     b'"hash":', b"PAR1", b"\x1f\x8b", "é".encode(), b"#", b" " * 30]),
)


@st.composite
def mutation(draw, size: int):
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "splice"]))
    if kind == "truncate":
        return kind, draw(st.integers(0, max(0, size - 1))), b""
    if kind == "flip":
        flips = draw(st.lists(st.tuples(st.integers(0, max(0, size - 1)), st.integers(0, 255)),
                              min_size=1, max_size=8))
        return kind, flips, b""
    if kind == "delete":
        a = draw(st.integers(0, max(0, size - 1)))
        return kind, (a, a + draw(st.integers(1, 64))), b""
    if kind == "splice":  # a copy of one part of the file pasted over another
        a, b = draw(st.integers(0, size)), draw(st.integers(0, size))
        return kind, (a, b, draw(st.integers(1, 200))), b""
    return kind, draw(st.integers(0, size)), draw(JUNK)


def _apply(data: bytes, m) -> bytes:
    kind, arg, junk = m
    if kind == "truncate":
        return data[:arg]
    if kind == "flip":
        b = bytearray(data)
        for pos, value in arg:
            if pos < len(b):
                b[pos] = value
        return bytes(b)
    if kind == "delete":
        return data[:arg[0]] + data[arg[1]:]
    if kind == "splice":
        a, b, n = arg
        return data[:b] + data[a:a + n] + data[b + n:]
    return data[:arg] + junk + data[arg:]


def _mutate_case(tmp_path: Path, seeds: dict[str, bytes], name: str, inner: bool,
                 muts: list) -> None:
    data = seeds[name]
    if inner and name.endswith(".gz"):  # mutate the text, then compress it properly
        text = _gz_inner(name, data)
        for m in muts:
            text = _apply(text, m)
        data = _gz_outer(name, text)
    else:  # mutate the bytes as stored (compressed or Parquet pages and footer)
        for m in muts:
            data = _apply(data, m)
    path = tmp_path / name
    path.write_bytes(data)
    _read_all_ways(path, name)


@st.composite
def mutation_case(draw):
    name = draw(st.sampled_from(NAMES))
    inner = draw(st.booleans())
    size = draw(st.integers(0, 8000))  # positions are folded into the file's size below
    muts = draw(st.lists(mutation(size), min_size=1, max_size=4))
    return name, inner, muts


def _fold(muts: list, size: int) -> list:
    """Scale drawn positions to the actual file size (seeds differ in size)."""
    out = []
    for kind, arg, junk in muts:
        def f(p: int) -> int:
            return p % (size + 1)
        if kind == "flip":
            arg = [(f(p), v) for p, v in arg]
        elif kind in ("delete",):
            arg = (f(arg[0]), f(arg[0]) + (arg[1] - arg[0]))
        elif kind == "splice":
            arg = (f(arg[0]), f(arg[1]), arg[2])
        else:
            arg = f(arg)
        out.append((kind, arg, junk))
    return out


def _run_mutation(tmp_path, seeds, case) -> None:
    name, inner, muts = case
    data = seeds[name]
    size = len(_gz_inner(name, data)) if inner and name.endswith(".gz") else len(data)
    _mutate_case(tmp_path, seeds, name, inner, _fold(muts, size))


@settings(max_examples=220, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(case=mutation_case())
def test_mutated_files_raise_only_hash_format_error(tmp_path, seeds, case):
    _run_mutation(tmp_path, seeds, case)


@pytest.mark.slow
@settings(max_examples=9000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(case=mutation_case())
def test_mutated_files_many(tmp_path, seeds, case):
    _run_mutation(tmp_path, seeds, case)


# -- structural attacks: huge lines, deep nesting ------------------------------------------

@st.composite
def structural_case(draw):
    name = draw(st.sampled_from([n for n in NAMES if "parquet" not in n]))
    attack = draw(st.sampled_from(["long", "long-field", "nest-array", "nest-object",
                                   "nest-in-field", "many-columns"]))
    where = draw(st.integers(0, N + 2))
    factor = draw(st.sampled_from([1, 2]))
    return name, attack, where, factor


def _structural_text(attack: str, factor: int) -> str:
    big = formats.MAX_LINE_CHARS * factor + 7
    if attack == "long":
        return "a" * big + "\n"
    if attack == "long-field":
        return "ab" * 32 + "," + "k" * big + "\n"
    if attack == "nest-array":
        return "[" * 50_000 * factor + "]" * 50_000 * factor + "\n"
    if attack == "nest-object":
        return '{"a":' * 30_000 * factor + "1" + "}" * 30_000 * factor + "\n"
    if attack == "nest-in-field":
        return '{"hash": ' + "[" * 40_000 * factor + "]" * 40_000 * factor + "}\n"
    return ",".join(["x"] * 20_000 * factor) + "\n"


def _run_structural(tmp_path, seeds, case) -> None:
    name, attack, where, factor = case
    text = _gz_inner(name, seeds[name]).decode("utf-8")
    lines = text.splitlines(keepends=True)
    insert = _structural_text(attack, factor)
    if name.startswith("l.json") and not name.startswith("l.jsonl"):
        # a JSON array: put the attack in as an item
        body = text.rstrip().rstrip("]").rstrip()
        text = body + ",\n" + insert.rstrip("\n") + "\n]\n"
    else:
        pos = where % (len(lines) + 1)
        text = "".join(lines[:pos]) + insert + "".join(lines[pos:])
    path = tmp_path / name
    path.write_bytes(_gz_outer(name, text.encode("utf-8")))
    _read_all_ways(path, name)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(case=structural_case())
def test_long_lines_and_deep_nesting_raise_only_hash_format_error(tmp_path, seeds, case):
    _run_structural(tmp_path, seeds, case)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(case=structural_case())
def test_long_lines_and_deep_nesting_many(tmp_path, seeds, case):
    _run_structural(tmp_path, seeds, case)


# -- wrong types: JSON values and Parquet columns -----------------------------------------

WRONG_JSON = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=70),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=2),
    st.sampled_from(["ab" * 32, "AB" * 32, " " + "ab" * 32, "0x" + "ab" * 31, "ab" * 16,
                     "", "-1", "101", "500", "50", "1e3", "9" * 30]),
)
FIELDS = ["hash", "id", "key", "quality", "algorithm", "path", "signal_str", "hex"]


@st.composite
def json_case(draw):
    name = draw(st.sampled_from(["l.jsonl", "l.json", "l.jsonl.gz", "l.json.gz"]))
    edits = draw(st.lists(st.tuples(st.integers(0, N - 1), st.sampled_from(FIELDS + ["-"]),
                                    WRONG_JSON), min_size=1, max_size=5))
    return name, edits


def _run_json(tmp_path, case) -> None:
    name, edits = case
    hl = _seed_list()
    records = [{"hash": h, "id": int(i), "algorithm": "pdq", "key": k, "quality": int(q)}
               for h, i, k, q in zip(hl.hashes.hex(), hl.ids, hl.keys, hl.hashes.qualities,
                                     strict=True)]
    for row, fld, value in edits:
        if fld == "-":
            records[row] = value  # the whole record replaced
        elif isinstance(records[row], dict):
            records[row][fld] = value
    if name.startswith("l.jsonl"):
        text = "".join(json.dumps(r) + "\n" for r in records)
    else:
        text = json.dumps(records)
    path = tmp_path / name
    path.write_bytes(_gz_outer(name, text.encode("utf-8")))
    _read_all_ways(path, name)


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=json_case())
def test_json_fields_of_wrong_types(tmp_path, case):
    _run_json(tmp_path, case)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=json_case())
def test_json_fields_of_wrong_types_many(tmp_path, case):
    _run_json(tmp_path, case)


def _parquet_column(kind: str, n: int, rng: np.random.Generator) -> pa.Array:
    hexes = ["ab" * 32] * n
    if kind == "fixed32":
        return pa.array([bytes(32)] * n, pa.binary(32))
    if kind == "fixed8":
        return pa.array([bytes(8)] * n, pa.binary(8))
    if kind == "hexstr":
        return pa.array(hexes, pa.string())
    if kind == "hexstr-bad":
        return pa.array([h if i % 2 else h[:-1] + "z" for i, h in enumerate(hexes)])
    if kind == "binary-mixed":
        return pa.array([bytes(32) if i % 3 else bytes(5) for i in range(n)], pa.binary())
    if kind == "large-string":
        return pa.array(hexes, pa.large_string())
    if kind == "dict-string":
        return pa.array(hexes).dictionary_encode()
    if kind == "int":
        return pa.array(rng.integers(-(2**40), 2**40, n), pa.int64())
    if kind == "uint64":
        return pa.array(rng.integers(0, 2**64 - 1, n, dtype=np.uint64), pa.uint64())
    if kind == "int8":
        return pa.array(rng.integers(-128, 128, n), pa.int8())
    if kind == "float":
        return pa.array(rng.random(n) * 200 - 50)
    if kind == "bool":
        return pa.array(rng.random(n) < 0.5)
    if kind == "nulls":
        return pa.array([None] * n, pa.null())
    if kind == "some-nulls":
        return pa.array([None if i % 3 == 0 else int(i * 17) for i in range(n)], pa.int32())
    if kind == "string":
        return pa.array([None if i % 4 == 0 else f"s{i}" for i in range(n)], pa.string())
    if kind == "list":
        return pa.array([[1, 2]] * n)
    if kind == "struct":
        return pa.array([{"a": 1}] * n)
    if kind == "timestamp":
        return pa.array(np.arange(n).astype("datetime64[s]"))
    raise AssertionError(kind)


COLUMN_KINDS = ["fixed32", "fixed8", "hexstr", "hexstr-bad", "binary-mixed", "large-string",
                "dict-string", "int", "uint64", "int8", "float", "bool", "nulls",
                "some-nulls", "string", "list", "struct", "timestamp"]


@st.composite
def parquet_case(draw):
    cols = {"hash": draw(st.sampled_from(COLUMN_KINDS))}
    for name in ("id", "key", "quality"):
        if draw(st.booleans()):
            cols[name] = draw(st.sampled_from(COLUMN_KINDS))
    meta = draw(st.sampled_from([None, b"pdq", b"dhash", b"", b"\xff\xfe", b"x" * 500,
                                 b"pdq;rm -rf"]))
    rows = draw(st.integers(0, 30))
    return cols, meta, rows, draw(st.integers(0, 2**32 - 1))


def _run_parquet(tmp_path, case) -> None:
    cols, meta, rows, seed = case
    rng = np.random.default_rng(seed)
    table = pa.table({name: _parquet_column(kind, rows, rng) for name, kind in cols.items()})
    if meta is not None:
        table = table.replace_schema_metadata({b"hashlib_ext.algorithm": meta})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=max(1, rows // 3 or 1))
    _read_all_ways(path, "t.parquet")


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=parquet_case())
def test_parquet_columns_of_wrong_types(tmp_path, case):
    _run_parquet(tmp_path, case)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=parquet_case())
def test_parquet_columns_of_wrong_types_many(tmp_path, case):
    _run_parquet(tmp_path, case)


@pytest.fixture(scope="module", autouse=True)
def _summary():
    yield
    if OUTCOMES:  # visible with -s: how the fuzzed reads ended
        print(f"\nfuzzed reads: {sum(OUTCOMES.values())} "
              f"({OUTCOMES['read']} read, {OUTCOMES['HashFormatError']} HashFormatError, "
              "0 other exceptions)")


def test_seeds_themselves_read_back(seeds, tmp_path):
    hl = _seed_list()
    for name, data in seeds.items():
        path = tmp_path / name
        path.write_bytes(data)
        got = formats.read_hash_list(path, format=_fmt(name))
        assert got.hashes == hl.hashes or np.array_equal(got.hashes.codes, hl.hashes.codes)
        np.testing.assert_array_equal(got.ids, hl.ids if not name.startswith("l.txt")
                                      else np.arange(N))
