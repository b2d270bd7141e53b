"""synthetic://: determinism, schemas, grids, volume, filing, and above all consistency.

The book engine is verified against this lake, so the consistency tests replay the deltas with a
plain-Python reference book written here, independent of the simulator's code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rlx_assets import schema
from rlx_assets.lake.synthetic import day as synthetic_day
from rlx_assets.lake.synthetic import market
from rlx_assets.lake.synthetic.day import generate_origin_day
from rlx_assets.lake.synthetic.lake import SyntheticLake

EXCHANGE = "BINANCE"
SYMBOL = "BTC-USDT"
DAY = dt.date(2024, 8, 8)
NEXT_DAY = DAY + dt.timedelta(days=1)
SCALE = 0.002
DAY_NS = 86_400 * 10**9
SNAPSHOT_NS = 100 * 10**6

# symbol -> (price decimals, size decimals) of its grid
GRIDS = {"BTC-USDT": (2, 5), "ETH-USDT": (2, 4), "SOL-USDT": (4, 2)}

Book = tuple[dict[float, float], dict[float, float]]  # bids, asks: price -> size


def day_start_ns(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_NS


@pytest.fixture(scope="module")
def day0() -> dict[str, pa.Table]:
    return generate_origin_day(EXCHANGE, SYMBOL, DAY, SCALE)


@pytest.fixture(scope="module")
def day1() -> dict[str, pa.Table]:
    return generate_origin_day(EXCHANGE, SYMBOL, NEXT_DAY, SCALE)


# --- Reference book --------------------------------------------------------------------------


def _messages(deltas: pa.Table) -> Iterator[tuple[int, int, int, list[tuple[bool, float, float]]]]:
    """(sequence_number, origin_time, received_time, rows) per message, in file order."""
    columns = deltas.to_pydict()
    n = deltas.num_rows
    start = 0
    while start < n:
        seq = columns["sequence_number"][start]
        end = start
        while end < n and columns["sequence_number"][end] == seq:
            end += 1
        rows = [
            (columns["side_is_bid"][k], columns["price"][k], columns["size"][k])
            for k in range(start, end)
        ]
        origins = set(columns["origin_time"][start:end])
        receiveds = set(columns["received_time"][start:end])
        assert len(origins) == 1 and len(receiveds) == 1, f"message {seq} has mixed times"
        yield seq, origins.pop(), receiveds.pop(), rows
        start = end


def _apply(book: Book, rows: list[tuple[bool, float, float]]) -> None:
    for is_bid, price, size in rows:
        side = book[0] if is_bid else book[1]
        if size == 0:
            side.pop(price, None)
        else:
            side[price] = size


def _top(book: Book, levels: int = 20) -> tuple[list, list]:
    return heapq.nlargest(levels, book[0].items()), heapq.nsmallest(levels, book[1].items())


def _snapshot_levels(row: dict) -> tuple[list, list]:
    sides = []
    for side in ("bid", "ask"):
        levels = []
        for level in range(schema.BOOK_LEVELS):
            price, size = row[f"{side}_{level}_price"], row[f"{side}_{level}_size"]
            if price is None:
                assert size is None
                continue
            levels.append((price, size))
        sides.append(levels)
    return sides[0], sides[1]


def _replay_day(tables: dict[str, pa.Table], book: Book | None = None) -> tuple[Book, int]:
    """Replay a day's deltas (in sequence order) onto `book`; check every snapshot and trade.

    Returns the final book and the number of snapshots checked.
    """
    book = ({}, {}) if book is None else (dict(book[0]), dict(book[1]))
    deltas = tables[schema.BOOK_DELTAS].sort_by("sequence_number")  # stable: keeps row order
    snapshots = {row["sequence_number"]: row for row in tables[schema.BOOK].to_pylist()}
    trades = tables[schema.TRADES].sort_by("trade_id").to_pylist()
    next_trade = 0
    checked = 0
    for seq, origin, _, rows in _messages(deltas):
        touched = {(is_bid, price) for is_bid, price, _ in rows}
        # Fills published by this message hit the best level of the book as it stood.
        before = (dict(book[0]), dict(book[1]))
        while next_trade < len(trades) and trades[next_trade]["origin_time"] <= origin:
            trade = trades[next_trade]
            assert origin - trade["origin_time"] < SNAPSHOT_NS, "fill published late"
            hit_bid = trade["side"] == "sell"
            resting = before[0] if hit_bid else before[1]
            best = max(resting) if hit_bid else min(resting)
            assert trade["price"] == best, f"trade {trade['trade_id']} not at the best"
            assert trade["quantity"] <= resting[best] * (1 + 1e-12)
            assert (hit_bid, best) in touched, f"trade {trade['trade_id']}: no delta row"
            resting[best] -= trade["quantity"]
            if resting[best] <= 1e-12:  # fully taken (equal floats subtract to exactly 0)
                del resting[best]
            next_trade += 1
        _apply(book, rows)
        assert max(book[0]) < min(book[1]), f"crossed book after message {seq}"
        assert min(len(book[0]), len(book[1])) >= 100, f"book too thin after message {seq}"
        if seq in snapshots:
            assert _top(book) == _snapshot_levels(snapshots[seq]), f"snapshot {seq} differs"
            checked += 1
    assert next_trade == len(trades), "trades after the day's last message"
    return book, checked


def _opening_burst(tables: dict[str, pa.Table]) -> Book:
    deltas = tables[schema.BOOK_DELTAS].sort_by("sequence_number")
    *_, rows = next(_messages(deltas))
    book: Book = ({}, {})
    _apply(book, rows)
    return book


# --- Schema, determinism, grids --------------------------------------------------------------


def test_tables_have_the_canonical_schemas(day0: dict[str, pa.Table]) -> None:
    assert set(day0) == set(schema.TABLES)
    for name, table in day0.items():
        assert table.schema == schema.SCHEMAS[name], name
        assert table.num_rows > 0, name
        assert schema.normalize_table(name, table, "synthetic").equals(table)


def test_same_inputs_give_identical_tables() -> None:
    first = generate_origin_day(EXCHANGE, "ETH-USDT", DAY, 0.001)
    synthetic_day._origin_day.cache_clear()
    second = generate_origin_day(EXCHANGE, "ETH-USDT", DAY, 0.001)
    for name in schema.TABLES:
        assert first[name] is not second[name]
        assert first[name].equals(second[name]), name
    other = generate_origin_day("COINBASE", "ETH-USDT", DAY, 0.001)
    assert not other[schema.TRADES].equals(first[schema.TRADES])


def _table_digests(exchange: str, symbol: str, day: dt.date, scale: float) -> dict[str, str]:
    digests = {}
    for name, table in generate_origin_day(exchange, symbol, day, scale).items():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digests[name] = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
    return digests


def test_same_inputs_give_identical_tables_in_another_process() -> None:
    code = (
        "import datetime as dt, hashlib, json\n"
        "import pyarrow as pa\n"
        "from rlx_assets.lake.synthetic.day import generate_origin_day\n"
        "digests = {}\n"
        "tables = generate_origin_day('BINANCE', 'BTC-USDT', dt.date(2024, 8, 8), 0.0005)\n"
        "for name, table in tables.items():\n"
        "    sink = pa.BufferOutputStream()\n"
        "    with pa.ipc.new_stream(sink, table.schema) as writer:\n"
        "        writer.write_table(table)\n"
        "    digests[name] = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()\n"
        "print(json.dumps(digests))\n"
    )
    # A different hash seed: nothing may depend on Python's salted hash().
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    theirs = result.stdout.strip().splitlines()[-1]
    assert json.loads(theirs) == _table_digests(EXCHANGE, SYMBOL, DAY, 0.0005)


def _assert_on_grid(values: np.ndarray, decimals: int, what: str) -> None:
    units = np.round(values * 10**decimals)
    assert np.array_equal(units / 10.0**decimals, values), f"{what} off the 1e-{decimals} grid"


@pytest.mark.parametrize("symbol", sorted(GRIDS))
def test_prices_and_sizes_lie_on_the_instrument_grid(symbol: str) -> None:
    price_decimals, size_decimals = GRIDS[symbol]
    lot = 10.0**-size_decimals
    tables = generate_origin_day(EXCHANGE, symbol, DAY, SCALE)
    deltas, trades, book = (
        tables[name] for name in (schema.BOOK_DELTAS, schema.TRADES, schema.BOOK)
    )
    _assert_on_grid(deltas["price"].to_numpy(), price_decimals, "delta price")
    _assert_on_grid(deltas["size"].to_numpy(), size_decimals, "delta size")
    assert pc.min(deltas["size"]).as_py() == 0 and pc.min(deltas["price"]).as_py() > 0
    _assert_on_grid(trades["price"].to_numpy(), price_decimals, "trade price")
    _assert_on_grid(trades["quantity"].to_numpy(), size_decimals, "trade quantity")
    assert pc.min(trades["quantity"]).as_py() >= lot
    assert set(trades["side"].to_pylist()) == {"buy", "sell"}
    for name in schema.book_level_columns():
        values = book[name].drop_null().to_numpy()
        decimals = price_decimals if name.endswith("price") else size_decimals
        _assert_on_grid(values, decimals, name)
        if name.endswith("size"):
            assert values.min() >= lot
    if symbol not in ("BTC-USDT", "ETH-USDT"):
        prices = trades["price"].to_numpy()
        assert prices.min() >= 0.5 and prices.max() <= 2000  # a seeded level in 1..1000


# --- Messages, snapshots, trades -------------------------------------------------------------


def test_messages_have_increasing_jumping_sequence_numbers(day0: dict[str, pa.Table]) -> None:
    messages = list(_messages(day0[schema.BOOK_DELTAS]))
    seqs = np.array([seq for seq, *_ in messages])
    steps = np.diff(seqs)
    assert steps.min() > 0, "sequence numbers must increase from message to message"
    assert (steps > 1).mean() > 0.9, "real exchange ids jump; they should not step by 1"
    origins = np.array([origin for _, origin, *_ in messages])
    assert np.all(np.diff(origins) > 0)
    for seq, _, _, rows in messages:
        assert len({(is_bid, price) for is_bid, price, _ in rows}) == len(rows), seq


def test_day_opens_with_a_full_book_burst(day0: dict[str, pa.Table]) -> None:
    seq, origin, _, rows = next(_messages(day0[schema.BOOK_DELTAS]))
    assert origin == day_start_ns(DAY)
    bids = [row for row in rows if row[0]]
    asks = [row for row in rows if not row[0]]
    assert min(size for *_, size in rows) > 0
    # Full depth: hundreds of levels per side, far more than the 20 of a snapshot.
    assert 300 <= len(bids) <= 1000 and 300 <= len(asks) <= 1000
    first = day0[schema.BOOK].slice(0, 1).to_pylist()[0]
    assert first["sequence_number"] == seq and first["origin_time"] == origin


def test_snapshots_are_at_least_100ms_apart(
    day0: dict[str, pa.Table], day1: dict[str, pa.Table]
) -> None:
    times = np.concatenate([day["book"]["origin_time"].to_numpy() for day in (day0, day1)])
    assert np.diff(times).min() >= SNAPSHOT_NS
    delta_seqs = set(day0[schema.BOOK_DELTAS]["sequence_number"].to_pylist())
    assert set(day0[schema.BOOK]["sequence_number"].to_pylist()) <= delta_seqs


def test_replaying_deltas_reproduces_every_snapshot_across_midnight(
    day0: dict[str, pa.Table], day1: dict[str, pa.Table]
) -> None:
    end_of_day0, checked0 = _replay_day(day0)
    assert checked0 == day0[schema.BOOK].num_rows
    # Continuity: the book at the end of day D is exactly the one day D+1's burst describes.
    assert end_of_day0 == _opening_burst(day1)
    _, checked1 = _replay_day(day1, book=end_of_day0)
    assert checked1 == day1[schema.BOOK].num_rows


@pytest.mark.parametrize("symbol", ["ETH-USDT", "SOL-USDT"])
def test_other_symbols_replay_exactly(symbol: str) -> None:
    tables = generate_origin_day(EXCHANGE, symbol, DAY, 0.001)
    end, checked = _replay_day(tables)
    assert checked == tables[schema.BOOK].num_rows
    assert end == _opening_burst(generate_origin_day(EXCHANGE, symbol, NEXT_DAY, 0.001))


@pytest.mark.parametrize("scale", [1e-5, 1e-4])
def test_tiny_scales_stay_consistent_and_deep(scale: float) -> None:
    # Few messages carry the whole day's price move: each clears and rebuilds many levels.
    tables = generate_origin_day(EXCHANGE, "XRP-USDT", DAY, scale)
    end, _ = _replay_day(tables)
    assert end == _opening_burst(generate_origin_day(EXCHANGE, "XRP-USDT", NEXT_DAY, scale))


def test_spread_is_mostly_one_tick_and_widens_at_times() -> None:
    book = generate_origin_day(EXCHANGE, SYMBOL, DAY, 0.01)[schema.BOOK]
    spread = np.round((book["ask_0_price"].to_numpy() - book["bid_0_price"].to_numpy()) * 100)
    assert spread.min() >= 1
    assert 0.9 < (spread == 1).mean() < 1.0


def test_trade_ids_continue_across_days(
    day0: dict[str, pa.Table], day1: dict[str, pa.Table]
) -> None:
    ids = np.concatenate([day[schema.TRADES]["trade_id"].to_numpy() for day in (day0, day1)])
    assert np.all(np.diff(ids) == 1)
    origins = np.concatenate([day[schema.TRADES]["origin_time"].to_numpy() for day in (day0, day1)])
    assert np.all(np.diff(origins) >= 0)


def test_trade_sizes_are_heavy_tailed() -> None:
    quantity = generate_origin_day(EXCHANGE, SYMBOL, DAY, 0.01)[schema.TRADES]["quantity"]
    values = quantity.to_numpy()
    median, p99 = np.quantile(values, [0.5, 0.99])
    assert p99 > 30 * median and values.max() > 100 * median


# --- Receive times and filing by dt ----------------------------------------------------------


def test_received_after_origin_by_milliseconds(day0: dict[str, pa.Table]) -> None:
    for name, table in day0.items():
        delay = table["received_time"].to_numpy() - table["origin_time"].to_numpy()
        assert delay.min() > 0 and delay.max() < 50 * 10**6, name
        assert np.all(np.diff(table["received_time"].to_numpy()) >= 0), name
        origin = table["origin_time"].to_numpy()
        assert origin.min() >= day_start_ns(DAY) and origin.max() < day_start_ns(NEXT_DAY)


def test_read_day_files_rows_by_received_time_none_lost_or_doubled() -> None:
    lake = SyntheticLake(scale=SCALE)
    days = [DAY - dt.timedelta(days=1), DAY, NEXT_DAY]
    for name in schema.TABLES:
        key = "trade_id" if name == schema.TRADES else "sequence_number"
        filed = []
        for day in days:
            files = lake.read_day(name, EXCHANGE, SYMBOL, day)
            (rows,) = files.tables
            assert rows.schema == schema.SCHEMAS[name]
            received = rows["received_time"].to_numpy()
            start = day_start_ns(day)
            assert received.min() >= start and received.max() < start + DAY_NS
            order = rows.sort_by([("received_time", "ascending"), (key, "ascending")])
            assert order.equals(rows), f"{name} {day}: not in receive order"
            filed.append(rows)
        # Re-split by origin day: exactly the generated rows, in the same order.
        everything = pa.concat_tables(filed)
        origin = everything["origin_time"]
        start = day_start_ns(DAY)
        mine = everything.filter(
            pc.and_(pc.greater_equal(origin, start), pc.less(origin, start + DAY_NS))
        )
        assert mine.equals(generate_origin_day(EXCHANGE, SYMBOL, DAY, SCALE)[name]), name
    # The reconciliation message, 1 ms before midnight, is received (and filed) the next day.
    next_deltas = lake.read_day(schema.BOOK_DELTAS, EXCHANGE, SYMBOL, NEXT_DAY).tables[0]
    early = pc.less(next_deltas["origin_time"], day_start_ns(NEXT_DAY))
    assert 0 < pc.sum(early).as_py() < next_deltas.num_rows


def test_read_day_provenance() -> None:
    lake = SyntheticLake(scale=SCALE)
    files = lake.read_day(schema.TRADES, EXCHANGE, SYMBOL, DAY)
    (file,) = files.files
    (rows,) = files.tables
    assert file.uri.startswith(
        f"synthetic://trades/exchange={EXCHANGE}/symbol={SYMBOL}/dt={DAY}/part-0.parquet"
    )
    assert file.etag is None and file.size == rows.nbytes
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    assert file.sha256 == hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
    again = SyntheticLake(scale=SCALE).read_day(schema.TRADES, EXCHANGE, SYMBOL, DAY)
    assert again.files == files.files
    assert lake.url == "synthetic://"


def test_read_day_rejects_unknown_tables() -> None:
    with pytest.raises(schema.SourceSchemaError, match="book_delta_v3"):
        SyntheticLake().read_day("book_delta_v3", EXCHANGE, SYMBOL, DAY)


def test_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="scale"):
        SyntheticLake(scale=0)


# --- Volume ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.002, 0.01])
def test_volume_is_linear_in_scale(scale: float) -> None:
    for day in (DAY, NEXT_DAY):
        tables = generate_origin_day(EXCHANGE, SYMBOL, day, scale)
        deltas = tables[schema.BOOK_DELTAS]
        messages = len(pc.unique(deltas["sequence_number"]))
        observed = {
            "messages": messages,
            "delta rows": deltas.num_rows,
            "snapshots": tables[schema.BOOK].num_rows,
            "trades": tables[schema.TRADES].num_rows,
        }
        target = {
            "messages": market.MESSAGES_PER_DAY * scale,
            "delta rows": market.DELTA_ROWS_PER_DAY * scale,
            "snapshots": market.MESSAGES_PER_DAY * scale,
            "trades": market.TRADES_PER_DAY * scale,
        }
        for what, value in observed.items():
            assert 0.8 <= value / target[what] <= 1.2, f"{day} {what}: {value} vs {target[what]}"
