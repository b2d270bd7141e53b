"""A partition's Parquet file opened for reading in batches (`PartitionFile`).

Arrow's Parquet reader turns each 16-byte big-endian decimal into a decimal128 one value at a
time, at about 30M values a second on these machines; polars' reader decodes the same column two
to three times faster. The book, event and quality steps read tens of millions of exact prices and
sizes each, so on a local file the decimal columns are decoded by polars, row group by row group,
and the other columns by Arrow. The values are the same either way (tested column by column); a
file on an object store is read by Arrow alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.engine.merge import one_chunk

DEFAULT_BATCH_ROWS = 1 << 16


class PartitionFile:
    """What the steps use of a `pyarrow.parquet.ParquetFile` (`metadata`, `schema_arrow`,
    `iter_batches`), with the decimals of a local file decoded by polars."""

    def __init__(self, parquet: pq.ParquetFile, local_path: str | None = None) -> None:
        self.parquet = parquet
        self.local_path = local_path

    @property
    def metadata(self) -> pq.FileMetaData:
        return self.parquet.metadata

    @property
    def schema_arrow(self) -> pa.Schema:
        return self.parquet.schema_arrow

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole file (or these columns) as one table."""
        names = list(self.schema_arrow.names if columns is None else columns)
        schema = pa.schema(
            [self.schema_arrow.field(name) for name in names], metadata=self._table_metadata()
        )
        batches = self.iter_batches(max(1, self.metadata.num_rows), names)
        return pa.Table.from_batches(list(batches), schema=schema)

    def iter_batches(
        self, batch_size: int = DEFAULT_BATCH_ROWS, columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The file's rows in order, in record batches of at most `batch_size` rows (a batch
        never spans two row groups), holding `columns` (all, if None) in that order."""
        schema = self.schema_arrow
        names = list(schema.names if columns is None else columns)
        missing = [name for name in names if name not in schema.names]
        if missing:
            raise KeyError(f"{self.local_path or 'partition file'} has no column {missing}")
        fields = [schema.field(name) for name in names]
        decimals = [field.name for field in fields if pa.types.is_decimal128(field.type)]
        if self.local_path is None or not decimals:
            yield from self.parquet.iter_batches(batch_size=batch_size, columns=names)
            return
        others = [name for name in names if name not in decimals]
        batch_schema = pa.schema(fields, metadata=self._table_metadata())
        metadata = self.metadata
        first_row = 0
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            fast = self._decimals(decimals, first_row, rows)
            first_row += rows
            plain = self.parquet.read_row_group(group, columns=others) if others else None
            arrays = [
                fast[name] if name in fast else one_chunk(plain.column(name)) for name in names
            ]
            batch = pa.RecordBatch.from_arrays(arrays, schema=batch_schema)
            for offset in range(0, rows, batch_size):
                yield batch.slice(offset, batch_size)

    def _table_metadata(self) -> dict[bytes, bytes] | None:
        """The file's key-value metadata as Arrow's reader puts it on the tables it reads."""
        stored = self.metadata.metadata or {}
        kept = {key: value for key, value in stored.items() if key != b"ARROW:schema"}
        return kept or None

    def _decimals(self, names: list[str], first_row: int, rows: int) -> dict[str, pa.Array]:
        """The decimal columns of one row group's rows (polars reads only that row group)."""
        frame = (
            pl.scan_parquet(self.local_path, hive_partitioning=False)
            .select(names)
            .slice(first_row, rows)
            .collect()
        )
        table = frame.to_arrow()
        arrays = {}
        for name in names:
            array = one_chunk(table.column(name))
            expected = self.schema_arrow.field(name).type
            if array.type != expected or len(array) != rows:
                raise ValueError(
                    f"{self.local_path}: column {name} read as {array.type} x {len(array)}, "
                    f"expected {expected} x {rows}"
                )
            arrays[name] = array
        return arrays
