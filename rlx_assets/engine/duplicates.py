"""Duplicate rows within groups (same key, same content): the first of each kept."""

from __future__ import annotations

import numba
import numpy as np
import polars as pl
import pyarrow as pa

_PAIRWISE_GROUP_ROWS = 32  # a group up to this size compares hashes pair by pair, not sorted


def first_of_duplicates(table: pa.Table, columns: list[str], group: list[str]) -> np.ndarray:
    """True for the first occurrence of each distinct row (in the table's order). Rows are in
    order of the `group` columns, which equal rows share: only rows of one group can repeat."""
    unique = np.ones(table.num_rows, dtype=bool)
    if table.num_rows < 2:
        return unique
    frame = pl.from_arrow(table.select(columns))
    changes = np.zeros(table.num_rows, dtype=bool)
    changes[0] = True
    for name in group:
        key = table[name].to_numpy()
        changes[1:] |= key[1:] != key[:-1]
    # Rows are compared in full only where their hashes meet within a group (duplicates are
    # rare).
    candidates = _hash_repeats(frame.hash_rows().to_numpy(), np.flatnonzero(changes))
    if candidates.any():
        rows = np.flatnonzero(candidates)
        first = frame[rows].select(pl.struct(pl.all()).is_first_distinct()).to_series()
        unique[rows] = first.to_numpy()
    return unique


@numba.njit(cache=True, nogil=True)
def _hash_repeats(hashes, starts):
    """True for rows whose hash another row of their group shares (groups begin at `starts`)."""
    repeats = np.zeros(hashes.size, dtype=np.bool_)
    for index in range(starts.size):
        begin = starts[index]
        end = starts[index + 1] if index + 1 < starts.size else hashes.size
        if end - begin <= _PAIRWISE_GROUP_ROWS:
            for i in range(begin + 1, end):
                for j in range(begin, i):
                    if hashes[i] == hashes[j]:
                        repeats[i] = True
                        repeats[j] = True
        else:
            order = np.argsort(hashes[begin:end]) + begin
            for k in range(1, order.size):
                if hashes[order[k]] == hashes[order[k - 1]]:
                    repeats[order[k]] = True
                    repeats[order[k - 1]] = True
    return repeats
