"""The three Crypto Lake tables: canonical columns, accepted raw spellings, normalization.

Normalized tables have the canonical column names, int64 nanosecond times and float64 prices and
sizes exactly as the vendor ships them (exact decimals come later, through the instrument grid).
"""

from __future__ import annotations

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


def _to_nanoseconds(column: pa.ChunkedArray, where: str) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is not None:
            column = column.cast(pa.timestamp(kind.unit))
        return column.cast(pa.timestamp("ns")).cast(pa.int64())
    if pa.types.is_integer(kind):
        return column.cast(pa.int64())
    raise SourceSchemaError(f"{where}: expected int64 nanoseconds or a timestamp, found {kind}")


def normalize_table(table_name: str, table: pa.Table, source: str) -> pa.Table:
    """Rename raw spellings, coerce types, order columns; errors name the file and the column."""
    if table_name not in SCHEMAS:
        raise SourceSchemaError(
            f"{source}: unknown table {table_name!r} (expected one of {TABLES})"
        )
    target = SCHEMAS[table_name]
    renames = {
        raw: canonical
        for raw, canonical in RAW_SPELLINGS.items()
        if raw in table.column_names and canonical not in table.column_names
    }
    if renames:
        table = table.rename_columns([renames.get(name, name) for name in table.column_names])

    missing = [field.name for field in target if field.name not in table.column_names]
    if table_name == BOOK:
        # A vendor book may carry fewer levels; absent levels are empty (null), never invented.
        required = [name for name in missing if not name.startswith(("bid_", "ask_"))]
    else:
        required = missing
    if required:
        raise SourceSchemaError(
            f"{source}: missing column(s) {required} for table {table_name!r}"
            f" (found {table.column_names})"
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
            elif pa.types.is_string(field.type) or pa.types.is_boolean(field.type):
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


def empty_table(table_name: str) -> pa.Table:
    return SCHEMAS[table_name].empty_table()


def is_valid_time(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Times that can place a row: present and after the epoch."""
    return pc.fill_null(pc.greater(column, 0), False)
