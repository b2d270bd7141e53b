from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rlx_assets.engine.decimals import scaled_to_decimal
from rlx_assets.engine.events import (
    BOOK_DELTA,
    BOOK_SNAPSHOT,
    EVENT_SCHEMA,
    TRADE,
    EventTally,
    InputOutOfOrder,
    chronology_violations,
    delta_events,
    snapshot_events,
    snapshot_rows,
    trade_events,
    type_ranks,
    unified_event_batches,
)
from rlx_assets.engine.merge import SpillReport
from rlx_assets.schema import book_level_columns


def _conformed(events: pa.Table, event_type: str) -> pa.Table:
    columns = {name: events[name] for name in events.column_names}
    columns["event_type"] = pa.array([event_type] * events.num_rows, pa.string())
    return pa.table(
        [columns.get(f.name, pa.nulls(events.num_rows, f.type)) for f in EVENT_SCHEMA],
        schema=EVENT_SCHEMA,
    )


def reference_unified_events(trades: pa.Table, deltas: pa.Table, book: pa.Table) -> pa.Table:
    """The whole-day version the asset ran before it streamed: one stable sort of everything."""
    parts = [
        _conformed(trade_events(trades), "TRADE"),
        _conformed(delta_events(deltas), "BOOK_DELTA"),
        _conformed(snapshot_events(snapshot_rows(book)), "BOOK_SNAPSHOT"),
    ]
    events = pa.concat_tables(parts)
    rank = type_ranks(events["event_type"])
    identity = pc.coalesce(events["update_id"], events["trade_id"]).combine_chunks()
    keys = pa.table({"t": events["event_timestamp"], "rank": pa.array(rank), "id": identity})
    order = pc.sort_indices(
        keys, sort_keys=[("t", "ascending"), ("rank", "ascending"), ("id", "ascending")]
    )
    return events.take(order).combine_chunks()


def _source(table: pa.Table):
    return lambda columns, rows: table.select(columns).to_batches(max_chunksize=rows)


def streamed(
    trades: pa.Table,
    deltas: pa.Table,
    book: pa.Table,
    folder: Path,
    batch_rows: int = 1000,
    run_rows: int = 1000,
    spill: SpillReport | None = None,
    tally: EventTally | None = None,
    sort: frozenset[str] | None = None,
) -> pa.Table:
    batches = unified_event_batches(
        _source(trades),
        _source(deltas),
        _source(book),
        folder,
        spill if spill is not None else SpillReport(),
        tally if tally is not None else EventTally(0, 1 << 62),
        batch_rows=batch_rows,
        run_rows=run_rows,
        sort=sort,
    )
    return pa.Table.from_batches(
        [batch for table in batches for batch in table.to_batches()], schema=EVENT_SCHEMA
    )


def _dec(values: list[int], digits: int = 2) -> pa.Array:
    return scaled_to_decimal(np.array(values, dtype=np.int64), digits)


def _inputs():
    trades = pa.table(
        {
            "origin_time": [100, 300],
            "received_time": [101, 301],
            "trade_id": [7, 8],
            "price": _dec([1000, 1001]),
            "quantity": _dec([5, 6]),
            "side": ["buy", "sell"],
        }
    )
    deltas = pa.table(
        {
            "origin_time": [100, 100, 200],
            "received_time": [102, 102, 202],
            "sequence_number": [50, 50, 51],
            "side_is_bid": [True, False, True],
            "price": _dec([999, 1001, 998]),
            "size": _dec([10, 0, 3]),
        }
    )
    book = {name: pa.nulls(2, pa.decimal128(38, 18)) for name in book_level_columns()}
    book.update(
        bid_0_price=_dec([999, 999]),
        bid_0_size=_dec([10, 10]),
        ask_0_price=_dec([1002, 1002]),
        ask_0_size=_dec([4, 4]),
    )
    book["bid_1_price"] = pa.array([None, Decimal("9.98")], pa.decimal128(38, 18))
    book["bid_1_size"] = pa.array([None, Decimal("0.03")], pa.decimal128(38, 18))
    book = pa.table(
        {
            "origin_time": [100, 200],
            "received_time": [102, 202],
            "sequence_number": [50, 51],
            **book,
            "resynced": [False, False],
            "repaired_levels": pa.array([0, 0], pa.int32()),
            "vendor_match": pa.array([None, True], pa.bool_()),
            "mid_deviation_bps": pa.array([None, 0.0], pa.float64()),
        }
    )
    return trades, deltas, book


def test_events_are_ordered_by_time_then_type_then_id(tmp_path: Path) -> None:
    events = streamed(*_inputs(), tmp_path)
    assert events.schema == EVENT_SCHEMA
    assert list(
        zip(events["event_timestamp"].to_pylist(), events["event_type"].to_pylist(), strict=True)
    ) == [
        (100, "TRADE"),
        (100, "BOOK_DELTA"),
        (100, "BOOK_DELTA"),
        (100, "BOOK_SNAPSHOT"),  # the day's first book
        (200, "BOOK_DELTA"),
        (200, "BOOK_SNAPSHOT"),  # checked against a vendor snapshot
        (300, "TRADE"),
    ]
    assert chronology_violations(events) == 0
    assert events["delta_side"].to_pylist()[1:3] == ["BID", "ASK"]
    assert events["trade_side"].to_pylist()[-1] == "SELL"
    assert events.equals(reference_unified_events(*_inputs()))


def test_snapshot_events_carry_price_size_pairs_best_first(tmp_path: Path) -> None:
    events = streamed(*_inputs(), tmp_path)
    snapshot = events.filter(pc.equal(events["event_type"], "BOOK_SNAPSHOT")).to_pylist()[1]
    assert snapshot["bids"] == [
        [Decimal("9.99"), Decimal("0.10")],
        [Decimal("9.98"), Decimal("0.03")],
    ]
    assert snapshot["asks"] == [[Decimal("10.02"), Decimal("0.04")]]
    assert snapshot["update_id"] == 51


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_snapshot_levels_equal_a_level_by_level_build(seed: int) -> None:
    """Books with missing levels and a missing size, sliced (an offset into the buffers): the
    [price, size] lists are the present levels, in order, with their nulls."""
    rng = np.random.default_rng(seed)
    rows = 50
    columns: dict[str, list] = {}
    for side in ("bid", "ask"):
        depth = rng.integers(0, 21, rows)
        depth[: rows // 2] = 20  # a full book, the usual case
        depth[-1] = 20
        for level in range(20):
            there = level < depth
            prices = [Decimal(100 + level + row) if there[row] else None for row in range(rows)]
            sizes = [Decimal(f"0.{row + 1}") if there[row] else None for row in range(rows)]
            if side == "ask" and level == 3:
                sizes[-1] = None if there[-1] else sizes[-1]  # a level without its size
            columns[f"{side}_{level}_price"] = prices
            columns[f"{side}_{level}_size"] = sizes
    book = pa.table(
        {
            "origin_time": pa.array(np.arange(rows, dtype=np.int64) + 1),
            "received_time": pa.array(np.arange(rows, dtype=np.int64) + 2),
            "sequence_number": pa.array(np.arange(rows, dtype=np.int64)),
            **{name: pa.array(values, pa.decimal128(38, 18)) for name, values in columns.items()},
        }
    ).slice(3)
    events = snapshot_events(book)
    for side in ("bid", "ask"):
        expected = [
            [
                [columns[f"{side}_{level}_price"][row], columns[f"{side}_{level}_size"][row]]
                for level in range(20)
                if columns[f"{side}_{level}_price"][row] is not None
            ]
            for row in range(3, rows)
        ]
        assert events[f"{side}s"].to_pylist() == expected


def test_same_input_same_bytes_and_disorder_is_counted(tmp_path: Path) -> None:
    first, second = streamed(*_inputs(), tmp_path), streamed(*_inputs(), tmp_path, batch_rows=1)
    assert first.equals(second)
    swapped = pa.concat_tables([first.slice(6), first.slice(0, 6)])
    assert chronology_violations(swapped) == 1


def test_the_tally_counts_as_the_whole_table_check_does(tmp_path: Path) -> None:
    tally = EventTally(start=150, end=300)
    events = streamed(*_inputs(), tmp_path, batch_rows=1, tally=tally)
    assert tally.out_of_order_pairs == 0
    assert tally.by_type == {"TRADE": 2, "BOOK_DELTA": 3, "BOOK_SNAPSHOT": 2}
    assert tally.outside_day == 5  # four at 100, one at 300
    swapped = pa.concat_tables([events.slice(6), events.slice(0, 6)])
    time = swapped["event_timestamp"].to_numpy()
    ranks = type_ranks(swapped["event_type"])
    ids = pc.coalesce(swapped["update_id"], swapped["trade_id"]).to_numpy()
    tally = EventTally(start=150, end=300)
    for start in range(swapped.num_rows):  # one event at a time: every pair is a seam
        tally.add(time[start : start + 1], ranks[start : start + 1], ids[start : start + 1])
    assert tally.out_of_order_pairs == chronology_violations(swapped) == 1


def _random_inputs(seed: int, backwards: bool) -> tuple[pa.Table, pa.Table, pa.Table]:
    """A day squeezed onto a few timestamps: ties within and across types, repeated ids, missing
    origin times; with `backwards`, delta (and book) times that go back along the sequence."""
    rng = np.random.default_rng(seed)
    times = np.arange(1, 13, dtype=np.int64) * 10

    def origin_and_received(effective: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        missing = rng.random(effective.size) < 0.15  # received_time stands in
        origin = np.where(rng.random(effective.size) < 0.5, 0, 10**6)  # zero or null
        return pa.array(np.where(missing, origin, effective), mask=missing & (origin > 0)), (
            np.where(missing, effective, effective + rng.integers(1, 5, effective.size))
        )

    trade_rows = int(rng.integers(0, 40))
    trade_time = np.sort(rng.choice(times, trade_rows))
    trade_id = rng.integers(1, 6, trade_rows)  # repeated on purpose: ties keep input order
    order = np.lexsort((trade_id, trade_time))
    trade_time, trade_id = trade_time[order], trade_id[order]
    trade_origin, trade_received = origin_and_received(trade_time)
    trades = pa.table(
        {
            "origin_time": trade_origin,
            "received_time": trade_received,
            "trade_id": trade_id,
            "price": _dec(rng.integers(900, 1100, trade_rows).tolist()),
            "quantity": _dec(np.arange(trade_rows).tolist()),  # tells equal keys apart
            "side": rng.choice(["buy", "sell"], trade_rows).tolist(),
        }
    )

    messages = int(rng.integers(0, 30))
    message_time = np.sort(rng.choice(times, messages))
    if backwards and messages:
        jump = rng.random(messages) < 0.2
        message_time[jump] = rng.choice(times, int(jump.sum()))
    sequence = np.arange(messages, dtype=np.int64) * 2 + 100
    rows_per_message = rng.integers(1, 4, messages)
    delta_time = np.repeat(message_time, rows_per_message)
    delta_origin, delta_received = origin_and_received(delta_time)
    delta_rows = delta_time.size
    deltas = pa.table(
        {
            "origin_time": delta_origin,
            "received_time": delta_received,
            "sequence_number": np.repeat(sequence, rows_per_message),
            "side_is_bid": rng.random(delta_rows) < 0.5,
            "price": _dec(rng.integers(900, 1100, delta_rows).tolist()),
            "size": _dec(np.arange(delta_rows).tolist()),
        }
    )

    book_origin, book_received = origin_and_received(message_time)
    levels = {name: pa.nulls(messages, pa.decimal128(38, 18)) for name in book_level_columns()}
    depth = rng.integers(0, 3, messages)
    for level in range(2):
        present = depth > level
        for side, base in (("bid", 999), ("ask", 1001)):
            levels[f"{side}_{level}_price"] = scaled_to_decimal(
                np.full(messages, base, np.int64), 2, present
            )
            levels[f"{side}_{level}_size"] = scaled_to_decimal(
                np.arange(messages, dtype=np.int64) + 1, 2, present
            )
    vendor = rng.random(messages) < 0.5
    book = pa.table(
        {
            "origin_time": book_origin,
            "received_time": book_received,
            "sequence_number": sequence,
            **levels,
            "resynced": rng.random(messages) < 0.2,
            "repaired_levels": pa.array(np.zeros(messages, np.int32)),
            "vendor_match": pa.array(rng.random(messages) < 0.9, mask=~vendor),
            "mid_deviation_bps": pa.array(np.zeros(messages), mask=~vendor),
        }
    )
    return trades, deltas, book


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_streamed_equals_one_whole_day_sort(seed: int, backwards: bool, tmp_path: Path) -> None:
    inputs = _random_inputs(seed, backwards)
    expected = reference_unified_events(*inputs)
    for batch_rows, run_rows in [(1, 1), (2, 5), (7, 3), (7, 1000), (1000, 2), (1000, 1000)]:
        events = streamed(*inputs, tmp_path, batch_rows=batch_rows, run_rows=run_rows)
        assert events.equals(expected), (batch_rows, run_rows)
    assert not any(tmp_path.iterdir())  # every run file removed


def _types_out_of_order(trades: pa.Table, deltas: pa.Table, book: pa.Table) -> set[str]:
    """The inputs whose events, as stored, go back in (time, id) somewhere."""
    events = {
        TRADE: (trade_events(trades), "trade_id"),
        BOOK_DELTA: (delta_events(deltas), "update_id"),
        BOOK_SNAPSHOT: (snapshot_events(snapshot_rows(book)), "update_id"),
    }
    found = set()
    for event_type, (table, id_column) in events.items():
        times, ids = table["event_timestamp"].to_pylist(), table[id_column].to_pylist()
        keys = list(zip(times, ids, strict=True))
        if keys != sorted(keys):
            found.add(event_type)
    return found


def streamed_trusting_order(*inputs, folder: Path, batch_rows: int) -> tuple[pa.Table, set[str]]:
    """As the asset does: every input trusted to be in order, and each one found out of order
    sorted in a fresh attempt (whose output replaces the previous one's)."""
    sort: set[str] = set()
    while True:
        try:
            return streamed(*inputs, folder, batch_rows, 3, sort=frozenset(sort)), sort
        except InputOutOfOrder as out_of_order:
            assert out_of_order.event_type not in sort
            sort.add(out_of_order.event_type)


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_trusting_the_order_gives_the_same_stream(
    seed: int, backwards: bool, tmp_path: Path
) -> None:
    inputs = _random_inputs(seed, backwards)
    expected = reference_unified_events(*inputs)
    for batch_rows in (1, 2, 7, 1000):
        events, sorted_types = streamed_trusting_order(
            *inputs, folder=tmp_path, batch_rows=batch_rows
        )
        assert events.equals(expected), batch_rows
        assert sorted_types == _types_out_of_order(*inputs)
    assert not any(tmp_path.iterdir())


def test_an_input_going_back_is_reported_before_its_late_rows_come_out(tmp_path: Path) -> None:
    trades, deltas, book = _random_inputs(5, backwards=True)
    with pytest.raises(InputOutOfOrder) as raised:
        streamed(trades, deltas, book, tmp_path, batch_rows=4, sort=frozenset())
    assert raised.value.event_type in (BOOK_DELTA, BOOK_SNAPSHOT)
    assert "not in (time, id) order" in str(raised.value)


@pytest.mark.parametrize("present", [(), ("trades",), ("deltas",), ("book",), ("deltas", "book")])
def test_empty_inputs_and_single_streams(present: tuple[str, ...], tmp_path: Path) -> None:
    trades, deltas, book = _random_inputs(3, backwards=True)
    inputs = [
        table if name in present else table.slice(0, 0)
        for name, table in zip(("trades", "deltas", "book"), (trades, deltas, book), strict=True)
    ]
    expected = reference_unified_events(*inputs)
    for batch_rows in (1, 2, 7, 1000):
        events = streamed(*inputs, tmp_path, batch_rows=batch_rows, run_rows=3)
        assert events.equals(expected)


def test_deltas_going_back_in_time_are_sorted_through_spilled_runs(tmp_path: Path) -> None:
    trades, deltas, book = _random_inputs(5, backwards=True)
    spill = SpillReport()
    batches = unified_event_batches(
        *(_source(table) for table in (trades, deltas, book)),
        tmp_path,
        spill,
        EventTally(0, 1 << 62),
        batch_rows=4,
        run_rows=8,
    )
    first = next(batches)  # the runs are written before the first event comes out
    runs = [path for folder in tmp_path.iterdir() for path in folder.iterdir()]
    assert spill.runs == len(runs) >= 2 and spill.bytes == sum(p.stat().st_size for p in runs)
    rest = list(batches)
    assert not any(tmp_path.iterdir())  # removed once merged
    events = pa.concat_tables([first, *rest])
    assert events.equals(reference_unified_events(trades, deltas, book))


def test_run_files_are_removed_when_the_stream_is_abandoned(tmp_path: Path) -> None:
    inputs = _random_inputs(5, backwards=True)
    batches = unified_event_batches(
        *(_source(table) for table in inputs),
        tmp_path,
        SpillReport(),
        EventTally(0, 1 << 62),
        batch_rows=4,
        run_rows=8,
    )
    next(batches)
    assert any(tmp_path.iterdir())
    batches.close()  # as after an error downstream
    assert not any(tmp_path.iterdir())


def test_sorted_inputs_never_spill(tmp_path: Path) -> None:
    spill = SpillReport()
    streamed(*_random_inputs(5, backwards=False), tmp_path, batch_rows=2, run_rows=2, spill=spill)
    assert spill == SpillReport(runs=0, bytes=0)
