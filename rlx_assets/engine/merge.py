"""Merging sorted streams of Arrow tables in bounded memory, and sorting a stream that is not
sorted through bounded runs spilled to disk.

A stream is an iterable of tables (or record batches) that hold the key columns: integers,
without nulls. A sorted stream is in ascending lexicographic order of its keys. The merge is the
stable sort of the streams' concatenation: rows with equal keys come out stream by stream, each
stream's in its input order, exactly as one stable sort of the whole concatenation orders them.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SPILL_COMPRESSION = "lz4"  # runs are read once, soon after: speed over size
SPILL_BATCHES_PER_MERGE = 256  # a run file's batch is this fraction of the merge's rows


def key_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A key column as numpy; a null has no place in the order, so it is an error."""
    if column.null_count:
        raise ValueError(f"a sort key has {column.null_count} nulls")
    return column.to_numpy()


def as_table(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    return batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


class _Head:
    """The rows of a stream read but not yet emitted, with their key columns as numpy."""

    def __init__(self, table: pa.Table, keys: Sequence[str]) -> None:
        self.table = table
        self.keys = [key_values(table[name]) for name in keys]

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def last_key(self) -> tuple[int, ...]:
        return tuple(int(column[-1]) for column in self.keys)

    def rows_through(self, bound: tuple[int, ...], inclusive: bool) -> int:
        """How many leading rows have a key below `bound` (or equal to it, if inclusive)."""
        first = self.keys[0]
        low = int(np.searchsorted(first, bound[0], "left"))
        high = int(np.searchsorted(first, bound[0], "right"))
        # Only rows tied on the first key need the others, compared lexicographically.
        below = np.zeros(high - low, dtype=bool)
        equal = np.ones(high - low, dtype=bool)
        for column, value in zip(self.keys[1:], bound[1:], strict=True):
            part = column[low:high]
            below |= equal & (part < value)
            equal &= part == value
        return low + int(np.count_nonzero(below | equal if inclusive else below))

    def take_front(self, rows: int) -> tuple[pa.Table, list[np.ndarray]]:
        front = self.table.slice(0, rows), [column[:rows] for column in self.keys]
        self.table = self.table.slice(rows)
        self.keys = [column[rows:] for column in self.keys]
        return front


class MergedRound:
    """The rows one round of the merge emits: `pieces[i]`, stream i's rows (in its order; None
    when it gave none), and `order`, the rows of the pieces' concatenation in merged order (None
    when a single piece is already in order)."""

    def __init__(
        self, pieces: list[pa.Table | None], keys: list[np.ndarray], order: np.ndarray | None
    ) -> None:
        self.pieces = pieces
        self.keys = keys  # merged order
        self.order = order
        self.rows = sum(piece.num_rows for piece in pieces if piece is not None)

    @functools.cached_property
    def positions(self) -> list[np.ndarray | None]:
        """Where each piece's rows land in the round's output (increasing, per piece)."""
        if self.order is None:
            return [None if p is None else np.arange(p.num_rows) for p in self.pieces]
        landing = np.empty(self.rows, dtype=np.int64)
        landing[self.order] = np.arange(self.rows)
        positions: list[np.ndarray | None] = []
        start = 0
        for piece in self.pieces:
            if piece is None:
                positions.append(None)
                continue
            positions.append(landing[start : start + piece.num_rows])
            start += piece.num_rows
        return positions

    def column(self, name: str, kind: pa.DataType) -> pa.Array:
        """Column `name` of the round's output: from the pieces that have it, null on the rows
        of those that do not (streams may carry different columns)."""
        owners = [
            (positions, one_chunk(piece[name]))
            for positions, piece in zip(self.positions, self.pieces, strict=True)
            if piece is not None and name in piece.column_names
        ]
        if not owners:
            return pa.nulls(self.rows, kind)
        if len(owners) == 1 and len(owners[0][1]) == self.rows:
            return owners[0][1]  # one stream's rows only, in its order
        if _copy_type(kind):
            return _scattered(self.rows, owners, kind)
        if len(owners) == 1 and (pa.types.is_string(kind) or pa.types.is_list(kind)):
            return _spread(self.rows, *owners[0])
        owner_rows = np.full(self.rows, -1, dtype=np.int64)
        start = 0
        for positions, values in owners:
            owner_rows[positions] = np.arange(start, start + len(values))
            start += len(values)
        index = pa.array(owner_rows, mask=owner_rows < 0)
        return pa.chunked_array([values for _, values in owners], kind).take(index).combine_chunks()

    def table(self) -> pa.Table:
        """The round's rows as one table (the streams share a schema)."""
        tables = [piece for piece in self.pieces if piece is not None]
        if self.order is None:
            return tables[0]
        return pa.concat_tables(tables).take(self.order)


def one_chunk(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


# numpy types to move fixed-width Arrow values with (copies only: a decimal128 is moved as a
# complex128, the fastest 16-byte numpy type to scatter).
_COPY_TYPES = {64: np.dtype(np.int64), 128: np.dtype(np.complex128)}


def _copy_type(kind: pa.DataType) -> np.dtype | None:
    try:
        return _COPY_TYPES.get(kind.bit_width)
    except ValueError:  # variable width
        return None


def _validity(valid: np.ndarray) -> pa.Buffer | None:
    return None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))


def valid_values(values: pa.Array) -> np.ndarray | bool:
    if values.null_count == 0:
        return True
    return values.is_valid().to_numpy(zero_copy_only=False)


def _scattered(rows: int, owners: list[tuple[np.ndarray, pa.Array]], kind: pa.DataType) -> pa.Array:
    """A fixed-width column assembled by numpy scatters of its owners' values."""
    copy_type = _copy_type(kind)
    output = np.zeros(rows, dtype=copy_type)
    valid = np.zeros(rows, dtype=bool)
    for positions, values in owners:
        data = np.frombuffer(values.buffers()[1], dtype=copy_type)
        output[positions] = data[values.offset : values.offset + len(values)]
        valid[positions] = valid_values(values)
    return pa.Array.from_buffers(kind, rows, [_validity(valid), pa.py_buffer(output)])


def _spread(rows: int, positions: np.ndarray, values: pa.Array) -> pa.Array:
    """A string or list column of one owner: its values stay where they are (the owner's rows
    keep their order), only the offsets are rebuilt, with empty nulls between."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
    offsets = offsets[values.offset : values.offset + len(values) + 1]
    lengths = np.zeros(rows, dtype=np.int32)
    lengths[positions] = np.diff(offsets)
    spread = np.empty(rows + 1, dtype=np.int32)
    spread[0] = offsets[0]
    np.cumsum(lengths, out=spread[1:])
    spread[1:] += offsets[0]
    valid = np.zeros(rows, dtype=bool)
    valid[positions] = valid_values(values)
    buffers = [_validity(valid), pa.py_buffer(spread)]
    if pa.types.is_string(values.type):
        return pa.Array.from_buffers(values.type, rows, [*buffers, values.buffers()[2]])
    return pa.Array.from_buffers(values.type, rows, buffers, children=[values.values])


def _next_table(batches: Iterator[pa.Table | pa.RecordBatch]) -> pa.Table | None:
    """The next batch with rows, as a table; None at the end."""
    for batch in batches:
        if batch.num_rows:
            return as_table(batch)
    return None


def merge_rounds(
    streams: Sequence[Iterable[pa.Table | pa.RecordBatch]], keys: Sequence[str]
) -> Iterator[MergedRound]:
    """The streams (each sorted by `keys`) merged into one sorted stream, round by round,
    holding one batch per stream at a time.

    Each round emits every row that no row still unread can precede: the frontier is the
    smallest last key among the held batches, and the stream holding it (the first such stream)
    is emitted whole. Rows equal to the frontier go out from the streams before it only: that
    stream's next batch may start with the same key, and those rows must precede equal rows of
    the later streams. The emitted rows are ordered by a stable sort of their keys, pieces in
    stream order.
    """
    iterators: list[Iterator | None] = [iter(stream) for stream in streams]
    heads: list[_Head | None] = [None] * len(iterators)
    while True:
        for index, iterator in enumerate(iterators):
            if heads[index] is None and iterator is not None:
                table = _next_table(iterator)
                if table is None:
                    iterators[index] = None
                else:
                    heads[index] = _Head(table, keys)
        live = [index for index, head in enumerate(heads) if head is not None]
        if not live:
            return
        last_keys = [heads[index].last_key() for index in live]
        frontier = min(last_keys)
        emptied = live[last_keys.index(frontier)]
        pieces: list[pa.Table | None] = [None] * len(heads)
        piece_keys: list[list[np.ndarray]] = []
        for index in live:
            head = heads[index]
            rows = (
                head.rows
                if index == emptied
                else head.rows_through(frontier, inclusive=index < emptied)
            )
            if rows:
                pieces[index], front_keys = head.take_front(rows)
                piece_keys.append(front_keys)
            if head.rows == 0:
                heads[index] = None
        if len(piece_keys) == 1:
            yield MergedRound(pieces, piece_keys[0], None)
            continue
        columns = [np.concatenate(parts) for parts in zip(*piece_keys, strict=True)]
        if len(columns) == 1:
            order = np.argsort(columns[0], kind="stable")  # timsort: the pieces are sorted runs
        else:
            order = np.lexsort(columns[::-1])  # stable, first key most significant
        yield MergedRound(pieces, [column[order] for column in columns], order)


def merge_sorted(
    streams: Sequence[Iterable[pa.Table | pa.RecordBatch]], keys: Sequence[str]
) -> Iterator[pa.Table]:
    """`merge_rounds` of streams that share a schema, as tables."""
    for merged in merge_rounds(streams, keys):
        yield merged.table()


@dataclass
class SpillReport:
    """What sorting out of core wrote to disk."""

    runs: int = 0
    bytes: int = 0


def sort_out_of_core(
    batches: Iterable[pa.Table | pa.RecordBatch],
    keys: Sequence[str],
    folder: Path,
    run_rows: int,
    merge_rows: int,
    report: SpillReport,
) -> Iterator[pa.Table]:
    """The stream stably sorted by `keys`, holding about `run_rows` rows to sort and
    `merge_rows` rows to merge.

    Runs of at least `run_rows` rows, cut in input order, are sorted in memory and written to
    Arrow IPC files in a folder of their own under `folder`, then merged back. Runs are merged in
    the order they were cut, so the merge's tie order (stream by stream) keeps equal keys in
    input order: the sort is stable. A stream that fits in one run is sorted in memory and never
    written. The files are removed once merged, or when the output is closed early.
    """
    iterator = iter(batches)
    run = _next_run(iterator, run_rows)
    if run is None:
        return
    following = _next_table(iterator)
    if following is None:
        yield from _sorted_slices(run, keys, merge_rows)
        return
    spill_folder = Path(tempfile.mkdtemp(prefix="runs-", dir=folder))
    try:
        batch_rows = max(1, merge_rows // SPILL_BATCHES_PER_MERGE)
        paths = []
        while run is not None:
            path = spill_folder / f"run-{len(paths):06d}.arrow"
            _write_run(path, _sorted_slices(run, keys, batch_rows))
            paths.append(path)
            report.runs += 1
            report.bytes += path.stat().st_size
            run = None  # released before the next one is read
            run, following = _next_run(iterator, run_rows, following), None
        per_run = max(1, merge_rows // len(paths))
        yield from merge_sorted([_read_run(path, per_run) for path in paths], keys)
    finally:
        shutil.rmtree(spill_folder, ignore_errors=True)


def _next_run(
    batches: Iterator[pa.Table | pa.RecordBatch], run_rows: int, start: pa.Table | None = None
) -> pa.Table | None:
    tables = [] if start is None else [start]
    rows = sum(table.num_rows for table in tables)
    while rows < run_rows:
        batch = next(batches, None)
        if batch is None:
            break
        tables.append(as_table(batch))
        rows += batch.num_rows
    return pa.concat_tables(tables) if rows else None


def _sorted_slices(table: pa.Table, keys: Sequence[str], rows: int) -> Iterator[pa.Table]:
    """The table sorted, taken a slice of the order at a time (no second whole copy)."""
    order = pc.sort_indices(table, sort_keys=[(name, "ascending") for name in keys])
    for start in range(0, len(order), rows):
        yield table.take(order.slice(start, rows))


def _write_run(path: Path, tables: Iterable[pa.Table]) -> None:
    options = pa.ipc.IpcWriteOptions(compression=SPILL_COMPRESSION)
    writer = None
    with pa.OSFile(str(path), "wb") as sink:
        for table in tables:
            if writer is None:
                writer = pa.ipc.new_stream(sink, table.schema, options=options)
            writer.write_table(table)
        writer.close()


def _read_run(path: Path, rows: int) -> Iterator[pa.Table]:
    """A run file in tables of at least `rows` rows (the file's batches, read in order)."""
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_stream(source)
        batches: list[pa.RecordBatch] = []
        held = 0
        for batch in reader:
            batches.append(batch)
            held += batch.num_rows
            if held >= rows:
                yield pa.Table.from_batches(batches)
                batches, held = [], 0
        if batches:
            yield pa.Table.from_batches(batches)
