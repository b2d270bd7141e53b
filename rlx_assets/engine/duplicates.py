"""Duplicate rows within groups (same key, same content): the first of each kept."""

from __future__ import annotations

import numba
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc


def first_of_duplicates(table: pa.Table, columns: list[str], group: list[str]) -> np.ndarray:
    """True for the first occurrence of each distinct row (in the table's order). Rows are in
    order of the `group` columns, which equal rows share: only rows of one group can repeat."""
    unique = np.ones(table.num_rows, dtype=bool)
    if table.num_rows < 2:
        return unique
    changes = np.zeros(table.num_rows, dtype=bool)
    changes[0] = True
    for name in group:
        key = table[name].to_numpy()
        changes[1:] |= key[1:] != key[:-1]
    # Rows are compared in full only where their hashes meet within a group (duplicates are
    # rare).
    if len(columns) > _WIDE_COLUMNS:  # (a book snapshot's 80 levels: polars hashes a row at once)
        hashes = pl.from_arrow(table.select(columns)).hash_rows().to_numpy()
    else:
        hashes = row_hashes(table, columns)
    candidates = _hash_repeats(hashes, np.flatnonzero(changes))
    if candidates.any():
        rows = np.flatnonzero(candidates)
        frame = pl.from_arrow(table.select(columns).take(pa.array(rows)))
        first = frame.select(pl.struct(pl.all()).is_first_distinct()).to_series()
        unique[rows] = first.to_numpy()
    return unique


_WIDE_COLUMNS = 16
_NULL_HASH = np.uint64(0x5BD1E9955BD1E995)


def row_hashes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """A 64-bit hash per row of the columns: rows that are equal (as polars compares them: a
    null equals a null, -0.0 equals 0.0, a NaN equals a NaN) hash alike. One compiled pass per
    column over its values as stored (no copy without nulls)."""
    hashes = np.zeros(table.num_rows, dtype=np.uint64)
    for name in columns:
        column = table[name]
        valid = _NO_NULLS
        if column.null_count:
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            if not _is_text(column.type):  # (a text null's dictionary index is filled)
                column = pc.fill_null(column, False if pa.types.is_boolean(column.type) else 0)
        words, floats = _hash_words(column)
        _mix_column(hashes, words, floats, valid)
    return hashes


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


_NO_NULLS = np.ones(0, dtype=np.bool_)
_NOT_FLOAT = np.zeros(0, dtype=np.float64)


def _hash_words(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The column's values as uint64 words, equal where the values are equal, and for a float
    column the floats themselves (to read -0.0 and NaN as polars compares them)."""
    kind = column.type
    if _is_text(kind):
        # Within one table, equal strings share a dictionary index.
        indices = pc.fill_null(pc.dictionary_encode(column.combine_chunks()).indices, 0)
        return indices.to_numpy().astype(np.uint64), _NOT_FLOAT
    values = column.to_numpy()
    if pa.types.is_boolean(kind):
        return values.astype(np.uint64), _NOT_FLOAT
    if pa.types.is_floating(kind):
        floats = values.astype(np.float64, copy=False)
        return floats.view(np.uint64), floats
    if pa.types.is_integer(kind):
        return values.astype(np.int64, copy=False).view(np.uint64), _NOT_FLOAT
    raise TypeError(f"no row hash for column {column!r} of type {kind}")


@numba.njit(cache=True, nogil=True)
def _mix_column(hashes, words, floats, valid):
    """hashes[i] = mix(hashes[i], splitmix64(words[i])); a fixed word for a null, for any NaN
    and for both zeros of a float column."""
    check_nulls = valid.size > 0
    is_float = floats.size > 0
    for i in range(hashes.size):
        if check_nulls and not valid[i]:
            z = _NULL_HASH
        else:
            word = words[i]
            if is_float and (floats[i] != floats[i] or floats[i] == 0.0):
                word = np.uint64(0) if floats[i] == 0.0 else np.uint64(0x7FF8000000000000)
            z = word + np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        h = hashes[i]
        hashes[i] = ((h << np.uint64(7)) | (h >> np.uint64(57))) ^ z


@numba.njit(cache=True, nogil=True)
def _hash_repeats(hashes, starts):
    """True for rows whose hash another row of their group shares (groups begin at `starts`):
    an open-addressing table per group, reused and cleared after each, so a group's lookups stay
    in cache."""
    rows = hashes.size
    repeats = np.zeros(rows, dtype=np.bool_)
    largest = 0
    for index in range(starts.size):
        end = starts[index + 1] if index + 1 < starts.size else rows
        largest = max(largest, end - starts[index])
    size = 2
    while size < 2 * largest:
        size <<= 1
    mask = np.uint64(size - 1)
    keys = np.empty(size, dtype=np.uint64)
    owners = np.full(size, -1, dtype=np.int64)
    used = np.empty(largest, dtype=np.int64)
    for index in range(starts.size):
        begin = starts[index]
        end = starts[index + 1] if index + 1 < starts.size else rows
        taken = 0
        for row in range(begin, end):
            key = hashes[row]
            slot = ((key * np.uint64(0xBF58476D1CE4E5B9)) >> np.uint64(40)) & mask
            while owners[slot] >= 0:
                if keys[slot] == key:
                    repeats[row] = True
                    repeats[owners[slot]] = True
                    break
                slot = (slot + np.uint64(1)) & mask
            else:
                keys[slot] = key
                owners[slot] = row
                used[taken] = slot
                taken += 1
        for k in range(taken):
            owners[used[k]] = -1
    return repeats
