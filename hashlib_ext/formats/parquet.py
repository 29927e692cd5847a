"""Parquet hash lists, read and written with pyarrow (imported only here, lazily)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import HashFormatError
from ..hash import HashArray
from .common import (
    HASH_NAMES,
    ID_NAMES,
    KEY_NAMES,
    MAX_HASH_BYTES,
    MAX_LINE_CHARS,
    MAX_PARQUET_COLUMN_CHUNK,
    MAX_PARQUET_ROWS,
    PARQUET_META,
    QUALITY_NAMES,
    HashList,
    check_algorithm_name,
    key_texts,
    open_binary,
    short_text,
)
from .decode import Decoder, make_list
from .text import find_column


class ParquetList:
    """An open Parquet hash list: its schema checked, its footer's sizes bounded."""

    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.path = path
        self.file = open_binary(path)
        try:
            self.pf = pq.ParquetFile(self.file)
            self.schema = self.pf.schema_arrow
            md = self.pf.metadata
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                if not 0 <= rg.num_rows <= MAX_PARQUET_ROWS:
                    raise HashFormatError(f"{path}: row group {g} declares {rg.num_rows} rows")
                for c in range(rg.num_columns):
                    size = rg.column(c).total_uncompressed_size
                    if not 0 <= size <= MAX_PARQUET_COLUMN_CHUNK:
                        raise HashFormatError(
                            f"{path}: row group {g} declares a column chunk of {size} bytes "
                            f"(more than {MAX_PARQUET_COLUMN_CHUNK})")
            meta = self.schema.metadata or {}
            raw = meta.get(PARQUET_META)
        except HashFormatError:
            self.close()
            raise
        except Exception as e:  # noqa: BLE001 - every pyarrow failure is a bad file here
            self.close()
            raise HashFormatError(f"{path}: not a readable Parquet file "
                                  f"({short_text(e)})") from None
        self.algorithm = None
        if raw:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            self.algorithm = check_algorithm_name(text, path, "the Parquet metadata")

    def close(self) -> None:
        self.file.close()


def iter_parquet(pqf: ParquetList, dec: Decoder, chunk: int, hash_column: str | int | None,
                  id_column: str | int | None, key_column: str | int | None
                  ) -> Iterator[HashList]:
    import pyarrow as pa

    path = pqf.path
    names = pqf.schema.names
    h = find_column(names, hash_column, (*HASH_NAMES, dec.algorithm), "hash", path, required=True)
    i = find_column(names, id_column, ID_NAMES, "id", path)
    k = find_column(names, key_column, KEY_NAMES, "key", path)
    q = find_column(names, None, QUALITY_NAMES, "quality", path)
    chosen = [c for c in (h, i, k, q) if c is not None]
    for c in chosen:
        if names.count(names[c]) > 1:
            raise HashFormatError(f"{path}: column {names[c][:40]!r} appears more than once")
    types = {c: value_type(pqf.schema.field(c).type) for c in chosen}  # type: ignore[call-overload]
    ht = types[h]  # type: ignore[index]
    if pa.types.is_fixed_size_binary(ht):
        if ht.byte_width > MAX_HASH_BYTES:
            raise HashFormatError(f"{path}: hash column is {ht.byte_width} bytes wide "
                                  f"(at most {MAX_HASH_BYTES})")
    elif not (pa.types.is_binary(ht) or pa.types.is_large_binary(ht) or pa.types.is_string(ht)
              or pa.types.is_large_string(ht)):
        raise HashFormatError(f"{path}: hash column has type {ht}; expected fixed-size "
                              "binary, binary or hex strings")
    if i is not None and not (pa.types.is_integer(types[i]) or pa.types.is_null(types[i])):
        raise HashFormatError(f"{path}: id column has type {types[i]}, expected int64")
    if q is not None and not (pa.types.is_integer(types[q]) or pa.types.is_null(types[q])):
        raise HashFormatError(f"{path}: quality column has type {types[q]}, expected integers "
                              "0..100")
    if k is not None:
        kt = types[k]
        if not (pa.types.is_string(kt) or pa.types.is_large_string(kt) or pa.types.is_integer(kt)
                or pa.types.is_null(kt)):
            raise HashFormatError(f"{path}: key column has type {kt}, expected strings")
    columns = [names[c] for c in chosen]
    row0 = 0
    batches = pqf.pf.iter_batches(batch_size=chunk, columns=columns)
    while True:
        dec.line = row0 + 1
        try:
            batch = next(batches)
        except StopIteration:
            break
        n = batch.num_rows
        rows_no = np.arange(row0 + 1, row0 + n + 1)
        bad: list[tuple[int, str]] = []
        ok = np.ones(n, bool)
        codes = parquet_codes(decoded(batch.column(0)), dec, rows_no, ok, bad)
        pos = 1
        ids = np.arange(row0, row0 + n, dtype=np.int64)
        if i is not None:
            ids = parquet_ints(decoded(batch.column(pos)), rows_no, ok, bad, "id", None,
                                null_ok=False)
            pos += 1
        keys = None
        if k is not None:
            keys = parquet_keys(decoded(batch.column(pos)), rows_no, ok, bad)
            pos += 1
        quals = None
        if q is not None:
            quals = parquet_ints(decoded(batch.column(pos)), rows_no, ok, bad, "quality",
                                  (0, 100), null_ok=True).astype(np.int16)
        bad.sort()
        dec.fail(bad)
        row0 += n
        sel = np.flatnonzero(ok)
        yield make_list(codes[sel], dec.algorithm, ids[sel],
                         None if keys is None else keys[sel],
                         None if quals is None else quals[sel])
    dec.records = row0


def value_type(t: Any) -> Any:
    """The type of the values of a (possibly dictionary-encoded) column."""
    import pyarrow as pa

    return t.value_type if pa.types.is_dictionary(t) else t


def decoded(col: Any) -> Any:
    import pyarrow as pa

    return col.dictionary_decode() if pa.types.is_dictionary(col.type) else col


def parquet_ints(col: Any, rows_no: np.ndarray, ok: np.ndarray, bad: list[tuple[int, str]],
                  what: str, valid: tuple[int, int] | None, null_ok: bool) -> np.ndarray:
    """An integer column as int64 (nulls: -1 if ``null_ok``, else bad rows); values that do
    not fit in int64 or lie outside ``valid`` are bad rows."""
    import pyarrow as pa

    n = len(col)
    if pa.types.is_null(col.type):
        nulls = np.ones(n, bool)
        values = np.zeros(n, np.int64)
    else:
        nulls = col.is_null().to_numpy(zero_copy_only=False) if col.null_count \
            else np.zeros(n, bool)
        raw = col.fill_null(0).to_numpy(zero_copy_only=False)
        big = raw > np.iinfo(np.int64).max if raw.dtype == np.uint64 else np.zeros(n, bool)
        values = np.where(big, 0, raw).astype(np.int64)
        for r in np.flatnonzero(big & ok):
            bad.append((int(rows_no[r]), f"{what} {int(raw[r])} does not fit in int64"))
        ok &= ~big
    if null_ok:
        values[nulls] = -1
    else:
        for r in np.flatnonzero(nulls & ok):
            bad.append((int(rows_no[r]), f"{what} is null"))
        ok &= ~nulls
    if valid is not None:
        out = ~nulls & ((values < valid[0]) | (values > valid[1]))
        for r in np.flatnonzero(out & ok):
            bad.append((int(rows_no[r]), f"{what} {int(values[r])} is outside "
                        f"{valid[0]}..{valid[1]}"))
        ok &= ~out
    return values


def parquet_keys(col: Any, rows_no: np.ndarray, ok: np.ndarray,
                  bad: list[tuple[int, str]]) -> np.ndarray:
    """Keys as an object array: str, or None for a NULL key; over-long keys are bad rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(col)
    keys = np.full(n, None, dtype=object)
    if pa.types.is_null(col.type):
        return keys
    if pa.types.is_integer(col.type):
        col = col.cast(pa.string())
    lengths = pc.utf8_length(col).fill_null(0).to_numpy(zero_copy_only=False)
    long = lengths > MAX_LINE_CHARS
    for r in np.flatnonzero(long & ok):
        bad.append((int(rows_no[r]), f"key longer than {MAX_LINE_CHARS} characters"))
    ok &= ~long
    if long.any():
        col = pc.if_else(pa.array(long), pa.scalar(None, col.type), col)
    keys[:] = col.to_pylist()
    return keys


def parquet_codes(col: Any, dec: Decoder, rows_no: np.ndarray, ok: np.ndarray,
                   bad: list[tuple[int, str]]) -> np.ndarray:
    """``(n, nbytes)`` codes of one Parquet column chunk; clears ``ok`` for bad rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(col)
    t = col.type
    nulls = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else np.zeros(n, bool)
    if pa.types.is_fixed_size_binary(t):
        w = t.byte_width
        if dec.nbytes is None:
            dec.nbytes = w
        if w != dec.nbytes:
            bad.extend((int(r), f"hash has {w} bytes, expected {dec.nbytes} ({8 * dec.nbytes} "
                        "bits)") for r in rows_no)
            ok[:] = False
            return np.zeros((n, dec.nbytes), np.uint8)
        buf = col.buffers()[1]
        if buf is None or buf.size < (col.offset + n) * w:
            raise HashFormatError(f"{dec.path}, rows {rows_no[0]}..{rows_no[-1]}: the hash "
                                  "column's data is shorter than its rows")
        codes = np.frombuffer(buf, np.uint8)[col.offset * w:(col.offset + n) * w]
        codes = codes.reshape(n, w)
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        lengths = pc.binary_length(col).fill_null(0).to_numpy(zero_copy_only=False)
        if dec.nbytes is None:
            first = np.flatnonzero((lengths > 0) & (lengths <= MAX_HASH_BYTES))
            dec.nbytes = int(lengths[first[0]]) if first.size else None
        w = dec.nbytes or 0
        codes = np.zeros((n, w), np.uint8)
        for r in np.flatnonzero((lengths != w) & ~nulls):
            ok[r] = False
            bad.append((int(rows_no[r]), f"hash has {int(lengths[r])} bytes, expected {w}"))
        good = np.flatnonzero(ok & ~nulls)
        if good.size and w:
            values = col.take(pa.array(good)).to_pylist()
            codes[good] = np.frombuffer(b"".join(values), np.uint8).reshape(-1, w)
    else:  # strings (the type was checked up front)
        lengths = pc.utf8_length(col).fill_null(0).to_numpy(zero_copy_only=False)
        long = (lengths > 2 * MAX_HASH_BYTES + 64) & ~nulls
        for r in np.flatnonzero(long):
            ok[r] = False
            bad.append((int(rows_no[r]), f"hash has {int(lengths[r])} characters"))
        keep = np.flatnonzero(~nulls & ~long)
        values = col.take(pa.array(keep)).to_pylist() if keep.size else []
        good, good_mask = dec.hex_codes([int(rows_no[r]) for r in keep],
                                        [v.strip() for v in values], bad)
        codes = np.zeros((n, dec.nbytes or 0), np.uint8)
        codes[keep[good_mask]] = good
        ok[keep[~good_mask]] = False
    for r in np.flatnonzero(nulls):
        bad.append((int(rows_no[r]), "hash is null"))
    ok &= ~nulls
    return codes


def write_parquet(path: Path, hashes: HashArray, ids: np.ndarray, keys: Any,
                   quals: np.ndarray | None, chunk_rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    nbytes = hashes.codes.shape[1]
    fields = [pa.field("hash", pa.binary(nbytes), nullable=False),
              pa.field("id", pa.int64(), nullable=False)]
    if keys is not None:
        fields.append(pa.field("key", pa.string()))
    if quals is not None:
        fields.append(pa.field("quality", pa.int16()))
    schema = pa.schema(fields, metadata={PARQUET_META: hashes.algorithm.encode(),
                                         b"hashlib_ext.bits": str(hashes.bits).encode()})
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        n = len(hashes)
        for start in range(0, n, chunk_rows) if n else ():
            stop = min(n, start + chunk_rows)
            flat = pa.py_buffer(np.ascontiguousarray(hashes.codes[start:stop]).tobytes())
            arrays = [pa.FixedSizeBinaryArray.from_buffers(pa.binary(nbytes), stop - start,
                                                           [None, flat]),
                      pa.array(ids[start:stop], pa.int64())]
            if keys is not None:
                arrays.append(pa.array(key_texts(path, keys[start:stop]), pa.string()))
            if quals is not None:
                q = quals[start:stop]
                arrays.append(pa.array(q, pa.int16(), mask=q < 0))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        if n == 0:
            writer.write_table(schema.empty_table())
