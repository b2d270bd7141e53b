"""Parquet files of a partition: how they are written (codec, row groups sized by bytes) and
published atomically, on a local disk (a rename) or an object store (one upload); `PartitionWriter`
writes one table by table and hashes it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.spec import AbstractFileSystem

from rlx_assets.paths import PRIVATE_FILE_MODE, make_private_dirs

DEFAULT_COMPRESSION = "lz4"


MAX_ROW_GROUP_ROWS = 1_000_000
ROW_GROUP_BYTES = 64 << 20  # uncompressed: a reader holds one row group of a column set at a time
HASH_BLOCK = 4 << 20


STAGING_DIR = ".staging"  # under base_url; never inside an asset folder
# Every option that shapes the bytes is pinned, so a pyarrow upgrade that changes a default does
# not silently change the files (and their hashes). Nothing time-dependent goes into a file.
# No dictionaries on the wide decimal columns: encoding and decoding a day's book are the largest
# costs of the book step, and dictionaries decoded 3x slower for 4% smaller files.
_WRITE_OPTIONS: dict[str, Any] = {
    "version": "2.6",
    "data_page_version": "1.0",
}
# Codecs a user may choose (RLX_PARQUET_COMPRESSION) and their pinned levels. lz4 (the default)
# decodes and encodes a full-scale book day about 25% faster than zstd level 1, for files about
# 45% larger; zstd suits long backfills where disk matters more than minutes.
COMPRESSION_LEVELS: dict[str, int | None] = {"lz4": None, "zstd": 1, "snappy": None}


def write_options(compression: str) -> dict[str, Any]:
    if compression not in COMPRESSION_LEVELS:
        raise ValueError(
            f"Parquet compression {compression!r} is not one of {sorted(COMPRESSION_LEVELS)}"
        )
    return {
        **_WRITE_OPTIONS,
        "compression": compression,
        "compression_level": COMPRESSION_LEVELS[compression],
    }


def _schema_options(schema: pa.Schema) -> dict[str, Any]:
    """Dictionaries for text (sides, event types); statistics for the times, ids and flags,
    which readers prune row groups on. None for decimals (no reader prunes on a price, and their
    min/max cost 10% of the write) nor for text: a side or event type has two or three values,
    so a row group's min/max rule nothing out, and they cost 40% of the column's write."""
    return {
        "use_dictionary": [f.name for f in schema if pa.types.is_string(f.type)] or False,
        "write_statistics": [
            f.name
            for f in schema
            if not (pa.types.is_decimal(f.type) or pa.types.is_string(f.type))
        ]
        or False,
    }


def row_group_rows(table: pa.Table) -> int:
    """Rows per row group: about ROW_GROUP_BYTES at the schema's row width, in thousands. From
    the schema, not the buffers, so the same rows always split the same way."""
    width = sum(_value_width(field.type) for field in table.schema) or 1
    rows = (ROW_GROUP_BYTES // width) // 1000 * 1000
    return int(min(MAX_ROW_GROUP_ROWS, max(1000, rows)))


def _value_width(kind: pa.DataType) -> int:
    try:
        return max(1, kind.bit_width // 8)
    except ValueError:  # variable width (strings, lists): a nominal figure
        return 32


def _write_parquet(table: pa.Table, sink: Any, compression: str) -> None:
    pq.write_table(
        table,
        sink,
        row_group_size=row_group_rows(table),
        **write_options(compression),
        **_schema_options(table.schema),
    )


class PartitionWriter:
    """Appends tables to one Parquet file in row groups of a fixed size (`row_group_rows` of the
    schema), whatever the sizes of the tables written, so the bytes depend on the rows alone;
    with the same pinned options as whole-table writes."""

    def __init__(self, path: str, compression: str = DEFAULT_COMPRESSION) -> None:
        self.path = path
        self.options = write_options(compression)
        self.rows = 0
        self.location: str | None = None
        self.size: int | None = None
        self.sha256: str | None = None  # of the file's bytes, set on close
        self.metadata: dict[bytes, bytes] = {}  # added to the file's key-value metadata
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._group_rows = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self.path, table.schema, **self.options, **_schema_options(table.schema)
            )
            self._group_rows = row_group_rows(table)
        if table.num_rows:
            self._pending.append(table)
            self._pending_rows += table.num_rows
            self.rows += table.num_rows
        if self._pending_rows >= self._group_rows:
            self._flush(whole_groups_only=True)

    def _flush(self, whole_groups_only: bool) -> None:
        assert self._writer is not None
        if not self._pending:
            return
        pending = pa.concat_tables(self._pending)
        groups = pending.num_rows // self._group_rows * self._group_rows
        written = groups if whole_groups_only else pending.num_rows
        if written:
            self._writer.write_table(pending.slice(0, written), row_group_size=self._group_rows)
        rest = pending.slice(written)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def restart(self) -> None:
        """Discard every row written so far: the file starts again, empty (its metadata kept)."""
        self.abort()
        self._pending = []
        self._pending_rows = 0
        self.rows = 0

    def close(self) -> None:
        if self._writer is None:
            raise ValueError(f"nothing was written to {self.path}")
        self._flush(whole_groups_only=False)
        if self.metadata:
            self._writer.add_key_value_metadata(self.metadata)
        self._writer.close()
        self._writer = None
        digest = hashlib.sha256()
        with open(self.path, "rb+") as f:
            # Read back while the pages are still cached: writes are deterministic, so equal
            # rows give equal bytes and this hash identifies the content.
            while block := f.read(HASH_BLOCK):
                digest.update(block)
            os.fsync(f.fileno())
        self.sha256 = digest.hexdigest()

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        self._pending = []


def publish_local(
    fs: AbstractFileSystem, root: str, relpath: str, table: pa.Table, compression: str
) -> int:
    """Write to a staging file, fsync, `os.replace` over `root/relpath`; returns the size."""
    path = f"{root}/{relpath}"
    parent = path.rsplit("/", 1)[0]
    staging_dir = f"{root}/{STAGING_DIR}"
    make_private_dirs(parent)
    make_private_dirs(staging_dir)
    # The name says what it was for (useful when a crash leaves one); the uuid keeps concurrent
    # writers apart. It ends in ".tmp" so no "*.parquet" glob over base_url matches it either.
    tmp = f"{staging_dir}/{relpath.replace('/', '__')}.{uuid.uuid4().hex}.tmp"
    try:
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        with os.fdopen(descriptor, "wb") as f:
            _write_parquet(table, f, compression)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows within one filesystem
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    fsync_dir(parent)  # make the rename itself durable
    return os.path.getsize(path)


def publish_object(fs: AbstractFileSystem, path: str, table: pa.Table, compression: str) -> int:
    """Serialize in memory, then one upload to the final key (atomic on object stores)."""
    sink = pa.BufferOutputStream()
    _write_parquet(table, sink, compression)
    data = sink.getvalue().to_pybytes()
    fs.pipe_file(path, data)
    return len(data)


def fsync_dir(path: str) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open a directory
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
