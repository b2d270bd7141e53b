"""UTC days in nanoseconds: the unit every table's times are in."""

from __future__ import annotations

import datetime as dt

NS_PER_DAY = 86_400 * 10**9
NS_PER_MINUTE = 60 * 10**9
NS_PER_MS = 1_000_000


def day_bounds_ns(day: dt.date) -> tuple[int, int]:
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())
    return start * 10**9, start * 10**9 + NS_PER_DAY
