"""One partition of a raw table: rows of the day from the neighbouring `dt` files, cleaned.

Pure: takes the normalized source tables (float prices as the vendor ships them) and returns the
day's rows with exact decimals, plus an account of every row read: kept, filed under this `dt` but
stamped on another day, duplicate, or quarantined with a reason. Nothing is silently dropped.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.decimals import (
    infer_step_exponent,
    scale_floats,
    scaled_to_decimal,
)
from rlx_assets.lake.schema import BOOK, BOOK_DELTAS, SCHEMAS, TRADES, book_level_columns

NS_PER_DAY = 86_400 * 10**9
DIGITS_KEYS = {"price": b"rlx.price_digits", "size": b"rlx.size_digits"}


def day_bounds_ns(day: dt.date) -> tuple[int, int]:
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())
    return start * 10**9, start * 10**9 + NS_PER_DAY


@dataclass
class RawDay:
    table: pa.Table
    rows_read: int = 0
    rows_other_days: int = 0
    duplicates_dropped: int = 0
    quarantined: Counter = field(default_factory=Counter)
    quarantine: pa.Table | None = None  # the quarantined rows as read, with a `reason` column
    rows_from_neighbour_dt: int = 0
    origin_time_invalid: int = 0
    price_step_exponent: int = 0
    size_step_exponent: int = 0
    precision_loss_warnings: int = 0
    values_on_grid_checked: int = 0

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())

    def accounted(self) -> bool:
        kept = self.table.num_rows
        gone = self.rows_other_days + self.duplicates_dropped + self.rows_quarantined
        return self.rows_read == kept + gone


def _price_columns(table_name: str) -> tuple[list[str], list[str]]:
    if table_name == TRADES:
        return ["price"], ["quantity"]
    if table_name == BOOK_DELTAS:
        return ["price"], ["size"]
    levels = book_level_columns()
    return [c for c in levels if c.endswith("_price")], [c for c in levels if c.endswith("_size")]


def _quarantine_reasons(table_name: str, table: pa.Table) -> np.ndarray:
    """One reason per row ('' keeps the row); the first reason found wins."""
    rows = table.num_rows
    reasons = np.full(rows, "", dtype=object)

    def mark(mask: np.ndarray, reason: str) -> None:
        reasons[(reasons == "") & mask] = reason

    def invalid_time(name: str) -> np.ndarray:
        return ~pc.fill_null(pc.greater(table[name], 0), False).to_numpy(zero_copy_only=False)

    mark(invalid_time("origin_time") & invalid_time("received_time"), "no_valid_time")
    prices, sizes = _price_columns(table_name)
    for name in prices + sizes:
        values = table[name].to_numpy(zero_copy_only=False).astype(np.float64)
        is_size = name in sizes
        missing = np.isnan(values)
        if table_name == BOOK:
            # Empty vendor levels are null on purpose; a level is bad only when half present.
            partner = (
                name.replace("_price", "_size") if not is_size else name.replace("_size", "_price")
            )
            other = table[partner].to_numpy(zero_copy_only=False).astype(np.float64)
            mark(missing != np.isnan(other), f"half_empty_level:{name}")
            missing = np.zeros(rows, dtype=bool)
        mark(missing, f"null:{name}")
        with np.errstate(invalid="ignore"):
            mark(~np.isfinite(values) & ~np.isnan(values), f"not_finite:{name}")
            if is_size and table_name == BOOK_DELTAS:
                mark(values < 0, f"negative:{name}")
            else:
                mark(values <= 0, f"not_positive:{name}")
    if table_name == TRADES:
        side = pc.fill_null(table["side"], "").to_numpy(zero_copy_only=False)
        mark(~np.isin(side, ["buy", "sell"]), "side_not_buy_or_sell")
        mark(table["trade_id"].is_null().to_numpy(zero_copy_only=False), "null:trade_id")
    else:
        mark(
            table["sequence_number"].is_null().to_numpy(zero_copy_only=False),
            "null:sequence_number",
        )
    if table_name == BOOK_DELTAS:
        mark(table["side_is_bid"].is_null().to_numpy(zero_copy_only=False), "null:side_is_bid")
    return reasons


def _effective_time(table: pa.Table) -> np.ndarray:
    """origin_time where valid, else received_time (rows with neither are quarantined)."""
    origin = pc.fill_null(table["origin_time"], 0).to_numpy()
    received = pc.fill_null(table["received_time"], 0).to_numpy()
    return np.where(origin > 0, origin, received)


def _sort_keys(table_name: str) -> list[tuple[str, str]]:
    if table_name == TRADES:
        return [("_time", "ascending"), ("trade_id", "ascending"), ("_order", "ascending")]
    return [("sequence_number", "ascending"), ("_order", "ascending")]


def clean_day(
    table_name: str,
    day: dt.date,
    sources: list[tuple[dt.date, pa.Table]],
    price_exponent: int | None = None,
    size_exponent: int | None = None,
) -> RawDay:
    """The rows of `day` from the files of dt = day-1, day, day+1 (any subset present).

    Rows belong to the day of their origin_time (received_time when origin_time is missing);
    a delta message goes whole to the day of its first row. Exact duplicate rows are dropped.
    Grids come from settings (exponents) or are inferred from the day's values.
    """
    start, end = day_bounds_ns(day)
    tables = []
    filed_start = []
    for source_index, (filed_under, table) in enumerate(sources):
        order = np.arange(table.num_rows, dtype=np.int64) + (source_index << 40)
        tables.append(table.append_column("_order", pa.array(order)))
        filed_start.append(np.full(table.num_rows, day_bounds_ns(filed_under)[0], dtype=np.int64))
    schema = SCHEMAS[table_name].append(pa.field("_order", pa.int64()))
    combined = pa.concat_tables(tables) if tables else schema.empty_table()
    result = RawDay(table=combined, rows_read=combined.num_rows)

    reasons = _quarantine_reasons(table_name, combined)
    time = _effective_time(combined)
    # A row with no valid time stays with the day it was filed under.
    time = np.where(time > 0, time, np.concatenate(filed_start) if filed_start else time)
    if table_name == BOOK_DELTAS and combined.num_rows:
        time = _message_time(combined, time)
    in_day = (time >= start) & (time < end)
    bad = reasons != ""
    keep = in_day & ~bad
    result.rows_other_days = int((~in_day).sum())
    result.quarantined = Counter(reasons[in_day & bad].tolist())
    if (in_day & bad).any():
        quarantine = combined.filter(pa.array(in_day & bad)).drop_columns(["_order"])
        result.quarantine = quarantine.append_column(
            "reason", pa.array(reasons[in_day & bad].tolist(), pa.string())
        )

    kept = combined.filter(pa.array(keep)).append_column("_time", pa.array(time[keep]))
    kept = kept.take(pc.sort_indices(kept, sort_keys=_sort_keys(table_name)))
    data_columns = [c for c in kept.column_names if c not in ("_order", "_time")]
    unique = _first_of_duplicates(kept, data_columns)
    result.duplicates_dropped = int(kept.num_rows - unique.sum())
    kept = kept.filter(pa.array(unique))

    result.rows_from_neighbour_dt = int(
        (kept["_order"].to_numpy() >> 40 != _own_source(sources, day)).sum()
    )
    result.origin_time_invalid = int(
        (~pc.fill_null(pc.greater(kept["origin_time"], 0), False).to_numpy()).sum()
    )
    result.table = _to_decimals(
        table_name, kept.drop_columns(["_order", "_time"]), result, price_exponent, size_exponent
    )
    return result


def _message_time(table: pa.Table, time: np.ndarray) -> np.ndarray:
    """Every row of a delta message takes the time of the message's first row as read."""
    sequence = pc.fill_null(table["sequence_number"], -1).to_numpy()
    order = np.lexsort((table["_order"].to_numpy(), sequence))
    first_of_run = np.ones(order.size, dtype=bool)
    first_of_run[1:] = sequence[order][1:] != sequence[order][:-1]
    run_time = time[order][first_of_run]
    message_time = np.empty_like(time)
    message_time[order] = run_time[np.cumsum(first_of_run) - 1]
    return message_time


def _own_source(sources: list[tuple[dt.date, pa.Table]], day: dt.date) -> int:
    for index, (filed_under, _) in enumerate(sources):
        if filed_under == day:
            return index
    return -1


def _first_of_duplicates(table: pa.Table, columns: list[str]) -> np.ndarray:
    """True for the first occurrence of each distinct row (in the table's order)."""
    if table.num_rows < 2:
        return np.ones(table.num_rows, dtype=bool)
    frame = pl.from_arrow(table.select(columns))
    return frame.select(pl.struct(pl.all()).is_first_distinct()).to_series().to_numpy()


def _to_decimals(
    table_name: str,
    table: pa.Table,
    result: RawDay,
    price_exponent: int | None,
    size_exponent: int | None,
) -> pa.Table:
    price_names, size_names = _price_columns(table_name)
    off_grid = np.zeros(table.num_rows, dtype=bool)
    exponents = {}
    digits = {}
    for names, given, key in (
        (price_names, price_exponent, "price"),
        (size_names, size_exponent, "size"),
    ):
        matrix = (
            np.stack(
                [table[name].to_numpy(zero_copy_only=False).astype(np.float64) for name in names],
                axis=1,
            )
            if table.num_rows
            else np.zeros((0, len(names)))
        )
        present = ~np.isnan(matrix)
        exponent = given if given is not None else infer_step_exponent(matrix[present])
        exponents[key] = exponent
        scaled = scale_floats(np.where(present, matrix, 0.0).ravel(), exponent)
        flags = scaled.off_grid.reshape(matrix.shape) & present
        off_grid |= flags.any(axis=1)
        result.precision_loss_warnings += int(flags.sum())
        result.values_on_grid_checked += int(present.sum())
        ints = scaled.ints.reshape(matrix.shape)
        digits[key] = scaled.digits
        for position, name in enumerate(names):
            column = scaled_to_decimal(ints[:, position], scaled.digits, present[:, position])
            table = table.set_column(table.schema.get_field_index(name), name, column)
    result.price_step_exponent = exponents["price"]
    result.size_step_exponent = exponents["size"]
    table = table.append_column("off_grid", pa.array(off_grid))
    # Every value is exact at these digits: readers scale to int64 without trial casts.
    return table.replace_schema_metadata(
        {DIGITS_KEYS[key]: str(value).encode() for key, value in digits.items()}
    )
