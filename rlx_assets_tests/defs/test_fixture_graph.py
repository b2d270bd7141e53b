"""The whole graph, in process, on the committed slice of real Binance data around midnight."""

import dataclasses
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from rlx_assets.defs.quality.assets import REPORT_COLUMNS
from rlx_assets.resources.io_manager import partition_path
from rlx_assets_tests.conftest import (
    FIXTURE_DAYS,
    SLICE,
    checks,
    make_settings,
    materializations,
    materialize_day,
)

ASSETS = (
    "raw_trades",
    "raw_book_snapshots",
    "raw_book_deltas",
    "reconstructed_book",
    "book_state",
    "unified_events",
    "validation_report",
    "fidelity_report",
    "microstructure_metrics",
)


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory):
    storage = tmp_path_factory.mktemp("assets")
    settings = make_settings(storage)
    results = [materialize_day(settings, day) for day in FIXTURE_DAYS]
    return settings, results


def test_both_days_succeed_with_every_check_passing(two_days) -> None:
    _, results = two_days
    for result in results:
        assert result.success
        assert set(materializations(result)) == set(ASSETS)
        evaluations = result.get_asset_check_evaluations()
        assert len(evaluations) == 3 * 6 + 5 + 1 + 2
        assert all(evaluation.passed for evaluation in evaluations)
        # Each day's results stand on their own in the UI.
        assert {evaluation.partition for evaluation in evaluations} == {
            f"{FIXTURE_DAYS[results.index(result)]}|BTC-USDT"
        }


def test_rebuilt_books_equal_the_vendor_snapshots(two_days) -> None:
    _, results = two_days
    for result in results:
        book = materializations(result)["reconstructed_book"]
        assert book["vendor_snapshots_compared"] > 800
        assert book["top20_match_share"] >= 0.999
        assert book["crossed_books_published"] == 0


def test_the_second_day_continues_from_the_first_days_book(two_days) -> None:
    _, (first, second) = two_days
    assert materializations(first)["reconstructed_book"]["seed"] == "snapshot_burst"
    assert materializations(second)["reconstructed_book"]["cold_start"] is False
    assert materializations(second)["reconstructed_book"]["seed"] == "previous_book_state"


def test_every_trade_appears_exactly_once_across_the_two_days(two_days) -> None:
    settings, _ = two_days
    source = pl.read_parquet(SLICE / "trades" / "**" / "*.parquet")
    events = pl.scan_parquet(
        f"{settings.storage_url}/unified_events/**/*.parquet", hive_partitioning=True
    ).filter(pl.col("event_type") == "TRADE")
    trade_ids = events.select("trade_id", "dt").collect()
    assert trade_ids["trade_id"].is_duplicated().sum() == 0
    assert sorted(trade_ids["trade_id"].to_list()) == sorted(source["trade_id"].to_list())
    assert trade_ids["dt"].n_unique() == 2


def test_rows_filed_under_the_next_dt_are_counted_in_their_own_day(two_days) -> None:
    _, (first, second) = two_days
    # The collector's clock ran ~1.3 s behind: 2024-08-09 rows sit in the 2024-08-08 folder.
    assert materializations(second)["raw_trades"]["rows_from_neighbour_dt"] > 0
    assert materializations(first)["raw_trades"]["rows_other_days"] > 0


def test_hive_layout_is_readable_and_decimal(two_days) -> None:
    settings, _ = two_days
    path = partition_path(
        settings.storage_url, "reconstructed_book", "BINANCE", "BTC-USDT", FIXTURE_DAYS[0]
    )
    assert Path(path).is_file()
    schema = pq.read_schema(path)
    assert str(schema.field("bid_0_price").type) == "decimal128(38, 18)"
    frame = pl.scan_parquet(
        f"{settings.storage_url}/reconstructed_book/**/*.parquet", hive_partitioning=True
    )
    assert {"exchange", "symbol", "dt"} <= set(frame.collect_schema().names())


def test_materializing_a_partition_again_gives_identical_bytes(two_days, tmp_path: Path) -> None:
    settings, _ = two_days
    again = make_settings(tmp_path)
    assert materialize_day(again, FIXTURE_DAYS[0]).success
    for asset in ASSETS:
        first = partition_path(settings.storage_url, asset, "BINANCE", "BTC-USDT", FIXTURE_DAYS[0])
        second = partition_path(again.storage_url, asset, "BINANCE", "BTC-USDT", FIXTURE_DAYS[0])
        assert Path(first).read_bytes() == Path(second).read_bytes(), asset


def test_a_crossed_book_blocks_unified_events(monkeypatch, tmp_path: Path) -> None:
    from rlx_assets.defs.book import assets as book_assets

    real = book_assets.stream_day

    def crossed(*args, **kwargs):
        result, report = real(*args, **kwargs)
        stats = {**result.stats, "crossed_books_published": 3}
        return dataclasses.replace(result, stats=stats), report

    monkeypatch.setattr(book_assets, "stream_day", crossed)
    result = materialize_day(make_settings(tmp_path), FIXTURE_DAYS[0])
    assert not result.success
    check = checks(result)["book_never_crossed"]
    assert not check.passed and check.metadata["crossed_books_published"].value == 3
    assert "unified_events" not in materializations(result)


def test_a_day_without_deltas_is_snapshot_anchored(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for table in ("trades", "book"):
        source = SLICE / table / "exchange=BINANCE" / "symbol=BTC-USDT"
        target = lake / table / "exchange=BINANCE" / "symbol=BTC-USDT"
        for folder in source.iterdir():
            (target / folder.name).mkdir(parents=True)
            for file in folder.iterdir():
                (target / folder.name / file.name).write_bytes(file.read_bytes())
    settings = make_settings(tmp_path / "assets", lake=lake)
    result = materialize_day(settings, FIXTURE_DAYS[1])
    assert result.success
    found = materializations(result)
    assert found["reconstructed_book"]["strategy"] == "snapshot_anchored"
    assert (
        found["reconstructed_book"]["dagster/row_count"]
        == found["raw_book_snapshots"]["dagster/row_count"]
    )
    events = found["unified_events"]["events_by_type"]
    assert events["TRADE"] == found["raw_trades"]["dagster/row_count"]
    assert events["BOOK_SNAPSHOT"] == found["raw_book_snapshots"]["dagster/row_count"]
    assert "BOOK_DELTA" not in events
    assert found["validation_report"]["strategy"] == "snapshot_anchored"


def test_validation_report_carries_the_design_columns(two_days) -> None:
    settings, _ = two_days
    path = partition_path(
        settings.storage_url, "validation_report", "BINANCE", "BTC-USDT", FIXTURE_DAYS[1]
    )
    row = pq.read_table(path).to_pylist()[0]
    for column in REPORT_COLUMNS:
        assert column in row, column
    assert row["strategy"] == "full_replay" and row["cold_start"] is False
    assert row["crossed_books_published"] == 0 and row["top20_match_share"] == 1.0
    # The collector's clock ran ~1.27 s behind the exchange's.
    assert -1300 < row["clock_skew_p50_ms"] < -1250
    assert row["precision_loss_warnings"] >= 1  # real off-grid sizes such as 25.426189
    assert 0 < row["trade_to_book_ratio"] < 10
    assert len(row["gaps_detected_per_hour"]) == 24


def test_fidelity_against_the_golden_sample(two_days) -> None:
    _, results = two_days
    for result in results:
        report = materializations(result)["fidelity_report"]
        assert report["verdict"] == "PASS"
        assert report["top_of_book_agreement"] >= 0.999
        assert report["book_ticker_compared"] > 100
        assert report["best_bid_rmse"] == 0.0
        assert "data:image/png;base64," in report["plots"]


def test_without_a_golden_sample_the_fidelity_checks_are_skipped(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, golden_dir=str(tmp_path / "no-golden"))
    result = materialize_day(settings, FIXTURE_DAYS[0])
    assert result.success
    assert materializations(result)["fidelity_report"]["verdict"] == "NO_GOLDEN_SAMPLE"
    evaluated = set(checks(result))
    assert "top_of_book_matches_golden" not in evaluated
    assert "distributions_match_golden" not in evaluated


def test_microstructure_metrics_per_minute(two_days) -> None:
    settings, results = two_days
    metrics = materializations(results[1])["microstructure_metrics"]
    assert metrics["dagster/row_count"] == 2  # the slice spans 00:00:00 to 00:01:30
    assert metrics["spread_p50"] == 0.01  # one tick, the usual BTC-USDT spread
    assert 1 < metrics["trade_to_book_ratio"] < 10  # several trades per 100 ms depth message
    frame = pl.read_parquet(
        partition_path(
            settings.storage_url, "microstructure_metrics", "BINANCE", "BTC-USDT", FIXTURE_DAYS[1]
        )
    )
    assert frame["trades"].sum() == materializations(results[1])["raw_trades"]["dagster/row_count"]


def test_raw_tables_record_the_digits_their_values_need(two_days) -> None:
    settings, _ = two_days
    path = partition_path(
        settings.storage_url, "raw_book_deltas", "BINANCE", "BTC-USDT", FIXTURE_DAYS[0]
    )
    metadata = pq.ParquetFile(path).metadata.metadata  # written when the day's digits are known
    # Prices on the 0.01 tick; sizes need 6 digits for real off-grid sizes such as 25.426189.
    assert metadata[b"rlx.price_digits"] == b"2"
    assert metadata[b"rlx.size_digits"] == b"6"


def test_streaming_in_small_chunks_publishes_the_same_book(two_days, tmp_path: Path) -> None:
    settings, results = two_days
    small = make_settings(tmp_path, replay_chunk_rows=3_000)
    for day, default in zip(FIXTURE_DAYS, results, strict=True):
        result = materialize_day(small, day)
        assert result.success
        book = materializations(result)["reconstructed_book"]
        assert book["streaming"] is True and book["chunks"] > 10
        assert (
            book["dagster/row_count"]
            == materializations(default)["reconstructed_book"]["dagster/row_count"]
        )
        for asset in ("reconstructed_book", "book_state"):
            chunked = pq.read_table(
                partition_path(small.storage_url, asset, "BINANCE", "BTC-USDT", day)
            )
            whole = pq.read_table(
                partition_path(settings.storage_url, asset, "BINANCE", "BTC-USDT", day)
            )
            assert chunked.equals(whole), asset
