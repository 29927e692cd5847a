"""Rows of the text formats (CSV/TSV, ThreatExchange CSV, JSON lines, a JSON array, hex
lines) for :class:`~hashlib_ext.formats.write.HashListWriter`."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from ..errors import HashFormatError
from .common import PDQ_MIN_QUALITY, TE_COLUMNS, HashList, key_texts
from .metadata import MAX_METADATA_CHARS

if TYPE_CHECKING:
    from .write import Layout

ROLES = {"hash": "hash", "hex": "hash", "signal_str": "hash", "id": "id",
         "algorithm": "algorithm", "key": "key", "path": "key", "quality": "quality",
         "quality_ok": "quality_ok"}
"""Column names a layout may name, and what each holds."""

_OPTIONAL = ("quality", "quality_ok")  # JSON fields left out where unknown (default layout)
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_metadata_values(shown: str, metadata: Mapping[str, np.ndarray]) -> None:
    """Metadata to be written: str or None, none longer than a reader accepts."""
    for name, col in metadata.items():
        for v in col.tolist():
            if v is None:
                continue
            if not isinstance(v, str):
                raise HashFormatError(f"{shown}: metadata column {name!r}: values must be str "
                                      f"or None, got {type(v).__name__}")
            if len(v) > MAX_METADATA_CHARS:
                raise HashFormatError(f"{shown}: metadata column {name!r}: a value of {len(v)} "
                                      f"characters (at most {MAX_METADATA_CHARS} are read back)")


def hex_rows(codes: np.ndarray) -> list[str]:
    """The hex text of every row of ``codes``."""
    width = 2 * codes.shape[1]
    text = codes.tobytes().hex()
    return [text[i:i + width] for i in range(0, len(text), width)]


def json_escape(text: str) -> str:
    """JSON text with lone surrogates (undecodable bytes of file names) as ``\\udcXY``
    escapes, so it is valid UTF-8 and loads back to the same ``str``."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class TextRows:
    """Writes the header, rows and trailer of one text-format list."""

    def __init__(self, f: IO[str], fmt: str, shown: str, layout: Layout):
        self.f, self.fmt, self.shown, self.layout = f, fmt, shown, layout
        self.records = 0
        self.names, self.sources = self._columns()
        self.explicit = layout.columns is not None

    def _columns(self) -> tuple[list[str], list[str]]:
        """Output column names and what each holds (a role, ``meta:NAME`` or ``empty``)."""
        lay = self.layout
        meta = list(lay.metadata)
        if lay.columns is not None:
            return list(lay.columns), [ROLES.get(c, f"meta:{c}") if c not in meta else
                                       f"meta:{c}" for c in lay.columns]
        if self.fmt == "hex":
            return ["hash"] + (["key"] if lay.keys else []), \
                ["hash"] + (["key"] if lay.keys else [])
        if self.fmt == "te":
            names = list(TE_COLUMNS)
            sources = ["algorithm", "hash"] + [f"meta:{c}" if c in meta else "empty"
                                                for c in TE_COLUMNS[2:]]
            rest = [c for c in meta if c not in TE_COLUMNS]
            extra = (["id"] if lay.ids else []) + (["key"] if lay.keys else [])
            return names + extra + rest, sources + extra + [f"meta:{c}" for c in rest]
        names = ["hash"] + (["id"] if lay.ids else []) + ["algorithm"] + \
            (["key"] if lay.keys else []) + \
            (["quality", "quality_ok"] if lay.qualities else []) + meta
        sources = names[:len(names) - len(meta)] + [f"meta:{c}" for c in meta]
        return names, sources

    def header(self) -> None:
        if self.fmt in ("csv", "tsv", "te"):
            self._csv(False).writerow(self.names)

    def _csv(self, quote_all: bool) -> Any:
        return csv.writer(self.f, delimiter="\t" if self.fmt == "tsv" else ",",
                          lineterminator="\n",
                          quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)

    def _cells(self, part: HashList) -> list[list[Any]]:
        """One list per output column, None where a value is unknown."""
        n = len(part)
        texts = hex_rows(part.hashes.codes)
        q = part.hashes.qualities
        quals = None if q is None else q.tolist()
        out: list[list[Any]] = []
        for src in self.sources:
            if src == "hash":
                out.append(texts)
            elif src == "id":
                out.append(part.ids.tolist())
            elif src == "algorithm":
                out.append([part.hashes.algorithm] * n)
            elif src == "key":
                out.append([None] * n if part.keys is None else
                           key_texts(self.shown, part.keys))
            elif src == "quality":
                out.append([None] * n if quals is None else
                           [v if v >= 0 else None for v in quals])
            elif src == "quality_ok":
                out.append([None] * n if quals is None else
                           [v >= PDQ_MIN_QUALITY if v >= 0 else None for v in quals])
            elif src.startswith("meta:") and src[5:] in part.metadata:
                out.append(part.metadata[src[5:]].tolist())
            else:
                out.append([None] * n)
        return out

    def write(self, parts: Sequence[HashList], start: int) -> None:
        """Rows of ``parts`` (same length), interleaved: row i of each part in turn."""
        if self.fmt == "hex":
            for p in parts:
                self._hex(p)
            self.records += sum(len(p) for p in parts)
            return
        per_part = [self._cells(p) for p in parts]
        if self.fmt in ("json", "jsonl"):
            texts = [self._json_rows(cells) for cells in per_part]
            rows = [r for group in zip(*texts, strict=True) for r in group]
            sep = ",\n" if self.fmt == "json" else "\n"
            body = sep.join(rows)
            if self.fmt == "json":
                body = ("[\n" if self.records == 0 else ",\n") + body
            else:
                body += "\n"
            self.f.write(json_escape(body))
        else:
            tables = [list(zip(*(_csv_cells(c) for c in cells), strict=True))
                      for cells in per_part]
            rows = [r for group in zip(*tables, strict=True) for r in group]
            # Python's csv quotes only line-terminator characters, so a lone "\r" in a text
            # field would end the row on reading: quote every field of such a chunk.
            lone_cr = any("\r" in v for cells in per_part for i, col in enumerate(cells)
                          if self.sources[i] == "key" or self.sources[i].startswith("meta:")
                          for v in col if isinstance(v, str))
            self._csv(lone_cr).writerows(rows)
        self.records += sum(len(p) for p in parts)

    def _json_rows(self, cells: list[list[Any]]) -> list[str]:
        names, n = self.names, len(cells[0]) if cells else 0
        # Unknown qualities are left out; a metadata value's None is written as null, so
        # every column keeps its place (and a column of Nones its existence).
        omit = [not self.explicit and s in _OPTIONAL for s in self.sources]
        rows = []
        for i in range(n):
            obj = {}
            for j, name in enumerate(names):
                v = cells[j][i]
                if v is None and omit[j]:
                    continue
                obj[name] = v
            rows.append(json.dumps(obj, ensure_ascii=False))
        return rows

    def _hex(self, part: HashList) -> None:
        texts = hex_rows(part.hashes.codes)
        if part.keys is None or not self.layout.keys:
            self.f.write("".join(t + "\n" for t in texts))
            return
        keys = ["" if k is None else k for k in key_texts(self.shown, part.keys)]
        for k in keys:
            if "\n" in k or "\r" in k or k != k.strip():
                raise HashFormatError(f"{self.shown}: key {k[:80]!r} has a line break or "
                                      "surrounding space, which hex lines cannot hold; use "
                                      "csv or jsonl")
        self.f.write("".join(f"{t} {k}\n" if k else f"{t}\n"
                             for t, k in zip(texts, keys, strict=True)))

    def trailer(self) -> None:
        if self.fmt == "json":
            self.f.write("\n]\n" if self.records else "[]\n")


def _csv_cells(col: list[Any]) -> list[Any]:
    """CSV has no NULL: None is an empty cell; flags are true/false."""
    return ["" if v is None else ("true" if v else "false") if isinstance(v, bool) else v
            for v in col]
