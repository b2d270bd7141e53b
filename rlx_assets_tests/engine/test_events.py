from decimal import Decimal

import numpy as np
import pyarrow as pa

from rlx_assets.engine.decimals import scaled_to_decimal
from rlx_assets.engine.events import EVENT_SCHEMA, chronology_violations, unified_events
from rlx_assets.lake.schema import book_level_columns


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


def test_events_are_ordered_by_time_then_type_then_id() -> None:
    events = unified_events(*_inputs())
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


def test_snapshot_events_carry_price_size_pairs_best_first() -> None:
    events = unified_events(*_inputs())
    snapshot = events.filter(pa.compute.equal(events["event_type"], "BOOK_SNAPSHOT")).to_pylist()[1]
    assert snapshot["bids"] == [
        [Decimal("9.99"), Decimal("0.10")],
        [Decimal("9.98"), Decimal("0.03")],
    ]
    assert snapshot["asks"] == [[Decimal("10.02"), Decimal("0.04")]]
    assert snapshot["update_id"] == 51


def test_same_input_same_bytes_and_disorder_is_counted() -> None:
    first, second = unified_events(*_inputs()), unified_events(*_inputs())
    assert first.equals(second)
    swapped = pa.concat_tables([first.slice(6), first.slice(0, 6)])
    assert chronology_violations(swapped) == 1
