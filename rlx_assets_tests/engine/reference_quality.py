"""The whole-array quality figures as they were before streaming: the oracle the streamed
versions must equal exactly."""

import datetime as dt

import numpy as np

from rlx_assets.engine.clock_skew import clock_skew_ms
from rlx_assets.engine.days import day_bounds_ns


def origin_time_completeness(origin: np.ndarray | None, day: dt.date) -> dict[str, float]:
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


TABLE_SUFFIXES = {"trades": "trades", "book": "snapshots", "book_delta_v2": "deltas"}


def validation_row(
    day: dt.date,
    times: dict[str, tuple[np.ndarray, np.ndarray]],
    raw_counts: dict[str, dict[str, int]],
    book: dict[str, object],
    trades: int,
    delta_messages: int,
) -> dict[str, object]:
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
