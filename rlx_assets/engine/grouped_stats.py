"""Statistics by group (a minute of the day) fed batch by batch: sums, weighted means and quantiles,
first and last values, counts."""

from __future__ import annotations

import numpy as np


class Monotone:
    """Times made non-decreasing across batches (a running maximum carried between them)."""

    def __init__(self) -> None:
        self._latest = np.iinfo(np.int64).min

    def __call__(self, times: np.ndarray) -> np.ndarray:
        if times.size == 0:
            return times
        times = np.maximum.accumulate(np.maximum(times, self._latest))
        self._latest = int(times[-1])
        return times


class Counts:
    """Counts (or sums) per minute, merged batch by batch; at most a day's minutes are held."""

    def __init__(self) -> None:
        self.minutes = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.int64)

    def add(self, minutes: np.ndarray, weights: np.ndarray | None = None) -> None:
        if minutes.size == 0:
            return
        weights = np.ones(minutes.size, np.int64) if weights is None else weights
        merged, inverse = np.unique(np.concatenate([self.minutes, minutes]), return_inverse=True)
        counts = np.bincount(inverse, np.concatenate([self.counts, weights]), len(merged))
        self.minutes, self.counts = merged, counts.astype(np.int64)

    def on(self, minutes: np.ndarray) -> np.ndarray:
        """The counts on the output minutes (0 where none)."""
        counts = np.zeros(minutes.size, np.int64)
        counts[np.searchsorted(minutes, self.minutes)] = self.counts
        return counts


def _weighted_quantile(values, weights, groups, n_groups, q: float, offset: int = 0):
    """Per group, the smallest value whose cumulative weight reaches q of the group's weight.

    Weights are integer nanoseconds, so the cumulative sums are exact. `offset` is the weight of
    the groups before these (earlier batches): the targets are compared as the whole day's
    cumulative sums would be, so the same floats decide.
    """
    ok = np.isfinite(values) & (weights > 0)
    values, weights, groups = values[ok], weights[ok], groups[ok]
    result = np.full(n_groups, np.nan)
    if values.size == 0:
        return result
    order = np.lexsort((values, groups))
    values, weights, groups = values[order], weights[order], groups[order]
    cumulative = offset + np.cumsum(weights)
    totals = np.bincount(groups, weights, minlength=n_groups)
    before = offset + (np.cumsum(totals) - totals)
    present = np.flatnonzero(totals > 0)
    target = before[present] + q * totals[present]
    index = np.searchsorted(cumulative, target, side="left")
    first = np.searchsorted(groups, present, side="left")
    last = np.searchsorted(groups, present, side="right") - 1
    result[present] = values[np.clip(index, first, last)]
    return result


class MinuteQuantile:
    """A per-minute weighted quantile of segments that arrive in minute order: the minute still
    open at the end of a batch waits for the next (a minute holds ~600 book rows at full scale)."""

    def __init__(self, n: int, q: float) -> None:
        self.q = q
        self.result = np.full(n, np.nan)
        self._before = 0  # weight of the finished minutes
        self._open = (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))

    def update(self, values, weights, groups, final: bool = False) -> None:
        ok = np.isfinite(values) & (weights > 0)
        values, weights, groups = (
            np.concatenate([held, new[ok]])
            for held, new in zip(self._open, (values, weights, groups), strict=True)
        )
        if values.size == 0:
            return
        finished = groups < groups[-1] if not final else np.ones(groups.size, bool)
        self._open = (values[~finished], weights[~finished], groups[~finished])
        if not finished.any():
            return
        values, weights, groups = values[finished], weights[finished], groups[finished]
        first_group = int(groups[0])
        local = groups - first_group
        n_local = int(local[-1]) + 1
        quantile = _weighted_quantile(values, weights, local, n_local, self.q, self._before)
        present = np.unique(local)
        self.result[present + first_group] = quantile[present]
        self._before += int(weights.sum())


class Sums:
    """Per-minute sums added in segment order (np.add.at adds in index order, as np.bincount
    does), so a minute's float sum is the one a single pass over the day gives."""

    def __init__(self, n: int) -> None:
        self.values = np.zeros(n)

    def add(self, groups: np.ndarray, values: np.ndarray) -> None:
        np.add.at(self.values, groups, values)


class WeightedMean:
    def __init__(self, n: int) -> None:
        self.totals, self.sums = Sums(n), Sums(n)

    def add(self, values, weights, groups) -> None:
        ok = np.isfinite(values) & (weights > 0)
        self.totals.add(groups[ok], weights[ok])
        self.sums.add(groups[ok], weights[ok] * values[ok])

    def means(self) -> np.ndarray:
        totals, sums = self.totals.values, self.sums.values
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, sums / np.where(totals > 0, totals, 1), np.nan)


class FirstLast:
    """First and last finite value per minute."""

    def __init__(self, n: int) -> None:
        self.first, self.last = np.full(n, np.nan), np.full(n, np.nan)

    def add(self, values, groups) -> None:
        ok = np.isfinite(values)
        values, groups = values[ok], groups[ok]
        if values.size == 0:
            return
        present, starts = np.unique(groups, return_index=True)
        ends = np.append(starts[1:], values.size) - 1
        unset = np.isnan(self.first[present])
        self.first[present[unset]] = values[starts[unset]]
        self.last[present] = values[ends]
