"""Acceptance on the whole real fixture in ../shared (both days, 23:54 to 00:05 UTC)."""

import polars as pl
import pytest

from rlx_assets_tests.conftest import (
    FIXTURE_DAYS,
    SHARED_FIXTURE,
    checks,
    make_settings,
    materializations,
    materialize_day,
)

pytestmark = pytest.mark.skipif(
    not SHARED_FIXTURE.is_dir(), reason="../shared is not beside the repo"
)


@pytest.fixture(scope="module")
def full_days(tmp_path_factory: pytest.TempPathFactory):
    settings = make_settings(tmp_path_factory.mktemp("assets"), lake=SHARED_FIXTURE)
    return settings, [materialize_day(settings, day) for day in FIXTURE_DAYS]


def test_books_match_the_vendor_on_both_days_and_never_cross(full_days) -> None:
    _, results = full_days
    for result in results:
        assert result.success
        book = materializations(result)["reconstructed_book"]
        assert book["vendor_snapshots_compared"] >= 3000
        assert book["top20_match_share"] >= 0.999
        assert book["crossed_books_published"] == 0
        assert all(check.passed for check in checks(result).values())


def test_midnight_is_continuous_and_trades_appear_once(full_days) -> None:
    settings, (_, second) = full_days
    assert materializations(second)["reconstructed_book"]["seed"] == "previous_book_state"
    source = pl.read_parquet(SHARED_FIXTURE / "trades" / "**" / "*.parquet")
    events = pl.read_parquet(
        f"{settings.storage_url}/unified_events/**/*.parquet", hive_partitioning=True
    ).filter(pl.col("event_type") == "TRADE")
    assert events.height == source.height == 19_904
    assert events["trade_id"].n_unique() == events.height
    assert set(events["trade_id"].to_list()) == set(source["trade_id"].to_list())
