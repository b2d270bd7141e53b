"""The book as Arrow tables: the wide top-20 rows (`reconstructed_book`), the full-depth end-of-day
state (`book_state`) and back, and the decimal digits they are written with."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.book_types import LEVELS, BookSide
from rlx_assets.engine.decimals import (
    decimal_digits_needed,
    decimal_to_scaled,
    scaled_columns_to_decimal,
    scaled_to_decimal,
)
from rlx_assets.engine.raw_account import DIGITS_KEYS
from rlx_assets.schema import book_level_columns

STATE_SCHEMA = pa.schema(
    [
        ("side", pa.string()),
        ("price", pa.decimal128(38, 18)),
        ("size", pa.decimal128(38, 18)),
        ("last_sequence_number", pa.int64()),
    ]
)


def level_names(side: str, kind: str) -> list[str]:
    return [f"{side}_{level}_{kind}" for level in range(LEVELS)]


def matrix(table: pa.Table, names: list[str], digits: int) -> np.ndarray:
    if table.num_rows == 0:
        return np.zeros((0, LEVELS), dtype=np.int64)
    return np.stack([decimal_to_scaled(table[name], digits) for name in names], axis=1)


def recorded_digits(metadata: Mapping[bytes, bytes] | None) -> tuple[int, int] | None:
    """(price, size) digits a raw table recorded in its metadata (a Parquet file's key-value
    metadata, or a table's schema metadata), if it did."""
    metadata = metadata or {}
    if DIGITS_KEYS["price"] in metadata and DIGITS_KEYS["size"] in metadata:
        return int(metadata[DIGITS_KEYS["price"]]), int(metadata[DIGITS_KEYS["size"]])
    return None


def table_digits(table: pa.Table, kind: str, names: list[str]) -> int:
    """Fractional digits that hold the table's prices or sizes: as the raw asset recorded them,
    else found by trial casts (tables built elsewhere)."""
    recorded = (table.schema.metadata or {}).get(DIGITS_KEYS[kind])
    if recorded is not None:
        return int(recorded)
    return _digits([table[name] for name in names])


def _digits(arrays: list[pa.ChunkedArray | pa.Array]) -> int:
    chunks = []
    for array in arrays:
        chunks += array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    chunks = [chunk for chunk in chunks if len(chunk)]
    return decimal_digits_needed(pa.chunked_array(chunks)) if chunks else 0


def state_sides(state: pa.Table, price_digits: int, size_digits: int) -> tuple[BookSide, BookSide]:
    sides = []
    for name in ("BID", "ASK"):
        part = state.filter(pc.equal(state["side"], name))
        prices = decimal_to_scaled(part["price"], price_digits)
        # Bids ascend and asks descend so the best level is last (the engine's layout).
        order = np.argsort(prices, kind="stable")
        if name == "ASK":
            order = order[::-1]
        sides.append(
            BookSide(
                prices[order],
                decimal_to_scaled(part["size"], size_digits)[order],
                part["last_sequence_number"].to_numpy()[order],
            )
        )
    return sides[0], sides[1]


def price_names() -> list[str]:
    return level_names("bid", "price") + level_names("ask", "price")


def size_names() -> list[str]:
    return level_names("bid", "size") + level_names("ask", "size")


def book_table(
    origin,
    received,
    sequence,
    levels,
    price_digits,
    size_digits,
    resynced,
    repaired,
    vendor_match,
    deviation,
) -> pa.Table:
    columns: dict[str, pa.Array] = {
        # Vendor times pass through as they are, nulls included.
        "origin_time": origin,
        "received_time": received,
        "sequence_number": pa.array(sequence, pa.int64()),
    }
    decimals = {}
    for side, (prices, sizes) in levels.items():
        present = sizes > 0
        for kind, values, digits in (("price", prices, price_digits), ("size", sizes, size_digits)):
            for level, array in enumerate(scaled_columns_to_decimal(values, digits, present)):
                decimals[f"{side}_{level}_{kind}"] = array
    for name in book_level_columns():
        columns[name] = decimals[name]
    columns["resynced"] = pa.array(resynced, pa.bool_())
    columns["repaired_levels"] = pa.array(repaired, pa.int32())
    columns["vendor_match"] = vendor_match
    columns["mid_deviation_bps"] = deviation
    return pa.table(columns)


def day_digits(
    deltas: pa.Table, snapshots: pa.Table, previous_state: pa.Table | None
) -> tuple[int, int]:
    """Price and size digits that hold every value of the day (and of yesterday's state)."""
    state = previous_state if previous_state is not None and previous_state.num_rows else None
    return (
        max(
            table_digits(deltas, "price", ["price"]),
            table_digits(snapshots, "price", price_names()),
            _digits([state["price"]]) if state is not None else 0,
        ),
        max(
            table_digits(deltas, "size", ["size"]),
            table_digits(snapshots, "size", size_names()),
            _digits([state["size"]]) if state is not None else 0,
        ),
    )


def state_table(bids: BookSide, asks: BookSide, price_digits: int, size_digits: int) -> pa.Table:
    # Best first on each side, bids then asks: a stable, readable order.
    bid_order = np.arange(bids.prices.size)[::-1]
    ask_order = np.arange(asks.prices.size)[::-1]
    prices = np.concatenate([bids.prices[bid_order], asks.prices[ask_order]])
    sizes = np.concatenate([bids.sizes[bid_order], asks.sizes[ask_order]])
    stamps = np.concatenate([bids.stamps[bid_order], asks.stamps[ask_order]])
    sides = ["BID"] * bids.prices.size + ["ASK"] * asks.prices.size
    return pa.table(
        [
            pa.array(sides, pa.string()),
            scaled_to_decimal(prices, price_digits),
            scaled_to_decimal(sizes, size_digits),
            pa.array(stamps, pa.int64()),
        ],
        schema=STATE_SCHEMA,
    )


def crossed_rows(bid_prices: np.ndarray, bid_sizes: np.ndarray, ask_prices, ask_sizes) -> int:
    """Published rows whose best bid is at or above the best ask."""
    both = (bid_sizes[:, 0] > 0) & (ask_sizes[:, 0] > 0)
    return int((both & (bid_prices[:, 0] >= ask_prices[:, 0])).sum())
