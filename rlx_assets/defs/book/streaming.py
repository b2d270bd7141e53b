"""Stream a day's raw deltas and snapshots through `DayReplay` in bounded chunks.

Reads the raw partitions in batches (never whole), cuts them at message boundaries, hands each
chunk with its vendor snapshots to the replay, and appends the published rows to a partition
writer: memory follows the chunk size, not the day.

Three stages overlap on their own threads (decoding and encoding Parquet and the compiled kernels
release the GIL): a reader decodes and converts the next chunk, the calling thread replays, and a
writer builds and encodes the rows (and writes the checkpoints). Each stage is at most two chunks
ahead.
"""

import hashlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from rlx_assets.background import WriteBehind, read_ahead
from rlx_assets.engine.day_replay import (
    ChunkInput,
    DayReplay,
    PublishedRows,
    message_figures,
    vendor_seed_exists,
)
from rlx_assets.engine.reconstruction import Reconstruction
from rlx_assets.resources.checkpoint_store import CheckpointStore
from rlx_assets.resources.parquet_files import PartitionWriter
from rlx_assets.resources.partition_file import PartitionFile

DELTA_COLUMNS = ["origin_time", "received_time", "sequence_number", "side_is_bid", "price", "size"]


def message_chunks(deltas: PartitionFile, rows: int) -> Iterator[pa.Table]:
    """Tables of about `rows` rows ending on whole messages (a message is never split). The
    rows are not copied: a chunk may hold two pieces (the end of one batch, then the next)."""
    carry: pa.Table | None = None
    columns = [name for name in DELTA_COLUMNS if name in deltas.schema_arrow.names]
    for batch in deltas.iter_batches(batch_size=rows, columns=columns):
        table = pa.Table.from_batches([batch])
        sequence = batch.column("sequence_number").to_numpy()
        # The last message may continue in the next batch: hold it back (rows are in order).
        cut = int(np.searchsorted(sequence, sequence[-1], side="left"))
        if carry is not None and cut == 0:
            carry = pa.concat_tables([carry, table])  # still no message boundary to cut at
            continue
        if cut:
            yield (
                table.slice(0, cut)
                if carry is None
                else pa.concat_tables([carry, table.slice(0, cut)])
            )
        carry = table.slice(cut)
    if carry is not None and carry.num_rows:
        yield carry


SNAPSHOT_BATCH_ROWS = 16_384  # 80 decimal columns: about 21 MB decoded per batch


class SnapshotCursor:
    """Vendor snapshots in sequence order, handed out up to a sequence number."""

    def __init__(self, snapshots: PartitionFile, rows: int = SNAPSHOT_BATCH_ROWS) -> None:
        self._batches = snapshots.iter_batches(batch_size=rows)
        self._schema = snapshots.schema_arrow
        self._piece: pa.RecordBatch | None = None  # read, not handed out yet

    def until(self, sequence: int) -> pa.Table:
        """The snapshots up to `sequence` (inclusive) not handed out yet (not copied)."""
        taken: list[pa.RecordBatch] = []
        while True:
            piece = self._piece if self._piece is not None else next(self._batches, None)
            if piece is None:
                break
            sequences = piece.column("sequence_number").to_numpy()
            count = int(np.searchsorted(sequences, sequence, side="right"))
            if count:
                taken.append(piece.slice(0, count))
            self._piece = piece.slice(count) if count < piece.num_rows else None
            if self._piece is not None:
                break
        return pa.Table.from_batches(taken, schema=self._schema)


def day_chunks(
    deltas: PartitionFile, snapshots: PartitionFile, rows: int
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(delta rows of whole messages, the vendor snapshots up to their last sequence number)."""
    cursor = SnapshotCursor(snapshots)
    for chunk in message_chunks(deltas, rows):
        yield chunk, cursor.until(chunk["sequence_number"][-1].as_py())


def delta_sequences_meet(deltas: PartitionFile, snapshot_sequences: np.ndarray) -> bool:
    """Does any vendor snapshot share a delta message's sequence number (read column-wise)?"""
    batches = deltas.iter_batches(batch_size=1_000_000, columns=["sequence_number"])
    return any(vendor_seed_exists(b.column(0).to_numpy(), snapshot_sequences) for b in batches)


class Checkpoints:
    """A write-ahead record of a streaming replay, in a `CheckpointStore` (a local folder, or a
    prefix on s3:// so that a step restarted on another machine resumes). After each chunk: the
    rows it published (a segment file of plain arrays: cheap to write and to read back, about
    700 bytes per message while the partition is being written; the chunk's figures derive from
    them), then the replay's state and the record pointing at it. A run killed at any point
    restarts from the last complete set. Each file replaces its name atomically, so a kill
    mid-write leaves the previous checkpoint intact."""

    def __init__(self, store: CheckpointStore | Path, fingerprint: str) -> None:
        if isinstance(store, Path):
            store = CheckpointStore(LocalFileSystem(), str(store))
        self.store = store
        self.fingerprint = fingerprint
        self.written = 0

    def load(self) -> tuple[int, dict[str, np.ndarray] | None, list[dict[str, np.ndarray]]]:
        """(chunks done, the replay state after them, their figures) for the same inputs,
        else (0, None, [])."""
        if not self.store.exists(RECORD):
            return 0, None, []
        meta = json.loads(self.store.read_text(RECORD))
        if meta.get("fingerprint") != self.fingerprint:
            self.clear()  # other inputs or settings: start over
            return 0, None, []
        chunks = int(meta["chunks"])
        figures = []
        for index in range(chunks):
            # Reads only the figures' arrays.
            with self.store.open(_segment(index)) as handle, np.load(handle) as segment:
                figures.append(message_figures(segment))
        return chunks, self._load(_state(chunks)), figures

    def save(self, index: int, rows: PublishedRows, state: dict[str, np.ndarray]) -> None:
        self.store.write(_segment(index), _arrays_bytes(rows.to_arrays()))
        # The state is named by the chunks it covers and the record points at it last: a kill
        # between the two leaves the record on the previous, still present, state.
        self.store.write(_state(index + 1), _arrays_bytes(state))
        meta = {"fingerprint": self.fingerprint, "chunks": index + 1}
        self.store.write(RECORD, json.dumps(meta).encode())
        self.store.remove(_state(index))
        self.written += 1

    def rows(self, index: int) -> PublishedRows:
        return PublishedRows.from_arrays(self._load(_segment(index)))

    def _load(self, name: str) -> dict[str, np.ndarray]:
        with self.store.open(name) as handle, np.load(handle) as saved:
            return {key: saved[key] for key in saved.files}

    def clear(self) -> None:
        self.store.clear()


RECORD = "checkpoint.json"


def _segment(index: int) -> str:
    # Not named *.parquet: no reader's glob over the storage picks it up.
    return f"segment-{index:06d}.npz"


def _state(chunks: int) -> str:
    return f"state-{chunks:06d}.npz"


def _arrays_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def file_identity(parquet: PartitionFile) -> tuple:
    """What changes when a partition is rewritten with other rows."""
    metadata = parquet.metadata
    return (
        metadata.num_rows,
        metadata.num_row_groups,
        tuple(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)),
        parquet.metadata.metadata,
    )


@dataclass
class StreamReport:
    checkpoints_written: int = 0
    resumed_from_chunk: int = 0
    recovery_seconds: float = 0.0


def stream_day(
    deltas: PartitionFile,
    snapshots: PartitionFile,
    replay: DayReplay,
    writer: PartitionWriter,
    chunk_rows: int,
    checkpoints: Checkpoints | None = None,
) -> tuple[Reconstruction, StreamReport]:
    """Replay the day chunk by chunk into `writer`; with `checkpoints`, record one after every
    chunk and resume from the last one when it exists (its chunks are not replayed again)."""
    report = StreamReport()
    started = time.perf_counter()
    done = 0
    if checkpoints is not None:
        done, state, figures = checkpoints.load()
        if state is not None:
            replay.restore(state, figures)
            report.resumed_from_chunk = done

    def prepared() -> Iterator[ChunkInput | None]:
        for index, (chunk, vendor) in enumerate(day_chunks(deltas, snapshots, chunk_rows)):
            # Chunks replayed before a crash are still read (to reach the rest), not prepared.
            yield replay.prepare(chunk, vendor) if index >= done else None

    def resend(index: int) -> None:
        writer.write(checkpoints.rows(index).table())

    def publish(index: int, rows: PublishedRows, state: dict) -> None:
        if checkpoints is not None:
            checkpoints.save(index, rows, state)
        writer.write(rows.table())

    behind = WriteBehind()
    try:
        for index, chunk in enumerate(read_ahead(prepared())):
            if chunk is None:
                behind.submit(resend, index)
                continue
            if index == done and done:
                report.recovery_seconds = time.perf_counter() - started
            rows = replay.replay_chunk(chunk)
            state = replay.checkpoint() if checkpoints is not None else {}
            behind.submit(publish, index, rows, state)
    except BaseException:
        behind.close(raise_errors=False)
        raise
    behind.close()
    if checkpoints is not None:
        report.checkpoints_written = checkpoints.written
    return replay.finish(), report
