"""What every lake (local folder, s3://, synthetic://) offers the raw assets."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa


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
