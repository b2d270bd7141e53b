"""Data-quality figures of one partition (DESIGN section 4), from plain arrays.

Each function takes the columns it needs and returns plain numbers, so the raw assets, the book
assets and `validation_report` compute them the same way.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from rlx_assets.engine.raw import day_bounds_ns

NS_PER_MS = 1_000_000
NS_PER_HOUR = 3_600 * 10**9
SKEW_QUANTILES = {"p1": 0.01, "p50": 0.5, "p99": 0.99}


def clock_skew_ms(origin: np.ndarray, received: np.ndarray) -> dict[str, float | None]:
    """received_time - origin_time in ms over rows where both are valid (either sign)."""
    valid = (origin > 0) & (received > 0)
    skew = (received[valid] - origin[valid]).astype(np.float64) / NS_PER_MS
    figures: dict[str, float | None] = {"rows": int(skew.size)}
    if skew.size == 0:
        return {**figures, **dict.fromkeys(["p1", "p50", "p99", "min", "max"])}
    values = np.quantile(skew, list(SKEW_QUANTILES.values()))
    figures.update(zip(SKEW_QUANTILES, (float(v) for v in values), strict=True))
    figures.update(min=float(skew.min()), max=float(skew.max()))
    return figures


def skew_excess_ms(figures: dict[str, float | None]) -> float:
    """How far the bulk of the skew distribution reaches from zero: max(|p1|, |p99|)."""
    if figures.get("p1") is None:
        return 0.0
    return max(abs(figures["p1"]), abs(figures["p99"]))


def origin_time_completeness(origin: np.ndarray | None, day: dt.date) -> dict[str, float]:
    """Shares of rows whose origin_time is null (<0 marks null here), zero, out of the day, or
    earlier than a previous row's (non-monotonic, in the table's own order); `invalid_share` is
    the share with any of these faults."""
    rows = 0 if origin is None else origin.size
    if rows == 0:
        return dict.fromkeys(
            [
                "null_share",
                "zero_share",
                "non_monotonic_share",
                "out_of_day_share",
                "invalid_share",
            ],
            0.0,
        )
    start, end = day_bounds_ns(day)
    null = origin < 0
    zero = origin == 0
    valid = ~null & ~zero
    out_of_day = valid & ((origin < start) | (origin >= end))
    running = np.maximum.accumulate(np.where(valid, origin, np.iinfo(np.int64).min))
    earlier = np.zeros(rows, dtype=bool)
    earlier[1:] = valid[1:] & (origin[1:] < running[:-1])
    invalid = null | zero | out_of_day | earlier
    return {
        "null_share": float(null.mean()),
        "zero_share": float(zero.mean()),
        "non_monotonic_share": float(earlier.mean()),
        "out_of_day_share": float(out_of_day.mean()),
        "invalid_share": float(invalid.mean()),
    }


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


def quantile_or_zero(values: np.ndarray, q: float) -> float:
    values = values[~np.isnan(values)]
    return float(np.quantile(values, q)) if values.size else 0.0


TABLE_SUFFIXES = {"trades": "trades", "book": "snapshots", "book_delta_v2": "deltas"}


def validation_row(
    day: dt.date,
    times: dict[str, tuple[np.ndarray, np.ndarray]],
    raw_counts: dict[str, dict[str, int]],
    book: dict[str, object],
    trades: int,
    delta_messages: int,
) -> dict[str, object]:
    """The one-row `validation_report` (DESIGN section 4).

    times: per table (`trades`, `book`, `book_delta_v2`) its (origin, received) ns arrays in the
    table's own order, -1 where null; raw_counts: per table the raw asset's duplicates_dropped,
    rows_quarantined, precision_loss_warnings; book: the reconstructed_book's figures.
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

    origins = [origin for origin, _ in times.values()]
    receiveds = [received for _, received in times.values()]
    overall = clock_skew_ms(np.concatenate(origins), np.concatenate(receiveds))
    for figure in ("p50", "p99", "min", "max", "p1"):
        row[f"clock_skew_{figure}_ms"] = overall[figure]
    invalid_rows = 0
    total_rows = 0
    for table, (origin, received) in times.items():
        suffix = TABLE_SUFFIXES[table]
        skew = clock_skew_ms(origin, received)
        for figure in ("p1", "p50", "p99", "min", "max"):
            row[f"clock_skew_{figure}_ms_{suffix}"] = skew[figure]
        completeness = origin_time_completeness(origin, day)
        for figure, value in completeness.items():
            row[f"origin_time_{figure}_{suffix}"] = value
        invalid_rows += round(completeness["invalid_share"] * origin.size)
        total_rows += origin.size
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
