"""FileLake over a local folder and a real S3 server on loopback; `open_lake` dispatch."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import sys
import types
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_assets.lake.errors import LakeAccessError
from rlx_assets.lake.files import FileLake
from rlx_assets.lake.open import open_lake, s3_storage_options
from rlx_assets.schema import SCHEMAS, TRADES, SourceSchemaError
from rlx_assets.settings import RlxSettings
from rlx_assets_tests import s3_server as s3
from rlx_assets_tests.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, unique_bucket

# The loopback S3 fixtures, registered in this module by name (no shared conftest.py).
aws_env, s3_client, s3_server = s3.aws_env, s3.s3_client, s3.s3_server

DAY = dt.date(2024, 8, 8)
DAY_FOLDER = "exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08"
FIXTURE_LAKE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
FIXTURE_LAKE /= "binance-spot-btcusdt"

T0_NS = 1_723_161_600_000_000_000  # 2024-08-09 00:00:00 UTC


def raw_trades() -> pa.Table:
    """Crypto Lake's raw spellings, with millisecond timestamps as some exports carry."""
    return pa.table(
        {
            "timestamp": pa.array([T0_NS // 10**6 - 2, T0_NS // 10**6 - 1], pa.timestamp("ms")),
            "receipt_timestamp": pa.array([T0_NS - 1_500_000, T0_NS - 400_000], pa.int64()),
            "id": pa.array([7, 8], pa.int64()),
            "price": [61_000.5, 61_001.0],
            "amount": [0.25, 0.001],
            "side": ["buy", "sell"],
        }
    )


def canonical_trades() -> pa.Table:
    return pa.table(
        {
            "origin_time": pa.array([T0_NS - 900], pa.int64()),
            "received_time": pa.array([T0_NS - 100], pa.int64()),
            "trade_id": pa.array([9], pa.int64()),
            "price": [61_002.0],
            "quantity": [0.5],
            "side": ["buy"],
        }
    )


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def file_uri(path: Path) -> str:
    """fsspec's spelling: `file://` + the absolute path, `=` left readable (no percent-encoding)."""
    return f"file://{path}"


def write_day_file(lake: Path, name: str, data: bytes, table: str = TRADES) -> Path:
    folder = lake / table / DAY_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


# Local folder


def test_local_round_trip_accepts_both_spellings(tmp_path: Path) -> None:
    raw, canonical = parquet_bytes(raw_trades()), parquet_bytes(canonical_trades())
    # Written out of name order: reads come back sorted by name.
    write_day_file(tmp_path, "b.parquet", canonical)
    write_day_file(tmp_path, "a.parquet", raw)
    write_day_file(tmp_path, "notes.txt", b"not a table")

    day = FileLake(str(tmp_path)).read_day(TRADES, "BINANCE", "BTC-USDT", DAY)

    assert [Path(f.uri).name for f in day.files] == ["a.parquet", "b.parquet"]
    first, second = day.tables
    assert first.schema == SCHEMAS[TRADES] and second.schema == SCHEMAS[TRADES]
    # timestamp[ms] comes out as int64 nanoseconds.
    assert first.column("origin_time").to_pylist() == [T0_NS - 2_000_000, T0_NS - 1_000_000]
    assert first.column("trade_id").to_pylist() == [7, 8]
    assert first.column("quantity").to_pylist() == [0.25, 0.001]
    assert second.to_pylist() == canonical_trades().to_pylist()

    a = day.files[0]
    assert a.uri == file_uri(tmp_path / "trades" / DAY_FOLDER / "a.parquet")
    assert a.size == len(raw)
    assert a.sha256 == hashlib.sha256(raw).hexdigest()
    assert a.etag is None


def test_missing_day_folder_is_empty(tmp_path: Path) -> None:
    write_day_file(tmp_path, "a.parquet", parquet_bytes(canonical_trades()))
    lake = FileLake(tmp_path.as_uri())

    day = lake.read_day(TRADES, "BINANCE", "BTC-USDT", dt.date(2024, 8, 7))

    assert day.files == [] and day.tables == []
    assert lake.read_day("book", "BINANCE", "BTC-USDT", DAY).files == []


def test_missing_lake_folder_is_an_error_not_an_empty_day(tmp_path: Path) -> None:
    lake = FileLake(str(tmp_path / "no-such-lake"))

    with pytest.raises(LakeAccessError, match="no-such-lake: nothing is stored"):
        lake.read_day(TRADES, "BINANCE", "BTC-USDT", DAY)


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    write_day_file(tmp_path, "a.parquet", parquet_bytes(canonical_trades()))
    bad = write_day_file(tmp_path, "b.parquet", b"PAR1 but not really")

    with pytest.raises(SourceSchemaError, match="not a readable Parquet file") as caught:
        FileLake(str(tmp_path)).read_day(TRADES, "BINANCE", "BTC-USDT", DAY)

    assert str(caught.value).startswith(f"{file_uri(bad)}: ")


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = write_day_file(tmp_path, "a.parquet", parquet_bytes(raw_trades().drop(["price"])))

    with pytest.raises(SourceSchemaError) as caught:
        FileLake(str(tmp_path)).read_day(TRADES, "BINANCE", "BTC-USDT", DAY)

    message = str(caught.value)
    assert file_uri(path) in message and "'price'" in message


def test_unknown_table_and_path_segments_are_refused(tmp_path: Path) -> None:
    lake = FileLake(str(tmp_path))
    with pytest.raises(SourceSchemaError, match="unknown table 'quotes'"):
        lake.read_day("quotes", "BINANCE", "BTC-USDT", DAY)
    with pytest.raises(ValueError, match="invalid symbol"):
        lake.read_day(TRADES, "BINANCE", "../BTC-USDT", DAY)


@pytest.mark.skipif(not FIXTURE_LAKE.is_dir(), reason="../shared fixtures absent")
def test_reads_the_real_fixture_lake() -> None:
    lake = open_lake(RlxSettings(lake_url=str(FIXTURE_LAKE)))

    day = lake.read_day(TRADES, "BINANCE", "BTC-USDT", DAY)

    assert [Path(f.uri).name for f in day.files] == ["1.snappy.parquet"]
    (trades,) = day.tables
    assert trades.num_rows == 9757
    assert trades.schema == SCHEMAS[TRADES]
    assert set(trades.column("side").to_pylist()) == {"buy", "sell"}
    data = (FIXTURE_LAKE / "trades" / DAY_FOLDER / "1.snappy.parquet").read_bytes()
    assert day.files[0].sha256 == hashlib.sha256(data).hexdigest()


# open_lake dispatch and S3 options


def test_open_lake_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    relative = open_lake(RlxSettings(lake_url="lake"))
    by_uri = open_lake(RlxSettings(lake_url=file_uri(tmp_path / "lake")))

    assert isinstance(relative, FileLake) and isinstance(by_uri, FileLake)
    assert relative.url == by_uri.url == file_uri(tmp_path / "lake")


def test_open_lake_synthetic_is_imported_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in module: this test must not depend on the simulator.
    class FakeSyntheticLake:
        def __init__(self, scale: float, url: str) -> None:
            self.scale, self.url = scale, url

    module = types.ModuleType("rlx_assets.lake.synthetic.lake")
    module.SyntheticLake = FakeSyntheticLake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rlx_assets.lake.synthetic.lake", module)

    lake = open_lake(RlxSettings(lake_url="synthetic://", synthetic_scale=0.01))

    assert isinstance(lake, FakeSyntheticLake)
    assert (lake.scale, lake.url) == (0.01, "synthetic://")


def test_open_lake_refuses_unknown_schemes() -> None:
    with pytest.raises(ValueError, match="unsupported scheme 'ftp'"):
        open_lake(RlxSettings(lake_url="ftp://host/lake"))


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="credentials do not belong") as caught:
        FileLake(f"s3://{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}@bucket/prefix", {"anon": True})
    assert SECRET_ACCESS_KEY not in str(caught.value)
    assert "s3://bucket/prefix" in str(caught.value)


def test_s3_storage_options_from_settings(aws_env: None) -> None:
    settings = RlxSettings(s3_endpoint_url="http://127.0.0.1:9", s3_region="eu-west-1")
    retries = {"retries": {"mode": "standard", "total_max_attempts": 5}}
    assert s3_storage_options(settings) == {
        "anon": False,
        "use_listings_cache": False,
        "config_kwargs": retries,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"},
        "key": ACCESS_KEY_ID,
        "secret": SECRET_ACCESS_KEY,
    }
    # Anonymous access (the public sample bucket) sends no credentials even when some are set.
    assert s3_storage_options(RlxSettings(s3_anon=True)) == {
        "anon": True,
        "use_listings_cache": False,
        "config_kwargs": retries,
    }
    adaptive = RlxSettings(s3_retry_mode="adaptive", s3_max_attempts=8)
    assert s3_storage_options(adaptive)["config_kwargs"] == {
        "retries": {"mode": "adaptive", "total_max_attempts": 8}
    }


def test_access_errors_are_translated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError, NoCredentialsError

    lake = FileLake(str(tmp_path))

    def refuse(error: BaseException) -> Any:
        def ls(*args: Any, **kwargs: Any) -> Any:
            raise error

        return ls

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "x"}}, "ListObjectsV2")
    as_s3fs_raises = PermissionError("Access Denied")
    as_s3fs_raises.__cause__ = denied
    monkeypatch.setattr(lake.fs, "ls", refuse(as_s3fs_raises))
    with pytest.raises(LakeAccessError, match="access denied") as caught:
        lake.read_day(TRADES, "BINANCE", "BTC-USDT", DAY)
    assert str(caught.value).startswith(lake.url)

    monkeypatch.setattr(lake.fs, "ls", refuse(NoCredentialsError()))
    with pytest.raises(LakeAccessError, match="no AWS credentials found"):
        lake.read_day(TRADES, "BINANCE", "BTC-USDT", DAY)


# A real S3 server on loopback


def test_s3_round_trip(s3_server: str, s3_client: Any) -> None:
    bucket = unique_bucket()
    s3_client.create_bucket(Bucket=bucket)
    raw, canonical = parquet_bytes(raw_trades()), parquet_bytes(canonical_trades())
    s3_client.put_object(Bucket=bucket, Key=f"prefix/trades/{DAY_FOLDER}/b.parquet", Body=canonical)
    s3_client.put_object(Bucket=bucket, Key=f"prefix/trades/{DAY_FOLDER}/a.parquet", Body=raw)
    s3_client.put_object(Bucket=bucket, Key=f"prefix/trades/{DAY_FOLDER}/_SUCCESS", Body=b"")

    lake = open_lake(RlxSettings(lake_url=f"s3://{bucket}/prefix", s3_endpoint_url=s3_server))
    day = lake.read_day(TRADES, "BINANCE", "BTC-USDT", DAY)

    assert lake.url == f"s3://{bucket}/prefix"
    assert [f.uri for f in day.files] == [
        f"s3://{bucket}/prefix/trades/{DAY_FOLDER}/a.parquet",
        f"s3://{bucket}/prefix/trades/{DAY_FOLDER}/b.parquet",
    ]
    assert [t.num_rows for t in day.tables] == [2, 1]
    assert day.tables[1].to_pylist() == canonical_trades().to_pylist()
    for source, data, key in zip(day.files, (raw, canonical), ("a", "b"), strict=True):
        head = s3_client.head_object(Bucket=bucket, Key=f"prefix/trades/{DAY_FOLDER}/{key}.parquet")
        assert source.sha256 == hashlib.sha256(data).hexdigest()
        assert source.size == len(data)
        assert source.etag == head["ETag"].strip('"')
    assert SECRET_ACCESS_KEY not in repr(day.files) + repr(lake)

    # Missing day: empty. A file uploaded later shows up (no stale listing).
    assert lake.read_day(TRADES, "BINANCE", "BTC-USDT", dt.date(2024, 8, 9)).files == []
    later = "prefix/trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-09/1.parquet"
    s3_client.put_object(Bucket=bucket, Key=later, Body=canonical)
    assert len(lake.read_day(TRADES, "BINANCE", "BTC-USDT", dt.date(2024, 8, 9)).files) == 1


def test_s3_corrupt_object_names_the_s3_uri(s3_server: str, s3_client: Any) -> None:
    bucket = unique_bucket()
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key=f"trades/{DAY_FOLDER}/x.parquet", Body=b"garbage")

    lake = open_lake(RlxSettings(lake_url=f"s3://{bucket}", s3_endpoint_url=s3_server))
    with pytest.raises(SourceSchemaError, match="not a readable Parquet file") as caught:
        lake.read_day(TRADES, "BINANCE", "BTC-USDT", DAY)
    assert str(caught.value).startswith(f"s3://{bucket}/trades/{DAY_FOLDER}/x.parquet: ")


def test_s3_missing_bucket_is_a_clear_access_error(s3_server: str, aws_env: None) -> None:
    url = f"s3://{unique_bucket('rlx-absent')}/prefix"
    lake = open_lake(RlxSettings(lake_url=url, s3_endpoint_url=s3_server))

    with pytest.raises(LakeAccessError, match="the S3 bucket does not exist") as caught:
        lake.read_day(TRADES, "BINANCE", "BTC-USDT", DAY)

    message = str(caught.value)
    assert message.startswith(f"{url}/trades/")
    assert SECRET_ACCESS_KEY not in message and ACCESS_KEY_ID not in message


def test_s3_empty_prefix_is_an_access_error(s3_server: str, s3_client: Any) -> None:
    bucket = unique_bucket()
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key=f"real/trades/{DAY_FOLDER}/a.parquet", Body=b"x")

    lake = open_lake(RlxSettings(lake_url=f"s3://{bucket}/typo", s3_endpoint_url=s3_server))
    with pytest.raises(LakeAccessError, match=f"s3://{bucket}/typo: nothing is stored"):
        lake.read_day(TRADES, "BINANCE", "BTC-USDT", DAY)


def test_s3_anonymous_read_of_a_dotted_public_bucket(s3_server: str, s3_client: Any) -> None:
    # Like s3://sample.crypto.lake: a dotted name, read unsigned (RLX_S3_ANON=true).
    bucket = f"sample.{unique_bucket()}.lake"
    s3_client.create_bucket(Bucket=bucket)
    data = parquet_bytes(raw_trades())
    public = f"trades/{DAY_FOLDER}/1.snappy.parquet"
    s3_client.put_object(Bucket=bucket, Key=public, Body=data, ACL="public-read")
    private = "trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-09/1.snappy.parquet"
    s3_client.put_object(Bucket=bucket, Key=private, Body=data)

    settings = RlxSettings(lake_url=f"s3://{bucket}", s3_endpoint_url=s3_server, s3_anon=True)
    lake = open_lake(settings)
    day = lake.read_day(TRADES, "BINANCE", "BTC-USDT", DAY)

    assert [t.num_rows for t in day.tables] == [2]
    assert day.files[0].sha256 == hashlib.sha256(data).hexdigest()
    # The server refuses an anonymous read of a private object: a clear error naming it.
    with pytest.raises(LakeAccessError, match="access denied") as caught:
        lake.read_day(TRADES, "BINANCE", "BTC-USDT", dt.date(2024, 8, 9))
    assert str(caught.value).startswith(f"s3://{bucket}/{private}: ")
