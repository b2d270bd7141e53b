"""Real-world faults for `synthetic://`, injected at configurable rates into a clean origin day.

The clean simulator (`day.py`, `market.py`) stays the ground truth: faults are applied
afterwards, to new tables built from the clean ones (never in place), and `injected_faults`
reports how many of each were injected, so tests can hold the pipeline's figures against them.
Users switch faults on through the lake URL, e.g. `RLX_LAKE_URL=synthetic://?faults=gaps=0.001,duplicates=0.0005`.

Each fault draws from its own seed (SHA-256 of the fault, the table, exchange, symbol, date and
scale) over the rows of the *clean* day, so one fault's choices never depend on which others are
on, and (clock-skew bursts aside) a higher rate picks a superset of the rows a lower one picks.
Rates are shares, 0 = off:

- `gaps`: whole delta messages (every row of a `sequence_number`) dropped; share of messages.
  The midnight messages (the opening burst and the closing reconciliation) are kept. A vendor
  snapshot taken at a dropped message stays: the vendor saw the true book.
- `stale_levels`: delta rows of size 0 (a level's removal) suppressed, so the level stays and
  may later cross the other side; share of removal rows. A message never loses its last row.
- `clock_skew`: bursts of consecutive delta messages during which the collector's clock jumps by
  2..30 s (either sign, one offset per burst; mean burst 16 messages): `received_time` of every
  row in the burst's time span, in all three tables, moves by the offset; `origin_time` stays.
  The rate is the share of messages (so about the share of rows) inside bursts. Shifted rows may
  be filed under a neighbouring `dt`.
- `duplicates`: exact copies of rows of any table; share of rows. The copy sits right after the
  original in the same `dt` file, except for rows received within 5 s of a midnight: their copy
  is filed under the `dt` on the other side of that midnight (a collector rotating its files).
- `off_grid`: prices and sizes of trades and deltas moved off the instrument grid by +0.1..0.9
  of a step (the float nearest to that exact decimal); share of values. Removal rows (size 0)
  are left alone, so this fault does not also create stale levels.
- `trades_outside_book`: trades printed 2..10 ticks outside the book as it stood before their
  message, beyond the touch the aggressor could never reach (a buy below the best bid, a sell
  above the best ask); share of trades. Clean fills never print there (a buy lifts asks, even
  when it sweeps several levels), so every moved trade, and only those, is outside the book.
- `origin_time_nulls`: origin_time null or 0 (half each) for trades and snapshots; for deltas 0,
  on whole messages (the book engine does not take a null delta origin_time yet); share of rows.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, fields
from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from rlx_assets import schema
from rlx_assets.lake.synthetic import day as synthetic_day
from rlx_assets.lake.synthetic import market

GAPS = "gaps"
STALE_LEVELS = "stale_levels"
CLOCK_SKEW = "clock_skew"
DUPLICATES = "duplicates"
OFF_GRID = "off_grid"
TRADES_OUTSIDE_BOOK = "trades_outside_book"
ORIGIN_TIME_NULLS = "origin_time_nulls"

SKEW_MIN_NS = 2 * 10**9
SKEW_MAX_NS = 30 * 10**9
SKEW_BURST_MESSAGES = 16  # mean burst length
ACROSS_MIDNIGHT_NS = 5 * 10**9  # duplicates of rows received this close to midnight change dt
OUTSIDE_TICKS = (2, 10)  # how far beyond the touch an outside trade prints
_DAY_NS = market.DAY_NS


@dataclass(frozen=True)
class FaultRates:
    """Per fault, the share of units (messages, rows or values) it hits; 0 switches it off."""

    gaps: float = 0.0
    stale_levels: float = 0.0
    clock_skew: float = 0.0
    duplicates: float = 0.0
    off_grid: float = 0.0
    trades_outside_book: float = 0.0
    origin_time_nulls: float = 0.0

    def __post_init__(self) -> None:
        for item in fields(self):
            rate = getattr(self, item.name)
            if isinstance(rate, bool) or not isinstance(rate, int | float):
                raise ValueError(f"fault rate {item.name}={rate!r}: not a number")
            if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
                raise ValueError(f"fault rate {item.name}={rate!r}: must be a share in [0, 1]")
            object.__setattr__(self, item.name, float(rate))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(item.name for item in fields(cls))

    @classmethod
    def parse(cls, text: str) -> FaultRates:
        """`"gaps=0.001,stale_levels=0.002"` (any subset, any order; blanks ignored)."""
        rates: dict[str, float] = {}
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            name, sep, value = (part.strip() for part in item.partition("="))
            if not sep:
                raise ValueError(f"faults: item {item!r}: expected <fault>=<rate>")
            if name not in cls.names():
                raise ValueError(
                    f"faults: item {item!r}: unknown fault {name!r}"
                    f" (expected one of {', '.join(cls.names())})"
                )
            if name in rates:
                raise ValueError(f"faults: item {item!r}: {name} is given twice")
            try:
                rate = float(value)
            except ValueError:
                raise ValueError(f"faults: item {item!r}: rate {value!r} is not a number") from None
            if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
                raise ValueError(f"faults: item {item!r}: rate must be a share in [0, 1]")
            rates[name] = rate
        return cls(**rates)

    @classmethod
    def from_url(cls, url: str) -> FaultRates | None:
        """The `faults=` query of a `synthetic://` URL, or None when the URL has no query."""
        query = urlsplit(url.strip()).query
        if not query:
            return None
        found: FaultRates | None = None
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key != "faults":
                raise ValueError(
                    f"synthetic://: unknown query parameter {key!r}"
                    " (expected faults=<fault>=<rate>,...)"
                )
            if found is not None:
                raise ValueError("synthetic://: the faults parameter is given twice")
            found = cls.parse(value)
        return found

    def any(self) -> bool:
        return any(getattr(self, name) > 0 for name in self.names())

    def __str__(self) -> str:
        """Canonical text, the faults that are on: parses back to an equal value."""
        return ",".join(
            f"{name}={getattr(self, name)!r}" for name in self.names() if getattr(self, name) > 0
        )

    def files_into_previous_dt(self) -> bool:
        """Can a row of origin day D be filed under dt D-1 (early clock, copy across midnight)?"""
        return self.clock_skew > 0 or self.duplicates > 0


@dataclass(frozen=True)
class FaultyDay:
    """One origin day with faults: the tables to file by received_time, and the duplicate copies
    that are filed across the nearest midnight instead (see `copies_filed_under`)."""

    tables: dict[str, pa.Table]
    across_midnight: dict[str, pa.Table]
    counts: dict[str, dict[str, int]]  # fault -> table -> units injected

    def totals(self) -> dict[str, int]:
        return {fault: sum(per_table.values()) for fault, per_table in self.counts.items()}

    def copies_filed_under(self, table: str, start_ns: int) -> pa.Table:
        """Copies filed under the dt starting at `start_ns`: received just before it or just
        after its end (a copy goes to the other side of the midnight nearest its receipt)."""
        copies = self.across_midnight[table]
        received = copies.column("received_time")
        end = start_ns + _DAY_NS
        before = pc.and_(
            pc.greater_equal(received, start_ns - ACROSS_MIDNIGHT_NS), pc.less(received, start_ns)
        )
        after = pc.and_(
            pc.greater_equal(received, end), pc.less(received, end + ACROSS_MIDNIGHT_NS)
        )
        return copies.filter(pc.or_(before, after))


def injected_faults(
    exchange: str, symbol: str, day: dt.date, scale: float, faults: FaultRates
) -> dict[str, int]:
    """Ground truth: how many of each fault the origin day `day` carries (0 for faults off).

    Units: gaps = messages dropped, stale_levels = removal rows suppressed, clock_skew = rows
    whose received_time moved, duplicates = copies added, off_grid = values moved,
    trades_outside_book = trades moved, origin_time_nulls = rows with a null or zero origin_time.
    """
    return faulty_origin_day(exchange, symbol, day, scale, faults).totals()


def faulty_origin_day(
    exchange: str, symbol: str, day: dt.date, scale: float, faults: FaultRates
) -> FaultyDay:
    """The origin day of `day.generate_origin_day` with `faults` injected (deterministic)."""
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"synthetic://: scale must be a positive number, got {scale!r}")
    with synthetic_day.SIMULATING:
        return _faulty_origin_day(exchange, symbol, market.as_date(day), float(scale), faults)


@lru_cache(maxsize=3)
def _faulty_origin_day(
    exchange: str, symbol: str, day: dt.date, scale: float, faults: FaultRates
) -> FaultyDay:
    # Three origin days (D-1, D, D+1) are what one dt file with faults needs.
    clean = synthetic_day.generate_origin_day(exchange, symbol, day, scale)
    return _inject(clean, market.instrument(symbol), faults, (exchange, symbol, day, scale))


# --- Injection -------------------------------------------------------------------------------


class _Edit:
    """A clean table and the faults planned on it, in clean row space: rows kept, replaced
    column values, null origin times. Nothing is written to the clean table's buffers."""

    def __init__(self, table: pa.Table) -> None:
        self.clean = table
        n = table.num_rows
        self.keep = np.ones(n, dtype=bool)
        self.values: dict[str, np.ndarray] = {}
        self.null_origin = np.zeros(n, dtype=bool)

    def column(self, name: str) -> np.ndarray:
        """A private, writable copy of the column's values (made once)."""
        if name not in self.values:
            self.values[name] = self.clean.column(name).to_numpy().copy()
        return self.values[name]

    def build(self, rows: np.ndarray) -> pa.Table:
        identity = rows.size == self.clean.num_rows and np.array_equal(rows, np.arange(rows.size))
        columns = []
        for item in self.clean.schema:
            if item.name in self.values or (item.name == "origin_time" and self.null_origin.any()):
                values = self.values.get(item.name)
                if values is None:
                    values = self.clean.column(item.name).to_numpy()
                mask = self.null_origin[rows] if item.name == "origin_time" else None
                columns.append(pa.array(values[rows], item.type, mask=mask))
            elif identity:
                columns.append(self.clean.column(item.name))
            else:
                columns.append(self.clean.column(item.name).take(pa.array(rows)))
        return pa.table(columns, schema=self.clean.schema)


def seeded_rng(key: tuple, fault: str, table: str) -> np.random.Generator:
    exchange, symbol, day, scale = key
    return market.seeded_rng("faults", fault, table, exchange, symbol, day, repr(scale))


def _message_index(sequence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row its message number, and each message's first row (rows of a message adjoin)."""
    first = np.ones(sequence.size, dtype=bool)
    first[1:] = sequence[1:] != sequence[:-1]
    return np.cumsum(first) - 1, np.flatnonzero(first)


def _inject(
    clean: dict[str, pa.Table], inst: market.Instrument, faults: FaultRates, key: tuple
) -> FaultyDay:
    edits = {name: _Edit(clean[name]) for name in schema.TABLES}
    counts = {fault: dict.fromkeys(schema.TABLES, 0) for fault in FaultRates.names()}
    deltas = edits[schema.BOOK_DELTAS]
    message, first_rows = _message_index(deltas.clean.column("sequence_number").to_numpy())
    n_messages = first_rows.size

    if faults.gaps > 0:
        drop = seeded_rng(key, GAPS, schema.BOOK_DELTAS).random(n_messages) < faults.gaps
        drop[[0, -1]] = False  # the midnight messages: the collector's REST snapshot, the close
        deltas.keep &= ~drop[message]
        counts[GAPS][schema.BOOK_DELTAS] = int(drop.sum())

    if faults.stale_levels > 0:
        _suppress_removals(deltas, message, first_rows, faults.stale_levels, key, counts)

    if faults.trades_outside_book > 0:
        trades = edits[schema.TRADES]
        rng = seeded_rng(key, TRADES_OUTSIDE_BOOK, schema.TRADES)
        n = trades.clean.num_rows
        picked = rng.random(n) < faults.trades_outside_book
        beyond = rng.integers(OUTSIDE_TICKS[0], OUTSIDE_TICKS[1] + 1, n)
        best_bid, best_ask = _touch_after_messages(deltas.clean, first_rows, inst)
        # Fills are published by the first message at or after them: the book they met is the
        # one after the message before.
        message_origin = deltas.clean.column("origin_time").to_numpy()[first_rows]
        origin = trades.clean.column("origin_time").to_numpy()
        before = np.clip(np.searchsorted(message_origin, origin, "left") - 1, 0, n_messages - 1)
        buy = pc.equal(trades.clean.column("side"), "buy").to_numpy(zero_copy_only=False)
        ticks = np.where(buy, best_bid[before] - beyond, best_ask[before] + beyond)
        picked &= ticks >= 1
        trades.column("price")[picked] = inst.prices(ticks[picked])
        counts[TRADES_OUTSIDE_BOOK][schema.TRADES] = int(picked.sum())

    if faults.off_grid > 0:
        grids = {
            "price": (inst.price_decimals, inst.tick_units),
            "size": (inst.size_decimals, inst.lot_units),
            "quantity": (inst.size_decimals, inst.lot_units),
        }
        for name, columns in (
            (schema.TRADES, ("price", "quantity")),
            (schema.BOOK_DELTAS, ("price", "size")),
        ):
            edit = edits[name]
            eligible = edit.keep.copy()
            if name == schema.BOOK_DELTAS:
                eligible &= edit.clean.column("size").to_numpy() > 0
            for column in columns:
                rng = seeded_rng(key, f"{OFF_GRID}:{column}", name)
                picked = (rng.random(edit.clean.num_rows) < faults.off_grid) & eligible
                tenths = rng.integers(1, 10, edit.clean.num_rows)
                values = edit.column(column)
                decimals, units = grids[column]
                moved = _off_grid(values[picked], decimals, units, tenths[picked])
                values[picked] = moved
                counts[OFF_GRID][name] += int(picked.sum())

    if faults.origin_time_nulls > 0:
        for name, edit in edits.items():
            rng = seeded_rng(key, ORIGIN_TIME_NULLS, name)
            if name == schema.BOOK_DELTAS:
                # Whole messages, and 0 rather than null (see the module docstring).
                picked = (rng.random(n_messages) < faults.origin_time_nulls)[message]
                null = np.zeros_like(picked)
            else:
                picked = rng.random(edit.clean.num_rows) < faults.origin_time_nulls
                null = picked & (rng.random(edit.clean.num_rows) < 0.5)
            picked &= edit.keep
            edit.column("origin_time")[picked & ~null] = 0
            edit.null_origin |= picked & null
            counts[ORIGIN_TIME_NULLS][name] = int(picked.sum())

    if faults.clock_skew > 0:
        offsets = _skew_bursts(n_messages, faults.clock_skew, seeded_rng(key, CLOCK_SKEW, "bursts"))
        message_origin = deltas.clean.column("origin_time").to_numpy()[first_rows]
        for name, edit in edits.items():
            if name == schema.BOOK_DELTAS:
                owner = message
            else:
                # A trade belongs to the first message at or after it (which publishes its
                # fill), a snapshot to the message with its time.
                origin = edit.clean.column("origin_time").to_numpy()
                owner = np.searchsorted(message_origin, origin, "left")
            shift = offsets[np.minimum(owner, n_messages - 1)]
            moved = (shift != 0) & edit.keep
            edit.column("received_time")[moved] += shift[moved]
            counts[CLOCK_SKEW][name] = int(moved.sum())

    across: dict[str, pa.Table] = {}
    tables: dict[str, pa.Table] = {}
    for name, edit in edits.items():
        kept = np.flatnonzero(edit.keep)
        if faults.duplicates > 0:
            n = edit.clean.num_rows
            copied = (seeded_rng(key, DUPLICATES, name).random(n) < faults.duplicates) & edit.keep
            received = edit.values.get("received_time")
            if received is None:
                received = edit.clean.column("received_time").to_numpy()
            midnight = np.rint(received / _DAY_NS).astype(np.int64) * _DAY_NS
            near_midnight = np.abs(received - midnight) < ACROSS_MIDNIGHT_NS
            counts[DUPLICATES][name] = int(copied.sum())
            beside = copied & ~near_midnight
            rows = np.repeat(kept, 1 + beside[kept].astype(np.int64))
            across[name] = edit.build(np.flatnonzero(copied & near_midnight))
        else:
            rows = kept
            across[name] = edit.clean.schema.empty_table()
        tables[name] = edit.build(rows)
    return FaultyDay(tables=tables, across_midnight=across, counts=counts)


def _suppress_removals(
    deltas: _Edit,
    message: np.ndarray,
    first_rows: np.ndarray,
    rate: float,
    key: tuple,
    counts: dict[str, dict[str, int]],
) -> None:
    removal = deltas.clean.column("size").to_numpy() == 0
    n = removal.size
    picked = (
        (seeded_rng(key, STALE_LEVELS, schema.BOOK_DELTAS).random(n) < rate) & removal & deltas.keep
    )
    # A message keeps at least one row (else it would be a gap): spare its first row.
    groups = first_rows.size
    rows_left = np.bincount(message, weights=deltas.keep & ~picked, minlength=groups)
    suppressed = np.bincount(message, weights=picked, minlength=groups)
    emptied = np.flatnonzero((rows_left == 0) & (suppressed > 0))
    picked[first_rows[emptied]] = False
    deltas.keep &= ~picked
    counts[STALE_LEVELS][schema.BOOK_DELTAS] = int(picked.sum())


def _touch_after_messages(
    deltas: pa.Table, first_rows: np.ndarray, inst: market.Instrument
) -> tuple[np.ndarray, np.ndarray]:
    """Best bid and best ask (ticks) after each message of a clean day's deltas."""
    ticks = np.rint(deltas.column("price").to_numpy() * 10.0**inst.price_decimals)
    ticks = (ticks / inst.tick_units).astype(np.int64)
    lo = int(ticks.min()) if ticks.size else 0
    present = deltas.column("size").to_numpy() > 0
    side_is_bid = deltas.column("side_is_bid").to_numpy(zero_copy_only=False)
    bounds = np.append(first_rows, ticks.size).astype(np.int64)
    n_cells = int(ticks.max()) - lo + 1 if ticks.size else 1
    best_bid, best_ask = _touch_kernel(bounds, side_is_bid, ticks - lo, present, n_cells)
    return best_bid + lo, best_ask + lo


@njit(cache=True)
def _touch_kernel(bounds, side_is_bid, cells, present, n_cells):
    """Replays level presence per tick; the best of a side moves on past removed levels."""
    occupied = np.zeros((2, n_cells), dtype=np.bool_)
    best_bid, best_ask = -1, n_cells
    n_messages = bounds.shape[0] - 1
    out_bid = np.empty(n_messages, dtype=np.int64)
    out_ask = np.empty(n_messages, dtype=np.int64)
    for message in range(n_messages):
        for row in range(bounds[message], bounds[message + 1]):
            cell = cells[row]
            if side_is_bid[row]:
                occupied[0, cell] = present[row]
                if present[row] and cell > best_bid:
                    best_bid = cell
                while best_bid >= 0 and not occupied[0, best_bid]:
                    best_bid -= 1
            else:
                occupied[1, cell] = present[row]
                if present[row] and cell < best_ask:
                    best_ask = cell
                while best_ask < n_cells and not occupied[1, best_ask]:
                    best_ask += 1
        out_bid[message] = best_bid
        out_ask[message] = best_ask
    return out_bid, out_ask


def _off_grid(values: np.ndarray, decimals: int, units: int, tenths: np.ndarray) -> np.ndarray:
    """value + tenths/10 of a grid step, as the float nearest to that exact decimal."""
    steps = np.rint(values * 10.0**decimals / units).astype(np.int64)
    # An exact integer over an exact power of ten: one correctly rounded division.
    return ((steps * 10 + tenths) * units) / 10.0 ** (decimals + 1)


def _skew_bursts(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Per message the clock offset (ns; 0 outside bursts): alternating calm stretches and
    bursts (geometric lengths, mean `SKEW_BURST_MESSAGES`) so about `rate` of messages are in
    bursts; each burst draws one offset of 2..30 s, either sign."""
    offsets = np.zeros(n, dtype=np.int64)
    mean_calm = SKEW_BURST_MESSAGES * (1.0 - rate) / rate
    position = 0
    while position < n:
        position += int(rng.geometric(1.0 / (1.0 + mean_calm))) - 1
        length = int(rng.geometric(1.0 / SKEW_BURST_MESSAGES))
        size = int(rng.integers(SKEW_MIN_NS // 10**6, SKEW_MAX_NS // 10**6 + 1)) * 10**6
        sign = 1 if rng.random() < 0.5 else -1
        offsets[position : position + length] = sign * size
        position += length
    return offsets
