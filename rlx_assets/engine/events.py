"""One chronological market event stream: trades, book deltas and validated book snapshots.

Order: `event_timestamp` (origin time), then a fixed type rank, then `update_id`/`trade_id`; ties
keep the input order (a stable sort), so the same input gives byte-identical output. A trade ranks
before the book delta stamped with it (the trade causes the book change), and a snapshot after the
deltas of its message (it shows the book once they are applied).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.decimals import DECIMAL_TYPE
from rlx_assets.lake.schema import BOOK_LEVELS

TRADE, BOOK_DELTA, BOOK_SNAPSHOT = "TRADE", "BOOK_DELTA", "BOOK_SNAPSHOT"
TYPE_RANK = {TRADE: 0, BOOK_DELTA: 1, BOOK_SNAPSHOT: 2}

LEVEL_TYPE = pa.list_(DECIMAL_TYPE, 2)  # [price, size]
LEVELS_TYPE = pa.list_(LEVEL_TYPE)

EVENT_SCHEMA = pa.schema(
    [
        ("event_timestamp", pa.int64()),
        ("event_type", pa.string()),
        ("update_id", pa.int64()),
        ("trade_id", pa.int64()),
        ("trade_price", DECIMAL_TYPE),
        ("trade_quantity", DECIMAL_TYPE),
        ("trade_side", pa.string()),
        ("delta_side", pa.string()),
        ("delta_price", DECIMAL_TYPE),
        ("delta_quantity", DECIMAL_TYPE),
        ("bids", LEVELS_TYPE),
        ("asks", LEVELS_TYPE),
        ("received_time", pa.int64()),
    ]
)


def type_ranks(event_types: pa.ChunkedArray | pa.Array) -> np.ndarray:
    ranked = pa.array(sorted(TYPE_RANK, key=TYPE_RANK.get), pa.string())
    return pc.index_in(event_types, value_set=ranked).to_numpy(zero_copy_only=False)


def _event_time(table: pa.Table) -> pa.Array:
    """origin_time; received_time stands in where the vendor left origin_time empty."""
    origin = table["origin_time"]
    valid = pc.fill_null(pc.greater(origin, 0), False)
    return pc.if_else(valid, origin, table["received_time"]).combine_chunks()


def _filled(rows: int, columns: dict[str, pa.Array]) -> pa.Table:
    arrays = [
        columns[field.name] if field.name in columns else pa.nulls(rows, field.type)
        for field in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def trade_events(trades: pa.Table) -> pa.Table:
    rows = trades.num_rows
    return _filled(
        rows,
        {
            "event_timestamp": _event_time(trades),
            "event_type": pa.array([TRADE] * rows, pa.string()),
            "trade_id": trades["trade_id"].combine_chunks(),
            "trade_price": trades["price"].combine_chunks(),
            "trade_quantity": trades["quantity"].combine_chunks(),
            "trade_side": pc.utf8_upper(trades["side"]).combine_chunks(),
            "received_time": trades["received_time"].combine_chunks(),
        },
    )


def delta_events(deltas: pa.Table) -> pa.Table:
    rows = deltas.num_rows
    sides = pc.if_else(deltas["side_is_bid"], "BID", "ASK").combine_chunks()
    return _filled(
        rows,
        {
            "event_timestamp": _event_time(deltas),
            "event_type": pa.array([BOOK_DELTA] * rows, pa.string()),
            "update_id": deltas["sequence_number"].combine_chunks(),
            "delta_side": sides.cast(pa.string()),
            "delta_price": deltas["price"].combine_chunks(),
            "delta_quantity": deltas["size"].combine_chunks(),
            "received_time": deltas["received_time"].combine_chunks(),
        },
    )


def _levels(book: pa.Table, side: str) -> pa.Array:
    """The side's present levels as a list of [price, size], best first."""
    rows = book.num_rows
    present = np.zeros((rows, BOOK_LEVELS), dtype=bool)
    price_columns = [book[f"{side}_{level}_price"].combine_chunks() for level in range(BOOK_LEVELS)]
    size_columns = [book[f"{side}_{level}_size"].combine_chunks() for level in range(BOOK_LEVELS)]
    for level in range(BOOK_LEVELS):
        present[:, level] = price_columns[level].is_valid().to_numpy(zero_copy_only=False)
    # Interleave [price, size] per level, row-major, keeping only present levels.
    flat_prices = pa.chunked_array(price_columns).combine_chunks()
    flat_sizes = pa.chunked_array(size_columns).combine_chunks()
    # Index of (row, level) in the level-major concatenation above.
    row_index, level_index = np.nonzero(present)
    take = level_index * rows + row_index
    pairs_values = pa.concat_arrays(
        [flat_prices.take(pa.array(take)), flat_sizes.take(pa.array(take))]
    )
    count = take.size
    interleave = np.empty(2 * count, dtype=np.int64)
    interleave[0::2] = np.arange(count)
    interleave[1::2] = np.arange(count) + count
    pair_array = pa.FixedSizeListArray.from_arrays(pairs_values.take(pa.array(interleave)), 2)
    offsets = np.concatenate(([0], np.cumsum(present.sum(axis=1)))).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pair_array, type=LEVELS_TYPE)


def snapshot_events(book: pa.Table) -> pa.Table:
    rows = book.num_rows
    return _filled(
        rows,
        {
            "event_timestamp": _event_time(book),
            "event_type": pa.array([BOOK_SNAPSHOT] * rows, pa.string()),
            "update_id": book["sequence_number"].combine_chunks(),
            "bids": _levels(book, "bid"),
            "asks": _levels(book, "ask"),
            "received_time": book["received_time"].combine_chunks(),
        },
    )


def snapshot_rows(book: pa.Table) -> pa.Table:
    """The reconstructed rows published as snapshots: the day's first book, every row checked
    against a vendor snapshot (the vendor's cadence), and every resync (a consumer replaying the
    deltas must jump there)."""
    rows = book.num_rows
    if rows == 0:
        return book
    keep = pc.or_(pc.is_valid(book["vendor_match"]), book["resynced"]).to_numpy(
        zero_copy_only=False
    )
    keep = keep.copy()
    keep[0] = True
    return book.filter(pa.array(keep))


def unified_events(trades: pa.Table, deltas: pa.Table, book: pa.Table) -> pa.Table:
    """The day's stream, ordered as the module docstring says."""
    parts = [trade_events(trades), delta_events(deltas), snapshot_events(snapshot_rows(book))]
    events = pa.concat_tables(parts)
    rank = type_ranks(events["event_type"])
    identity = pc.coalesce(events["update_id"], events["trade_id"]).combine_chunks()
    keys = pa.table({"t": events["event_timestamp"], "rank": pa.array(rank), "id": identity})
    order = pc.sort_indices(
        keys, sort_keys=[("t", "ascending"), ("rank", "ascending"), ("id", "ascending")]
    )
    return events.take(order).combine_chunks()


def chronology_violations(events: pa.Table) -> int:
    """Adjacent pairs out of (event_timestamp, type rank, id) order."""
    if events.num_rows < 2:
        return 0
    time = events["event_timestamp"].to_numpy()
    ranks = type_ranks(events["event_type"])
    ids = pc.fill_null(pc.coalesce(events["update_id"], events["trade_id"]), 0).to_numpy()
    previous = (time[:-1], ranks[:-1], ids[:-1])
    current = (time[1:], ranks[1:], ids[1:])
    later = (current[0] > previous[0]) | (
        (current[0] == previous[0])
        & ((current[1] > previous[1]) | ((current[1] == previous[1]) & (current[2] >= previous[2])))
    )
    return int((~later).sum())
