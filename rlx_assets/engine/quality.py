"""Data-quality figures of one partition (DESIGN section 4), from plain arrays.

Each function takes the columns it needs and returns plain numbers, so the raw assets, the book
assets and `validation_report` compute them the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import numpy as np

from rlx_assets.engine.clock_skew import ClockSkew
from rlx_assets.engine.days import day_bounds_ns

NS_PER_HOUR = 3_600 * 10**9


# --- exact quantiles of a stream ------------------------------------------------------------


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
