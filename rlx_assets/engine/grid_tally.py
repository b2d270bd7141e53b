"""Every price and size on its instrument's grid: the grids a day's values lie on, counted in one
compiled pass (`GridTally`)."""

from __future__ import annotations

import numba
import numpy as np
import polars as pl
import pyarrow as pa

from rlx_assets.engine.decimals import (
    GRID_SHARE,
    MAX_DIGITS,
    MIN_TOLERANCE_STEPS,
    ULPS,
    on_grid,
    to_steps,
)

_EXACT_STEPS = 2.0**40


_CACHE_BITS = 16  # answers remembered by value: a day's prices and sizes repeat a great deal


@numba.njit(cache=True, nogil=True)
def _grids_of(value, divisible, grids, units, floors, ulps):
    """For one whole number of fine steps: its trailing decimal zeros (capped at `divisible`);
    the grids from `divisible` on that it lies near, as bits (grid i: bit i), up to the first
    whose unit is over twice the value (its nearest point is 0: off that grid and the coarser
    ones, as `on_grid` has it); the first grid it lies near from there on (0 only: `grids`
    otherwise); and whether it sits at a tolerance's edge."""
    zeros = 0
    if value == 0:
        return divisible, np.uint64(0), divisible, False
    rest = value
    while rest % 10 == 0 and zeros < divisible:
        rest //= 10
        zeros += 1
    near = np.uint64(0)
    for i in range(divisible, grids):
        unit = units[i]
        if unit > 2.0 * value:
            # Nearest to 0 on this grid and every coarser one: off them all (`on_grid`).
            return zeros, near, grids, False
        tolerance = max(floors[i], ulps * value)
        remainder = float(value % np.int64(unit))
        distance = min(remainder, unit - remainder)
        if abs(distance - tolerance) <= tolerance * 1e-6:
            return zeros, np.uint64(0), grids, True
        if distance <= tolerance:
            near |= np.uint64(1) << np.uint64(i)
    return zeros, near, grids, False


@numba.njit(cache=True, nogil=True)
def _tally_coarser_grids(steps, grids, min_tolerance, ulps, counts, edge):
    """counts[i] += how many `steps` (whole steps of a fine grid, below 2**40) lie on the grid
    of 10**(i + 1) fine steps, within `on_grid`'s tolerance (min_tolerance steps of that grid,
    or ulps of the value); values at the tolerance's edge are left out and marked in `edge`.

    While the tolerance is under half a fine step, "on the grid" is "divisible by 10**(i + 1)":
    the value's trailing decimal zeros answer all those grids at once. A value's answer is
    remembered (by value, in a small table), so repeated values cost a lookup."""
    units = np.empty(grids)
    floors = np.empty(grids)
    for i in range(grids):
        units[i] = 10.0 ** (i + 1)
        floors[i] = units[i] * min_tolerance
    divisible = 0  # grids decided by divisibility whatever the value (below 2**40 steps)
    while divisible < grids and floors[divisible] + ulps * 2.0**40 < 0.5:
        divisible += 1
    by_zeros = np.zeros(divisible + 1, dtype=np.int64)  # values by trailing zeros (capped)
    by_first_coarse = np.zeros(grids + 1, dtype=np.int64)  # values near every grid from i on
    size = 1 << _CACHE_BITS
    cached_value = np.full(size, -1, dtype=np.int64)
    cached_zeros = np.zeros(size, dtype=np.int64)
    cached_near = np.zeros(size, dtype=np.uint64)
    cached_first_coarse = np.zeros(size, dtype=np.int64)
    cached_edge = np.zeros(size, dtype=np.bool_)
    shift = np.uint64(64 - _CACHE_BITS)
    slot = np.uint64(0)
    previous = np.int64(-1)
    for k in range(steps.size):
        value = steps[k]
        if value != previous:  # runs of one value (a level standing) skip the lookup
            previous = value
            slot = (np.uint64(value) * np.uint64(0x9E3779B97F4A7C15)) >> shift
        if cached_value[slot] != value:
            zeros, near, first_coarse, at_edge = _grids_of(
                value, divisible, grids, units, floors, ulps
            )
            cached_value[slot] = value
            cached_zeros[slot] = zeros
            cached_near[slot] = near
            cached_first_coarse[slot] = first_coarse
            cached_edge[slot] = at_edge
        if cached_edge[slot]:
            edge[k] = True
            continue
        by_zeros[cached_zeros[slot]] += 1
        by_first_coarse[cached_first_coarse[slot]] += 1
        near = cached_near[slot]
        i = 0
        while near:  # rare: small values near a grid a few times their size
            if near & np.uint64(1):
                counts[i] += 1
            near >>= np.uint64(1)
            i += 1
    near_from = 0
    for i in range(grids):
        near_from += by_first_coarse[i]
        counts[i] += near_from
    # On the grid of 10**(i + 1) steps: the values with at least i + 1 trailing zeros.
    at_least = 0
    for zeros in range(divisible, 0, -1):
        at_least += by_zeros[zeros]
        counts[zeros - 1] += at_least


@numba.njit(cache=True, nogil=True)
def _steps_on_fine_grid(
    values, factor, divide, min_tolerance, ulps, exact_below, steps, step_values, each
):
    """One pass of `GridTally.add` on a known fine grid: `on_grid`'s arithmetic value by value
    (`to_steps` by `factor`), the whole steps of the values on it written to `steps` (their
    values to `step_values`), the values to count one by one (off the grid, too large for exact
    steps, or rounding to 0 steps without being 0: see `_fine_grid`) to `each`. Returns
    (finite values, values on the grid, largest |value|, steps written, values in `each`)."""
    finite = 0
    on = 0
    largest = 0.0
    kept = 0
    counted_each = 0
    for value in values:
        if not np.isfinite(value):
            continue
        finite += 1
        largest = max(largest, abs(value))
        in_steps = value / factor if divide else value * factor
        rounded = np.rint(in_steps)
        tolerance = max(min_tolerance, ulps * abs(in_steps))
        if abs(in_steps - rounded) - tolerance <= 0 and (rounded != 0 or value == 0):
            on += 1
            if abs(rounded) < exact_below:
                steps[kept] = np.int64(abs(rounded))
                step_values[kept] = value
                kept += 1
                continue
        each[counted_each] = value
        counted_each += 1
    return finite, on, largest, kept, counted_each


def _rounds_to_zero(values: np.ndarray, exponent: int) -> np.ndarray:
    return (np.abs(to_steps(values, exponent)) < 0.5) & (values != 0)


class GridTally:
    """How many of a day's values lie on each power-of-ten grid, fed chunk by chunk, so the day's
    grid is inferred as `infer_step_exponent` infers it over the whole day at once."""

    EXPONENTS = np.arange(-MAX_DIGITS, MAX_DIGITS + 3)

    def __init__(self) -> None:
        self.values = 0
        self.largest = 0.0
        self.on_grid = np.zeros(self.EXPONENTS.size, dtype=np.int64)
        self._fine: int | None = None

    def add(self, values: np.ndarray) -> None:
        if self._fine is not None and self._add_on_fine_grid(values):
            return
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return
        self.values += int(finite.size)
        largest = float(np.max(np.abs(finite)))
        self.largest = max(self.largest, largest)
        top = int(np.floor(np.log10(largest))) if largest > 0 else 0
        fine, on = self._fine_grid(finite, top)
        if fine is None:
            self._count_each(finite)
            return
        on_values = finite[on]
        steps = np.abs(np.rint(to_steps(on_values, fine)))
        # Where float rounding reaches whole steps, rounding to a step is not exact: such values
        # are counted one by one like the values off the grid.
        exact = steps < _EXACT_STEPS
        self._tally_steps(
            steps[exact].astype(np.int64),
            on_values[exact],
            fine,
            np.concatenate([on_values[~exact], finite[~on]]),
        )

    def _add_on_fine_grid(self, values: np.ndarray) -> bool:
        """`add` in one compiled pass when the previous chunk's fine grid still holds (the
        usual case); False, with nothing counted, when it does not."""
        fine = self._fine
        assert fine is not None
        values = np.ascontiguousarray(values, dtype=np.float64)
        steps = np.empty(values.size, dtype=np.int64)
        step_values = np.empty(values.size, dtype=np.float64)
        each = np.empty(values.size, dtype=np.float64)
        # The factor as `to_steps` computes it, so rounding matches `on_grid` bit for bit.
        factor = 10.0**fine if fine >= 0 else 10.0**-fine
        finite, on, largest, kept, counted_each = _steps_on_fine_grid(
            values,
            factor,
            fine >= 0,
            MIN_TOLERANCE_STEPS,
            ULPS,
            _EXACT_STEPS,
            steps,
            step_values,
            each,
        )
        if finite == 0:
            return True
        if on / finite < GRID_SHARE:
            return False
        self.values += finite
        self.largest = max(self.largest, largest)
        self._tally_steps(steps[:kept], step_values[:kept], fine, each[:counted_each])
        return True

    def _tally_steps(
        self, steps: np.ndarray, step_values: np.ndarray, fine: int, each: np.ndarray
    ) -> None:
        """Whole steps of the fine grid (below 2**40; `step_values` the values they stand
        for) counted on every grid; `each` (values off the fine grid, or too large for exact
        steps) counted one by one."""
        coarser = fine < self.EXPONENTS
        grids = int(coarser.sum())
        counts = np.zeros(grids, dtype=np.int64)
        edge = np.zeros(steps.size, dtype=np.bool_)
        _tally_coarser_grids(steps, grids, MIN_TOLERANCE_STEPS, ULPS, counts, edge)
        # On a coarser grid: exact integer arithmetic on the steps, with `on_grid`'s tolerance.
        self.on_grid[coarser] += counts
        # A value on a grid lies on every finer one.
        self.on_grid[~coarser] += steps.size - int(edge.sum())
        # At the edge of the tolerance float rounding decides, as it does in `on_grid`.
        self._count_each(step_values[edge])
        self._count_each(each)

    def _fine_grid(self, finite: np.ndarray, top: int) -> tuple[int | None, np.ndarray]:
        """A grid nearly all of these values lie on (so the few off it are counted one by
        one), and which values do: the previous chunk's when it still holds, else the coarsest
        from `top` down."""
        candidates = range(top, -MAX_DIGITS - 1, -1)
        if self._fine is not None:
            candidates = [self._fine, *candidates]
        for exponent in candidates:
            # A value below half a step but within the tolerance of 0 is "on" a grid far
            # coarser than itself, and not on the finer ones: it is counted one by one, and
            # does not make a grid fine.
            on = on_grid(finite, exponent) & ~_rounds_to_zero(finite, exponent)
            if np.mean(on) >= GRID_SHARE:
                self._fine = exponent
                return exponent, on
        return None, on

    def _count_each(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        counted = pl.Series(values).value_counts()
        distinct = counted[:, 0].to_numpy()
        counts = counted[:, 1].to_numpy().astype(np.int64)
        for index, exponent in enumerate(self.EXPONENTS):
            self.on_grid[index] += int(counts[on_grid(distinct, int(exponent))].sum())

    def exponent(self) -> int:
        if self.values == 0:
            return 0
        largest = self.largest
        top = max(0, int(np.floor(np.log10(largest))) if largest > 0 else 0)
        for exponent in range(top, -MAX_DIGITS - 1, -1):
            # Values beyond 1e20 are not prices or sizes; no grid that coarse is counted.
            index = exponent + MAX_DIGITS
            count = self.on_grid[index] if index < self.on_grid.size else 0
            if count / self.values >= GRID_SHARE:
                return exponent
        return -MAX_DIGITS


def present_values(table: pa.Table, names: list[str]) -> np.ndarray:
    """The values of these columns, column after column (a level's values repeat from row to
    row, which the grid tally is quick to count)."""
    if not table.num_rows:
        return np.zeros(0)
    matrix = np.stack(
        [table[name].to_numpy(zero_copy_only=False).astype(np.float64) for name in names], axis=0
    )
    return matrix[~np.isnan(matrix)]
