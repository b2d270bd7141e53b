"""The streamed microstructure engine against its whole-table reference and by hand. One file,
over 450 lines: one engine, one set of fixtures."""

import datetime as dt
import itertools
from collections import Counter
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlx_assets.engine import exact_quantiles
from rlx_assets.engine.decimals import DECIMAL_TYPE, decimal_difference, scaled_to_decimal, to_float
from rlx_assets.engine.level_changes import UPDATE_FREQUENCY_SCHEMA
from rlx_assets.engine.microstructure import PER_MINUTE_SCHEMA, microstructure_metrics
from rlx_assets.engine.raw import clean_day
from rlx_assets.engine.reconstruct import reconstruct_day
from rlx_assets.lake.files import FileLake
from rlx_assets.schema import BOOK, BOOK_DELTAS, BOOK_LEVELS, TRADES, book_level_columns
from rlx_assets_tests.conftest import FIXTURE_DAYS, SLICE
from rlx_assets_tests.engine import reference_microstructure

T0 = 1_723_161_600 * 10**9  # 2024-08-09 00:00 UTC
S = 10**9
MINUTE = 60 * S

Level = tuple[str, str]  # (price, size)


def _book(rows: list[tuple[int, int, list[Level], list[Level]]]) -> pa.Table:
    """(time, sequence, bids best first, asks best first) -> reconstructed_book layout."""
    columns: dict[str, list] = {name: [] for name in book_level_columns()}
    for _, _, bids, asks in rows:
        for side, levels in (("bid", bids), ("ask", asks)):
            for level in range(BOOK_LEVELS):
                price, size = levels[level] if level < len(levels) else (None, None)
                columns[f"{side}_{level}_price"].append(Decimal(price) if price else None)
                columns[f"{side}_{level}_size"].append(Decimal(size) if size else None)
    return pa.table(
        {
            "origin_time": pa.array([row[0] for row in rows], pa.int64()),
            "received_time": pa.array([row[0] + 5 for row in rows], pa.int64()),
            "sequence_number": pa.array([row[1] for row in rows], pa.int64()),
            **{name: pa.array(values, DECIMAL_TYPE) for name, values in columns.items()},
            "resynced": pa.array([False] * len(rows)),
        }
    )


def _deltas(rows: list[tuple[int, int, bool, str, str]]) -> pa.Table:
    """(time, sequence, side_is_bid, price, size) -> raw_book_deltas layout."""
    return pa.table(
        {
            "origin_time": pa.array([row[0] for row in rows], pa.int64()),
            "received_time": pa.array([row[0] + 5 for row in rows], pa.int64()),
            "sequence_number": pa.array([row[1] for row in rows], pa.int64()),
            "side_is_bid": pa.array([row[2] for row in rows], pa.bool_()),
            "price": pa.array([Decimal(row[3]) for row in rows], DECIMAL_TYPE),
            "size": pa.array([Decimal(row[4]) for row in rows], DECIMAL_TYPE),
        }
    )


def _trades(times: list[int]) -> pa.Table:
    return pa.table(
        {
            "origin_time": pa.array(times, pa.int64()),
            "received_time": pa.array([t + 5 for t in times], pa.int64()),
            "trade_id": pa.array(range(len(times)), pa.int64()),
            "price": pa.array([Decimal("100.00")] * len(times), DECIMAL_TYPE),
            "quantity": pa.array([Decimal("0.5")] * len(times), DECIMAL_TYPE),
            "side": pa.array(["buy"] * len(times), pa.string()),
        }
    )


# Three books: A at 0 s, B at 15 s (minute 0), C at 75 s (minute 1); trades also in minutes 2
# and 4, which have no book message of their own (C stands through them).
BOOK_A = (T0, 10, [("100.00", "1")], [("100.01", "3")])
BOOK_B = (T0 + 15 * S, 11, [("100.00", "1"), ("99.99", "2")], [("100.02", "1")])
BOOK_C = (T0 + 75 * S, 12, [("100.00", "2")], [("100.01", "2")])
DELTAS = [
    (T0, 10, True, "100.00", "1"),  # no book before the first message
    (T0, 10, False, "100.01", "3"),
    (T0 + 15 * S, 11, True, "99.99", "2"),  # new price
    (T0 + 15 * S, 11, False, "100.01", "0"),  # ask level 0 of A
    (T0 + 15 * S, 11, False, "100.02", "1"),  # new price
    (T0 + 75 * S, 12, True, "99.99", "0"),  # bid level 1 of B
    (T0 + 75 * S, 12, True, "100.00", "2"),  # bid level 0 of B
    (T0 + 75 * S, 12, False, "100.01", "2"),  # new price (better than B's best ask)
    (T0 + 75 * S, 12, False, "100.02", "0"),  # ask level 0 of B
]
TRADE_TIMES = [T0 + 1 * S, T0 + 2 * S, T0 + 80 * S, T0 + 130 * S, T0 + 250 * S]


@pytest.fixture(scope="module")
def small():
    return microstructure_metrics(
        _book([BOOK_A, BOOK_B, BOOK_C]), _deltas(DELTAS), _trades(TRADE_TIMES)
    )


def test_per_minute_counts_and_trade_to_book_ratio(small) -> None:
    rows = small.per_minute.to_pylist()
    assert small.per_minute.schema == PER_MINUTE_SCHEMA
    assert [row["minute_start"] for row in rows] == [T0 + m * MINUTE for m in (0, 1, 2, 4)]
    assert [row["messages"] for row in rows] == [2, 1, 0, 0]
    assert [row["delta_messages"] for row in rows] == [2, 1, 0, 0]
    assert [row["delta_rows"] for row in rows] == [5, 4, 0, 0]
    assert [row["trades"] for row in rows] == [2, 1, 1, 1]
    assert [row["trade_to_book_ratio"] for row in rows] == [1.0, 1.0, None, None]
    # Minute 3 has no data and no row; the book stood through all of minutes 0..4.
    assert [row["book_seconds"] for row in rows] == [60.0, 60.0, 60.0, 60.0]


def test_spread_is_time_weighted_and_exact(small) -> None:
    first, second, third, _ = small.per_minute.to_pylist()
    # Minute 0: A (0.01) stands 15 s, B (0.02) 45 s.
    assert first["spread_mean"] == pytest.approx((0.01 * 15 + 0.02 * 45) / 60, abs=1e-15)
    assert first["spread_p50"] == 0.02
    assert first["spread_max"] == 0.02
    bps_a, bps_b = 0.01 / 100.005 * 1e4, 0.02 / 100.01 * 1e4
    assert first["spread_bps_mean"] == pytest.approx((bps_a * 15 + bps_b * 45) / 60, rel=1e-12)
    assert first["spread_bps_p50"] == pytest.approx(bps_b, rel=1e-12)
    assert first["mid_open"] == pytest.approx(100.005)
    assert first["mid_close"] == pytest.approx(100.01)
    # Minute 1: B carried in for 15 s, then C (0.01) for 45 s.
    assert second["spread_mean"] == pytest.approx((0.02 * 15 + 0.01 * 45) / 60, abs=1e-15)
    assert second["spread_p50"] == 0.01
    assert second["spread_max"] == 0.02
    assert second["mid_open"] == pytest.approx(100.01)
    assert second["mid_close"] == pytest.approx(100.005)
    # Minute 2: no message, C stands all minute.
    assert third["spread_mean"] == 0.01
    assert third["mid_open"] == third["mid_close"] == pytest.approx(100.005)


def test_imbalance_depth_and_levels(small) -> None:
    first, second, *_ = small.per_minute.to_pylist()
    # A: bid 1 vs ask 3 -> -0.5; B: level 1 is 1 vs 1 -> 0, top 5 is 3 vs 1 -> 0.5.
    assert first["imbalance_l1_mean"] == pytest.approx((-0.5 * 15 + 0.0 * 45) / 60)
    assert first["imbalance_top5_mean"] == pytest.approx((-0.5 * 15 + 0.5 * 45) / 60)
    assert first["imbalance_top20_mean"] == pytest.approx((-0.5 * 15 + 0.5 * 45) / 60)
    assert first["depth_bid_mean"] == pytest.approx((1 * 15 + 3 * 45) / 60)
    assert (first["depth_bid_min"], first["depth_bid_max"]) == (1.0, 3.0)
    assert first["depth_ask_mean"] == pytest.approx((3 * 15 + 1 * 45) / 60)
    assert (first["depth_ask_min"], first["depth_ask_max"]) == (1.0, 3.0)
    assert first["levels_bid_mean"] == pytest.approx((1 * 15 + 2 * 45) / 60)
    assert first["levels_ask_mean"] == 1.0
    # Minute 1: B carried 15 s (top 5 imbalance 0.5), then C (2 vs 2) 45 s.
    assert second["imbalance_top5_mean"] == pytest.approx(0.5 * 15 / 60)
    assert (second["depth_bid_min"], second["depth_bid_max"]) == (2.0, 3.0)


def _frequency(result) -> dict[tuple[str, object], dict]:
    return {
        (row["side"], row["level"] if row["bucket"] == "level" else row["bucket"]): row
        for row in result.update_frequency_by_level.to_pylist()
    }


def test_level_changes_between_consecutive_books(small) -> None:
    assert small.update_frequency_by_level.schema == UPDATE_FREQUENCY_SCHEMA
    table = _frequency(small)
    changes = {key: row["changes"] for key, row in table.items() if row["changes"]}
    # A->B: bid 1 appears, ask 0 moves; B->C: bid 0 size, bid 1 goes, ask 0 moves.
    assert changes == {("BID", 0): 1, ("BID", 1): 2, ("ASK", 0): 2}
    assert table[("BID", 0)]["change_share"] == 0.5
    assert table[("ASK", 0)]["change_share"] == 1.0
    assert table[("ASK", 19)]["change_share"] == 0.0


def test_delta_rows_by_level_of_the_book_before(small) -> None:
    table = _frequency(small)
    counts = {key: row["delta_rows"] for key, row in table.items() if row["delta_rows"]}
    assert counts == {
        ("BID", "no_prior_book"): 1,
        ("BID", "new_price"): 1,
        ("BID", 1): 1,
        ("BID", 0): 1,
        ("ASK", "no_prior_book"): 1,
        ("ASK", 0): 2,
        ("ASK", "new_price"): 2,
    }
    assert table[("ASK", 0)]["delta_row_share"] == pytest.approx(2 / 9)


def test_summary_of_the_small_day(small) -> None:
    summary = small.summary
    assert summary["minutes"] == 4
    assert (summary["messages"], summary["delta_rows"], summary["trades"]) == (3, 9, 5)
    assert summary["trade_to_book_ratio"] == pytest.approx(5 / 3)
    assert summary["trade_to_delta_row_ratio"] == pytest.approx(5 / 9)
    # 240 s of book: 0.01 for 15 + 45 + 60 + 60 s, 0.02 for 45 + 15 s.
    assert summary["spread_mean"] == pytest.approx((0.01 * 180 + 0.02 * 60) / 240)
    assert summary["spread_p50"] == 0.01
    assert summary["spread_bps_p99"] == pytest.approx(0.02 / 100.01 * 1e4)
    assert summary["levels_bid_p50"] == 1.0
    assert summary["messages_per_second_max"] == pytest.approx(2 / 60)
    assert summary["delta_rows_at_top20_level_share"] == pytest.approx(4 / 9)


def test_full_top20_deeper_and_new_prices() -> None:
    bids = [(f"{100 - level / 100:.2f}", "1") for level in range(BOOK_LEVELS)]
    asks = [(f"{100.01 + level / 100:.2f}", "1") for level in range(BOOK_LEVELS)]
    book = _book([(T0, 1, bids, asks), (T0 + S, 2, bids, asks)])
    deltas = _deltas(
        [
            (T0, 1, True, "100.00", "1"),
            (T0 + S, 2, True, "99.81", "2"),  # level 19
            (T0 + S, 2, True, "99.80", "2"),  # deeper
            (T0 + S, 2, True, "100.005", "2"),  # better than the best: new price
            (T0 + S, 2, True, "99.905", "2"),  # between levels 9 and 10: new price
            (T0 + S, 2, False, "100.01", "0"),  # level 0
            (T0 + S, 2, False, "100.20", "0"),  # level 19
            (T0 + S, 2, False, "100.21", "3"),  # deeper
            (T0 + S, 2, False, "150", "3"),  # deeper
        ]
    )
    table = _frequency(microstructure_metrics(book, deltas, _trades([])))
    counts = {key: row["delta_rows"] for key, row in table.items() if row["delta_rows"]}
    assert counts == {
        ("BID", "no_prior_book"): 1,
        ("BID", 19): 1,
        ("BID", "deeper"): 1,
        ("BID", "new_price"): 2,
        ("ASK", 0): 1,
        ("ASK", 19): 1,
        ("ASK", "deeper"): 2,
    }


def test_one_sided_book_and_out_of_order_times() -> None:
    book = _book(
        [
            (T0 + 10 * S, 1, [("100.00", "1")], []),  # stands 10 s, no spread
            (T0 + 20 * S, 2, [("100.00", "1")], [("100.05", "1")]),  # stands 0 s
            (T0 + 15 * S, 3, [("100.00", "1")], [("100.03", "1")]),  # stamped early: 20 s on
            (T0 + 40 * S, 4, [("100.00", "1")], [("100.01", "1")]),  # stands 20 s
        ]
    )
    row = microstructure_metrics(book, _deltas([]), _trades([])).per_minute.to_pylist()[0]
    assert row["book_seconds"] == 50.0
    assert row["spread_mean"] == pytest.approx((0.03 * 20 + 0.01 * 20) / 40)
    assert row["spread_p50"] == 0.01  # half the weight reached at 0.01 (lower median)
    # A book published and replaced within the same nanosecond still counts for min and max.
    assert row["spread_max"] == 0.05
    assert row["mid_open"] == pytest.approx(100.025)
    assert row["imbalance_l1_mean"] == pytest.approx(1.0 * 10 / 50)
    assert row["levels_ask_mean"] == pytest.approx(40 / 50)
    assert row["depth_ask_min"] == 0.0


def test_received_time_stands_in_for_a_missing_origin_time() -> None:
    trades = _trades([T0 + 5 * S, T0 + MINUTE + 5 * S])
    trades = trades.set_column(0, "origin_time", pa.array([0, None], pa.int64()))
    rows = microstructure_metrics(_book([]), _deltas([]), trades).per_minute.to_pylist()
    assert [row["minute_start"] for row in rows] == [T0, T0 + MINUTE]
    assert rows[0]["spread_mean"] is None and rows[0]["book_seconds"] == 0.0


@pytest.mark.parametrize(
    "book, deltas, trades",
    [
        ([], [], []),
        ([], [], TRADE_TIMES),
        ([BOOK_A, BOOK_B], [], []),
        ([], DELTAS, []),
    ],
    ids=["all_empty", "trades_only", "book_only", "deltas_only"],
)
def test_empty_inputs_do_not_fail(book, deltas, trades) -> None:
    result = microstructure_metrics(_book(book), _deltas(deltas), _trades(trades))
    assert result.per_minute.schema == PER_MINUTE_SCHEMA
    assert result.update_frequency_by_level.schema == UPDATE_FREQUENCY_SCHEMA
    assert result.update_frequency_by_level.num_rows == 2 * (BOOK_LEVELS + 3)
    assert sum(result.update_frequency_by_level["delta_rows"].to_pylist()) == len(deltas)
    summary = result.summary
    assert (summary["messages"], summary["delta_rows"], summary["trades"]) == (
        len(book),
        len(deltas),
        len(trades),
    )
    if not (book or deltas or trades):
        assert result.per_minute.num_rows == 0
        assert summary["minutes"] == 0
        assert summary["trade_to_book_ratio"] is None
        assert summary["spread_bps_mean"] is None
        assert summary["messages_per_second_max"] is None
    if not book:
        assert summary["spread_mean"] is None
        assert result.per_minute["spread_mean"].null_count == result.per_minute.num_rows


def test_decimals_to_floats() -> None:
    values = [Decimal("61686.00"), Decimal("-0.000000000000000001"), None, Decimal("-61685.99")]
    array = pa.array([Decimal(7), *values], DECIMAL_TYPE).slice(1)  # a chunk with an offset
    column = pa.chunked_array([array.slice(0, 2), array.slice(2)])
    expected = [61686.0, -1e-18, np.nan, -61685.99]
    np.testing.assert_array_equal(to_float(column, correctly_rounded=True), expected)
    np.testing.assert_allclose(to_float(column), expected, rtol=3e-16, atol=0)
    assert to_float(column, null=0.0)[2] == 0.0
    np.testing.assert_array_equal(to_float(pa.array([1.5, None])), [1.5, np.nan])
    ask = pa.chunked_array([pa.array([Decimal("61686.00"), None], DECIMAL_TYPE)])
    bid = pa.chunked_array([pa.array([Decimal("61685.99"), Decimal("1")], DECIMAL_TYPE)])
    # Exact on the decimals: the float 0.01, not 61686.0 - 61685.99.
    np.testing.assert_array_equal(decimal_difference(ask, bid), [0.01, np.nan])


@pytest.mark.parametrize("digits", [0, 2, 5, 8, 12, 18])
def test_float_conversion_against_python_decimals(digits: int) -> None:
    rng = np.random.default_rng(digits)
    ints = rng.integers(-(10**14), 10**14, 5_000) // rng.choice([1, 10, 10**6, 10**12], 5_000)
    column = scaled_to_decimal(ints, digits)
    nearest = np.array([float(Decimal(int(i)).scaleb(-digits)) for i in ints])
    np.testing.assert_allclose(to_float(column), nearest, rtol=4.5e-16, atol=0)
    # At most 14 significant digits: every value is the nearest float.
    np.testing.assert_array_equal(to_float(column, correctly_rounded=True), nearest)
    # 17 and 18 significant digits: within two ulps, never a wrong "exact" value.
    long = rng.integers(-(10**18), 10**18, 5_000)
    nearest = np.array([float(Decimal(int(i)).scaleb(-digits)) for i in long])
    for rounded in (False, True):
        converted = to_float(scaled_to_decimal(long, digits), correctly_rounded=rounded)
        np.testing.assert_allclose(converted, nearest, rtol=4.5e-16, atol=0)


# --- the real-data slice -------------------------------------------------------------------


def _slice_day(day: dt.date) -> tuple[pa.Table, pa.Table, pa.Table]:
    lake = FileLake(str(SLICE))

    def raw(table: str) -> pa.Table:
        pieces = []
        for filed_under in FIXTURE_DAYS:
            found = lake.read_day(table, "BINANCE", "BTC-USDT", filed_under)
            pieces += [(filed_under, part) for part in found.tables]
        return clean_day(table, day, pieces).table

    deltas, snapshots, trades = raw(BOOK_DELTAS), raw(BOOK), raw(TRADES)
    return reconstruct_day(deltas, snapshots, None).book, deltas, trades


@pytest.fixture(scope="module", params=FIXTURE_DAYS, ids=str)
def real_day(request):
    book, deltas, trades = _slice_day(request.param)
    return book, deltas, trades, microstructure_metrics(book, deltas, trades)


def test_real_slice_figures_are_sane(real_day) -> None:
    book, deltas, trades, result = real_day
    per_minute, summary = result.per_minute, result.summary
    times = np.concatenate([table["origin_time"].to_numpy() for table in (book, deltas, trades)])
    minutes = np.unique(times // MINUTE) * MINUTE
    assert per_minute["minute_start"].to_pylist() == minutes.tolist()
    assert summary["messages"] == book.num_rows
    assert summary["delta_rows"] == deltas.num_rows
    assert summary["trades"] == trades.num_rows
    # BTC-USDT's spread is one tick nearly all the time, and exactly 0.01 (decimal subtraction).
    assert summary["spread_p50"] == 0.01
    assert per_minute["spread_p50"].to_pylist() == [0.01] * per_minute.num_rows
    assert 0.001 < summary["spread_bps_p50"] < 0.002
    assert summary["spread_bps_p99"] >= summary["spread_bps_p50"]
    # Binance spot publishes depth diffs every 100 ms while every trade is its own event: there
    # are several trades per delta message, and far fewer trades than delta rows.
    assert summary["trade_to_book_ratio"] == trades.num_rows / summary["delta_messages"]
    assert 0 < summary["trade_to_delta_row_ratio"] < 1
    assert -1 <= summary["imbalance_l1_mean"] <= 1
    assert summary["levels_bid_p50"] == summary["levels_ask_p50"] == 20.0
    assert summary["depth_bid_mean"] > 0 and summary["depth_ask_mean"] > 0
    assert 0 < summary["messages_per_second_max"] <= 11  # 100 ms diffs, one minute may hold 601
    frequency = result.update_frequency_by_level
    assert sum(frequency["delta_rows"].to_pylist()) == deltas.num_rows
    shares = [row["change_share"] for row in frequency.to_pylist() if row["bucket"] == "level"]
    assert all(0 < share <= 1 for share in shares)


def test_real_slice_levels_match_a_plain_reference(real_day) -> None:
    """Exact decimals, row by row: the vectorized float lookups must agree."""
    book, deltas, _, result = real_day
    books = book.to_pylist()
    row_of = {row["sequence_number"]: index for index, row in enumerate(books)}
    expected: Counter = Counter()
    for delta in deltas.select(["sequence_number", "side_is_bid", "price"]).to_pylist():
        side = "bid" if delta["side_is_bid"] else "ask"
        key_side = side.upper()
        index = row_of.get(delta["sequence_number"], 0)
        if index == 0:
            expected[(key_side, "no_prior_book")] += 1
            continue
        prices = [books[index - 1][f"{side}_{k}_price"] for k in range(BOOK_LEVELS)]
        present = [price for price in prices if price is not None]
        if delta["price"] in present:
            expected[(key_side, prices.index(delta["price"]))] += 1
        elif len(present) == BOOK_LEVELS and (
            delta["price"] < present[-1] if side == "bid" else delta["price"] > present[-1]
        ):
            expected[(key_side, "deeper")] += 1
        else:
            expected[(key_side, "new_price")] += 1
    changes: Counter = Counter()
    for before, after in itertools.pairwise(books):
        for side in ("bid", "ask"):
            for level in range(BOOK_LEVELS):
                names = (f"{side}_{level}_price", f"{side}_{level}_size")
                if any(before[name] != after[name] for name in names):
                    changes[(side.upper(), level)] += 1
    table = _frequency(result)
    assert {k: r["delta_rows"] for k, r in table.items() if r["delta_rows"]} == expected
    assert {k: r["changes"] for k, r in table.items() if r["changes"]} == changes


# --- streamed in batches: the same figures as the whole-table reference -------------------


def _assert_same(result, expected) -> None:
    assert result.per_minute.equals(expected.per_minute)
    assert result.update_frequency_by_level.equals(expected.update_frequency_by_level)
    assert result.summary == expected.summary


@pytest.mark.parametrize("batch_rows", [1, 3, 17, 10**6])
@pytest.mark.parametrize(
    "book, deltas, trades",
    [
        ([BOOK_A, BOOK_B, BOOK_C], DELTAS, TRADE_TIMES),
        ([], [], []),
        ([], DELTAS, TRADE_TIMES),
        ([BOOK_A, BOOK_B], [], []),
        ([BOOK_C], DELTAS, []),
    ],
    ids=["small", "empty", "no_book", "book_only", "one_row"],
)
def test_batches_give_the_reference_figures(batch_rows, book, deltas, trades) -> None:
    tables = _book(book), _deltas(deltas), _trades(trades)
    expected = reference_microstructure.microstructure_metrics(*tables)
    _assert_same(microstructure_metrics(*tables, batch_rows=batch_rows), expected)


def _random_day(rng: np.random.Generator, rows: int):
    """Books on a 0.01 grid with random depth, out-of-order and equal times, minutes without
    books, and deltas at levels, new prices, deeper, and sequence numbers without a book row."""
    tick = 0.01
    entries, delta_rows = [], []
    time = T0 + int(rng.integers(0, 50 * S))
    sequence = 100
    for _ in range(rows):
        time += int(rng.choice([0, 1, 10**6, 3 * S, 70 * S], p=[0.2, 0.1, 0.4, 0.25, 0.05]))
        stamped = time - int(rng.integers(0, 2 * S)) if rng.random() < 0.1 else time
        best_bid = 100 + int(rng.integers(-3, 4))
        spread = int(rng.choice([1, 1, 1, 2, 5]))
        bids = [
            (f"{(best_bid - level) * tick + 60:.2f}", f"{rng.integers(1, 9) / 4:.2f}")
            for level in range(int(rng.integers(0, BOOK_LEVELS + 1)))
        ]
        asks = [
            (f"{(best_bid + spread + level) * tick + 60:.2f}", f"{rng.integers(1, 9) / 4:.2f}")
            for level in range(int(rng.integers(0, BOOK_LEVELS + 1)))
        ]
        sequence += int(rng.choice([1, 2]))
        for _ in range(int(rng.integers(1, 6))):
            bid = bool(rng.random() < 0.5)
            price = (best_bid + int(rng.integers(-25, 26))) * tick + 60
            delta_rows.append((stamped, sequence, bid, f"{price:.2f}", "1"))
        if rng.random() < 0.9:  # some messages have no book row
            entries.append((stamped, sequence, bids, asks))
    trades = sorted((T0 + rng.integers(0, time - T0 + 2 * S, int(rng.integers(0, 30)))).tolist())
    return _book(entries), _deltas(delta_rows), _trades(trades)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.sampled_from([1, 3, 17, 64]))
def test_random_days_in_batches_give_the_reference_figures(seed, rows, batch_rows) -> None:
    tables = _random_day(np.random.default_rng(seed), rows)
    expected = reference_microstructure.microstructure_metrics(*tables)
    _assert_same(microstructure_metrics(*tables, batch_rows=batch_rows), expected)
    with pytest.MonkeyPatch.context() as patch:
        # Few histogram bins: the day's spread quantiles then need further passes over the book.
        patch.setattr(exact_quantiles, "_MAX_BINS", 16)
        patch.setattr(exact_quantiles, "_MAX_COLLECTED", 4)
        _assert_same(microstructure_metrics(*tables, batch_rows=batch_rows), expected)


@pytest.mark.parametrize("batch_rows", [17, 1000])
def test_real_slice_in_batches_gives_the_reference_figures(real_day, batch_rows) -> None:
    book, deltas, trades, result = real_day
    expected = reference_microstructure.microstructure_metrics(book, deltas, trades)
    _assert_same(result, expected)
    _assert_same(microstructure_metrics(book, deltas, trades, batch_rows=batch_rows), expected)
