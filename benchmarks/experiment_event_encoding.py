"""Experiment (not a benchmark users run): what one thread spends encoding the event stream's
rows as Parquet, column by column, with the options the IO manager pins, and with other codecs.

The `unified_events` step is bound by its writer thread (pyarrow encodes a file on one thread),
so this cost per row, times the day's rows, is a floor under the step. It reads row groups of
the partition `bench_graph.py` wrote (run that first) and encodes them in memory, best of three.

    .venv/bin/python benchmarks/bench_graph.py --scales 1
    .venv/bin/python benchmarks/experiment_event_encoding.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rlx_assets.resources.parquet_files import _schema_options, row_group_rows, write_options

PARTITION = "exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08/part-0.parquet"
DEFAULT_FILE = Path("/tmp/rlx-bench-graph/scale-1/stages/storage/unified_events") / PARTITION


def encode_seconds(table: pa.Table, repeats: int = 3, **options) -> tuple[float, int]:
    """(best seconds, bytes) to encode `table` into an in-memory file."""
    merged = {**write_options("lz4"), **_schema_options(table.schema), **options}
    best, size = float("inf"), 0
    for _ in range(repeats):
        sink = pa.BufferOutputStream()
        started = time.perf_counter()
        with pq.ParquetWriter(sink, table.schema, **merged) as writer:
            writer.write_table(table, row_group_size=row_group_rows(table))
        best = min(best, time.perf_counter() - started)
        size = sink.getvalue().size
    return best, size


def line(label: str, table: pa.Table, day_rows: int | None = None, **options) -> float:
    seconds, size = encode_seconds(table, **options)
    per_row = seconds / max(1, table.num_rows) * 1e9
    day = f"  {per_row * day_rows / 1e9:5.2f} s for the day" if day_rows else ""
    print(f"  {label:44s} {per_row:8.1f} ns/row  {size / 1e6:7.1f} MB{day}")
    return per_row


def _narrow(kind: pa.DataType) -> pa.DataType:
    """The type with its decimals at precision 18 (scale 8), lists kept."""
    if pa.types.is_decimal(kind):
        return pa.decimal128(18, 8)
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(_narrow(kind.value_type), kind.list_size)
    if pa.types.is_list(kind):
        return pa.list_(_narrow(kind.value_type))
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--row-groups", type=int, default=8, help="row groups encoded")
    args = parser.parse_args()
    parquet = pq.ParquetFile(args.file)
    day_rows = parquet.metadata.num_rows
    groups = range(min(args.row_groups, parquet.num_row_groups))
    sample = pa.concat_tables([parquet.read_row_group(i) for i in groups])
    snapshot = pc.equal(sample["event_type"], "BOOK_SNAPSHOT")
    snapshots, others = sample.filter(snapshot), sample.filter(pc.invert(snapshot))
    day_snapshots = round(day_rows * snapshots.num_rows / sample.num_rows)
    print(
        f"{args.file}: {day_rows:,} rows; sample {sample.num_rows:,} rows "
        f"({snapshots.num_rows:,} snapshots)"
    )
    print("the whole row, pinned options (lz4):")
    total = line("all columns", sample, day_rows)
    print("column by column:")
    parts = sum(line(name, sample.select([name])) for name in sample.column_names)
    print(f"  (their sum {parts:.1f} ns/row against {total:.1f} for the whole row)")
    print("the snapshot levels, per snapshot row and per other row:")
    for name in ("bids", "asks"):
        line(f"{name}, snapshot rows", snapshots.select([name]), day_snapshots)
        line(f"{name}, other rows (null lists)", others.select([name]))
    print("narrower decimals (DESIGN fixes decimal128(38,18)), the whole row:")
    narrow = sample.cast(pa.schema([f.with_type(_narrow(f.type)) for f in sample.schema]))
    line("decimal128(18,8)", narrow, day_rows)
    line("decimal128(18,8) stored as INT64", narrow, day_rows, store_decimal_as_integer=True)
    print("codecs, the whole row:")
    for codec, level in (("lz4", None), ("snappy", None), ("zstd", 1), ("none", None)):
        line(
            f"{codec} {level or ''}".strip(),
            sample,
            day_rows,
            compression=codec,
            compression_level=level,
        )


if __name__ == "__main__":
    main()
