"""The whole-array quality figures as they were before streaming: the oracle the streamed
versions must equal exactly."""

import datetime as dt

import numpy as np

from rlx_assets.engine.raw import day_bounds_ns


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
