import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from rlx_assets.engine.duplicates import first_of_duplicates, row_hashes


def _reference(table: pa.Table) -> np.ndarray:
    """Every row compared in full, the first of each distinct row kept."""
    return (
        pl.from_arrow(table).select(pl.struct(pl.all()).is_first_distinct()).to_series().to_numpy()
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("group_rows", [3, 45, 500])
def test_first_of_duplicates_equals_a_full_comparison(seed: int, group_rows: int) -> None:
    """Groups small and large (one message of a burst), duplicates anywhere in a group,
    nulls, both zeros and NaN among the values, a text column."""
    rng = np.random.default_rng(seed)
    rows = 6_000
    groups = np.sort(rng.integers(0, rows // group_rows + 1, rows))
    prices = rng.choice([0.0, -0.0, np.nan, 1.5, 2.25, 3.0], rows)
    table = pa.table(
        {
            "sequence_number": pa.array(groups),
            "side_is_bid": pa.array(rng.random(rows) < 0.5, mask=rng.random(rows) < 0.05),
            "price": pa.array(prices, mask=rng.random(rows) < 0.05),
            "size": pa.array(rng.integers(0, 4, rows).astype(np.float64)),
            "side": pa.array(rng.choice(["buy", "sell"], rows), mask=rng.random(rows) < 0.05),
            "received_time": pa.array(rng.integers(0, 3, rows), mask=rng.random(rows) < 0.05),
        }
    )
    unique = first_of_duplicates(table, table.column_names, ["sequence_number"])
    assert (~unique).sum() > 0  # the draw makes duplicates
    assert np.array_equal(unique, _reference(table))


def test_equal_rows_hash_alike_as_polars_compares_them() -> None:
    table = pa.table(
        {
            "x": pa.array([0.0, -0.0, float("nan"), float("nan"), None, None]),
            "s": pa.array(["a", "a", None, None, "b", "b"]),
        }
    )
    hashes = row_hashes(table, ["x", "s"])
    assert hashes[0] == hashes[1] and hashes[2] == hashes[3] and hashes[4] == hashes[5]
    assert len({hashes[0], hashes[2], hashes[4]}) == 3


def test_wide_rows_find_their_duplicates_too() -> None:
    """A book snapshot's many level columns are hashed by polars at once."""
    rng = np.random.default_rng(5)
    rows = 3_000
    columns = {"sequence_number": pa.array(np.sort(rng.integers(0, 300, rows)))}
    for level in range(20):
        values = rng.choice([np.nan, 1.0, 2.0], rows)
        columns[f"bid_{level}_price"] = pa.array(values, mask=rng.random(rows) < 0.02)
    table = pa.table(columns)
    copies = table.take(pa.array(rng.integers(0, rows, 300)))
    table = pa.concat_tables([table, copies]).sort_by("sequence_number")
    unique = first_of_duplicates(table, table.column_names, ["sequence_number"])
    assert (~unique).sum() > 0
    assert np.array_equal(unique, _reference(table))
