"""The lake on S3 through a network that fails: a real S3 server (moto) behind a real HTTP proxy
on loopback that throttles, fails, cuts and corrupts the answers a test picks.

Each fault ends one of three ways, and each test says which: retried and read correctly (the
SHA-256 of what was normalized is the object's), a clear error naming the file and the reason,
or served from the local cache without a download.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_assets.lake.cache import LakeCache
from rlx_assets.lake.download import DOWNLOAD_ATTEMPTS
from rlx_assets.lake.errors import LakeAccessError
from rlx_assets.lake.files import FileLake
from rlx_assets.lake.open import open_lake, s3_storage_options
from rlx_assets.schema import TRADES
from rlx_assets.settings import RlxSettings
from rlx_assets_tests import s3_server as s3
from rlx_assets_tests.s3_server import FaultyS3Proxy, unique_bucket

aws_env, s3_client, s3_server, s3_proxy = s3.aws_env, s3.s3_client, s3.s3_server, s3.s3_proxy

DAY = dt.date(2024, 8, 8)
T0_NS = 1_723_075_200_000_000_000  # 2024-08-08 00:00:00 UTC


def day_key(day: dt.date = DAY, name: str = "1.snappy.parquet") -> str:
    return f"lake/trades/exchange=BINANCE/symbol=BTC-USDT/dt={day}/{name}"


def trades_file(rows: int = 60_000, seed: int = 0) -> bytes:
    """A day's trades in the vendor's raw spelling, a few row groups, a few hundred KB."""
    rng = np.random.default_rng(seed)
    times = T0_NS + np.sort(rng.integers(0, 86_400 * 10**9, rows))
    table = pa.table(
        {
            "timestamp": pa.array(times, pa.int64()),
            "receipt_timestamp": pa.array(times + 2_000_000, pa.int64()),
            "id": pa.array(np.arange(rows) + seed * rows, pa.int64()),
            "price": np.round(61_000 + rng.normal(0, 50, rows), 2),
            "amount": np.round(rng.exponential(0.1, rows), 5),
            "side": rng.choice(["buy", "sell"], rows),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=rows // 4)
    return sink.getvalue()


@pytest.fixture
def lake_bucket(s3_client: Any) -> tuple[str, bytes]:
    """A bucket holding one trades file for DAY; returns (bucket, the file's bytes)."""
    bucket = unique_bucket()
    s3_client.create_bucket(Bucket=bucket)
    data = trades_file()
    s3_client.put_object(Bucket=bucket, Key=day_key(), Body=data)
    return bucket, data


def settings_for(bucket: str, proxy: FaultyS3Proxy, tmp_path: Path, **overrides: Any):
    values: dict[str, Any] = {
        "lake_url": f"s3://{bucket}/lake",
        "s3_endpoint_url": proxy.url,
        "lake_cache_dir": str(tmp_path / "lake-cache"),
        "lake_cache_max_mb": 0,  # no cache unless a test asks: every read goes to the store
    }
    values.update(overrides)
    return RlxSettings(_env_file=None, **values)


def read_whole_day(lake: Any) -> tuple[str, int]:
    """(SHA-256 recorded for the day's file, rows normalized)."""
    day = lake.read_day(TRADES, "BINANCE", "BTC-USDT", DAY)
    (file,) = day.files
    return file.sha256, day.tables[0].num_rows


def object_gets(proxy: FaultyS3Proxy) -> list[s3.ProxiedRequest]:
    return proxy.seen("GET", "1.snappy.parquet")


def test_retry_settings_reach_botocore(lake_bucket, s3_proxy: FaultyS3Proxy, tmp_path) -> None:
    bucket, _ = lake_bucket
    settings = settings_for(bucket, s3_proxy, tmp_path, s3_max_attempts=7, s3_retry_mode="adaptive")
    lake = open_lake(settings)
    read_whole_day(lake)

    retries = lake.fs.s3.meta.config.retries
    assert retries["mode"] == "adaptive" and retries["total_max_attempts"] == 7


@pytest.mark.parametrize(
    ("kind", "status"),
    [("slowdown", 503), ("internal_error", 500), ("bad_gateway", 502)],
)
def test_throttling_and_server_errors_are_retried(
    lake_bucket, s3_proxy: FaultyS3Proxy, tmp_path, kind: str, status: int
) -> None:
    bucket, data = lake_bucket
    # Two failures of each request the read makes: the listing, the HEAD, the body.
    s3_proxy.add(kind, key="list-type=2", times=2)
    s3_proxy.add(kind, key="1.snappy.parquet", method="HEAD", times=2)
    s3_proxy.add(kind, key="1.snappy.parquet", times=2)

    sha256, rows = read_whole_day(open_lake(settings_for(bucket, s3_proxy, tmp_path)))

    assert sha256 == hashlib.sha256(data).hexdigest() and rows == 60_000
    for method, key in (("GET", "list-type=2"), ("HEAD", "1.snappy"), ("GET", "1.snappy")):
        statuses = [r.status for r in s3_proxy.seen(method, key)]
        assert statuses[:2] == [status, status] and statuses[2] in (200, 206), (method, statuses)


def test_server_errors_through_every_attempt_name_the_file(
    lake_bucket, s3_proxy: FaultyS3Proxy, tmp_path
) -> None:
    bucket, _ = lake_bucket
    s3_proxy.add("internal_error", key="1.snappy.parquet", times=-1)
    lake = open_lake(settings_for(bucket, s3_proxy, tmp_path, s3_max_attempts=3))

    with pytest.raises(LakeAccessError) as caught:
        read_whole_day(lake)

    assert str(caught.value) == (
        f"s3://{bucket}/{day_key()}: S3 kept failing (InternalError) through every retry"
        " (RLX_S3_MAX_ATTEMPTS)"
    )
    assert len(object_gets(s3_proxy)) == 3  # RLX_S3_MAX_ATTEMPTS, the first included


def test_throttling_through_every_attempt_names_the_file(
    lake_bucket, s3_proxy: FaultyS3Proxy, tmp_path
) -> None:
    bucket, _ = lake_bucket
    s3_proxy.add("slowdown", key="1.snappy.parquet", times=-1)
    lake = open_lake(settings_for(bucket, s3_proxy, tmp_path, s3_max_attempts=1))

    with pytest.raises(LakeAccessError, match="kept throttling the requests") as caught:
        read_whole_day(lake)

    assert str(caught.value).startswith(f"s3://{bucket}/{day_key()}: ")
    # botocore gave up at once (one attempt); s3fs tried SlowDown again, 5 times in all.
    assert len(object_gets(s3_proxy)) == 5


@pytest.mark.parametrize(
    ("kind", "cut_at", "checksums", "who_retries"),
    [
        # The body breaks off before its announced length: aiohttp sees it, s3fs asks again.
        ("cut", 0.5, True, "s3fs"),
        ("cut", 0.0, True, "s3fs"),
        # No length announced, the connection ends halfway: a short block; fsspec reads on from
        # where it stopped and fetches the rest.
        ("cut_unannounced", 0.5, False, "fsspec"),
        # ... ends before the first byte: the read comes back empty, the file is short of the
        # object's size, and the whole download is done again.
        ("cut_unannounced", 0.0, False, "rlx_assets"),
        # A flipped byte: botocore validates S3's checksum when the answer has one (s3fs asks
        # again); without one, the MD5 of the bytes does not match the ETag (downloaded again).
        ("corrupt", 0.5, True, "s3fs"),
        ("corrupt", 0.5, False, "rlx_assets"),
    ],
)
def test_damaged_downloads_are_detected_and_fetched_again(
    lake_bucket,
    s3_proxy: FaultyS3Proxy,
    tmp_path,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    cut_at: float,
    checksums: bool,
    who_retries: str,
) -> None:
    bucket, data = lake_bucket
    s3_proxy.checksums = checksums
    s3_proxy.add(kind, key="1.snappy.parquet", cut_at=cut_at)

    with caplog.at_level(logging.WARNING, logger="rlx_assets.lake.download"):
        sha256, rows = read_whole_day(open_lake(settings_for(bucket, s3_proxy, tmp_path)))

    assert sha256 == hashlib.sha256(data).hexdigest() and rows == 60_000
    gets = object_gets(s3_proxy)
    assert [r.fault for r in gets] == [kind, None]
    heads = s3_proxy.seen("HEAD", "1.snappy.parquet")
    downloads_started = len(heads)  # each download opens the object (HEAD) afresh
    reasons = [r.getMessage() for r in caplog.records]
    if who_retries == "rlx_assets":
        assert downloads_started == 2
        expected = "download incomplete: 0 of" if kind.startswith("cut") else "ETag (MD5)"
        assert len(reasons) == 1 and expected in reasons[0] and "downloading it again" in reasons[0]
    else:
        assert downloads_started == 1 and reasons == []


def test_bytes_wrong_on_every_download_name_the_file(
    lake_bucket, s3_proxy: FaultyS3Proxy, tmp_path
) -> None:
    bucket, _ = lake_bucket
    s3_proxy.checksums = False
    s3_proxy.add("corrupt", key="1.snappy.parquet", times=-1)
    lake = open_lake(settings_for(bucket, s3_proxy, tmp_path, lake_cache_max_mb=100))

    with pytest.raises(LakeAccessError) as caught:
        read_whole_day(lake)

    assert str(caught.value) == (
        f"s3://{bucket}/{day_key()}: downloaded bytes do not match the object's ETag (MD5),"
        f" {DOWNLOAD_ATTEMPTS} downloads in a row"
    )
    assert len(object_gets(s3_proxy)) == DOWNLOAD_ATTEMPTS
    assert LakeCache(tmp_path / "lake-cache", 1).entries() == []  # nothing bad was kept


# The local cache of lake files


def test_an_unchanged_file_is_not_downloaded_again(
    lake_bucket, s3_client: Any, s3_proxy: FaultyS3Proxy, tmp_path
) -> None:
    bucket, data = lake_bucket
    settings = settings_for(bucket, s3_proxy, tmp_path, lake_cache_max_mb=100)

    first = read_whole_day(open_lake(settings))
    assert len(object_gets(s3_proxy)) == 1
    # Another run (a new lake, as each Dagster run opens one): listed, not downloaded.
    s3_proxy.clear()
    again = read_whole_day(open_lake(settings))
    assert again == first == (hashlib.sha256(data).hexdigest(), 60_000)
    assert object_gets(s3_proxy) == [] and s3_proxy.seen("HEAD") == []
    assert len(s3_proxy.seen("GET", "list-type=2")) >= 1

    # The next day reads this file as its neighbour, by row groups: from the cache too.
    (neighbour,) = open_lake(settings).open_day(TRADES, "BINANCE", "BTC-USDT", DAY, whole=False)
    try:
        assert neighbour.from_cache and neighbour.provenance().etag
        assert sum(batch.num_rows for batch in neighbour.batches([3], 10_000)) == 15_000
    finally:
        neighbour.close()
    assert object_gets(s3_proxy) == []

    # A new version of the file (new ETag) is downloaded.
    changed = trades_file(seed=1)
    s3_client.put_object(Bucket=bucket, Key=day_key(), Body=changed)
    s3_proxy.clear()
    assert read_whole_day(open_lake(settings))[0] == hashlib.sha256(changed).hexdigest()
    assert len(object_gets(s3_proxy)) == 1


def test_a_damaged_cached_copy_is_downloaded_again(
    lake_bucket, s3_proxy: FaultyS3Proxy, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    bucket, data = lake_bucket
    settings = settings_for(bucket, s3_proxy, tmp_path, lake_cache_max_mb=100)
    read_whole_day(open_lake(settings))
    (cached,) = LakeCache(tmp_path / "lake-cache", 1).entries()
    damaged = bytearray(cached.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    cached.write_bytes(bytes(damaged))
    s3_proxy.clear()

    with caplog.at_level(logging.WARNING, logger="rlx_assets.lake.cache"):
        sha256, _ = read_whole_day(open_lake(settings))

    assert sha256 == hashlib.sha256(data).hexdigest()
    assert len(object_gets(s3_proxy)) == 1
    assert any("cached copy damaged" in r.getMessage() for r in caplog.records)
    assert cached.read_bytes() == data


def test_the_cache_stays_within_its_limit(
    s3_client: Any, s3_server: str, aws_env: None, tmp_path
) -> None:
    bucket = unique_bucket()
    s3_client.create_bucket(Bucket=bucket)
    files = {day: trades_file(rows=6_000, seed=day.day) for day in (DAY, DAY + dt.timedelta(1))}
    files[DAY + dt.timedelta(2)] = trades_file(rows=40_000, seed=3)  # larger than the limit
    for day, data in files.items():
        s3_client.put_object(Bucket=bucket, Key=day_key(day), Body=data)
    small = max(len(files[DAY]), len(files[DAY + dt.timedelta(1)]))
    limit = small + small // 2  # room for one small file, not two
    assert len(files[DAY + dt.timedelta(2)]) > limit
    options = s3_storage_options(RlxSettings(_env_file=None, s3_endpoint_url=s3_server))
    cache = LakeCache(tmp_path / "cache", limit)

    def read(day: dt.date) -> str:
        lake = FileLake(f"s3://{bucket}/lake", options, cache)
        (file,) = lake.read_day(TRADES, "BINANCE", "BTC-USDT", day).files
        return file.sha256

    for day, data in files.items():
        assert read(day) == hashlib.sha256(data).hexdigest()
        sizes = [path.stat().st_size for path in cache.entries()]
        assert sum(sizes) <= limit
    # The least recently used went; the file above the limit was never kept.
    (kept,) = cache.entries()
    assert kept.read_bytes() == files[DAY + dt.timedelta(1)]
    etag = s3_client.head_object(Bucket=bucket, Key=day_key())["ETag"].strip('"')
    assert cache.open(f"s3://{bucket}/{day_key()}", etag, len(files[DAY])) is None


def test_cached_files_are_private(lake_bucket, s3_proxy: FaultyS3Proxy, tmp_path) -> None:
    bucket, _ = lake_bucket
    read_whole_day(open_lake(settings_for(bucket, s3_proxy, tmp_path, lake_cache_max_mb=100)))
    folder = tmp_path / "lake-cache"
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
