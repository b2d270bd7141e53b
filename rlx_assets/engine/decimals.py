"""Floats to exact decimals through the instrument grid, and scaled int64 to Parquet decimals.

A vendor float such as 2683.0 or 3.78826 is the nearest binary value to a decimal on the
instrument's grid; casting it to a decimal directly keeps the binary noise. Here a float becomes
an integer count of grid steps, rounded only within float rounding; values off their grid by more
than that are precision-loss warnings: counted and kept with their own exact (shortest) decimal.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DECIMAL_TYPE = pa.decimal128(38, 18)
MAX_DIGITS = 18
# A grid holds when 99% of the values lie on it: a dirty minority (values a few parts per
# billion off, a float written through another unit) is flagged, not absorbed by a finer grid.
GRID_SHARE = 0.99
# Float rounding: a few ulps of the value, and never less than 1e-9 of a step.
ULPS = 4 * np.finfo(np.float64).eps
MIN_TOLERANCE_STEPS = 1e-9
_INT64_LIMIT = 2**63 - 1


def to_steps(values: np.ndarray, exponent: int) -> np.ndarray:
    return values / (10.0**exponent) if exponent >= 0 else values * (10.0**-exponent)


def _off_grid_steps(values: np.ndarray, exponent: int) -> np.ndarray:
    """Distance from the nearest grid point in steps of 10**exponent, minus float rounding."""
    in_steps = to_steps(values, exponent)
    distance = np.abs(in_steps - np.rint(in_steps))
    tolerance = np.maximum(MIN_TOLERANCE_STEPS, ULPS * np.abs(in_steps))
    return distance - tolerance


def on_grid(values: np.ndarray, exponent: int) -> np.ndarray:
    return _off_grid_steps(values, exponent) <= 0


def infer_step_exponent(values: np.ndarray, min_exponent: int = -MAX_DIGITS) -> int:
    """The coarsest power-of-ten step that at least GRID_SHARE of the values lie on."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0
    largest = float(np.max(np.abs(finite)))
    top = max(0, int(np.floor(np.log10(largest))) if largest > 0 else 0)
    for exponent in range(top, min_exponent - 1, -1):
        if np.mean(on_grid(finite, exponent)) >= GRID_SHARE:
            return exponent
    return min_exponent


def exponent_of_step(step: str | Decimal) -> int:
    """'0.01' -> -2. Grids from settings must be powers of ten."""
    value = Decimal(step).normalize()
    sign, digits, exponent = value.as_tuple()
    if sign or digits != (1,):
        raise ValueError(f"grid step {step!r} is not a positive power of ten")
    return int(exponent)


@dataclass(frozen=True)
class ScaledValues:
    """Exact values as integers at 10**-digits; `off_grid` marks precision-loss warnings."""

    ints: np.ndarray  # int64
    digits: int
    off_grid: np.ndarray  # bool
    unrepresentable: int  # values needing more than MAX_DIGITS (rounded there, still flagged)


def _decimal_digits(value: float) -> int:
    exponent = Decimal(repr(float(value))).as_tuple().exponent
    return max(0, -int(exponent))


def scale_floats(values: np.ndarray, exponent: int, largest: float | None = None) -> ScaledValues:
    """Finite floats on a grid of 10**exponent -> exact integers (see module docstring).

    `largest` (|value| of the whole day, when `values` are one chunk of it) bounds the digits as
    the whole day would, so every chunk of a day gets the digits of one whole-day call or fewer.
    """
    values = np.asarray(values, dtype=np.float64)
    grid_digits = max(0, -exponent)
    off = _off_grid_steps(values, exponent) > 0 if values.size else np.zeros(0, bool)
    digits = grid_digits
    off_values = values[off]
    if off_values.size:
        digits = max(digits, max(_decimal_digits(v) for v in off_values))
    if largest is None:
        largest = float(np.max(np.abs(values))) if values.size else 0.0
    while digits > grid_digits and largest * 10.0**digits >= _INT64_LIMIT / 2:
        digits -= 1
    digits = min(digits, MAX_DIGITS)

    in_steps = values / (10.0**exponent) if exponent >= 0 else values * (10.0**-exponent)
    steps = np.rint(in_steps).astype(np.int64)
    # Grid steps coarser than 1 (exponent > 0) still land on whole numbers.
    multiplier = 10 ** (digits + exponent)
    ints = steps * np.int64(multiplier)
    unrepresentable = 0
    for index in np.flatnonzero(off):
        exact = Decimal(repr(float(values[index])))
        scaled = exact.scaleb(digits)
        rounded = scaled.to_integral_value()
        if rounded != scaled:
            unrepresentable += 1
        ints[index] = int(rounded)
    return ScaledValues(ints=ints, digits=digits, off_grid=off, unrepresentable=unrepresentable)


_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


@numba.njit(cache=True, nogil=True, inline="always")
def _multiply(a, b):
    """Unsigned 64 x 64 -> 128-bit product as (low, high) words (uint64 limbs of 32 bits)."""
    a0, a1 = a & _LOW32, a >> _SHIFT32
    b0, b1 = b & _LOW32, b >> _SHIFT32
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    middle = (p00 >> _SHIFT32) + (p01 & _LOW32) + (p10 & _LOW32)
    low = (p00 & _LOW32) | (middle << _SHIFT32)
    high = p11 + (p01 >> _SHIFT32) + (p10 >> _SHIFT32) + (middle >> _SHIFT32)
    return low, high


@numba.njit(cache=True, nogil=True)
def _widen_kernel(ints, factor, words):
    """words[i] = ints[i] * factor as two's-complement 128-bit (low, high)."""
    for i in range(ints.shape[0]):
        value = ints[i]
        low, high = _multiply(np.uint64(abs(value)), factor)
        if value < 0:
            low = ~low + np.uint64(1)
            high = ~high + (np.uint64(1) if low == np.uint64(0) else np.uint64(0))
        words[i, 0] = low
        words[i, 1] = high


@numba.njit(cache=True, nogil=True)
def _narrow_kernel(words, valid, divisor, divisor_float, out):
    """out[i] = words[i] / divisor when that is an exact int64; returns the first index where it
    is not (or -1). The quotient is estimated in float and proven by multiplying back."""
    for i in range(words.shape[0]):
        if valid.shape[0] and not valid[i]:
            out[i] = 0
            continue
        low, high = words[i, 0], words[i, 1]
        negative = high >> np.uint64(63) == np.uint64(1)
        if negative:
            low = ~low + np.uint64(1)
            high = ~high + (np.uint64(1) if low == np.uint64(0) else np.uint64(0))
        magnitude = float(high) * 18446744073709551616.0 + float(low)
        quotient = np.rint(magnitude / divisor_float)
        if quotient >= 9.2e18:
            return i
        q = np.uint64(quotient)
        back_low, back_high = _multiply(q, divisor)
        if back_low != low or back_high != high or q > np.uint64(9223372036854775807):
            return i
        out[i] = -np.int64(q) if negative else np.int64(q)
    return -1


def scaled_to_decimal(ints: np.ndarray, digits: int, valid: np.ndarray | None = None) -> pa.Array:
    """int64 at 10**-digits -> decimal128(38, 18), exactly (no float on the way)."""
    if not 0 <= digits <= MAX_DIGITS:
        raise ValueError(f"{digits} fractional digits is outside 0..{MAX_DIGITS}")
    ints = np.ascontiguousarray(ints, dtype=np.int64)
    words = np.empty((ints.size, 2), dtype=np.uint64)
    _widen_kernel(ints, np.uint64(10 ** (MAX_DIGITS - digits)), words)
    validity = None
    null_count = 0
    if valid is not None and not valid.all():
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        null_count = int(ints.size - valid.sum())
    return pa.Array.from_buffers(
        DECIMAL_TYPE, ints.size, [validity, pa.py_buffer(words)], null_count=null_count
    )


@numba.njit(cache=True, nogil=True)
def _widen_columns_kernel(matrix, factor, words):
    """words[c, i] = matrix[i, c] * factor as 128-bit: each column contiguous."""
    for column in range(matrix.shape[1]):
        for i in range(matrix.shape[0]):
            value = matrix[i, column]
            low, high = _multiply(np.uint64(abs(value)), factor)
            if value < 0:
                low = ~low + np.uint64(1)
                high = ~high + (np.uint64(1) if low == np.uint64(0) else np.uint64(0))
            words[column, i, 0] = low
            words[column, i, 1] = high


def scaled_columns_to_decimal(matrix: np.ndarray, digits: int, valid: np.ndarray) -> list[pa.Array]:
    """Each column of an int64 [rows, columns] matrix at 10**-digits as a decimal128(38, 18)
    array, null where `valid` (same shape) is False: `scaled_to_decimal` per column, one pass."""
    if not 0 <= digits <= MAX_DIGITS:
        raise ValueError(f"{digits} fractional digits is outside 0..{MAX_DIGITS}")
    rows, columns = matrix.shape
    words = np.empty((columns, rows, 2), dtype=np.uint64)
    _widen_columns_kernel(
        np.asarray(matrix, dtype=np.int64), np.uint64(10 ** (MAX_DIGITS - digits)), words
    )
    nulls = rows - valid.sum(axis=0)
    bitmaps = np.ascontiguousarray(np.packbits(valid.T, axis=1, bitorder="little"))
    return [
        pa.Array.from_buffers(
            DECIMAL_TYPE,
            rows,
            [pa.py_buffer(bitmaps[column]) if nulls[column] else None, pa.py_buffer(words[column])],
            null_count=int(nulls[column]),
        )
        for column in range(columns)
    ]


def decimal_digits_needed(values: pa.Array | pa.ChunkedArray) -> int:
    """The fewest fractional digits that hold every value exactly."""
    for digits in range(MAX_DIGITS + 1):
        try:
            pc.cast(values, pa.decimal128(38, digits), safe=True)
        except pa.ArrowInvalid:
            continue
        return digits
    return MAX_DIGITS


def decimal_to_scaled(values: pa.Array | pa.ChunkedArray, digits: int) -> np.ndarray:
    """decimal128 -> int64 at 10**-digits (nulls become 0); raises if a value does not fit."""
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            values = values.chunk(0)
        else:  # chunk by chunk: no copy of the decimals first
            parts = [decimal_to_scaled(chunk, digits) for chunk in values.chunks]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    scale = values.type.scale if isinstance(values.type, pa.Decimal128Type) else None
    if scale is not None and digits <= scale <= MAX_DIGITS:
        words = np.frombuffer(values.buffers()[1], dtype=np.uint64)
        words = words[2 * values.offset : 2 * (values.offset + len(values))].reshape(-1, 2)
        valid = (
            values.is_valid().to_numpy(zero_copy_only=False)
            if values.null_count
            else np.zeros(0, dtype=np.bool_)
        )
        divisor = 10 ** (scale - digits)
        out = np.empty(len(values), dtype=np.int64)
        if _narrow_kernel(words, valid, np.uint64(divisor), float(divisor), out) < 0:
            return out
    # Values that do not divide exactly or do not fit: the strict cast says which.
    return _decimal_to_scaled_by_cast(values, digits)


def _decimal_to_scaled_by_cast(values: pa.Array, digits: int) -> np.ndarray:
    narrow = pc.cast(values, pa.decimal128(38, digits), safe=True)
    narrow = pc.fill_null(narrow, pa.scalar(Decimal(0), narrow.type))
    words = np.frombuffer(narrow.buffers()[1], dtype=np.int64)
    words = words[2 * narrow.offset : 2 * (narrow.offset + len(narrow))].reshape(-1, 2)
    low, high = words[:, 0], words[:, 1]
    if not np.array_equal(high, np.where(low < 0, -1, 0)):
        raise OverflowError(f"decimal values do not fit int64 at {digits} fractional digits")
    return low.copy()
