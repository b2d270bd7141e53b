"""The Crypto Lake layout over fsspec: a local folder or an `s3://` bucket.

    <lake>/<table>/exchange=<EXCHANGE>/symbol=<SYMBOL>/dt=<YYYY-MM-DD>/<any name>.parquet

Each file's bytes are read once; the SHA-256 and the Parquet table both come from those bytes, so
the recorded provenance proves exactly what was normalized.

Faults of an object store are handled in layers. Each S3 request is retried by botocore itself
(throttling and 5xx, with backoff; `lake.open.s3_storage_options`), and a response cut midway is
fetched again by s3fs. What no library checks is the downloaded file as a whole: its size must
be the object's and, where the ETag is the MD5 of the bytes (single-part uploads), its MD5 the
ETag; a file that fails is downloaded again, a few times, then reported. Whole files are kept in
a local cache keyed by ETag (`lake.cache`), so an unchanged file is not downloaded again.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import urlsplit

import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from rlx_assets import schema
from rlx_assets.lake.cache import LakeCache
from rlx_assets.lake.errors import LakeAccessError, lake_access, s3_error_code
from rlx_assets.lake.parquet_source import ParquetSource
from rlx_assets.lake.source import DayFiles, SourceFile
from rlx_assets.lake.urls import LOCAL_PROTOCOLS, protocol_of
from rlx_assets.paths import check_path_component

log = logging.getLogger(__name__)


class FileLake:
    """A Crypto Lake on any fsspec filesystem; in practice a local folder or `s3://bucket/prefix`.

    `storage_options` go to fsspec as they are (for S3 see `lake.open.s3_storage_options`). They
    may hold secrets: only the filesystem object keeps them, and the repr shows the URL alone.
    `cache` keeps whole files of a remote lake on local disk (unused for a local folder).
    """

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        cache: LakeCache | None = None,
    ) -> None:
        _refuse_credentials_in(url)
        options = dict(storage_options or {})
        if protocol_of(url) not in LOCAL_PROTOCOLS:
            # A file uploaded after the first listing must show up on the next read.
            options.setdefault("use_listings_cache", False)
        # One filesystem per lake; fsspec reuses instances with equal options, so this is cheap.
        self.fs: fsspec.AbstractFileSystem
        self.fs, root = fsspec.core.url_to_fs(url, **options)
        self.root: str = root.rstrip("/") or root
        if not self.root:
            raise ValueError(f"{url}: the lake URL names no bucket or folder")
        self.url: str = self.fs.unstrip_protocol(self.root)
        self.cache = None if isinstance(self.fs, LocalFileSystem) else cache
        self._root_present = False

    def __repr__(self) -> str:
        return f"FileLake({self.url!r})"

    def read_day(self, table: str, exchange: str, symbol: str, day: dt.date) -> DayFiles:
        """Every `*.parquet` under the day's `dt=` folder, in name order, normalized."""
        files: list[SourceFile] = []
        tables: list[pa.Table] = []
        for reader in self.open_day(table, exchange, symbol, day, whole=True):
            try:
                batches = list(reader.batches(list(range(len(reader.row_groups))), 1 << 30))
                tables.append(pa.concat_tables(batches) if batches else schema.empty_table(table))
                files.append(reader.provenance())
            finally:
                reader.close()
            log.debug("read %s: %d bytes, %d rows", reader.uri, files[-1].size, tables[-1].num_rows)
        return DayFiles(files, tables)

    def open_day(
        self, table: str, exchange: str, symbol: str, day: dt.date, whole: bool
    ) -> list[ParquetSource]:
        """Every `*.parquet` under the day's `dt=` folder, in name order, opened for reading."""
        folder = self._day_folder(table, exchange, symbol, day)
        readers: list[ParquetSource] = []
        try:
            for listed in self._list_parquet(folder):
                readers.append(
                    ParquetSource(self.fs, listed["name"], table, whole, listed, self.cache, symbol)
                )
        except BaseException:
            for reader in readers:
                reader.close()
            raise
        return readers

    def typical_prices(self, table: str, exchange: str, symbol: str, day: dt.date) -> list[float]:
        """Each file's typical price in the day's `dt=` folder (footers and a column or two of a
        row group read, not the files)."""
        prices = []
        folder = self._day_folder(table, exchange, symbol, day)
        for listed in self._list_parquet(folder):
            try:
                reader = ParquetSource(self.fs, listed["name"], table, False, listed, self.cache)
                try:
                    price = reader.typical_price()
                finally:
                    reader.close()
            except schema.SourceSchemaError:
                continue  # an unreadable file is its own table's error, reported there
            if price is not None:
                prices.append(price)
        return prices

    def _day_folder(self, table: str, exchange: str, symbol: str, day: dt.date) -> str:
        if table not in schema.SCHEMAS:
            raise schema.SourceSchemaError(
                f"{self.url}: unknown table {table!r} (expected one of {schema.TABLES})"
            )
        try:
            # These become path segments; a slash or dot-dot would read some other folder.
            check_path_component("exchange", exchange)
            check_path_component("symbol", symbol)
        except ValueError as error:
            raise ValueError(f"{self.url}: invalid {error}") from None
        return f"{self.root}/{table}/exchange={exchange}/symbol={symbol}/dt={day:%Y-%m-%d}"

    def _list_parquet(self, folder: str) -> list[dict[str, Any]]:
        """The folder's Parquet files as the store lists them (name, size and, on S3, ETag)."""
        with lake_access(self.fs.unstrip_protocol(folder)):
            try:
                entries = self.fs.ls(folder, detail=True)
            except FileNotFoundError as error:
                if s3_error_code(error) is not None:
                    raise  # e.g. NoSuchBucket: the store refused, the folder is not just absent
                # A missing day is normal (a neighbouring day may not exist); a missing lake is not.
                self._require_root()
                return []
        found = [
            entry
            for entry in entries
            if entry.get("type") == "file" and entry["name"].endswith(".parquet")
        ]
        return sorted(found, key=lambda entry: entry["name"])

    def _require_root(self) -> None:
        """Raise if nothing is stored at the lake root: a mistyped URL must not read as no data."""
        if self._root_present:
            return
        try:
            present = bool(self.fs.ls(self.root, detail=False))
        except FileNotFoundError as error:
            if s3_error_code(error) is not None:
                raise
            present = False
        if not present:
            raise LakeAccessError(
                f"{self.url}: nothing is stored at the lake root (check RLX_LAKE_URL)"
            )
        self._root_present = True


def _refuse_credentials_in(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        redacted = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        raise ValueError(
            f"{redacted}: credentials do not belong in the lake URL; set AWS_ACCESS_KEY_ID and"
            " AWS_SECRET_ACCESS_KEY instead"
        )
