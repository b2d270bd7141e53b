"""Microstructure figures of one day: per-minute book statistics, update frequency by level, and
day summaries, from the reconstructed book, the raw deltas and the raw trades.

Statistics are float64 (they are statistics, not prices). Book statistics are time-weighted: each
book row holds from its own time until the next row's (or the end of its minute), so a burst of
messages within one millisecond weighs no more than the book that then stood for ten seconds.
Means and medians use these weights; min and max range over every book published or standing
in the minute (a book replaced within the same nanosecond still counts there).
Times are origin_time (received_time where the vendor left it empty), made non-decreasing in
sequence order: a message stamped before its predecessor counts with its predecessor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.quality import ExactQuantiles
from rlx_assets.schema import BOOK_LEVELS, book_level_columns

NS_PER_MINUTE = 60 * 10**9
SIDES = ("BID", "ASK")
# Buckets of the delta-row table beyond levels 0..19.
NEW_PRICE = "new_price"  # a price not in the top 20 before the message, within their range
DEEPER = "deeper"  # worse than level 19 of a full top 20
NO_PRIOR_BOOK = "no_prior_book"  # the first published message, or one before the seed
LEVEL = "level"
_NEW_CODE, _DEEPER_CODE, _NO_PRIOR_CODE = BOOK_LEVELS, BOOK_LEVELS + 1, BOOK_LEVELS + 2
_CODES = BOOK_LEVELS + 3

_FLOAT_STATS = [
    "spread_mean",
    "spread_p50",
    "spread_max",
    "spread_bps_mean",
    "spread_bps_p50",
    "spread_bps_max",
    "mid_open",
    "mid_close",
    "imbalance_l1_mean",
    "imbalance_top5_mean",
    "imbalance_top20_mean",
    "depth_bid_mean",
    "depth_bid_min",
    "depth_bid_max",
    "depth_ask_mean",
    "depth_ask_min",
    "depth_ask_max",
    "levels_bid_mean",
    "levels_ask_mean",
]

# messages: book rows; delta_messages/delta_rows: deltas by message (sequence_number) and row;
# trade_to_book_ratio: trades / delta_messages (null without messages); book_seconds: time in
# the minute with a known book (the weight of the book statistics); spread in price units and
# in bps of mid; imbalance (bid - ask) / (bid + ask) of the sizes at the best level, top 5 and
# top 20 levels; depth: sum of the top-20 sizes per side; levels: non-empty levels per side.
PER_MINUTE_SCHEMA = pa.schema(
    [
        ("minute_start", pa.int64()),
        ("messages", pa.int64()),
        ("delta_messages", pa.int64()),
        ("delta_rows", pa.int64()),
        ("trades", pa.int64()),
        ("trade_to_book_ratio", pa.float64()),
        ("book_seconds", pa.float64()),
    ]
    + [(name, pa.float64()) for name in _FLOAT_STATS]
)

UPDATE_FREQUENCY_SCHEMA = pa.schema(
    [
        ("side", pa.string()),
        ("level", pa.int32()),
        ("bucket", pa.string()),
        ("changes", pa.int64()),
        ("change_share", pa.float64()),
        ("delta_rows", pa.int64()),
        ("delta_row_share", pa.float64()),
    ]
)


@dataclass
class MicrostructureResult:
    """`per_minute`: one row per UTC minute with any data (PER_MINUTE_SCHEMA), sorted.

    `update_frequency_by_level` (UPDATE_FREQUENCY_SCHEMA), per side: levels 0..19 (bucket
    `level`) with how often the level's price or size changed between consecutive book rows
    (`change_share` is of the compared row pairs) and how many delta rows hit that level's price
    in the book before their message; then the delta rows at a `new_price`, `deeper` than level
    19, or with `no_prior_book`. `delta_row_share` is of all delta rows.

    `summary`: the day's figures; None where undefined (no book, no messages). Counts (minutes,
    messages = book rows, delta_messages, delta_rows, trades); trade_to_book_ratio = trades /
    delta messages (and trade_to_delta_row_ratio); time-weighted spread mean/p50 (price units),
    spread bps mean/p50/p99/max, imbalance means, depth means and median levels per side;
    messages per second (mean and max over the minutes); the share of delta rows that hit one of
    the top 20 levels.
    """

    per_minute: pa.Table
    update_frequency_by_level: pa.Table
    summary: dict[str, float | int | None] = field(default_factory=dict)


# --- decimals to floats ---------------------------------------------------------------------


def _chunks(column: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def _words_to_float(low: np.ndarray, high: np.ndarray, scale: int) -> np.ndarray:
    """128-bit two's-complement integers at 10**-scale -> float64.

    With the low word read as signed, value = (high + carry) * 2**64 + low: exact up to the
    final rounding when it fits int64 (a 0.01 spread at 18 digits), within two ulps otherwise.
    """
    signed_low = low.view(np.int64)
    high_part = high + (signed_low < 0)
    values = high_part.astype(np.float64)
    values *= 2.0**64
    values += signed_low
    values /= 10.0**scale
    return values


def _decimal_words(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    words = np.frombuffer(chunk.buffers()[1], dtype=np.int64)
    words = words[2 * chunk.offset : 2 * (chunk.offset + len(chunk))].reshape(-1, 2)
    return words[:, 0].view(np.uint64), words[:, 1]


def _null_mask(chunk: pa.Array) -> np.ndarray:
    if chunk.null_count == 0:
        return np.zeros(len(chunk), dtype=bool)
    return chunk.is_null().to_numpy(zero_copy_only=False)


_POWERS_OF_TEN = 10.0 ** np.arange(23)  # exact in float64 up to 10**22
_POWERS_OF_TEN_MOD_2_64 = np.array([10**k % 2**64 for k in range(39)], dtype=np.uint64)


def _correctly_rounded(values: np.ndarray, low: np.ndarray, scale: int) -> np.ndarray:
    """The nearest float to each decimal that has at most ~15 significant digits.

    Per value, d digits keep |value| * 10**d below 2**49, where the two-ulp error of the float
    is under a quarter unit: n = rint(value * 10**d) is then the decimal's own integer whenever
    the decimal has at most d digits, which n * 10**(scale - d) equal to the low word modulo
    2**64 confirms. n / 10**d (both exact) is a single correctly rounded division.
    """
    finite = np.isfinite(values) & (values != 0)
    _, exponent = np.frexp(np.where(finite, values, 1.0))  # |value| < 2**exponent
    digits = np.floor((49 - exponent) * np.log10(2.0)).astype(np.int64)
    usable = finite & (digits >= 0)
    digits = np.clip(digits, 0, min(scale, len(_POWERS_OF_TEN) - 1))
    power = _POWERS_OF_TEN[digits]
    steps = np.rint(np.where(usable, values, 0.0) * power)
    check = steps.astype(np.int64).view(np.uint64) * _POWERS_OF_TEN_MOD_2_64[scale - digits]
    exact = usable & (check == low)
    return np.where(exact, steps / power, values)


def to_float(
    column: pa.ChunkedArray | pa.Array, null: float = np.nan, correctly_rounded: bool = False
) -> np.ndarray:
    """A decimal (or any numeric) column as float64, nulls as `null`.

    decimal128 is read from its buffers: a pyarrow cast costs ~50 ns a value, too slow for the
    110 million book and delta values of a full day. The result is within two ulps of the
    decimal (the same float for the same decimal, so equality tests hold); `correctly_rounded`
    makes it the nearest float, as a cast would, at about twice the cost.
    """
    chunks = [chunk for chunk in _chunks(column) if len(chunk)]
    if not chunks:
        return np.zeros(0, dtype=np.float64)
    if pa.types.is_decimal128(chunks[0].type):
        # One pass over the column, not one per Parquet row group.
        array = pa.chunked_array(chunks).combine_chunks() if len(chunks) > 1 else chunks[0]
        low, high = _decimal_words(array)
        values = _words_to_float(low, high, array.type.scale)
        mask = _null_mask(array)
        if correctly_rounded:
            values[mask] = np.nan
            values = _correctly_rounded(values, low, array.type.scale)
    else:
        array = pa.chunked_array(chunks)
        values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        mask = array.is_null().to_numpy(zero_copy_only=False)
    if mask.any():
        values[mask] = null
    return values


def decimal_difference(
    left: pa.ChunkedArray | pa.Array, right: pa.ChunkedArray | pa.Array
) -> np.ndarray:
    """left - right as float64 (NaN where either is null), exact on the decimals first.

    A spread of 0.01 is then the float 0.01, not 61686.0 - 61685.99 = 0.01000000000218.
    """
    if not (
        pa.types.is_decimal128(left.type)
        and pa.types.is_decimal128(right.type)
        and left.type.scale == right.type.scale
    ):
        return to_float(left) - to_float(right)
    left_array, right_array = (
        array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
        for array in (left, right)
    )
    if len(left_array) == 0:
        return np.zeros(0, dtype=np.float64)
    left_low, left_high = _decimal_words(left_array)
    right_low, right_high = _decimal_words(right_array)
    low = left_low - right_low  # wraps modulo 2**64, the borrow goes to the high word
    high = left_high - right_high - (left_low < right_low).astype(np.int64)
    values = _words_to_float(low, high, left.type.scale)
    values[_null_mask(left_array) | _null_mask(right_array)] = np.nan
    return values


# --- times and minutes -------------------------------------------------------------------
# --- times and minutes -------------------------------------------------------------------


def _event_times(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """origin_time, received_time where origin_time is null or not positive."""
    origin = batch["origin_time"] if isinstance(batch, pa.Table) else batch.column("origin_time")
    received = (
        batch["received_time"] if isinstance(batch, pa.Table) else batch.column("received_time")
    )
    valid = pc.fill_null(pc.greater(origin, 0), False)
    times = pc.fill_null(pc.if_else(valid, origin, received), 0)
    return times.to_numpy().astype(np.int64, copy=False)


class _Monotone:
    """Times made non-decreasing across batches (a running maximum carried between them)."""

    def __init__(self) -> None:
        self._latest = np.iinfo(np.int64).min

    def __call__(self, times: np.ndarray) -> np.ndarray:
        if times.size == 0:
            return times
        times = np.maximum.accumulate(np.maximum(times, self._latest))
        self._latest = int(times[-1])
        return times


class _Counts:
    """Counts (or sums) per minute, merged batch by batch; at most a day's minutes are held."""

    def __init__(self) -> None:
        self.minutes = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.int64)

    def add(self, minutes: np.ndarray, weights: np.ndarray | None = None) -> None:
        if minutes.size == 0:
            return
        weights = np.ones(minutes.size, np.int64) if weights is None else weights
        merged, inverse = np.unique(np.concatenate([self.minutes, minutes]), return_inverse=True)
        counts = np.bincount(inverse, np.concatenate([self.counts, weights]), len(merged))
        self.minutes, self.counts = merged, counts.astype(np.int64)

    def on(self, minutes: np.ndarray) -> np.ndarray:
        """The counts on the output minutes (0 where none)."""
        counts = np.zeros(minutes.size, np.int64)
        counts[np.searchsorted(minutes, self.minutes)] = self.counts
        return counts


# Columns read per input. Every book level is read (depth, imbalance, levels and the delta
# lookups use all 20 on both sides); the wide book's other columns are not.
TIME_COLUMNS = ["origin_time", "received_time"]
BOOK_COLUMNS = [*TIME_COLUMNS, "sequence_number", *book_level_columns()]
DELTA_COLUMNS = [*TIME_COLUMNS, "sequence_number", "side_is_bid", "price"]
TRADE_COLUMNS = TIME_COLUMNS
_SPREAD_COLUMNS = [*TIME_COLUMNS, "bid_0_price", "ask_0_price"]

# A source reads the named columns of an input as record batches, in its stored order; it is
# called once per pass.
BatchSource = Callable[[list[str]], Iterable[pa.RecordBatch]]


@dataclass
class _Day:
    """What the first pass over the time columns finds: the output minutes and their counts."""

    minutes: np.ndarray
    messages: np.ndarray  # book rows per minute
    delta_messages: np.ndarray
    delta_rows: np.ndarray
    trades: np.ndarray
    book_rows: int
    delta_row_count: int


def _count_minutes(book: BatchSource, deltas: BatchSource, trades: BatchSource) -> _Day:
    book_minutes, message_minutes, row_minutes, trade_minutes = (_Counts() for _ in range(4))
    book_rows = delta_rows = 0
    book_times = _Monotone()
    for batch in book(TIME_COLUMNS):
        book_minutes.add(book_times(_event_times(batch)) // NS_PER_MINUTE)
        book_rows += batch.num_rows
    message_times = _Monotone()
    previous_sequence, previous_minute = None, None
    for batch in deltas([*TIME_COLUMNS, "sequence_number"]):
        if batch.num_rows == 0:
            continue
        sequence = pc.fill_null(batch.column("sequence_number"), -1).to_numpy()
        starts = np.flatnonzero(sequence[1:] != sequence[:-1]) + 1
        continues = previous_sequence is not None and sequence[0] == previous_sequence
        if continues:  # the first rows finish the previous batch's last message
            row_minutes.add(
                np.array([previous_minute]), np.array([starts[0] if starts.size else sequence.size])
            )
        else:
            starts = np.concatenate([[0], starts])
        if starts.size:
            minute = message_times(_event_times(batch.take(pa.array(starts)))) // NS_PER_MINUTE
            lengths = np.diff(np.append(starts, sequence.size))
            message_minutes.add(minute)
            row_minutes.add(minute, lengths)
            previous_minute = int(minute[-1])
        previous_sequence = sequence[-1]
        delta_rows += batch.num_rows
    for batch in trades(TIME_COLUMNS):
        trade_minutes.add(_event_times(batch) // NS_PER_MINUTE)
    minutes = np.union1d(
        np.union1d(book_minutes.minutes, message_minutes.minutes), trade_minutes.minutes
    ).astype(np.int64)
    return _Day(
        minutes,
        book_minutes.on(minutes),
        message_minutes.on(minutes),
        row_minutes.on(minutes),
        trade_minutes.on(minutes),
        book_rows,
        delta_rows,
    )


# --- grouped statistics (groups are output minutes) ----------------------------------------


def _weighted_quantile(values, weights, groups, n_groups, q: float, offset: int = 0):
    """Per group, the smallest value whose cumulative weight reaches q of the group's weight.

    Weights are integer nanoseconds, so the cumulative sums are exact. `offset` is the weight of
    the groups before these (earlier batches): the targets are compared as the whole day's
    cumulative sums would be, so the same floats decide.
    """
    ok = np.isfinite(values) & (weights > 0)
    values, weights, groups = values[ok], weights[ok], groups[ok]
    result = np.full(n_groups, np.nan)
    if values.size == 0:
        return result
    order = np.lexsort((values, groups))
    values, weights, groups = values[order], weights[order], groups[order]
    cumulative = offset + np.cumsum(weights)
    totals = np.bincount(groups, weights, minlength=n_groups)
    before = offset + (np.cumsum(totals) - totals)
    present = np.flatnonzero(totals > 0)
    target = before[present] + q * totals[present]
    index = np.searchsorted(cumulative, target, side="left")
    first = np.searchsorted(groups, present, side="left")
    last = np.searchsorted(groups, present, side="right") - 1
    result[present] = values[np.clip(index, first, last)]
    return result


class _MinuteQuantile:
    """A per-minute weighted quantile of segments that arrive in minute order: the minute still
    open at the end of a batch waits for the next (a minute holds ~600 book rows at full scale)."""

    def __init__(self, n: int, q: float) -> None:
        self.q = q
        self.result = np.full(n, np.nan)
        self._before = 0  # weight of the finished minutes
        self._open = (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))

    def update(self, values, weights, groups, final: bool = False) -> None:
        ok = np.isfinite(values) & (weights > 0)
        values, weights, groups = (
            np.concatenate([held, new[ok]])
            for held, new in zip(self._open, (values, weights, groups), strict=True)
        )
        if values.size == 0:
            return
        finished = groups < groups[-1] if not final else np.ones(groups.size, bool)
        self._open = (values[~finished], weights[~finished], groups[~finished])
        if not finished.any():
            return
        values, weights, groups = values[finished], weights[finished], groups[finished]
        first_group = int(groups[0])
        local = groups - first_group
        n_local = int(local[-1]) + 1
        quantile = _weighted_quantile(values, weights, local, n_local, self.q, self._before)
        present = np.unique(local)
        self.result[present + first_group] = quantile[present]
        self._before += int(weights.sum())


class _Sums:
    """Per-minute sums added in segment order (np.add.at adds in index order, as np.bincount
    does), so a minute's float sum is the one a single pass over the day gives."""

    def __init__(self, n: int) -> None:
        self.values = np.zeros(n)

    def add(self, groups: np.ndarray, values: np.ndarray) -> None:
        np.add.at(self.values, groups, values)


class _WeightedMean:
    def __init__(self, n: int) -> None:
        self.totals, self.sums = _Sums(n), _Sums(n)

    def add(self, values, weights, groups) -> None:
        ok = np.isfinite(values) & (weights > 0)
        self.totals.add(groups[ok], weights[ok])
        self.sums.add(groups[ok], weights[ok] * values[ok])

    def means(self) -> np.ndarray:
        totals, sums = self.totals.values, self.sums.values
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, sums / np.where(totals > 0, totals, 1), np.nan)


class _FirstLast:
    """First and last finite value per minute."""

    def __init__(self, n: int) -> None:
        self.first, self.last = np.full(n, np.nan), np.full(n, np.nan)

    def add(self, values, groups) -> None:
        ok = np.isfinite(values)
        values, groups = values[ok], groups[ok]
        if values.size == 0:
            return
        present, starts = np.unique(groups, return_index=True)
        ends = np.append(starts[1:], values.size) - 1
        unset = np.isnan(self.first[present])
        self.first[present[unset]] = values[starts[unset]]
        self.last[present] = values[ends]


# --- the book ------------------------------------------------------------------------------


@dataclass
class _Book:
    """A batch of book rows, after the last row of the batch before (`carried`, 0 or 1 row),
    which is where its first segment starts and the book its first messages were applied to."""

    carried: int
    times: np.ndarray  # int64 ns, non-decreasing over the day
    sequence: np.ndarray
    bid_prices: np.ndarray  # (rows, 20) float64, NaN where the side is shallower
    bid_sizes: np.ndarray  # (rows, 20), 0 where absent
    ask_prices: np.ndarray
    ask_sizes: np.ndarray
    spread: np.ndarray  # price units; NaN unless both sides have a level
    mid: np.ndarray  # from the correctly rounded best prices, so it prints as the decimal would

    @property
    def rows(self) -> int:
        return int(self.times.size)


def matrix(batch: pa.RecordBatch, side: str, kind: str, null: float) -> np.ndarray:
    """(rows, 20). Prices are made row-major, so the 20 levels of one book row sit together for
    the delta lookups; sizes, only summed and compared, stay a column-major view (summed level
    by level in order, whatever the batch's length)."""
    columns = np.empty((BOOK_LEVELS, batch.num_rows), dtype=np.float64)
    for level in range(BOOK_LEVELS):
        columns[level] = to_float(batch.column(f"{side}_{level}_{kind}"), null)
    return np.ascontiguousarray(columns.T) if kind == "price" else columns.T


def _best(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """Spread and mid of each row."""
    bid, ask = batch.column("bid_0_price"), batch.column("ask_0_price")
    mid = (to_float(bid, correctly_rounded=True) + to_float(ask, correctly_rounded=True)) / 2.0
    return decimal_difference(ask, bid), mid


def _read_book(batch: pa.RecordBatch, times: np.ndarray, full: bool) -> _Book:
    """The batch's rows; without `full` only the times and best prices (spread, mid)."""
    spread, mid = _best(batch)
    empty = np.zeros((batch.num_rows, 0))
    return _Book(
        carried=0,
        times=times,
        sequence=(
            pc.fill_null(batch.column("sequence_number"), -1).to_numpy().astype(np.int64)
            if full
            else np.zeros(0, np.int64)
        ),
        bid_prices=matrix(batch, "bid", "price", np.nan) if full else empty,
        bid_sizes=matrix(batch, "bid", "size", 0.0) if full else empty,
        ask_prices=matrix(batch, "ask", "price", np.nan) if full else empty,
        ask_sizes=matrix(batch, "ask", "size", 0.0) if full else empty,
        spread=spread,
        mid=mid,
    )


# The per-row arrays of a `_Book` (a batch is cut or joined by cutting or joining each).
_BOOK_ARRAYS = (
    "times",
    "sequence",
    "bid_prices",
    "bid_sizes",
    "ask_prices",
    "ask_sizes",
    "spread",
    "mid",
)


def _after(previous: _Book | None, book: _Book) -> _Book:
    """`book` with the last row of `previous` put before it."""
    if previous is None or previous.rows == 0:
        return book
    parts = {}
    for name in _BOOK_ARRAYS:
        before, after = getattr(previous, name), getattr(book, name)
        parts[name] = np.concatenate([before[-1:], after]) if before.size else after
    for name in ("bid_sizes", "ask_sizes"):  # column-major, as `matrix` makes them
        parts[name] = np.asfortranarray(parts[name])
    return _Book(carried=1, **parts)


def _row_stats(state: _Book) -> dict[str, np.ndarray]:
    """Per book row: the quantities the per-minute statistics summarize."""
    mid = state.mid  # NaN unless both sides have a best level
    stats = {"spread": state.spread, "mid": mid}
    with np.errstate(invalid="ignore", divide="ignore"):
        stats["spread_bps"] = state.spread / mid * 1e4
        if state.bid_sizes.shape[1] == 0:  # only the best prices were read
            return stats
        for name, depth in (("l1", 1), ("top5", 5), ("top20", BOOK_LEVELS)):
            bids = state.bid_sizes[:, :depth].sum(axis=1)
            asks = state.ask_sizes[:, :depth].sum(axis=1)
            total = bids + asks
            stats[f"imbalance_{name}"] = np.where(total > 0, (bids - asks) / total, np.nan)
    stats["depth_bid"] = state.bid_sizes.sum(axis=1)
    stats["depth_ask"] = state.ask_sizes.sum(axis=1)
    stats["levels_bid"] = (~np.isnan(state.bid_prices)).sum(axis=1).astype(np.float64)
    stats["levels_ask"] = (~np.isnan(state.ask_prices)).sum(axis=1).astype(np.float64)
    return stats


@dataclass
class _Segments:
    """Book states in force, cut at minute boundaries: which row (of the batch, carried row
    first), which output minute, how long."""

    row: np.ndarray
    group: np.ndarray  # index into the output minutes, non-decreasing
    weight: np.ndarray  # int64 ns


class _Cutter:
    """Each row holds until the next row. Cuts at the start and end of every output minute
    carry the row in force into it (from its start) and out of it (the time after a minute
    without data is dropped), so no segment spans two minutes.

    Fed the book's times batch by batch; a batch's last row stands into the next batch, so its
    segment is given with the next batch (or by `finish`)."""

    def __init__(self, minutes: np.ndarray) -> None:
        self.minutes = minutes
        self._cuts = np.union1d(minutes, minutes + 1) * NS_PER_MINUTE
        self._next_cut = 0
        self._pending: int | None = None  # start of the last row fed, its segment still open

    def _keep(self, start, row, is_row, end) -> _Segments:
        minute = start // NS_PER_MINUTE
        weight = end - start
        group = np.searchsorted(self.minutes, minute)
        last = self.minutes.size - 1
        in_output = (group <= last) & (self.minutes[np.minimum(group, max(last, 0))] == minute)
        keep = in_output & ((weight > 0) | (is_row == 1))
        return _Segments(row[keep], group[keep], weight[keep])

    def feed(self, times: np.ndarray, carried: int) -> _Segments:
        """Segments of the rows before the batch's last and of the carried row (index 0 when
        `carried`), for `times` (the batch's own rows, after the carried one)."""
        if times.size == 0:
            return self._keep(*(np.zeros(0, np.int64) for _ in range(4)))
        if self._pending is None:  # the day's first row: cuts before it carry nothing
            self._next_cut = int(np.searchsorted(self._cuts, times[0], side="right"))
        # Cuts up to the batch's last time (a cut at a row's time goes before the row).
        stop = int(np.searchsorted(self._cuts, times[-1], side="right"))
        cuts = self._cuts[self._next_cut : stop]
        self._next_cut = stop
        # The row in force at a cut is the last one stamped strictly before it.
        in_force = np.searchsorted(times, cuts, side="left") - 1 + carried
        start = np.concatenate([times, cuts])
        row = np.concatenate([np.arange(times.size) + carried, in_force])
        is_row = np.concatenate([np.ones(times.size, np.int8), np.zeros(cuts.size, np.int8)])
        order = np.lexsort((is_row, start))  # stable: rows of equal time keep sequence order
        start, row, is_row = start[order], row[order], is_row[order]
        if self._pending is not None:
            start = np.concatenate([[self._pending], start])
            row = np.concatenate([[0], row])
            is_row = np.concatenate([[1], is_row])
        self._pending = int(start[-1])
        return self._keep(start[:-1], row[:-1], is_row[:-1], start[1:])

    def finish(self) -> _Segments:
        """The last row's segment, and the cuts after it (the last row, index 0, in force)."""
        if self._pending is None:
            return self._keep(*(np.zeros(0, np.int64) for _ in range(4)))
        cuts = self._cuts[self._next_cut :]
        start = np.concatenate([[self._pending], cuts])
        row = np.zeros(start.size, np.int64)
        is_row = np.concatenate([[1], np.zeros(cuts.size, np.int8)])
        end = np.append(start[1:], (start[-1] // NS_PER_MINUTE + 1) * NS_PER_MINUTE)
        return self._keep(start, row, is_row, end)


class _MinuteBookStats:
    """The book columns of `per_minute` (NaN where a minute had no book) and the day's
    time-weighted figures, accumulated segment batch by segment batch in day order."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.means = {name: _WeightedMean(n) for name in _MEAN_STATS}
        self.medians = {name: _MinuteQuantile(n, 0.5) for name in ("spread", "spread_bps")}
        self.maxima = {name: np.full(n, np.nan) for name in _MAX_STATS}
        self.minima = {name: np.full(n, np.nan) for name in ("depth_bid", "depth_ask")}
        self.mid = _FirstLast(n)
        self.book_seconds = _Sums(n)
        self.day_means = {name: _WeightedMean(1) for name in _DAY_MEAN_STATS}
        self.day_spread_bps_max = np.full(1, np.nan)
        self.day_quantiles = _day_quantiles()

    def add(self, stats: dict[str, np.ndarray], segments: _Segments, final: bool) -> None:
        group, weight = segments.group, segments.weight
        weight_float = weight.astype(np.float64)
        values = {name: array[segments.row] for name, array in stats.items()}
        for name, mean in self.means.items():
            mean.add(values[name], weight_float, group)
        for name, median in self.medians.items():
            median.update(values[name], weight, group, final)
        for name, maximum in self.maxima.items():
            np.fmax.at(maximum, group, values[name])
        for name, minimum in self.minima.items():
            np.fmin.at(minimum, group, values[name])
        self.mid.add(values["mid"], group)
        self.book_seconds.add(group, weight_float)
        day = np.zeros(group.size, np.int64)  # the whole day is one group
        for name, mean in self.day_means.items():
            mean.add(values[name], weight_float, day)
        np.fmax.at(self.day_spread_bps_max, day, values["spread_bps"])
        _feed_day_quantiles(self.day_quantiles, values, weight)

    def columns(self) -> dict[str, np.ndarray]:
        columns = {f"{name}_mean": mean.means() for name, mean in self.means.items()}
        columns.update({f"{name}_p50": q.result for name, q in self.medians.items()})
        columns.update({f"{name}_max": v for name, v in self.maxima.items()})
        columns.update({f"{name}_min": v for name, v in self.minima.items()})
        columns["mid_open"], columns["mid_close"] = self.mid.first, self.mid.last
        columns["book_seconds"] = self.book_seconds.values / 1e9
        return columns


_MEAN_STATS = (
    "spread",
    "spread_bps",
    "imbalance_l1",
    "imbalance_top5",
    "imbalance_top20",
    "depth_bid",
    "depth_ask",
    "levels_bid",
    "levels_ask",
)
_MAX_STATS = ("spread", "spread_bps", "depth_bid", "depth_ask")
_DAY_MEAN_STATS = _MEAN_STATS[:7]
# Day quantiles: (statistic, quantiles). Exact, over the day's segments, in passes.
_DAY_QUANTILES = (
    ("spread", (0.5,)),
    ("spread_bps", (0.5, 0.99)),
    ("levels_bid", (0.5,)),
    ("levels_ask", (0.5,)),
)


def _day_quantiles() -> dict[str, ExactQuantiles]:
    return {name: ExactQuantiles(qs, weighted=True) for name, qs in _DAY_QUANTILES}


def _feed_day_quantiles(quantiles: dict[str, ExactQuantiles], values, weight) -> None:
    for name, estimator in quantiles.items():
        if estimator.done or name not in values:
            continue
        ok = np.isfinite(values[name]) & (weight > 0)
        estimator.update(values[name][ok], weight[ok])


def _level_changes(state: _Book) -> dict[str, np.ndarray]:
    """Per side and level: consecutive row pairs where the level's price or size differs."""
    changes = {}
    for side, prices, sizes in (
        ("BID", state.bid_prices, state.bid_sizes),
        ("ASK", state.ask_prices, state.ask_sizes),
    ):
        if state.rows < 2:
            changes[side] = np.zeros(BOOK_LEVELS, dtype=np.int64)
            continue
        before, after = prices[:-1], prices[1:]
        same_price = (before == after) | (np.isnan(before) & np.isnan(after))
        changed = ~same_price | (sizes[:-1] != sizes[1:])
        changes[side] = changed.sum(axis=0).astype(np.int64)
    return changes


# --- deltas against the book before their message ------------------------------------------


def _lower_bound(matrix: np.ndarray, rows: np.ndarray, prices: np.ndarray, bids: bool):
    """Per delta: how many levels of its book row are better than its price (a branchless binary
    search over the 20 sorted levels), as a level or bucket code. Absent levels (NaN) compare
    as worst on either side."""
    flat = matrix.reshape(-1)
    index_type = np.int32 if flat.size < 2**31 else np.int64  # halves the memory traffic
    base = rows.astype(index_type) * index_type(BOOK_LEVELS)
    better_than = np.greater if bids else np.less
    count = np.zeros(rows.size, dtype=index_type)
    last = index_type(BOOK_LEVELS - 1)
    for step in (16, 8, 4, 2, 1):
        # Probe level count + step - 1; past level 19 the probe stays at 19, and a level 19
        # better than the price then moves the count past 20: that is "deeper".
        probe = np.minimum(count + index_type(step - 1), last)
        probe += base
        count += better_than(np.take(flat, probe), prices).astype(index_type) * index_type(step)
    probe = np.minimum(count, last)
    probe += base
    matched = (count < BOOK_LEVELS) & (np.take(flat, probe) == prices)
    return np.where(matched, count, np.where(count >= BOOK_LEVELS, _DEEPER_CODE, _NEW_CODE))


class _DeltaLevels:
    """Counts (2 sides x _CODES): delta rows by the level of the book before their message.

    The deltas (sorted by sequence number) are read alongside the book (one row per message,
    in sequence order): a delta row is counted once the book batch holding its message's row
    is in hand, against the row before that one (the batch's carried row for its first)."""

    def __init__(self, deltas: Iterable[pa.RecordBatch]) -> None:
        self.counts = np.zeros((2, _CODES), dtype=np.int64)
        self._batches: Iterator[pa.RecordBatch] | None = iter(deltas)
        self._held: pa.RecordBatch | None = None  # delta rows past the book read so far
        self._last_sequence = np.iinfo(np.int64).min  # of the rows counted so far

    def _pending(self) -> Iterator[pa.RecordBatch]:
        if self._held is not None:
            held, self._held = self._held, None
            yield held
        while self._batches is not None:
            batch = next(self._batches, None)
            if batch is None:  # exhausted: not read again (a Parquet reader may not allow it)
                self._batches = None
                return
            yield batch

    def count_through(self, book: _Book | None) -> None:
        """Count the delta rows up to the last message of `book` (every one left, if None)."""
        bound = np.iinfo(np.int64).max if book is None or book.rows == 0 else book.sequence[-1]
        for batch in self._pending():
            sequence = pc.fill_null(batch.column("sequence_number"), -1).to_numpy()
            if sequence.size == 0:
                continue
            if sequence[0] < self._last_sequence or np.any(sequence[1:] < sequence[:-1]):
                raise ValueError("raw_book_deltas must be sorted by sequence_number")
            take = int(np.searchsorted(sequence, bound, side="right"))
            if take:
                self._last_sequence = int(sequence[take - 1])
            if take < sequence.size:
                self._held = batch.slice(take)
            if take:
                self._count(batch.slice(0, take), sequence[:take], book)
            if take < sequence.size:
                return

    def _count(self, batch: pa.RecordBatch, sequence: np.ndarray, book: _Book | None) -> None:
        starts = np.concatenate([[0], np.flatnonzero(sequence[1:] != sequence[:-1]) + 1])
        prior = _prior_rows(book, sequence[starts])
        row_prior = np.repeat(prior, np.diff(np.append(starts, sequence.size)))
        bid = pc.fill_null(batch.column("side_is_bid"), False).to_numpy(zero_copy_only=False)
        price = to_float(batch.column("price"))
        for side, bids in ((0, True), (1, False)):
            matrix = None if book is None else (book.bid_prices if bids else book.ask_prices)
            on_side = bid if bids else ~bid
            self.counts[side, _NO_PRIOR_CODE] += int((on_side & (row_prior < 0)).sum())
            take = on_side & (row_prior >= 0)
            if take.any():
                codes = _lower_bound(matrix, row_prior[take], price[take], bids)
                self.counts[side] += np.bincount(codes, minlength=_CODES)


def _prior_rows(book: _Book | None, message_sequence: np.ndarray) -> np.ndarray:
    """Per message: the row (of the batch, carried first) before the first row of the same
    sequence number among the batch's own rows (the book it was applied to), -1 if none (no
    such row, or the day's first row)."""
    if book is None or book.rows == book.carried:
        return np.full(message_sequence.size, -1, dtype=np.int64)
    own = book.sequence[book.carried :]
    position = np.minimum(np.searchsorted(own, message_sequence), own.size - 1)
    found = own[position] == message_sequence
    row = position + book.carried
    return np.where(found & (row > 0), row - 1, -1)


def _frequency_table(changes: dict, delta_counts: np.ndarray, book_rows: int) -> pa.Table:
    pairs = book_rows - 1
    total_deltas = int(delta_counts.sum())
    sides, levels, buckets, change_counts, delta_rows = [], [], [], [], []
    extra = ((NEW_PRICE, _NEW_CODE), (DEEPER, _DEEPER_CODE), (NO_PRIOR_BOOK, _NO_PRIOR_CODE))
    for index, side in enumerate(SIDES):
        for level in range(BOOK_LEVELS):
            sides.append(side)
            levels.append(level)
            buckets.append(LEVEL)
            change_counts.append(int(changes[side][level]))
            delta_rows.append(int(delta_counts[index, level]))
        for bucket, code in extra:
            sides.append(side)
            levels.append(None)
            buckets.append(bucket)
            change_counts.append(None)
            delta_rows.append(int(delta_counts[index, code]))
    change_share = [
        None if count is None or pairs < 1 else count / pairs for count in change_counts
    ]
    delta_share = [count / total_deltas if total_deltas else None for count in delta_rows]
    return pa.Table.from_arrays(
        [
            pa.array(sides, pa.string()),
            pa.array(levels, pa.int32()),
            pa.array(buckets, pa.string()),
            pa.array(change_counts, pa.int64()),
            pa.array(change_share, pa.float64()),
            pa.array(delta_rows, pa.int64()),
            pa.array(delta_share, pa.float64()),
        ],
        schema=UPDATE_FREQUENCY_SCHEMA,
    )


@dataclass
class _BookStep:
    book: _Book  # a batch after its carried row
    stats: dict[str, np.ndarray]  # per row of `book`
    segments: _Segments
    final: bool  # the last step: the day's last row and the cuts after it


def _rows_from(book: _Book, start: int) -> _Book:
    return _Book(
        carried=max(book.carried - start, 0),
        **{name: getattr(book, name)[start:] for name in _BOOK_ARRAYS},
    )


def _book_steps(
    source: BatchSource, columns: list[str], minutes: np.ndarray, full: bool
) -> Iterator[_BookStep]:
    """The book batch by batch, each after the last row of the one before, with its segments."""
    cutter = _Cutter(minutes)
    monotone = _Monotone()
    previous: _Book | None = None
    for batch in source(columns):
        if batch.num_rows == 0:
            continue
        times = monotone(_event_times(batch))
        state = _after(previous, _read_book(batch, times, full))
        if full and np.any(state.sequence[1:] < state.sequence[:-1]):
            raise ValueError("reconstructed_book must be in sequence_number order")
        yield _BookStep(state, _row_stats(state), cutter.feed(times, state.carried), False)
        previous = state
    if previous is not None:
        last = _rows_from(previous, previous.rows - 1)
        last.carried = 1
        yield _BookStep(last, _row_stats(last), cutter.finish(), True)


# --- the day -------------------------------------------------------------------------------


def _float_column(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.float64(), mask=~np.isfinite(values))


def _nullable(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


BOOK_BATCH_ROWS = 1 << 15  # ~40 MB of decoded levels per batch (80 float64 columns and decimals)
DELTA_BATCH_ROWS = 1 << 20
TRADE_BATCH_ROWS = 1 << 20


def _table_source(table: pa.Table, batch_rows: int) -> BatchSource:
    def batches(columns: list[str]) -> Iterable[pa.RecordBatch]:
        selected = table.select([name for name in columns if name in table.column_names])
        return selected.to_batches(max_chunksize=batch_rows)

    return batches


def microstructure_metrics(
    book: pa.Table, deltas: pa.Table, trades: pa.Table, batch_rows: int | None = None
) -> MicrostructureResult:
    """`microstructure_metrics_batches` of whole tables (in batches of `batch_rows`)."""
    return microstructure_metrics_batches(
        _table_source(book, batch_rows or BOOK_BATCH_ROWS),
        _table_source(deltas, batch_rows or DELTA_BATCH_ROWS),
        _table_source(trades, batch_rows or TRADE_BATCH_ROWS),
    )


def microstructure_metrics_batches(
    book: BatchSource, deltas: BatchSource, trades: BatchSource
) -> MicrostructureResult:
    """Per-minute and day microstructure figures (see MicrostructureResult and the module doc),
    reading each input in batches, a few times, never whole.

    `book` is the reconstructed book (one row per delta message, sequence order), `deltas` the
    raw deltas (sorted by sequence_number), `trades` the raw trades. Passes: the time columns
    (the output minutes and their counts); the book with the deltas (every figure); then the
    book's times and best prices again until the day's exact spread quantiles are found
    (usually once)."""
    day = _count_minutes(book, deltas, trades)
    n = int(day.minutes.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(
            day.delta_messages > 0, day.trades / np.maximum(day.delta_messages, 1), np.nan
        )

    stats = _MinuteBookStats(n)
    changes = {side: np.zeros(BOOK_LEVELS, dtype=np.int64) for side in SIDES}
    delta_levels = _DeltaLevels(deltas(DELTA_COLUMNS))
    for step in _book_steps(book, BOOK_COLUMNS, day.minutes, full=True):
        for side, counts in _level_changes(step.book).items():
            changes[side] += counts
        delta_levels.count_through(step.book)
        stats.add(step.stats, step.segments, step.final)
    delta_levels.count_through(None)
    quantiles = stats.day_quantiles
    for estimator in quantiles.values():
        estimator.end_pass()
    while not all(estimator.done for estimator in quantiles.values()):
        # The spreads need only the best prices; the levels (resolved in the first pass unless
        # the histograms are made tiny) every level.
        full = not (quantiles["levels_bid"].done and quantiles["levels_ask"].done)
        columns = BOOK_COLUMNS if full else _SPREAD_COLUMNS
        for step in _book_steps(book, columns, day.minutes, full=full):
            values = {name: array[step.segments.row] for name, array in step.stats.items()}
            _feed_day_quantiles(quantiles, values, step.segments.weight)
        for estimator in quantiles.values():
            estimator.end_pass()

    book_columns = stats.columns()
    per_minute = pa.Table.from_arrays(
        [
            pa.array(day.minutes * NS_PER_MINUTE, pa.int64()),
            pa.array(day.messages, pa.int64()),
            pa.array(day.delta_messages, pa.int64()),
            pa.array(day.delta_rows, pa.int64()),
            pa.array(day.trades, pa.int64()),
            _float_column(ratio),
            pa.array(book_columns["book_seconds"], pa.float64()),
        ]
        + [_float_column(book_columns[name]) for name in _FLOAT_STATS],
        schema=PER_MINUTE_SCHEMA,
    )
    frequency = _frequency_table(changes, delta_levels.counts, day.book_rows)
    summary = _summary(stats, per_minute, delta_levels.counts)
    return MicrostructureResult(per_minute, frequency, summary)


def _summary(
    stats: _MinuteBookStats, per_minute: pa.Table, delta_counts: np.ndarray
) -> dict[str, float | int | None]:
    """Day figures, time-weighted over the minutes of `per_minute` like the minute figures."""
    total_messages = int(pc.sum(per_minute["delta_messages"]).as_py() or 0)
    total_trades = int(pc.sum(per_minute["trades"]).as_py() or 0)
    total_rows = int(pc.sum(per_minute["delta_rows"]).as_py() or 0)

    def mean(name: str) -> float | None:
        return _nullable(stats.day_means[name].means()[0])

    def quantile(name: str, q: float) -> float | None:
        estimator = stats.day_quantiles[name]
        values = estimator.values()
        if values is None:
            return None
        return _nullable(values[list(dict(_DAY_QUANTILES)[name]).index(q)])

    per_second = per_minute["messages"].to_numpy() / 60.0
    matched = int(delta_counts[:, :BOOK_LEVELS].sum())
    all_deltas = int(delta_counts.sum())
    return {
        "minutes": per_minute.num_rows,
        "messages": int(pc.sum(per_minute["messages"]).as_py() or 0),
        "delta_messages": total_messages,
        "delta_rows": total_rows,
        "trades": total_trades,
        "trade_to_book_ratio": total_trades / total_messages if total_messages else None,
        "trade_to_delta_row_ratio": total_trades / total_rows if total_rows else None,
        "spread_mean": mean("spread"),
        "spread_p50": quantile("spread", 0.5),
        "spread_bps_mean": mean("spread_bps"),
        "spread_bps_p50": quantile("spread_bps", 0.5),
        "spread_bps_p99": quantile("spread_bps", 0.99),
        "spread_bps_max": _nullable(stats.day_spread_bps_max[0]),
        "imbalance_l1_mean": mean("imbalance_l1"),
        "imbalance_top5_mean": mean("imbalance_top5"),
        "imbalance_top20_mean": mean("imbalance_top20"),
        "depth_bid_mean": mean("depth_bid"),
        "depth_ask_mean": mean("depth_ask"),
        "levels_bid_p50": quantile("levels_bid", 0.5),
        "levels_ask_p50": quantile("levels_ask", 0.5),
        "messages_per_second_mean": float(per_second.mean()) if per_second.size else None,
        "messages_per_second_max": float(per_second.max()) if per_second.size else None,
        "delta_rows_at_top20_level_share": matched / all_deltas if all_deltas else None,
    }
