"""Every check fires on the fault it guards against, with the figure in its metadata, and passes
on clean data. Faults are injected into a copy of the committed real-data slice."""

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance

from rlx_assets.engine.days import day_bounds_ns
from rlx_assets.engine.events import EventTally, unified_event_batches
from rlx_assets.engine.merge import SpillReport
from rlx_assets_tests.conftest import (
    FIXTURE_DAYS,
    SLICE,
    make_settings,
    materializations,
    materialize_day,
)

DAY = FIXTURE_DAYS[0]
PARTITION = "exchange=BINANCE/symbol=BTC-USDT"


def _lake(tmp_path: Path, table: str, change: Callable[[pl.DataFrame], pl.DataFrame]) -> Path:
    """A copy of the slice with `change` applied to the table's file filed under DAY."""
    lake = tmp_path / "lake"
    shutil.copytree(SLICE, lake)
    path = lake / table / PARTITION / f"dt={DAY}" / "1.parquet"
    change(pl.read_parquet(path)).write_parquet(path)
    return lake


def _check(result, asset: str, name: str):
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.asset_key.to_user_string() == asset and evaluation.check_name == name:
            return evaluation
    raise AssertionError(f"{asset}.{name} was not evaluated")


def _every_nth(frame: pl.DataFrame, n: int) -> pl.Expr:
    return (pl.int_range(pl.len()) % n) == 0


def _run(tmp_path: Path, lake: Path, **settings):
    return materialize_day(make_settings(tmp_path / "assets", lake=lake, **settings), DAY)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("clean")
    return materialize_day(
        make_settings(tmp, max_mid_deviation_bps=1e-6, min_top20_match_share=1.0), DAY
    )


def test_clean_data_passes_every_check(clean) -> None:
    assert clean.success
    failed = [e.check_name for e in clean.get_asset_check_evaluations() if not e.passed]
    assert failed == []


def test_origin_time_complete_fires_on_missing_origin_times(tmp_path: Path) -> None:
    lake = _lake(
        tmp_path,
        "trades",
        lambda f: f.with_columns(
            pl.when(_every_nth(f, 50))
            .then(None)
            .otherwise(pl.col("origin_time"))
            .alias("origin_time")
        ),
    )
    result = _run(tmp_path, lake)
    check = _check(result, "raw_trades", "origin_time_complete")
    assert not check.passed
    share = check.metadata["origin_time_invalid_share"].value
    assert share == pytest.approx(0.02, abs=0.002)
    assert check.metadata["origin_time_null_share"].value == pytest.approx(share, abs=1e-9)


def test_clock_skew_within_limit_fires_on_a_skew_burst(tmp_path: Path) -> None:
    burst = 10_000 * 1_000_000  # received 10 s late, for 5% of rows
    lake = _lake(
        tmp_path,
        "book_delta_v2",
        lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) > int(f.height * 0.95))
            .then(pl.col("received_time") + burst)
            .otherwise(pl.col("received_time"))
        ),
    )
    check = _check(_run(tmp_path, lake), "raw_book_deltas", "clock_skew_within_limit")
    assert not check.passed
    assert check.metadata["clock_skew_excess_ms"].value > 8_000
    assert check.metadata["threshold_ms"].value == 5_000


def test_no_precision_loss_fires_on_off_grid_prices(tmp_path: Path) -> None:
    lake = _lake(
        tmp_path,
        "trades",
        lambda f: f.with_columns(
            pl.when(_every_nth(f, 100))
            .then(pl.col("price") + 0.003)
            .otherwise(pl.col("price"))
            .alias("price")
        ),
    )
    result = _run(tmp_path, lake, instrument_grids={"BTC-USDT": ("0.01", "0.00001")})
    check = _check(result, "raw_trades", "no_precision_loss")
    assert not check.passed
    rows = pl.read_parquet(lake / "trades" / PARTITION / f"dt={DAY}").height
    assert check.metadata["precision_loss_share"].value == pytest.approx(
        (rows // 100 + 1) / (2 * rows), rel=0.05
    )


def test_book_checks_fire_when_messages_are_lost(tmp_path: Path) -> None:
    """Drop 2% of delta messages (a gappy feed): the rebuilt book disagrees with vendor
    snapshots, every disagreement is resynced (gaps filled), and the deviation figures show it."""
    lake = _lake(
        tmp_path,
        "book_delta_v2",
        lambda f: f.filter(
            (pl.col("sequence_number").rank("dense") % 50 != 7)
            | (pl.col("sequence_number") == f["sequence_number"][0])
        ),
    )
    result = _run(tmp_path, lake, max_mid_deviation_bps=1e-6, min_top20_match_share=0.999)
    share = _check(result, "reconstructed_book", "top20_matches_vendor")
    assert not share.passed
    assert share.metadata["top20_match_share"].value < 0.99
    assert share.metadata["gaps_detected"].value > 0
    deviation = _check(result, "reconstructed_book", "mid_deviation_within_limit")
    assert not deviation.passed and deviation.metadata["mid_deviation_max_bps"].value > 1e-6
    gaps = _check(result, "reconstructed_book", "gaps_filled")
    assert gaps.passed
    assert gaps.metadata["gaps_filled"].value == gaps.metadata["gaps_detected"].value
    assert _check(result, "reconstructed_book", "book_never_crossed").passed


def test_gaps_filled_fires_on_a_gap_no_snapshot_confirms(tmp_path: Path) -> None:
    """A feed with contiguous ids (gaps detectable) loses a message after the last snapshot."""

    def renumber(frame: pl.DataFrame) -> pl.DataFrame:
        dense = frame["sequence_number"].rank("dense").cast(pl.Int64)
        frame = frame.with_columns(sequence_number=dense + 1_000)
        # The file's last rows carry the next day's stamps: lose a message of DAY itself.
        midnight = day_bounds_ns(DAY)[1]
        last = frame.filter(pl.col("origin_time") < midnight)["sequence_number"].max()
        return frame.filter(pl.col("sequence_number") != last - 3)

    lake = _lake(tmp_path, "book_delta_v2", renumber)
    snapshots = lake / "book" / PARTITION / f"dt={DAY}" / "1.parquet"
    pl.read_parquet(snapshots).head(0).write_parquet(snapshots)  # no vendor snapshot confirms
    result = _run(tmp_path, lake)
    check = _check(result, "reconstructed_book", "gaps_filled")
    assert not check.passed
    assert check.metadata["sequence_id_gaps"].value == 1
    assert check.metadata["unfilled"].value == 1
    assert not result.success  # blocking: unified_events did not run on an unconfirmed book
    assert "unified_events" not in {
        e.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }


def test_events_chronological_fires_on_rows_stamped_outside_the_day(tmp_path: Path) -> None:
    """One row of a delta message carries a stamp a day later than its message."""
    one_day = 86_400 * 10**9
    lake = _lake(
        tmp_path,
        "book_delta_v2",
        lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) == 2001)
            .then(pl.col("origin_time") + one_day)
            .otherwise(pl.col("origin_time"))
        ),
    )
    check = _check(_run(tmp_path, lake), "unified_events", "events_chronological")
    assert not check.passed
    assert check.metadata["outside_day"].value == 1


def _golden_copy(tmp_path: Path, change: Callable[[dict], dict]) -> Path:
    golden = tmp_path / "golden"
    golden.mkdir()
    for source in (SLICE / "golden").iterdir():
        with gzip.open(source, "rt") as lines, gzip.open(golden / source.name, "wt") as out:
            for line in lines:
                out.write(json.dumps(change(json.loads(line))) + "\n")
    return golden


def test_top_of_book_matches_golden_fires_when_the_exchange_disagrees(tmp_path: Path) -> None:
    def shift_bids(record: dict) -> dict:
        if record["stream"].endswith("@bookTicker") and record["data"]["u"] % 10 < 3:
            record["data"]["b"] = f"{float(record['data']['b']) - 0.01:.8f}"
        return record

    golden = _golden_copy(tmp_path, shift_bids)
    result = _run(tmp_path, SLICE, golden_dir=str(golden))
    check = _check(result, "fidelity_report", "top_of_book_matches_golden")
    assert not check.passed
    assert 0.5 < check.metadata["top_of_book_agreement"].value < 0.9
    assert check.metadata["best_bid_rmse"].value > 0


def test_distributions_match_golden_fires_on_different_trade_sizes(tmp_path: Path) -> None:
    def inflate(record: dict) -> dict:
        if record["stream"].endswith("@trade"):
            record["data"]["q"] = f"{float(record['data']['q']) * 10:.8f}"
            record["data"]["t"] += 10**12  # other trades: the ids no longer match
        return record

    golden = _golden_copy(tmp_path, inflate)
    result = _run(tmp_path, SLICE, golden_dir=str(golden))
    check = _check(result, "fidelity_report", "distributions_match_golden")
    assert not check.passed
    assert check.metadata["ks_trade_size_p"].value < 0.01


def test_a_faulty_synthetic_day_is_repaired_reported_and_flagged(tmp_path: Path) -> None:
    faults = "gaps=0.02,stale_levels=0.02,duplicates=0.005,clock_skew=0.05,origin_time_nulls=0.01"
    settings = make_settings(tmp_path, lake=f"synthetic://?faults={faults}")
    result = materialize_day(settings, DAY)
    assert result.success  # repaired books are published: blocking checks hold
    assert _check(result, "reconstructed_book", "book_never_crossed").passed
    assert _check(result, "reconstructed_book", "gaps_filled").passed
    assert not _check(result, "raw_trades", "origin_time_complete").passed
    assert not _check(result, "raw_book_deltas", "clock_skew_within_limit").passed
    report = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }["validation_report"]
    assert report["duplicates_dropped"].value > 0
    assert report["gaps_detected"].value == report["gaps_filled"].value > 0
    assert report["stale_levels_repaired"].value > 0


def test_quarantined_rows_are_kept_beside_the_assets_with_their_reason(tmp_path: Path) -> None:
    lake = _lake(
        tmp_path,
        "trades",
        lambda f: f.with_columns(
            pl.when(_every_nth(f, 500)).then(-1.0).otherwise(pl.col("quantity")).alias("quantity")
        ),
    )
    result = _run(tmp_path, lake)
    assert result.success
    raw = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }["raw_trades"]
    quarantined = pl.read_parquet(raw["quarantine_path"].value)
    assert quarantined.height == raw["rows_quarantined"].value > 0
    assert set(quarantined["reason"]) == {"not_positive:quantity"}
    assert (quarantined["quantity"] == -1.0).all()  # as the vendor sent it


def test_rows_quarantined_within_limit_fires_when_trade_times_are_in_milliseconds(
    tmp_path: Path,
) -> None:
    """A vendor file written in ms: every trade is quarantined (stamped decades away from the
    dt that filed it), not sent silently to another day."""
    lake = _lake(
        tmp_path,
        "trades",
        lambda f: f.with_columns(pl.col("origin_time") // 10**6, pl.col("received_time") // 10**6),
    )
    result = _run(tmp_path, lake)
    check = _check(result, "raw_trades", "rows_quarantined_within_limit")
    assert not check.passed
    assert check.metadata["quarantined_share"].value == 1.0
    assert check.metadata["quarantine_reasons"].value == {
        "time_far_from_filed_dt": check.metadata["rows_quarantined"].value
    }


def test_book_replayed_from_deltas_warns_on_a_day_without_deltas(tmp_path: Path) -> None:
    lake = _lake(tmp_path, "book_delta_v2", lambda f: f.head(0))
    result = _run(tmp_path, lake)
    check = _check(result, "reconstructed_book", "book_replayed_from_deltas")
    assert not check.passed
    assert check.severity.value == "WARN"
    assert check.metadata["strategy"].value != "full_replay"


def test_grid_stable_reports_a_day_that_needs_a_finer_tick_than_the_day_before(
    tmp_path: Path,
) -> None:
    """Day 2's prices move to a finer grid (one in ten 0.001 off the 0.01 tick): it keeps day
    1's grid, so the change shows as a failed check and flagged values, not a silent new grid."""
    lake = tmp_path / "lake"
    shutil.copytree(SLICE, lake)
    path = lake / "trades" / PARTITION / f"dt={FIXTURE_DAYS[1]}" / "1.parquet"
    frame = pl.read_parquet(path)
    frame.with_columns(
        pl.when(_every_nth(frame, 10)).then(pl.col("price") + 0.001).otherwise(pl.col("price"))
    ).write_parquet(path)
    settings = make_settings(tmp_path / "assets", lake=lake)
    with DagsterInstance.ephemeral() as instance:
        first = materialize_day(settings, DAY, instance=instance, selection=["raw_trades"])
        second = materialize_day(
            settings, FIXTURE_DAYS[1], instance=instance, selection=["raw_trades"]
        )
    assert materializations(first)["raw_trades"]["grid_source"] == "inferred"
    assert _check(first, "raw_trades", "grid_stable").passed
    metadata = materializations(second)["raw_trades"]
    assert metadata["grid_source"] == "previous_day"
    assert (metadata["price_step"], metadata["price_step_inferred"]) == ("1e-2", "1e-3")
    check = _check(second, "raw_trades", "grid_stable")
    assert not check.passed
    assert check.metadata["grids_needing_finer_step"].value == ["price"]
    assert not _check(second, "raw_trades", "no_precision_loss").passed


def test_deltas_whose_times_go_back_are_sorted_into_the_event_stream(tmp_path: Path) -> None:
    # Every 50th message stamped 2 s early: kept by the raw step (near its neighbours), but
    # out of time order along the sequence, so the event stream must sort the deltas.
    lake = _lake(
        tmp_path,
        "book_delta_v2",
        lambda f: f.with_columns(
            pl.when(pl.col("sequence_number") % 50 == 0)
            .then(pl.col("origin_time") - 2_000_000_000)
            .otherwise(pl.col("origin_time"))
        ),
    )
    instance = DagsterInstance.ephemeral()
    settings = make_settings(tmp_path / "assets", lake=lake)
    result = materialize_day(settings, DAY, instance=instance)
    assert result.success
    assert _check(result, "unified_events", "events_chronological").passed
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("BOOK_DELTA input is not in (time, id) order" in line for line in logs)
    found = materializations(result)
    events = found["unified_events"]
    by_type = events["events_by_type"]
    assert by_type["BOOK_DELTA"] == found["raw_book_deltas"]["dagster/row_count"]
    assert by_type["TRADE"] == found["raw_trades"]["dagster/row_count"]
    assert events["dagster/row_count"] == sum(by_type.values())

    # The same stream as when every input is checked by a pass of its own first.
    def source(name: str):
        path = found[name]["path"]
        return lambda columns, rows: pq.ParquetFile(path).iter_batches(rows, columns=columns)

    checked_first = unified_event_batches(
        source("raw_trades"),
        source("raw_book_deltas"),
        source("reconstructed_book"),
        tmp_path,
        SpillReport(),
        EventTally(0, 1 << 62),
    )
    expected = pa.concat_tables(checked_first)
    assert pq.read_table(events["path"]).equals(expected)
