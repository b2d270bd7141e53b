"""Sorting a day in bounded memory: sorted runs, kept anywhere, merged back in key order.

A caller sorts bounded chunks, appends each to a run (a new run only when a chunk does not
continue the last one, so input that is already in order stays one run), and reads the merge
back batch by batch. Where runs live is the caller's choice (`RunStore`): in memory for small
inputs and tests, on disk for a day (`rlx_assets.resources.spill`). Keys are int64 columns
compared left to right; the last one must be unique (an arrival order), so no two rows tie.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RUN_BATCH_ROWS = 65_536  # rows a merge holds per run at a time


class Run(Protocol):
    rows: int

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """The run's rows in order, in batches of at most RUN_BATCH_ROWS; may be read again.
        Only `columns`, in that order, when given (a pass that needs two of a table's columns
        reads only those)."""
        ...


class RunWriter(Protocol):
    def write(self, table: pa.Table) -> None: ...

    def finish(self) -> Run: ...


class RunStore(Protocol):
    def create(self) -> RunWriter: ...


class MemoryRun:
    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.tables.append(table)
            self.rows += table.num_rows

    def finish(self) -> MemoryRun:
        return self

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        for table in self.tables:
            if columns is not None:
                table = table.select(list(columns))
            for offset in range(0, table.num_rows, RUN_BATCH_ROWS):
                yield table.slice(offset, RUN_BATCH_ROWS)


class MemoryRuns:
    """Runs kept in memory: for inputs that fit (tests, `clean_day`)."""

    def create(self) -> MemoryRun:
        return MemoryRun()


def sort_table(table: pa.Table, key: Sequence[str]) -> pa.Table:
    if table.num_rows < 2 or _is_sorted([table.column(name).to_numpy() for name in key]):
        return table
    return table.take(pc.sort_indices(table, sort_keys=[(name, "ascending") for name in key]))


class SortedRuns:
    """Chunks sorted and appended to runs; `merged()` reads every row back in key order."""

    def __init__(self, store: RunStore, key: Sequence[str]) -> None:
        self.store = store
        self.key = list(key)
        self.runs: list[Run] = []
        self._writer: RunWriter | None = None
        self._last: tuple[int, ...] | None = None

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = sort_table(table, self.key)
        first = key_at(table, self.key, 0)
        if self._writer is None or (self._last is not None and first < self._last):
            self._close_run()
            self._writer = self.store.create()
        self._writer.write(table)
        self._last = key_at(table, self.key, table.num_rows - 1)

    def _close_run(self) -> None:
        if self._writer is not None:
            self.runs.append(self._writer.finish())
            self._writer = None

    def merged(self) -> Iterator[pa.Table]:
        self._close_run()
        return merge_runs(self.runs, self.key)


def _is_sorted(columns: list[np.ndarray]) -> bool:
    """Are the rows in ascending order of the key columns (left to right)?"""
    tied = np.arange(columns[0].size - 1)  # pairs (i, i + 1) equal on the columns so far
    for column in columns:
        before, after = column[tied], column[tied + 1]
        if (after < before).any():
            return False
        tied = tied[after == before]
        if tied.size == 0:
            break
    return True


def key_at(table: pa.Table, key: Sequence[str], row: int) -> tuple[int, ...]:
    return tuple(table.column(name)[row].as_py() for name in key)


class _Cursor:
    """One run's current batch and the next row to hand out."""

    def __init__(self, run: Run, key: Sequence[str]) -> None:
        self._batches = iter(run.batches())
        self.key = key
        self.table: pa.Table | None = None
        self.columns: list[np.ndarray] = []
        self.position = 0
        self.load()

    def load(self) -> None:
        for table in self._batches:
            if table.num_rows:
                self.table = table
                self.columns = [table.column(name).to_numpy() for name in self.key]
                self.position = 0
                return
        self.table = None

    @property
    def size(self) -> int:
        return 0 if self.table is None else self.table.num_rows

    def last(self) -> tuple[int, ...]:
        return tuple(int(column[-1]) for column in self.columns)

    def end_at(self, frontier: tuple[int, ...]) -> int:
        """The first row from `position` on whose key is above `frontier` (keys are sorted)."""
        low, high = self.position, self.size
        first = self.columns[0]
        # The first column narrows the range at C speed; the rest break ties on equal values.
        low = max(low, int(np.searchsorted(first, frontier[0], side="left")))
        high = min(high, int(np.searchsorted(first, frontier[0], side="right")))
        while low < high:
            middle = (low + high) // 2
            if tuple(int(column[middle]) for column in self.columns) <= frontier:
                low = middle + 1
            else:
                high = middle
        return low

    def take(self, end: int) -> pa.Table:
        assert self.table is not None
        piece = self.table.slice(self.position, end - self.position)
        self.position = end
        if self.position >= self.size:
            self.load()
        return piece


def merge_runs(runs: Sequence[Run], key: Sequence[str]) -> Iterator[pa.Table]:
    """Every row of the runs in key order, in batches of bounded size.

    Each step hands out, from every run, the rows up to the smallest last key among the runs'
    current batches, so at least one batch is used up per step and nothing beyond one batch per
    run is held.
    """
    cursors = [cursor for cursor in (_Cursor(run, key) for run in runs) if cursor.table]
    while cursors:
        if len(cursors) == 1:
            cursor = cursors[0]
            yield cursor.take(cursor.size)
        else:
            frontier = min(cursor.last() for cursor in cursors)
            pieces = []
            for cursor in cursors:
                end = cursor.end_at(frontier)
                if end > cursor.position:
                    pieces.append(cursor.take(end))
            yield sort_table(pa.concat_tables(pieces), key) if len(pieces) > 1 else pieces[0]
        cursors = [cursor for cursor in cursors if cursor.table is not None]


def groups_whole(batches: Iterator[pa.Table], group: Sequence[str]) -> Iterator[pa.Table]:
    """The same rows, re-cut so that rows sharing the `group` columns are in one batch: the last
    group of each batch waits for the next (input sorted by those columns)."""
    held: pa.Table | None = None
    for table in batches:
        if table.num_rows == 0:
            continue
        if held is not None:
            table = pa.concat_tables([held, table])
        columns = [table.column(name).to_numpy() for name in group]
        last = table.num_rows - 1
        same = np.ones(table.num_rows, dtype=bool)
        for column in columns:
            same &= column == column[last]
        # Sorted by the group columns, so the last group is a suffix.
        start = int(np.flatnonzero(~same)[-1]) + 1 if not same.all() else 0
        if start == 0:
            held = table
            continue
        yield table.slice(0, start)
        held = table.slice(start)
    if held is not None and held.num_rows:
        yield held
