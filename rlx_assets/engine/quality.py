"""Data-quality figures of one partition (DESIGN section 4), from plain arrays.

Each function takes the columns it needs and returns plain numbers, so the raw assets, the book
assets and `validation_report` compute them the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence

import numba
import numpy as np

from rlx_assets.engine.days import day_bounds_ns

NS_PER_MS = 1_000_000
NS_PER_HOUR = 3_600 * 10**9
SKEW_QUANTILES = {"p1": 0.01, "p50": 0.5, "p99": 0.99}


# Upper bounds of the clock-skew histogram's buckets in ms (a bucket holds (previous, bound]),
# both signs: a collector's clock may run ahead of or behind the exchange's.
SKEW_HISTOGRAM_BOUNDS_MS = (
    *(-b for b in (60_000, 10_000, 5_000, 2_500, 1_000, 500, 250, 100, 50, 25, 10, 5, 1)),
    0,
    *(1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000),
)
_SKEW_HISTOGRAM_BOUNDS_NS = np.array(SKEW_HISTOGRAM_BOUNDS_MS, dtype=np.int64) * NS_PER_MS


class SkewHistogram:
    """Counts of the skew per SKEW_HISTOGRAM_BOUNDS_MS bucket and their exact sum (summed as
    integer ns, so any batching gives the same figures): the distribution telemetry exports."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(SKEW_HISTOGRAM_BOUNDS_MS) + 1, dtype=np.int64)
        self.sum_ns = 0

    def update(self, skew_ns: np.ndarray) -> None:
        if skew_ns.size == 0:
            return
        buckets = np.searchsorted(_SKEW_HISTOGRAM_BOUNDS_NS, skew_ns, side="left")
        self.counts += np.bincount(buckets, minlength=self.counts.size)
        # High and low 32 bits summed apart cannot overflow int64 for a batch under 2**31 rows.
        self.sum_ns += int((skew_ns >> 32).sum()) * 2**32 + int((skew_ns & 0xFFFF_FFFF).sum())

    def figures(self) -> dict[str, object]:
        return {
            "bounds_ms": list(SKEW_HISTOGRAM_BOUNDS_MS),
            "counts": self.counts.tolist(),
            "sum_ms": self.sum_ns / NS_PER_MS,
        }


def clock_skew_ms(origin: np.ndarray, received: np.ndarray) -> dict[str, object]:
    """received_time - origin_time in ms over rows where both are valid (either sign): p1, p50,
    p99, min, max and the `SkewHistogram` ("histogram")."""
    skew_ns = _skew_ns(origin, received)
    skew = skew_ns.astype(np.float64) / NS_PER_MS
    histogram = SkewHistogram()
    histogram.update(skew_ns)
    figures: dict[str, object] = {"rows": int(skew.size)}
    if skew.size == 0:
        figures.update(dict.fromkeys(["p1", "p50", "p99", "min", "max"]))
    else:
        values = np.quantile(skew, list(SKEW_QUANTILES.values()))
        figures.update(zip(SKEW_QUANTILES, (float(v) for v in values), strict=True))
        figures.update(min=float(skew.min()), max=float(skew.max()))
    figures["histogram"] = histogram.figures()
    return figures


# --- exact quantiles of a stream ------------------------------------------------------------

_MAX_BINS = 1 << 16  # histogram bins per pass, coarsened 16x beyond (>= 16: a split bin splits)
_MAX_COLLECTED = 1 << 21  # values of one bin held to finish a quantile; a fuller bin is split
_DENSE_BIN_SPAN = 1 << 20  # a batch whose bins span fewer than this is counted by bincount
_SIGN_BITS = np.int64(0x7FFF_FFFF_FFFF_FFFF)


def _float_keys(values: np.ndarray) -> np.ndarray:
    """float64 -> int64 with the same order (negative floats have their magnitude bits flipped);
    -0.0 is made 0.0 first, so equal floats have equal keys."""
    bits = (values + 0.0).view(np.int64)
    return bits ^ ((bits >> 63) & _SIGN_BITS)


def _key_floats(keys: np.ndarray) -> np.ndarray:
    return (keys ^ ((keys >> 63) & _SIGN_BITS)).view(np.float64)


def _numpy_linear(previous: np.ndarray, following: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """np.quantile's default ('linear') interpolation between two order statistics, with
    numpy's own formula, so the result is the same float."""
    difference = following - previous
    result = previous + difference * gamma
    return np.where(gamma >= 0.5, following - difference * (1 - gamma), result)


class ExactQuantiles:
    """Exact quantiles of values streamed in batches, in a few passes over the same batches.

    A day's values are never held. The first pass counts them (count, min, max, total weight)
    into a histogram of at most _MAX_BINS integer bins of their order-preserving int64 keys
    (bins widen by powers of two as the range demands); each later pass narrows only the bins
    that hold a wanted order statistic, collecting their values once few enough are left (or
    splitting a bin again when it holds too many). Two passes in practice, one when the values
    take few distinct values.

    Unweighted, `values()` gives np.quantile's default (linear interpolation) of the values;
    weighted (int64 weights > 0), the smallest value whose cumulative weight reaches q of the
    total (as microstructure's time-weighted quantiles).

        quantiles = ExactQuantiles([0.01, 0.5, 0.99])
        while not quantiles.done:
            for batch in batches():  # the same values in the same batches, each pass
                quantiles.update(batch)
            quantiles.end_pass()
        quantiles.values()

    Values are int64 or float64 (not NaN), one dtype per stream.
    """

    def __init__(self, quantiles: Sequence[float], weighted: bool = False) -> None:
        self.quantiles = np.asarray(quantiles, dtype=np.float64)
        self.weighted = weighted
        self.count = 0
        self.total_weight = 0
        self._float: bool | None = None
        self._min_key: int | None = None
        self._max_key: int | None = None
        self._passes = 0
        # Per pass: the key ranges to look at, each with the wanted thresholds (cumulative
        # weight to reach), the weight below it, and its histogram or collected values.
        self._regions: list[_Region] = [_Region(-(2**63), 2**63 - 1, base=0, collect=False)]
        self._found: dict[float, int] = {}  # threshold -> key
        self.done = False

    # -- feeding ---------------------------------------------------------------------------

    def update(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        if values.size == 0 or self.done:
            return
        if self._float is None:
            self._float = values.dtype.kind == "f"
        keys = _float_keys(values) if self._float else values.astype(np.int64, copy=False)
        if weights is not None:
            weights = weights.astype(np.int64, copy=False)
        if self._passes == 0:
            self.count += int(keys.size)
            self.total_weight += int(keys.size if weights is None else weights.sum())
            low, high = int(keys.min()), int(keys.max())
            self._min_key = low if self._min_key is None else min(self._min_key, low)
            self._max_key = high if self._max_key is None else max(self._max_key, high)
        for region in self._regions:
            region.update(keys, weights)

    def end_pass(self) -> None:
        if self.done:
            return
        if self._passes == 0:
            if self.count == 0:
                self.done = True
                return
            self._regions[0].thresholds = self._thresholds()
        self._passes += 1
        regions = []
        for region in self._regions:
            for threshold, key in region.resolved().items():
                self._found[threshold] = key
            regions += region.narrowed()
        self._regions = regions
        self.done = not regions

    def _thresholds(self) -> list[float]:
        """Cumulative weights to reach: per quantile, its order statistics (1-based ranks) or
        its share of the total weight."""
        if self.weighted:
            return sorted({float(q * float(self.total_weight)) for q in self.quantiles})
        previous, following, _ = self._linear_indexes()
        return sorted({float(i + 1) for i in np.concatenate([previous, following])})

    def _linear_indexes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """np.quantile's 'linear' neighbours and weight (numpy's _get_indexes, _get_gamma)."""
        virtual = (self.count - 1) * self.quantiles
        previous = np.floor(virtual)
        following = previous + 1
        above = virtual >= self.count - 1
        previous[above] = self.count - 1
        following[above] = self.count - 1
        gamma = virtual - np.where(above, -1, previous)  # as numpy: unused where both match
        return previous.astype(np.int64), following.astype(np.int64), gamma

    # -- results ---------------------------------------------------------------------------

    def _value(self, key: int | None) -> float | int | None:
        if key is None:
            return None
        array = np.array([key], dtype=np.int64)
        return _key_floats(array)[0] if self._float else array[0]

    @property
    def minimum(self):
        return self._value(self._min_key)

    @property
    def maximum(self):
        return self._value(self._max_key)

    def values(self, scale: Callable[[int], float] = float) -> np.ndarray | None:
        """The quantiles (float64), or None without values; valid once `done`. `scale` maps
        an order statistic to the value interpolated (an increasing map: int64 values can be
        streamed in a finer unit than the one reported, exactly)."""
        if not self.done:
            raise RuntimeError("ExactQuantiles: more passes are needed")
        if self.count == 0:
            return None
        if self.weighted:
            keys = [self._found[float(q * float(self.total_weight))] for q in self.quantiles]
            return np.array([scale(self._value(key)) for key in keys])
        previous, following, gamma = self._linear_indexes()
        as_values = np.vectorize(lambda rank: scale(self._value(self._found[float(rank + 1)])))
        return _numpy_linear(
            as_values(previous).astype(np.float64), as_values(following).astype(np.float64), gamma
        )


class _Region:
    """One range of keys [low, high] within a pass: histogrammed, or its values collected."""

    def __init__(self, low: int, high: int, base: int, collect: bool) -> None:
        self.low, self.high, self.base, self.collect = low, high, base, collect
        self.thresholds: list[float] = []
        self.shift = 0
        self.bins = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.weights = np.zeros(0, dtype=np.int64)
        self.collected: list[tuple[np.ndarray, np.ndarray]] = []

    def update(self, keys: np.ndarray, weights: np.ndarray | None) -> None:
        """`weights` None: every value weighs 1."""
        if self.low > -(2**63) or self.high < 2**63 - 1:
            inside = (keys >= self.low) & (keys <= self.high)
            keys = keys[inside]
            weights = None if weights is None else weights[inside]
            if keys.size == 0:
                return
        if self.collect:
            ones = np.ones(keys.size, dtype=np.int64) if weights is None else weights
            self.collected.append((keys, ones))
            return
        bins = keys >> self.shift if self.shift else keys
        low, high = int(bins.min()), int(bins.max())
        if high - low < _DENSE_BIN_SPAN:
            offsets = bins - low
            counts = np.bincount(offsets)
            present = np.flatnonzero(counts)
            counts = counts[present].astype(np.int64)
            bin_weights = (
                counts
                if weights is None
                else np.bincount(offsets, weights)[present].astype(np.int64)
            )
            bins = present.astype(np.int64) + low
        else:
            bins, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
            bin_weights = (
                counts if weights is None else np.bincount(inverse, weights).astype(np.int64)
            )
        self._merge(bins, counts, bin_weights)

    def _merge(self, bins: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> None:
        bins = np.concatenate([self.bins, bins])
        counts = np.concatenate([self.counts, counts])
        weights = np.concatenate([self.weights, weights])
        while True:
            self.bins, inverse = np.unique(bins, return_inverse=True)
            self.counts = np.bincount(inverse, counts).astype(np.int64)
            self.weights = np.bincount(inverse, weights).astype(np.int64)
            if self.bins.size <= _MAX_BINS:
                return
            # Too many bins: each becomes 16 times wider, kept exact (a coarser bin holds
            # exactly the finer ones it covers).
            self.shift += 4
            bins, counts, weights = self.bins >> 4, self.counts, self.weights

    def resolved(self) -> dict[float, int]:
        """Thresholds whose key this pass found."""
        if self.collect:
            keys = np.concatenate([k for k, _ in self.collected])
            weights = np.concatenate([w for _, w in self.collected])
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            cumulative = (self.base + np.cumsum(weights[order])).astype(np.float64)
            index = np.minimum(np.searchsorted(cumulative, self.thresholds), keys.size - 1)
            return {t: int(keys[i]) for t, i in zip(self.thresholds, index, strict=True)}
        if self.shift == 0:  # one key per bin: the bin is the answer
            return {t: int(self.bins[i]) for t, i in self._bins_reached().items()}
        return {}

    def _bins_reached(self) -> dict[float, int]:
        cumulative = (self.base + np.cumsum(self.weights)).astype(np.float64)
        index = np.minimum(np.searchsorted(cumulative, self.thresholds), self.bins.size - 1)
        return {t: int(i) for t, i in zip(self.thresholds, index, strict=True)}

    def narrowed(self) -> list[_Region]:
        """The regions of the next pass: one per bin holding a threshold not yet found."""
        if self.collect or self.shift == 0 or not self.thresholds:
            return []
        by_bin: dict[int, list[float]] = {}
        for threshold, index in self._bins_reached().items():
            by_bin.setdefault(index, []).append(threshold)
        regions = []
        below = self.base + np.concatenate([[0], np.cumsum(self.weights)])
        for index, thresholds in by_bin.items():
            first = int(self.bins[index]) << self.shift
            last = first | ((1 << self.shift) - 1)
            region = _Region(
                max(first, self.low),
                min(last, self.high),
                base=int(below[index]),
                collect=int(self.counts[index]) <= _MAX_COLLECTED,
            )
            region.thresholds = thresholds
            regions.append(region)
        return regions


class ClockSkew:
    """`clock_skew_ms` over a table read in batches (in passes: see ExactQuantiles); the
    histogram (counted in the first pass) only when asked for."""

    def __init__(self, histogram: bool = False) -> None:
        self._quantiles = ExactQuantiles(list(SKEW_QUANTILES.values()))
        self._histogram = SkewHistogram() if histogram else None
        self._first_pass = True

    @property
    def done(self) -> bool:
        return self._quantiles.done

    def update(self, origin: np.ndarray, received: np.ndarray) -> None:
        # In whole ns, scaled to ms at the end: the same order, so the same order statistics,
        # without a float conversion of every row.
        skew_ns = _skew_ns(origin, received)
        if self._histogram is not None and self._first_pass:
            self._histogram.update(skew_ns)
        self._quantiles.update(skew_ns)

    def end_pass(self) -> None:
        self._first_pass = False
        self._quantiles.end_pass()

    def figures(self) -> dict[str, object]:
        quantiles = self._quantiles
        figures: dict[str, object] = {"rows": quantiles.count}
        if quantiles.count == 0:
            figures.update(dict.fromkeys(["p1", "p50", "p99", "min", "max"]))
        else:
            values = quantiles.values(_ns_to_ms)
            figures.update(zip(SKEW_QUANTILES, (float(v) for v in values), strict=True))
            figures.update(min=_ns_to_ms(quantiles.minimum), max=_ns_to_ms(quantiles.maximum))
        if self._histogram is not None:
            figures["histogram"] = self._histogram.figures()
        return figures


def _ns_to_ms(nanoseconds: int) -> float:
    """As `_skew_ms` converts: float64 of the ns, divided."""
    return float(np.float64(nanoseconds) / NS_PER_MS)


@numba.njit(cache=True, nogil=True)
def _skew_ns(origin, received):
    """received - origin (ns) where both are valid, in one pass."""
    skew = np.empty(origin.size, dtype=np.int64)
    kept = 0
    for row in range(origin.size):
        if origin[row] > 0 and received[row] > 0:
            skew[kept] = received[row] - origin[row]
            kept += 1
    return skew[:kept]


def read_in_passes(batches: Callable[[], Iterable[tuple[np.ndarray, ...]]], *accumulators) -> None:
    """Feed every batch to each accumulator (`update(*batch)`) until all are done, re-reading
    the batches once per pass."""
    while not all(accumulator.done for accumulator in accumulators):
        pending = [accumulator for accumulator in accumulators if not accumulator.done]
        for batch in batches():
            for accumulator in pending:
                accumulator.update(*batch)
        for accumulator in pending:
            accumulator.end_pass()


def clock_skew_ms_batches(
    batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
) -> dict[str, object]:
    """`clock_skew_ms` of a table read as (origin, received) batches, without holding it.

    `batches()` must give a fresh iterator over the same batches each time (two or three
    passes are read)."""
    skew = ClockSkew(histogram=True)
    read_in_passes(batches, skew)
    return skew.figures()


def skew_excess_ms(figures: dict[str, float | None]) -> float:
    """How far the bulk of the skew distribution reaches from zero: max(|p1|, |p99|)."""
    if figures.get("p1") is None:
        return 0.0
    return max(abs(figures["p1"]), abs(figures["p99"]))


_COMPLETENESS_FIGURES = (
    "null_share",
    "zero_share",
    "non_monotonic_share",
    "out_of_day_share",
    "invalid_share",
)


class OriginTimeCompleteness:
    """`origin_time_completeness` of a table fed batch by batch in the table's own order: the
    running maximum of valid origin times carries from one batch into the next."""

    def __init__(self, day: dt.date) -> None:
        self.day = day
        self._start, self._end = day_bounds_ns(day)
        self.rows = 0
        self._counts = dict.fromkeys(_COMPLETENESS_FIGURES, 0)
        self._running = np.iinfo(np.int64).min  # latest valid origin so far

    def update(self, origin: np.ndarray) -> None:
        """origin: int64 ns, <0 where null."""
        if origin.size == 0:
            return
        null = origin < 0
        zero = origin == 0
        valid = ~null & ~zero
        out_of_day = valid & ((origin < self._start) | (origin >= self._end))
        running = np.maximum.accumulate(np.where(valid, origin, np.iinfo(np.int64).min))
        np.maximum(running, self._running, out=running)
        before = np.concatenate([[self._running], running[:-1]])
        earlier = valid & (origin < before)  # never the first row: nothing is below int64 min
        self._running = int(running[-1])
        counts = self._counts
        counts["null_share"] += int(null.sum())
        counts["zero_share"] += int(zero.sum())
        counts["non_monotonic_share"] += int(earlier.sum())
        counts["out_of_day_share"] += int(out_of_day.sum())
        counts["invalid_share"] += int((null | zero | out_of_day | earlier).sum())
        self.rows += int(origin.size)

    @property
    def invalid_rows(self) -> int:
        return self._counts["invalid_share"]

    def figures(self) -> dict[str, float]:
        if self.rows == 0:
            return dict.fromkeys(_COMPLETENESS_FIGURES, 0.0)
        return {name: count / self.rows for name, count in self._counts.items()}


def origin_time_completeness(origin: np.ndarray | None, day: dt.date) -> dict[str, float]:
    """Shares of rows whose origin_time is null (<0 marks null here), zero, out of the day, or
    earlier than a previous row's (non-monotonic, in the table's own order); `invalid_share` is
    the share with any of these faults."""
    completeness = OriginTimeCompleteness(day)
    if origin is not None:
        completeness.update(origin)
    return completeness.figures()


def sequence_id_gaps(message_sequence: np.ndarray, contiguous_share: float = 0.99) -> np.ndarray:
    """Indexes of messages whose id does not continue the previous one, where the feed makes it
    detectable: a feed whose ids step by exactly 1 between at least 99% of messages. Feeds whose
    ids jump by design (Binance's last-update-id) show gaps only against vendor snapshots."""
    if message_sequence.size < 2:
        return np.zeros(0, dtype=np.int64)
    steps = np.diff(message_sequence)
    if np.mean(steps == 1) < contiguous_share:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(steps != 1) + 1


def per_hour(times: np.ndarray, day: dt.date) -> list[int]:
    """Counts per UTC hour of the day (24 numbers)."""
    start, _ = day_bounds_ns(day)
    hours = np.clip((times - start) // NS_PER_HOUR, 0, 23).astype(np.int64)
    return np.bincount(hours, minlength=24).astype(int).tolist()


def filled_after(gap_messages: np.ndarray, checked_messages: np.ndarray) -> np.ndarray:
    """Which id gaps a vendor snapshot checked later (and resynced where it disagreed)."""
    if checked_messages.size == 0:
        return np.zeros(gap_messages.size, dtype=bool)
    return gap_messages <= checked_messages.max()


TABLE_SUFFIXES = {"trades": "trades", "book": "snapshots", "book_delta_v2": "deltas"}


TimeBatches = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


def time_figures(day: dt.date, tables: dict[str, TimeBatches]) -> dict[str, dict]:
    """Clock skew and origin_time completeness per table and skew over all tables, each table
    read as (origin, received) ns batches in its own order (-1 where null), in shared passes.

    Returns per table {"skew": clock_skew_ms figures, "completeness": origin_time_completeness
    figures, "rows": n} and under "all" the skew over every table."""
    skews = {name: ClockSkew() for name in tables}
    overall = ClockSkew()
    completeness = {name: OriginTimeCompleteness(day) for name in tables}
    first_pass = True
    while not (overall.done and all(skew.done for skew in skews.values())):
        for name, batches in tables.items():
            skew = skews[name]
            for origin, received in batches():
                if first_pass:
                    completeness[name].update(origin)
                if not skew.done:
                    skew.update(origin, received)
                if not overall.done:
                    overall.update(origin, received)
        for accumulator in (*skews.values(), overall):
            accumulator.end_pass()
        first_pass = False
    figures: dict[str, dict] = {
        name: {
            "skew": skews[name].figures(),
            "completeness": completeness[name].figures(),
            "rows": completeness[name].rows,
        }
        for name in tables
    }
    figures["all"] = overall.figures()
    return figures


def validation_row(
    day: dt.date,
    times: dict[str, dict],
    raw_counts: dict[str, dict[str, int]],
    book: dict[str, object],
    trades: int,
    delta_messages: int,
) -> dict[str, object]:
    """The one-row `validation_report` (DESIGN section 4).

    times: `time_figures` of the tables `trades`, `book`, `book_delta_v2`; raw_counts: per
    table the raw asset's duplicates_dropped, rows_quarantined, precision_loss_warnings; book:
    the reconstructed_book's figures.
    """
    row: dict[str, object] = {"date": day.isoformat()}
    for name in (
        "gaps_detected",
        "gaps_filled",
        "stale_levels_repaired",
        "crossed_books_published",
    ):
        row[name] = int(book.get(name, 0))
    for name in ("mid_deviation_max_bps", "mid_deviation_p99_bps", "top20_match_share"):
        row[name] = float(book.get(name, 0.0))

    overall = times["all"]
    for figure in ("p50", "p99", "min", "max", "p1"):
        row[f"clock_skew_{figure}_ms"] = overall[figure]
    invalid_rows = 0
    total_rows = 0
    for table, suffix in TABLE_SUFFIXES.items():
        if table not in times:
            continue
        skew, completeness = times[table]["skew"], times[table]["completeness"]
        for figure in ("p1", "p50", "p99", "min", "max"):
            row[f"clock_skew_{figure}_ms_{suffix}"] = skew[figure]
        for figure, value in completeness.items():
            row[f"origin_time_{figure}_{suffix}"] = value
        rows = times[table]["rows"]
        invalid_rows += round(completeness["invalid_share"] * rows)
        total_rows += rows
    row["origin_time_invalid_share"] = invalid_rows / total_rows if total_rows else 0.0
    for name in ("precision_loss_warnings", "duplicates_dropped", "rows_quarantined"):
        row[name] = int(sum(counts.get(name, 0) for counts in raw_counts.values()))
    row["trade_to_book_ratio"] = trades / delta_messages if delta_messages else None
    row["strategy"] = str(book.get("strategy", ""))
    row["cold_start"] = bool(book.get("cold_start", False))
    row["seed"] = str(book.get("seed", ""))
    row["sequence_id_gaps"] = int(book.get("sequence_id_gaps", 0))
    row["gaps_detected_per_hour"] = list(book.get("gaps_detected_per_hour", []))
    row["gaps_filled_per_hour"] = list(book.get("gaps_filled_per_hour", []))
    return row
