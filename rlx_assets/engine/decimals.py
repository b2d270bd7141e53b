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


_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_POWERS_OF_TEN = 10.0 ** np.arange(23)  # exact in float64 up to 10**22
_POWERS_OF_TEN_MOD_2_64 = np.array([10**k % 2**64 for k in range(39)], dtype=np.uint64)


def to_steps(values: np.ndarray, exponent: int) -> np.ndarray:
    return values / (10.0**exponent) if exponent >= 0 else values * (10.0**-exponent)


def _off_grid_steps(values: np.ndarray, exponent: int) -> np.ndarray:
    """Distance from the nearest grid point in steps of 10**exponent, minus float rounding.

    A value other than 0 whose nearest grid point is 0 is off the grid however far below the
    tolerance it is: on that grid it would be written as 0. (Otherwise one size of 1e10 in a day
    of sizes below 10 makes 1e10 the day's size step, every size within 1e-9 of a step of 0.)"""
    in_steps = to_steps(values, exponent)
    rounded = np.rint(in_steps)
    distance = np.abs(in_steps - rounded)
    tolerance = np.maximum(MIN_TOLERANCE_STEPS, ULPS * np.abs(in_steps))
    return np.where((rounded == 0) & (values != 0), np.inf, distance - tolerance)


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
    values = np.ascontiguousarray(values, dtype=np.float64)
    grid_digits = max(0, -exponent)
    # `to_steps`, `np.rint` and `on_grid`'s test in one compiled pass, bit for bit.
    steps = np.empty(values.size, dtype=np.int64)
    off = np.empty(values.size, dtype=np.bool_)
    factor = 10.0**exponent if exponent >= 0 else 10.0**-exponent
    _steps_off_grid(values, factor, exponent >= 0, MIN_TOLERANCE_STEPS, ULPS, steps, off)
    digits = grid_digits
    off_values = values[off]
    if off_values.size:
        digits = max(digits, max(_decimal_digits(v) for v in off_values))
    if largest is None:
        largest = float(np.max(np.abs(values))) if values.size else 0.0
    # (Capped first: a value of 1e-300 off the grid asks for 300 digits, and 10.0**300 * largest
    # overflows; the cap commutes with the bound.)
    digits = _digits_that_fit(min(digits, MAX_DIGITS), grid_digits, largest)

    # Grid steps coarser than 1 (exponent > 0) still land on whole numbers.
    multiplier = 10 ** (digits + exponent)
    ints = steps if multiplier == 1 else steps * np.int64(multiplier)
    unrepresentable = 0
    for index in np.flatnonzero(off):
        exact = Decimal(repr(float(values[index])))
        scaled = exact.scaleb(digits)
        rounded = scaled.to_integral_value()
        if rounded != scaled:
            unrepresentable += 1
        ints[index] = int(rounded)
    return ScaledValues(ints=ints, digits=digits, off_grid=off, unrepresentable=unrepresentable)


def _digits_that_fit(digits: int, grid_digits: int, largest: float) -> int:
    """Fewer digits, down to the grid's, while `largest` would not fit int64 at them."""
    while digits > grid_digits and largest * 10.0**digits >= _INT64_LIMIT / 2:
        digits -= 1
    return digits


def digits_fit(digits: int, exponent: int, largest: float) -> bool:
    """Whether `scale_floats` gives a chunk the same `digits` with this larger `largest`: a
    chunk converted before the day's largest value was seen holds only when this is true."""
    return _digits_that_fit(digits, max(0, -exponent), largest) == digits


@numba.njit(cache=True, nogil=True)
def _steps_off_grid(values, factor, divide, min_tolerance, ulps, steps, off):
    """Per value: its whole steps of the grid (`to_steps`, then `np.rint`, as int64; int64's
    minimum where that does not fit, as numpy's cast gives on x86) and whether it lies off the
    grid by more than float rounding, or rounds to 0 without being 0 (`_off_grid_steps(...) >
    0`)."""
    for i in range(values.size):
        in_steps = values[i] / factor if divide else values[i] * factor
        rounded = np.rint(in_steps)
        tolerance = max(min_tolerance, ulps * abs(in_steps))
        off[i] = abs(in_steps - rounded) - tolerance > 0 or (rounded == 0 and values[i] != 0)
        if abs(rounded) < 9.223372036854775807e18:
            steps[i] = np.int64(rounded)
        else:
            steps[i] = np.iinfo(np.int64).min


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


_WIDEN_BLOCK_ROWS = 512  # rows of the row-major matrix that stay in cache across its columns


@numba.njit(cache=True, nogil=True)
def _widen_columns_kernel(matrix, factor, words):
    """words[c, i] = matrix[i, c] * factor as 128-bit: each column contiguous. A block of rows
    at a time, column by column: the strided reads of a block stay in cache (30% faster on a
    book's 40 columns than whole columns)."""
    rows, columns = matrix.shape
    for start in range(0, rows, _WIDEN_BLOCK_ROWS):
        end = min(rows, start + _WIDEN_BLOCK_ROWS)
        for column in range(columns):
            for i in range(start, end):
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


def _chunks(column: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def _words_to_float(low: np.ndarray, high: np.ndarray, scale: int) -> np.ndarray:
    """128-bit two's-complement integers at 10**-scale -> float64.

    With the low word read as signed, value = (high + carry) * 2**64 + low: exact up to the
    final rounding when it fits int64 (a 0.01 spread at 18 digits), within two ulps otherwise.
    """
    signed_low = low.view(np.int64)
    high_part = high + (signed_low < 0)
    values = high_part.astype(np.float64)
    values *= 2.0**64
    values += signed_low
    values /= 10.0**scale
    return values


def _decimal_words(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    words = np.frombuffer(chunk.buffers()[1], dtype=np.int64)
    words = words[2 * chunk.offset : 2 * (chunk.offset + len(chunk))].reshape(-1, 2)
    return words[:, 0].view(np.uint64), words[:, 1]


def _null_mask(chunk: pa.Array) -> np.ndarray:
    if chunk.null_count == 0:
        return np.zeros(len(chunk), dtype=bool)
    return chunk.is_null().to_numpy(zero_copy_only=False)


def _correctly_rounded(values: np.ndarray, low: np.ndarray, scale: int) -> np.ndarray:
    """The nearest float to each decimal that has at most ~15 significant digits.

    Per value, d digits keep |value| * 10**d below 2**49, where the two-ulp error of the float
    is under a quarter unit: n = rint(value * 10**d) is then the decimal's own integer whenever
    the decimal has at most d digits, which n * 10**(scale - d) equal to the low word modulo
    2**64 confirms. n / 10**d (both exact) is a single correctly rounded division.
    """
    finite = np.isfinite(values) & (values != 0)
    _, exponent = np.frexp(np.where(finite, values, 1.0))  # |value| < 2**exponent
    digits = np.floor((49 - exponent) * np.log10(2.0)).astype(np.int64)
    usable = finite & (digits >= 0)
    digits = np.clip(digits, 0, min(scale, len(_POWERS_OF_TEN) - 1))
    power = _POWERS_OF_TEN[digits]
    steps = np.rint(np.where(usable, values, 0.0) * power)
    check = steps.astype(np.int64).view(np.uint64) * _POWERS_OF_TEN_MOD_2_64[scale - digits]
    exact = usable & (check == low)
    return np.where(exact, steps / power, values)


def to_float(
    column: pa.ChunkedArray | pa.Array, null: float = np.nan, correctly_rounded: bool = False
) -> np.ndarray:
    """A decimal (or any numeric) column as float64, nulls as `null`.

    decimal128 is read from its buffers: a pyarrow cast costs ~50 ns a value, too slow for the
    110 million book and delta values of a full day. The result is within two ulps of the
    decimal (the same float for the same decimal, so equality tests hold); `correctly_rounded`
    makes it the nearest float, as a cast would, at about twice the cost.
    """
    chunks = [chunk for chunk in _chunks(column) if len(chunk)]
    if not chunks:
        return np.zeros(0, dtype=np.float64)
    if pa.types.is_decimal128(chunks[0].type):
        # One pass over the column, not one per Parquet row group.
        array = pa.chunked_array(chunks).combine_chunks() if len(chunks) > 1 else chunks[0]
        low, high = _decimal_words(array)
        values = _words_to_float(low, high, array.type.scale)
        mask = _null_mask(array)
        if correctly_rounded:
            values[mask] = np.nan
            values = _correctly_rounded(values, low, array.type.scale)
    else:
        array = pa.chunked_array(chunks)
        values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        mask = array.is_null().to_numpy(zero_copy_only=False)
    if mask.any():
        values[mask] = null
    return values


def decimal_difference(
    left: pa.ChunkedArray | pa.Array, right: pa.ChunkedArray | pa.Array
) -> np.ndarray:
    """left - right as float64 (NaN where either is null), exact on the decimals first.

    A spread of 0.01 is then the float 0.01, not 61686.0 - 61685.99 = 0.01000000000218.
    """
    if not (
        pa.types.is_decimal128(left.type)
        and pa.types.is_decimal128(right.type)
        and left.type.scale == right.type.scale
    ):
        return to_float(left) - to_float(right)
    left_array, right_array = (
        array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
        for array in (left, right)
    )
    if len(left_array) == 0:
        return np.zeros(0, dtype=np.float64)
    left_low, left_high = _decimal_words(left_array)
    right_low, right_high = _decimal_words(right_array)
    low = left_low - right_low  # wraps modulo 2**64, the borrow goes to the high word
    high = left_high - right_high - (left_low < right_low).astype(np.int64)
    values = _words_to_float(low, high, left.type.scale)
    values[_null_mask(left_array) | _null_mask(right_array)] = np.nan
    return values
