"""One Parquet file of a `dt=` folder as a `SourceReader`: its row groups' statistics read from the
footer, its rows read row group by row group and normalized."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from rlx_assets import schema
from rlx_assets.engine.row_groups import ColumnRange, RowGroup
from rlx_assets.lake.cache import LakeCache
from rlx_assets.lake.download import (
    cached_copy,
    clean_etag,
    download_verified,
    etag_of,
    file_sha256,
)
from rlx_assets.lake.errors import lake_access
from rlx_assets.lake.source import SourceFile

_STATISTICS_COLUMNS = ("origin_time", "received_time", "sequence_number")


_CANONICAL = {**schema.RAW_SPELLINGS, **{name: name for name in _STATISTICS_COLUMNS}}


_NS_PER_UNIT = {"milliseconds": 10**6, "microseconds": 10**3, "nanoseconds": 1}


class ParquetSource:
    """One lake file: read whole (and hashed) or row group by row group.

    A whole file on an object store is downloaded once to a local file while it is hashed (into
    the cache when there is one), checked against the object's size and ETag, then read from
    there, so the SHA-256 proves exactly the bytes normalized. A file read in part is read from
    the cache when a copy of that version is there, else by ranges from the store; it is not
    hashed: its ETag and size identify it, and `bytes_read` says what was read.
    """

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        path: str,
        table: str,
        whole: bool,
        listed: dict[str, Any] | None = None,
        cache: LakeCache | None = None,
        symbol: str | None = None,
    ) -> None:
        self.uri = fs.unstrip_protocol(path)
        self.table = table
        self.whole = whole
        self.from_cache = False  # read from the local cache: nothing downloaded
        self.symbol = symbol
        self._temporary: str | None = None
        self._sha256: str | None = None
        self._etag: str | None = None
        self._bytes = 0
        listed = listed or {}
        with lake_access(self.uri):
            if isinstance(fs, LocalFileSystem):
                self.size = os.path.getsize(path)
                if whole:
                    self._sha256 = file_sha256(path)
                self._handle = pa.OSFile(path)
            elif (cached := cached_copy(cache, self.uri, listed)) is not None:
                self.from_cache = True
                self.size = cached.size
                self._etag = clean_etag(listed.get("ETag"))
                if whole:
                    self._sha256 = cached.sha256
                self._handle = cached.handle
            elif whole:
                self._handle = self._download(fs, path, listed, cache)
            else:
                # Small blocks: reading a few row groups must not pull the whole object.
                self._handle = fs.open(path, "rb", block_size=1 << 20)
                self.size = self._handle.size
                self._etag = etag_of(self._handle)
        if whole:
            self._bytes = self.size
        try:
            self._parquet = pq.ParquetFile(self._handle, pre_buffer=False)
        except (pa.ArrowException, OSError) as error:
            self.close()
            raise schema.SourceSchemaError(
                f"{self.uri}: not a readable Parquet file ({error})"
            ) from error
        metadata = self._parquet.metadata
        if not whole:
            self._bytes += metadata.serialized_size + 8  # the footer and its length and magic
        self.row_groups = [_row_group(metadata, index) for index in range(metadata.num_row_groups)]
        self.columns = schema.canonical_names(self._parquet.schema_arrow.names)

    def typical_price(self) -> float | None:
        """The median price of the file's first row group with prices (one or two columns
        read): where the file's instrument trades, robust to a few bad values."""
        names = [
            name
            for name in schema.PRICE_COLUMNS[self.table]
            if name in self._parquet.schema_arrow.names
            and pa.types.is_floating(self._parquet.schema_arrow.field(name).type)
        ]
        if not names:
            return None
        for index, group in enumerate(self.row_groups):
            if not group.rows:
                continue
            with lake_access(self.uri):
                try:
                    table = self._parquet.read_row_group(index, columns=names)
                except pa.ArrowException as error:
                    raise schema.SourceSchemaError(
                        f"{self.uri}: not a readable Parquet file ({error})"
                    ) from error
            if not self.whole:
                self._bytes += sum(
                    self._parquet.metadata.row_group(index).column(position).total_compressed_size
                    for position in range(self._parquet.metadata.num_columns)
                    if self._parquet.metadata.schema.column(position).name in names
                )
            return schema.median_price(table)
        return None

    def _download(
        self,
        fs: fsspec.AbstractFileSystem,
        path: str,
        listed: dict[str, Any],
        cache: LakeCache | None,
    ) -> pa.OSFile:
        """The whole object, verified, in the cache (or a temporary file); opened for reading."""
        size = listed.get("size")
        if cache is not None and isinstance(size, int) and cache.fits(size):
            with cache.staging_file() as staged:
                self._etag, self._sha256, self.size = download_verified(fs, path, self.uri, staged)
                # Opened before the move: the handle stays valid whatever happens to the entry.
                handle = pa.OSFile(str(staged))
                if self._etag is not None:
                    cache.add(staged, self.uri, self._etag, self.size, self._sha256)
                    return handle
                handle.close()  # no ETag, no key: read it from a temporary file instead
        with tempfile.NamedTemporaryFile(
            prefix="rlx-lake-", suffix=".parquet", delete=False
        ) as out:
            self._temporary = out.name
        self._etag, self._sha256, self.size = download_verified(
            fs, path, self.uri, Path(self._temporary)
        )
        return pa.OSFile(self._temporary)

    @property
    def bytes_read(self) -> int:
        return self._bytes

    def provenance(self) -> SourceFile:
        return SourceFile(uri=self.uri, size=self.size, etag=self._etag, sha256=self._sha256)

    def batches(self, row_groups: list[int], batch_rows: int) -> Iterator[pa.Table]:
        if not row_groups:
            return
        if not self.whole:
            self._bytes += sum(self.row_groups[index].bytes for index in row_groups)
        batches = self._parquet.iter_batches(batch_size=batch_rows, row_groups=row_groups)
        while True:
            with lake_access(self.uri):
                try:
                    batch = next(batches, None)
                except (pa.ArrowException, OSError) as error:
                    if isinstance(error, OSError) and not isinstance(error, pa.ArrowException):
                        raise
                    raise schema.SourceSchemaError(
                        f"{self.uri}: not a readable Parquet file ({error})"
                    ) from error
            if batch is None:
                return
            yield schema.normalize_table(
                self.table, pa.Table.from_batches([batch]), self.uri, self.symbol
            )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._handle.close()
        if self._temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._temporary)
            self._temporary = None


def _row_group(metadata: pq.FileMetaData, index: int) -> RowGroup:
    """A row group's size and the ranges of its time and sequence columns (ns), where the file
    has statistics for them."""
    group = metadata.row_group(index)
    ranges = {}
    for position in range(group.num_columns):
        column = group.column(position)
        name = _CANONICAL.get(column.path_in_schema)
        statistics = column.statistics
        if name is None or statistics is None or not statistics.has_min_max:
            continue
        if column.physical_type != "INT64":
            continue
        factor = _time_unit_factor(column) if name != "sequence_number" else 1
        if factor is None:
            continue
        ranges[name] = ColumnRange(
            int(statistics.min_raw) * factor,
            int(statistics.max_raw) * factor,
            int(statistics.null_count or 0),
        )
    stored = sum(
        group.column(position).total_compressed_size for position in range(group.num_columns)
    )
    return RowGroup(group.num_rows, stored, ranges)


def _time_unit_factor(column: pq.ColumnChunkMetaData) -> int | None:
    """ns per stored unit of an int64 time column; None where the unit cannot be told."""
    logical = column.statistics.logical_type
    kind = getattr(logical, "type", "NONE")
    if kind in ("NONE", "INT"):
        return 1  # plain int64: nanoseconds, as the lake stores them
    if kind == "TIMESTAMP":
        return _NS_PER_UNIT.get(json.loads(logical.to_json()).get("timeUnit", ""))
    return None
