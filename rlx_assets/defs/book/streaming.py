"""Stream a day's raw deltas and snapshots through `DayReplay` in bounded chunks.

Reads the raw partitions in batches (never whole), cuts them at message boundaries, hands each
chunk with its vendor snapshots to the replay, and appends the published rows to a partition
writer: memory follows the chunk size, not the day.
"""

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


class Checkpoints:
    """A write-ahead record of a streaming replay on local disk: after each chunk, the rows it
    published (a segment file) and then the replay's state; a run killed at any point restarts
    from the last complete pair. Files are written under temporary names and renamed, so a kill
    mid-write leaves the previous checkpoint intact."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        self.written = 0

    def load(self) -> tuple[int, dict[str, np.ndarray] | None]:
        """(chunks done, the replay state after them) for the same inputs, else (0, None)."""
        meta_path = self.folder / "checkpoint.json"
        if not meta_path.exists():
            return 0, None
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") != self.fingerprint:
            self.clear()  # other inputs or settings: start over
            return 0, None
        chunks = int(meta["chunks"])
        with np.load(self._state(chunks)) as saved:
            return chunks, {name: saved[name] for name in saved.files}

    def save(self, index: int, book: pa.Table, state: dict[str, np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        segment = self._segment(index)
        pq.write_table(book, f"{segment}.tmp")
        os.replace(f"{segment}.tmp", segment)
        # The state is named by the chunks it covers and the record points at it last: a kill
        # between the two leaves the record on the previous, still present, state.
        state_path = self._state(index + 1)
        with open(f"{state_path}.tmp", "wb") as handle:
            np.savez(handle, **state)
        os.replace(f"{state_path}.tmp", state_path)
        meta = {"fingerprint": self.fingerprint, "chunks": index + 1}
        (self.folder / "checkpoint.json.tmp").write_text(json.dumps(meta))
        os.replace(self.folder / "checkpoint.json.tmp", self.folder / "checkpoint.json")
        self._state(index).unlink(missing_ok=True)
        self.written += 1

    def _segment(self, index: int) -> Path:
        # Parquet inside, but not named *.parquet: no reader's glob over the storage picks it up.
        return self.folder / f"segment-{index:06d}.pq-part"

    def _state(self, chunks: int) -> Path:
        return self.folder / f"state-{chunks:06d}.npz"

    def segments(self, chunks: int) -> Iterator[pa.Table]:
        for index in range(chunks):
            yield pq.read_table(self._segment(index))

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def file_identity(parquet: pq.ParquetFile) -> tuple:
    """What changes when a partition is rewritten with other rows."""
    metadata = parquet.metadata
    return (
        metadata.num_rows,
        metadata.num_row_groups,
        tuple(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)),
        parquet.schema_arrow.metadata,
    )


@dataclass
class StreamReport:
    checkpoints_written: int = 0
    resumed_from_chunk: int = 0
    recovery_seconds: float = 0.0


def stream_day_checkpointed(
    deltas: pq.ParquetFile,
    snapshots: pq.ParquetFile,
    replay: DayReplay,
    writer: PartitionWriter,
    chunk_rows: int,
    checkpoints: Checkpoints,
) -> tuple[Reconstruction, StreamReport]:
    """`stream_day` with a checkpoint after every chunk; resumes from one when it exists."""
    report = StreamReport()
    started = time.perf_counter()
    done, state = checkpoints.load()
    if state is not None:
        replay.restore(state)
        report.resumed_from_chunk = done
    cursor = SnapshotCursor(snapshots, chunk_rows)
    chunks = 0
    for index, chunk in enumerate(message_chunks(deltas, chunk_rows)):
        vendor = cursor.until(chunk["sequence_number"][-1].as_py())
        chunks = index + 1
        if index < done:
            continue  # replayed before the crash: its rows are in a segment already
        if index == done and done:
            report.recovery_seconds = time.perf_counter() - started
        checkpoints.save(index, replay.feed(chunk, vendor), replay.checkpoint())
    for table in checkpoints.segments(chunks):
        writer.write(table)
    report.checkpoints_written = checkpoints.written
    return replay.finish(), report
