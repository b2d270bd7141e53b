from decimal import Decimal

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlx_assets.engine.decimals import (
    DECIMAL_TYPE,
    MAX_DIGITS,
    decimal_digits_needed,
    decimal_to_scaled,
    exponent_of_step,
    infer_step_exponent,
    on_grid,
    scale_floats,
    scaled_columns_to_decimal,
    scaled_to_decimal,
)


def test_a_binary_cast_keeps_float_noise_the_grid_does_not() -> None:
    # Why the grid exists: polars' own cast turns 2683.0 into 2683.000000000000262144.
    noisy = pl.Series([2683.0]).cast(pl.Decimal(38, 18)).to_list()[0]
    assert noisy != Decimal("2683")
    scaled = scale_floats(np.array([2683.0]), -2)
    assert scaled_to_decimal(scaled.ints, scaled.digits).to_pylist() == [Decimal("2683")]


@pytest.mark.parametrize(
    ("values", "exponent"),
    [
        ([61837.63, 61837.62, 61830.0], -2),
        ([3.78826, 0.00009, 1.25869], -5),
        ([100.0, 2500.0, 700.0], 2),
        ([0.1 + 0.2, 0.7], -1),  # float noise is not a finer grid
    ],
)
def test_infers_the_coarsest_power_of_ten_grid(values: list[float], exponent: int) -> None:
    assert infer_step_exponent(np.array(values)) == exponent


def test_grid_tolerates_a_dirty_minority_below_one_in_a_hundred() -> None:
    values = np.full(20_000, 1.25)
    values[:199] = 1.2501
    assert infer_step_exponent(values) == -2
    values[:201] = 1.2501
    assert infer_step_exponent(values) == -4


def test_prices_a_few_parts_per_billion_off_are_flagged_not_absorbed() -> None:
    """12 trades in 6,000 written through another unit: the tick stays 0.01 and all 12 are
    flagged (a finer grid would have absorbed 10 of them)."""
    rng = np.random.default_rng(3)
    prices = rng.integers(6_000_000, 6_100_000, 6_000) / 100
    prices[::500] *= 1 + 3e-9
    assert infer_step_exponent(prices) == -2
    assert int(scale_floats(prices, -2).off_grid.sum()) == 12


def test_off_grid_values_are_flagged_and_kept_exactly() -> None:
    scaled = scale_floats(np.array([3.78826, 25.426189, 0.00001]), -5)
    assert scaled.off_grid.tolist() == [False, True, False]
    assert scaled.digits == 6
    assert scaled.ints.tolist() == [3_788_260, 25_426_189, 10]
    assert scaled_to_decimal(scaled.ints, scaled.digits).to_pylist() == [
        Decimal("3.78826"),
        Decimal("25.426189"),
        Decimal("0.00001"),
    ]


def test_decimal_round_trip_with_nulls_and_negatives() -> None:
    ints = np.array([-1_500, 0, 123_456_789_012], dtype=np.int64)
    valid = np.array([True, False, True])
    array = scaled_to_decimal(ints, 3, valid)
    assert array.type == DECIMAL_TYPE
    assert array.to_pylist() == [Decimal("-1.5"), None, Decimal("123456789.012")]
    assert decimal_digits_needed(array) == 3
    assert decimal_to_scaled(array, 3).tolist() == [-1_500, 0, 123_456_789_012]
    assert decimal_to_scaled(pa.chunked_array([array.slice(2)]), 5).tolist() == [12_345_678_901_200]


def test_decimal_to_scaled_refuses_to_lose_digits() -> None:
    array = scaled_to_decimal(np.array([12_345]), 4)
    with pytest.raises(pa.ArrowInvalid):
        decimal_to_scaled(array, 2)


@pytest.mark.parametrize(("step", "exponent"), [("0.01", -2), ("0.00001", -5), ("1", 0), ("10", 1)])
def test_grid_steps_from_settings(step: str, exponent: int) -> None:
    assert exponent_of_step(step) == exponent


@pytest.mark.parametrize("step", ["0.05", "-0.01", "2"])
def test_grid_steps_must_be_powers_of_ten(step: str) -> None:
    with pytest.raises(ValueError, match="power of ten"):
        exponent_of_step(step)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-(2**63) + 1, 2**63 - 1), min_size=1, max_size=50),
    st.integers(0, MAX_DIGITS),
)
def test_compiled_decimal_conversions_are_exact(ints: list[int], digits: int) -> None:
    """The 128-bit kernels agree with Python's Decimal on any int64, at any digits."""
    array = scaled_to_decimal(np.array(ints, dtype=np.int64), digits)
    assert array.to_pylist() == [Decimal(value).scaleb(-digits) for value in ints]
    assert decimal_to_scaled(array, digits).tolist() == ints
    if digits:
        # One digit fewer holds only the multiples of ten.
        tens = [value for value in ints if value % 10 == 0]
        if len(tens) == len(ints):
            assert decimal_to_scaled(array, digits - 1).tolist() == [v // 10 for v in ints]
        else:
            with pytest.raises((pa.ArrowInvalid, OverflowError)):
                decimal_to_scaled(array, digits - 1)


def test_decimal_to_scaled_reads_sliced_arrays() -> None:
    array = scaled_to_decimal(np.arange(-5, 5, dtype=np.int64), 3)
    assert decimal_to_scaled(array.slice(7, 2), 3).tolist() == [2, 3]


def test_matrix_columns_convert_like_single_columns() -> None:
    generator = np.random.default_rng(7)
    matrix = generator.integers(-(10**12), 10**12, size=(37, 5))
    valid = generator.random((37, 5)) > 0.3
    valid[:, 2] = True  # a column without nulls has no validity bitmap
    arrays = scaled_columns_to_decimal(matrix, 4, valid)
    for column, array in enumerate(arrays):
        assert array.equals(scaled_to_decimal(matrix[:, column], 4, valid[:, column]))
    assert arrays[2].null_count == 0 and arrays[2].buffers()[0] is None


@pytest.mark.parametrize("exponent", [-18, -8, -2, 0, 2])
def test_scaling_flags_and_rounds_as_the_grid_formula_does(exponent: int) -> None:
    """The compiled pass gives `on_grid`'s flags and numpy's rounding, bit for bit, also on
    halfway values, float noise, signed zeros and values too large for int64 steps."""
    rng = np.random.default_rng(exponent + 20)
    values = np.concatenate(
        [
            np.round(rng.uniform(-1e5, 1e5, 20_000), 2),
            rng.uniform(0, 1, 2_000),
            [0.0, -0.0, 0.1 + 0.2, 123.455, 2.5, -2.5, 5e-324, 1e300, -1e300, 9.3e18],
        ]
    )
    with np.errstate(over="ignore", invalid="ignore"):
        in_steps = values / 10.0**exponent if exponent >= 0 else values * 10.0**-exponent
        rounded = np.rint(in_steps)
        tolerance = np.maximum(1e-9, 4 * np.finfo(np.float64).eps * np.abs(in_steps))
        # Off by more than float rounding, or nearest to 0 without being 0.
        expected_off = (np.abs(in_steps - rounded) - tolerance > 0) | (
            (rounded == 0) & (values != 0)
        )
    scaled = scale_floats(values, exponent)
    assert np.array_equal(scaled.off_grid, expected_off)
    fits = ~expected_off & (np.abs(rounded) < 2**62)
    multiplier = 10 ** (scaled.digits + exponent)
    assert np.array_equal(scaled.ints[fits], rounded[fits].astype(np.int64) * multiplier)


def test_a_value_nearest_to_zero_on_a_grid_is_off_it() -> None:
    """Within 1e-9 of a step of 0 is float rounding for a price near the step, not for a size of
    1 on a grid of 1e10: there it would be written as 0."""
    assert not on_grid(np.array([1.0]), 10).any()
    assert on_grid(np.array([0.0, 1e10, 2e10]), 10).all()
    sizes = np.round(np.random.default_rng(0).uniform(0.001, 5, 10_000), 5)
    sizes = np.concatenate([sizes, [1e10]])
    assert infer_step_exponent(sizes) == -5
    scaled = scale_floats(np.array([1.0, 2e10, 1e-300]), -5)
    assert scaled.off_grid.tolist() == [False, False, True]  # 1e-300 is not a size of 0
    # As many digits as 2e10 leaves room for; 1e-300 needs more: rounded there, and counted.
    assert scaled.digits == 8 and scaled.unrepresentable == 1
    assert scale_floats(np.array([1.0, 2e10]), 10).off_grid.tolist() == [True, False]
