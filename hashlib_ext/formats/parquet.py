"""Reading Parquet hash lists with pyarrow, imported lazily (only when a Parquet file is
read or written): without it, :class:`MissingDependencyError` names the ``parquet`` extra."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HashFormatError, MissingDependencyError
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
    open_binary,
    short_text,
)
from .decode import Decoder, make_list
from .metadata import MAX_METADATA_CHARS, select_columns, take
from .text import find_column

PARQUET_EXTRA = "pip install 'hashlib-ext[parquet]'"


def require_pyarrow() -> None:
    """Raise :class:`MissingDependencyError` naming the ``parquet`` extra when pyarrow (or
    its Parquet module) cannot be imported."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.compute  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            f"Parquet hash lists need pyarrow, which is not installed ({e}): "
            f"{PARQUET_EXTRA}") from None


class ParquetList:
    """An open Parquet hash list: its schema checked, its footer's sizes bounded."""

    def __init__(self, path: Path):
        require_pyarrow()
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
    """The row batches of a Parquet hash list as HashList chunks (``chunk`` rows each)."""
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
    meta_cols = parquet_metadata_columns(pqf, set(chosen), dec.metadata)
    columns = [names[c] for c in chosen] + [name for _, name in meta_cols]
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
            pos += 1
        meta = {}
        for _, name in meta_cols:
            meta[name] = parquet_metadata(decoded(batch.column(pos)), name, rows_no, ok, bad)
            pos += 1
        bad.sort()
        dec.fail(bad)
        row0 += n
        sel = np.flatnonzero(ok)
        chunk_list = make_list(codes[sel], dec.algorithm, ids[sel],
                               None if keys is None else keys[sel],
                               None if quals is None else quals[sel], take(meta, sel))
        chunk_list.has_ids = i is not None
        yield chunk_list
    dec.records = row0


def metadata_type_ok(t: Any) -> bool:
    """Whether a column of type ``t`` can be metadata: text, or scalars with a text form
    (numbers, booleans, dates, times, decimals); not binary or nested columns."""
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
                or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_null(t)
                or pa.types.is_temporal(t) or pa.types.is_decimal(t))


def parquet_metadata_columns(pqf: ParquetList, taken: set[int],
                             request: bool | tuple[str, ...]) -> list[tuple[int, str]]:
    """The metadata columns of a Parquet list (see :func:`metadata.select_columns`); with
    ``request`` True, columns of binary or nested types are not metadata, a column asked for
    by name must have a usable type."""
    names = pqf.schema.names
    out = []
    for i, name in select_columns(pqf.path, names, taken, request):
        if names[i] != name:  # surrounding white space: not a name a reader can ask for
            continue
        t = value_type(pqf.schema.field(i).type)
        if metadata_type_ok(t):
            out.append((i, name))
        elif request is not True:
            raise HashFormatError(f"{pqf.path}: metadata column {name[:40]!r} has type {t}, "
                                  "expected strings or scalars")
    return out


def parquet_metadata(col: Any, name: str, rows_no: np.ndarray, ok: np.ndarray,
                     bad: list[tuple[int, str]]) -> np.ndarray:
    """One metadata column as an object array of str or None; values longer than
    :data:`MAX_METADATA_CHARS` make their rows bad."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(col)
    if pa.types.is_null(col.type):
        return np.full(n, None, dtype=object)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    lengths = pc.utf8_length(col).fill_null(0).to_numpy(zero_copy_only=False)
    long = lengths > MAX_METADATA_CHARS
    for r in np.flatnonzero(long & ok):
        bad.append((int(rows_no[r]), f"{name[:40]!r}: metadata value longer than "
                    f"{MAX_METADATA_CHARS} characters"))
    ok &= ~long
    if long.any():
        col = pc.if_else(pa.array(long), pa.scalar(None, col.type), col)
    out = np.empty(n, dtype=object)
    out[:] = col.to_pylist()
    return out


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
