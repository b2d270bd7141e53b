"""Clock skew (received_time - origin_time) of a day's rows: exact quantiles and a fixed-bucket
histogram, in one compiled pass per batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numba
import numpy as np

from rlx_assets.engine.days import NS_PER_MS
from rlx_assets.engine.exact_quantiles import ExactQuantiles, read_in_passes

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
