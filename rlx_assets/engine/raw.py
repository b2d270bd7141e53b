"""One partition of a raw table: rows of the day from the neighbouring `dt` files, cleaned.

Pure: takes the normalized source tables (float prices as the vendor ships them) and returns the
day's rows with exact decimals, plus an account of every row read: kept, filed under this `dt` but
stamped on another day, duplicate, or quarantined with a reason. Nothing is silently dropped.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numba
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.decimals import (
    GRID_SHARE,
    MAX_DIGITS,
    MIN_TOLERANCE_STEPS,
    ULPS,
    on_grid,
    scale_floats,
    scaled_columns_to_decimal,
    to_steps,
)
from rlx_assets.engine.runs import MemoryRuns, Run, RunStore, SortedRuns, groups_whole
from rlx_assets.lake.source import RowGroup
from rlx_assets.schema import BOOK, BOOK_DELTAS, SCHEMAS, TRADES, book_level_columns

NS_PER_DAY = 86_400 * 10**9
DIGITS_KEYS = {"price": b"rlx.price_digits", "size": b"rlx.size_digits"}


def day_bounds_ns(day: dt.date) -> tuple[int, int]:
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())
    return start * 10**9, start * 10**9 + NS_PER_DAY


@dataclass
class RawAccount:
    """What happened to every row read for one partition of a raw table."""

    rows_read: int = 0
    rows_kept: int = 0
    rows_other_days: int = 0
    duplicates_dropped: int = 0
    quarantined: Counter = field(default_factory=Counter)
    rows_from_neighbour_dt: int = 0
    origin_time_invalid: int = 0
    price_step_exponent: int = 0
    size_step_exponent: int = 0
    # The grids the day's own values point to (the ones used when none is given).
    inferred_price_step_exponent: int = 0
    inferred_size_step_exponent: int = 0
    precision_loss_warnings: int = 0
    values_on_grid_checked: int = 0
    digits: dict[str, int] = field(default_factory=dict)  # "price"/"size" -> fractional digits
    sorted_runs: int = 0  # runs the day's rows were sorted in (1 when they came in order)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())

    def accounted(self) -> bool:
        gone = self.rows_other_days + self.duplicates_dropped + self.rows_quarantined
        return self.rows_read == self.rows_kept + gone

    def digits_metadata(self) -> dict[bytes, bytes]:
        """Recorded with the table: every value is exact at these digits, so readers scale to
        int64 without trial casts."""
        return {DIGITS_KEYS[key]: str(value).encode() for key, value in self.digits.items()}


@dataclass
class RawDay(RawAccount):
    """A partition cleaned in memory (`clean_day`): the account plus the tables."""

    table: pa.Table | None = None
    quarantine: pa.Table | None = None  # the quarantined rows as read, with a `reason` column


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
    # Reasons by number while marking (comparing strings row by row is slow); named at the end.
    codes = np.zeros(rows, dtype=np.int32)
    names = [""]

    def mark(mask: np.ndarray, reason: str) -> None:
        if mask.any():
            codes[(codes == 0) & mask] = len(names)
            names.append(reason)

    def invalid_time(name: str) -> np.ndarray:
        return ~pc.fill_null(pc.greater(table[name], 0), False).to_numpy(zero_copy_only=False)

    mark(invalid_time("origin_time") & invalid_time("received_time"), "no_valid_time")
    if FAR in table.column_names:
        mark(table[FAR].to_numpy(zero_copy_only=False), FAR_REASON)
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
    return np.asarray(names, dtype=object)[codes]


def _effective_time(table: pa.Table) -> np.ndarray:
    """origin_time where valid, else received_time (rows with neither are quarantined)."""
    origin = pc.fill_null(table["origin_time"], 0).to_numpy()
    received = pc.fill_null(table["received_time"], 0).to_numpy()
    return np.where(origin > 0, origin, received)


# Sort keys of a partition: int64 columns added while reading, compared left to right; `_order`
# (source index << 40 | row in source) makes every key unique and keeps arrival order in ties.
ORDER = "_order"
TIME = "_time"  # the time that places a row in a day
SEQUENCE_KEY = "_sequence"
TRADE_ID_KEY = "_trade_id"
FAR = "_far"  # stamped far from the day it was filed under: quarantined there
_SOURCE_SHIFT = 40
_HELPER_COLUMNS = (ORDER, TIME, SEQUENCE_KEY, TRADE_ID_KEY, FAR)
FAR_REASON = "time_far_from_filed_dt"
# A collector files a row under the day it received it, so its time lies within a day of that
# day; a row stamped further off (another year, or a time in ms or us read as ns) is wrong.
FAR_FROM_FILED_NS = NS_PER_DAY
# Rows of one delta message share a sequence number and a time; the same number in another
# file a day later is another message (a feed whose numbers start again), not the same one.
MESSAGE_SPAN_NS = 60 * 10**9


def sort_key(table_name: str) -> list[str]:
    """Trades by time then id; book rows and deltas by sequence number (a delta message's rows
    stay together), each then in arrival order."""
    if table_name == TRADES:
        return [TIME, TRADE_ID_KEY, ORDER]
    return [SEQUENCE_KEY, ORDER]


def _group_key(table_name: str) -> list[str]:
    """Rows that can duplicate each other, or form one message, share these key columns."""
    return sort_key(table_name)[:-1]


@dataclass(frozen=True)
class Source:
    """Rows filed under one `dt` folder (one file, or part of one), in batches as read."""

    filed_under: dt.date
    batches: Iterable[pa.Table]  # normalized (`schema.normalize_table`)


_EXACT_STEPS = 2.0**40


_CACHE_BITS = 16  # answers remembered by value: a day's prices and sizes repeat a great deal


@numba.njit(cache=True, nogil=True)
def _grids_of(value, divisible, grids, units, floors, ulps):
    """For one whole number of fine steps: its trailing decimal zeros (capped at `divisible`);
    the grids from `divisible` on that it lies near, as bits (grid i: bit i) where the grid's
    unit is at most twice the value, and as the first of the coarser grids (`grids` if none),
    which it lies near from there on (the distance is the value itself, the tolerance only
    grows); and whether it sits at a tolerance's edge."""
    zeros = 0
    if value == 0:
        return divisible, np.uint64(0), divisible, False
    rest = value
    while rest % 10 == 0 and zeros < divisible:
        rest //= 10
        zeros += 1
    near = np.uint64(0)
    for i in range(divisible, grids):
        unit = units[i]
        tolerance = max(floors[i], ulps * value)
        coarse = unit > 2.0 * value
        if coarse:
            distance = float(value)  # the value is its own remainder
        else:
            remainder = float(value % np.int64(unit))
            distance = min(remainder, unit - remainder)
        if abs(distance - tolerance) <= tolerance * 1e-6:
            return zeros, np.uint64(0), grids, True
        if distance <= tolerance:
            if coarse:
                return zeros, near, i, False
            near |= np.uint64(1) << np.uint64(i)
    return zeros, near, grids, False


@numba.njit(cache=True, nogil=True)
def _tally_coarser_grids(steps, grids, min_tolerance, ulps, counts, edge):
    """counts[i] += how many `steps` (whole steps of a fine grid, below 2**40) lie on the grid
    of 10**(i + 1) fine steps, within `on_grid`'s tolerance (min_tolerance steps of that grid,
    or ulps of the value); values at the tolerance's edge are left out and marked in `edge`.

    While the tolerance is under half a fine step, "on the grid" is "divisible by 10**(i + 1)":
    the value's trailing decimal zeros answer all those grids at once. A value's answer is
    remembered (by value, in a small table), so repeated values cost a lookup."""
    units = np.empty(grids)
    floors = np.empty(grids)
    for i in range(grids):
        units[i] = 10.0 ** (i + 1)
        floors[i] = units[i] * min_tolerance
    divisible = 0  # grids decided by divisibility whatever the value (below 2**40 steps)
    while divisible < grids and floors[divisible] + ulps * 2.0**40 < 0.5:
        divisible += 1
    by_zeros = np.zeros(divisible + 1, dtype=np.int64)  # values by trailing zeros (capped)
    by_first_coarse = np.zeros(grids + 1, dtype=np.int64)  # values near every grid from i on
    size = 1 << _CACHE_BITS
    cached_value = np.full(size, -1, dtype=np.int64)
    cached_zeros = np.zeros(size, dtype=np.int64)
    cached_near = np.zeros(size, dtype=np.uint64)
    cached_first_coarse = np.zeros(size, dtype=np.int64)
    cached_edge = np.zeros(size, dtype=np.bool_)
    shift = np.uint64(64 - _CACHE_BITS)
    slot = np.uint64(0)
    previous = np.int64(-1)
    for k in range(steps.size):
        value = steps[k]
        if value != previous:  # runs of one value (a level standing) skip the lookup
            previous = value
            slot = (np.uint64(value) * np.uint64(0x9E3779B97F4A7C15)) >> shift
        if cached_value[slot] != value:
            zeros, near, first_coarse, at_edge = _grids_of(
                value, divisible, grids, units, floors, ulps
            )
            cached_value[slot] = value
            cached_zeros[slot] = zeros
            cached_near[slot] = near
            cached_first_coarse[slot] = first_coarse
            cached_edge[slot] = at_edge
        if cached_edge[slot]:
            edge[k] = True
            continue
        by_zeros[cached_zeros[slot]] += 1
        by_first_coarse[cached_first_coarse[slot]] += 1
        near = cached_near[slot]
        i = 0
        while near:  # rare: small values near a grid a few times their size
            if near & np.uint64(1):
                counts[i] += 1
            near >>= np.uint64(1)
            i += 1
    near_from = 0
    for i in range(grids):
        near_from += by_first_coarse[i]
        counts[i] += near_from
    # On the grid of 10**(i + 1) steps: the values with at least i + 1 trailing zeros.
    at_least = 0
    for zeros in range(divisible, 0, -1):
        at_least += by_zeros[zeros]
        counts[zeros - 1] += at_least


@numba.njit(cache=True, nogil=True)
def _steps_on_fine_grid(
    values, factor, divide, min_tolerance, ulps, exact_below, steps, step_values, each
):
    """One pass of `GridTally.add` on a known fine grid: `on_grid`'s arithmetic value by value
    (`to_steps` by `factor`), the whole steps of the values on it written to `steps` (their
    values to `step_values`), the values to count one by one (off the grid, too large for exact
    steps, or rounding to 0 steps without being 0: see `_fine_grid`) to `each`. Returns
    (finite values, values on the grid, largest |value|, steps written, values in `each`)."""
    finite = 0
    on = 0
    largest = 0.0
    kept = 0
    counted_each = 0
    for value in values:
        if not np.isfinite(value):
            continue
        finite += 1
        largest = max(largest, abs(value))
        in_steps = value / factor if divide else value * factor
        rounded = np.rint(in_steps)
        tolerance = max(min_tolerance, ulps * abs(in_steps))
        if abs(in_steps - rounded) - tolerance <= 0 and (rounded != 0 or value == 0):
            on += 1
            if abs(rounded) < exact_below:
                steps[kept] = np.int64(abs(rounded))
                step_values[kept] = value
                kept += 1
                continue
        each[counted_each] = value
        counted_each += 1
    return finite, on, largest, kept, counted_each


def _rounds_to_zero(values: np.ndarray, exponent: int) -> np.ndarray:
    return (np.abs(to_steps(values, exponent)) < 0.5) & (values != 0)


class GridTally:
    """How many of a day's values lie on each power-of-ten grid, fed chunk by chunk, so the day's
    grid is inferred as `infer_step_exponent` infers it over the whole day at once."""

    EXPONENTS = np.arange(-MAX_DIGITS, MAX_DIGITS + 3)

    def __init__(self) -> None:
        self.values = 0
        self.largest = 0.0
        self.on_grid = np.zeros(self.EXPONENTS.size, dtype=np.int64)
        self._fine: int | None = None

    def add(self, values: np.ndarray) -> None:
        if self._fine is not None and self._add_on_fine_grid(values):
            return
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return
        self.values += int(finite.size)
        largest = float(np.max(np.abs(finite)))
        self.largest = max(self.largest, largest)
        top = int(np.floor(np.log10(largest))) if largest > 0 else 0
        fine, on = self._fine_grid(finite, top)
        if fine is None:
            self._count_each(finite)
            return
        on_values = finite[on]
        steps = np.abs(np.rint(to_steps(on_values, fine)))
        # Where float rounding reaches whole steps, rounding to a step is not exact: such values
        # are counted one by one like the values off the grid.
        exact = steps < _EXACT_STEPS
        self._tally_steps(
            steps[exact].astype(np.int64),
            on_values[exact],
            fine,
            np.concatenate([on_values[~exact], finite[~on]]),
        )

    def _add_on_fine_grid(self, values: np.ndarray) -> bool:
        """`add` in one compiled pass when the previous chunk's fine grid still holds (the
        usual case); False, with nothing counted, when it does not."""
        fine = self._fine
        assert fine is not None
        values = np.ascontiguousarray(values, dtype=np.float64)
        steps = np.empty(values.size, dtype=np.int64)
        step_values = np.empty(values.size, dtype=np.float64)
        each = np.empty(values.size, dtype=np.float64)
        # The factor as `to_steps` computes it, so rounding matches `on_grid` bit for bit.
        factor = 10.0**fine if fine >= 0 else 10.0**-fine
        finite, on, largest, kept, counted_each = _steps_on_fine_grid(
            values,
            factor,
            fine >= 0,
            MIN_TOLERANCE_STEPS,
            ULPS,
            _EXACT_STEPS,
            steps,
            step_values,
            each,
        )
        if finite == 0:
            return True
        if on / finite < GRID_SHARE:
            return False
        self.values += finite
        self.largest = max(self.largest, largest)
        self._tally_steps(steps[:kept], step_values[:kept], fine, each[:counted_each])
        return True

    def _tally_steps(
        self, steps: np.ndarray, step_values: np.ndarray, fine: int, each: np.ndarray
    ) -> None:
        """Whole steps of the fine grid (below 2**40; `step_values` the values they stand
        for) counted on every grid; `each` (values off the fine grid, or too large for exact
        steps) counted one by one."""
        coarser = fine < self.EXPONENTS
        grids = int(coarser.sum())
        counts = np.zeros(grids, dtype=np.int64)
        edge = np.zeros(steps.size, dtype=np.bool_)
        _tally_coarser_grids(steps, grids, MIN_TOLERANCE_STEPS, ULPS, counts, edge)
        # On a coarser grid: exact integer arithmetic on the steps, with `on_grid`'s tolerance.
        self.on_grid[coarser] += counts
        # A value on a grid lies on every finer one.
        self.on_grid[~coarser] += steps.size - int(edge.sum())
        # At the edge of the tolerance float rounding decides, as it does in `on_grid`.
        self._count_each(step_values[edge])
        self._count_each(each)

    def _fine_grid(self, finite: np.ndarray, top: int) -> tuple[int | None, np.ndarray]:
        """A grid nearly all of these values lie on (so the few off it are counted one by
        one), and which values do: the previous chunk's when it still holds, else the coarsest
        from `top` down."""
        candidates = range(top, -MAX_DIGITS - 1, -1)
        if self._fine is not None:
            candidates = [self._fine, *candidates]
        for exponent in candidates:
            # A value below half a step but within the tolerance of 0 is "on" a grid far
            # coarser than itself, and not on the finer ones: it is counted one by one, and
            # does not make a grid fine.
            on = on_grid(finite, exponent) & ~_rounds_to_zero(finite, exponent)
            if np.mean(on) >= GRID_SHARE:
                self._fine = exponent
                return exponent, on
        return None, on

    def _count_each(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        counted = pl.Series(values).value_counts()
        distinct = counted[:, 0].to_numpy()
        counts = counted[:, 1].to_numpy().astype(np.int64)
        for index, exponent in enumerate(self.EXPONENTS):
            self.on_grid[index] += int(counts[on_grid(distinct, int(exponent))].sum())

    def exponent(self) -> int:
        if self.values == 0:
            return 0
        largest = self.largest
        top = max(0, int(np.floor(np.log10(largest))) if largest > 0 else 0)
        for exponent in range(top, -MAX_DIGITS - 1, -1):
            # Values beyond 1e20 are not prices or sizes; no grid that coarse is counted.
            index = exponent + MAX_DIGITS
            count = self.on_grid[index] if index < self.on_grid.size else 0
            if count / self.values >= GRID_SHARE:
                return exponent
        return -MAX_DIGITS


def _present_values(table: pa.Table, names: list[str]) -> np.ndarray:
    """The values of these columns, column after column (a level's values repeat from row to
    row, which the grid tally is quick to count)."""
    if not table.num_rows:
        return np.zeros(0)
    matrix = np.stack(
        [table[name].to_numpy(zero_copy_only=False).astype(np.float64) for name in names], axis=0
    )
    return matrix[~np.isnan(matrix)]


class _Partition:
    """The passes of `clean_partition` and the state they share."""

    def __init__(self, table_name: str, day: dt.date, store: RunStore) -> None:
        self.table_name = table_name
        self.day = day
        self.start, self.end = day_bounds_ns(day)
        self.account = RawAccount()
        self.store = store
        self.key = sort_key(table_name)
        self.columns = SCHEMAS[table_name].names
        self.sources: list[dt.date] = []  # per source: the dt it was filed under
        self.neighbour: list[bool] = []  # per source: filed under another dt than the day's
        self.grids = {"price": GridTally(), "size": GridTally()}
        # Per kept message (book tables, in sequence order): the time of its first row; one
        # int64 a message, for `_messages_out_of_place`.
        self.message_times: list[np.ndarray] = []

    def with_keys(self, table: pa.Table, source: int, first_row: int) -> pa.Table:
        """The batch with its sort keys; a row with no valid time keeps the day it was filed
        under (it is quarantined, and must be so in one partition only)."""
        order = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
        order += source << _SOURCE_SHIFT
        time = _effective_time(table)
        filed_start, filed_end = day_bounds_ns(self.sources[source])
        far = (time > 0) & (
            (time < filed_start - FAR_FROM_FILED_NS) | (time >= filed_end + FAR_FROM_FILED_NS)
        )
        time = np.where((time > 0) & ~far, time, filed_start)
        table = (
            table.append_column(ORDER, pa.array(order))
            .append_column(TIME, pa.array(time))
            .append_column(FAR, pa.array(far))
        )
        if self.table_name == TRADES:
            ids = pc.fill_null(table["trade_id"], -1)
            return table.append_column(TRADE_ID_KEY, ids)
        return table.append_column(SEQUENCE_KEY, pc.fill_null(table["sequence_number"], -1))

    def read(self, sources: Iterable[Source], chunk_rows: int) -> SortedRuns:
        """Pass 1: every row read, keyed and sorted in chunks into runs."""
        runs = SortedRuns(self.store, self.key)
        for index, source in enumerate(sources):
            self.sources.append(source.filed_under)
            self.neighbour.append(source.filed_under != self.day)
            row = 0
            for batch in source.batches:
                for offset in range(0, batch.num_rows, chunk_rows):
                    chunk = batch.slice(offset, chunk_rows)
                    runs.add(self.with_keys(chunk, index, row))
                    row += chunk.num_rows
            self.account.rows_read += row
        return runs

    def place(self, piece: pa.Table, quarantine: Callable[[pa.Table], None]) -> pa.Table:
        """Pass 2 on whole groups in key order: the day's rows kept, others counted, bad rows
        quarantined, duplicates dropped."""
        time = piece[TIME].to_numpy()
        if self.table_name == BOOK_DELTAS:
            time = _message_time(
                piece[SEQUENCE_KEY].to_numpy(), time, piece[ORDER].to_numpy() >> _SOURCE_SHIFT
            )
        in_day = (time >= self.start) & (time < self.end)
        reasons = _quarantine_reasons(self.table_name, piece)
        bad = reasons != ""
        self.account.rows_other_days += int((~in_day).sum())
        rejected = in_day & bad
        if rejected.any():
            self.account.quarantined.update(reasons[rejected].tolist())
            rows = piece.filter(pa.array(rejected)).select(self.columns)
            quarantine(rows.append_column("reason", pa.array(reasons[rejected], pa.string())))
        kept = piece.filter(pa.array(in_day & ~bad))
        unique = _first_of_duplicates(kept, self.columns, _group_key(self.table_name))
        self.account.duplicates_dropped += int(kept.num_rows - unique.sum())
        kept = kept.filter(pa.array(unique))
        sources = kept[ORDER].to_numpy() >> _SOURCE_SHIFT
        self.account.rows_from_neighbour_dt += int(np.asarray(self.neighbour)[sources].sum())
        origin = pc.fill_null(pc.greater(kept["origin_time"], 0), False).to_numpy()
        self.account.origin_time_invalid += int((~origin).sum())
        if self.table_name != TRADES and kept.num_rows:
            # Pieces hold whole groups, so a message never continues from the previous piece.
            sequence = kept[SEQUENCE_KEY].to_numpy()
            first = np.ones(sequence.size, dtype=bool)
            first[1:] = sequence[1:] != sequence[:-1]
            self.message_times.append(_effective_time(kept.filter(pa.array(first))))
        kept = kept.select(self.columns)
        prices, sizes = _price_columns(self.table_name)
        self.grids["price"].add(_present_values(kept, prices))
        self.grids["size"].add(_present_values(kept, sizes))
        self.account.rows_kept += kept.num_rows
        return kept


def clean_partition(
    table_name: str,
    day: dt.date,
    sources: Iterable[Source],
    store: RunStore,
    write: Callable[[pa.Table], None],
    quarantine: Callable[[pa.Table], None],
    price_exponent: int | None = None,
    size_exponent: int | None = None,
    chunk_rows: int = 1_000_000,
    inspect_kept: Callable[[Run], None] | None = None,
) -> RawAccount:
    """The rows of `day` from the `dt` folders around it, cleaned in bounded memory.

    Rows belong to the day of their origin_time (received_time when origin_time is missing); a
    delta message goes whole to the day of its first row as read. Exact duplicate rows are
    dropped. Grids come from settings (exponents) or are inferred from the day's values.

    Three passes, none holding the day: the rows read are sorted in chunks into runs of
    `store`; their merge, whole groups at a time, is placed (kept, another day's, quarantined,
    duplicate) into one more run, in order; that run is converted to exact decimals and handed
    to `write` in batches. Quarantined rows go to `quarantine` as read, with a `reason`.
    `inspect_kept` is given that run at the end (the day's rows in table order, before the
    decimals), for figures that need more passes over them.
    """
    partition = _Partition(table_name, day, store)
    runs = partition.read(sources, chunk_rows)
    merged = runs.merged()
    partition.account.sorted_runs = len(runs.runs)
    kept = store.create()
    for piece in groups_whole(merged, _group_key(table_name)):
        kept.write(partition.place(piece, quarantine))
    account = partition.account
    given = {"price": price_exponent, "size": size_exponent}
    inferred = {name: tally.exponent() for name, tally in partition.grids.items()}
    exponents = {name: given[name] if given[name] is not None else inferred[name] for name in given}
    account.price_step_exponent, account.size_step_exponent = exponents["price"], exponents["size"]
    account.inferred_price_step_exponent = inferred["price"]
    account.inferred_size_step_exponent = inferred["size"]
    largest = {name: tally.largest for name, tally in partition.grids.items()}
    account.digits = {name: max(0, -exponent) for name, exponent in exponents.items()}
    written = False
    kept_run: Run = kept.finish()
    if table_name != TRADES:
        out_of_place = _messages_out_of_place(partition.message_times)
        if out_of_place.size:
            kept_run = _WithoutMessages(kept_run, out_of_place, account, quarantine)
    for batch in kept_run.batches():
        table, digits = _to_decimals(table_name, batch, account, exponents, largest)
        account.digits = {name: max(account.digits[name], digits[name]) for name in digits}
        write(table)
        written = True
    if not written:  # the file still says what the table holds
        table, _ = _to_decimals(
            table_name, SCHEMAS[table_name].empty_table(), account, exponents, largest
        )
        write(table)
    if inspect_kept is not None:
        inspect_kept(kept_run)
    return account


# Sequence numbers that went back for a few messages mid-day (or jumped ahead) put those
# messages first (or last) in sequence order, hours away from their neighbours in time. A
# message is out of place when it is later than the message OUT_OF_PLACE_NEIGHBOURS after it by
# more than OUT_OF_PLACE_SPAN_NS (or has none that far after it), and earlier than the one that
# far before it by as much (or has none). A longer run of such messages is a regime of its own
# (a feed numbered again), kept; a sparse feed is in order, however far apart its messages.
OUT_OF_PLACE_REASON = "sequence_out_of_place"
OUT_OF_PLACE_SPAN_NS = 600 * 10**9
OUT_OF_PLACE_NEIGHBOURS = 100


def _message_ids(sequence: np.ndarray, last_sequence: int, last_id: int) -> np.ndarray:
    """Message number of each row (rows in sequence order), continuing from the previous
    batch's last row."""
    starts = np.empty(sequence.size, dtype=bool)
    starts[0] = sequence[0] != last_sequence
    starts[1:] = sequence[1:] != sequence[:-1]
    return last_id + np.cumsum(starts)


def _messages_out_of_place(times: list[np.ndarray]) -> np.ndarray:
    """The numbers of the messages out of place (see OUT_OF_PLACE_REASON), from the time of
    each kept message in sequence order."""
    if not times:
        return np.zeros(0, dtype=np.int64)
    time = np.concatenate(times)
    reach = OUT_OF_PLACE_NEIGHBOURS
    if time.size <= reach:
        return np.zeros(0, dtype=np.int64)
    # Pairs (i, i + reach) whose times run backwards by more than the span.
    backwards = time[:-reach] - time[reach:] > OUT_OF_PLACE_SPAN_NS
    later_than_after = np.ones(time.size, dtype=bool)  # none that far after: true
    later_than_after[:-reach] = backwards
    earlier_than_before = np.ones(time.size, dtype=bool)
    earlier_than_before[reach:] = backwards
    return np.flatnonzero(later_than_after & earlier_than_before)


class _WithoutMessages:
    """A run of kept rows without the messages given. The first read quarantines their rows
    and takes them off the kept count; later reads only leave them out."""

    def __init__(
        self,
        run: Run,
        messages: np.ndarray,
        account: RawAccount,
        quarantine: Callable[[pa.Table], None],
    ) -> None:
        self.run = run
        self.messages = messages
        self.account = account
        self.quarantine = quarantine
        self.removed = 0
        self._counted = False

    @property
    def rows(self) -> int:
        return self.run.rows - self.removed

    def batches(self) -> Iterator[pa.Table]:
        last_sequence, last_id = -(2**63), -1
        for batch in self.run.batches():
            if batch.num_rows == 0:
                continue
            sequence = pc.fill_null(batch["sequence_number"], -1).to_numpy()
            ids = _message_ids(sequence, last_sequence, last_id)
            last_sequence, last_id = int(sequence[-1]), int(ids[-1])
            out = np.isin(ids, self.messages)
            if not out.any():
                yield batch
                continue
            if not self._counted:
                self._quarantine(batch.filter(pa.array(out)))
            yield batch.filter(pa.array(~out))
        self._counted = True

    def _quarantine(self, rows: pa.Table) -> None:
        count = rows.num_rows
        self.removed += count
        self.account.rows_kept -= count
        self.account.quarantined[OUT_OF_PLACE_REASON] += count
        origin = pc.fill_null(pc.greater(rows["origin_time"], 0), False).to_numpy()
        self.account.origin_time_invalid -= int((~origin).sum())
        self.quarantine(rows.append_column("reason", pa.array([OUT_OF_PLACE_REASON] * count)))


def clean_day(
    table_name: str,
    day: dt.date,
    sources: list[tuple[dt.date, pa.Table]],
    price_exponent: int | None = None,
    size_exponent: int | None = None,
    chunk_rows: int = 1_000_000,
) -> RawDay:
    """`clean_partition` in memory, for tables that fit: the day's rows as one table."""
    written: list[pa.Table] = []
    quarantined: list[pa.Table] = []
    account = clean_partition(
        table_name,
        day,
        [Source(filed_under, [table]) for filed_under, table in sources],
        MemoryRuns(),
        written.append,
        quarantined.append,
        price_exponent,
        size_exponent,
        chunk_rows,
    )
    table = pa.concat_tables(written).combine_chunks()
    return RawDay(
        **vars(account),
        table=table.replace_schema_metadata(account.digits_metadata()),
        quarantine=pa.concat_tables(quarantined) if quarantined else None,
    )


def _message_time(sequence: np.ndarray, time: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Every row of a delta message (rows sorted by sequence, then arrival) takes the time of
    the message's first row as read. Rows of one sequence number from two files, more than
    MESSAGE_SPAN_NS apart, are two messages: a feed that numbers from 1 again each day must not
    send a day's messages to the day before. (Within a file, an odd stamp stays with its
    message.)"""
    first_of_run = np.ones(sequence.size, dtype=bool)
    first_of_run[1:] = (sequence[1:] != sequence[:-1]) | (
        (source[1:] != source[:-1]) & (np.abs(time[1:] - time[:-1]) > MESSAGE_SPAN_NS)
    )
    return time[first_of_run][np.cumsum(first_of_run) - 1]


def _first_of_duplicates(table: pa.Table, columns: list[str], group: list[str]) -> np.ndarray:
    """True for the first occurrence of each distinct row (in the table's order). Rows are in
    order of the `group` columns, which equal rows share: only rows of one group can repeat."""
    unique = np.ones(table.num_rows, dtype=bool)
    if table.num_rows < 2:
        return unique
    frame = pl.from_arrow(table.select(columns))
    changes = np.zeros(table.num_rows, dtype=bool)
    changes[0] = True
    for name in group:
        key = table[name].to_numpy()
        changes[1:] |= key[1:] != key[:-1]
    # Rows are compared in full only where their hashes meet within a group (duplicates are
    # rare).
    candidates = _hash_repeats(frame.hash_rows().to_numpy(), np.flatnonzero(changes))
    if candidates.any():
        rows = np.flatnonzero(candidates)
        first = frame[rows].select(pl.struct(pl.all()).is_first_distinct()).to_series()
        unique[rows] = first.to_numpy()
    return unique


_PAIRWISE_GROUP_ROWS = 32  # a group up to this size compares hashes pair by pair, not sorted


@numba.njit(cache=True, nogil=True)
def _hash_repeats(hashes, starts):
    """True for rows whose hash another row of their group shares (groups begin at `starts`)."""
    repeats = np.zeros(hashes.size, dtype=np.bool_)
    for index in range(starts.size):
        begin = starts[index]
        end = starts[index + 1] if index + 1 < starts.size else hashes.size
        if end - begin <= _PAIRWISE_GROUP_ROWS:
            for i in range(begin + 1, end):
                for j in range(begin, i):
                    if hashes[i] == hashes[j]:
                        repeats[i] = True
                        repeats[j] = True
        else:
            order = np.argsort(hashes[begin:end]) + begin
            for k in range(1, order.size):
                if hashes[order[k]] == hashes[order[k - 1]]:
                    repeats[order[k]] = True
                    repeats[order[k - 1]] = True
    return repeats


def _to_decimals(
    table_name: str,
    table: pa.Table,
    account: RawAccount,
    exponents: dict[str, int],
    largest: dict[str, float],
) -> tuple[pa.Table, dict[str, int]]:
    """Prices and sizes as exact decimals on the day's grids, an `off_grid` flag per row, and
    the digits this batch needs."""
    price_names, size_names = _price_columns(table_name)
    off_grid = np.zeros(table.num_rows, dtype=bool)
    digits = {}
    for names, key in ((price_names, "price"), (size_names, "size")):
        matrix = (
            np.stack(
                [table[name].to_numpy(zero_copy_only=False).astype(np.float64) for name in names],
                axis=1,
            )
            if table.num_rows
            else np.zeros((0, len(names)))
        )
        present = ~np.isnan(matrix)
        scaled = scale_floats(np.where(present, matrix, 0.0).ravel(), exponents[key], largest[key])
        flags = scaled.off_grid.reshape(matrix.shape) & present
        off_grid |= flags.any(axis=1)
        account.precision_loss_warnings += int(flags.sum())
        account.values_on_grid_checked += int(present.sum())
        digits[key] = scaled.digits
        columns = scaled_columns_to_decimal(
            scaled.ints.reshape(matrix.shape), scaled.digits, present
        )
        for name, column in zip(names, columns, strict=True):
            table = table.set_column(table.schema.get_field_index(name), name, column)
    return table.append_column("off_grid", pa.array(off_grid)), digits


def row_groups_for_day(
    table_name: str, row_groups: list[RowGroup], filed_under: dt.date, day: dt.date
) -> list[int]:
    """The row groups of a file filed under `filed_under` that can hold rows of `day`: all of
    the day's own files; of a neighbour's, those whose statistics do not prove every row to lie
    on another day (a row group without statistics is read).

    A delta message goes to the day of its first row, so it is never cut in two (see below).
    """
    if filed_under == day:
        return list(range(len(row_groups)))
    start, end = day_bounds_ns(day)
    earlier = filed_under < day
    chosen = [not _elsewhere(group, start, end, earlier) for group in row_groups]
    if table_name == BOOK_DELTAS and any(chosen):
        # The message at the edge of a row group read may continue in (later dt) or begin in
        # (earlier dt) its neighbour: a row group whose sequence numbers meet those of a row
        # group the times chose is read too (one step, not transitively: a message read whole
        # decides its day, and the row groups beyond hold whole messages of other days).
        sequences = [group.ranges.get("sequence_number") for group in row_groups]
        if None in sequences:
            return list(range(len(row_groups)))
        by_time = [sequences[index] for index, take in enumerate(chosen) if take]
        for index, own in enumerate(sequences):
            if any(
                own.minimum <= other.maximum and other.minimum <= own.maximum for other in by_time
            ):
                chosen[index] = True
    return [index for index, take in enumerate(chosen) if take]


def _elsewhere(group: RowGroup, start: int, end: int, earlier: bool) -> bool:
    """Do the statistics prove that no row of `group` (in a file filed on another day) has its
    time inside [start, end)? A row's time is origin_time, else received_time, else the day it
    was filed under (outside the day here)."""
    origin = group.ranges.get("origin_time")
    received = group.ranges.get("received_time")
    if origin is None:
        return False
    if earlier:
        # Rows without a valid origin_time fall back to received_time (or the earlier dt).
        fallback_before = (origin.nulls == 0 and origin.minimum > 0) or (
            received is not None and received.maximum < start
        )
        return origin.maximum < start and fallback_before
    fallback_after = origin.nulls == 0 or (received is not None and received.minimum >= end)
    return origin.minimum >= end and fallback_after
