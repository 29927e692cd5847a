"""Readers of the line-based formats: hex lines, CSV/TSV (ThreatExchange CSV included) and
JSON lines. Each yields :class:`HashList` chunks."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import HashFormatError
from .common import (
    HASH_NAMES,
    ID_NAMES,
    KEY_NAMES,
    MAX_LINE_CHARS,
    QUALITY_NAMES,
    TE_COLUMNS,
    HashList,
)
from .decode import TOO_LONG, Decoder, Rows, bounded_lines
from .metadata import (
    MAX_METADATA_CHARS,
    MAX_METADATA_COLUMNS,
    name_ok,
    select_columns,
    text_value,
    wanted,
)


def iter_hex(f: IO[str], dec: Decoder, chunk: int) -> Iterator[HashList]:
    rows = Rows()
    for line_no, line in bounded_lines(f, dec):
        if line is None:
            dec.records += 1
            rows.bad.append((line_no, TOO_LONG))
        else:
            text = line.strip()
            if not text or text[0] == "#":
                continue
            parts = text.split(None, 1)
            rows.add(dec, line_no, parts[0], key=parts[1] if len(parts) > 1 else None)
        if len(rows) >= chunk:
            yield rows.finish(dec)
            rows = Rows()
    if len(rows):
        yield rows.finish(dec)


def find_column(header: list[str], wanted: str | int | None, names: Sequence[str], what: str,
                path: Path, required: bool = False) -> int | None:
    """Index of a column: ``wanted`` (name or 0-based index) or the first of ``names``."""
    if isinstance(wanted, bool):
        raise HashFormatError(f"{path}: {what} column must be a name or an index, got "
                              f"{wanted!r}")
    if isinstance(wanted, int):
        if (header and not 0 <= wanted < len(header)) or wanted < 0 \
                or wanted >= MAX_LINE_CHARS:
            raise HashFormatError(f"{path}: {what} column {wanted} is out of range")
        return wanted
    lower = [h.strip().lower() for h in header]
    for name in [wanted] if wanted is not None else names:
        if name.lower() in lower:
            return lower.index(name.lower())
    if wanted is not None or required:
        shown = [h[:40] for h in header[:12]]
        raise HashFormatError(
            f"{path}: no {what} column {wanted or names[0]!r} in header {shown}"
        )
    return None


def iter_csv(f: IO[str], dec: Decoder, chunk: int, delimiter: str, te: bool,
             header: bool | None, hash_column: str | int | None, id_column: str | int | None,
             key_column: str | int | None) -> Iterator[HashList]:
    too_long: list[int] = []

    def source() -> Iterator[str]:
        for line_no, line in bounded_lines(f, dec):
            if line is None:  # lenient: an empty row stands in for it, recorded below
                too_long.append(line_no)
                yield "\n"
            else:
                yield line

    reader = csv.reader(source(), delimiter=delimiter)
    first: list[str] | None = None
    for first in reader:
        if too_long:
            raise HashFormatError(f"{dec.path}, line {too_long[0]}: {TOO_LONG} (before the "
                                  "first row)")
        if any(c.strip() for c in first):
            break
    else:
        return
    names = [c.strip().lower() for c in first]
    if header is None:
        given = {str(c).lower() for c in (hash_column, id_column, key_column)
                 if isinstance(c, str)}
        known = set(HASH_NAMES) | set(ID_NAMES) | set(KEY_NAMES) | set(QUALITY_NAMES) \
            | set(TE_COLUMNS) | {dec.algorithm.lower()} | given
        header = any(n in known for n in names)
    if names[:2] == ["signal_type", "signal_str"] and header:
        te = True
    if te and not header:
        raise HashFormatError(f"{dec.path}: ThreatExchange CSV needs its header row "
                              f"({','.join(TE_COLUMNS)})")
    cols = first if header else []
    hash_names = ("signal_str",) if te else (*HASH_NAMES, dec.algorithm, f"{dec.algorithm}_hash")
    h_col = find_column(cols, hash_column, hash_names, "hash", dec.path, required=bool(header))
    h_col = 0 if h_col is None else h_col
    i_col = find_column(cols, id_column, ID_NAMES, "id", dec.path) \
        if cols or id_column is not None else None
    k_col = find_column(cols, key_column, KEY_NAMES, "key", dec.path) \
        if cols or key_column is not None else None
    q_col = find_column(cols, None, QUALITY_NAMES, "quality", dec.path) if cols else None
    t_col = find_column(cols, None, ("signal_type",) if te else ("algorithm",), "algorithm",
                        dec.path) if cols else None
    need = max(c for c in (h_col, i_col, k_col, q_col, t_col) if c is not None) + 1
    taken = {c for c in (h_col, i_col, k_col, q_col, t_col) if c is not None}
    meta_cols = select_columns(dec.path, cols, taken, dec.metadata) if cols else []
    algo = dec.algorithm.lower()

    def records() -> Iterator[tuple[int, list[str]]]:
        if not header:
            yield reader.line_num, first
        for row in reader:
            yield reader.line_num, row

    rows = Rows()
    for line_no, row in records():
        while too_long:
            dec.records += 1
            rows.bad.append((too_long.pop(0), TOO_LONG))
        if not row or (len(row) == 1 and not row[0].strip()):
            pass
        elif t_col is not None and len(row) > t_col and row[t_col].strip() \
                and row[t_col].strip().lower() != algo:
            dec.ignored += 1
        elif len(row) < need:
            dec.records += 1
            rows.bad.append((line_no, f"row has {len(row)} fields, expected at least {need}"))
        else:
            meta = csv_metadata(row, meta_cols) if meta_cols else None
            if isinstance(meta, str):
                dec.records += 1
                rows.bad.append((line_no, meta))
            else:
                rows.add(dec, line_no, row[h_col].strip(),
                         None if i_col is None else row[i_col],
                         None if k_col is None else row[k_col],
                         None if q_col is None else row[q_col].strip(), meta)
        if len(rows) >= chunk:
            yield rows.finish(dec)
            rows = Rows()
    while too_long:
        dec.records += 1
        rows.bad.append((too_long.pop(0), TOO_LONG))
    if len(rows):
        yield rows.finish(dec)


def csv_metadata(row: list[str], columns: list[tuple[int, str]]
                 ) -> dict[str, str | None] | str:
    """The metadata values of one CSV row (an empty or missing cell: None), or the reason
    the row is malformed."""
    meta: dict[str, str | None] = {}
    for i, name in columns:
        value = row[i] if i < len(row) and row[i] != "" else None
        if value is not None and len(value) > MAX_METADATA_CHARS:
            return f"{name[:40]!r}: metadata value longer than {MAX_METADATA_CHARS} characters"
        meta[name] = value
    return meta


def json_metadata(obj: dict[str, Any], dec: Decoder) -> dict[str, str | None] | str:
    """The metadata fields of one JSON record (those not read as hash, id, key, quality or
    algorithm), or the reason the record is malformed."""
    meta: dict[str, str | None] = {}
    for name, value in obj.items():
        if not wanted(name, dec.metadata) or name.lower() == dec.algorithm.lower():
            continue
        if name not in dec.meta_names:
            if not name_ok(name):
                return f"field {name[:40]!r} is not a usable metadata name"
            if len(dec.meta_names) >= MAX_METADATA_COLUMNS:
                return f"more than {MAX_METADATA_COLUMNS} metadata fields in the file"
            dec.meta_names.add(name)
        text, err = text_value(value)
        if err is not None:
            return f"{name[:40]!r}: {err}"
        meta[name] = text
    return meta


def first_field(obj: dict[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    return None


def add_object(rows: Rows, dec: Decoder, line_no: int, obj: Any) -> None:
    """One JSON record: an object with a hash string and optional id, key, quality."""
    if not isinstance(obj, dict):
        dec.records += 1
        rows.bad.append((line_no, f"expected a JSON object, got {type(obj).__name__}"))
        return
    obj_algo = obj.get("algorithm", obj.get("signal_type"))
    if obj_algo is not None and str(obj_algo).lower() != dec.algorithm.lower():
        dec.ignored += 1
        return
    text = first_field(obj, (*HASH_NAMES, dec.algorithm))
    if not isinstance(text, str):
        dec.records += 1
        rows.bad.append((line_no, "no hash string ('hash' field)" if text is None
                         else f"hash is a {type(text).__name__}, expected a hex string"))
        return
    key = first_field(obj, KEY_NAMES)
    if key is not None and not isinstance(key, str):
        if isinstance(key, (dict, list)):
            dec.records += 1
            rows.bad.append((line_no, f"key is a JSON {type(key).__name__}, expected a string"))
            return
        key = json.dumps(key)  # a number or boolean: its JSON text
    meta = json_metadata(obj, dec) if dec.metadata is not False else None
    if isinstance(meta, str):
        dec.records += 1
        rows.bad.append((line_no, meta))
        return
    rows.add(dec, line_no, text.strip(), obj.get("id"), key, obj.get("quality"), meta)


def json_reason(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "JSON nested too deeply"
    return f"invalid JSON ({getattr(e, 'msg', None) or e})"


def iter_jsonl(f: IO[str], dec: Decoder, chunk: int) -> Iterator[HashList]:
    dec.json = True
    rows = Rows()
    for line_no, line in bounded_lines(f, dec):
        if line is None:
            dec.records += 1
            rows.bad.append((line_no, TOO_LONG))
        elif not line.strip():
            continue
        else:
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as e:
                dec.records += 1
                rows.bad.append((line_no, json_reason(e)))
            else:
                add_object(rows, dec, line_no, obj)
        if len(rows) >= chunk:
            yield rows.finish(dec)
            rows = Rows()
    if len(rows):
        yield rows.finish(dec)
