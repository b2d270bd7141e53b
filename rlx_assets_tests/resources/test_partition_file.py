"""`PartitionFile` reads what Arrow's reader reads: the same values, types, order and table
metadata, whatever the batch size or the columns asked for, decimals decoded by polars or not."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_assets.resources.parquet_files import DEFAULT_COMPRESSION, write_options
from rlx_assets.resources.partition_file import PartitionFile

DECIMAL = pa.decimal128(38, 18)


def _table(rows: int) -> pa.Table:
    prices = [None if i % 7 == 3 else Decimal(60000) + Decimal(i) / 100 for i in range(rows)]
    sizes = [Decimal(i % 11) / 1000 + Decimal("1e-18") for i in range(rows)]
    table = pa.table(
        {
            "sequence_number": pa.array(range(rows), pa.int64()),
            "price": pa.array(prices, DECIMAL),
            "side": pa.array([None if i % 5 == 0 else "bid" for i in range(rows)], pa.string()),
            "size": pa.array(sizes, DECIMAL),
            "side_is_bid": pa.array([i % 2 == 0 for i in range(rows)]),
            "levels": pa.array([[[p, p]] if i % 3 else None for i, p in enumerate(prices)]),
        }
    )
    return table.replace_schema_metadata({"rlx.price_digits": "2"})


def _write(path: Path, table: pa.Table, group_rows: int) -> None:
    """As the IO manager writes (its pinned options), in row groups of `group_rows`."""
    pq.write_table(table, path, row_group_size=group_rows, **write_options(DEFAULT_COMPRESSION))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    path = tmp_path_factory.mktemp("partition-file") / "part-0.parquet"
    table = _table(250)
    _write(path, table, group_rows=60)
    assert pq.ParquetFile(path).metadata.num_row_groups == 5
    return path, table


COLUMN_SETS = [
    None,
    ["price"],
    ["size", "sequence_number", "price"],
    ["side", "levels", "side_is_bid"],
    ["levels", "size"],
]


@pytest.mark.parametrize("columns", COLUMN_SETS)
@pytest.mark.parametrize("batch_size", [1, 7, 60, 1000])
@pytest.mark.parametrize("local", [True, False])
def test_batches_hold_what_arrow_reads(
    written: tuple[Path, pa.Table], columns: list[str] | None, batch_size: int, local: bool
) -> None:
    path, table = written
    expected = pq.ParquetFile(path).read(columns=columns)
    opened = PartitionFile(pq.ParquetFile(path), str(path) if local else None)
    batches = list(opened.iter_batches(batch_size, columns=columns))
    assert all(0 < batch.num_rows <= batch_size for batch in batches)
    got = pa.Table.from_batches(batches)
    assert got.schema.equals(expected.schema, check_metadata=True)
    assert got.equals(expected)
    assert got.num_rows == table.num_rows


@pytest.mark.parametrize("columns", COLUMN_SETS)
def test_read_is_arrows_read(written: tuple[Path, pa.Table], columns: list[str] | None) -> None:
    path, _ = written
    expected = pq.ParquetFile(path).read(columns=columns)
    got = PartitionFile(pq.ParquetFile(path), str(path)).read(columns=columns)
    assert got.schema.equals(expected.schema, check_metadata=True)
    assert got.equals(expected)


def test_an_unknown_column_is_named(written: tuple[Path, pa.Table]) -> None:
    path, _ = written
    with pytest.raises(KeyError, match="no_such"):
        next(PartitionFile(pq.ParquetFile(path), str(path)).iter_batches(10, ["price", "no_such"]))


def test_an_empty_file_gives_no_batch_and_an_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "part-0.parquet"
    _write(path, _table(0), group_rows=60)
    opened = PartitionFile(pq.ParquetFile(path), str(path))
    assert list(opened.iter_batches(10, ["price", "side"])) == []
    empty = opened.read(["price", "side"])
    assert empty.num_rows == 0
    assert empty.schema.names == ["price", "side"]
