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

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.book_rows import (
    DAY_QUANTILES,
    BatchSource,
    MinuteBookStats,
    book_steps,
    feed_day_quantiles,
)
from rlx_assets.engine.days import NS_PER_MINUTE
from rlx_assets.engine.grouped_stats import Counts, Monotone
from rlx_assets.engine.level_changes import (
    SIDES,
    DeltaLevels,
    changed_levels,
    frequency_table,
)
from rlx_assets.schema import BOOK_LEVELS, book_level_columns, event_time_ns

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


# --- times and minutes -------------------------------------------------------------------


# Columns read per input. Every book level is read (depth, imbalance, levels and the delta
# lookups use all 20 on both sides); the wide book's other columns are not.
TIME_COLUMNS = ["origin_time", "received_time"]
BOOK_COLUMNS = [*TIME_COLUMNS, "sequence_number", *book_level_columns()]
DELTA_COLUMNS = [*TIME_COLUMNS, "sequence_number", "side_is_bid", "price"]
TRADE_COLUMNS = TIME_COLUMNS
_SPREAD_COLUMNS = [*TIME_COLUMNS, "bid_0_price", "ask_0_price"]


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
    book_minutes, message_minutes, row_minutes, trade_minutes = (Counts() for _ in range(4))
    book_rows = delta_rows = 0
    book_times = Monotone()
    for batch in book(TIME_COLUMNS):
        book_minutes.add(book_times(event_time_ns(batch)) // NS_PER_MINUTE)
        book_rows += batch.num_rows
    message_times = Monotone()
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
            minute = message_times(event_time_ns(batch.take(pa.array(starts)))) // NS_PER_MINUTE
            lengths = np.diff(np.append(starts, sequence.size))
            message_minutes.add(minute)
            row_minutes.add(minute, lengths)
            previous_minute = int(minute[-1])
        previous_sequence = sequence[-1]
        delta_rows += batch.num_rows
    for batch in trades(TIME_COLUMNS):
        trade_minutes.add(event_time_ns(batch) // NS_PER_MINUTE)
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

    stats = MinuteBookStats(n)
    changes = {side: np.zeros(BOOK_LEVELS, dtype=np.int64) for side in SIDES}
    delta_levels = DeltaLevels(deltas(DELTA_COLUMNS))
    for step in book_steps(book, BOOK_COLUMNS, day.minutes, full=True):
        for side, counts in changed_levels(step.book).items():
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
        for step in book_steps(book, columns, day.minutes, full=full):
            values = {name: array[step.segments.row] for name, array in step.stats.items()}
            feed_day_quantiles(quantiles, values, step.segments.weight)
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
    frequency = frequency_table(changes, delta_levels.counts, day.book_rows)
    summary = _summary(stats, per_minute, delta_levels.counts)
    return MicrostructureResult(per_minute, frequency, summary)


def _summary(
    stats: MinuteBookStats, per_minute: pa.Table, delta_counts: np.ndarray
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
        return _nullable(values[list(dict(DAY_QUANTILES)[name]).index(q)])

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
