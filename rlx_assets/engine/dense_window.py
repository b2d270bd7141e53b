"""The price window of the dense kernel: the grid (first price, step, cells) that the prices a chunk
touches lie on, and the candidate windows tried narrowest first."""

from __future__ import annotations

import numba
import numpy as np

MAX_CELLS = 1 << 24  # per side: 16M cells, 2 arrays of int64 -> 256 MB at most


WINDOW_LEVELS = 1000  # book levels per side the window takes in, when the grid allows


WINDOW_CELLS = 1 << 22  # a wider candidate window is skipped for a narrower one (128 MB)


ROW_QUANTILE = 0.001  # rows outside these quantiles of a chunk's prices may be left outside


PAD_STEPS = 1024  # book levels this far beyond a window's core are taken in


@numba.njit(cache=True, nogil=True)
def _step_gcd(prices, low, step):
    """gcd of `step` and every price - low; stops at 1 (the usual answer) without reading on."""
    for i in range(prices.shape[0]):
        if step == 1:
            return 1
        a, b = prices[i] - low, step
        while b:
            a, b = b, a % b
        step = a
    return step


def price_grid(
    prices: list[np.ndarray],
) -> tuple[int, int, int] | None:
    """(base, step, cells) of the coarsest grid holding every price, or None if too large."""
    present = [np.ascontiguousarray(p, dtype=np.int64) for p in prices if p.size]
    if not present:
        return 0, 1, 1
    low = min(int(p.min()) for p in present)
    high = max(int(p.max()) for p in present)
    step = 0
    for p in present:
        step = int(_step_gcd(p, low, step))
    step = max(step, 1)
    cells = (high - low) // step + 1
    return (low, step, cells) if cells <= MAX_CELLS else None


def candidate_windows(data, bids, asks, snapshot_prices, levels):
    """Candidate (low, high, cell limit) windows, widest first. The core: every row, the
    vendor's levels and the book's top 20; else the rows between their 0.1% and 99.9%
    quantiles instead of every row; else no rows. Each core takes in book levels beyond it, up
    to 1,000 a side and a few times the chunk's rows in price steps (the grid is set up in
    time proportional to its cells). Rows beyond the chosen window are deep levels the kernel
    keeps aside."""
    rows = np.asarray(data.prices)
    touch = [*snapshot_prices, bids.prices[-levels:], asks.prices[-levels:]]

    def cores():
        if rows.size:
            yield [np.array([rows.min(), rows.max()]), *touch]
            # Only when every row does not fit: a partition of the rows costs a few ms.
            yield [np.quantile(rows, [ROW_QUANTILE, 1 - ROW_QUANTILE]).astype(np.int64), *touch]
        yield touch

    pad = max(PAD_STEPS, 4 * rows.size)
    for arrays in cores():
        present = [p for p in arrays if p.size]
        if not present:
            continue
        low = min(int(p.min()) for p in present)
        high = max(int(p.max()) for p in present)
        if bids.prices.size:  # bids ascend: the 1,000th best is first of the last 1,000
            low = min(low, max(int(bids.prices[-WINDOW_LEVELS:][0]), low - pad))
        if asks.prices.size:
            high = max(high, min(int(asks.prices[-WINDOW_LEVELS:][0]), high + pad))
        yield low, high, WINDOW_CELLS if arrays is not touch else MAX_CELLS
