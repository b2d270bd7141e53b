"""The published book read back batch by batch for the microstructure figures: its rows, the state
after each message, and the per-minute book statistics (spread, depth, imbalance)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.days import NS_PER_MINUTE
from rlx_assets.engine.decimals import decimal_difference, to_float
from rlx_assets.engine.exact_quantiles import ExactQuantiles
from rlx_assets.engine.grouped_stats import FirstLast, MinuteQuantile, Monotone, Sums, WeightedMean
from rlx_assets.schema import BOOK_LEVELS, event_time_ns

# The per-row arrays of a `PublishedBook` (a batch is cut or joined by cutting or joining each).
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
# A source reads the named columns of an input as record batches, in its stored order; it is
# called once per pass.
BatchSource = Callable[[list[str]], Iterable[pa.RecordBatch]]
MEAN_STATS = (
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
MAX_STATS = ("spread", "spread_bps", "depth_bid", "depth_ask")
DAY_MEAN_STATS = MEAN_STATS[:7]
# Day quantiles: (statistic, quantiles). Exact, over the day's segments, in passes.
DAY_QUANTILES = (
    ("spread", (0.5,)),
    ("spread_bps", (0.5, 0.99)),
    ("levels_bid", (0.5,)),
    ("levels_ask", (0.5,)),
)


@dataclass
class PublishedBook:
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


def _read_book(batch: pa.RecordBatch, times: np.ndarray, full: bool) -> PublishedBook:
    """The batch's rows; without `full` only the times and best prices (spread, mid)."""
    spread, mid = _best(batch)
    empty = np.zeros((batch.num_rows, 0))
    return PublishedBook(
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


def _after(previous: PublishedBook | None, book: PublishedBook) -> PublishedBook:
    """`book` with the last row of `previous` put before it."""
    if previous is None or previous.rows == 0:
        return book
    parts = {}
    for name in _BOOK_ARRAYS:
        before, after = getattr(previous, name), getattr(book, name)
        parts[name] = np.concatenate([before[-1:], after]) if before.size else after
    for name in ("bid_sizes", "ask_sizes"):  # column-major, as `matrix` makes them
        parts[name] = np.asfortranarray(parts[name])
    return PublishedBook(carried=1, **parts)


def _row_stats(state: PublishedBook) -> dict[str, np.ndarray]:
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


class MinuteBookStats:
    """The book columns of `per_minute` (NaN where a minute had no book) and the day's
    time-weighted figures, accumulated segment batch by segment batch in day order."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.means = {name: WeightedMean(n) for name in MEAN_STATS}
        self.medians = {name: MinuteQuantile(n, 0.5) for name in ("spread", "spread_bps")}
        self.maxima = {name: np.full(n, np.nan) for name in MAX_STATS}
        self.minima = {name: np.full(n, np.nan) for name in ("depth_bid", "depth_ask")}
        self.mid = FirstLast(n)
        self.book_seconds = Sums(n)
        self.day_means = {name: WeightedMean(1) for name in DAY_MEAN_STATS}
        self.day_spread_bps_max = np.full(1, np.nan)
        self.day_quantiles = day_quantiles()

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
        feed_day_quantiles(self.day_quantiles, values, weight)

    def columns(self) -> dict[str, np.ndarray]:
        columns = {f"{name}_mean": mean.means() for name, mean in self.means.items()}
        columns.update({f"{name}_p50": q.result for name, q in self.medians.items()})
        columns.update({f"{name}_max": v for name, v in self.maxima.items()})
        columns.update({f"{name}_min": v for name, v in self.minima.items()})
        columns["mid_open"], columns["mid_close"] = self.mid.first, self.mid.last
        columns["book_seconds"] = self.book_seconds.values / 1e9
        return columns


@dataclass
class BookStep:
    book: PublishedBook  # a batch after its carried row
    stats: dict[str, np.ndarray]  # per row of `book`
    segments: _Segments
    final: bool  # the last step: the day's last row and the cuts after it


def rows_from(book: PublishedBook, start: int) -> PublishedBook:
    return PublishedBook(
        carried=max(book.carried - start, 0),
        **{name: getattr(book, name)[start:] for name in _BOOK_ARRAYS},
    )


def book_steps(
    source: BatchSource, columns: list[str], minutes: np.ndarray, full: bool
) -> Iterator[BookStep]:
    """The book batch by batch, each after the last row of the one before, with its segments."""
    cutter = _Cutter(minutes)
    monotone = Monotone()
    previous: PublishedBook | None = None
    for batch in source(columns):
        if batch.num_rows == 0:
            continue
        times = monotone(event_time_ns(batch))
        state = _after(previous, _read_book(batch, times, full))
        if full and np.any(state.sequence[1:] < state.sequence[:-1]):
            raise ValueError("reconstructed_book must be in sequence_number order")
        yield BookStep(state, _row_stats(state), cutter.feed(times, state.carried), False)
        previous = state
    if previous is not None:
        last = rows_from(previous, previous.rows - 1)
        last.carried = 1
        yield BookStep(last, _row_stats(last), cutter.finish(), True)


def day_quantiles() -> dict[str, ExactQuantiles]:
    return {name: ExactQuantiles(qs, weighted=True) for name, qs in DAY_QUANTILES}


def feed_day_quantiles(quantiles: dict[str, ExactQuantiles], values, weight) -> None:
    for name, estimator in quantiles.items():
        if estimator.done or name not in values:
            continue
        ok = np.isfinite(values[name]) & (weight > 0)
        estimator.update(values[name][ok], weight[ok])
