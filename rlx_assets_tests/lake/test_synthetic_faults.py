"""synthetic:// faults: each changes what it should and nothing else, counts are exact, and the
pipeline's figures (engine path: clean_day, reconstruct_day) react to them.

One file, over 450 lines: one test or two per fault, on shared fixtures of the clean and the
faulty day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rlx_assets import schema
from rlx_assets.engine.raw import RawDay, clean_day
from rlx_assets.engine.reconstruct import reconstruct_day
from rlx_assets.engine.reconstruction import Reconstruction
from rlx_assets.lake.open import open_lake
from rlx_assets.lake.synthetic import faults as synthetic_faults
from rlx_assets.lake.synthetic.day import generate_origin_day
from rlx_assets.lake.synthetic.faults import (
    FaultRates,
    FaultyDay,
    faulty_origin_day,
    injected_faults,
)
from rlx_assets.lake.synthetic.lake import SyntheticLake
from rlx_assets.settings import RlxSettings

EXCHANGE = "BINANCE"
SYMBOL = "BTC-USDT"
DAY = dt.date(2024, 8, 8)
ONE = dt.timedelta(days=1)
SCALE = 0.002
DAY_NS = 86_400 * 10**9
SECOND = 10**9
PRICE_EXPONENT, SIZE_EXPONENT = -2, -5  # BTC-USDT: tick 0.01, lot 0.00001 (as in settings)
TABLES = (schema.TRADES, schema.BOOK, schema.BOOK_DELTAS)
ALL = FaultRates(
    gaps=0.02,
    stale_levels=0.02,
    clock_skew=0.05,
    duplicates=0.01,
    off_grid=0.001,
    trades_outside_book=0.02,
    origin_time_nulls=0.01,
)

DAY_START = (DAY - dt.date(1970, 1, 1)).days * DAY_NS


@pytest.fixture(scope="module")
def clean() -> dict[str, pa.Table]:
    return generate_origin_day(EXCHANGE, SYMBOL, DAY, SCALE)


def _faulty(**rates: float) -> FaultyDay:
    return faulty_origin_day(EXCHANGE, SYMBOL, DAY, SCALE, FaultRates(**rates))


def _others_equal(clean: dict[str, pa.Table], faulty: FaultyDay, changed: set[str]) -> None:
    for name in TABLES:
        if name not in changed:
            assert faulty.tables[name].equals(clean[name]), name
            assert faulty.across_midnight[name].num_rows == 0


def _messages(sequence: np.ndarray) -> np.ndarray:
    return np.unique(sequence)


def _digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


# --- Rates: parsing, URL, defaults -----------------------------------------------------------


def test_parse_reads_any_subset_and_round_trips() -> None:
    rates = FaultRates.parse(" gaps=0.001, stale_levels = 2e-3 ,")
    assert rates == FaultRates(gaps=0.001, stale_levels=0.002)
    assert rates.any() and not FaultRates().any()
    assert FaultRates.parse("") == FaultRates()
    assert FaultRates.parse(str(ALL)) == ALL
    assert str(rates) == "gaps=0.001,stale_levels=0.002"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gap=0.1", "item 'gap=0.1': unknown fault 'gap'"),
        ("gaps=0.1,dupes", "item 'dupes': expected <fault>=<rate>"),
        ("gaps=lots", "item 'gaps=lots': rate 'lots' is not a number"),
        ("gaps=1.5", r"item 'gaps=1.5': rate must be a share in \[0, 1\]"),
        ("duplicates=-0.1", "item 'duplicates=-0.1': rate must be a share"),
        ("off_grid=nan", "item 'off_grid=nan': rate must be a share"),
        ("gaps=0.1,gaps=0.2", "item 'gaps=0.2': gaps is given twice"),
    ],
)
def test_parse_names_the_bad_item(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultRates.parse(text)


def test_rates_are_checked_when_built_directly() -> None:
    with pytest.raises(ValueError, match="gaps=2"):
        FaultRates(gaps=2)
    with pytest.raises(ValueError, match="not a number"):
        FaultRates(duplicates="0.1")  # type: ignore[arg-type]


def test_lake_url_query_switches_faults_on() -> None:
    url = "synthetic://?faults=gaps=0.001,duplicates=0.0005"
    lake = SyntheticLake(scale=SCALE, url=url)
    assert lake.faults == FaultRates(gaps=0.001, duplicates=0.0005)
    assert lake.url == url
    # The explicit argument wins over the URL; rates all 0 are no faults at all.
    assert SyntheticLake(url=url, faults=FaultRates(off_grid=0.1)).faults == FaultRates(
        off_grid=0.1
    )
    assert SyntheticLake(url=url, faults=FaultRates()).faults is None
    assert SyntheticLake().faults is None
    assert SyntheticLake(url="synthetic://?faults=").faults is None
    # Users get it through RLX_LAKE_URL.
    opened = open_lake(RlxSettings(_env_file=None, lake_url=url, synthetic_scale=SCALE))
    assert isinstance(opened, SyntheticLake) and opened.faults == lake.faults
    files = lake.read_day(schema.TRADES, EXCHANGE, SYMBOL, DAY).files
    assert files[0].uri.endswith("&faults=gaps=0.001,duplicates=0.0005")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("synthetic://?fault=gaps=0.1", "unknown query parameter 'fault'"),
        ("synthetic://?faults=gaps=0.1&faults=gaps=0.2", "given twice"),
        ("synthetic://?faults=gaps=0.1,wobble=0.2", "item 'wobble=0.2': unknown fault"),
    ],
)
def test_bad_lake_urls_are_clear_errors(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticLake(url=url)


def test_without_faults_the_lake_is_unchanged() -> None:
    plain = SyntheticLake(scale=SCALE)
    off = SyntheticLake(scale=SCALE, url="synthetic://?faults=gaps=0", faults=None)
    for name in TABLES:
        assert (
            off.read_day(name, EXCHANGE, SYMBOL, DAY).files
            == plain.read_day(name, EXCHANGE, SYMBOL, DAY).files
        )


# --- Ground truth, schemas, determinism ------------------------------------------------------


def test_faults_keep_schemas_and_leave_the_clean_day_alone(clean: dict[str, pa.Table]) -> None:
    before = {name: _digest(table) for name, table in clean.items()}
    faulty = faulty_origin_day(EXCHANGE, SYMBOL, DAY, SCALE, ALL)
    for name in TABLES:
        for table in (faulty.tables[name], faulty.across_midnight[name]):
            assert table.schema == schema.SCHEMAS[name], name
            assert schema.normalize_table(name, table, "faulty").equals(table)
    after = generate_origin_day(EXCHANGE, SYMBOL, DAY, SCALE)
    assert {name: _digest(table) for name, table in after.items()} == before
    assert {name: _digest(table) for name, table in clean.items()} == before
    counts = injected_faults(EXCHANGE, SYMBOL, DAY, SCALE, ALL)
    assert set(counts) == set(FaultRates.names())
    assert all(count > 0 for count in counts.values()), counts


def test_faults_are_deterministic_and_seeded_by_day_and_kind() -> None:
    first = faulty_origin_day(EXCHANGE, SYMBOL, DAY, SCALE, ALL)
    synthetic_faults._faulty_origin_day.cache_clear()
    second = faulty_origin_day(EXCHANGE, SYMBOL, DAY, SCALE, ALL)
    assert first is not second
    for name in TABLES:
        assert first.tables[name].equals(second.tables[name])
    assert first.counts == second.counts
    # Another day draws other rows; a higher rate hits a superset of a lower one's messages.
    other = injected_faults(EXCHANGE, SYMBOL, DAY + ONE, SCALE, ALL)
    assert other != first.totals()
    low = set(_faulty(gaps=0.01).tables[schema.BOOK_DELTAS]["sequence_number"].to_pylist())
    high = set(_faulty(gaps=0.05).tables[schema.BOOK_DELTAS]["sequence_number"].to_pylist())
    assert high < low
    # One fault's choices do not depend on which others are on.
    alone = _faulty(duplicates=0.01).counts["duplicates"]
    assert _faulty(duplicates=0.01, clock_skew=0.05).counts["duplicates"] == alone


# --- Each fault changes what it should, and nothing else -------------------------------------


def test_gaps_drop_whole_messages_and_keep_their_snapshots(clean: dict[str, pa.Table]) -> None:
    faulty = _faulty(gaps=0.05)
    _others_equal(clean, faulty, {schema.BOOK_DELTAS})
    deltas, clean_deltas = faulty.tables[schema.BOOK_DELTAS], clean[schema.BOOK_DELTAS]
    sequence = clean_deltas["sequence_number"].to_numpy()
    dropped = np.setdiff1d(_messages(sequence), _messages(deltas["sequence_number"].to_numpy()))
    assert dropped.size == faulty.counts["gaps"][schema.BOOK_DELTAS] > 0
    # Whole messages: the rest is exactly the clean table without them.
    assert deltas.equals(clean_deltas.filter(pa.array(~np.isin(sequence, dropped))))
    assert sequence[0] not in dropped and sequence[-1] not in dropped  # midnight messages
    snapshot_sequence = clean[schema.BOOK]["sequence_number"].to_numpy()
    assert np.isin(dropped, snapshot_sequence).sum() > 0  # their snapshots are still there


def test_stale_levels_suppress_removal_rows_only(clean: dict[str, pa.Table]) -> None:
    faulty = _faulty(stale_levels=0.05)
    _others_equal(clean, faulty, {schema.BOOK_DELTAS})
    deltas, clean_deltas = faulty.tables[schema.BOOK_DELTAS], clean[schema.BOOK_DELTAS]
    removed = clean_deltas.num_rows - deltas.num_rows
    assert removed == faulty.counts["stale_levels"][schema.BOOK_DELTAS] > 0
    zeros = pc.equal(clean_deltas["size"], 0.0)
    assert deltas.filter(pc.invert(pc.equal(deltas["size"], 0.0))).equals(
        clean_deltas.filter(pc.invert(zeros))
    )
    assert pc.sum(zeros).as_py() - pc.sum(pc.equal(deltas["size"], 0.0)).as_py() == removed
    # No message disappears.
    assert np.array_equal(
        _messages(deltas["sequence_number"].to_numpy()),
        _messages(clean_deltas["sequence_number"].to_numpy()),
    )


def test_clock_skew_moves_received_time_by_seconds_in_bursts(clean: dict[str, pa.Table]) -> None:
    faulty = _faulty(clock_skew=0.05)
    total = 0
    for name in TABLES:
        table, reference = faulty.tables[name], clean[name]
        assert table.drop_columns(["received_time"]).equals(
            reference.drop_columns(["received_time"])
        )
        shift = table["received_time"].to_numpy() - reference["received_time"].to_numpy()
        moved = shift != 0
        assert moved.sum() == faulty.counts["clock_skew"][name] > 0, name
        assert np.all((np.abs(shift[moved]) >= 2 * SECOND) & (np.abs(shift[moved]) <= 30 * SECOND))
        total += int(moved.sum())
    assert (
        total
        == injected_faults(EXCHANGE, SYMBOL, DAY, SCALE, FaultRates(clock_skew=0.05))["clock_skew"]
    )
    # Bursts are stretches of consecutive messages with one offset each, both signs occur.
    deltas = faulty.tables[schema.BOOK_DELTAS]
    shift = (
        deltas["received_time"].to_numpy() - clean[schema.BOOK_DELTAS]["received_time"].to_numpy()
    )
    first = np.concatenate([[True], np.diff(deltas["sequence_number"].to_numpy()) != 0])
    per_message = shift[first]
    assert (per_message > 0).any() and (per_message < 0).any()
    changes = np.count_nonzero(np.diff(per_message))
    assert changes < 0.5 * np.count_nonzero(per_message)
    share = np.count_nonzero(per_message) / per_message.size
    assert 0.02 < share < 0.1


def test_duplicates_are_exact_copies_beside_or_across_midnight(clean: dict[str, pa.Table]) -> None:
    faulty = _faulty(duplicates=0.01)
    across_total = 0
    for name in TABLES:
        table, reference = faulty.tables[name], clean[name]
        first = pl.from_arrow(table).select(pl.struct(pl.all()).is_first_distinct())
        repeat = ~first.to_series().to_numpy()
        beside = int(repeat.sum())
        # Each copy right after its original; dropping them gives the clean table back.
        assert table.filter(pa.array(~repeat)).equals(reference), name
        copies = np.flatnonzero(repeat)
        assert table.take(pa.array(copies)).equals(table.take(pa.array(copies - 1))), name
        across = faulty.across_midnight[name]
        received = across["received_time"].to_numpy()
        nearest = np.rint(received / DAY_NS).astype(np.int64) * DAY_NS
        assert np.all(np.abs(received - nearest) < 5 * SECOND)
        assert beside + across.num_rows == faulty.counts["duplicates"][name] > 0, name
        across_total += across.num_rows
    assert across_total > 0  # the midnight messages bring rows close to a midnight


def test_off_grid_moves_prices_and_sizes_by_a_fraction_of_a_step(
    clean: dict[str, pa.Table],
) -> None:
    faulty = _faulty(off_grid=0.002)
    _others_equal(clean, faulty, {schema.TRADES, schema.BOOK_DELTAS})
    steps = {"price": 0.01, "size": 1e-5, "quantity": 1e-5}
    for name, columns in (
        (schema.TRADES, ("price", "quantity")),
        (schema.BOOK_DELTAS, ("price", "size")),
    ):
        table, reference = faulty.tables[name], clean[name]
        assert table.drop_columns(list(columns)).equals(reference.drop_columns(list(columns)))
        moved = 0
        for column in columns:
            new, old = table[column].to_numpy(), reference[column].to_numpy()
            changed = new != old
            moved += int(changed.sum())
            fraction = (new[changed] - old[changed]) / steps[column]
            assert np.all((fraction > 0.09) & (fraction < 0.91)), (name, column)
            assert np.all(old[changed] > 0)  # removal rows (size 0) are never touched
            tenths = np.round(fraction * 10)
            assert np.allclose(fraction * 10, tenths, atol=1e-6)
        assert moved == faulty.counts["off_grid"][name] > 0, name


def test_trades_outside_book_print_beyond_the_far_touch(clean: dict[str, pa.Table]) -> None:
    faulty = _faulty(trades_outside_book=0.02)
    _others_equal(clean, faulty, {schema.TRADES})
    table, reference = faulty.tables[schema.TRADES], clean[schema.TRADES]
    assert table.drop_columns(["price"]).equals(reference.drop_columns(["price"]))
    ticks = np.round((table["price"].to_numpy() - reference["price"].to_numpy()) * 100)
    buy = np.array(reference["side"].to_pylist()) == "buy"
    moved = ticks != 0
    assert moved.sum() == faulty.counts["trades_outside_book"][schema.TRADES] > 0
    # A buy fill is at or above the best ask, so moving it below the best bid lowers it by at
    # least a spread plus 2 ticks (and a sell likewise upwards).
    assert np.all(ticks[moved & buy] <= -3) and np.all(ticks[moved & ~buy] >= 3)


def test_origin_time_nulls_and_zeros(clean: dict[str, pa.Table]) -> None:
    faulty = _faulty(origin_time_nulls=0.02)
    for name in TABLES:
        table, reference = faulty.tables[name], clean[name]
        assert table.drop_columns(["origin_time"]).equals(reference.drop_columns(["origin_time"]))
        origin = pc.fill_null(table["origin_time"], -1).to_numpy()
        invalid = origin <= 0
        assert invalid.sum() == faulty.counts["origin_time_nulls"][name] > 0, name
        kept = ~invalid
        assert np.array_equal(origin[kept], reference["origin_time"].to_numpy()[kept])
        if name == schema.BOOK_DELTAS:
            assert table["origin_time"].null_count == 0  # 0, whole messages
            sequence = table["sequence_number"].to_numpy()
            hit = np.unique(sequence[invalid])
            assert invalid.sum() == np.isin(sequence, hit).sum()
        else:
            assert 0 < table["origin_time"].null_count < invalid.sum()


def test_filing_by_dt_loses_and_doubles_nothing() -> None:
    rates = FaultRates(clock_skew=0.05, duplicates=0.01)
    lake = SyntheticLake(scale=SCALE, faults=rates)
    faulty = faulty_origin_day(EXCHANGE, SYMBOL, DAY, SCALE, rates)
    for name in TABLES:
        filed = [
            lake.read_day(name, EXCHANGE, SYMBOL, day).tables[0]
            for day in (DAY - ONE, DAY, DAY + ONE)
        ]
        mine = []
        for table in filed:
            origin = table["origin_time"]
            inside = pc.and_(
                pc.greater_equal(origin, DAY_START), pc.less(origin, DAY_START + DAY_NS)
            )
            mine.append(table.filter(inside))
        expected = pa.concat_tables([faulty.tables[name], faulty.across_midnight[name]])
        found = Counter(pl.from_arrow(pa.concat_tables(mine)).rows())
        assert found == Counter(pl.from_arrow(expected).rows()), name


# --- The pipeline reacts: clean_day and reconstruct_day --------------------------------------


def _pipeline(rates: FaultRates, grids: bool = False) -> tuple[dict[str, RawDay], Reconstruction]:
    lake = SyntheticLake(scale=SCALE, faults=rates)
    exponents = (PRICE_EXPONENT, SIZE_EXPONENT) if grids else (None, None)
    raw = {}
    for name in TABLES:
        sources = [
            (day, lake.read_day(name, EXCHANGE, SYMBOL, day).tables[0])
            for day in (DAY - ONE, DAY, DAY + ONE)
        ]
        raw[name] = clean_day(name, DAY, sources, *exponents)
        assert raw[name].accounted(), name
    book = reconstruct_day(raw[schema.BOOK_DELTAS].table, raw[schema.BOOK].table, None, day=DAY)
    assert book.stats["crossed_books_published"] == 0
    return raw, book


@pytest.fixture(scope="module")
def baseline() -> tuple[dict[str, RawDay], Reconstruction]:
    return _pipeline(FaultRates(), grids=True)


def test_clean_day_reports_no_faults(baseline: tuple[dict[str, RawDay], Reconstruction]) -> None:
    raw, book = baseline
    assert book.stats["gaps_detected"] == 0 and book.stats["stale_levels_repaired"] == 0
    assert book.stats["top20_match_share"] == 1.0
    for day in raw.values():
        assert day.duplicates_dropped == day.precision_loss_warnings == day.origin_time_invalid == 0
    assert _trades_outside_book(raw[schema.TRADES].table, book.book) == 0


def test_pipeline_detects_gaps_and_resyncs() -> None:
    _, book = _pipeline(FaultRates(gaps=0.05))
    stats = book.stats
    assert stats["gaps_detected"] > 0
    assert stats["gaps_filled"] == stats["gaps_detected"]  # every one healed by a snapshot
    assert pc.sum(book.book["resynced"]).as_py() > 0
    assert stats["top20_match_share"] < 1.0


def test_pipeline_repairs_stale_levels_and_never_publishes_a_crossed_book() -> None:
    _, book = _pipeline(FaultRates(stale_levels=0.05))
    assert book.stats["stale_levels_repaired"] > 0
    assert book.stats["crossed_books_published"] == 0
    bid = pc.cast(book.book["bid_0_price"], pa.float64()).to_numpy(zero_copy_only=False)
    ask = pc.cast(book.book["ask_0_price"], pa.float64()).to_numpy(zero_copy_only=False)
    both = ~np.isnan(bid) & ~np.isnan(ask)
    assert np.all(bid[both] < ask[both])


def test_pipeline_drops_exactly_the_injected_duplicates() -> None:
    rates = FaultRates(duplicates=0.01)
    raw, _ = _pipeline(rates)
    faulty = faulty_origin_day(EXCHANGE, SYMBOL, DAY, SCALE, rates)
    for name in TABLES:
        assert raw[name].duplicates_dropped == faulty.counts["duplicates"][name], name
    dropped = sum(day.duplicates_dropped for day in raw.values())
    assert dropped == injected_faults(EXCHANGE, SYMBOL, DAY, SCALE, rates)["duplicates"]


def test_pipeline_flags_exactly_the_injected_off_grid_values() -> None:
    rates = FaultRates(off_grid=0.001)
    raw, book = _pipeline(rates, grids=True)
    faulty = faulty_origin_day(EXCHANGE, SYMBOL, DAY, SCALE, rates)
    for name in TABLES:
        assert raw[name].precision_loss_warnings == faulty.counts["off_grid"][name], name
    warnings = sum(day.precision_loss_warnings for day in raw.values())
    assert warnings == injected_faults(EXCHANGE, SYMBOL, DAY, SCALE, rates)["off_grid"] > 0
    assert book.stats["crossed_books_published"] == 0


def test_pipeline_measures_the_clock_skew_bursts() -> None:
    rates = FaultRates(clock_skew=0.05)
    raw, _ = _pipeline(rates)
    faulty = faulty_origin_day(EXCHANGE, SYMBOL, DAY, SCALE, rates)
    for name in TABLES:
        table = raw[name].table
        skew = table["received_time"].to_numpy() - table["origin_time"].to_numpy()
        assert (np.abs(skew) >= 2 * SECOND).sum() == faulty.counts["clock_skew"][name], name


def test_pipeline_counts_the_invalid_origin_times() -> None:
    rates = FaultRates(origin_time_nulls=0.02)
    raw, book = _pipeline(rates)
    faulty = faulty_origin_day(EXCHANGE, SYMBOL, DAY, SCALE, rates)
    for name in TABLES:
        table = faulty.tables[name]
        invalid = pc.fill_null(table["origin_time"], -1).to_numpy() <= 0
        # A row without origin_time belongs to the day it was received on.
        received = table["received_time"].to_numpy()
        today = (received >= DAY_START) & (received < DAY_START + DAY_NS)
        assert raw[name].origin_time_invalid == (invalid & today).sum() > 0, name
    assert book.stats["crossed_books_published"] == 0


def _trades_outside_book(trades: pa.Table, book: pa.Table) -> int:
    """Buys below the best bid, sells above the best ask of the last book row before them (a
    sweep legitimately prints beyond the touch it starts from, never behind the other one)."""
    times = book["origin_time"].to_numpy()
    bid = pc.cast(book["bid_0_price"], pa.float64()).to_numpy(zero_copy_only=False)
    ask = pc.cast(book["ask_0_price"], pa.float64()).to_numpy(zero_copy_only=False)
    row = np.searchsorted(times, trades["origin_time"].to_numpy(), "left") - 1
    assert row.min() >= 0
    price = pc.cast(trades["price"], pa.float64()).to_numpy()
    buy = pc.equal(trades["side"], "buy").to_numpy(zero_copy_only=False)
    return int(np.where(buy, price < bid[row], price > ask[row]).sum())


def test_trades_outside_the_book_are_observable_against_the_rebuilt_book() -> None:
    rates = FaultRates(trades_outside_book=0.02)
    raw, book = _pipeline(rates)
    outside = _trades_outside_book(raw[schema.TRADES].table, book.book)
    assert outside == injected_faults(EXCHANGE, SYMBOL, DAY, SCALE, rates)["trades_outside_book"]
    assert outside > 0


def test_all_faults_at_once_do_not_break_the_pipeline() -> None:
    raw, book = _pipeline(ALL, grids=True)
    injected = injected_faults(EXCHANGE, SYMBOL, DAY, SCALE, ALL)
    assert book.stats["gaps_detected"] == book.stats["gaps_filled"] > 0
    assert book.stats["stale_levels_repaired"] > 0
    assert sum(day.duplicates_dropped for day in raw.values()) == injected["duplicates"]
    assert sum(day.precision_loss_warnings for day in raw.values()) == injected["off_grid"]
    assert sum(day.rows_quarantined for day in raw.values()) == 0
