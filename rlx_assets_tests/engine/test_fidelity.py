import dataclasses
import datetime as dt
import math
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from rlx_assets import schema
from rlx_assets.engine.decimals import DECIMAL_TYPE
from rlx_assets.engine.fidelity import (
    INTER_ARRIVAL,
    SPREAD,
    TRADE_SIZE,
    compare_day,
    compare_day_batches,
)
from rlx_assets.engine.fidelity_report import (
    FAIL,
    PASS,
    REPORT_COLUMNS,
    REPORT_SCHEMA,
    FidelityReport,
    FidelityThresholds,
)
from rlx_assets.engine.golden import (
    BOOK_TICKER_SCHEMA,
    DEPTH_UPDATES_SCHEMA,
    GAPS_SCHEMA,
    SNAPSHOTS_SCHEMA,
    TRADES_SCHEMA,
    GoldenSample,
    parse_golden,
)
from rlx_assets.engine.raw import clean_day
from rlx_assets.engine.reconstruct import reconstruct_day
from rlx_assets.lake.files import FileLake
from rlx_assets_tests.conftest import FIXTURE_DAYS, SLICE

MS = 1_000_000
LOOSE = FidelityThresholds(min_compared=1, min_samples=2)


def _dec(values: list) -> pa.Array:
    return pa.array([None if v is None else Decimal(v) for v in values], DECIMAL_TYPE)


def _book(rows: list[tuple]) -> pa.Table:
    """rows: (origin_ms, sequence_number, bid, bid_size, ask, ask_size)."""
    origin, sequence, bid, bid_size, ask, ask_size = zip(*rows, strict=True)
    return pa.table(
        {
            "origin_time": [t * MS for t in origin],
            "received_time": [t * MS + 5 for t in origin],
            "sequence_number": list(sequence),
            "bid_0_price": _dec(bid),
            "bid_0_size": _dec(bid_size),
            "ask_0_price": _dec(ask),
            "ask_0_size": _dec(ask_size),
        }
    )


def _trades(rows: list[tuple]) -> pa.Table:
    """rows: (origin_ms, trade_id, price, quantity, side)."""
    origin, ids, price, quantity, side = zip(*rows, strict=True)
    return pa.table(
        {
            "origin_time": [t * MS for t in origin],
            "received_time": [t * MS + 5 for t in origin],
            "trade_id": list(ids),
            "price": _dec(price),
            "quantity": _dec(quantity),
            "side": list(side),
        }
    )


def _golden(tickers: list[tuple], trades: list[tuple], depth_ms: list[int]) -> GoldenSample:
    """tickers: (update_id, bid, bid_size, ask, ask_size); trades as `_trades`."""
    ticker_columns = list(zip(*tickers, strict=True))
    book_ticker = pa.table(
        {
            "capture_ns": [0] * len(tickers),
            "update_id": list(ticker_columns[0]),
            **{
                name: _dec(list(values))
                for name, values in zip(
                    BOOK_TICKER_SCHEMA.names[2:], ticker_columns[1:], strict=True
                )
            },
        },
        schema=BOOK_TICKER_SCHEMA,
    )
    origin, ids, price, quantity, side = zip(*trades, strict=True)
    golden_trades = pa.table(
        {
            "capture_ns": [0] * len(trades),
            "event_time_ns": [t * MS + MS for t in origin],
            "trade_time_ns": [t * MS for t in origin],
            "trade_id": list(ids),
            "price": _dec(price),
            "quantity": _dec(quantity),
            "side": list(side),
        },
        schema=TRADES_SCHEMA,
    )
    depth = pa.table(
        {
            "capture_ns": [0] * len(depth_ms),
            "event_time_ns": [t * MS for t in depth_ms],
            "first_update_id": [0] * len(depth_ms),
            "last_update_id": [0] * len(depth_ms),
            "bid_rows": pa.array([0] * len(depth_ms), pa.int32()),
            "ask_rows": pa.array([0] * len(depth_ms), pa.int32()),
        },
        schema=DEPTH_UPDATES_SCHEMA,
    )
    return GoldenSample(
        book_ticker=book_ticker,
        trades=golden_trades,
        depth_updates=depth,
        snapshots=SNAPSHOTS_SCHEMA.empty_table(),
    )


BOOK = _book(
    [
        (100, 10, "100.00", "1", "100.02", "2"),
        (200, 20, "100.00", "1", "100.02", "3"),
        (300, 30, "100.00", "1", "100.03", "3"),
        (400, 40, "100.01", "1", "100.03", "3"),
        (500, 50, "100.01", "1", "100.03", "3"),
    ]
)
TICKERS = [
    (10, "100.00", "1", "100.02", "2"),  # same id as a row, agrees
    (15, "100.00", "1", "100.02", "5"),  # inside message 11..20: never compared
    (20, "100.00", "1", "100.02", "3"),  # agrees
    (30, "99.98", "1", "100.03", "3"),  # bid 0.02 off
    (37, "100.01", "1", "100.03", "3"),  # inside message 31..40, followed by 40
    (40, "100.01", "1", "100.03", "4"),  # ask size differs
    (45, "100.01", "1", "100.03", "3"),  # inside 41..50, the last before row 50: carried
]
TRADES_MINE = [
    (100, 1, "100.00", "0.5", "sell"),
    (150, 2, "100.02", "0.25", "buy"),
    (250, 3, "100.02", "1.0", "buy"),  # golden says 1.5
    (350, 5, "100.01", "0.1", "sell"),  # not in golden
]
TRADES_GOLDEN = [
    (100, 1, "100.00", "0.50", "sell"),  # trailing zero: still equal
    (150, 2, "100.02", "0.25", "buy"),
    (250, 3, "100.02", "1.5", "buy"),
    (300, 4, "100.03", "0.2", "buy"),  # not in ours
]


def test_tickers_are_compared_only_with_the_row_of_the_same_update_id() -> None:
    report = compare_day(BOOK, _trades(TRADES_MINE), _golden(TICKERS, TRADES_GOLDEN, [100, 500]))
    assert report.book_rows_in_window == 5
    assert report.book_ticker_in_window == 7
    assert report.book_ticker_compared == 4  # ids 10, 20, 30, 40
    assert report.book_ticker_agreeing == 2
    assert report.top_of_book_agreement == 0.5
    # bid: one 0.02 error among 4 compared; ask prices all equal.
    assert report.best_bid_rmse == pytest.approx(math.sqrt(0.02**2 / 4), rel=1e-9)
    assert report.best_ask_rmse == 0.0
    # Carried: 10, 20, 30, 40 (their own rows) and 45 (-> row 50); 15 and 37 are followed by
    # another ticker before the end of their message.
    assert report.book_ticker_carried_compared == 5
    assert report.top_of_book_agreement_carried == pytest.approx(3 / 5)


def test_trades_match_by_id_and_must_be_identical() -> None:
    report = compare_day(BOOK, _trades(TRADES_MINE), _golden(TICKERS, TRADES_GOLDEN, [100, 500]))
    assert (report.trades_reconstructed, report.trades_golden) == (4, 4)
    assert report.trades_matched == 3 and report.trades_identical == 2
    assert report.trade_agreement == pytest.approx(2 / 5)  # ids 1..5 seen on either side
    mine, theirs = report.samples[TRADE_SIZE]
    assert mine.tolist() == [0.5, 0.25, 1.0, 0.1] and theirs.tolist() == [0.5, 0.25, 1.5, 0.2]
    assert report.samples[INTER_ARRIVAL][0].tolist() == [50.0, 100.0, 100.0]
    assert report.samples[INTER_ARRIVAL][1].tolist() == [50.0, 100.0, 50.0]


def test_spreads_are_sampled_at_the_rows_from_the_ticker_as_of_their_id() -> None:
    report = compare_day(BOOK, _trades(TRADES_MINE), _golden(TICKERS, TRADES_GOLDEN, [100, 500]))
    mine, theirs = report.samples[SPREAD]
    # Row 50 lies past the last ticker (45): the ticker stream no longer covers it.
    assert report.spread_rows_compared == 4
    np.testing.assert_allclose(mine, [0.02, 0.02, 0.03, 0.02])
    np.testing.assert_allclose(theirs, [0.02, 0.02, 0.05, 0.02])


def test_both_sides_are_cut_to_the_common_exchange_time_window() -> None:
    # The golden sample's exchange times (depth events, trades) run from 150 ms to 320 ms.
    golden = _golden(TICKERS, TRADES_GOLDEN[1:], [150, 320])
    report = compare_day(BOOK, _trades(TRADES_MINE), golden)
    assert (report.golden_window_start, report.golden_window_end) == (150 * MS, 320 * MS)
    assert report.book_rows_in_window == 2  # rows at 200 and 300 ms
    assert report.book_ticker_in_window == 2  # ids 20 and 30 (the rows' id span)
    assert report.book_ticker_compared == 2 and report.book_ticker_agreeing == 1
    assert (report.trades_reconstructed, report.trades_golden) == (2, 3)  # 150, 250 / +300


def test_a_faithful_day_passes_and_reports_the_design_columns() -> None:
    tickers = [(s, "100.00", "1", "100.02", "2") for s in (10, 20, 30, 40, 50)]
    book = _book([(100 * s, s, "100.00", "1", "100.02", "2") for s in (10, 20, 30, 40, 50)])
    trades = [(100 + 7 * i, i, "100.01", f"0.{i % 9 + 1}", "buy") for i in range(40)]
    report = compare_day(book, _trades(trades), _golden(tickers, trades, [1000, 5000]), LOOSE)
    assert report.verdict == PASS, report.verdict_reasons
    assert report.top_of_book_agreement == 1.0 and report.trade_agreement == 1.0
    assert report.best_bid_rmse == report.best_ask_rmse == 0.0
    assert report.ks_trade_size_p == report.ks_inter_arrival_p == 1.0
    # Identical samples: Anderson-Darling's p-value sits at scipy's 0.25 cap.
    assert report.ad_trade_size_p == 0.25 and report.ad_trade_size_p_clamped
    # Every spread is 0.02 on both sides: KS runs, Anderson-Darling would have nothing to rank.
    assert report.ks_spread_p == 1.0
    assert list(report.row()) == REPORT_SCHEMA.names
    table = report.table()
    assert table.schema == REPORT_SCHEMA
    assert tuple(table.column_names[: len(REPORT_COLUMNS)]) == REPORT_COLUMNS
    assert table.num_rows == 1 and table["verdict"].to_pylist() == [PASS]


def test_the_verdict_names_every_failed_condition() -> None:
    report = compare_day(
        BOOK, _trades(TRADES_MINE), _golden(TICKERS, TRADES_GOLDEN, [100, 500]), LOOSE
    )
    assert report.verdict == FAIL
    reasons = "; ".join(report.verdict_reasons)
    assert "top_of_book_agreement 0.500000 < 0.999" in reasons
    assert "trade_agreement 0.400000 < 0.999" in reasons
    assert report.row()["verdict_reasons"] == reasons


def test_shifted_trade_sizes_fail_the_distribution_tests() -> None:
    rng = np.random.default_rng(7)
    sizes = rng.lognormal(-4, 1, 400)
    mine = [(100 + i, i, "100", f"{q:.5f}", "buy") for i, q in enumerate(sizes)]
    theirs = [(100 + i, 1000 + i, "100", f"{q * 3:.5f}", "buy") for i, q in enumerate(sizes)]
    tickers = [(10, "100.00", "1", "100.02", "2")]
    book = _book([(100, 10, "100.00", "1", "100.02", "2"), (600, 20, "100.00", "1", "100.02", "2")])
    report = compare_day(book, _trades(mine), _golden(tickers, theirs, [100, 600]), LOOSE)
    assert report.ks_trade_size_p < 1e-6
    assert report.ad_trade_size_p == 0.001 and report.ad_trade_size_p_clamped  # scipy's floor
    assert report.verdict == FAIL
    assert any(r.startswith("ks_trade_size_p") for r in report.verdict_reasons)


def test_too_few_samples_skip_the_tests_instead_of_failing_them() -> None:
    report = compare_day(BOOK, _trades(TRADES_MINE), _golden(TICKERS, TRADES_GOLDEN, [100, 500]))
    assert report.ks_trade_size_p is None and report.ad_trade_size_p is None
    assert report.tests_skipped == [
        "ks_trade_size_p",
        "ks_inter_arrival_p",
        "ks_spread_p",
        "ad_trade_size_p",
    ]
    assert report.row()["tests_skipped"].startswith("ks_trade_size_p; ")


def test_no_common_window_is_a_failure_not_a_crash() -> None:
    golden = _golden(TICKERS, [(9000, 1, "1", "1", "buy")], [9000, 9100])
    report = compare_day(BOOK, _trades(TRADES_MINE), golden)
    assert report.golden_window_start is None and report.top_of_book_agreement is None
    assert report.verdict == FAIL
    assert "no common window" in report.verdict_reasons[0]
    assert report.table().num_rows == 1


def _clean(lake: FileLake, table: str, day: dt.date) -> pa.Table:
    """The raw asset of `day`, from the files of the neighbouring `dt` folders too."""
    days = (day - dt.timedelta(days=1), day, day + dt.timedelta(days=1))
    sources = [(d, t) for d in days for t in lake.read_day(table, "BINANCE", "BTC-USDT", d).tables]
    return clean_day(table, day, sources).table


@pytest.fixture(scope="module")
def slice_reports() -> dict[dt.date, FidelityReport]:
    """The committed slice through the Dagster-free engine path, day after day."""
    lake = FileLake(str(SLICE))
    reports, state = {}, None
    for day in FIXTURE_DAYS:
        deltas, snapshots = _clean(lake, schema.BOOK_DELTAS, day), _clean(lake, schema.BOOK, day)
        rebuilt = reconstruct_day(deltas, snapshots, state)
        state = rebuilt.state
        golden = parse_golden((SLICE / "golden" / f"BTC-USDT-{day}.jsonl.gz").read_bytes())
        reports[day] = compare_day(rebuilt.book, _clean(lake, schema.TRADES, day), golden)
    return reports


@pytest.mark.parametrize("day", FIXTURE_DAYS)
def test_the_real_slice_matches_the_exchange_top_of_book(slice_reports, day) -> None:
    report = slice_reports[day]
    assert report.book_ticker_compared >= 100
    assert report.top_of_book_agreement >= 0.999
    assert report.best_bid_rmse == report.best_ask_rmse == 0.0
    assert report.trade_agreement == 1.0 and report.trades_golden >= 3000
    assert report.verdict == PASS, report.verdict_reasons


# --- read in batches: the same report as the whole tables ---------------------------------


def _source(table: pa.Table, batch_rows: int, reads: list[str] | None = None):
    def batches(columns: list[str]):
        if reads is not None:
            reads.append(tuple(columns))
        return table.select(columns).to_batches(max_chunksize=batch_rows)

    return batches


def _same_report(streamed: FidelityReport, expected: FidelityReport) -> None:
    assert streamed.row() == expected.row()
    assert streamed.samples.keys() == expected.samples.keys()
    for name, (mine, theirs) in expected.samples.items():
        np.testing.assert_array_equal(streamed.samples[name][0], mine)
        np.testing.assert_array_equal(streamed.samples[name][1], theirs)


CASES = {
    "mixed": (BOOK, _trades(TRADES_MINE), _golden(TICKERS, TRADES_GOLDEN, [100, 500])),
    "cut": (BOOK, _trades(TRADES_MINE), _golden(TICKERS, TRADES_GOLDEN[1:], [150, 320])),
    "no_window": (
        BOOK,
        _trades(TRADES_MINE),
        _golden(TICKERS, [(9000, 1, "1", "1", "buy")], [9000, 9100]),
    ),
}


@pytest.mark.parametrize("batch_rows", [1, 3, 17, 1000])
@pytest.mark.parametrize("case", CASES)
def test_batches_give_the_whole_table_report(case, batch_rows) -> None:
    book, trades, golden = CASES[case]
    expected = compare_day(book, trades, golden, LOOSE)
    streamed = compare_day_batches(
        _source(book, batch_rows), _source(trades, batch_rows), golden, LOOSE
    )
    _same_report(streamed, expected)


@pytest.mark.parametrize("batch_rows", [3, 1000])
def test_the_real_slice_in_batches_gives_the_whole_table_report(batch_rows) -> None:
    lake = FileLake(str(SLICE))
    day = FIXTURE_DAYS[0]
    deltas, snapshots = _clean(lake, schema.BOOK_DELTAS, day), _clean(lake, schema.BOOK, day)
    book = reconstruct_day(deltas, snapshots, None).book
    trades = _clean(lake, schema.TRADES, day)
    golden = parse_golden((SLICE / "golden" / f"BTC-USDT-{day}.jsonl.gz").read_bytes())
    reads: list[tuple[str, ...]] = []
    streamed = compare_day_batches(
        _source(book, batch_rows, reads), _source(trades, batch_rows, reads), golden
    )
    _same_report(streamed, compare_day(book, trades, golden))
    # The time columns first, then only the columns compared.
    assert reads[:2] == [("origin_time", "received_time")] * 2
    assert set(reads[2]) < set(book.column_names)


# --- recorded gaps: left out of the comparison and reported -------------------------------


def _with_gaps(golden: GoldenSample, rows: list[tuple]) -> GoldenSample:
    """rows: (reason, from_ms, to_ms, from_update_id, to_update_id); None where not set."""
    reason, from_ms, to_ms, low, high = (list(c) for c in zip(*rows, strict=True))
    ns = (
        [None if t is None else t * MS for t in from_ms],
        [None if t is None else t * MS for t in to_ms],
    )
    gaps = pa.table(
        {
            "capture_ns": [0] * len(rows),
            "reason": reason,
            "from_time_ns": ns[0],
            "to_time_ns": ns[1],
            "from_update_id": low,
            "to_update_id": high,
        },
        schema=GAPS_SCHEMA,
    )
    return dataclasses.replace(golden, gaps=gaps)


def test_a_recorded_gap_is_left_out_on_both_sides_and_reported() -> None:
    golden = _golden(TICKERS, TRADES_GOLDEN, [100, 500])
    # The disconnect covers trades 3 (t=250) and 4 (t=300), update ids 21..30 (row 30 and the
    # bid-off ticker 30).
    gapped = _with_gaps(golden, [("disconnect", 240, 310, 21, 30)])
    report = compare_day(BOOK, _trades(TRADES_MINE), gapped, LOOSE)
    assert report.golden_gaps == 1
    assert report.golden_gap_windows == (
        "disconnect time 1970-01-01T00:00:00.240000Z..1970-01-01T00:00:00.310000Z update ids 21..30"
    )
    assert report.golden_gap_excluded_ms == 70.0
    assert report.book_rows_excluded == 1 and report.book_rows_in_window == 4
    assert report.book_ticker_excluded == 1
    # Rows 10 and 20 agree, 40 does not (ask size): 2 of 3, and no bid error left.
    assert (report.book_ticker_compared, report.book_ticker_agreeing) == (3, 2)
    assert report.best_bid_rmse == 0.0
    assert report.trades_excluded_golden == 2 and report.trades_excluded_reconstructed == 1
    # Trades 1, 2 identical; 5 only ours: 2 of 3 (trade 3's disagreement is inside the gap).
    assert report.trade_agreement == pytest.approx(2 / 3)
    # Inter-arrival times do not span the gap: ours 100 -> 150, then 350 alone after it.
    np.testing.assert_array_equal(report.samples[INTER_ARRIVAL][0], [50.0])
    # Rows 10, 20 and 40 with the tickers of their ids; row 30 is inside the gap, row 50 past
    # the last ticker.
    mine, theirs = report.samples[SPREAD]
    assert mine.size == theirs.size == 3


def test_a_spread_is_never_paired_across_a_gap() -> None:
    tickers = [(10, "100.00", "1", "100.02", "2"), (60, "100.00", "1", "100.02", "2")]
    golden = _golden(tickers, [(100, 1, "1", "1", "buy")], [100, 500])
    plain = compare_day(BOOK, _trades(TRADES_MINE), golden, LOOSE)
    assert plain.spread_rows_compared == 5  # every row takes ticker 10
    depth_gap = _with_gaps(golden, [("depth_update_ids", None, None, 25, 26)])
    gapped = compare_day(BOOK, _trades(TRADES_MINE), depth_gap, LOOSE)
    assert gapped.spread_rows_compared == 2  # rows 10 and 20: the others lie past the gap
    assert gapped.book_rows_excluded == 0 and gapped.trades_excluded_golden == 0
