"""Parquet IO manager: one hive-partitioned file per partition, through fsspec (local or s3://).

Layout (readable by `polars.scan_parquet(f"{base}/{asset}/**/*.parquet", hive_partitioning=True)`,
DuckDB and `pyarrow.dataset(..., partitioning="hive")`):

    <base_url>/<asset key path>/exchange=<EX>/symbol=<SYM>/dt=<YYYY-MM-DD>/part-0.parquet
    <base_url>/<asset key path>/part-0.parquet                     (non-partitioned assets)

Writes are deterministic (the same table gives the same bytes) and atomic:

- local: the file is written under `<base_url>/.staging/` (same filesystem, outside every asset
  folder) and `os.replace`d over `part-0.parquet`. The staging folder is outside the asset trees
  because polars' `*` globs match hidden files, and a directory scan
  (`scan_parquet("<base>/<asset>/")`) fails on any non-Parquet file in the tree; a crashed writer
  therefore leaves nothing a reader of the asset can see.
- object stores (s3://): the whole file is serialized in memory first and uploaded with one
  `pipe_file` call straight to the final key. S3 makes an object visible only when its PUT (or
  CompleteMultipartUpload, used by s3fs above 100 MiB) succeeds, so readers see the old object or
  the new one, never a part. A temp object plus `mv` would be a copy plus a delete on S3: twice the
  transfer and a leftover object after a crash, for no extra safety. Streaming through
  `fs.open(..., "wb")` is avoided on purpose: fsspec's `__exit__` closes (commits) the file even
  when the writer raised, which would publish half a file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    ConfigurableIOManager,
    InputContext,
    MetadataValue,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    OutputContext,
    PartitionsDefinition,
)
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem
from pydantic import Field

from rlx_assets.lake.open import s3_options
from rlx_assets.lake.urls import is_s3
from rlx_assets.paths import PRIVATE_FILE_MODE, check_path_component, make_private_dirs
from rlx_assets.resources.checkpoint_store import CheckpointStore
from rlx_assets.resources.parquet_files import (
    DEFAULT_COMPRESSION,
    STAGING_DIR,
    PartitionWriter,
    fsync_dir,
    publish_local,
    publish_object,
)
from rlx_assets.resources.partition_file import PartitionFile
from rlx_assets.resources.table_metadata import stored_table_metadata

PART_FILE = "part-0.parquet"
CHECKPOINT_DIR = ".checkpoints"  # under base_url, beside .staging
SPILL_DIR = ".spill"  # under base_url: sorted runs of a step, removed when it ends
DATE_DIMENSION = "date"
SYMBOL_DIMENSION = "symbol"
ALLOW_MISSING = "allow_missing"  # AssetIn(metadata={ALLOW_MISSING: True})
COLUMNS = "columns"  # AssetIn(metadata={COLUMNS: [...]}): read only these columns


def partition_path(
    base_url: str, asset_name: str, exchange: str, symbol: str, date: str | dt.date
) -> str:
    """The file of one partition: `<base_url>/<asset>/exchange=/symbol=/dt=/part-0.parquet`.

    `asset_name` is the asset key path joined by "/" (e.g. "raw_trades"); `base_url` is kept as
    given (relative path, `file://` or `s3://`).
    """
    return f"{base_url.rstrip('/')}/{_partition_relpath(asset_name, exchange, symbol, date)}"


class ParquetIOManager(ConfigurableIOManager):
    """Stores `pyarrow.Table`s (or polars DataFrames) as one Parquet file per partition.

    Partitioned assets must use `MultiPartitionsDefinition({"date": ..., "symbol": ...})`.
    `load_input` returns a `pyarrow.Table`, or None when the mapped upstream has no partition
    (previous day on the first day) or, for inputs declared with
    `AssetIn(metadata={"allow_missing": True})`, when the partition was never materialized.
    """

    base_url: str = Field(
        description="Root of the asset tree: a local path (relative to the cwd), file:// or s3://."
    )
    exchange: str = Field(description="Exchange folder name, e.g. BINANCE.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, moto); None means AWS."
    )
    s3_anon: bool = Field(default=False, description="Anonymous S3 access (public buckets).")
    s3_region: str | None = Field(default=None, description="S3 region; None: botocore's default.")
    compression: str = Field(
        default=DEFAULT_COMPRESSION, description="Parquet codec: lz4 (fast), zstd (small), snappy."
    )

    # -- dagster hooks -------------------------------------------------------------------------

    def handle_output(self, context: OutputContext, obj: pa.Table | pl.DataFrame | None) -> None:
        """Write `obj` atomically to its partition file and record path, row_count and bytes."""
        if obj is None:
            # The asset chose to write nothing here (it streamed its partition itself, or wrote
            # nothing at all); leave the file alone, but describe it when there is one.
            context.log.debug(f"{_asset_name(context)}: output is None, nothing written")
            written = self._written_schema(context)
            if written is not None:
                context.add_output_metadata(stored_table_metadata(*written))
            return
        table = _as_arrow_table(obj, _asset_name(context))
        uri, size = self._publish(self._output_relpath(context), table)
        context.log.debug(f"wrote {uri}: {table.num_rows} rows, {size} bytes")
        context.add_output_metadata(
            {
                "path": MetadataValue.path(uri),
                "row_count": MetadataValue.int(table.num_rows),
                "bytes": MetadataValue.int(size),
                **stored_table_metadata(uri, table.schema),
            }
        )

    def _written_schema(self, context: OutputContext) -> tuple[str, pa.Schema] | None:
        """The location and schema (from the Parquet footer) of the output's partition file."""
        fs, root = self._filesystem()
        path = f"{root}/{self._output_relpath(context)}"
        if not fs.exists(path):
            return None
        with fs.open(path, "rb") as handle:
            return _location(fs, path), pq.read_schema(handle)

    def write_partition(
        self, folder: str, symbol: str, date: str | dt.date, table: pa.Table
    ) -> tuple[str, int]:
        """Write a table beside the assets (e.g. "quarantine/raw_trades") in the same layout,
        atomically; returns its location and size in bytes."""
        return self._publish(_partition_relpath(folder, self.exchange, symbol, date), table)

    @contextlib.contextmanager
    def read_partition(
        self, folder: str, symbol: str, date: str | dt.date
    ) -> Iterator[PartitionFile]:
        """An asset's partition opened for reading in batches (`iter_batches`), not loaded."""
        fs, root = self._filesystem()
        path = f"{root}/{_partition_relpath(folder, self.exchange, symbol, date)}"
        fs.invalidate_cache(path)
        try:
            # A local file is read natively (no Python file object in between).
            source = pa.OSFile(path) if isinstance(fs, LocalFileSystem) else fs.open(path, "rb")
        except FileNotFoundError:
            raise FileNotFoundError(
                f"upstream asset '{folder}' partition '{date}|{symbol}' has no data: "
                f"{_location(fs, path)} does not exist. Materialize '{folder}' for that "
                "partition first."
            ) from None
        with source:
            # pre_buffer keeps every row group read so far until the file closes: memory
            # would grow with the day.
            parquet = pq.ParquetFile(source, pre_buffer=False)
            yield PartitionFile(parquet, path if isinstance(fs, LocalFileSystem) else None)

    @contextlib.contextmanager
    def read_partitions(
        self, symbol: str, date: str | dt.date, *folders: str
    ) -> Iterator[list[PartitionFile]]:
        """Several assets' partitions of one day, opened together (`read_partition` each)."""
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(self.read_partition(f, symbol, date)) for f in folders]

    @contextlib.contextmanager
    def partition_writer(
        self, folder: str, symbol: str, date: str | dt.date
    ) -> Iterator[PartitionWriter]:
        """Write a partition table by table (row groups) and publish it atomically on exit;
        an exception leaves the previous version in place."""
        fs, root = self._filesystem()
        relpath = _partition_relpath(folder, self.exchange, symbol, date)
        path = f"{root}/{relpath}"
        local = isinstance(fs, LocalFileSystem)
        staging = f"{root}/{STAGING_DIR}" if local else tempfile.mkdtemp(prefix="rlx-")
        make_private_dirs(staging)
        tmp = f"{staging}/{relpath.replace('/', '__')}.{uuid.uuid4().hex}.tmp"
        writer = PartitionWriter(tmp, self.compression)
        try:
            yield writer
            writer.close()
            if local:
                parent = path.rsplit("/", 1)[0]
                make_private_dirs(parent)
                os.chmod(tmp, PRIVATE_FILE_MODE)
                os.replace(tmp, path)
                fsync_dir(parent)
            else:
                fs.put_file(tmp, path)  # one upload, visible only when complete
        finally:
            writer.abort()
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            if not local:
                shutil.rmtree(staging, ignore_errors=True)
        _remove_stale_parts(fs, path)
        writer.location = _location(fs, path)
        writer.size = fs.size(path)

    def checkpoint_folder(self, folder: str, symbol: str, date: str | dt.date) -> CheckpointStore:
        """Where a long write keeps its checkpoints: `<base_url>/.checkpoints/<partition>/`,
        ignored by readers like the staging folder. On s3:// they sit beside the assets, so a
        step restarted on another machine resumes from them."""
        fs, root = self._filesystem()
        relpath = _partition_relpath(folder, self.exchange, symbol, date).rsplit("/", 1)[0]
        checkpoints = f"{root}/{CHECKPOINT_DIR}/{relpath}"
        if isinstance(fs, LocalFileSystem):
            make_private_dirs(checkpoints)  # created here, so owner-only like the rest
        return CheckpointStore(fs, checkpoints)

    def spill_parent(self) -> str | None:
        """Where a step may sort out of core: beside local storage (same disk, ignored by
        readers like the staging folder); the system's temporary folder for object stores."""
        fs, root = self._filesystem()
        if not isinstance(fs, LocalFileSystem):
            return None
        make_private_dirs(f"{root}/{SPILL_DIR}")
        return f"{root}/{SPILL_DIR}"

    def remove_partition(self, folder: str, symbol: str, date: str | dt.date) -> None:
        """Remove what `write_partition` wrote there, if anything (a re-run found nothing)."""
        fs, root = self._filesystem()
        path = f"{root}/{_partition_relpath(folder, self.exchange, symbol, date)}"
        if fs.exists(path):
            fs.rm(path)

    def _publish(self, relpath: str, table: pa.Table) -> tuple[str, int]:
        fs, root = self._filesystem()
        path = f"{root}/{relpath}"
        if isinstance(fs, LocalFileSystem):
            size = publish_local(fs, root, relpath, table, self.compression)
        else:
            size = publish_object(fs, path, table, self.compression)
        _remove_stale_parts(fs, path)
        return _location(fs, path), size

    def load_input(self, context: InputContext) -> pa.Table | None:
        """Read the upstream partition(s), concatenated in key order; see the class docstring."""
        asset = _asset_name(context)
        fs, root = self._filesystem()
        allow_missing = bool((context.definition_metadata or {}).get(ALLOW_MISSING, False))

        _require_partitions(context, asset)
        keys = sorted(context.asset_partition_keys)
        if not keys:
            # A mapping with no upstream partition (the previous day of the first day).
            return None
        tables: list[pa.Table] = []
        for key in keys:
            symbol, date = _symbol_and_date(context.asset_partitions_def, key, asset)
            path = f"{root}/{_partition_relpath(asset, self.exchange, symbol, date)}"
            table = _read(fs, path, asset, key, allow_missing, context)
            if table is not None:
                tables.append(table)
        if not tables:
            return None
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    # -- helpers -------------------------------------------------------------------------------

    def _filesystem(self) -> tuple[AbstractFileSystem, str]:
        """The fsspec filesystem of `base_url` and the root path inside it (no protocol)."""
        options: dict[str, Any] = {}
        if is_s3(self.base_url):
            options = s3_options(self.s3_endpoint_url, self.s3_anon, self.s3_region)
        fs, root = url_to_fs(self.base_url, **options)
        return fs, root.rstrip("/")

    def _output_relpath(self, context: OutputContext) -> str:
        asset = _asset_name(context)
        _require_partitions(context, asset)
        keys = context.asset_partition_keys
        if len(keys) != 1:
            raise NotImplementedError(
                f"ParquetIOManager writes one partition per output, but asset '{asset}' produced "
                f"{len(keys)} partitions in one run (single-run backfill). Materialize the "
                "partitions one run each (e.g. scripts/run_pipeline.py, or a UI backfill)."
            )
        symbol, date = _symbol_and_date(context.asset_partitions_def, keys[0], asset)
        return _partition_relpath(asset, self.exchange, symbol, date)


def _asset_name(context: InputContext | OutputContext) -> str:
    if not context.has_asset_key:
        raise ValueError("ParquetIOManager stores asset outputs only (this one has no asset key)")
    return "/".join(context.asset_key.path)


def _require_partitions(context: InputContext | OutputContext, asset: str) -> None:
    if not context.has_asset_partitions:
        raise ValueError(
            f"asset '{asset}' is not partitioned: ParquetIOManager stores date|symbol partitions "
            "only (every rlx_assets asset is partitioned)"
        )


def _partition_relpath(asset_name: str, exchange: str, symbol: str, date: str | dt.date) -> str:
    """The partition's path below the storage root; every part of it is checked, so no setting
    or partition key can name a place outside the root."""
    if isinstance(date, dt.datetime) or not isinstance(date, (dt.date, str)):
        raise ValueError(f"date {date!r} is not a day (YYYY-MM-DD)")
    try:
        day = date if isinstance(date, dt.date) else dt.date.fromisoformat(date)
    except ValueError:
        raise ValueError(f"date {date!r} is not a day (YYYY-MM-DD)") from None
    for segment in asset_name.split("/"):
        check_path_component("asset folder", segment)
    check_path_component("exchange", exchange)
    check_path_component("symbol", symbol)
    return f"{asset_name}/exchange={exchange}/symbol={symbol}/dt={day.isoformat()}/{PART_FILE}"


def _symbol_and_date(
    partitions_def: PartitionsDefinition | None, key: str, asset: str
) -> tuple[str, str]:
    """(symbol, date) of a `date|symbol` multi-partition key."""
    if isinstance(key, MultiPartitionKey):
        dims = key.keys_by_dimension
    elif isinstance(partitions_def, MultiPartitionsDefinition):
        dims = partitions_def.get_partition_key_from_str(key).keys_by_dimension
    else:
        raise ValueError(
            f"asset '{asset}': ParquetIOManager needs MultiPartitionsDefinition"
            f"({{'{DATE_DIMENSION}': ..., '{SYMBOL_DIMENSION}': ...}}), got key {key!r}"
        )
    if set(dims) != {DATE_DIMENSION, SYMBOL_DIMENSION}:
        raise ValueError(
            f"asset '{asset}': partition dimensions must be '{DATE_DIMENSION}' and "
            f"'{SYMBOL_DIMENSION}', got {sorted(dims)}"
        )
    return dims[SYMBOL_DIMENSION], dims[DATE_DIMENSION]


def _as_arrow_table(obj: object, asset: str) -> pa.Table:
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pl.DataFrame):
        return obj.to_arrow()
    raise TypeError(
        f"asset '{asset}': ParquetIOManager stores pyarrow.Table or polars.DataFrame, "
        f"got {type(obj).__name__}"
    )


def _location(fs: AbstractFileSystem, path: str) -> str:
    """What users copy from metadata and errors: an absolute local path, else the full URL."""
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def _remove_stale_parts(fs: AbstractFileSystem, path: str) -> None:
    """Delete other `part-*.parquet` of the partition (left by another writer's layout)."""
    parent = path.rsplit("/", 1)[0]
    fs.invalidate_cache(parent)
    keep = fs._strip_protocol(path)
    for other in fs.glob(f"{parent}/part-*.parquet"):
        if fs._strip_protocol(other) != keep:
            fs.rm_file(other)


def _read(
    fs: AbstractFileSystem,
    path: str,
    asset: str,
    key: str,
    allow_missing: bool,
    context: InputContext,
) -> pa.Table | None:
    fs.invalidate_cache(path)  # another process may have written it since we last listed
    try:
        f = fs.open(path, "rb")
    except FileNotFoundError:
        uri = _location(fs, path)
        partition = f"partition '{key}'"
        if allow_missing:
            context.log.info(f"{asset} {partition} not materialized ({uri}); input allows it")
            return None
        raise FileNotFoundError(
            f"upstream asset '{asset}' {partition} has no data: {uri} does not exist. "
            f"Materialize '{asset}' for that partition first."
        ) from None
    columns = (context.definition_metadata or {}).get(COLUMNS)
    with f:
        return pq.read_table(f, columns=list(columns) if columns else None)


__all__ = [
    "ALLOW_MISSING",
    "COLUMNS",
    "PART_FILE",
    "ParquetIOManager",
    "partition_path",
]
