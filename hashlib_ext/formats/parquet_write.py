"""Writing Parquet hash lists chunk by chunk: ``hash`` fixed-size binary, ``id`` int64,
optional ``key`` and ``quality``, then one nullable string column per metadata column; the
algorithm and width in the schema metadata."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import HashFormatError
from .common import PARQUET_META, HashList, key_texts
from .parquet import require_pyarrow


class ParquetSink:
    """An open Parquet writer for one algorithm and width; rows are added chunk by chunk."""

    def __init__(self, path: str | os.PathLike[str], shown: str, algorithm: str, nbytes: int,
                 keys: bool, qualities: bool, metadata: Sequence[str], ids: bool = True):
        require_pyarrow()
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.shown = shown  # the destination's name, for messages
        self.algorithm, self.nbytes = algorithm, nbytes
        self.keys, self.qualities, self.metadata = keys, qualities, list(metadata)
        self.ids = ids  # False: the ids are record numbers, and readers number rows the same
        fields = [pa.field("hash", pa.binary(nbytes), nullable=False)]
        if ids:
            fields.append(pa.field("id", pa.int64(), nullable=False))
        if keys:
            fields.append(pa.field("key", pa.string()))
        if qualities:
            fields.append(pa.field("quality", pa.int16()))
        fields.extend(pa.field(name, pa.string()) for name in self.metadata)
        self.schema = pa.schema(fields, metadata={PARQUET_META: algorithm.encode(),
                                                  b"hashlib_ext.bits": str(8 * nbytes).encode()})
        self.writer = pq.ParquetWriter(str(path), self.schema)
        self.rows = 0

    def write(self, chunk: HashList) -> None:
        """Add the rows of ``chunk`` (its columns already checked against the sink's)."""
        import pyarrow as pa

        n = len(chunk)
        codes = chunk.hashes.codes
        if codes.shape[1] != self.nbytes:
            raise HashFormatError(f"{self.shown}: {8 * codes.shape[1]}-bit hashes in a "
                                  f"{8 * self.nbytes}-bit Parquet list")
        flat = pa.py_buffer(np.ascontiguousarray(codes).tobytes())
        arrays = [pa.FixedSizeBinaryArray.from_buffers(pa.binary(self.nbytes), n, [None, flat])]
        if self.ids:
            arrays.append(pa.array(chunk.ids, pa.int64()))
        if self.keys:
            keys = chunk.keys if chunk.keys is not None else [None] * n
            arrays.append(_strings(key_texts(self.shown, keys), self.shown, "key"))
        if self.qualities:
            q = chunk.hashes.qualities
            q = np.full(n, -1, np.int16) if q is None else q
            arrays.append(pa.array(q, pa.int16(), mask=q < 0))
        for name in self.metadata:
            col = chunk.metadata.get(name)
            values = [None] * n if col is None else col.tolist()
            arrays.append(_strings(values, self.shown, name))
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.rows += n

    def close(self) -> None:
        """Finish the file (an empty list still gets its schema)."""
        if self.rows == 0:
            self.writer.write_table(self.schema.empty_table())
        self.writer.close()

    def abort(self) -> None:
        """Close after a failure (the caller removes the file)."""
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - the first failure is the one reported
            pass


def _strings(values: list[Any], shown: str, what: str) -> Any:
    """A pyarrow string array; text that is not valid UTF-8 (a file name's undecodable
    bytes) is a HashFormatError, as Parquet strings must be UTF-8."""
    import pyarrow as pa

    try:
        return pa.array(values, pa.string())
    except (UnicodeEncodeError, pa.ArrowException) as e:
        raise HashFormatError(f"{shown}: a {what} is not valid UTF-8 text, which Parquet "
                              f"cannot hold ({e}); write csv or jsonl") from None
