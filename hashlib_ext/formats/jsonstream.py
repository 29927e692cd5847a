"""Reading one JSON document (an array of hash objects) item by item, in bounded memory."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import IO, Any

from ..errors import HashFormatError
from .common import MAX_LINE_CHARS, HashList
from .decode import Decoder, Rows
from .text import add_object, json_reason

JSON_SPACE = re.compile(r"[ \t\n\r]*")

JSON_BLOCK = 1 << 16


class JsonStream:
    """Reads one JSON document value by value, holding at most one item (bounded by
    :data:`MAX_LINE_CHARS`) plus a block: arrays are iterated without loading them whole."""

    def __init__(self, f: IO[str], dec: Decoder):
        self.f, self.dec = f, dec
        self.buf, self.pos, self.eof = "", 0, False
        self.decoder = json.JSONDecoder()

    def _more(self) -> bool:
        if self.eof:
            return False
        data = self.f.read(JSON_BLOCK)
        if not data:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + data
        self.pos = 0
        return True

    def fail(self, what: str) -> HashFormatError:
        where = f", item {self.dec.line}" if self.dec.line else ""
        return HashFormatError(f"{self.dec.path}{where}: {what}")

    def peek(self) -> str:
        """The next non-blank character ("" at the end)."""
        while True:
            self.pos = JSON_SPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def take(self, ch: str, what: str) -> None:
        got = self.peek()
        if got != ch:
            shown = "the end of the file" if not got else repr(got)
            raise self.fail(f"invalid JSON: expected {what}, found {shown}")
        self.pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except (ValueError, RecursionError) as e:
                if isinstance(e, ValueError) and len(self.buf) - self.pos <= MAX_LINE_CHARS \
                        and self._more():
                    continue  # maybe only cut by the block boundary: read on and retry
                if len(self.buf) - self.pos > MAX_LINE_CHARS:
                    raise self.fail(f"JSON item longer than {MAX_LINE_CHARS} characters") \
                        from None
                raise self.fail(json_reason(e)) from None
            if end == len(self.buf) and self._more():
                continue  # a number cut by the block boundary would parse short
            if end - self.pos > MAX_LINE_CHARS:
                raise self.fail(f"JSON item longer than {MAX_LINE_CHARS} characters")
            self.pos = end
            return obj

    def items(self) -> Iterator[Any]:
        """The items of the array that starts here."""
        self.take("[", "'['")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            self.dec.line += 1
            yield self.value()
            c = self.peek()
            self.pos += 1
            if c == "]":
                return
            if c != ",":
                self.pos -= 1
                self.take(",", "',' or ']' after the item")

    def records(self) -> Iterator[Any]:
        """The hash objects of a document that is an array of them, or an object with a
        ``hashes`` array (its other members are read and left alone)."""
        c = self.peek()
        if c == "[":
            yield from self.items()
        elif c == "{":
            self.pos += 1
            found = False
            if self.peek() == "}":
                self.pos += 1
            else:
                while True:
                    name = self.value()
                    if not isinstance(name, str):
                        raise self.fail("invalid JSON: an object member name must be a string")
                    self.take(":", "':'")
                    if name == "hashes" and self.peek() == "[" and not found:
                        found = True
                        yield from self.items()
                    else:
                        self.value()
                    c = self.peek()
                    self.pos += 1
                    if c == "}":
                        break
                    if c != ",":
                        self.pos -= 1
                        self.take(",", "',' or '}'")
            if not found:
                raise self.fail("expected a JSON array of hash objects (or an object with a "
                                "'hashes' array)")
        elif c == "":
            raise self.fail("invalid JSON: the file is empty")
        else:
            raise self.fail("expected a JSON array of hash objects")
        if self.peek() != "":
            raise HashFormatError(f"{self.dec.path}: invalid JSON: extra data after the "
                                  "document")


def iter_json(f: IO[str], dec: Decoder, chunk: int) -> Iterator[HashList]:
    """A JSON array of objects (``hashlib-ext hash --format json``), or {"hashes": [...]}.

    Streamed item by item (each at most :data:`MAX_LINE_CHARS`); records are numbered as
    items from 1.
    """
    dec.json = True
    rows = Rows()
    for obj in JsonStream(f, dec).records():
        add_object(rows, dec, dec.line, obj)
        if len(rows) >= chunk:
            yield rows.finish(dec)
            rows = Rows()
    if len(rows):
        yield rows.finish(dec)
