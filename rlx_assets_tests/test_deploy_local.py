"""Issue 12, acceptance 2, on the local variant (deploy/local/dagster.yaml): a backfill of 3 days
x 2 symbols launched through the webserver's GraphQL API (scripts/backfill.py) completes, and
the run records show each symbol's days in order."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, RunsFilter

from rlx_assets.partitions import partition_key
from rlx_assets_tests import deployment

DAYS = ("2024-08-01", "2024-08-03")
DATES = [dt.date(2024, 8, 1) + dt.timedelta(days=n) for n in range(3)]

pytestmark = pytest.mark.slow


def assert_days_in_order(instance: DagsterInstance, backfill_id: str) -> dict[str, list]:
    """Per symbol: its runs never overlap, and the runs that built reconstructed_book ran day
    after day. Returns {symbol: [(date, start, end), ...]} of those book runs."""
    records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert records and all(r.dagster_run.status.value == "SUCCESS" for r in records)
    by_symbol: dict[str, list] = {}
    book_runs: dict[str, list] = {}
    for record in records:
        tags = record.dagster_run.tags
        symbol, date = tags["dagster/partition/symbol"], tags["dagster/partition/date"]
        span = (record.start_time, record.end_time)
        by_symbol.setdefault(symbol, []).append(span)
        selection = record.dagster_run.asset_selection or set()
        if AssetKey("reconstructed_book") in selection:
            book_runs.setdefault(symbol, []).append((date, *span))
    assert sorted(by_symbol) == sorted(deployment.SYMBOLS)
    for symbol, spans in by_symbol.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"{symbol}: two runs at once ({spans})"
    for symbol, runs in book_runs.items():
        runs.sort(key=lambda run: run[1])  # by start time
        assert [date for date, _, _ in runs] == [d.isoformat() for d in DATES], symbol
        for earlier, later in itertools.pairwise(runs):
            assert later[1] >= earlier[2], f"{symbol}: day {later[0]} began before {earlier[0]}"
    assert sorted(book_runs) == sorted(deployment.SYMBOLS)
    return book_runs


def seconds_per_partition(instance: DagsterInstance, backfill_id: str) -> float:
    """Mean over partitions of the wall time of the runs that built it (a partition takes
    three runs in a backfill: raw, book, then events and reports)."""
    per_partition: dict[str, float] = {}
    for record in instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id})):
        key = record.dagster_run.tags["dagster/partition"]
        per_partition[key] = per_partition.get(key, 0.0) + record.end_time - record.start_time
    return sum(per_partition.values()) / len(per_partition)


def book_seeds(instance: DagsterInstance, dates: list[dt.date] = DATES) -> dict[str, str]:
    """partition -> how its reconstructed_book was seeded (latest materialization)."""
    seeds = {}
    for symbol in deployment.SYMBOLS:
        for day in dates:
            key = partition_key(day, symbol)
            found = instance.fetch_materializations(
                AssetRecordsFilter(
                    asset_key=AssetKey("reconstructed_book"), asset_partitions=[key]
                ),
                limit=1,
            ).records
            assert found, f"no reconstructed_book materialization for {key}"
            metadata = found[0].asset_materialization.metadata
            seeds[key] = metadata["seed"].value
    return seeds


def test_graphql_backfill_runs_each_symbols_days_in_order(tmp_path: Path) -> None:
    work = tmp_path / "work"
    home = deployment.instance_home("local", tmp_path / "home", work)
    environment = deployment.base_environment(tmp_path, home)
    environment["RLX_STORAGE_URL"] = str(tmp_path / "assets")
    with deployment.dagster_dev(environment, work) as url:
        started = time.monotonic()
        launched = deployment.run_backfill(url, environment, DAYS, timeout=600)
        seconds = time.monotonic() - started
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    backfill_id = launched.stdout.split()[1].rstrip(":")
    with DagsterInstance.from_config(str(home)) as instance:
        book_runs = assert_days_in_order(instance, backfill_id)
        seeds = book_seeds(instance)
        per_partition = seconds_per_partition(instance, backfill_id)
    # Day 2 and 3 continued from the previous day's book_state: their days really chained.
    for symbol in deployment.SYMBOLS:
        assert [seeds[partition_key(d, symbol)] == "previous_book_state" for d in DATES] == [
            False,
            True,
            True,
        ]
    print(
        f"\nlocal variant: backfill of 3 days x 2 symbols in {seconds:.1f} s, runs of a partition"
        f" {per_partition:.1f} s; book runs (day, s): "
        f"{ {s: [(d, round(e - b, 1)) for d, b, e in runs] for s, runs in book_runs.items()} }"
    )
