import numpy as np
import pytest

from rlx_assets.defs.quality.assets import gaps_per_hour
from rlx_assets.sparkline import NS_PER_DAY, day_buckets, day_sparkline, sparkline

HOUR = NS_PER_DAY // 24
START = 1_723_075_200 * 10**9  # 2024-08-08 00:00 UTC


def test_sparkline_scales_from_zero_to_the_largest_value_and_marks_missing_buckets() -> None:
    assert sparkline(np.array([0.0, 0.5, 1.0, np.nan])) == "▁▅█·"
    assert sparkline(np.zeros(3)) == "▁▁▁"
    assert sparkline(np.array([2.0, 4.0]), top=8.0) == "▃▅"


@pytest.mark.parametrize(("how", "expected"), [("max", [3.0, 5.0]), ("mean", [2.0, 5.0])])
def test_day_buckets_reduce_each_slice_and_leave_out_other_days(how, expected) -> None:
    times = np.array([START, START + HOUR, START + 13 * HOUR, START - 1, START + NS_PER_DAY])
    values = np.array([1.0, 3.0, 5.0, 100.0, 100.0])
    reduced = day_buckets(times, values, START, buckets=2, how=how)
    assert reduced.tolist() == expected


def test_day_sparkline_shows_the_day_and_its_scale() -> None:
    times = START + np.arange(4) * 6 * HOUR
    line = day_sparkline(times, np.array([0.0, 0.0, 0.42, 0.0]), START, "bps", buckets=4)
    assert line == "00h ▁▁█▁ 24h  (max 0.42 bps)"
    assert "no data" in day_sparkline(times[:0], np.zeros(0), START, "bps")


def test_gaps_per_hour_lists_only_the_hours_with_gaps() -> None:
    quiet = gaps_per_hour([0] * 24, [0] * 24)
    assert quiet.value == "no gaps in any hour"
    detected, filled = [0] * 24, [0] * 24
    detected[3], filled[3], detected[17] = 2, 2, 1
    table = gaps_per_hour(detected, filled)
    assert [record.data for record in table.records] == [
        {"hour_utc": "03:00", "detected": 2, "filled": 2},
        {"hour_utc": "17:00", "detected": 1, "filled": 0},
    ]
