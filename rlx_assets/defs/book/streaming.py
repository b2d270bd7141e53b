"""Stream a day's raw deltas and snapshots through `DayReplay` in bounded chunks.

Reads the raw partitions in batches (never whole), cuts them at message boundaries, hands each
chunk with its vendor snapshots to the replay, and appends the published rows to a partition
writer: memory follows the chunk size, not the day.
"""

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rlx_assets.engine.reconstruct import DayReplay, Reconstruction
from rlx_assets.resources.io_manager import PartitionWriter


def message_chunks(deltas: pq.ParquetFile, rows: int) -> Iterator[pa.Table]:
    """Tables of about `rows` rows ending on whole messages (a message is never split)."""
    carry: pa.Table | None = None
    for batch in deltas.iter_batches(batch_size=rows):
        table = pa.Table.from_batches([batch])
        if carry is not None:
            table = pa.concat_tables([carry, table])
        sequence = table["sequence_number"]
        last = sequence[-1]
        # The last message may continue in the next batch: hold it back.
        complete = pc.not_equal(sequence, last)
        cut = int(pc.sum(complete).as_py() or 0)
        if cut:
            yield table.slice(0, cut).combine_chunks()
        carry = table.slice(cut)
    if carry is not None and carry.num_rows:
        yield carry.combine_chunks()


class SnapshotCursor:
    """Vendor snapshots in sequence order, handed out up to a sequence number."""

    def __init__(self, snapshots: pq.ParquetFile, rows: int) -> None:
        self._batches = snapshots.iter_batches(batch_size=rows)
        self._buffer = snapshots.schema_arrow.empty_table()
        self._done = False

    def until(self, sequence: int) -> pa.Table:
        while not self._done and (
            self._buffer.num_rows == 0 or self._buffer["sequence_number"][-1].as_py() <= sequence
        ):
            batch = next(self._batches, None)
            if batch is None:
                self._done = True
            else:
                self._buffer = pa.concat_tables([self._buffer, pa.Table.from_batches([batch])])
        mine = pc.less_equal(self._buffer["sequence_number"], sequence)
        count = int(pc.sum(mine).as_py() or 0)
        taken, self._buffer = self._buffer.slice(0, count), self._buffer.slice(count)
        return taken.combine_chunks()


def delta_sequences_meet(deltas: pq.ParquetFile, snapshot_sequences: np.ndarray) -> bool:
    """Does any vendor snapshot share a delta message's sequence number (read column-wise)?"""
    for batch in deltas.iter_batches(batch_size=1_000_000, columns=["sequence_number"]):
        if np.isin(snapshot_sequences, batch.column(0).to_numpy()).any():
            return True
    return False


def stream_day(
    deltas: pq.ParquetFile,
    snapshots: pq.ParquetFile,
    replay: DayReplay,
    writer: PartitionWriter,
    chunk_rows: int,
) -> Reconstruction:
    cursor = SnapshotCursor(snapshots, chunk_rows)
    for chunk in message_chunks(deltas, chunk_rows):
        vendor = cursor.until(chunk["sequence_number"][-1].as_py())
        writer.write(replay.feed(chunk, vendor))
    return replay.finish()
