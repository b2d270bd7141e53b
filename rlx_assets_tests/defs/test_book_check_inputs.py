"""The reconstructed book's checks through Dagster, on days whose files hold the fault (copies
of the committed real-data slice, see `doctored_lake`): no figure is patched."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from rlx_assets.engine import without_deltas
from rlx_assets.resources.io_manager import partition_path
from rlx_assets_tests import doctored_lake as doctored
from rlx_assets_tests.conftest import (
    SLICE,
    checks,
    make_settings,
    materializations,
    materialize_day,
)

# The assets the book checks need and what they block; the quality reports are not needed.
BOOK_ASSETS = [
    "raw_trades",
    "raw_book_snapshots",
    "raw_book_deltas",
    "reconstructed_book",
    "book_state",
    "unified_events",
]


def _materialize(tmp_path: Path, lake: Path):
    settings = make_settings(tmp_path / "assets", lake=lake)  # default thresholds
    result = materialize_day(settings, doctored.DAY, selection=BOOK_ASSETS)
    return settings, result


def _published_crossed_rows(settings) -> int:
    path = partition_path(
        settings.storage_url, "reconstructed_book", "BINANCE", "BTC-USDT", doctored.DAY
    )
    book = pl.read_parquet(path)
    both = (pl.col("bid_0_size") > 0) & (pl.col("ask_0_size") > 0)
    return book.filter(both & (pl.col("bid_0_price") >= pl.col("ask_0_price"))).height


@pytest.fixture(scope="module")
def crossed_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return doctored.doctored_lake(tmp_path_factory.mktemp("crossed"), doctored.crossed_snapshots(5))


def test_crossed_vendor_snapshots_are_repaired_and_the_book_passes(crossed_lake, tmp_path):
    settings, result = _materialize(tmp_path, crossed_lake)
    assert result.success
    found = materializations(result)
    assert found["reconstructed_book"]["strategy"] == "snapshot_anchored"
    assert found["reconstructed_book"]["stale_levels_repaired"] == 2 * 5
    check = checks(result)["book_never_crossed"]
    assert check.passed and check.metadata["crossed_books_published"].value == 0
    assert _published_crossed_rows(settings) == 0


def test_book_never_crossed_fires_on_crossed_rows_that_escape_the_repair(
    crossed_lake, tmp_path, monkeypatch
):
    """The repair regresses and leaves the crossing levels: the published book is crossed, the
    check counts exactly those rows, and unified_events is blocked."""
    monkeypatch.setattr(without_deltas, "_uncross_row", lambda *levels: 0)
    settings, result = _materialize(tmp_path, crossed_lake)
    assert not result.success
    check = checks(result)["book_never_crossed"]
    assert not check.passed
    assert check.metadata["crossed_books_published"].value == 5
    assert _published_crossed_rows(settings) == 5
    assert "unified_events" not in materializations(result)


def test_gaps_filled_holds_when_a_later_snapshot_confirms_a_lost_message(tmp_path):
    lake = doctored.doctored_lake(tmp_path, doctored.lose_a_message(snapshots_after_the_gap=True))
    _, result = _materialize(tmp_path, lake)
    check = checks(result)["gaps_filled"]
    assert check.metadata["sequence_id_gaps"].value == 1
    assert check.passed
    assert check.metadata["unfilled"].value == 0
    assert check.metadata["gaps_filled"].value == check.metadata["gaps_detected"].value >= 1
    assert result.success and "unified_events" in materializations(result)


def test_gaps_filled_fires_when_the_snapshots_stop_before_a_lost_message(tmp_path):
    lake = doctored.doctored_lake(tmp_path, doctored.lose_a_message(snapshots_after_the_gap=False))
    _, result = _materialize(tmp_path, lake)
    check = checks(result)["gaps_filled"]
    assert not check.passed
    assert check.metadata["sequence_id_gaps"].value == 1
    assert check.metadata["unfilled"].value == 1
    assert (
        checks(result)["mid_deviation_within_limit"].metadata["vendor_snapshots_compared"].value
        > 100
    )
    assert not result.success and "unified_events" not in materializations(result)


def test_mid_deviation_within_limit_fires_at_the_default_threshold(tmp_path):
    lake = doctored.doctored_lake(tmp_path, doctored.shifted_last_snapshot)
    _, result = _materialize(tmp_path, lake)
    check = checks(result)["mid_deviation_within_limit"]
    assert not check.passed
    assert check.severity.value == "WARN"
    assert check.metadata["threshold_bps"].value == 1.0  # RLX_MAX_MID_DEVIATION_BPS's default
    snapshots = doctored.raw_day(lake, doctored.SNAPSHOTS)
    expected = doctored.SHIFT / doctored.last_snapshot_mid(snapshots) * 1e4
    assert check.metadata["mid_deviation_max_bps"].value == pytest.approx(expected, rel=1e-9)
    assert result.success  # a warning: the events are still published
    assert "unified_events" in materializations(result)


def test_mid_deviation_within_limit_passes_the_clean_day_at_the_default_threshold(tmp_path):
    _, result = _materialize(tmp_path, SLICE)
    check = checks(result)["mid_deviation_within_limit"]
    assert check.passed and check.metadata["mid_deviation_max_bps"].value == 0.0
