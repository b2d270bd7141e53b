"""ParquetIOManager: layout, metadata, determinism, atomicity, missing inputs, s3:// on moto.

One file, over 450 lines: every behaviour of the one IO manager, beside the small assets that
exercise it.
"""

import io
from pathlib import Path
from typing import Any

import boto3
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    DailyPartitionsDefinition,
    DimensionPartitionMapping,
    IdentityPartitionMapping,
    MultiPartitionMapping,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
    TimeWindowPartitionMapping,
    asset,
    materialize,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from rlx_assets.resources.io_manager import ParquetIOManager, partition_path
from rlx_assets.resources.parquet_files import STAGING_DIR, PartitionWriter
from rlx_assets_tests import s3_server as s3

DAY1 = "2024-08-08|BTC-USDT"
DAY2 = "2024-08-09|BTC-USDT"
EXCHANGE = "BINANCE"

test_partitions = MultiPartitionsDefinition(
    {
        "date": DailyPartitionsDefinition(start_date="2024-08-08", end_date="2024-08-12"),
        "symbol": StaticPartitionsDefinition(["BTC-USDT", "ETH-USDT"]),
    }
)
# Starts a day earlier, so the previous day of DAY1 exists in the definition but not on disk.
early_partitions = MultiPartitionsDefinition(
    {
        "date": DailyPartitionsDefinition(start_date="2024-08-07", end_date="2024-08-12"),
        "symbol": StaticPartitionsDefinition(["BTC-USDT"]),
    }
)

PREVIOUS_DAY = MultiPartitionMapping(
    {
        "date": DimensionPartitionMapping(
            "date",
            TimeWindowPartitionMapping(
                start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
            ),
        ),
        "symbol": DimensionPartitionMapping("symbol", IdentityPartitionMapping()),
    }
)


def _day_table(date: str, symbol: str) -> pa.Table:
    """A small table whose content depends on the partition (so mix-ups show)."""
    n = 3 + int(date[-2:])
    return pa.table(
        {
            "origin_time": pa.array([1_723_075_200_000_000_000 + i for i in range(n)], pa.int64()),
            "price": pa.array([60_000.5 + i for i in range(n)], pa.float64()),
            "side": pa.array(["buy" if i % 2 else "sell" for i in range(n)], pa.string()),
            "day": pa.array([date] * n, pa.string()),
            "sym": pa.array([symbol] * n, pa.string()),
        }
    )


@asset(partitions_def=test_partitions)
def trades(context: AssetExecutionContext) -> pa.Table:
    dims = context.partition_key.keys_by_dimension
    return _day_table(dims["date"], dims["symbol"])


@asset(
    partitions_def=test_partitions,
    ins={"trades": AssetIn(partition_mapping=PREVIOUS_DAY, metadata={"allow_missing": True})},
)
def carry(trades: pa.Table | None) -> pa.Table:
    """Records what the previous day looked like (or that there was none)."""
    if trades is None:
        return pa.table({"prev_rows": [0], "prev_day": pa.array([None], pa.string())})
    return pa.table({"prev_rows": [trades.num_rows], "prev_day": [trades["day"][0].as_py()]})


@asset(partitions_def=test_partitions, ins={"trades": AssetIn(partition_mapping=PREVIOUS_DAY)})
def strict_first_day(trades: pa.Table | None) -> pa.Table:
    """No allow_missing: on the first day the mapping yields no partition at all, hence None."""
    return pa.table({"prev_rows": [0 if trades is None else trades.num_rows]})


@asset(partitions_def=early_partitions)
def early_trades(context: AssetExecutionContext) -> pa.Table:
    dims = context.partition_key.keys_by_dimension
    return _day_table(dims["date"], dims["symbol"])


@asset(
    partitions_def=early_partitions, ins={"early_trades": AssetIn(partition_mapping=PREVIOUS_DAY)}
)
def strict_carry(early_trades: pa.Table | None) -> pa.Table:
    return pa.table({"prev_rows": [0 if early_trades is None else early_trades.num_rows]})


@asset(
    partitions_def=early_partitions,
    ins={"early_trades": AssetIn(partition_mapping=PREVIOUS_DAY, metadata={"allow_missing": True})},
)
def lenient_carry(early_trades: pa.Table | None) -> pa.Table:
    return pa.table({"prev_rows": [0 if early_trades is None else early_trades.num_rows]})


LOADED: dict[str, pa.Table | None] = {}


@asset(ins={"trades": AssetIn(metadata={"allow_missing": True})})
def all_trades(trades: pa.Table | None) -> None:
    """Not partitioned: loads every upstream partition (the materialized ones, in key order);
    it writes nothing (the IO manager stores partitions only), so the test keeps what it read."""
    LOADED["all_trades"] = trades


@asset(partitions_def=test_partitions)
def summary() -> pl.DataFrame:
    return pl.DataFrame({"symbol": ["BTC-USDT", "ETH-USDT"], "days": [2, 1]})


@asset
def unpartitioned_summary() -> pa.Table:
    return pa.table({"rows": [2]})


@asset(partitions_def=test_partitions)
def nothing(context: AssetExecutionContext) -> None:
    return None


@asset(partitions_def=test_partitions, backfill_policy=BackfillPolicy.single_run())
def batched(context: AssetExecutionContext) -> pa.Table:
    return pa.table({"x": [1]})


def _io(base_url: str, **kwargs: Any) -> ParquetIOManager:
    return ParquetIOManager(base_url=base_url, exchange=EXCHANGE, **kwargs)


def _run(assets: list[Any], io_manager: ParquetIOManager, key: str, **kwargs: Any) -> Any:
    return materialize(assets, resources={"io_manager": io_manager}, partition_key=key, **kwargs)


def _materialization_metadata(result: Any, asset_name: str) -> dict[str, Any]:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset_name]
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _file(base: Path, asset_name: str, date: str, symbol: str = "BTC-USDT") -> Path:
    return Path(partition_path(str(base), asset_name, EXCHANGE, symbol, date))


# -- layout, metadata, round trip ----------------------------------------------------------------


def test_partition_path_layout() -> None:
    assert (
        partition_path("s3://bucket/prefix/", "raw_trades", "BINANCE", "BTC-USDT", "2024-08-08")
        == "s3://bucket/prefix/raw_trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08/part-0.parquet"
    )
    with pytest.raises(ValueError, match="symbol"):
        partition_path("x", "a", "BINANCE", "BTC/USDT", "2024-08-08")


def test_writes_hive_layout_with_metadata(tmp_path: Path) -> None:
    result = _run([trades], _io(str(tmp_path)), DAY1)
    assert result.success

    expected = tmp_path / "trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08/part-0.parquet"
    assert expected.is_file()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet")) == [
        "trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08/part-0.parquet"
    ]
    meta = _materialization_metadata(result, "trades")
    assert meta["path"] == str(expected)
    assert meta["row_count"] == 11
    assert meta["bytes"] == expected.stat().st_size
    assert pq.read_table(expected).equals(_day_table("2024-08-08", "BTC-USDT"))


@pytest.mark.parametrize(("codec", "written"), [("lz4", "LZ4"), ("zstd", "ZSTD")])
def test_the_configured_codec_is_written_and_read_back(
    tmp_path: Path, codec: str, written: str
) -> None:
    assert _run([trades], _io(str(tmp_path), compression=codec), DAY1).success
    parquet = pq.ParquetFile(_file(tmp_path, "trades", DAY1.split("|")[0]))
    assert parquet.metadata.row_group(0).column(0).compression == written
    assert parquet.read().equals(_day_table("2024-08-08", "BTC-USDT"))


def test_an_unknown_codec_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"brotli.*not one of"):
        _run([trades], _io(str(tmp_path), compression="brotli"), DAY1, raise_on_error=True)


def test_polars_reads_tree_with_hive_columns(tmp_path: Path) -> None:
    io_manager = _io(str(tmp_path))
    for key in (DAY1, DAY2, "2024-08-08|ETH-USDT"):
        assert _run([trades], io_manager, key).success

    frame = (
        pl.scan_parquet(f"{tmp_path}/trades/**/*.parquet", hive_partitioning=True)
        .collect()
        .sort("symbol", "dt", "origin_time")
    )
    assert {"exchange", "symbol", "dt"} <= set(frame.columns)
    assert frame.schema["dt"] == pl.Date
    counts = (
        frame.group_by("symbol", pl.col("dt").cast(pl.String)).len().sort("symbol", "dt").rows()
    )
    assert counts == [
        ("BTC-USDT", "2024-08-08", 11),
        ("BTC-USDT", "2024-08-09", 12),
        ("ETH-USDT", "2024-08-08", 11),
    ]
    assert frame["exchange"].unique().to_list() == [EXCHANGE]
    # The hive columns agree with the rows' own content.
    assert (frame["sym"] == frame["symbol"]).all()
    assert (frame["day"] == frame["dt"].cast(pl.String)).all()


def test_previous_day_input_is_none_on_first_day_then_yesterday(tmp_path: Path) -> None:
    io_manager = _io(str(tmp_path))
    assert _run([trades, carry], io_manager, DAY1).success
    assert pq.read_table(_file(tmp_path, "carry", "2024-08-08")).to_pylist() == [
        {"prev_rows": 0, "prev_day": None}
    ]
    assert _run([trades, carry], io_manager, DAY2).success
    assert pq.read_table(_file(tmp_path, "carry", "2024-08-09")).to_pylist() == [
        {"prev_rows": 11, "prev_day": "2024-08-08"}
    ]


def test_first_day_without_allow_missing_gets_none(tmp_path: Path) -> None:
    assert _run([trades, strict_first_day], _io(str(tmp_path)), DAY1).success
    table = pq.read_table(_file(tmp_path, "strict_first_day", "2024-08-08"))
    assert table.to_pylist() == [{"prev_rows": 0}]


def test_missing_optional_input_is_none(tmp_path: Path) -> None:
    # 2024-08-07 exists in the definition but was never materialized.
    result = _run([early_trades, lenient_carry], _io(str(tmp_path)), DAY1)
    assert result.success
    assert pq.read_table(_file(tmp_path, "lenient_carry", "2024-08-08")).to_pylist() == [
        {"prev_rows": 0}
    ]


def test_missing_required_input_names_asset_partition_and_path(tmp_path: Path) -> None:
    result = _run([early_trades, strict_carry], _io(str(tmp_path)), DAY1, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.error)
    missing = _file(tmp_path, "early_trades", "2024-08-07")
    assert "FileNotFoundError" in message
    assert "early_trades" in message
    assert "2024-08-07|BTC-USDT" in message
    assert str(missing) in message
    assert "Materialize 'early_trades'" in message


def test_several_input_partitions_concatenate_in_key_order(tmp_path: Path) -> None:
    io_manager = _io(str(tmp_path))
    for key in (DAY2, "2024-08-08|ETH-USDT", DAY1):
        assert _run([trades], io_manager, key).success
    result = materialize(
        [trades, all_trades], resources={"io_manager": io_manager}, selection=[all_trades]
    )
    assert result.success
    table = LOADED["all_trades"]
    assert table is not None
    assert table.equals(
        pa.concat_tables(
            [
                _day_table("2024-08-08", "BTC-USDT"),
                _day_table("2024-08-08", "ETH-USDT"),
                _day_table("2024-08-09", "BTC-USDT"),
            ]
        )
    )


def test_polars_output_round_trips(tmp_path: Path) -> None:
    result = _run([summary], _io(str(tmp_path)), DAY1)
    assert result.success
    stored = pq.read_table(_file(tmp_path, "summary", "2024-08-08"))
    assert stored.to_pylist() == [
        {"symbol": "BTC-USDT", "days": 2},
        {"symbol": "ETH-USDT", "days": 1},
    ]
    assert _materialization_metadata(result, "summary")["row_count"] == 2


def test_unpartitioned_asset_is_refused_by_name(tmp_path: Path) -> None:
    result = materialize(
        [unpartitioned_summary], resources={"io_manager": _io(str(tmp_path))}, raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = str(failure.step_failure_data.error)
    assert "asset 'unpartitioned_summary' is not partitioned" in error
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_none_output_writes_nothing(tmp_path: Path) -> None:
    assert _run([nothing], _io(str(tmp_path)), DAY1).success
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_several_partitions_in_one_output_are_refused(tmp_path: Path) -> None:
    result = materialize(
        [batched],
        resources={"io_manager": _io(str(tmp_path))},
        tags={ASSET_PARTITION_RANGE_START_TAG: DAY1, ASSET_PARTITION_RANGE_END_TAG: DAY2},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "one partition per output" in str(failure.step_failure_data.error)


def test_file_base_url_and_relative_base_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run([trades], _io(tmp_path.as_uri() + "/a"), DAY1).success
    monkeypatch.chdir(tmp_path)
    assert _run([trades], _io("b/assets"), DAY1).success
    first = _file(tmp_path / "a", "trades", "2024-08-08").read_bytes()
    second = _file(tmp_path / "b/assets", "trades", "2024-08-08").read_bytes()
    assert first == second


# -- determinism and atomicity -------------------------------------------------------------------


def test_same_table_gives_identical_bytes(tmp_path: Path) -> None:
    path = _file(tmp_path / "one", "trades", "2024-08-08")
    assert _run([trades], _io(str(tmp_path / "one")), DAY1).success
    first = path.read_bytes()
    assert _run([trades], _io(str(tmp_path / "one")), DAY1).success
    assert path.read_bytes() == first
    assert _run([trades], _io(str(tmp_path / "two")), DAY1).success
    assert _file(tmp_path / "two", "trades", "2024-08-08").read_bytes() == first


def test_a_writer_restarted_holds_only_what_was_written_after(tmp_path: Path) -> None:
    """`PartitionWriter.restart` (the raw deltas written as placed, proven wrong at the end of
    the day): the file is what a fresh writer makes of the later rows, byte for byte."""
    rows = pa.table({"id": pa.array(range(3_000_000), pa.int64())})
    restarted = PartitionWriter(str(tmp_path / "restarted.parquet"))
    restarted.metadata[b"rlx.note"] = b"kept"
    restarted.write(rows.slice(0, 2_500_000))  # two row groups written, half a group pending
    restarted.restart()
    restarted.write(rows.slice(1_000))
    restarted.close()
    fresh = PartitionWriter(str(tmp_path / "fresh.parquet"))
    fresh.metadata[b"rlx.note"] = b"kept"
    fresh.write(rows.slice(1_000))
    fresh.close()
    assert restarted.rows == fresh.rows == 3_000_000 - 1_000
    restarted_bytes = (tmp_path / "restarted.parquet").read_bytes()
    assert restarted_bytes == (tmp_path / "fresh.parquet").read_bytes()
    assert restarted.sha256 == fresh.sha256


def test_rewrite_removes_stale_part_files(tmp_path: Path) -> None:
    io_manager = _io(str(tmp_path))
    assert _run([trades], io_manager, DAY1).success
    folder = _file(tmp_path, "trades", "2024-08-08").parent
    pq.write_table(pa.table({"x": [1]}), folder / "part-1.parquet")
    assert _run([trades], io_manager, DAY1).success
    assert sorted(p.name for p in folder.iterdir()) == ["part-0.parquet"]


def test_crash_mid_write_keeps_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io_manager = _io(str(tmp_path))
    assert _run([trades], io_manager, DAY1).success
    path = _file(tmp_path, "trades", "2024-08-08")
    before = path.read_bytes()
    asset_glob = f"{tmp_path}/trades/**/*.parquet"
    real_write_table = pq.write_table
    seen_mid_write: dict[str, Any] = {}

    def crash_mid_write(table: pa.Table, where: Any, **kwargs: Any) -> None:
        # Half a real file, then die: the state a SIGKILL would freeze.
        buffer = io.BytesIO()
        real_write_table(table, buffer, **kwargs)
        where.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        where.flush()
        seen_mid_write["staged"] = [p.name for p in (tmp_path / STAGING_DIR).iterdir()]
        # What readers see at that instant: only the previous, complete version.
        seen_mid_write["glob_rows"] = pl.scan_parquet(asset_glob, hive_partitioning=True).collect()
        seen_mid_write["dir_rows"] = pl.scan_parquet(f"{tmp_path}/trades/").collect()
        seen_mid_write["base_glob"] = sorted(
            p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("**/*.parquet")
        )
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(pq, "write_table", crash_mid_write)
    result = _run([trades], io_manager, DAY1, raise_on_error=False)
    monkeypatch.undo()

    assert not result.success
    assert len(seen_mid_write["staged"]) == 1  # the half file existed, under .staging/ only
    assert seen_mid_write["staged"][0].endswith(".tmp")
    assert seen_mid_write["glob_rows"].height == 11
    assert seen_mid_write["dir_rows"].height == 11
    assert seen_mid_write["base_glob"] == [
        "trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08/part-0.parquet"
    ]
    assert path.read_bytes() == before
    assert list((tmp_path / STAGING_DIR).iterdir()) == []  # a failed write cleans up after itself
    assert pl.scan_parquet(asset_glob, hive_partitioning=True).collect().height == 11


# -- s3:// against a real moto server on loopback ------------------------------------------------


SECRET = s3.SECRET_ACCESS_KEY
aws_env, s3_server = s3.aws_env, s3.s3_server


@pytest.fixture
def moto_endpoint(s3_server: str, aws_env: None) -> str:
    return s3_server


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    bucket = s3.unique_bucket()
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    return bucket


def _s3_bytes(endpoint: str, bucket: str, key: str) -> bytes:
    client = boto3.client("s3", endpoint_url=endpoint)
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_s3_round_trip(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    io_manager = _io(f"s3://{s3_bucket}/assets", s3_endpoint_url=moto_endpoint)
    result = _run([trades, carry], io_manager, DAY1)
    assert result.success
    key = "assets/trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08/part-0.parquet"
    meta = _materialization_metadata(result, "trades")
    assert meta["path"] == f"s3://{s3_bucket}/{key}"
    assert meta["path"] == partition_path(
        f"s3://{s3_bucket}/assets", "trades", EXCHANGE, "BTC-USDT", "2024-08-08"
    )
    remote = _s3_bytes(moto_endpoint, s3_bucket, key)
    assert meta["bytes"] == len(remote)
    assert meta["row_count"] == 11
    assert SECRET not in repr(meta)

    # Readers: polars straight from the bucket, with the hive columns.
    frame = pl.scan_parquet(
        f"s3://{s3_bucket}/assets/trades/**/*.parquet",
        hive_partitioning=True,
        storage_options={
            "aws_endpoint_url": moto_endpoint,
            "aws_allow_http": "true",
            "aws_region": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": SECRET,
        },
    ).collect()
    assert frame.height == 11
    assert frame.select("exchange", "symbol").unique().rows() == [(EXCHANGE, "BTC-USDT")]

    # Same bytes as the local backend: one serializer for both.
    assert _run([trades], _io(str(tmp_path)), DAY1).success
    assert _file(tmp_path, "trades", "2024-08-08").read_bytes() == remote

    # Day 2 reads day 1 back from S3.
    assert _run([trades, carry], io_manager, DAY2).success
    carried = pq.read_table(
        io.BytesIO(
            _s3_bytes(
                moto_endpoint,
                s3_bucket,
                "assets/carry/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-09/part-0.parquet",
            )
        )
    )
    assert carried.to_pylist() == [{"prev_rows": 11, "prev_day": "2024-08-08"}]


def test_s3_crash_mid_write_keeps_previous_object(
    moto_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    io_manager = _io(f"s3://{s3_bucket}/assets", s3_endpoint_url=moto_endpoint)
    assert _run([trades], io_manager, DAY1).success
    key = "assets/trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08/part-0.parquet"
    before = _s3_bytes(moto_endpoint, s3_bucket, key)

    def crash_mid_write(table: pa.Table, where: Any, **kwargs: Any) -> None:
        where.write(b"PAR1 half a file")
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(pq, "write_table", crash_mid_write)
    result = _run([trades], io_manager, DAY1, raise_on_error=False)
    monkeypatch.undo()

    assert not result.success
    assert _s3_bytes(moto_endpoint, s3_bucket, key) == before
    listed = boto3.client("s3", endpoint_url=moto_endpoint).list_objects_v2(Bucket=s3_bucket)
    assert [o["Key"] for o in listed["Contents"]] == [key]


def test_s3_missing_required_input_names_path(moto_endpoint: str, s3_bucket: str) -> None:
    io_manager = _io(f"s3://{s3_bucket}/assets", s3_endpoint_url=moto_endpoint)
    result = _run([early_trades, strict_carry], io_manager, DAY1, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert (
        f"s3://{s3_bucket}/assets/early_trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-07"
        in message
    )
    assert SECRET not in message
