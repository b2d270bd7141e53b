"""What each day of the lake offers: origin_time completeness, delta availability, strategy.

Reads the lake directly (no Dagster): the `dt` folders as filed, and the day's rows as the raw
assets would assign them (origin_time day, neighbours included), so the strategy reported is the
one `reconstructed_book` will choose.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.quality import origin_time_completeness
from rlx_assets.engine.raw import clean_day
from rlx_assets.engine.reconstruct import choose_strategy
from rlx_assets.lake.source import Lake
from rlx_assets.schema import BOOK, BOOK_DELTAS, TABLES, TRADES

ONE_DAY = dt.timedelta(days=1)
NO_DATA = "no_data"


@dataclass
class TableDay:
    table: str
    files: int
    rows_filed: int  # rows in the dt folder as the collector filed them
    rows_in_day: int  # rows stamped inside the day (from this and the neighbouring folders)
    completeness: dict[str, float]  # of the filed rows, in file order


@dataclass
class DayAnalysis:
    day: dt.date
    symbol: str
    tables: dict[str, TableDay]
    delta_messages: int
    strategy: str


def analyse_day(lake: Lake, exchange: str, symbol: str, day: dt.date) -> DayAnalysis:
    tables: dict[str, TableDay] = {}
    in_day_rows: dict[str, pa.Table] = {}
    for table in TABLES:
        filed = {
            d: lake.read_day(table, exchange, symbol, d)
            for d in (day - ONE_DAY, day, day + ONE_DAY)
        }
        own = filed[day].tables
        rows = pa.concat_tables(own) if own else None
        origin = pc.fill_null(rows["origin_time"], -1).to_numpy() if rows is not None else None
        pieces = [(d, t) for d, found in filed.items() for t in found.tables]
        cleaned = clean_day(table, day, pieces)
        in_day_rows[table] = cleaned.table
        tables[table] = TableDay(
            table=table,
            files=len(filed[day].files),
            rows_filed=0 if rows is None else rows.num_rows,
            rows_in_day=cleaned.table.num_rows,
            completeness=origin_time_completeness(origin, day),
        )
    deltas = in_day_rows[BOOK_DELTAS]
    sequence = deltas["sequence_number"].to_numpy() if deltas.num_rows else np.zeros(0)
    messages = int(np.count_nonzero(np.diff(sequence)) + 1) if sequence.size else 0
    return DayAnalysis(
        day=day,
        symbol=symbol,
        tables=tables,
        delta_messages=messages,
        strategy=choose_strategy(deltas.num_rows, in_day_rows[BOOK].num_rows)
        if any(table.num_rows for table in in_day_rows.values())
        else NO_DATA,
    )


def report_rows(analysis: DayAnalysis) -> list[dict[str, object]]:
    """One flat row per table, for printing or CSV."""
    rows = []
    for name in (TRADES, BOOK, BOOK_DELTAS):
        table = analysis.tables[name]
        rows.append(
            {
                "date": analysis.day.isoformat(),
                "symbol": analysis.symbol,
                "table": name,
                "files": table.files,
                "rows_filed": table.rows_filed,
                "rows_in_day": table.rows_in_day,
                **{f"origin_{k}": round(v, 6) for k, v in table.completeness.items()},
                "delta_messages": analysis.delta_messages if name == BOOK_DELTAS else "",
                "strategy": analysis.strategy,
            }
        )
    return rows
