import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlx_assets.engine import exact_quantiles
from rlx_assets.engine.clock_skew import clock_skew_ms, clock_skew_ms_batches
from rlx_assets.engine.days import NS_PER_MS, day_bounds_ns
from rlx_assets.engine.exact_quantiles import ExactQuantiles, read_in_passes
from rlx_assets.engine.quality import (
    OriginTimeCompleteness,
    origin_time_completeness,
    time_figures,
    validation_row,
)
from rlx_assets_tests.engine import reference_quality

DAY = dt.date(2024, 8, 9)
START, END = day_bounds_ns(DAY)
BATCH_SIZES = [1, 3, 17, 1000, 10**9]
TABLE_NAMES = ("trades", "book", "book_delta_v2")


def _batches(size: int, *arrays: np.ndarray):
    def batches():
        for begin in range(0, arrays[0].size, size):
            yield tuple(array[begin : begin + size] for array in arrays)

    return batches


def _quantiles(values: np.ndarray, qs, size: int, weights: np.ndarray | None = None):
    estimator = ExactQuantiles(qs, weighted=weights is not None)
    arrays = (values,) if weights is None else (values, weights)
    read_in_passes(_batches(size, *arrays), estimator)
    return estimator


QS = [0.0, 0.01, 0.25, 0.5, 0.99, 1.0]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, -0.0, 1.5]), min_size=1),
    st.sampled_from(BATCH_SIZES),
)
def test_exact_quantiles_equal_numpy(values, size) -> None:
    array = np.array(values, dtype=np.float64)
    estimator = _quantiles(array, QS, size)
    np.testing.assert_array_equal(estimator.values(), np.quantile(array, QS))
    assert estimator.minimum == array.min() and estimator.maximum == array.max()


def _weighted_reference(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """microstructure's `_weighted_quantile` over one group."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    target = 0.0 + q * float(np.bincount(np.zeros(values.size, np.int64), weights)[0])
    index = min(int(np.searchsorted(cumulative, target, side="left")), values.size - 1)
    return float(values[order][index])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-1e3, 1e3, allow_nan=False), st.integers(1, 10**10)), min_size=1),
    st.sampled_from(BATCH_SIZES),
)
def test_weighted_exact_quantiles_equal_the_time_weighted_reference(pairs, size) -> None:
    values = np.array([v for v, _ in pairs], dtype=np.float64)
    weights = np.array([w for _, w in pairs], dtype=np.int64)
    estimator = _quantiles(values, [0.5, 0.99], size, weights)
    expected = [_weighted_reference(values, weights, q) for q in (0.5, 0.99)]
    assert estimator.values().tolist() == expected


@pytest.mark.parametrize("size", BATCH_SIZES)
def test_crowded_bins_are_split_in_further_passes(monkeypatch, size) -> None:
    # Tiny limits force the coarsening and the split of a too-full bin on a small input.
    monkeypatch.setattr(exact_quantiles, "_MAX_BINS", 16)
    monkeypatch.setattr(exact_quantiles, "_MAX_COLLECTED", 5)
    rng = np.random.default_rng(size % 97)
    values = np.concatenate([rng.normal(0, 1, 300), rng.normal(1e6, 1e3, 30), [-1e12]])
    estimator = _quantiles(values, QS, min(size, 400))
    np.testing.assert_array_equal(estimator.values(), np.quantile(values, QS))
    ints = rng.integers(-(2**62), 2**62, 200)
    estimator = _quantiles(ints, QS, min(size, 400))
    np.testing.assert_array_equal(estimator.values(), np.quantile(ints.astype(np.float64), QS))


def test_empty_and_constant_streams() -> None:
    estimator = _quantiles(np.zeros(0), QS, 10)
    assert estimator.done and estimator.values() is None and estimator.count == 0
    estimator = _quantiles(np.full(10_000, 2.5), QS, 100)
    assert estimator.values().tolist() == [2.5] * len(QS)


def _times(rng, rows: int) -> tuple[np.ndarray, np.ndarray]:
    origin = START + np.sort(rng.integers(0, END - START, rows))
    origin[rng.random(rows) < 0.05] = -1  # null
    origin[rng.random(rows) < 0.02] = 0
    origin[rng.random(rows) < 0.02] += 10**12  # jumps forward: later rows look backwards
    origin[rng.random(rows) < 0.01] = START - 5
    received = origin + rng.normal(2e6, 3e6, rows).astype(np.int64)
    received[rng.random(rows) < 0.03] = -1
    return origin, received


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 400), st.integers(0, 2**32 - 1), st.sampled_from(BATCH_SIZES))
def test_streamed_skew_and_completeness_equal_the_whole_array(rows, seed, size) -> None:
    origin, received = _times(np.random.default_rng(seed), rows)
    assert clock_skew_ms_batches(_batches(size, origin, received)) == clock_skew_ms(
        origin, received
    )
    completeness = OriginTimeCompleteness(DAY)
    for (batch,) in _batches(size, origin)():
        completeness.update(batch)
    expected = reference_quality.origin_time_completeness(origin, DAY)
    assert completeness.figures() == expected
    assert origin_time_completeness(origin, DAY) == expected
    assert origin_time_completeness(None, DAY) == reference_quality.origin_time_completeness(
        None, DAY
    )


def test_skew_of_a_large_table_takes_two_passes() -> None:
    origin, received = _times(np.random.default_rng(1), 300_000)
    passes = []

    def batches():
        passes.append(1)
        return _batches(65_536, origin, received)()

    assert clock_skew_ms_batches(batches) == clock_skew_ms(origin, received)
    assert len(passes) == 2


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 300), min_size=3, max_size=3),
    st.integers(0, 2**32 - 1),
    st.sampled_from(BATCH_SIZES),
)
def test_validation_row_from_streamed_figures_equals_the_whole_array_row(rows, seed, size) -> None:
    rng = np.random.default_rng(seed)
    arrays = {name: _times(rng, n) for name, n in zip(TABLE_NAMES, rows, strict=True)}
    book = {"gaps_detected": 2, "strategy": "full_replay", "gaps_filled_per_hour": [1] * 24}
    counts = {"raw_trades": {"duplicates_dropped": 3}, "raw_book_deltas": {"rows_quarantined": 1}}
    figures = time_figures(DAY, {name: _batches(size, *a) for name, a in arrays.items()})
    streamed = validation_row(DAY, figures, counts, book, trades=rows[0], delta_messages=7)
    expected = reference_quality.validation_row(
        DAY, arrays, counts, book, trades=rows[0], delta_messages=7
    )
    assert list(streamed) == list(expected)
    assert streamed == expected


def test_skew_histogram_buckets_hold_previous_bound_excluded_bound_included() -> None:
    ms = NS_PER_MS
    origin = np.full(6, START)
    # -1 ms and 0 ms sit on bounds (their own bucket), 0.5 ms is in (0, 1], 70 s beyond the last.
    received = START + np.array([-ms, 0, ms // 2, ms, 70_000 * ms, -70_000 * ms])
    histogram = clock_skew_ms(origin, received)["histogram"]
    bounds = histogram["bounds_ms"]
    counts = dict(zip([*bounds, "inf"], histogram["counts"], strict=True))
    assert counts[-1] == 1 and counts[0] == 1 and counts[1] == 2
    assert counts["inf"] == 1 and counts[-60_000] == 1
    assert sum(histogram["counts"]) == 6
    assert histogram["sum_ms"] == -1 + 0 + 0.5 + 1 + 70_000 - 70_000
