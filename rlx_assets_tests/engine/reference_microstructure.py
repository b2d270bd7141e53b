"""Reference: the whole-table engine before streaming, the oracle of the streamed one.
Microstructure figures of one day: per-minute book statistics, update frequency by level, and
day summaries, from the reconstructed book, the raw deltas and the raw trades.

Statistics are float64 (they are statistics, not prices). Book statistics are time-weighted: each
book row holds from its own time until the next row's (or the end of its minute), so a burst of
messages within one millisecond weighs no more than the book that then stood for ten seconds.
Means and medians use these weights; min and max range over every book published or standing
in the minute (a book replaced within the same nanosecond still counts there).
Times are origin_time (received_time where the vendor left it empty), made non-decreasing in
sequence order: a message stamped before its predecessor counts with its predecessor.

One file, over 450 lines: an oracle is kept whole, as it was, so that it stays independent of
the code it checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.schema import BOOK_LEVELS

NS_PER_MINUTE = 60 * 10**9
SIDES = ("BID", "ASK")
# Buckets of the delta-row table beyond levels 0..19.
NEW_PRICE = "new_price"  # a price not in the top 20 before the message, within their range
DEEPER = "deeper"  # worse than level 19 of a full top 20
NO_PRIOR_BOOK = "no_prior_book"  # the first published message, or one before the seed
LEVEL = "level"
_NEW_CODE, _DEEPER_CODE, _NO_PRIOR_CODE = BOOK_LEVELS, BOOK_LEVELS + 1, BOOK_LEVELS + 2
_CODES = BOOK_LEVELS + 3
# Delta rows per vectorized pass: bounds the temporaries on a 40-million-row day.
_CHUNK_ROWS = 1 << 20

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


def decimal_difference(left: pa.ChunkedArray, right: pa.ChunkedArray) -> np.ndarray:
    """left - right as float64 (NaN where either is null), exact on the decimals first.

    A spread of 0.01 is then the float 0.01, not 61686.0 - 61685.99 = 0.01000000000218.
    """
    if not (
        pa.types.is_decimal128(left.type)
        and pa.types.is_decimal128(right.type)
        and left.type.scale == right.type.scale
    ):
        return to_float(left) - to_float(right)
    left_array, right_array = left.combine_chunks(), right.combine_chunks()
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


def _event_times(table: pa.Table, rows: np.ndarray | None = None) -> np.ndarray:
    """origin_time, received_time where origin_time is null or not positive."""
    origin = table["origin_time"]
    received = table["received_time"]
    if rows is not None:
        origin, received = origin.take(pa.array(rows)), received.take(pa.array(rows))
    valid = pc.fill_null(pc.greater(origin, 0), False)
    times = pc.fill_null(pc.if_else(valid, origin, received), 0)
    return times.to_numpy().astype(np.int64, copy=False)


def _monotone(times: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(times) if times.size else times


def _unique_sorted(values: np.ndarray) -> np.ndarray:
    if values.size == 0 or np.all(values[1:] >= values[:-1]):
        keep = np.ones(values.size, dtype=bool)
        keep[1:] = values[1:] != values[:-1]
        return values[keep]
    return np.unique(values)


# --- grouped statistics (groups are output minutes) ----------------------------------------


def _weighted_mean(values, weights, groups, n_groups) -> np.ndarray:
    ok = np.isfinite(values) & (weights > 0)
    totals = np.bincount(groups[ok], weights[ok], minlength=n_groups)
    sums = np.bincount(groups[ok], weights[ok] * values[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, sums / np.where(totals > 0, totals, 1), np.nan)


def _weighted_quantile(values, weights, groups, n_groups, q: float) -> np.ndarray:
    """Per group, the smallest value whose cumulative weight reaches q of the group's weight.

    Weights are integer nanoseconds, so the cumulative sums are exact.
    """
    ok = np.isfinite(values) & (weights > 0)
    values, weights, groups = values[ok], weights[ok], groups[ok]
    result = np.full(n_groups, np.nan)
    if values.size == 0:
        return result
    order = np.lexsort((values, groups))
    values, weights, groups = values[order], weights[order], groups[order]
    cumulative = np.cumsum(weights)
    totals = np.bincount(groups, weights, minlength=n_groups)
    before = np.cumsum(totals) - totals
    present = np.flatnonzero(totals > 0)
    target = before[present] + q * totals[present]
    index = np.searchsorted(cumulative, target, side="left")
    first = np.searchsorted(groups, present, side="left")
    last = np.searchsorted(groups, present, side="right") - 1
    result[present] = values[np.clip(index, first, last)]
    return result


def _reduce_by_group(ufunc, values, groups, n_groups) -> np.ndarray:
    """fmin/fmax per group; `groups` must be non-decreasing."""
    result = np.full(n_groups, np.nan)
    if values.size == 0:
        return result
    present, starts = np.unique(groups, return_index=True)
    result[present] = ufunc.reduceat(values, starts)
    return result


def _first_last(values, groups, n_groups) -> tuple[np.ndarray, np.ndarray]:
    """First and last finite value per group; `groups` must be non-decreasing."""
    first, last = np.full(n_groups, np.nan), np.full(n_groups, np.nan)
    ok = np.isfinite(values)
    values, groups = values[ok], groups[ok]
    if values.size:
        present, starts = np.unique(groups, return_index=True)
        ends = np.append(starts[1:], values.size) - 1
        first[present], last[present] = values[starts], values[ends]
    return first, last


# --- the book ------------------------------------------------------------------------------


@dataclass
class PublishedBook:
    times: np.ndarray  # int64 ns, non-decreasing
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


def matrix(book: pa.Table, side: str, kind: str, null: float) -> np.ndarray:
    """(rows, 20). Prices are made row-major, so the 20 levels of one book row sit together for
    the delta lookups; sizes, only summed and compared, stay a column-major view."""
    columns = np.empty((BOOK_LEVELS, book.num_rows), dtype=np.float64)
    for level in range(BOOK_LEVELS):
        columns[level] = to_float(book[f"{side}_{level}_{kind}"], null)
    return np.ascontiguousarray(columns.T) if kind == "price" else columns.T


def _read_book(book: pa.Table) -> PublishedBook:
    rows = book.num_rows
    return PublishedBook(
        times=_monotone(_event_times(book)) if rows else np.zeros(0, np.int64),
        sequence=book["sequence_number"].to_numpy().astype(np.int64, copy=False),
        bid_prices=matrix(book, "bid", "price", np.nan),
        bid_sizes=matrix(book, "bid", "size", 0.0),
        ask_prices=matrix(book, "ask", "price", np.nan),
        ask_sizes=matrix(book, "ask", "size", 0.0),
        spread=decimal_difference(book["ask_0_price"], book["bid_0_price"]),
        mid=(
            to_float(book["bid_0_price"], correctly_rounded=True)
            + to_float(book["ask_0_price"], correctly_rounded=True)
        )
        / 2.0,
    )


def _row_stats(state: PublishedBook) -> dict[str, np.ndarray]:
    """Per book row: the quantities the per-minute statistics summarize."""
    mid = state.mid  # NaN unless both sides have a best level
    stats = {"spread": state.spread, "mid": mid}
    with np.errstate(invalid="ignore", divide="ignore"):
        stats["spread_bps"] = state.spread / mid * 1e4
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
    """Book states in force, cut at minute boundaries: which row, which output minute, how long."""

    row: np.ndarray
    group: np.ndarray  # index into the output minutes, non-decreasing
    weight: np.ndarray  # int64 ns


def _segments(times: np.ndarray, minutes: np.ndarray) -> _Segments:
    """Each row holds until the next row. Cuts at the start and end of every output minute
    carry the row in force into it (from its start) and out of it (the time after a minute
    without data is dropped), so no segment spans two minutes."""
    empty = _Segments(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    if times.size == 0:
        return empty
    cuts = np.union1d(minutes, minutes + 1) * NS_PER_MINUTE
    cuts = cuts[cuts > times[0]]
    # The row in force at a cut is the last one stamped strictly before it; a row stamped at the
    # cut itself follows the cut (the carried state then lasts 0 ns and is dropped).
    carried = np.searchsorted(times, cuts, side="left") - 1
    start = np.concatenate([times, cuts])
    row = np.concatenate([np.arange(times.size), carried])
    is_row = np.concatenate([np.ones(times.size, np.int8), np.zeros(cuts.size, np.int8)])
    order = np.lexsort((is_row, start))  # stable: rows of equal time keep sequence order
    start, row, is_row = start[order], row[order], is_row[order]
    minute = start // NS_PER_MINUTE
    end = np.append(start[1:], (minute[-1] + 1) * NS_PER_MINUTE)
    weight = end - start
    group = np.searchsorted(minutes, minute)
    in_output = (group < minutes.size) & (minutes[np.minimum(group, minutes.size - 1)] == minute)
    keep = in_output & ((weight > 0) | (is_row == 1))
    return _Segments(row[keep], group[keep], weight[keep])


def _minute_book_stats(
    stats: dict[str, np.ndarray], segments: _Segments, n: int
) -> dict[str, np.ndarray]:
    """The book columns of `per_minute` (length n, NaN where a minute had no book)."""
    columns: dict[str, np.ndarray] = {}
    group, weight = segments.group, segments.weight
    weight_float = weight.astype(np.float64)
    values = {name: array[segments.row] for name, array in stats.items()}
    for name in ("spread", "spread_bps"):
        columns[f"{name}_mean"] = _weighted_mean(values[name], weight_float, group, n)
        columns[f"{name}_p50"] = _weighted_quantile(values[name], weight, group, n, 0.5)
        columns[f"{name}_max"] = _reduce_by_group(np.fmax, values[name], group, n)
    columns["mid_open"], columns["mid_close"] = _first_last(values["mid"], group, n)
    for name in ("imbalance_l1", "imbalance_top5", "imbalance_top20"):
        columns[f"{name}_mean"] = _weighted_mean(values[name], weight_float, group, n)
    for side in ("bid", "ask"):
        depth = values[f"depth_{side}"]
        columns[f"depth_{side}_mean"] = _weighted_mean(depth, weight_float, group, n)
        columns[f"depth_{side}_min"] = _reduce_by_group(np.fmin, depth, group, n)
        columns[f"depth_{side}_max"] = _reduce_by_group(np.fmax, depth, group, n)
        levels = values[f"levels_{side}"]
        columns[f"levels_{side}_mean"] = _weighted_mean(levels, weight_float, group, n)
    columns["book_seconds"] = np.bincount(group, weight_float, minlength=n) / 1e9
    return columns


def changed_levels(state: PublishedBook) -> dict[str, np.ndarray]:
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


def _messages(sequence: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets of the delta messages (runs of equal sequence numbers, end appended) and
    their sequence numbers, chunk by chunk: a full day's column is never copied whole."""
    starts: list[np.ndarray] = []
    numbers: list[np.ndarray] = []
    offset, previous = 0, None
    for chunk in _chunks(sequence):
        if len(chunk) == 0:
            continue
        values = pc.fill_null(chunk, -1).to_numpy(zero_copy_only=False)
        new = np.flatnonzero(values[1:] != values[:-1]) + 1
        if previous is None or values[0] != previous:
            new = np.concatenate([[0], new])
        starts.append(new + offset)
        numbers.append(values[new])
        offset += values.size
        previous = values[-1]
    starts.append(np.array([offset]))
    numbers.append(np.zeros(0, np.int64))
    return np.concatenate(starts).astype(np.int64), np.concatenate(numbers).astype(np.int64)


def prior_rows(state: PublishedBook, message_sequence: np.ndarray) -> np.ndarray:
    """Per message: the book row before its own (the book it was applied to), -1 if none."""
    if state.rows == 0:
        return np.full(message_sequence.size, -1, dtype=np.int64)
    order = np.argsort(state.sequence, kind="stable")
    sorted_sequence = state.sequence[order]
    position = np.minimum(np.searchsorted(sorted_sequence, message_sequence), state.rows - 1)
    found = sorted_sequence[position] == message_sequence
    book_row = order[position]
    return np.where(found & (book_row > 0), book_row - 1, -1)


def _delta_levels(
    deltas: pa.Table, starts: np.ndarray, message_sequence: np.ndarray, state: PublishedBook
) -> np.ndarray:
    """Counts (2 sides x _CODES): delta rows by the level of the pre-message book they hit.

    Chunk by chunk, so a 40-million-row day needs no day-long temporaries."""
    counts = np.zeros((2, _CODES), dtype=np.int64)
    prior = prior_rows(state, message_sequence)
    rows = deltas.num_rows
    for begin in range(0, rows, _CHUNK_ROWS):
        end = min(begin + _CHUNK_ROWS, rows)
        first = int(np.searchsorted(starts, begin, side="right")) - 1
        stop = int(np.searchsorted(starts, end, side="left"))
        lengths = np.diff(np.clip(starts[first : stop + 1], begin, end))
        chunk_prior = np.repeat(prior[first:stop], lengths)
        chunk_bid = pc.fill_null(deltas["side_is_bid"].slice(begin, end - begin), False)
        chunk_bid = chunk_bid.to_numpy(zero_copy_only=False)
        chunk_price = to_float(deltas["price"].slice(begin, end - begin))
        for side, bids, matrix in ((0, True, state.bid_prices), (1, False, state.ask_prices)):
            on_side = chunk_bid if bids else ~chunk_bid
            counts[side, _NO_PRIOR_CODE] += int((on_side & (chunk_prior < 0)).sum())
            take = on_side & (chunk_prior >= 0)
            codes = _lower_bound(matrix, chunk_prior[take], chunk_price[take], bids)
            counts[side] += np.bincount(codes, minlength=_CODES)
    return counts


def frequency_table(changes: dict, delta_counts: np.ndarray, book_rows: int) -> pa.Table:
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


# --- the day -------------------------------------------------------------------------------


def _float_column(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.float64(), mask=~np.isfinite(values))


def _nullable(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def microstructure_metrics(
    book: pa.Table, deltas: pa.Table, trades: pa.Table
) -> MicrostructureResult:
    """Per-minute and day microstructure figures (see MicrostructureResult and the module doc).

    `book` is the reconstructed book (one row per delta message, sequence order), `deltas` the
    raw deltas (sorted by sequence_number), `trades` the raw trades.
    """
    state = _read_book(book)

    starts, message_sequence = _messages(deltas["sequence_number"])
    message_rows = np.diff(starts)
    message_times = (
        _monotone(_event_times(deltas, starts[:-1])) if message_rows.size else np.zeros(0, np.int64)
    )
    trade_times = _event_times(trades) if trades.num_rows else np.zeros(0, np.int64)

    book_minute = state.times // NS_PER_MINUTE
    message_minute = message_times // NS_PER_MINUTE
    trade_minute = trade_times // NS_PER_MINUTE
    minutes = np.union1d(
        np.union1d(_unique_sorted(book_minute), _unique_sorted(message_minute)),
        _unique_sorted(trade_minute),
    ).astype(np.int64)
    n = int(minutes.size)

    def per_minute_count(minute_of: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        counts = np.bincount(np.searchsorted(minutes, minute_of), weights, minlength=n)
        return counts.astype(np.int64)

    messages = per_minute_count(book_minute)
    delta_messages = per_minute_count(message_minute)
    delta_rows = per_minute_count(message_minute, message_rows.astype(np.float64))
    trade_counts = per_minute_count(trade_minute)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(delta_messages > 0, trade_counts / np.maximum(delta_messages, 1), np.nan)

    stats = _row_stats(state)
    segments = _segments(state.times, minutes)
    book_columns = _minute_book_stats(stats, segments, n)
    per_minute = pa.Table.from_arrays(
        [
            pa.array(minutes * NS_PER_MINUTE, pa.int64()),
            pa.array(messages, pa.int64()),
            pa.array(delta_messages, pa.int64()),
            pa.array(delta_rows, pa.int64()),
            pa.array(trade_counts, pa.int64()),
            _float_column(ratio),
            pa.array(book_columns["book_seconds"], pa.float64()),
        ]
        + [_float_column(book_columns[name]) for name in _FLOAT_STATS],
        schema=PER_MINUTE_SCHEMA,
    )

    delta_counts = _delta_levels(deltas, starts, message_sequence, state)
    frequency = frequency_table(changed_levels(state), delta_counts, state.rows)
    summary = _summary(stats, segments, per_minute, delta_counts)
    return MicrostructureResult(per_minute, frequency, summary)


def _summary(
    stats: dict[str, np.ndarray],
    segments: _Segments,
    per_minute: pa.Table,
    delta_counts: np.ndarray,
) -> dict[str, float | int | None]:
    """Day figures, time-weighted over the minutes of `per_minute` like the minute figures."""
    total_messages = int(pc.sum(per_minute["delta_messages"]).as_py() or 0)
    total_trades = int(pc.sum(per_minute["trades"]).as_py() or 0)
    total_rows = int(pc.sum(per_minute["delta_rows"]).as_py() or 0)
    group = np.zeros(segments.row.size, dtype=np.int64)  # the whole day is one group
    weight = segments.weight
    values = {name: array[segments.row] for name, array in stats.items()}

    def mean(name: str) -> float | None:
        return _nullable(_weighted_mean(values[name], weight.astype(np.float64), group, 1)[0])

    def quantile(name: str, q: float) -> float | None:
        return _nullable(_weighted_quantile(values[name], weight, group, 1, q)[0])

    def maximum(name: str) -> float | None:
        return _nullable(_reduce_by_group(np.fmax, values[name], group, 1)[0])

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
        "spread_bps_max": maximum("spread_bps"),
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
