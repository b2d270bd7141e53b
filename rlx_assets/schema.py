"""The three Crypto Lake tables: canonical columns, accepted raw spellings, normalization.

Normalized tables have the canonical column names, int64 nanosecond times and float64 prices and
sizes exactly as the vendor ships them (exact decimals come later, through the instrument grid).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TRADES = "trades"
BOOK = "book"
BOOK_DELTAS = "book_delta_v2"
TABLES = (TRADES, BOOK, BOOK_DELTAS)

BOOK_LEVELS = 20

# Crypto Lake's own client renames some raw columns; both spellings are accepted.
RAW_SPELLINGS = {
    "timestamp": "origin_time",
    "receipt_timestamp": "received_time",
    "id": "trade_id",
    "amount": "quantity",
}


def book_level_columns(levels: int = BOOK_LEVELS) -> list[str]:
    """Vendor `book` column order: bid_0_price, bid_0_size, ask_0_price, ask_0_size, bid_1_... ."""
    columns = []
    for level in range(levels):
        for side in ("bid", "ask"):
            columns += [f"{side}_{level}_price", f"{side}_{level}_size"]
    return columns


TIME_COLUMNS = ("origin_time", "received_time")

SCHEMAS: dict[str, pa.Schema] = {
    TRADES: pa.schema(
        [
            ("origin_time", pa.int64()),
            ("received_time", pa.int64()),
            ("trade_id", pa.int64()),
            ("price", pa.float64()),
            ("quantity", pa.float64()),
            ("side", pa.string()),
        ]
    ),
    BOOK: pa.schema(
        [
            ("origin_time", pa.int64()),
            ("received_time", pa.int64()),
            ("sequence_number", pa.int64()),
        ]
        + [(name, pa.float64()) for name in book_level_columns()]
    ),
    BOOK_DELTAS: pa.schema(
        [
            ("origin_time", pa.int64()),
            ("received_time", pa.int64()),
            ("sequence_number", pa.int64()),
            ("side_is_bid", pa.bool_()),
            ("price", pa.float64()),
            ("size", pa.float64()),
        ]
    ),
}


class SourceSchemaError(ValueError):
    """A source file whose columns cannot be read as the table they claim to be."""


SYMBOL_COLUMN = "symbol"  # not part of the tables; some exports carry it, and then it must agree


def canonical_names(names: list[str]) -> list[str]:
    """A file's column names with the raw spellings renamed, as `normalize_table` renames them."""
    present = set(names)
    return [
        RAW_SPELLINGS[name]
        if name in RAW_SPELLINGS and RAW_SPELLINGS[name] not in present
        else name
        for name in names
    ]


def symbol_key(symbol: str) -> str:
    """A symbol compared across spellings: "BTC-USDT", "BTC/USDT" and "btcusdt" are one."""
    return "".join(character for character in symbol.upper() if character.isalnum())


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _require_symbol(table: pa.Table, symbol: str, source: str) -> None:
    """A file filed under a symbol that says, in its own `symbol` column, it holds another."""
    found = [
        str(value)
        for value in pc.unique(table.column(SYMBOL_COLUMN).cast(pa.string())).to_pylist()
        if value is not None
    ]
    others = sorted({value for value in found if symbol_key(value) != symbol_key(symbol)})
    if others:
        raise SourceSchemaError(
            f"{source}: column {SYMBOL_COLUMN!r}: holds {others[:3]}, not {symbol!r}"
            " (another symbol's file filed under this one)"
        )


def _to_nanoseconds(column: pa.ChunkedArray, where: str) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is not None:
            column = column.cast(pa.timestamp(kind.unit))
        return column.cast(pa.timestamp("ns")).cast(pa.int64())
    if pa.types.is_integer(kind):
        return column.cast(pa.int64())
    raise SourceSchemaError(f"{where}: expected int64 nanoseconds or a timestamp, found {kind}")


def normalize_table(
    table_name: str, table: pa.Table, source: str, symbol: str | None = None
) -> pa.Table:
    """Rename raw spellings, coerce types, order columns; errors name the file and the column.

    With `symbol`, a file that carries a `symbol` column must hold that symbol only."""
    if table_name not in SCHEMAS:
        raise SourceSchemaError(
            f"{source}: unknown table {table_name!r} (expected one of {TABLES})"
        )
    target = SCHEMAS[table_name]
    if symbol is not None and SYMBOL_COLUMN in table.column_names:
        _require_symbol(table, symbol, source)
    canonical = canonical_names(table.column_names)
    if canonical != table.column_names:
        table = table.rename_columns(canonical)

    missing = [field.name for field in target if field.name not in table.column_names]
    if table_name == BOOK:
        # A vendor book may carry fewer levels; absent levels are empty (null), never invented.
        required = [name for name in missing if not name.startswith(("bid_", "ask_"))]
    else:
        required = missing
    if required:
        # The columns the table does not know are where a renamed column shows (not all of a
        # book's 83 names: the message stays readable).
        unknown = [
            name
            for name in table.column_names
            if name not in target.names and name != SYMBOL_COLUMN
        ]
        hint = f"; columns not in the table: {unknown[:8]}" if unknown else ""
        raise SourceSchemaError(
            f"{source}: missing column(s) {required} for table {table_name!r}{hint}"
        )

    columns = []
    for field in target:
        where = f"{source}: column {field.name!r}"
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if field.name in TIME_COLUMNS:
            column = _to_nanoseconds(column, where)
        elif column.type != field.type:
            textual = (
                pa.types.is_dictionary(column.type)
                or pa.types.is_large_string(column.type)
                or pa.types.is_string_view(column.type)
            )
            if pa.types.is_string(field.type) and textual:
                column = column.cast(pa.string())
            elif (
                pa.types.is_string(field.type)
                or pa.types.is_boolean(field.type)
                or not _is_number(column.type)
            ):
                # Numbers written as text (or as booleans) are another file than the vendor's:
                # refused, not parsed, so a silent change of format cannot pass.
                raise SourceSchemaError(f"{where}: expected {field.type}, found {column.type}")
            else:
                try:
                    column = column.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                    raise SourceSchemaError(
                        f"{where}: cannot read {column.type} as {field.type} ({error})"
                    ) from None
        columns.append(column)
    return pa.table(columns, schema=target)


# The columns whose values tell where an instrument trades (the book's touch, not its depth).
PRICE_COLUMNS = {TRADES: ("price",), BOOK: ("bid_0_price", "ask_0_price"), BOOK_DELTAS: ("price",)}


def median_price(table: pa.Table) -> float | None:
    """Median of the positive finite values of these price columns; None when there are none."""
    values = [
        column.to_numpy(zero_copy_only=False).astype(np.float64) for column in table.itercolumns()
    ]
    if not values:
        return None
    merged = np.concatenate(values)
    merged = merged[np.isfinite(merged) & (merged > 0)]
    return float(np.median(merged)) if merged.size else None


def empty_table(table_name: str) -> pa.Table:
    return SCHEMAS[table_name].empty_table()


def event_time(table: pa.Table | pa.RecordBatch) -> pa.Array:
    """The time that places a row: origin_time, else received_time where the vendor left
    origin_time empty or not positive (null where both are missing)."""
    origin = table.column("origin_time")
    valid = pc.fill_null(pc.greater(origin, 0), False)
    times = pc.if_else(valid, origin, table.column("received_time"))
    return times.combine_chunks() if isinstance(times, pa.ChunkedArray) else times


def event_time_ns(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """`event_time` as int64 nanoseconds, 0 where both times are missing."""
    return pc.fill_null(event_time(table), 0).to_numpy(zero_copy_only=False).astype(np.int64)
