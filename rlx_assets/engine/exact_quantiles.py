"""Exact quantiles of a stream of values too large to hold: histogram passes narrow each quantile to
one bin, whose values are then collected and sorted (numpy's linear interpolation, to the bit)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

_MAX_BINS = 1 << 16  # histogram bins per pass, coarsened 16x beyond (>= 16: a split bin splits)


_MAX_COLLECTED = 1 << 21  # values of one bin held to finish a quantile; a fuller bin is split


_DENSE_BIN_SPAN = 1 << 20  # a batch whose bins span fewer than this is counted by bincount


_BUFFER_VALUES = 1 << 22  # values gathered before a histogram update: a merge per 4M, not per batch


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
        # Small batches are gathered first: each histogram update merges its bins with the
        # region's, a cost per update, whatever the batch's size.
        self._pending: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._pending_values = 0

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
        self._pending.append((keys, weights))
        self._pending_values += int(keys.size)
        if self._pending_values >= _BUFFER_VALUES or keys.size >= _BUFFER_VALUES // 4:
            self._flush()  # (a large batch is not worth a copy)

    def _flush(self) -> None:
        if not self._pending:
            return
        keys = (
            self._pending[0][0]
            if len(self._pending) == 1
            else np.concatenate([k for k, _ in self._pending])
        )
        weights = None
        if any(w is not None for _, w in self._pending):
            weights = np.concatenate(
                [np.ones(k.size, np.int64) if w is None else w for k, w in self._pending]
            )
        self._pending, self._pending_values = [], 0
        for region in self._regions:
            region.update(keys, weights)

    def end_pass(self) -> None:
        if self.done:
            return
        self._flush()
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
