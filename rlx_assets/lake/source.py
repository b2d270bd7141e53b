"""What every lake (local folder, s3://, synthetic://) offers the raw assets."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from rlx_assets.engine.row_groups import RowGroup
from rlx_assets.schema import PRICE_COLUMNS, median_price


@dataclass(frozen=True)
class SourceFile:
    """One file read from the lake, with what proves which bytes were read."""

    uri: str  # never carries credentials
    size: int  # bytes
    etag: str | None  # the store's ETag (S3) or None where the store has none
    sha256: str  # hex digest of the bytes read


@dataclass(frozen=True)
class DayFiles:
    """One `dt=` folder of one table: each file's provenance and its normalized rows."""

    files: list[SourceFile]
    tables: list[pa.Table]  # one per file, normalized by `schema.normalize_table`


class Lake(Protocol):
    url: str

    def read_day(self, table: str, exchange: str, symbol: str, day: dt.date) -> DayFiles:
        """All files under `<table>/exchange=<EX>/symbol=<SYM>/dt=<day>/`, normalized.

        A missing folder is an empty `DayFiles` (a neighbouring day may simply not exist); an
        unreadable file or a bad column raises `SourceSchemaError` naming the file and column.
        """
        ...

    def open_day(
        self, table: str, exchange: str, symbol: str, day: dt.date, whole: bool
    ) -> list[SourceReader]:
        """The files of that folder, opened but not read; `whole` files are read in full (and
        hashed), the others row group by row group as asked. Close each reader after use."""
        ...

    def typical_prices(self, table: str, exchange: str, symbol: str, day: dt.date) -> list[float]:
        """Where each file of that folder trades (`SourceReader.typical_price`), for telling a
        file of another instrument from the day's other tables; [] where files cannot hold
        another instrument (the simulator's)."""
        ...


class SourceReader(Protocol):
    """One file of a `dt=` folder, opened for reading row groups in batches."""

    uri: str
    row_groups: list[RowGroup]
    columns: list[str]  # the file's columns, raw spellings renamed to the canonical names

    def typical_price(self) -> float | None:
        """Where the file's instrument trades (a median of a sample of its prices), read
        without reading the file; None when it holds no price."""
        ...

    def provenance(self) -> SourceFile:
        """Size, ETag and (when the whole file was read) its SHA-256."""
        ...

    def batches(self, row_groups: list[int], batch_rows: int) -> Iterator[pa.Table]:
        """Those row groups' rows, normalized (`schema.normalize_table`), in batches."""
        ...

    @property
    def bytes_read(self) -> int: ...

    def close(self) -> None: ...


class TableSource:
    """A file already in memory (the simulator's) as a `SourceReader`: one row group, no
    statistics, so it is always read whole."""

    def __init__(self, file: SourceFile, table: pa.Table, table_name: str) -> None:
        self.uri = file.uri
        self._table_name = table_name
        self._file = file
        self._table = table
        self.row_groups = [RowGroup(table.num_rows, file.size, {})]
        self.columns = table.column_names
        self._bytes = 0

    def typical_price(self) -> float | None:
        return median_price(self._table.select(list(PRICE_COLUMNS[self._table_name])))

    def provenance(self) -> SourceFile:
        return self._file

    def batches(self, row_groups: list[int], batch_rows: int) -> Iterator[pa.Table]:
        if row_groups:
            self._bytes = self._file.size
            for offset in range(0, self._table.num_rows, batch_rows):
                yield self._table.slice(offset, batch_rows)

    @property
    def bytes_read(self) -> int:
        return self._bytes

    def close(self) -> None:
        self._table = self._table.slice(0, 0)


class _HashingSink:
    """A write-only file that hashes what is written (nothing is kept)."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def ipc_sha256(schema: pa.Schema, parts: Iterable[pa.Table | pa.RecordBatch]) -> str:
    """SHA-256 of rows as an Arrow IPC stream (a deterministic serialization), written part by
    part: nothing beyond one part is held."""
    sink = _HashingSink()
    with pa.PythonFile(sink, mode="w") as file, pa.ipc.new_stream(file, schema) as writer:
        for part in parts:
            if isinstance(part, pa.Table):
                writer.write_table(part)
            else:
                writer.write_batch(part)
    return sink.hash.hexdigest()
