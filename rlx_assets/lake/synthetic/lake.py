"""The synthetic lake adapter: the simulated origin days (with faults, when asked) filed under `dt`
folders by receive time, as a collector files them, behind the same `Lake` interface as S3."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets import schema
from rlx_assets.lake.source import DayFiles, SourceFile, TableSource, ipc_sha256
from rlx_assets.lake.synthetic.day import generate_origin_day
from rlx_assets.lake.synthetic.faults import FaultRates, faulty_origin_day
from rlx_assets.lake.synthetic.market import (
    DAY_NS,
    DELAY_MAX_NS,
    DELAY_MIN_NS,
    as_date,
    day_start_ns,
)


def _sort_key(table: str) -> str:
    return "trade_id" if table == schema.TRADES else "sequence_number"


def _received_between(rows: pa.Table, start_ns: int) -> pa.Table:
    """Rows received in the UTC day starting at `start_ns`; a zero-copy slice when in order."""
    received = rows.column("received_time").to_numpy()
    if np.all(received[1:] >= received[:-1]):
        first, end = np.searchsorted(received, [start_ns, start_ns + DAY_NS])
        return rows.slice(first, end - first)
    column = rows.column("received_time")
    inside = pc.and_(pc.greater_equal(column, start_ns), pc.less(column, start_ns + DAY_NS))
    return rows.filter(inside)


def _in_receive_order(rows: pa.Table, key: str) -> bool:
    received = rows.column("received_time").to_numpy()
    ids = rows.column(key).to_numpy()
    step = np.diff(received)
    return bool(np.all(step >= 0) and np.all(np.diff(ids)[step == 0] >= 0))


class SyntheticLake:
    """`synthetic://`: a `Lake` whose files are simulated on demand (see the module docstring).

    `scale` sets the volume: 1.0 is a busy real BTC-USDT day (about 40 million delta rows in 860
    thousand messages, 860 thousand snapshots, 2.6 million trades); it scales linearly.

    `faults` switches on real-world faults at the given rates (`synthetic_faults`); without it
    they come from the URL's query, e.g. `synthetic://?faults=gaps=0.001,duplicates=0.0005`.
    """

    def __init__(
        self, scale: float = 0.002, url: str = "synthetic://", faults: FaultRates | None = None
    ) -> None:
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"synthetic://: scale must be a positive number, got {scale!r}")
        self.scale = float(scale)
        self.url = url
        if faults is None and "?" in url:
            faults = FaultRates.from_url(url)
        self.faults = faults if faults is not None and faults.any() else None

    def read_day(self, table: str, exchange: str, symbol: str, day: dt.date) -> DayFiles:
        """The rows of `table` a collector files under `dt=day`: those received that UTC day."""
        day = as_date(day)
        uri = (
            f"synthetic://{table}/exchange={exchange}/symbol={symbol}/dt={day}/part-0.parquet"
            f"?scale={self.scale!r}"
        )
        if self.faults is not None:
            uri += f"&faults={self.faults}"
        if table not in schema.SCHEMAS:
            raise schema.SourceSchemaError(
                f"{uri}: unknown table {table!r} (expected one of {schema.TABLES})"
            )
        start = day_start_ns(day)
        parts = [
            _received_between(self._origin_tables(exchange, symbol, origin)[table], start)
            for origin in self._origin_days(day)
        ]
        if self.faults is not None:
            parts += self._copies_filed_under(table, exchange, symbol, day)
        rows = pa.concat_tables(parts)
        key = _sort_key(table)
        if not _in_receive_order(rows, key):
            rows = rows.sort_by([("received_time", "ascending"), (key, "ascending")])
        file = SourceFile(
            uri=uri, size=rows.nbytes, etag=None, sha256=ipc_sha256(rows.schema, [rows])
        )
        return DayFiles(files=[file], tables=[rows])

    def open_day(
        self, table: str, exchange: str, symbol: str, day: dt.date, whole: bool
    ) -> list[TableSource]:
        """`read_day` as readers (the simulator makes a day's rows in memory anyway)."""
        found = self.read_day(table, exchange, symbol, day)
        return [TableSource(f, t, table) for f, t in zip(found.files, found.tables, strict=True)]

    def typical_prices(self, table: str, exchange: str, symbol: str, day: dt.date) -> list[float]:
        """None to compare: the simulator makes each symbol's files itself."""
        return []

    def _origin_tables(self, exchange: str, symbol: str, day: dt.date) -> dict[str, pa.Table]:
        """The rows of one origin day, with the lake's faults injected (before filing)."""
        if self.faults is None:
            return generate_origin_day(exchange, symbol, day, self.scale)

        return faulty_origin_day(exchange, symbol, day, self.scale, self.faults).tables

    def _copies_filed_under(
        self, table: str, exchange: str, symbol: str, day: dt.date
    ) -> list[pa.Table]:
        """Duplicate rows (a fault) filed under `day` although received across a midnight."""

        return [
            faulty_origin_day(exchange, symbol, origin, self.scale, self.faults).copies_filed_under(
                table, day_start_ns(day)
            )
            for origin in self._origin_days(day)
        ]

    def _origin_days(self, day: dt.date) -> list[dt.date]:
        """Origin days whose rows can be received on `day`, from the bounds of the receive delay.

        The clean clock only runs late (by under a second), so that is the day and the one
        before; a clock running early or copies filed across midnight (faults) bring in the next
        one as well.
        """
        one = dt.timedelta(days=1)
        days = [day]
        if DELAY_MAX_NS > 0:
            days.insert(0, day - one)
        if DELAY_MIN_NS < 0 or (self.faults is not None and self.faults.files_into_previous_dt()):
            days.append(day + one)
        return days
