"""One chronological market event stream: trades, book deltas and validated book snapshots.

Order: `event_timestamp` (origin time), then a fixed type rank, then `update_id`/`trade_id`; ties
keep the input order (a stable sort), so the same input gives byte-identical output. A trade ranks
before the book delta stamped with it (the trade causes the book change), and a snapshot after the
deltas of its message (it shows the book once they are applied).

The day is streamed, never held: each input is read in batches in its stored order, which is
already its events' (time, id) order for trades (sorted by time, then trade_id) and, on a sound
feed, for book deltas and snapshots (sorted by sequence number, their times rising with it). An
input whose times go backwards somewhere (a clock fault) is sorted out of core first: found by a
first pass over its key columns, or (`sort`) named by the caller, the others being checked as
they stream (InputOutOfOrder names one that is not in order, and the caller starts again). The
three streams, in type rank order, are then merged on time alone (`merge.merge_rounds`): the
merge gives a tie on time to the earlier stream, which is the type rank, and keeps each stream's
own (time, id) order, which is the rest of the key.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.decimals import DECIMAL_TYPE
from rlx_assets.engine.merge import (
    MergedRound,
    SpillReport,
    as_table,
    key_values,
    merge_rounds,
    one_chunk,
    sort_out_of_core,
    valid_values,
)
from rlx_assets.schema import BOOK_LEVELS, book_level_columns, event_time

TRADE, BOOK_DELTA, BOOK_SNAPSHOT = "TRADE", "BOOK_DELTA", "BOOK_SNAPSHOT"
TYPE_RANK = {TRADE: 0, BOOK_DELTA: 1, BOOK_SNAPSHOT: 2}

LEVEL_TYPE = pa.list_(DECIMAL_TYPE, 2)  # [price, size]
LEVELS_TYPE = pa.list_(LEVEL_TYPE)

EVENT_SCHEMA = pa.schema(
    [
        ("event_timestamp", pa.int64()),
        ("event_type", pa.string()),
        ("update_id", pa.int64()),
        ("trade_id", pa.int64()),
        ("trade_price", DECIMAL_TYPE),
        ("trade_quantity", DECIMAL_TYPE),
        ("trade_side", pa.string()),
        ("delta_side", pa.string()),
        ("delta_price", DECIMAL_TYPE),
        ("delta_quantity", DECIMAL_TYPE),
        ("bids", LEVELS_TYPE),
        ("asks", LEVELS_TYPE),
        ("received_time", pa.int64()),
    ]
)

BATCH_ROWS = 1 << 18
"""Rows per batch read from an input: sets the memory held, never the output."""
RUN_ROWS = 1 << 20
"""Events of an out-of-order input sorted in memory at once, and merged back at once."""
BOOK_BATCH_SHARE = 16  # a book row holds 80 decimals, about 16 times an event row's bytes

_EVENT_TYPES = pa.array(sorted(TYPE_RANK, key=TYPE_RANK.get), pa.string())

BatchSource = Callable[[list[str], int], Iterable[pa.RecordBatch | pa.Table]]
"""An input table read in its stored order: (columns, rows per batch) -> batches."""


def type_ranks(event_types: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.index_in(event_types, value_set=_EVENT_TYPES).to_numpy(zero_copy_only=False)


# Each builder returns the event columns its type fills (the others are null in the stream).


def trade_events(trades: pa.Table) -> pa.Table:
    return pa.table(
        {
            "event_timestamp": event_time(trades),
            "trade_id": trades["trade_id"].combine_chunks(),
            "trade_price": trades["price"].combine_chunks(),
            "trade_quantity": trades["quantity"].combine_chunks(),
            "trade_side": pc.utf8_upper(trades["side"]).combine_chunks(),
            "received_time": trades["received_time"].combine_chunks(),
        }
    )


def delta_events(deltas: pa.Table) -> pa.Table:
    sides = pc.if_else(deltas["side_is_bid"], "BID", "ASK").combine_chunks()
    return pa.table(
        {
            "event_timestamp": event_time(deltas),
            "update_id": deltas["sequence_number"].combine_chunks(),
            "delta_side": sides.cast(pa.string()),
            "delta_price": deltas["price"].combine_chunks(),
            "delta_quantity": deltas["size"].combine_chunks(),
            "received_time": deltas["received_time"].combine_chunks(),
        }
    )


def _levels(book: pa.Table, side: str) -> pa.Array:
    """The side's present levels as a list of [price, size], best first.

    The decimals are moved as 16-byte numpy values (complex128, as the merge moves them): a
    row-major [rows, levels, 2] matrix, of which the present levels are kept in order."""
    rows = book.num_rows
    pairs = np.empty((rows, BOOK_LEVELS, 2), dtype=np.complex128)
    valid = np.empty((rows, BOOK_LEVELS, 2), dtype=bool)
    for level in range(BOOK_LEVELS):
        for slot, kind in enumerate(("price", "size")):
            column = one_chunk(book[f"{side}_{level}_{kind}"])
            pairs[:, level, slot] = _decimal_words(column)
            valid[:, level, slot] = valid_values(column)
    present = valid[:, :, 0]  # a level is there when its price is
    validity = None
    if present.all():  # the usual book: every level there (a copy-free path)
        values, values_valid = pairs.reshape(-1), valid.reshape(-1)
    else:
        values, values_valid = pairs[present].reshape(-1), valid[present].reshape(-1)
    if not values_valid.all():
        validity = pa.py_buffer(np.packbits(values_valid, bitorder="little"))
    flat = pa.Array.from_buffers(
        DECIMAL_TYPE, values.size, [validity, pa.py_buffer(values.view(np.uint8))]
    )
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(present.sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.FixedSizeListArray.from_arrays(flat, 2), type=LEVELS_TYPE
    )


def _decimal_words(column: pa.Array) -> np.ndarray:
    """A decimal128 column's values as complex128 (the same 16 bytes; nulls hold whatever the
    buffer holds)."""
    if column.type != DECIMAL_TYPE:
        raise TypeError(f"book level column is {column.type}, expected {DECIMAL_TYPE}")
    data = np.frombuffer(column.buffers()[1], dtype=np.complex128)
    return data[column.offset : column.offset + len(column)]


def snapshot_events(book: pa.Table) -> pa.Table:
    return pa.table(
        {
            "event_timestamp": event_time(book),
            "update_id": book["sequence_number"].combine_chunks(),
            "bids": _levels(book, "bid"),
            "asks": _levels(book, "ask"),
            "received_time": book["received_time"].combine_chunks(),
        }
    )


def snapshot_rows(book: pa.Table, holds_first_row: bool = True) -> pa.Table:
    """The reconstructed rows published as snapshots: the day's first book, every row checked
    against a vendor snapshot (the vendor's cadence), and every resync (a consumer replaying the
    deltas must jump there). `holds_first_row`: `book` starts with the day's first row."""
    rows = book.num_rows
    if rows == 0:
        return book
    keep = pc.or_(pc.is_valid(book["vendor_match"]), book["resynced"]).to_numpy(
        zero_copy_only=False
    )
    keep = keep.copy()
    keep[0] |= holds_first_row
    return book.filter(pa.array(keep))


@dataclass(frozen=True)
class _Input:
    """One of the day's inputs: what its events are made of and what orders them."""

    event_type: str
    id_column: str
    event_id: str  # the id's event column
    event_columns: tuple[str, ...]
    key_columns: tuple[str, ...]  # the order, and which rows become events
    to_events: Callable[[pa.Table], pa.Table]
    batch_share: int = 1  # read event batches of BATCH_ROWS / batch_share rows (wide rows)


_TIMES = ("origin_time", "received_time")
_INPUTS = (  # in type rank order
    _Input(
        TRADE,
        "trade_id",
        "trade_id",
        (*_TIMES, "trade_id", "price", "quantity", "side"),
        (*_TIMES, "trade_id"),
        trade_events,
    ),
    _Input(
        BOOK_DELTA,
        "sequence_number",
        "update_id",
        (*_TIMES, "sequence_number", "side_is_bid", "price", "size"),
        (*_TIMES, "sequence_number"),
        delta_events,
    ),
    _Input(
        BOOK_SNAPSHOT,
        "sequence_number",
        "update_id",
        (*_TIMES, "sequence_number", *book_level_columns(), "vendor_match", "resynced"),
        (*_TIMES, "sequence_number", "vendor_match", "resynced"),
        snapshot_events,
        batch_share=BOOK_BATCH_SHARE,
    ),
)


def _rows(
    spec: _Input, source: BatchSource, columns: tuple[str, ...], batch_rows: int
) -> Iterator[pa.Table]:
    """The input's rows that become events, in stored order, in tables of at most batch_rows."""
    first = True
    for batch in source(list(columns), batch_rows):
        table = as_table(batch)
        if table.num_rows == 0:
            continue
        if spec.event_type == BOOK_SNAPSHOT:
            table = snapshot_rows(table, holds_first_row=first)
        first = False
        yield table


def _first_pair_out_of_order(
    time: np.ndarray, ids: np.ndarray, last: tuple[int, int] | None
) -> bool:
    """Does a (time, id) pair go back, within these keys or from `last` to their first?"""
    if last is not None and (int(time[0]), int(ids[0])) < last:
        return True
    later = (time[1:] > time[:-1]) | ((time[1:] == time[:-1]) & (ids[1:] >= ids[:-1]))
    return not later.all()


def _in_event_order(spec: _Input, source: BatchSource, batch_rows: int) -> bool:
    """Are the input's events in (time, id) order as stored? Reads the key columns only and
    stops at the first pair out of order."""
    last: tuple[int, int] | None = None
    for table in _rows(spec, source, spec.key_columns, batch_rows):
        if table.num_rows == 0:
            continue
        time = key_values(event_time(table))
        ids = key_values(table[spec.id_column])
        if _first_pair_out_of_order(time, ids, last):
            return False
        last = (int(time[-1]), int(ids[-1]))
    return True


class InputOutOfOrder(Exception):
    """An input trusted to be in event order was not; raised by `unified_event_batches` at its
    first pair out of order, before any event after that pair is given out."""

    def __init__(self, event_type: str) -> None:
        super().__init__(f"the {event_type} input is not in (time, id) order")
        self.event_type = event_type


def _verified(spec: _Input, events: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """`events` as they come, raising InputOutOfOrder at the first (time, id) pair that goes
    back."""
    last: tuple[int, int] | None = None
    for table in events:
        if table.num_rows == 0:
            continue
        time = key_values(table["event_timestamp"])
        ids = key_values(table[spec.event_id])
        if _first_pair_out_of_order(time, ids, last):
            raise InputOutOfOrder(spec.event_type)
        last = (int(time[-1]), int(ids[-1]))
        yield table


def _events(spec: _Input, source: BatchSource, batch_rows: int) -> Iterator[pa.Table]:
    rows = max(1, batch_rows // spec.batch_share)
    for table in _rows(spec, source, spec.event_columns, rows):
        yield spec.to_events(table)


def _assembled(merged: MergedRound) -> tuple[pa.Table, np.ndarray]:
    """The round's events in EVENT_SCHEMA, and their type ranks (the stream of each row)."""
    ranks = np.empty(merged.rows, dtype=np.int8)
    for rank, positions in enumerate(merged.positions):
        if positions is not None:
            ranks[positions] = rank
    columns = [
        _EVENT_TYPES.take(pa.array(ranks))
        if field.name == "event_type"
        else merged.column(field.name, field.type)
        for field in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=EVENT_SCHEMA), ranks


def unified_event_batches(
    trades: BatchSource,
    deltas: BatchSource,
    book: BatchSource,
    spill_folder: Path,
    spill: SpillReport,
    tally: EventTally,
    batch_rows: int = BATCH_ROWS,
    run_rows: int = RUN_ROWS,
    sort: Collection[str] | None = None,
) -> Iterator[pa.Table]:
    """The day's stream, ordered as the module docstring says, in tables of bounded size.

    Which inputs are sorted first: with `sort` None, those a first pass over their key columns
    finds out of order. Otherwise the inputs whose event types `sort` names; the others are
    trusted and checked as they stream (no pass of their own), and the first pair out of
    order raises InputOutOfOrder: the caller drops what it was given and asks again with that
    type in `sort`.

    `book` is the reconstructed book; only the rows `snapshot_rows` keeps become events. An
    input out of order is sorted through runs spilled under `spill_folder` (what was written is
    added to `spill`; the files are gone when the stream ends or is closed). Every table is
    counted in `tally` as it goes out. The concatenated output is the same for every
    `batch_rows` and `run_rows`.
    """
    streams = []
    for spec, source in zip(_INPUTS, (trades, deltas, book), strict=True):
        events = _events(spec, source, batch_rows)
        if sort is None:
            in_order = _in_event_order(spec, source, batch_rows)
        else:
            in_order = spec.event_type not in sort
        if in_order and sort is not None:
            events = _verified(spec, events)
        elif not in_order:
            keys = ("event_timestamp", spec.event_id)
            events = sort_out_of_core(events, keys, spill_folder, run_rows, run_rows, spill)
        streams.append(events)
    for merged in merge_rounds(streams, ["event_timestamp"]):
        events, ranks = _assembled(merged)
        ids = pc.fill_null(pc.coalesce(events["update_id"], events["trade_id"]), 0)
        tally.add(merged.keys[0], ranks, ids.to_numpy())
        yield events


def _pairs_out_of_order(time: np.ndarray, ranks: np.ndarray, ids: np.ndarray) -> int:
    """Adjacent pairs out of (time, rank, id) order."""
    later = (time[1:] > time[:-1]) | (
        (time[1:] == time[:-1])
        & ((ranks[1:] > ranks[:-1]) | ((ranks[1:] == ranks[:-1]) & (ids[1:] >= ids[:-1])))
    )
    return int(np.count_nonzero(~later))


def chronology_violations(events: pa.Table) -> int:
    """Adjacent pairs out of (event_timestamp, type rank, id) order."""
    if events.num_rows < 2:
        return 0
    time = events["event_timestamp"].to_numpy()
    ranks = type_ranks(events["event_type"])
    ids = pc.fill_null(pc.coalesce(events["update_id"], events["trade_id"]), 0).to_numpy()
    return _pairs_out_of_order(time, ranks, ids)


class EventTally:
    """The figures the asset reports about its stream, counted batch by batch: events per
    type, adjacent pairs out of order (the pair across two batches included) and events outside
    the day [start, end)."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.by_type: dict[str, int] = {}
        self.out_of_order_pairs = 0
        self.outside_day = 0
        self._last_key: tuple[np.ndarray, ...] | None = None

    def add(self, time: np.ndarray, ranks: np.ndarray, ids: np.ndarray) -> None:
        """Count the next events: their times, type ranks and ids (update_id or trade_id)."""
        if time.size == 0:
            return
        keys = (time, ranks, ids)
        if self._last_key is not None:
            keys = tuple(np.concatenate(pair) for pair in zip(self._last_key, keys, strict=True))
        self.out_of_order_pairs += _pairs_out_of_order(*keys)
        self._last_key = tuple(key[-1:].copy() for key in keys)
        counts = np.bincount(ranks, minlength=len(TYPE_RANK))
        for event_type, count in zip(_EVENT_TYPES.to_pylist(), counts, strict=True):
            if count:
                self.by_type[event_type] = self.by_type.get(event_type, 0) + int(count)
        self.outside_day += int(np.count_nonzero((time < self.start) | (time >= self.end)))
