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

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from rlx_assets import schema
from rlx_assets.engine.row_groups import ColumnRange, RowGroup
from rlx_assets.lake.cache import CachedFile, LakeCache
from rlx_assets.lake.source import DayFiles, SourceFile
from rlx_assets.lake.urls import LOCAL_PROTOCOLS, protocol_of
from rlx_assets.paths import check_path_component

log = logging.getLogger(__name__)


_DENIED = "access denied (check the AWS credentials; RLX_S3_ANON=true reads public buckets)"

# What an S3 error code means to the person fixing it. Fixed texts only: server messages are never
# copied, so nothing the request carried can leak into an error.
_S3_ERRORS = {
    "NoSuchBucket": "the S3 bucket does not exist",
    "AccessDenied": _DENIED,
    "AllAccessDisabled": "access to this bucket is disabled",
    "AccountProblem": "the AWS account behind these credentials has a problem",
    "InvalidAccessKeyId": "the AWS access key id is not recognized",
    "SignatureDoesNotMatch": "the AWS secret access key was rejected",
    "ExpiredToken": "the AWS session token has expired",
    "InvalidToken": "the AWS session token is invalid",
    "TokenRefreshRequired": "the AWS session token has expired",
    "PermanentRedirect": "the bucket lives in another region (set RLX_S3_REGION)",
    "AuthorizationHeaderMalformed": "wrong region for this bucket (set RLX_S3_REGION)",
    "PreconditionFailed": "the object changed while it was being read; run again",
    "SlowDown": "S3 kept throttling the requests (SlowDown) through every retry"
    " (RLX_S3_MAX_ATTEMPTS)",
    "InternalError": "S3 kept failing (InternalError) through every retry (RLX_S3_MAX_ATTEMPTS)",
    "ServiceUnavailable": "S3 kept answering ServiceUnavailable through every retry"
    " (RLX_S3_MAX_ATTEMPTS)",
    "NoSuchKey": "the object disappeared while it was being read",
    "403": _DENIED,
    "404": "not found",
}

_BOTO_ERRORS = {
    "NoCredentialsError": "no AWS credentials found (set AWS_ACCESS_KEY_ID and"
    " AWS_SECRET_ACCESS_KEY, or RLX_S3_ANON=true for a public bucket)",
    "PartialCredentialsError": "incomplete AWS credentials (an access key id needs its secret)",
    "EndpointConnectionError": "cannot reach the S3 endpoint",
    "ConnectTimeoutError": "timed out connecting to the S3 endpoint",
    "ReadTimeoutError": "timed out reading from the S3 endpoint",
    "ProfileNotFound": "the AWS profile named by AWS_PROFILE does not exist",
}


class LakeAccessError(OSError):
    """The lake cannot be reached or read: missing bucket or folder, refused credentials, network.

    The message names the URL and the reason, never a credential.
    """


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
        with _access(self.fs.unstrip_protocol(folder)):
            try:
                entries = self.fs.ls(folder, detail=True)
            except FileNotFoundError as error:
                if _s3_error_code(error) is not None:
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
            if _s3_error_code(error) is not None:
                raise
            present = False
        if not present:
            raise LakeAccessError(
                f"{self.url}: nothing is stored at the lake root (check RLX_LAKE_URL)"
            )
        self._root_present = True


_STATISTICS_COLUMNS = ("origin_time", "received_time", "sequence_number")
_CANONICAL = {**schema.RAW_SPELLINGS, **{name: name for name in _STATISTICS_COLUMNS}}
_NS_PER_UNIT = {"milliseconds": 10**6, "microseconds": 10**3, "nanoseconds": 1}
_BLOCK = 8 << 20


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
        with _access(self.uri):
            if isinstance(fs, LocalFileSystem):
                self.size = os.path.getsize(path)
                if whole:
                    self._sha256 = _file_sha256(path)
                self._handle = pa.OSFile(path)
            elif (cached := _cached(cache, self.uri, listed)) is not None:
                self.from_cache = True
                self.size = cached.size
                self._etag = _clean_etag(listed.get("ETag"))
                if whole:
                    self._sha256 = cached.sha256
                self._handle = cached.handle
            elif whole:
                self._handle = self._download(fs, path, listed, cache)
            else:
                # Small blocks: reading a few row groups must not pull the whole object.
                self._handle = fs.open(path, "rb", block_size=1 << 20)
                self.size = self._handle.size
                self._etag = _etag_of(self._handle)
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
            with _access(self.uri):
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
                self._etag, self._sha256, self.size = _download_verified(fs, path, self.uri, staged)
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
        self._etag, self._sha256, self.size = _download_verified(
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
            with _access(self.uri):
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


DOWNLOAD_ATTEMPTS = 3


def _download_verified(
    fs: fsspec.AbstractFileSystem, path: str, uri: str, target: Path
) -> tuple[str | None, str, int]:
    """Download `path` into `target` and check it whole: (ETag, SHA-256, size).

    Each request is already retried (botocore, s3fs); this catches what they cannot see, a file
    shorter than the object or bytes that are not the ETag's. Such a download is tried again
    from the start; the third failure is an error naming the file and what did not match.
    """
    problem = ""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        sha256 = hashlib.sha256()
        written = 0
        # s3fs captures the object's info at open and reads with If-Match on its ETag, so this
        # ETag and size belong to exactly the bytes read.
        with open(target, "wb") as out, fs.open(path, "rb", block_size=_BLOCK) as handle:
            etag = _etag_of(handle)
            expected = int(handle.size)
            md5 = hashlib.md5(usedforsecurity=False) if _is_md5(etag) else None
            while block := handle.read(_BLOCK):
                sha256.update(block)
                if md5 is not None:
                    md5.update(block)
                out.write(block)
                written += len(block)
        if written != expected:
            problem = f"download incomplete: {written} of {expected} bytes"
        elif md5 is not None and md5.hexdigest() != etag:
            problem = "downloaded bytes do not match the object's ETag (MD5)"
        else:
            log.debug("%s: downloaded %d bytes, ETag %s", uri, written, etag)
            return etag, sha256.hexdigest(), written
        if attempt < DOWNLOAD_ATTEMPTS:
            log.warning(
                "%s: %s; downloading it again (%d of %d)",
                uri,
                problem,
                attempt + 1,
                DOWNLOAD_ATTEMPTS,
            )
    raise LakeAccessError(f"{uri}: {problem}, {DOWNLOAD_ATTEMPTS} downloads in a row")


def _is_md5(etag: str | None) -> bool:
    """A single-part upload's ETag is the MD5 of its bytes; a multipart one ends in -<parts>."""
    return etag is not None and len(etag) == 32 and all(c in "0123456789abcdef" for c in etag)


def _cached(cache: LakeCache | None, uri: str, listed: dict[str, Any]) -> CachedFile | None:
    etag, size = _clean_etag(listed.get("ETag")), listed.get("size")
    if cache is None or etag is None or not isinstance(size, int):
        return None
    cached = cache.open(uri, etag, size)
    if cached is not None:
        log.debug("%s: read from the lake cache (ETag %s)", uri, etag)
    return cached


def _clean_etag(etag: object) -> str | None:
    return etag.strip('"') if isinstance(etag, str) and etag else None


def _etag_of(handle: object) -> str | None:
    details = getattr(handle, "details", None) or {}
    return _clean_etag(details.get("ETag"))


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


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


def _refuse_credentials_in(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        redacted = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        raise ValueError(
            f"{redacted}: credentials do not belong in the lake URL; set AWS_ACCESS_KEY_ID and"
            " AWS_SECRET_ACCESS_KEY instead"
        )


def _s3_error_code(error: BaseException) -> str | None:
    """The S3 error code behind an exception (s3fs keeps the botocore error as the cause)."""
    seen: BaseException | None = error
    for _ in range(8):  # cause chains are short; the bound guards against cycles
        if seen is None:
            return None
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
        seen = seen.__cause__ or seen.__context__
    return None


def _is_boto_error(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in ("botocore", "aiobotocore")


def _describe(error: BaseException) -> str:
    code = _s3_error_code(error)
    if code is not None:
        return _S3_ERRORS.get(code, f"S3 request refused ({code})")
    if _is_boto_error(error):
        return _BOTO_ERRORS.get(type(error).__name__, f"S3 client error ({type(error).__name__})")
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, FileNotFoundError):
        return "not found"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


@contextmanager
def _access(uri: str) -> Iterator[None]:
    """Turn storage errors into a `LakeAccessError` naming the URL and the reason."""
    try:
        yield
    except LakeAccessError:
        raise
    except OSError as error:
        raise LakeAccessError(f"{uri}: {_describe(error)}") from error
    except Exception as error:
        if not _is_boto_error(error):
            raise
        raise LakeAccessError(f"{uri}: {_describe(error)}") from error
